//! The Safe Transaction Service compatible API and the signer CLI, end to end: `steward up`
//! (watcher, safe, api and the rest) against a real anvil with the real Safe v1.4.1 contracts
//! and a 2-of-3 Safe.
//!
//! - The signer CLI, as the real binary: `steward safe queue`, `show`, `sign` with encrypted
//!   keystores made here (one password typed at the prompt on a pseudo-terminal, made by
//!   util-linux `script`, and not echoed), `execute`; a tampering API is refused before
//!   anything is signed.
//! - Interop: the Safe ecosystem's own TypeScript clients (`@safe-global/api-kit` and
//!   `@safe-global/protocol-kit`, pinned by scripts/install-test-deps) propose, confirm, list
//!   and fetch through Steward (`txServiceUrl` ending in `/api`), and Steward's relayer executes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::signers::k256::elliptic_curve::rand_core::OsRng;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use steward_events::{Envelope, SafeCall, SafeProposalRequested};
use steward_log::EventLog;
use steward_testkit::{safe_artifact, Anvil, SafeDeployment, ANVIL_KEYS};

mod common;

use common::*;

const CHAIN: u64 = 31337;
const PASSWORD: &str = "correct horse battery staple";
/// The relayer's account (anvil's seventh).
const RELAYER: usize = 6;

fn key(i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_str(ANVIL_KEYS[i]).unwrap()
}

fn checksum(a: &str) -> String {
    Address::from_str(a).unwrap().to_checksum(None)
}

struct World {
    anvil: Anvil,
    d: SafeDeployment,
    safe: String,
}

/// Anvil, the Safe contracts, and a 2-of-3 Safe of keys 0, 1 and 2 holding 10 ETH.
fn world() -> World {
    let anvil = Anvil::start();
    let d = anvil.deploy_safe();
    let owners: Vec<String> = (0..3).map(|i| key(i).address().to_string()).collect();
    let safe = checksum(&anvil.create_safe(&d, &owners, 2, 7));
    anvil.rpc(
        "anvil_setBalance",
        json!([
            safe,
            format!(
                "0x{:x}",
                U256::from(10u64) * U256::from(10u64).pow(U256::from(18))
            )
        ]),
    );
    World { anvil, d, safe }
}

struct Steward {
    run: Running,
    log: steward_log::embedded::EmbeddedLog,
    api: String,
    cfg: PathBuf,
}

