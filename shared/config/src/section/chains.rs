//! `chains:` — the EVM chains the watcher follows and what it watches on each.
//!
//! This module holds the shape of the section and the checks that need nothing but the
//! values themselves (names, ranges, URL schemes, address syntax). What needs the ABI
//! machinery — event and function signatures, ABI files, watch packs, call arguments, cron
//! schedules — is checked by the watcher when the configuration is loaded
//! (`steward_watcher::check_config`), with the same file:line:column errors.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::{is_token, join, TOKEN_PATTERN};
use crate::duration::{self, HumanDuration};
use crate::secret::Secret;
use crate::validate::Validator;

/// Multicall3's address, the same on every chain where it is deployed.
pub const MULTICALL3: &str = "0xcA11bde05977b3631167028862bE2a173976CA11";

/// One EVM chain: its RPC endpoints, how final a block must be, and what to watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Name of the chain in logs, metrics and commands (`steward watch backfill --chain
    /// mainnet`). Letters, digits, `_` and `-`; unique.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub name: String,
    /// The chain id every endpoint must serve (`eth_chainId`); an endpoint serving
    /// another chain is refused. Unique.
    pub chain_id: u64,
    /// JSON-RPC endpoints, HTTP(S) or WebSocket, at least one. The watcher sends each
    /// request to the healthiest and fails over to the others.
    pub rpc: Vec<RpcConfig>,
    /// Deadline of one RPC request on one endpoint.
    #[serde(default = "default_rpc_timeout", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub rpc_timeout: Duration,
    /// Further attempts of a failed request, on other endpoints first.
    #[serde(default = "default_rpc_retries")]
    pub rpc_retries: u32,
    /// How long an endpoint that failed rests before it is probed and used again.
    #[serde(default = "default_rpc_cooldown", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub rpc_cooldown: Duration,
    /// When a block is final enough to report: a number of confirmations (`12`: the
    /// block 12 below the head), or the node's `safe` or `finalized` block. `0` follows
    /// the head; reorgs are then detected and announced.
    #[serde(default)]
    pub finality: Finality,
    /// How often the chain's head is polled.
    #[serde(default = "default_poll_interval", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub poll_interval: Duration,
    /// Recent blocks whose hashes (and the events emitted from them) are kept to detect
    /// a reorg and retract what it undid. A reorg deeper than this cannot be repaired.
    #[serde(default = "default_reorg_window")]
    pub reorg_window: u64,
    /// Where the very first run starts: `latest` (the current final block) or a block
    /// number. Later runs resume where the last one stopped.
    #[serde(default)]
    pub start_block: StartBlock,
    /// Emit `chain.block.observed` for every block.
    #[serde(default = "yes")]
    pub blocks: bool,
    /// Most blocks in one `eth_getLogs` request. Ranges a provider refuses are split
    /// automatically; this is the starting size.
    #[serde(default = "default_max_block_range")]
    pub max_block_range: u64,
    /// `eth_getLogs` requests in flight while catching up, 1 to 64.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Multicall3 contract used to batch contract-state calls: its address (the canonical
    /// `0xcA11bde05977b3631167028862bE2a173976CA11` by default), or `disabled` to call each
    /// function with a request of its own.
    #[serde(default = "default_multicall")]
    pub multicall: String,
    /// Block explorer base URL (`https://etherscan.io`), for links in messages.
    #[serde(default)]
    pub explorer: Option<String>,
    /// Contracts to watch: their events, their state, or both.
    #[serde(default)]
    pub watches: Vec<WatchConfig>,
    /// Native and ERC-20 balances of named accounts.
    #[serde(default)]
    pub balances: Vec<BalanceConfig>,
}

