//! `steward safe queue|show|sign|execute`: what a signer needs, over the api service's Safe
//! Transaction Service compatible HTTP API (`--api URL`, `STEWARD_API_URL`, or the
//! configuration's `api.listen`) and, to execute, the chain's RPC from the configuration.
//!
//! The CLI trusts the API for nothing it signs: before showing a hash as checked, signing it
//! or executing it, it recomputes the safeTxHash from the transaction's fields with the chain
//! id from its own configuration (or `--chain-id`), and refuses when it differs from the hash
//! asked for. Keys come from an encrypted JSON keystore; the password from a prompt without
//! echo or from `STEWARD_KEYSTORE_PASSWORD`; neither is ever printed or sent anywhere.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{hex, Address, Bytes, TxKind, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use steward_chain::{ChainError, EndpointPool};
use steward_config::Config;
use steward_safe::queue::Account;
use steward_safe::signature::{self, OwnerSignature};
use steward_safe::tx::{SafeTx, Version};

/// The environment variable a keystore password may come from (for automation).
pub const PASSWORD_ENV: &str = "STEWARD_KEYSTORE_PASSWORD";

#[derive(Debug, Subcommand)]
pub enum SafeCommand {
    /// Pending transactions of the configured Safes (or one), decoded: nonce, hash, what it
    /// calls, confirmations against the threshold, who signed, whether it would revert.
    Queue {
        /// A Safe by its `name` in the configuration, or its address.
        #[arg(long)]
        safe: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Everything a signer needs before signing one transaction, with its hash recomputed
    /// here from its fields and checked.
    Show {
        /// The transaction's safeTxHash.
        hash: String,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Sign a transaction and submit the confirmation: with a key from an encrypted JSON
    /// keystore (the hash itself, v 27/28) or, in builds with the `ledger` feature, on a Ledger
    /// (its Ethereum app signs messages only: eth_sign over the hash, v 31/32, which Safe
    /// accepts). The hash is recomputed here first; a mismatch is refused.
    Sign {
        /// The transaction's safeTxHash.
        hash: String,
        /// Encrypted JSON keystore (Web3 Secret Storage). Its password is asked for without
        /// echo, or read from STEWARD_KEYSTORE_PASSWORD.
        #[arg(long, required_unless_present = "ledger")]
        keystore: Option<PathBuf>,
        /// Sign on a Ledger with the Ledger Live account of this index (m/44'/60'/N'/0/0);
        /// the device shows the hash to confirm. Builds without the `ledger` feature refuse it.
        #[arg(long, conflicts_with = "keystore")]
        ledger: Option<usize>,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Send `execTransaction` from the keystore's account once the confirmations reach the
    /// threshold (signatures sorted by owner; EIP-1559 fees), and report the outcome. Needs
    /// the Safe's chain in the configuration.
    Execute {
        /// The transaction's safeTxHash.
        hash: String,
        /// Encrypted JSON keystore of the account that pays for the transaction.
        #[arg(long)]
        keystore: PathBuf,
        /// Highest fee per gas to pay, in gwei.
        #[arg(long, default_value_t = 200.0)]
        max_fee_gwei: f64,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The API's base URL (`http://host:port`, with or without `/api`). Default: the
    /// configuration's `api.listen`.
    #[arg(long, env = "STEWARD_API_URL")]
    api: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The Safe's chain id, for a Safe that is not in the configuration (the hash is
    /// recomputed with it; the API's word is not taken for it).
    #[arg(long)]
    chain_id: Option<u64>,
}

pub async fn run(cmd: SafeCommand, cfg: Config) -> anyhow::Result<()> {
    match cmd {
        SafeCommand::Queue { safe, api } => {
            queue(&cfg, &Api::new(&cfg, &api)?, safe.as_deref()).await
        }
        SafeCommand::Show { hash, api, chain } => {
            show(&cfg, &Api::new(&cfg, &api)?, &hash, chain.chain_id).await
        }
        SafeCommand::Sign {
            hash,
            keystore,
            ledger,
            api,
            chain,
        } => {
            let with = match (keystore, ledger) {
                (Some(k), None) => SignWith::Keystore(k),
                (None, Some(account)) => SignWith::Ledger(account),
                _ => bail!("sign with either --keystore FILE or --ledger ACCOUNT"),
            };
            sign(&cfg, &Api::new(&cfg, &api)?, &hash, with, chain.chain_id).await
        }
        SafeCommand::Execute {
            hash,
            keystore,
            max_fee_gwei,
            api,
        } => execute(&cfg, &Api::new(&cfg, &api)?, &hash, &keystore, max_fee_gwei).await,
    }
}

// ------------------------------------------------------------------ the API

struct Api {
    http: reqwest::Client,
    /// `…/api`, without a trailing slash.
    base: String,
}

impl Api {
    fn new(cfg: &Config, args: &ApiArgs) -> anyhow::Result<Self> {
        let raw = args.api.clone().unwrap_or_else(|| cfg.api.local_url());
        let mut base = raw.trim().trim_end_matches('/').to_owned();
        if !base.ends_with("/api") {
            base.push_str("/api");
        }
        let url = url::Url::parse(&base).with_context(|| format!("`{raw}` is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("the API URL must be http or https, not `{}`", url.scheme());
        }
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base })
    }

    fn shown(&self) -> String {
        // Only scheme and host: a URL may carry credentials.
        steward_config::redact_url(&self.base)
    }

    async fn request(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let r = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the Steward API at {} ({what}): {}",
                self.shown(),
                e.without_url()
            )
        })?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, body))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.request(self.http.get(format!("{}{path}", self.base)), path)
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.request(req, path).await
    }

    /// One transaction, or a clear error.
    async fn tx(&self, hash: B256) -> anyhow::Result<Value> {
        match self
            .get(&format!("/v2/multisig-transactions/{hash:#x}/"))
            .await?
        {
            (200, v) => Ok(v),
            (404, _) => bail!("the API knows no Safe transaction {hash:#x}"),
            (s, v) => bail!("the API answered {s} for {hash:#x}: {}", detail(&v)),
        }
    }
}

