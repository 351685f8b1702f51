//! A fake Telegram Bot API server on loopback, for the notifier's tests and benchmark
//! (Telegram itself cannot be reached from here). It answers `getMe`, `getUpdates` (long
//! poll over updates the test queues), `sendMessage` and `answerCallbackQuery`; records
//! every request with its arrival time; checks the token; and checks message markup the way
//! Telegram does — MarkdownV2 with an unescaped reserved character, or HTML with an unknown tag
//! or a bare `<`/`&`, is refused with `400 Bad Request: can't parse entities` — so a test
//! that passes has sent text Telegram would accept. It can answer `429` with `retry_after`
//! and can take a message and never answer (a crash mid-send).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A message the server accepted (or took and never answered).
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: i64,
    /// As sent (MarkdownV2 or HTML).
    pub text: String,
    /// What a reader sees: the markup parsed, escapes removed.
    pub plain: String,
    /// Links in the text: (text, url).
    pub links: Vec<(String, String)>,
    pub parse_mode: Option<String>,
    pub reply_markup: Option<Value>,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    token: String,
    requests: Vec<(String, Value, Instant)>,
    sent: Vec<Sent>,
    updates: VecDeque<Value>,
    next_update_id: u64,
    next_message_id: i64,
    /// Answer the next sendMessage calls with 429 and these retry_after seconds.
    too_many: VecDeque<u64>,
    /// Answer the next sendMessage calls with 500.
    errors: u32,
    /// Take sendMessage calls and never answer.
    hang: bool,
}

#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Mutex<Inner>>,
    updates: Arc<Notify>,
    sent_notify: Arc<Notify>,
    pub addr: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
}