/// One RPC endpoint.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    /// `https://…`, `http://…`, `wss://…` or `ws://…`. A secret (provider URLs carry API
    /// keys): write it as `${MAINNET_RPC_URL}` or with the key interpolated. Printed as
    /// scheme and host only.
    pub url: Secret,
    /// Requests per second this endpoint may receive; absent for no limit.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Preference among healthy endpoints (higher is preferred), at least 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl std::fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConfig")
            .field("url", &rpc_url_for_display(self.url.expose()))
            .field("rate_limit", &self.rate_limit)
            .field("weight", &self.weight)
            .finish()
    }
}

/// How final a block must be before the watcher reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Finality {
    /// This many blocks below the head.
    Confirmations(u64),
    /// The block the node tags `safe` or `finalized`.
    Tag(FinalityTag),
}

impl Default for Finality {
    fn default() -> Self {
        Finality::Confirmations(0)
    }
}

// YAML scalars arrive as text (the parser keeps `12` and `"12"` alike), so these two read
// a scalar and decide themselves.
impl<'de> Deserialize<'de> for Finality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Scalar::deserialize(d)?.0;
        match text.trim() {
            "safe" => Ok(Finality::Tag(FinalityTag::Safe)),
            "finalized" => Ok(Finality::Tag(FinalityTag::Finalized)),
            t => t.parse().map(Finality::Confirmations).map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected a number of confirmations (`12`), `safe` or `finalized` (got `{t}`)"
                ))
            }),
        }
    }
}

impl<'de> Deserialize<'de> for StartBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Scalar::deserialize(d)?.0;
        match text.trim() {
            "latest" => Ok(StartBlock::Named(Latest::Latest)),
            t => t.parse().map(StartBlock::Number).map_err(|_| {
                serde::de::Error::custom(format!("expected a block number or `latest` (got `{t}`)"))
            }),
        }
    }
}

/// Block tags a node reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FinalityTag {
    /// Unlikely to be reorged (post-merge: justified).
    Safe,
    /// Cannot be reorged without slashing (post-merge: finalized).
    Finalized,
}

impl FinalityTag {
    /// The JSON-RPC block tag.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalityTag::Safe => "safe",
            FinalityTag::Finalized => "finalized",
        }
    }
}

/// Where a chain's first run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StartBlock {
    /// At this block number.
    Number(u64),
    /// At the current final block.
    Named(Latest),
}

impl Default for StartBlock {
    fn default() -> Self {
        StartBlock::Named(Latest::Latest)
    }
}

/// The word `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Latest {
    /// The current final block.
    Latest,
}

/// One watched set of contracts.
///
/// Either a `pack` (a preset shipped with Steward: ABI, events and state polls of a known
/// system, e.g. `aave-v3-pool`), or your own `abi`/`events`/`calls`; a pack's watch may add
/// `events` and `calls` of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Name of the watch, carried by every event it produces (`watch` in
    /// `chain.log.observed`). Letters, digits, `_` and `-`; unique within the chain.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub name: String,
    /// A watch pack: `aave-v3-pool`, `chainlink-feed`, `safe`, `lido-staking-router`,
    /// `lido-node-operators-registry`, `lido-csm`, `eigenlayer-allocation-manager`,
    /// `oz-governor`. See `steward watch packs`.
    #[serde(default)]
    pub pack: Option<String>,
    /// The contract, as a checksummed (or all-lowercase) `0x` address. Shorthand for a
    /// one-element `addresses`.
    #[serde(default)]
    pub address: Option<String>,
    /// The contracts.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// A JSON ABI file (an ABI array, or a compiler artifact with an `abi` field),
    /// relative to this configuration file.
    #[serde(default)]
    pub abi: Option<PathBuf>,
    /// Events to decode: names from the ABI (`Transfer`) or full signatures (`event
    /// Transfer(address indexed from, address indexed to, uint256 value)`). With an ABI
    /// and no `events`, every event of the ABI.
    #[serde(default)]
    pub events: Vec<String>,
    /// View calls whose results are reported as `chain.state.observed`.
    #[serde(default)]
    pub calls: Vec<CallConfig>,
    /// Values for the pack's parameters (e.g. `borrowers` for `aave-v3-pool`), each a list.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<Scalar>>,
    /// Overrides the interval, in blocks, of the pack's own state polls.
    #[serde(default)]
    pub every: Option<u64>,
}