/// What an error body says.
fn detail(v: &Value) -> String {
    let d = v
        .get("detail")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string());
    match v.get("reason").and_then(Value::as_str) {
        Some(r) => format!("{r}: {d}"),
        None => d,
    }
}

// ------------------------------------------------------------------ transactions

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn num(v: &Value, field: &str) -> anyhow::Result<U256> {
    match v.get(field) {
        Some(Value::String(s)) => {
            U256::from_str_radix(s.trim(), 10).map_err(|e| anyhow!("{field} `{s}`: {e}"))
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .map(U256::from)
            .ok_or_else(|| anyhow!("{field} {n} is not a whole number")),
        Some(Value::Null) | None => Ok(U256::ZERO),
        Some(other) => bail!("{field} is {other}, not a number"),
    }
}

fn addr(v: &Value, field: &str) -> anyhow::Result<Address> {
    match v.get(field) {
        Some(Value::String(s)) => Address::from_str(s).map_err(|e| anyhow!("{field} `{s}`: {e}")),
        Some(Value::Null) | None => Ok(Address::ZERO),
        Some(other) => bail!("{field} is {other}, not an address"),
    }
}

/// The SafeTx the API describes.
fn safe_tx(v: &Value) -> anyhow::Result<SafeTx> {
    let data = match v.get("data") {
        Some(Value::String(s)) => {
            hex::decode(s.trim_start_matches("0x")).map_err(|e| anyhow!("data: {e}"))?
        }
        _ => Vec::new(),
    };
    let operation = v
        .get("operation")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("operation is missing"))?;
    Ok(SafeTx {
        to: addr(v, "to")?,
        value: num(v, "value")?,
        data: Bytes::from(data),
        operation: u8::try_from(operation).map_err(|_| anyhow!("operation {operation}"))?,
        safe_tx_gas: num(v, "safeTxGas")?,
        base_gas: num(v, "baseGas")?,
        gas_price: num(v, "gasPrice")?,
        gas_token: addr(v, "gasToken")?,
        refund_receiver: addr(v, "refundReceiver")?,
        nonce: num(v, "nonce")?,
    })
}

fn parse_hash(hash: &str) -> anyhow::Result<B256> {
    B256::from_str(hash.trim())
        .map_err(|_| anyhow!("`{hash}` is not a safeTxHash: 0x and 64 hex digits"))
}

/// Where a Safe lives, from the configuration (or `--chain-id`).
struct Where {
    name: Option<String>,
    chain_name: Option<String>,
    chain_id: u64,
    pool: Option<EndpointPool>,
}