impl FakeTelegram {
    /// Starts the server on a free loopback port, expecting `token`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let this = Self {
            inner: Arc::new(Mutex::new(Inner {
                token: token.to_owned(),
                next_update_id: 1000,
                next_message_id: 1,
                ..Inner::default()
            })),
            updates: Arc::new(Notify::new()),
            sent_notify: Arc::new(Notify::new()),
            addr,
            stop: tokio_util::sync::CancellationToken::new(),
        };
        let app = Router::new()
            .route("/{bot}/{method}", post(handle).get(handle))
            .with_state(this.clone());
        let stop = this.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(this)
    }

    /// The API URL to configure (`notify.telegram.api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a text message from `user` in `chat`, as getUpdates will return it.
    pub fn message(&self, chat: i64, user: i64, text: &str) {
        let mut s = self.lock();
        let id = s.next_update_id;
        s.next_update_id += 1;
        let mid = s.next_message_id;
        s.next_message_id += 1;
        s.updates.push_back(json!({
            "update_id": id,
            "message": {
                "message_id": mid,
                "date": 1_764_072_000,
                "chat": chat_json(chat),
                "from": {"id": user, "is_bot": false, "first_name": "Tester"},
                "text": text,
            }
        }));
        drop(s);
        self.updates.notify_waiters();
    }

    /// Queues a press of an inline button with callback `data` under a bot message in `chat`.
    pub fn callback(&self, chat: i64, user: i64, data: &str) {
        let mut s = self.lock();
        let id = s.next_update_id;
        s.next_update_id += 1;
        s.updates.push_back(json!({
            "update_id": id,
            "callback_query": {
                "id": format!("cb{id}"),
                "from": {"id": user, "is_bot": false, "first_name": "Tester"},
                "chat_instance": "1",
                "data": data,
                "message": {
                    "message_id": 1,
                    "date": 1_764_072_000,
                    "chat": chat_json(chat),
                    "text": "x",
                },
            }
        }));
        drop(s);
        self.updates.notify_waiters();
    }

    /// The next `n` sendMessage calls get `429 Too Many Requests` with `retry_after`.
    pub fn too_many_requests(&self, n: usize, retry_after_secs: u64) {
        let mut s = self.lock();
        for _ in 0..n {
            s.too_many.push_back(retry_after_secs);
        }
    }

    /// The next `n` sendMessage calls get `500`.
    pub fn fail_next(&self, n: u32) {
        self.lock().errors += n;
    }

    /// sendMessage calls are recorded and never answered (while `on`).
    pub fn hang(&self, on: bool) {
        self.lock().hang = on;
    }

    /// Messages accepted so far (and those taken while hanging).
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    /// Every request: (method, lowercase; body; arrival).
    pub fn requests(&self) -> Vec<(String, Value, Instant)> {
        self.lock().requests.clone()
    }

    /// Waits until at least `n` messages were sent, up to `timeout`; returns them.
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.sent_notify.notified();
            let sent = self.sent();
            if sent.len() >= n || Instant::now() >= deadline {
                return sent;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

fn chat_json(chat: i64) -> Value {
    if chat < 0 {
        json!({"id": chat, "type": "supergroup", "title": "Ops"})
    } else {
        json!({"id": chat, "type": "private", "first_name": "Tester"})
    }
}

fn api_error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (status, Json(body)).into_response()
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

async fn handle(
    State(fake): State<FakeTelegram>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(v)| v).unwrap_or(Value::Null);
    let method = method.to_ascii_lowercase();
    let now = Instant::now();
    {
        let mut s = fake.lock();
        s.requests.push((method.clone(), body.clone(), now));
        if bot.strip_prefix("bot") != Some(s.token.as_str()) {
            return api_error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
        }
    }
    match method.as_str() {
        "getme" => ok(json!({
            "id": 777, "is_bot": true, "first_name": "Steward", "username": "steward_test_bot",
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false,
        })),
        "getupdates" => {
            let offset = body.get("offset").and_then(Value::as_i64).unwrap_or(0);
            let timeout = body.get("timeout").and_then(Value::as_u64).unwrap_or(0);
            let deadline = now + Duration::from_secs(timeout.min(5));
            loop {
                let notified = fake.updates.notified();
                let batch: Vec<Value> = {
                    let mut s = fake.lock();
                    s.updates
                        .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    s.updates.iter().cloned().collect()
                };
                if !batch.is_empty() || Instant::now() >= deadline {
                    return ok(Value::Array(batch));
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
        "answercallbackquery" => ok(json!(true)),
        "sendmessage" => send_message(&fake, &body, now).await,
        other => api_error(
            StatusCode::NOT_FOUND,
            &format!("Not Found: method {other} not in the fake"),
            None,
        ),
    }
}

async fn send_message(fake: &FakeTelegram, body: &Value, now: Instant) -> Response {
    let chat_id = body["chat_id"].as_i64().unwrap_or(0);
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let parse_mode = body["parse_mode"].as_str().map(str::to_owned);
    {
        let mut s = fake.lock();
        if let Some(after) = s.too_many.pop_front() {
            return api_error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too Many Requests: retry after {after}"),
                Some(json!({"retry_after": after})),
            );
        }
        if s.errors > 0 {
            s.errors -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke").into_response();
        }
    }
    let parsed = match parse_mode.as_deref() {
        Some("MarkdownV2") => parse_markdown_v2(&text),
        Some("HTML") => parse_html(&text),
        _ => Ok((text.clone(), Vec::new())),
    };
    let (plain, links) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("Bad Request: can't parse entities: {e}"),
                None,
            )
        }
    };
    let hang = {
        let mut s = fake.lock();
        s.sent.push(Sent {
            chat_id,
            text: text.clone(),
            plain,
            links,
            parse_mode,
            reply_markup: body.get("reply_markup").cloned(),
            at: now,
        });
        s.hang
    };
    fake.sent_notify.notify_waiters();
    if hang {
        // Took the message, never answers: the sender cannot know it arrived.
        std::future::pending::<()>().await;
    }
    let id = {
        let mut s = fake.lock();
        s.next_message_id += 1;
        s.next_message_id
    };
    ok(json!({
        "message_id": id,
        "date": 1_764_072_000,
        "chat": chat_json(chat_id),
        "text": "ok",
    }))
}

const MD_RESERVED: &str = "_*[]()~`>#+-=|{}.!";