/// A view call evaluated every N blocks or on a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    /// A function name from the watch's ABI (`getUserAccountData`), or a full signature
    /// (`function balanceOf(address owner) view returns (uint256)`); the return types
    /// must be given, since they decode the answer.
    pub function: String,
    /// Arguments, one per input, as text: addresses, decimal or `0x` integers, `true`,
    /// `[1, 2]` for arrays, `(a, b)` for tuples.
    #[serde(default)]
    pub args: Vec<Scalar>,
    /// The contract to call; by default each of the watch's addresses.
    #[serde(default)]
    pub address: Option<String>,
    /// Evaluate at every block whose number is a multiple of this. Default 1 (every
    /// block) unless `schedule` is given.
    #[serde(default)]
    pub every: Option<u64>,
    /// Evaluate on a cron schedule instead (`sec min hour day month weekday`, UTC), at
    /// the newest final block.
    #[serde(default)]
    pub schedule: Option<String>,
    /// `on_change` (default): report when the value differs from the last one reported;
    /// `always`: at every evaluation.
    #[serde(default)]
    pub emit: EmitMode,
}

/// When a state observation is reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// When the value differs from the last one reported.
    #[default]
    OnChange,
    /// At every evaluation.
    Always,
}

/// Balances of named accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceConfig {
    /// Name of this set, carried as `watch` in `chain.state.observed`. Unique within the
    /// chain together with the watches' names.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub name: String,
    /// Accounts whose balances are reported.
    pub accounts: Vec<String>,
    /// `native` for the chain's coin, or ERC-20 token addresses.
    #[serde(default = "native_only")]
    pub tokens: Vec<String>,
    /// Evaluate at every block whose number is a multiple of this.
    #[serde(default = "default_every")]
    pub every: u64,
    /// `on_change` (default) or `always`.
    #[serde(default)]
    pub emit: EmitMode,
}

/// A YAML scalar read as text: `100`, `true` and `"0xabc"` all become strings, so call
/// arguments need no quoting.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Scalar(#[schemars(with = "ScalarSchema")] pub String);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ScalarSchema {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Text(String),
            Unsigned(u64),
            Signed(i64),
            Boolean(bool),
        }
        Ok(Scalar(match Any::deserialize(d)? {
            Any::Text(s) => s,
            Any::Unsigned(n) => n.to_string(),
            Any::Signed(n) => n.to_string(),
            Any::Boolean(b) => b.to_string(),
        }))
    }
}

impl Scalar {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Self {
        Scalar(s.to_owned())
    }
}

fn yes() -> bool {
    true
}
fn default_rpc_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_rpc_retries() -> u32 {
    3
}
fn default_rpc_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_reorg_window() -> u64 {
    128
}
fn default_max_block_range() -> u64 {
    2000
}
fn default_concurrency() -> u32 {
    4
}
fn default_multicall() -> String {
    MULTICALL3.to_owned()
}
fn default_weight() -> u32 {
    1
}
fn default_every() -> u64 {
    1
}
fn native_only() -> Vec<String> {
    vec!["native".to_owned()]
}

/// An RPC URL as it may be shown: scheme and host (and port) only, since providers put
/// API keys in the path, the query or the user part.
pub fn rpc_url_for_display(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => {
            let mut shown = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
            if let Some(port) = u.port() {
                shown.push_str(&format!(":{port}"));
            }
            let hidden = u.path().len() > 1 || u.query().is_some() || !u.username().is_empty();
            if hidden {
                shown.push_str("/…");
            }
            shown
        }
        _ => crate::secret::REDACTED.to_owned(),
    }
}