fn locate(cfg: &Config, safe: Address, chain_id: Option<u64>) -> anyhow::Result<Where> {
    let configured = cfg
        .safes
        .iter()
        .find(|s| Address::from_str(s.address.trim()).ok() == Some(safe))
        .and_then(|s| {
            cfg.chains
                .iter()
                .find(|c| c.name == s.chain)
                .map(|c| (s, c))
        });
    match (configured, chain_id) {
        (Some((s, c)), given) => {
            if let Some(g) = given.filter(|g| *g != c.chain_id) {
                bail!("--chain-id {g} contradicts the configuration: Safe `{}` is on chain `{}` ({})", s.name, c.name, c.chain_id);
            }
            Ok(Where {
                name: Some(s.name.clone()),
                chain_name: Some(c.name.clone()),
                chain_id: c.chain_id,
                pool: Some(steward_safe::account::pool_for(c)?),
            })
        }
        (None, Some(id)) => Ok(Where { name: None, chain_name: None, chain_id: id, pool: None }),
        (None, None) => bail!(
            "{safe} is not in this configuration's `safes:`, so its chain is unknown here: pass --chain-id \
             (the hash is recomputed with it; the API's word is not taken for the chain)"
        ),
    }
}

/// The Safe now: from its chain when the configuration has it, else from the API.
async fn account(api: &Api, w: &Where, safe: Address) -> anyhow::Result<(Account, &'static str)> {
    if let Some(pool) = &w.pool {
        return Ok((steward_safe::account::read(pool, safe).await?, "chain"));
    }
    let (status, v) = api
        .get(&format!("/v1/safes/{}/", safe.to_checksum(None)))
        .await?;
    if status != 200 {
        bail!("the API answered {status} for Safe {safe}: {}", detail(&v));
    }
    let owners = v["owners"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_str().and_then(|s| Address::from_str(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        Account {
            safe,
            chain_id: w.chain_id,
            owners,
            threshold: v["threshold"].as_u64().unwrap_or(0) as u32,
            nonce: text(&v, "nonce").parse().unwrap_or(0),
            version: text(&v, "version").to_owned(),
        },
        "API",
    ))
}

/// The transaction `hash` from the API, its Safe's whereabouts and state, with the hash
/// recomputed here from the fields (an error if it differs).
struct Checked {
    v: Value,
    tx: SafeTx,
    safe: Address,
    hash: B256,
    w: Where,
    account: Account,
    account_from: &'static str,
}

async fn checked(
    cfg: &Config,
    api: &Api,
    hash: &str,
    chain_id: Option<u64>,
) -> anyhow::Result<Checked> {
    let hash = parse_hash(hash)?;
    let v = api.tx(hash).await?;
    let safe = Address::from_str(text(&v, "safe"))
        .map_err(|_| anyhow!("the API gave no Safe address for {hash:#x}"))?;
    let tx =
        safe_tx(&v).with_context(|| format!("the API's transaction {hash:#x} does not read"))?;
    let w = locate(cfg, safe, chain_id)?;
    let (account, account_from) = account(api, &w, safe).await?;
    let version = Version::parse(&account.version);
    let recomputed = tx.hash(w.chain_id, safe, version);
    if recomputed != hash {
        bail!(
            "REFUSED: the fields the API gave for {hash:#x} hash to {recomputed:#x} (Safe {safe} v{} on chain {}): \
             the API's transaction is not the one asked for. Nothing was signed or sent.",
            account.version,
            w.chain_id
        );
    }
    Ok(Checked {
        v,
        tx,
        safe,
        hash,
        w,
        account,
        account_from,
    })
}

// ------------------------------------------------------------------ rendering

fn short(a: &str) -> String {
    if a.len() > 14 && a.starts_with("0x") {
        format!("{}…{}", &a[..8], &a[a.len() - 4..])
    } else {
        a.to_owned()
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(value_text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// One call of the Safe Transaction Service's `dataDecoded`, nested through MultiSend.
fn render_decoded(d: &Value, indent: usize, out: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    let method = text(d, "method");
    let params = d["parameters"].as_array().cloned().unwrap_or_default();
    let args: Vec<String> = params
        .iter()
        .filter(|p| p.get("valueDecoded").is_none())
        .map(|p| format!("{}: {}", text(p, "name"), value_text(&p["value"])))
        .collect();
    out.push(format!("{pad}{method}({})", args.join(", ")));
    for p in &params {
        if let Some(calls) = p.get("valueDecoded").and_then(Value::as_array) {
            for (i, c) in calls.iter().enumerate() {
                let op = if c["operation"].as_u64() == Some(1) {
                    "DELEGATECALL"
                } else {
                    "CALL"
                };
                let head = format!(
                    "{pad}  {}. {op} {} value {}",
                    i + 1,
                    text(c, "to"),
                    value_text(&c["value"])
                );
                match c.get("dataDecoded").filter(|d| d.is_object()) {
                    Some(inner) => {
                        out.push(format!("{head}:"));
                        render_decoded(inner, indent + 6, out);
                    }
                    None if c["data"].is_string() => {
                        out.push(format!("{head}: data {} (no ABI known)", text(c, "data")))
                    }
                    None => out.push(head),
                }
            }
        }
    }
}

/// The safe service's own description (`steward.decoded`), when the API had no ABI.
fn render_steward_decoded(d: &Value, indent: usize, out: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    let args = d["args"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}: {}", value_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut line = format!("{pad}{}", text(d, "method"));
    if d.get("args").is_some() {
        line.push_str(&format!("({args})"));
    }
    if let Some(data) = d.get("data").and_then(Value::as_str) {
        line.push_str(&format!(" data {data}"));
    }
    out.push(line);
    for (i, c) in d["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        out.push(format!(
            "{pad}  {}. {} {} value {}:",
            i + 1,
            text(c, "operation").to_uppercase(),
            text(c, "to"),
            text(c, "value")
        ));
        render_steward_decoded(c, indent + 6, out);
    }
}

fn calls(v: &Value, indent: usize) -> Vec<String> {
    let mut out = Vec::new();
    if v["dataDecoded"].is_object() {
        render_decoded(&v["dataDecoded"], indent, &mut out);
    } else if v["steward"]["decoded"].is_object() {
        render_steward_decoded(&v["steward"]["decoded"], indent, &mut out);
    } else if v["data"].is_string() {
        out.push(format!(
            "{}data {} (no ABI known)",
            " ".repeat(indent),
            text(v, "data")
        ));
    } else {
        out.push(format!(
            "{}(no call data: a transfer of {} wei)",
            " ".repeat(indent),
            text(v, "value")
        ));
    }
    out
}

fn confirmations(v: &Value) -> Vec<Value> {
    v["confirmations"].as_array().cloned().unwrap_or_default()
}

fn simulation(v: &Value) -> String {
    if v["steward"]["wouldRevert"] == true {
        let why = v["steward"]["simulation"]
            .as_str()
            .unwrap_or("no reason given");
        format!("WOULD REVERT: {why}")
    } else {
        "passes (simulated when proposed)".to_owned()
    }
}

// ------------------------------------------------------------------ commands

async fn queue(cfg: &Config, api: &Api, only: Option<&str>) -> anyhow::Result<()> {
    let mut safes: Vec<(String, Address)> = Vec::new();
    for s in &cfg.safes {
        if let Ok(a) = Address::from_str(s.address.trim()) {
            safes.push((s.name.clone(), a));
        }
    }
    if safes.is_empty() {
        // No configuration at hand: the API says which Safes it serves.
        let (_, about) = api.get("/v1/about/").await?;
        for s in about["steward"]["safes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Ok(a) = Address::from_str(text(&s, "address")) {
                safes.push((text(&s, "name").to_owned(), a));
            }
        }
    }
    if let Some(only) = only {
        let wanted = Address::from_str(only.trim()).ok();
        safes.retain(|(n, a)| n == only || Some(*a) == wanted);
        if safes.is_empty() {
            match wanted {
                Some(a) => safes.push((String::new(), a)),
                None => bail!("no Safe named `{only}` (give its name in `safes:` or its address)"),
            }
        }
    }
    if safes.is_empty() {
        println!(
            "no Safes: none in the configuration's `safes:`, none served by the API at {}",
            api.shown()
        );
        return Ok(());
    }
    for (name, safe) in safes {
        let cs = safe.to_checksum(None);
        let (status, info) = api.get(&format!("/v1/safes/{cs}/")).await?;
        let (nonce, threshold, owners) = if status == 200 {
            (
                text(&info, "nonce").to_owned(),
                info["threshold"].to_string(),
                info["owners"].as_array().map_or(0, Vec::len),
            )
        } else {
            println!(
                "{name} {cs}: the API cannot read this Safe ({status}: {})",
                detail(&info)
            );
            continue;
        };
        let (status, list) = api
            .get(&format!("/v2/safes/{cs}/multisig-transactions/?executed=false&nonce__gte={nonce}&ordering=nonce&limit=200"))
            .await?;
        if status != 200 {
            bail!(
                "the API answered {status} for the queue of {cs}: {}",
                detail(&list)
            );
        }
        let results = list["results"].as_array().cloned().unwrap_or_default();
        println!(
            "{name} {cs}: nonce {nonce}, threshold {threshold} of {owners} owners, {} pending",
            results.len()
        );
        for t in &results {
            let conf = confirmations(t);
            let required = t["confirmationsRequired"].as_u64().unwrap_or(0);
            let signers: Vec<String> = conf.iter().map(|c| short(text(c, "owner"))).collect();
            let mut lines = calls(t, 0);
            println!(
                "  nonce {:<4} {}  {}",
                text(t, "nonce"),
                text(t, "safeTxHash"),
                lines.remove(0)
            );
            for l in lines {
                println!("  {:<10}{}{l}", "", " ".repeat(67));
            }
            let mut status = format!("signed {}/{required}", conf.len());
            if !signers.is_empty() {
                status.push_str(&format!(" by {}", signers.join(", ")));
            }
            if conf.len() as u64 >= required && required > 0 {
                status.push_str(" — ready to execute");
            }
            if t["steward"]["wouldRevert"] == true {
                status.push_str(&format!(" — WARNING: {}", simulation(t)));
            }
            println!("             {status}");
        }
    }
    Ok(())
}

async fn show(cfg: &Config, api: &Api, hash: &str, chain_id: Option<u64>) -> anyhow::Result<()> {
    let c = checked(cfg, api, hash, chain_id).await?;
    let v = &c.v;
    let a = &c.account;
    let op = if c.tx.operation == 1 {
        "DELEGATECALL"
    } else {
        "CALL"
    };
    let chain = match &c.w.chain_name {
        Some(n) => format!("{n} ({})", c.w.chain_id),
        None => format!("{} (from --chain-id)", c.w.chain_id),
    };
    println!("Safe transaction {:#x}", c.hash);
    println!("  chain          {chain}");
    println!(
        "  Safe           {}{} v{}: threshold {} of {} owners, nonce now {} (read from the {})",
        c.w.name
            .as_deref()
            .map(|n| format!("{n} "))
            .unwrap_or_default(),
        c.safe.to_checksum(None),
        a.version,
        a.threshold,
        a.owners.len(),
        a.nonce,
        c.account_from
    );
    println!(
        "  status         {}",
        v["steward"]["status"]
            .as_str()
            .unwrap_or(if v["isExecuted"] == true {
                "executed"
            } else {
                "pending"
            })
    );
    println!("  nonce          {}", c.tx.nonce);
    println!("  to             {}", c.tx.to.to_checksum(None));
    println!("  value          {} wei", c.tx.value);
    println!("  operation      {op}");
    println!("  data           {} bytes", c.tx.data.len());
    println!(
        "  gas            safeTxGas {}, baseGas {}, gasPrice {}, gasToken {}, refundReceiver {}",
        c.tx.safe_tx_gas,
        c.tx.base_gas,
        c.tx.gas_price,
        c.tx.gas_token.to_checksum(None),
        c.tx.refund_receiver.to_checksum(None)
    );
    if let Some(r) = v["steward"]["reason"].as_str().filter(|r| !r.is_empty()) {
        println!("  reason         {r}");
    }
    println!(
        "  proposed       {} by {} (origin {})",
        text(v, "submissionDate"),
        v["proposer"].as_str().unwrap_or("Steward"),
        v["origin"]
            .as_str()
            .filter(|o| !o.is_empty())
            .unwrap_or("-")
    );
    println!(
        "  hash           recomputed here from the fields for chain {}: matches",
        c.w.chain_id
    );
    println!("  simulation     {}", simulation(v));
    if let Some(f) = v["steward"]["failure"].as_str() {
        println!("  failed         {f}");
    }
    println!("  calls");
    for l in calls(v, 4) {
        println!("{l}");
    }
    let conf = confirmations(v);
    let required = v["confirmationsRequired"]
        .as_u64()
        .unwrap_or(u64::from(a.threshold));
    println!("  confirmations  {} of {required}", conf.len());
    for cf in &conf {
        let owner = text(cf, "owner");
        let current = Address::from_str(owner).is_ok_and(|o| a.owners.contains(&o));
        println!(
            "    {owner} {} {}{}",
            text(cf, "signatureType"),
            text(cf, "submissionDate"),
            if current { "" } else { " (no longer an owner)" }
        );
    }
    if v["isExecuted"] == true {
        println!(
            "  executed       transaction {} in block {}",
            text(v, "transactionHash"),
            v["blockNumber"]
        );
    }
    Ok(())
}

/// A keystore's password: from STEWARD_KEYSTORE_PASSWORD, else asked on the terminal.
fn password(keystore: &Path) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    prompt_hidden(&format!("password for {}: ", keystore.display()))
}

