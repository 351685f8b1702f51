//! A throwaway anvil node per test, plain JSON-RPC over HTTP, and the compiled chain fixtures.
//!
//! `anvil` comes from the npm package `@foundry-rs/anvil-linux-amd64`, installed by
//! `scripts/install-test-deps` into `${STEWARD_TOOLS_DIR:-$HOME/.cache/steward-tools}` and put on
//! `PATH` by `scripts/test`. [`Anvil`] finds it on `PATH` first, then in that tools directory,
//! and panics with instructions when it is in neither: tests never skip.
//!
//! The JSON-RPC helpers here are blocking (std networking, no HTTP client dependency) and meant
//! for test setup: deploying fixtures, mining, snapshots. They are fine in a `#[tokio::test]` for
//! a few calls; the code under test brings its own client.
//!
//! The fixtures are the contracts in `shared/chain-fixtures/contracts`, compiled by
//! `scripts/compile-contracts` into `shared/chain-fixtures/artifacts/<Name>.json` (committed).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// How long [`Anvil`] waits for a new node to answer `eth_chainId`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket timeout for one JSON-RPC request.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Anvil`]; see [`Anvil::builder`].
#[derive(Debug, Clone, Default)]
pub struct AnvilBuilder {
    chain_id: Option<u64>,
    block_time: Option<u64>,
    args: Vec<String>,
}

impl AnvilBuilder {
    /// `--chain-id` (anvil's default is 31337).
    pub fn chain_id(mut self, id: u64) -> Self {
        self.chain_id = Some(id);
        self
    }

    /// `--block-time` in seconds: interval mining instead of one block per transaction.
    pub fn block_time(mut self, seconds: u64) -> Self {
        self.block_time = Some(seconds);
        self
    }

    /// Any other anvil argument, e.g. `--no-mining` or `--load-state <file>`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Start the node and wait until it answers `eth_chainId`. Panics when it cannot.
    pub fn spawn(self) -> Anvil {
        let bin = anvil_binary();
        self.try_spawn(&bin)
            .unwrap_or_else(|e| panic!("anvil ({}) did not start: {e:#}", bin.display()))
    }