/// Whether `s` looks like a 20-byte hex address (`0x` + 40 hex digits). The checksum is
/// checked by the watcher.
pub fn is_address_syntax(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

impl ChainConfig {
    /// The watch's addresses: `address` and `addresses` together.
    pub fn watch_addresses(w: &WatchConfig) -> Vec<&str> {
        w.address
            .iter()
            .chain(w.addresses.iter())
            .map(String::as_str)
            .collect()
    }

    pub(crate) fn validate(&self, path: &str, v: &mut Validator<'_>) {
        if !is_token(&self.name) {
            v.invalid_got(
                &join(path, "name"),
                "must be letters, digits, `_` or `-`",
                &self.name,
            );
        }
        if self.chain_id == 0 {
            v.invalid(&join(path, "chain_id"), "must be above zero");
        }
        if self.rpc.is_empty() {
            v.invalid(&join(path, "rpc"), "needs at least one endpoint");
        }
        for (i, rpc) in self.rpc.iter().enumerate() {
            let p = format!("{path}.rpc[{i}]");
            match url::Url::parse(rpc.url.expose()) {
                Ok(u) if matches!(u.scheme(), "http" | "https" | "ws" | "wss") => {}
                Ok(_) => v.invalid(
                    &join(&p, "url"),
                    "unsupported scheme: use http://, https://, ws:// or wss://",
                ),
                // The URL is a secret: never echoed.
                Err(e) => v.invalid(&join(&p, "url"), format!("not a valid URL: {e}")),
            }
            if rpc.rate_limit == Some(0) {
                v.invalid(
                    &join(&p, "rate_limit"),
                    "must be at least 1 request per second (leave it out for no limit)",
                );
            }
            if rpc.weight == 0 {
                v.invalid(&join(&p, "weight"), "must be at least 1");
            }
        }
        if self.rpc_timeout.is_zero() {
            v.invalid(&join(path, "rpc_timeout"), "must be longer than zero");
        }
        if self.rpc_cooldown.is_zero() {
            v.invalid(&join(path, "rpc_cooldown"), "must be longer than zero");
        }
        if self.poll_interval.is_zero() {
            v.invalid(&join(path, "poll_interval"), "must be longer than zero");
        }
        if self.reorg_window == 0 {
            v.invalid(&join(path, "reorg_window"), "must be at least 1 block");
        }
        if let Finality::Confirmations(n) = self.finality {
            if n >= self.reorg_window {
                v.conflict(
                    &join(path, "finality"),
                    format!(
                        "{n} confirmations is not less than reorg_window ({}): reorgs of \
                         reported blocks could not be detected; raise reorg_window",
                        self.reorg_window
                    ),
                );
            }
        }
        if self.max_block_range == 0 {
            v.invalid(&join(path, "max_block_range"), "must be at least 1 block");
        }
        if !(1..=64).contains(&self.concurrency) {
            v.invalid_got(
                &join(path, "concurrency"),
                "must be between 1 and 64",
                self.concurrency,
            );
        }
        if self.multicall != "disabled" && !is_address_syntax(&self.multicall) {
            v.invalid_got(
                &join(path, "multicall"),
                "must be an address (0x and 40 hex digits) or `disabled`",
                &self.multicall,
            );
        }
        if let Some(e) = &self.explorer {
            match url::Url::parse(e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => v.invalid_got(
                    &join(path, "explorer"),
                    "must be an http(s) URL such as https://etherscan.io",
                    e,
                ),
            }
        }
        let mut names = HashSet::new();
        for (i, w) in self.watches.iter().enumerate() {
            let p = format!("{path}.watches[{i}]");
            if !is_token(&w.name) {
                v.invalid_got(
                    &join(&p, "name"),
                    "must be letters, digits, `_` or `-`",
                    &w.name,
                );
            } else if !names.insert(w.name.as_str()) {
                v.conflict(
                    &join(&p, "name"),
                    format!(
                        "another watch or balance set of this chain is named `{}`",
                        w.name
                    ),
                );
            }
            if let Some(a) = &w.address {
                check_address(v, &join(&p, "address"), a);
            }
            for (j, a) in w.addresses.iter().enumerate() {
                check_address(v, &format!("{p}.addresses[{j}]"), a);
            }
            if Self::watch_addresses(w).is_empty() {
                v.invalid(
                    &p,
                    "needs the contract: `address: 0x…` or `addresses: [0x…, …]`",
                );
            }
            if w.pack.is_none() && w.abi.is_none() && w.events.is_empty() && w.calls.is_empty() {
                v.invalid(
                    &p,
                    "says nothing to watch: give a `pack`, an `abi`, `events` or `calls`",
                );
            }
            if w.every == Some(0) {
                v.invalid(&join(&p, "every"), "must be at least 1 block");
            }
            for (j, c) in w.calls.iter().enumerate() {
                let cp = format!("{p}.calls[{j}]");
                if let Some(a) = &c.address {
                    check_address(v, &join(&cp, "address"), a);
                }
                match (c.every, &c.schedule) {
                    (Some(0), _) => v.invalid(&join(&cp, "every"), "must be at least 1 block"),
                    (Some(_), Some(_)) => v.conflict(
                        &join(&cp, "schedule"),
                        "give either `every` (blocks) or `schedule` (cron), not both",
                    ),
                    _ => {}
                }
            }
        }
        for (i, b) in self.balances.iter().enumerate() {
            let p = format!("{path}.balances[{i}]");
            if !is_token(&b.name) {
                v.invalid_got(
                    &join(&p, "name"),
                    "must be letters, digits, `_` or `-`",
                    &b.name,
                );
            } else if !names.insert(b.name.as_str()) {
                v.conflict(
                    &join(&p, "name"),
                    format!(
                        "another watch or balance set of this chain is named `{}`",
                        b.name
                    ),
                );
            }
            if b.accounts.is_empty() {
                v.invalid(&join(&p, "accounts"), "needs at least one account");
            }
            for (j, a) in b.accounts.iter().enumerate() {
                check_address(v, &format!("{p}.accounts[{j}]"), a);
            }
            if b.tokens.is_empty() {
                v.invalid(
                    &join(&p, "tokens"),
                    "needs at least one token: `native` or an ERC-20 address",
                );
            }
            for (j, t) in b.tokens.iter().enumerate() {
                if t != "native" {
                    check_address(v, &format!("{p}.tokens[{j}]"), t);
                }
            }
            if b.every == 0 {
                v.invalid(&join(&p, "every"), "must be at least 1 block");
            }
        }
    }
}

fn check_address(v: &mut Validator<'_>, path: &str, a: &str) {
    if !is_address_syntax(a) {
        v.invalid_got(path, "must be an address: 0x and 40 hex digits", a);
    }
}

/// Checks the whole `chains` list: each chain, and names and chain ids unique.
pub(crate) fn validate_chains(chains: &[ChainConfig], v: &mut Validator<'_>) {
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for (i, c) in chains.iter().enumerate() {
        let p = format!("chains[{i}]");
        c.validate(&p, v);
        if !names.insert(c.name.as_str()) {
            v.conflict(
                &join(&p, "name"),
                format!("another chain is named `{}`", c.name),
            );
        }
        if c.chain_id != 0 && !ids.insert(c.chain_id) {
            v.conflict(
                &join(&p, "chain_id"),
                format!("another chain has chain id {}", c.chain_id),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_urls_show_scheme_and_host_only() {
        assert_eq!(
            rpc_url_for_display("https://eth-mainnet.g.alchemy.com/v2/abcdef123456"),
            "https://eth-mainnet.g.alchemy.com/…"
        );
        assert_eq!(
            rpc_url_for_display("http://127.0.0.1:8545"),
            "http://127.0.0.1:8545"
        );
        assert_eq!(
            rpc_url_for_display("wss://user:pw@node.example:8546/ws?key=1"),
            "wss://node.example:8546/…"
        );
        assert_eq!(rpc_url_for_display("nonsense key"), "[redacted]");
    }
}