/// Asks on the controlling terminal with echo off (`stty -echo`), and turns echo back on
/// whatever happens.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .with_context(|| {
                format!("no terminal to ask for the keystore password on: set {PASSWORD_ENV}")
            })
    };
    let tty = open()?;
    let stty = |arg: &str| -> anyhow::Result<()> {
        let ok = std::process::Command::new("stty")
            .arg(arg)
            .stdin(open()?)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            bail!("cannot turn the terminal's echo {arg}: set {PASSWORD_ENV} instead")
        }
    };
    stty("-echo")?;
    struct Echo;
    impl Drop for Echo {
        fn drop(&mut self) {
            if let Ok(t) = std::fs::File::open("/dev/tty") {
                let _ = std::process::Command::new("stty")
                    .arg("echo")
                    .stdin(t)
                    .status();
            }
        }
    }
    let _echo = Echo;
    let mut out = tty.try_clone()?;
    write!(out, "{prompt}")?;
    out.flush()?;
    let mut line = String::new();
    std::io::BufReader::new(tty).read_line(&mut line)?;
    writeln!(out)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn unlock(keystore: &Path) -> anyhow::Result<PrivateKeySigner> {
    let pw = password(keystore)?;
    PrivateKeySigner::decrypt_keystore(keystore, pw).map_err(|e| {
        // The error never holds the password; it may say the MAC did not match.
        anyhow!(
            "cannot open the keystore {}: {e} (wrong password?)",
            keystore.display()
        )
    })
}