async fn up(w: &World, dir: &Path, relayer: bool) -> Steward {
    let api = free_addr();
    let relayer = if relayer {
        "    relayer: {key: \"${SAFE_RELAYER_KEY}\", resubmit_after: 5s}\n"
    } else {
        ""
    };
    let yaml = format!(
        "data_dir: {data}
chains:
  - name: local
    chain_id: {CHAIN}
    rpc: [{{url: \"{url}\"}}]
    poll_interval: 200ms
    start_block: 1
    multicall: disabled
    watches:
      - {{name: treasury, pack: safe, address: \"{safe}\"}}
safes:
  - name: treasury
    chain: local
    address: \"{safe}\"
    multi_send: \"{ms}\"
    multi_send_call_only: \"{msco}\"
    simulate_tx_accessor: \"{sim}\"
{relayer}api:
  listen: \"{api}\"
",
        data = dir.join("data").display(),
        url = w.anvil.url(),
        safe = w.safe,
        ms = w.d.multi_send,
        msco = w.d.multi_send_call_only,
        sim = w.d.simulate_tx_accessor,
    );
    let cfg = dir.join("steward.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let ops = free_addr();
    let mut cmd = steward(&[
        "up",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &ops.to_string(),
    ]);
    cmd.env("SAFE_RELAYER_KEY", ANVIL_KEYS[RELAYER]);
    let mut run = spawn(&mut cmd);
    wait_ready(ops, &mut run.child);
    let log = steward_log::embedded::EmbeddedLog::open(&dir.join("data/events.db"), "steward")
        .await
        .unwrap();
    Steward {
        run,
        log,
        api: format!("http://{api}"),
        cfg,
    }
}

impl Steward {
    /// `steward safe …` with this configuration; the password, when given, from the environment.
    fn cli(&self, args: &[&str], password: Option<&str>) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("safe")
            .args(args)
            .arg("--config")
            .arg(&self.cfg)
            .env_remove("STEWARD_API_URL")
            .env_remove(steward_password_env())
            .stdin(Stdio::null());
        if let Some(p) = password {
            cmd.env(steward_password_env(), p);
        }
        cmd.output().unwrap()
    }

    /// `steward safe …` on a pseudo-terminal, typing `password` once the prompt is shown;
    /// returns everything the terminal showed.
    fn cli_on_terminal(&self, args: &[&str], password: &str) -> String {
        use std::io::{Read, Write};
        // One shell command line for `script -c`, every word single-quoted.
        let line = [BIN, "safe"]
            .into_iter()
            .chain(args.iter().copied())
            .chain(["--config", self.cfg.to_str().unwrap()])
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env_remove(steward_password_env())
            .env_remove("STEWARD_API_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The CLI writes to the terminal; only `script`'s own complaints come here.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("util-linux `script` runs the CLI on a pseudo-terminal");
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut typing = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(chunk) => seen.extend(chunk),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(_) => {}
            }
            // Type only once the prompt is up: the CLI turns echo off before it writes it.
            if typing.is_none() && String::from_utf8_lossy(&seen).contains("password for") {
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
                // Kept open until the end: closing it would end the terminal session.
                typing = Some(stdin);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the CLI did not finish: {}", String::from_utf8_lossy(&seen));
            }
        }
        let status = child.wait().unwrap();
        drop(typing);
        let shown = String::from_utf8_lossy(&seen).into_owned();
        assert!(status.success(), "{shown}");
        shown
    }

    async fn http(&self, path: &str) -> Value {
        let (status, body) = http_get(
            self.api.trim_start_matches("http://").parse().unwrap(),
            &format!("/api{path}"),
        )
        .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits for a condition on the API's view of a transaction.
    async fn until_tx(&self, hash: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, body) = http_get(
                self.api.trim_start_matches("http://").parse().unwrap(),
                &format!("/api/v2/multisig-transactions/{hash}/"),
            )
            .unwrap();
            if status == 200 {
                let v: Value = serde_json::from_str(&body).unwrap();
                if f(&v) {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within 90 s; steward said:\n{}",
                self.run.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Proposes through the log, as a playbook or the rebalancer would; returns the safeTxHash.
    async fn propose(&self, key: &str, safe: &str, calls: Vec<SafeCall>) -> String {
        self.log
            .append(&[Envelope::new(
                "test",
                key,
                &SafeProposalRequested {
                    safe: safe.to_owned(),
                    calls,
                    reason: format!("test {key}"),
                    replace_nonce: None,
                },
            )])
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .log
                .read(1, &["safe.tx.proposed".into()], 10_000)
                .await
                .unwrap();
            if let Some(p) = found.iter().find_map(|s| {
                s.event
                    .payload::<steward_events::SafeTxProposed>()
                    .ok()
                    .filter(|p| p.reason == format!("test {key}"))
            }) {
                // Served once the api has projected it.
                self.until_tx(&p.safe_tx_hash, "the proposal in the API", |_| true)
                    .await;
                return p.safe_tx_hash;
            }
            assert!(
                Instant::now() < deadline,
                "no proposal for {key}:\n{}",
                self.run.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn steward_password_env() -> &'static str {
    "STEWARD_KEYSTORE_PASSWORD"
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// An encrypted JSON keystore of anvil key `i`, made with alloy (Web3 Secret Storage, scrypt).
fn keystore(dir: &Path, i: usize) -> PathBuf {
    let name = format!("owner{i}.json");
    let secret = alloy::primitives::hex::decode(ANVIL_KEYS[i].trim_start_matches("0x")).unwrap();
    PrivateKeySigner::encrypt_keystore(dir, &mut OsRng, secret, PASSWORD, Some(&name)).unwrap();
    dir.join(name)
}

fn balance(anvil: &Anvil, who: &str) -> U256 {
    U256::from_str(
        anvil
            .rpc("eth_getBalance", json!([who, "latest"]))
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

fn safe_nonce(anvil: &Anvil, safe: &str) -> U256 {
    // nonce()
    U256::from_str(
        anvil
            .rpc(
                "eth_call",
                json!([{ "to": safe, "data": "0xaffed0e0" }, "latest"]),
            )
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

/// A plain HTTP server that answers every request with `body`, counting POSTs: an API that
/// lies about a transaction.
fn lying_api(
    body: String,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            if buf[..n].starts_with(b"POST") {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, posts)
}

#[tokio::test]
async fn a_signer_queues_shows_signs_and_executes_with_the_cli() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(&w, dir.path(), false).await;
    let recipient = checksum("0x00000000000000000000000000000000000a11ce");
    let one_eth = U256::from(10u64).pow(U256::from(18));
    let hash = s
        .propose(
            "pay",
            "treasury",
            vec![SafeCall {
                to: recipient.clone(),
                value: one_eth.to_string(),
                data: "0x".into(),
                operation: 0,
            }],
        )
        .await;
    // Another one that cannot succeed: more than the Safe holds.
    let too_much = s
        .propose(
            "overdraw",
            "treasury",
            vec![SafeCall {
                to: recipient.clone(),
                value: (one_eth * U256::from(1000u64)).to_string(),
                data: "0x".into(),
                operation: 0,
            }],
        )
        .await;

    let (out, err) = text(&s.cli(&["queue"], None));
    assert!(
        out.contains(&format!(
            "treasury {}: nonce 0, threshold 2 of 3 owners, 2 pending",
            w.safe
        )),
        "{out}{err}"
    );
    assert!(out.contains(&hash), "{out}");
    assert!(out.contains("signed 0/2"), "{out}");
    let overdraw_line = out
        .lines()
        .skip_while(|l| !l.contains(&too_much))
        .nth(1)
        .unwrap_or_default();
    assert!(overdraw_line.contains("WARNING: WOULD REVERT"), "{out}");

    let (out, err) = text(&s.cli(&["show", &hash], None));
    assert!(
        out.contains(&format!("Safe transaction {hash}")),
        "{out}{err}"
    );
    assert!(out.contains("chain          local (31337)"), "{out}");
    assert!(
        out.contains(&format!("to             {recipient}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("value          {one_eth} wei")),
        "{out}"
    );
    assert!(
        out.contains("recomputed here from the fields for chain 31337: matches"),
        "{out}"
    );
    assert!(out.contains("simulation     passes"), "{out}");
    assert!(out.contains("confirmations  0 of 2"), "{out}");

    // Keystores, as signers keep their keys.
    let keys = tempfile::tempdir().unwrap();
    let k1 = keystore(keys.path(), 1);
    let k2 = keystore(keys.path(), 2);
    let k5 = keystore(keys.path(), 5);

    // A wrong password: nothing signed, and the password is not repeated back.
    let o = s.cli(
        &["sign", &hash, "--keystore", k1.to_str().unwrap()],
        Some("hunter2-wrong"),
    );
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("cannot open the keystore"), "{out}{err}");
    assert!(!out.contains("hunter2") && !err.contains("hunter2"));
    // Not an owner: refused before anything is sent.
    let o = s.cli(
        &["sign", &hash, "--keystore", k5.to_str().unwrap()],
        Some(PASSWORD),
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("is not an owner"), "{:?}", text(&o));

    let started = Instant::now();
    let o = s.cli(
        &["sign", &hash, "--keystore", k1.to_str().unwrap()],
        Some(PASSWORD),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("as {}: 1 of 2 confirmations", key(1).address())),
        "{out}"
    );
    // scrypt (n = 2^13) in a debug build takes a few seconds; a hang would be a bug.
    assert!(started.elapsed() < Duration::from_secs(60));
    // Signing again changes nothing.
    let (out, _) = text(&s.cli(
        &["sign", &hash, "--keystore", k1.to_str().unwrap()],
        Some(PASSWORD),
    ));
    assert!(out.contains("has already signed"), "{out}");
    // The second signer types the password at the prompt, on a terminal (a pty made by
    // util-linux `script`): it is not echoed.
    let out = s.cli_on_terminal(
        &["sign", &hash, "--keystore", k2.to_str().unwrap()],
        PASSWORD,
    );
    assert!(
        out.contains(&format!("password for {}: ", k2.display())),
        "{out}"
    );
    assert!(
        out.contains("2 of 2 confirmations") && out.contains("the threshold is met"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "the password was echoed: {out}");
    let api_view = s.http(&format!("/v2/multisig-transactions/{hash}/")).await;
    let types: Vec<&str> = api_view["confirmations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["signatureType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["EOA", "EOA"]);

    // A lying API: the fields it gives do not hash to the hash asked for.
    let mut lie = api_view.clone();
    lie["value"] = json!((one_eth * U256::from(9u64)).to_string());
    let (addr, posts) = lying_api(lie.to_string());
    let o = Command::new(BIN)
        .args([
            "safe",
            "sign",
            &too_much,
            "--keystore",
            k1.to_str().unwrap(),
            "--api",
            &format!("http://{addr}"),
            "--config",
        ])
        .arg(&s.cfg)
        .env(steward_password_env(), PASSWORD)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        err.contains("REFUSED") && err.contains("Nothing was signed or sent"),
        "{err}"
    );
    assert_eq!(
        posts.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a signature went to the lying API"
    );

    // Executed by a non-owner that pays for gas (key 5).
    let before = balance(&w.anvil, &recipient);
    let o = s.cli(
        &["execute", &hash, "--keystore", k5.to_str().unwrap()],
        Some(PASSWORD),
    );
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "{out}{err}\nsteward:\n{}",
        s.run.stderr()
    );
    assert!(out.contains("ExecutionSuccess"), "{out}");
    assert_eq!(balance(&w.anvil, &recipient) - before, one_eth);
    assert_eq!(safe_nonce(&w.anvil, &w.safe), U256::from(1));
    // The watcher sees the execution; the API shows it, and the queue is empty of it.
    let done = s
        .until_tx(&hash, "executed in the API", |v| v["isExecuted"] == true)
        .await;
    let sent = out.split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(done["transactionHash"], sent, "{done}");
    let (out, _) = text(&s.cli(&["queue", "--safe", "treasury"], None));
    assert!(!out.contains(&hash), "{out}");
    // Executing again is refused.
    let o = s.cli(
        &["execute", &hash, "--keystore", k5.to_str().unwrap()],
        Some(PASSWORD),
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("already executed"), "{:?}", text(&o));
    // No secret in anything steward said.
    let log = s.run.stderr();
    assert!(!log.contains(PASSWORD) && !log.contains(&ANVIL_KEYS[RELAYER][2..]));
}

/// The npm packages' directory (scripts/install-test-deps).
fn node_modules() -> PathBuf {
    let dir = steward_testkit::tools_dir().join("node_modules");
    assert!(
        dir.join("@safe-global/api-kit/package.json").exists() && dir.join("@safe-global/protocol-kit/package.json").exists(),
        "npm @safe-global/api-kit and @safe-global/protocol-kit are missing under {}: run scripts/install-test-deps",
        dir.display()
    );
    dir
}

#[tokio::test]
async fn safes_own_typescript_clients_propose_confirm_list_and_fetch_through_steward() {
    let w = world();
    // What protocol-kit needs to know of a chain without official deployments.
    let sign_message_lib = w
        .anvil
        .deploy(&safe_artifact("libraries/SignMessageLib.sol/SignMessageLib").1);
    let create_call = w
        .anvil
        .deploy(&safe_artifact("libraries/CreateCall.sol/CreateCall").1);
    let dir = tempfile::tempdir().unwrap();
    let s = up(&w, dir.path(), true).await;
    let recipient = checksum("0x00000000000000000000000000000000000b0b00");
    let before = balance(&w.anvil, &recipient);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/interop/safe-api-kit.cjs");
    let started = Instant::now();
    let out = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", node_modules())
        .env("RPC_URL", w.anvil.url())
        .env("TX_SERVICE_URL", format!("{}/api", s.api))
        .env("CHAIN_ID", CHAIN.to_string())
        .env("SAFE_ADDRESS", &w.safe)
        .env("PROPOSER_KEY", ANVIL_KEYS[0])
        .env("CONFIRMER_KEY", ANVIL_KEYS[1])
        .env("TO", &recipient)
        .env("VALUE", "12345")
        .env(
            "CONTRACTS",
            json!({
                "safeSingletonAddress": w.d.singleton,
                "safeProxyFactoryAddress": w.d.factory,
                "multiSendAddress": w.d.multi_send,
                "multiSendCallOnlyAddress": w.d.multi_send_call_only,
                "fallbackHandlerAddress": w.d.fallback_handler,
                "signMessageLibAddress": sign_message_lib,
                "createCallAddress": create_call,
                "simulateTxAccessorAddress": w.d.simulate_tx_accessor,
            })
            .to_string(),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "the interop script failed:\n{stdout}\n{stderr}\nsteward:\n{}",
        s.run.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(180), "{stderr}");
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the script's last line is its JSON summary ({e}):\n{stdout}"));
    let hash = r["safeTxHash"].as_str().unwrap().to_owned();
    // What the clients saw, through their own types.
    assert_eq!(r["safeInfo"]["threshold"], 2);
    assert_eq!(r["safeInfo"]["nonce"], "0");
    assert!(
        r["pending"].as_array().unwrap().iter().any(|h| *h == hash),
        "{r}"
    );
    assert_eq!(r["fetched"]["confirmations"], 2);
    assert_eq!(r["fetched"]["confirmationsRequired"], 2);
    assert_eq!(
        r["fetched"]["signatureTypes"],
        json!(["EOA", "ETH_SIGN"]),
        "typed-data by the proposer, eth_sign by the confirmer"
    );
    assert_eq!(r["fetched"]["to"], recipient);
    assert_eq!(r["fetched"]["value"], "12345");
    assert_eq!(r["confirmationsListed"], 2);
    assert_eq!(
        r["isValidTransaction"], true,
        "protocol-kit read Steward's response as an executable transaction"
    );
    assert_eq!(r["executed"]["isExecuted"], true, "{r}");
    // Steward's relayer executed it on chain.
    assert_eq!(balance(&w.anvil, &recipient) - before, U256::from(12345u64));
    assert_eq!(safe_nonce(&w.anvil, &w.safe), U256::from(1));
    let api_view = s.http(&format!("/v2/multisig-transactions/{hash}/")).await;
    assert_eq!(
        api_view["transactionHash"],
        r["executed"]["transactionHash"]
    );
    assert_eq!(api_view["origin"], "steward-interop");
    assert_eq!(api_view["proposer"], key(0).address().to_checksum(None));
}
