"""A real SMTP server for the notifier's tests: aiosmtpd, with optional AUTH (LOGIN/PLAIN,
allowed without TLS on loopback). Every message received is parsed with Python's own MIME
parser (an implementation independent of lettre) and appended as one JSON line to OUT.

    python smtp_server.py PORT OUT [USER PASSWORD]

With SMTP_TLS=starttls (STARTTLS offered and required before MAIL) or SMTP_TLS=tls (TLS from
the first byte), it serves the certificate SMTP_CERT with the key SMTP_KEY (PEM files).

Prints `READY` once it listens; stops on SIGTERM or when stdin closes.
"""
import json
import os
import signal
import ssl
import sys
import threading
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out = int(sys.argv[1]), sys.argv[2]
creds = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else None
lock = threading.Lock()


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append({"content_type": part.get_content_type(), "content": part.get_content()})
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth": session.authenticated and creds and creds[0],
            "content_type": msg.get_content_type(),
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "message_id": str(msg["message-id"]),
            "parts": parts,
            "raw": (envelope.original_content or envelope.content).decode("utf-8", "replace"),
        }
        with lock, open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK queued as test"


def authenticator(server, session, envelope, mechanism, auth_data):
    if creds and isinstance(auth_data, LoginPassword):
        ok = (auth_data.login.decode(), auth_data.password.decode()) == creds
        return AuthResult(success=ok, handled=False)
    return AuthResult(success=False, handled=False)


kwargs = {}
if creds:
    kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
mode = os.environ.get("SMTP_TLS")
if mode:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.environ["SMTP_CERT"], os.environ["SMTP_KEY"])
    if mode == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    elif mode == "tls":
        kwargs.update(ssl_context=ctx)
    else:
        sys.exit(f"SMTP_TLS={mode}: expected starttls or tls")
controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("READY", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
stop.wait()
controller.stop()