/// Where a confirmation's key is.
enum SignWith {
    Keystore(PathBuf),
    /// A Ledger Live account index.
    Ledger(usize),
}

/// A signer ready to confirm: the key itself, or a Ledger.
enum Signing {
    Key(PrivateKeySigner),
    #[cfg(feature = "ledger")]
    Ledger(alloy_signer_ledger::LedgerSigner),
}

impl Signing {
    async fn open(with: &SignWith, chain_id: u64) -> anyhow::Result<Self> {
        match with {
            SignWith::Keystore(k) => Ok(Self::Key(unlock(k)?)),
            #[cfg(feature = "ledger")]
            SignWith::Ledger(account) => {
                use alloy_signer_ledger::{HDPath, LedgerSigner};
                let l = LedgerSigner::new(HDPath::LedgerLive(*account), Some(chain_id))
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "cannot reach the Ledger (account {account}): {e}; is it connected, \
                             unlocked, with the Ethereum app open?"
                        )
                    })?;
                Ok(Self::Ledger(l))
            }
            #[cfg(not(feature = "ledger"))]
            SignWith::Ledger(account) => {
                let _ = chain_id;
                bail!(
                    "--ledger {account}: this steward was built without Ledger support; build \
                     it with `cargo build --release -p steward --features ledger`"
                )
            }
        }
    }

    fn address(&self) -> Address {
        match self {
            Self::Key(k) => k.address(),
            #[cfg(feature = "ledger")]
            Self::Ledger(l) => alloy::signers::Signer::address(l),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Self::Key(_) => "the keystore's account",
            #[cfg(feature = "ledger")]
            Self::Ledger(_) => "the Ledger's account",
        }
    }

    /// The confirmation's 65 bytes for `hash`.
    async fn confirm(&self, hash: B256) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::Key(k) => Ok(k
                .sign_hash_sync(&hash)
                .context("signing failed")?
                .as_bytes()
                .to_vec()),
            #[cfg(feature = "ledger")]
            Self::Ledger(l) => {
                eprintln!("confirm on the Ledger: sign the message {hash:#x}");
                let sig = alloy::signers::Signer::sign_message(l, hash.as_slice())
                    .await
                    .map_err(|e| anyhow!("the Ledger did not sign: {e}"))?;
                Ok(eth_sign_confirmation(&sig))
            }
        }
    }
}