    fn try_spawn(&self, bin: &Path) -> anyhow::Result<Anvil> {
        // Port 0: the node binds a free port itself and reports it on stdout ("Listening on
        // 127.0.0.1:PORT"), so two nodes started at once can never race for one port.
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0"]);
        if let Some(id) = self.chain_id {
            cmd.args(["--chain-id", &id.to_string()]);
        }
        if let Some(t) = self.block_time {
            cmd.args(["--block-time", &t.to_string()]);
        }
        cmd.args(&self.args);
        // stderr goes to an unlinked temp file, read back only to explain a failed start.
        let mut log = tempfile::tempfile().context("temp file for anvil's stderr")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;

        // A thread reads stdout to the end (the node logs every request there; nothing of it is
        // shown), passing on the listening address when it appears.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel::<u16>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                    if let (Some(tx), Ok(addr)) = (tx.take(), addr.trim().parse::<SocketAddr>()) {
                        let _ = tx.send(addr.port());
                    }
                }
            }
        });

        let mut anvil = Anvil { child, port: 0 };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let failed = |anvil: &mut Anvil, log: &mut std::fs::File, why: String| {
            let _ = anvil.child.kill();
            let status = anvil
                .child
                .wait()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let mut out = String::new();
            let _ = log.seek(SeekFrom::Start(0));
            let _ = log.read_to_string(&mut out);
            anyhow!("{why} (exit: {status}; stderr: {})", out.trim())
        };
        anvil.port = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(port) => break port,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(failed(
                        &mut anvil,
                        &mut log,
                        "anvil exited before listening".into(),
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    return Err(failed(
                        &mut anvil,
                        &mut log,
                        format!(
                            "anvil did not report a listening address within {STARTUP_TIMEOUT:?}"
                        ),
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        loop {
            match anvil.try_rpc("eth_chainId", json!([])) {
                Ok(_) => return Ok(anvil),
                Err(e) if Instant::now() > deadline => {
                    let why = format!(
                        "anvil on port {} does not answer eth_chainId: {e:#}",
                        anvil.port
                    );
                    return Err(failed(&mut anvil, &mut log, why));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// An anvil node on a free loopback port, killed when dropped.
///
/// ```no_run
/// let anvil = steward_testkit::Anvil::start();
/// let block = anvil.rpc("eth_blockNumber", serde_json::json!([]));
/// assert_eq!(block, "0x0");
/// ```
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
}

impl Anvil {
    /// Start a node with anvil's defaults (chain id 31337, a block per transaction, ten
    /// unlocked accounts with 10,000 ETH each).
    pub fn start() -> Anvil {
        Anvil::builder().spawn()
    }

    pub fn builder() -> AnvilBuilder {
        AnvilBuilder::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// HTTP JSON-RPC endpoint, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// WebSocket JSON-RPC endpoint on the same port, `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The node's process id (for tests that kill an endpoint mid-run).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Call `method` and return its `result`; panics on a transport or JSON-RPC error.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|e| panic!("anvil {method} failed: {e:#}"))
    }

    /// Call `method` and return its `result`, or the transport or JSON-RPC error.
    pub fn try_rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        json_rpc(&self.url(), method, params)
    }

    /// The unlocked dev accounts (`eth_accounts`).
    pub fn accounts(&self) -> Vec<String> {
        let v = self.rpc("eth_accounts", json!([]));
        serde_json::from_value(v).expect("eth_accounts returns a list of addresses")
    }

    /// Send a transaction from `tx.from` (default: the first dev account) and wait for its
    /// receipt (with `--no-mining` or a long `--block-time`, mine it yourself from another
    /// thread). Panics if the transaction reverts.
    pub fn send_transaction(&self, mut tx: Value) -> Value {
        if tx.get("from").is_none() {
            let from = self
                .accounts()
                .into_iter()
                .next()
                .expect("anvil has dev accounts");
            tx["from"] = Value::String(from);
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx]));
        let hash = hash.as_str().expect("eth_sendTransaction returns a hash");
        let receipt = self.wait_for_receipt(hash);
        assert_eq!(
            receipt["status"], "0x1",
            "transaction {hash} reverted: {receipt}"
        );
        receipt
    }

    /// Poll `eth_getTransactionReceipt` until the transaction is mined (anvil answers
    /// `eth_sendTransaction` before its block exists, even when automining).
    pub fn wait_for_receipt(&self, hash: &str) -> Value {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let receipt = self.rpc("eth_getTransactionReceipt", json!([hash]));
            if !receipt.is_null() {
                return receipt;
            }
            assert!(
                Instant::now() < deadline,
                "no receipt for transaction {hash} within {STARTUP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Deploy creation bytecode (`0x…`) from the first dev account; returns the contract address.
    pub fn deploy(&self, bytecode: &str) -> String {
        let receipt = self.send_transaction(json!({ "data": bytecode }));
        receipt["contractAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("deployment receipt has no contractAddress: {receipt}"))
            .to_string()
    }

    /// Deploy the fixture `name` (see [`fixture_artifact`]); returns the contract address.
    pub fn deploy_fixture(&self, name: &str) -> String {
        let (_, bytecode) = fixture_artifact(name);
        self.deploy(&bytecode)
    }
}

impl Anvil {
    /// Stop the node with SIGINT, as a person would with Ctrl-C, and wait for it to exit, so
    /// that a `--dump-state` file is written. Panics if it has not exited within 60 s.
    pub fn shutdown(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("anvil did not exit within 60 s of SIGINT");
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `anvil` executable: on `PATH`, else in the tools directory of `scripts/install-test-deps`.
fn anvil_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let tools_bin = Some(tools_dir().join("bin"));
    on_path
        .into_iter()
        .chain(tools_bin)
        .map(|dir| dir.join("anvil"))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| {
            panic!(
                "`anvil` is not on PATH (nor in $STEWARD_TOOLS_DIR/bin, default \
                 ~/.cache/steward-tools/bin): the chain tests need a real anvil node. Run the \
                 suite with `scripts/test`, which installs it (npm @foundry-rs/anvil-linux-amd64) \
                 and puts it on PATH, or run `scripts/install-test-deps` yourself."
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

static RPC_ID: AtomicU64 = AtomicU64::new(1);

/// One blocking JSON-RPC call over plain HTTP/1.1 to an `http://host:port[/path]` URL.
pub fn json_rpc(url: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported, got {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("{authority} is not an ip:port"))?;
    let id = RPC_ID.fetch_add(1, Ordering::Relaxed);
    let body =
        json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();

    let mut stream = TcpStream::connect_timeout(&addr, RPC_TIMEOUT)
        .with_context(|| format!("connecting to {url}"))?;
    stream.set_read_timeout(Some(RPC_TIMEOUT))?;
    stream.set_write_timeout(Some(RPC_TIMEOUT))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response to {method} from {url}"))?;

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response from {url}"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let payload = &raw[split + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let payload = if head.contains("transfer-encoding: chunked") {
        dechunk(payload)?
    } else {
        payload.to_vec()
    };
    if status != "200" {
        bail!(
            "{method}: HTTP {status} from {url}: {}",
            String::from_utf8_lossy(&payload)
        );
    }
    let response: Value = serde_json::from_slice(&payload)
        .with_context(|| format!("{method}: response from {url} is not JSON"))?;
    if let Some(err) = response.get("error") {
        bail!("{method}: JSON-RPC error {err}");
    }
    response
        .get("result")
        .cloned()
        .ok_or_else(|| anyhow!("{method}: response has no result: {response}"))
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("malformed chunked body"))?;
        let size_str = std::str::from_utf8(&data[..eol])?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .context("malformed chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `shared/chain-fixtures/artifacts`, where `scripts/compile-contracts` writes the artifacts.
pub fn fixture_artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../chain-fixtures/artifacts")
}

/// Names of all compiled fixtures (artifact file stems), sorted.
pub fn fixture_names() -> Vec<String> {
    let dir = fixture_artifacts_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "json").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

/// The ABI (a JSON array) and creation bytecode (`0x…`) of the fixture contract `name`, e.g.
/// `"MockLendingPool"`. Every fixture's constructor takes no arguments, so the bytecode can be
/// deployed as is.
pub fn fixture_artifact(name: &str) -> (Value, String) {
    let path = fixture_artifacts_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read chain fixture {}: {e} (artifacts are committed; after changing \
             shared/chain-fixtures/contracts run scripts/compile-contracts)",
            path.display()
        )
    });
    let mut artifact: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    let abi = artifact["abi"].take();
    assert!(abi.is_array(), "{} has no abi array", path.display());
    let bytecode = artifact["bytecode"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no bytecode string", path.display()))
        .to_string();
    (abi, bytecode)
}

/// The tools directory of `scripts/install-test-deps` (`$STEWARD_TOOLS_DIR`, default
/// `~/.cache/steward-tools`).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("STEWARD_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/steward-tools")))
        .unwrap_or_else(|| PathBuf::from(".cache/steward-tools"))
}

/// The ABI and creation bytecode of a contract of the real Safe v1.4.1 release (npm
/// `@safe-global/safe-contracts@1.4.1`, installed by `scripts/install-test-deps`), by its
/// artifact path under `build/artifacts/contracts`, e.g. `"SafeL2.sol/SafeL2"` or
/// `"proxies/SafeProxyFactory.sol/SafeProxyFactory"`. Panics with instructions when the
/// package is missing: tests never skip.
pub fn safe_artifact(path: &str) -> (Value, String) {
    let file = tools_dir()
        .join("node_modules/@safe-global/safe-contracts/build/artifacts/contracts")
        .join(format!("{path}.json"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read the Safe artifact {}: {e}. The Safe tests need the real Safe v1.4.1 \
             contracts: run `scripts/install-test-deps` (npm @safe-global/safe-contracts@1.4.1), \
             or the whole suite with `scripts/test`.",
            file.display()
        )
    });
    let mut artifact: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", file.display()));
    let abi = artifact["abi"].take();
    let bytecode = artifact["bytecode"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no bytecode string", file.display()))
        .to_string();
    (abi, bytecode)
}

/// Private keys of anvil's first ten dev accounts (its default mnemonic, public knowledge: for
/// tests only).
pub const ANVIL_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// The real Safe v1.4.1 contracts deployed on an anvil node.
#[derive(Debug, Clone)]
pub struct SafeDeployment {
    /// `SafeL2` singleton (emits SafeMultiSigTransaction).
    pub singleton: String,
    pub factory: String,
    pub fallback_handler: String,
    pub multi_send: String,
    pub multi_send_call_only: String,
    /// SimulateTxAccessor (proposals are simulated through it).
    pub simulate_tx_accessor: String,
}

impl Anvil {
    /// Deploys the Safe v1.4.1 singleton (SafeL2), proxy factory, fallback handler, MultiSend,
    /// MultiSendCallOnly and SimulateTxAccessor from the npm package's artifacts.
    pub fn deploy_safe(&self) -> SafeDeployment {
        SafeDeployment {
            singleton: self.deploy(&safe_artifact("SafeL2.sol/SafeL2").1),
            factory: self.deploy(&safe_artifact("proxies/SafeProxyFactory.sol/SafeProxyFactory").1),
            fallback_handler: self.deploy(
                &safe_artifact(
                    "handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler",
                )
                .1,
            ),
            multi_send: self.deploy(&safe_artifact("libraries/MultiSend.sol/MultiSend").1),
            multi_send_call_only: self
                .deploy(&safe_artifact("libraries/MultiSendCallOnly.sol/MultiSendCallOnly").1),
            simulate_tx_accessor: self
                .deploy(&safe_artifact("accessors/SimulateTxAccessor.sol/SimulateTxAccessor").1),
        }
    }

    /// Creates a Safe proxy with `owners` and `threshold` (`setup` through
    /// `createProxyWithNonce`), returns its address.
    pub fn create_safe(
        &self,
        d: &SafeDeployment,
        owners: &[String],
        threshold: u64,
        salt: u64,
    ) -> String {
        let word =
            |hex: &str| format!("{:0>64}", hex.trim_start_matches("0x").to_ascii_lowercase());
        let num = |n: u64| format!("{n:064x}");
        // setup(address[] owners, uint256 threshold, address to, bytes data,
        //       address fallbackHandler, address paymentToken, uint256 payment, address paymentReceiver)
        let mut setup = String::from("b63e800d");
        setup += &num(8 * 32); // owners offset
        setup += &num(threshold);
        setup += &word("0");
        setup += &num(8 * 32 + 32 + 32 * owners.len() as u64); // data offset
        setup += &word(&d.fallback_handler);
        setup += &word("0");
        setup += &num(0);
        setup += &word("0");
        setup += &num(owners.len() as u64);
        for o in owners {
            setup += &word(o);
        }
        setup += &num(0); // empty data
        let setup_bytes = setup.len() / 2;
        // createProxyWithNonce(address _singleton, bytes initializer, uint256 saltNonce)
        let mut data = String::from("0x1688f0b9");
        data += &word(&d.singleton);
        data += &num(3 * 32);
        data += &num(salt);
        data += &num(setup_bytes as u64);
        data += &setup;
        // Selector (8 hex digits), then whole words.
        while (data.len() - 2) % 64 != 8 {
            data.push('0');
        }
        let receipt = self.send_transaction(json!({ "to": d.factory, "data": data }));
        let creation = receipt["logs"]
            .as_array()
            .and_then(|logs| {
                logs.iter().find(|l| {
                    l["address"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&d.factory))
                })
            })
            .unwrap_or_else(|| panic!("no ProxyCreation in {receipt}"));
        format!(
            "0x{}",
            &creation["topics"][1].as_str().expect("topic")[26..]
        )
    }
}