/// Parses MarkdownV2 as Telegram does for what Steward emits (`*bold*`, `_italic_`,
/// `` `code` ``, `[text](url)`, escapes): the plain text and the links, or the error.
pub fn parse_markdown_v2(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut links = Vec::new();
    let mut open: Vec<char> = Vec::new();
    let mut link_start: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let in_code = open.last() == Some(&'`');
        if c == '\\' {
            let Some(&n) = chars.get(i + 1) else {
                return Err("a trailing `\\`".into());
            };
            if !(1..=126).contains(&(n as u32)) {
                return Err(format!("character {n:?} cannot be escaped"));
            }
            out.push(n);
            i += 2;
            continue;
        }
        if in_code {
            if c == '`' {
                open.pop();
            } else {
                out.push(c);
            }
            i += 1;
            continue;
        }
        match c {
            '*' | '_' | '`' => {
                if open.last() == Some(&c) {
                    open.pop();
                } else {
                    open.push(c);
                }
            }
            '[' => {
                if link_start.is_some() {
                    return Err("a link inside a link".into());
                }
                link_start = Some(out.len());
            }
            ']' => {
                let Some(start) = link_start.take() else {
                    return Err(
                        "character ']' is reserved and must be escaped with the preceding '\\'"
                            .into(),
                    );
                };
                if chars.get(i + 1) != Some(&'(') {
                    return Err("a link's text must be followed by (url)".into());
                }
                let mut url = String::new();
                let mut j = i + 2;
                loop {
                    match chars.get(j) {
                        None => return Err("an unterminated link URL".into()),
                        Some('\\') => {
                            if let Some(&n) = chars.get(j + 1) {
                                url.push(n);
                            }
                            j += 2;
                        }
                        Some(')') => break,
                        Some(&u) => {
                            url.push(u);
                            j += 1;
                        }
                    }
                }
                links.push((out[start..].to_owned(), url));
                i = j + 1;
                continue;
            }
            c if MD_RESERVED.contains(c) => {
                return Err(format!(
                    "character '{c}' is reserved and must be escaped with the preceding '\\'"
                ));
            }
            c => out.push(c),
        }
        i += 1;
    }
    if !open.is_empty() || link_start.is_some() {
        return Err(format!("can't find end of the entity {:?}", open.last()));
    }
    Ok((out, links))
}

/// Parses Telegram's HTML subset: the plain text and the links, or the error.
pub fn parse_html(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    const TAGS: [&str; 12] = [
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a",
    ];
    let mut out = String::new();
    let mut links = Vec::new();
    let mut stack: Vec<(String, usize, Option<String>)> = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .ok_or_else(|| "unclosed start tag".to_owned())?;
                let tag = &rest[1..end];
                rest = &rest[end + 1..];
                if let Some(name) = tag.strip_prefix('/') {
                    match stack.pop() {
                        Some((open, start, href)) if open == name => {
                            if let Some(h) = href {
                                links.push((out[start..].to_owned(), h));
                            }
                        }
                        _ => return Err(format!("unmatched end tag </{name}>")),
                    }
                    continue;
                }
                let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
                if !TAGS.contains(&name) {
                    return Err(format!("unsupported start tag \"{name}\""));
                }
                let href = if name == "a" {
                    let v = attrs
                        .trim()
                        .strip_prefix("href=\"")
                        .and_then(|a| a.strip_suffix('"'))
                        .ok_or_else(|| "an <a> needs href=\"…\"".to_owned())?;
                    Some(decode_entities(v)?)
                } else {
                    None
                };
                stack.push((name.to_owned(), out.len(), href));
            }
            '>' => return Err("a bare `>` must be written &gt;".into()),
            '&' => {
                let end = rest
                    .find(';')
                    .ok_or_else(|| "a bare `&` must be written &amp;".to_owned())?;
                out.push_str(&decode_entities(&rest[..=end])?);
                rest = &rest[end + 1..];
            }
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some((t, _, _)) = stack.pop() {
        return Err(format!("unclosed tag <{t}>"));
    }
    Ok((out, links))
}

fn decode_entities(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or_else(|| "a bare `&` must be written &amp;".to_owned())?;
        let ent = &rest[i + 1..i + end];
        out.push(match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            e if e.starts_with('#') => e[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad entity &{e};"))?,
            e => return Err(format!("unsupported entity &{e};")),
        });
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_refuses_what_telegram_refuses() {
        assert!(parse_markdown_v2("a.b").is_err());
        assert!(parse_markdown_v2("*open").is_err());
        assert_eq!(
            parse_markdown_v2("*a\\.b* [x\\(1\\)](http://u/\\)) `c\\`d`").unwrap(),
            (
                "a.b x(1) c`d".to_owned(),
                vec![("x(1)".to_owned(), "http://u/)".to_owned())]
            )
        );
        assert!(parse_html("<script>x</script>").is_err());
        assert!(parse_html("a & b").is_err());
        assert!(parse_html("a < b").is_err());
        assert_eq!(
            parse_html("<b>a &lt;b&gt;</b> <a href=\"http://u?a=1&amp;b=2\">t</a>").unwrap(),
            (
                "a <b> t".to_owned(),
                vec![("t".to_owned(), "http://u?a=1&b=2".to_owned())]
            )
        );
    }
}