/// An `eth_sign` (personal message) signature over a safeTxHash as Safe takes it: v moved
/// from 27/28 to 31/32, so the contract hashes the message prefix before recovering.
#[cfg_attr(not(feature = "ledger"), allow(dead_code))]
fn eth_sign_confirmation(sig: &alloy::primitives::Signature) -> Vec<u8> {
    let mut b = sig.as_bytes().to_vec();
    b[64] += 4;
    b
}

async fn sign(
    cfg: &Config,
    api: &Api,
    hash: &str,
    with: SignWith,
    chain_id: Option<u64>,
) -> anyhow::Result<()> {
    let c = checked(cfg, api, hash, chain_id).await?;
    if c.v["isExecuted"] == true {
        bail!(
            "{:#x} is already executed (transaction {})",
            c.hash,
            text(&c.v, "transactionHash")
        );
    }
    let signer = Signing::open(&with, c.w.chain_id).await?;
    let me = signer.address();
    if !c.account.owners.contains(&me) {
        bail!(
            "{me} ({}) is not an owner of {}: refusing to sign",
            signer.what(),
            c.safe
        );
    }
    if confirmations(&c.v)
        .iter()
        .any(|cf| Address::from_str(text(cf, "owner")).ok() == Some(me))
    {
        println!("{me} has already signed {:#x}; nothing to do", c.hash);
        return Ok(());
    }
    let sig = signer.confirm(c.hash).await?;
    let sig_hex = format!("0x{}", hex::encode(&sig));
    let (status, body) = api
        .post(
            &format!("/v1/multisig-transactions/{:#x}/confirmations/", c.hash),
            &json!({ "signature": sig_hex }),
        )
        .await?;
    if status != 201 {
        bail!(
            "the signature was not accepted ({status}): {}",
            detail(&body)
        );
    }
    let after = api.tx(c.hash).await?;
    let n = confirmations(&after).len();
    let required = after["confirmationsRequired"]
        .as_u64()
        .unwrap_or(u64::from(c.account.threshold));
    println!(
        "signed {:#x} as {me}: {n} of {required} confirmations",
        c.hash
    );
    if n as u64 >= required {
        println!(
            "the threshold is met: `steward safe execute {:#x}` (or the relayer) can execute it",
            c.hash
        );
    }
    Ok(())
}

async fn execute(
    cfg: &Config,
    api: &Api,
    hash: &str,
    keystore: &Path,
    max_fee_gwei: f64,
) -> anyhow::Result<()> {
    let c = checked(cfg, api, hash, None).await?;
    let Some(pool) = c.w.pool.clone() else {
        bail!("executing needs the Safe's chain in the configuration (`safes:` and `chains:`)");
    };
    if c.v["isExecuted"] == true {
        bail!(
            "{:#x} is already executed (transaction {})",
            c.hash,
            text(&c.v, "transactionHash")
        );
    }
    let a = &c.account;
    let nonce = u64::try_from(c.tx.nonce).unwrap_or(u64::MAX);
    if nonce != a.nonce {
        bail!(
            "nonce {nonce} is not the Safe's next: its nonce is {} ({})",
            a.nonce,
            if nonce < a.nonce {
                "this nonce is used"
            } else {
                "earlier nonces wait"
            }
        );
    }
    let signer = unlock(keystore)?;
    let me = signer.address();
    // The confirmations that count now: valid, by current owners.
    let mut sigs: Vec<OwnerSignature> = Vec::new();
    for cf in confirmations(&c.v) {
        let raw = hex::decode(text(&cf, "signature").trim_start_matches("0x")).unwrap_or_default();
        match signature::parse(&raw, c.hash) {
            Ok(s) if a.owners.contains(&s.owner) && !sigs.iter().any(|x| x.owner == s.owner) => {
                sigs.push(s)
            }
            Ok(s) => println!("not counted: {} is no longer an owner", s.owner),
            Err(e) => println!(
                "not counted: a confirmation of {} does not parse ({e})",
                text(&cf, "owner")
            ),
        }
    }
    // An owner who executes approves by sending (v = 1, r = the sender).
    if a.owners.contains(&me)
        && !sigs.iter().any(|s| s.owner == me)
        && (sigs.len() as u32) < a.threshold
    {
        let raw = signature::approved_hash_signature(me);
        sigs.push(signature::parse(&raw, c.hash).map_err(|e| anyhow!("{e}"))?);
        println!("{me} executes as an owner: its approval counts");
    }
    if (sigs.len() as u32) < a.threshold {
        bail!(
            "{} of {} confirmations: not enough to execute",
            sigs.len(),
            a.threshold
        );
    }
    sigs.sort_by_key(|s| s.owner);
    let packed = signature::pack(&sigs);
    let data = steward_safe::account::exec_calldata(&c.tx, &packed);
    // Would it go through? Asked of the node, from the account that will send it.
    let call = json!({ "from": me, "to": c.safe, "data": data });
    if let Err(e) = pool.request::<_, Bytes>("eth_call", (call, "latest")).await {
        let why = match &e {
            ChainError::Reverted { data: Some(d), .. } => steward_safe::simulate::revert_reason(d),
            ChainError::Reverted { message, .. } => message.clone(),
            other => return Err(anyhow!("cannot simulate the execution: {other}")),
        };
        bail!("execTransaction would revert ({why}): nothing was sent");
    }
    let gas = pool
        .estimate_gas(me, c.safe, data.clone(), U256::ZERO)
        .await?;
    let gwei = 1_000_000_000u128;
    let cap = (max_fee_gwei * 1e9) as u128;
    let base = pool.base_fee().await?;
    let tip = pool
        .request::<_, U256>("eth_maxPriorityFeePerGas", ())
        .await
        .map(|t| t.saturating_to::<u128>())
        .unwrap_or(gwei);
    let tip = tip.min(cap);
    let max_fee = (base * 2 + tip).min(cap);
    if max_fee < base + tip.min(1) {
        bail!(
            "the base fee ({:.2} gwei) is above --max-fee-gwei {max_fee_gwei}",
            base as f64 / 1e9
        );
    }
    let mut tx = TxEip1559 {
        chain_id: c.w.chain_id,
        nonce: pool.transaction_count(me, true).await?,
        gas_limit: gas + gas / 5 + 10_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(c.safe),
        value: U256::ZERO,
        access_list: Default::default(),
        input: data,
    };
    let sig = signer
        .sign_transaction_sync(&mut tx)
        .context("signing the transaction failed")?;
    let signed = tx.into_signed(sig);
    let tx_hash = *signed.hash();
    let raw = TxEnvelope::from(signed).encoded_2718();
    pool.send_raw_transaction(raw.into(), tx_hash).await?;
    println!(
        "sent {tx_hash:#x} from {me} (execTransaction of {:#x}); waiting for its receipt",
        c.hash
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(r) = pool.receipt(tx_hash).await? {
            let block = r.block_number.to::<u64>();
            match (r.success(), steward_safe::relayer::execution_outcome(&r.logs, c.safe, c.hash)) {
                (true, Some(true)) => {
                    println!("executed: transaction {tx_hash:#x} in block {block}, ExecutionSuccess");
                    return Ok(());
                }
                (true, Some(false)) => bail!("transaction {tx_hash:#x} (block {block}) ran, but the Safe reported ExecutionFailure: the inner call failed and the nonce is used"),
                (true, None) => bail!("transaction {tx_hash:#x} (block {block}) succeeded without an execution event of {:#x}", c.hash),
                (false, _) => bail!("transaction {tx_hash:#x} reverted in block {block}"),
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{tx_hash:#x} has no receipt after 5 minutes; it may still be mined (look it up, or run again to resend)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_url_is_normalized_to_its_api_root() {
        let cfg = Config::default();
        let base = |u: Option<&str>| {
            Api::new(
                &cfg,
                &ApiArgs {
                    api: u.map(str::to_owned),
                },
            )
            .unwrap()
            .base
        };
        assert_eq!(base(None), "http://127.0.0.1:8080/api");
        assert_eq!(base(Some("http://h:1")), "http://h:1/api");
        assert_eq!(base(Some("http://h:1/api/")), "http://h:1/api");
        assert!(Api::new(
            &cfg,
            &ApiArgs {
                api: Some("ftp://h".into())
            }
        )
        .is_err());
    }

    #[test]
    fn decoded_calls_are_rendered_nested() {
        let v = json!({"dataDecoded": {"method": "multiSend", "parameters": [{"name": "transactions", "type": "bytes", "value": "0x00",
        "valueDecoded": [
            {"operation": 0, "to": "0xA", "value": "0", "data": "0x01", "dataDecoded": {"method": "transfer", "parameters": [
                {"name": "to", "type": "address", "value": "0xB"}, {"name": "value", "type": "uint256", "value": "5"}]}},
            {"operation": 1, "to": "0xC", "value": "7", "data": null, "dataDecoded": null}
        ]}]}});
        assert_eq!(
            calls(&v, 0),
            vec![
                "multiSend()".to_owned(),
                "  1. CALL 0xA value 0:".to_owned(),
                "      transfer(to: 0xB, value: 5)".to_owned(),
                "  2. DELEGATECALL 0xC value 7".to_owned(),
            ]
        );
    }

    #[test]
    fn an_eth_sign_confirmation_is_taken_as_eth_sign_by_its_owner() {
        // What a Ledger returns for a personal message is what a local key returns for it.
        let key = PrivateKeySigner::from_bytes(&B256::repeat_byte(7)).unwrap();
        let hash = B256::repeat_byte(0xab);
        let sig = key.sign_message_sync(hash.as_slice()).unwrap();
        let raw = eth_sign_confirmation(&sig);
        assert!(raw[64] == 31 || raw[64] == 32, "v = {}", raw[64]);
        let parsed = signature::parse(&raw, hash).unwrap();
        assert_eq!(parsed.owner, key.address());
        assert_eq!(parsed.kind, signature::Kind::EthSign);
        // Unchanged, the same bytes are an EIP-712-style signature of another signer.
        let as_typed = signature::parse(&sig.as_bytes(), hash).unwrap();
        assert_ne!(as_typed.owner, key.address());
    }
}
