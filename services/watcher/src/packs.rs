//! Watch packs: presets for the systems Steward serves, each an ABI plus what to decode and
//! poll. They are compiled into the binary (`packs/*.yaml` and `packs/*.abi.json`); a watch
//! names one with `pack:` and gives its addresses and parameters.

use std::collections::BTreeMap;

use serde::Deserialize;
use steward_config::{Document, MapEnv};

/// A pack as written in `packs/<name>.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    /// One line for `steward watch packs`.
    pub description: String,
    /// File name of the pack's ABI (in `packs/`).
    pub abi: String,
    /// Events decoded, by name.
    #[serde(default)]
    pub events: Vec<String>,
    /// A parameter holding the addresses the events come from (e.g. the aggregators behind
    /// Chainlink proxies); by default the watch's addresses.
    #[serde(default)]
    pub events_from: Option<String>,
    /// Parameters: named lists of values a watch supplies or the watcher learns.
    #[serde(default)]
    pub params: BTreeMap<String, PackParam>,
    /// Parameter values learned from decoded events.
    #[serde(default)]
    pub discover: Vec<Discover>,
    /// State polls.
    #[serde(default)]
    pub calls: Vec<PackCall>,
}

/// A pack parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackParam {
    /// Solidity type of each value (`address`, `uint256`).
    #[serde(rename = "type")]
    pub ty: String,
    /// What it is for.
    pub description: String,
}

/// "When `event` is decoded, add its argument `arg` to the parameter `into`."
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    pub event: String,
    pub arg: String,
    pub into: String,
}

/// A pack's state poll.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackCall {
    /// Function name in the pack's ABI.
    pub function: String,
    /// Arguments as text; `{item}` is replaced by each value of `for_each`.
    #[serde(default)]
    pub args: Vec<String>,
    /// One call per value of this parameter.
    #[serde(default)]
    pub for_each: Option<String>,
    /// The parameter whose values are the current results of this call (an address) across
    /// the watch's addresses.
    #[serde(default)]
    pub resolves: Option<String>,
    /// Blocks between evaluations (default 1, or the watch's `every`).
    #[serde(default)]
    pub every: Option<u64>,
}

/// A pack as compiled into the binary.
#[derive(Debug, Clone)]
pub struct Pack {
    pub name: &'static str,
    pub spec: PackSpec,
    pub abi_json: &'static str,
}

macro_rules! packs {
    ($($name:literal),+ $(,)?) => {
        /// Every pack: (name, YAML, ABI JSON).
        const PACK_SOURCES: &[(&str, &str, &str)] = &[
            $(($name,
               include_str!(concat!("../packs/", $name, ".yaml")),
               include_str!(concat!("../packs/", $name, ".abi.json")))),+
        ];
    };
}

packs!(
    "aave-v3-pool",
    "chainlink-feed",
    "safe",
    "lido-staking-router",
    "lido-node-operators-registry",
    "lido-csm",
    "eigenlayer-allocation-manager",
    "oz-governor",
);

/// Names of every pack.
pub fn names() -> Vec<&'static str> {
    PACK_SOURCES.iter().map(|(n, _, _)| *n).collect()
}

/// The pack called `name`. Panics only if a shipped pack file is malformed, which the
/// crate's tests rule out.
pub fn get(name: &str) -> Option<Pack> {
    let (name, yaml, abi) = PACK_SOURCES.iter().find(|(n, _, _)| *n == name)?;
    let spec =
        parse(name, yaml).unwrap_or_else(|e| panic!("shipped pack {name} is malformed: {e}"));
    Some(Pack {
        name,
        spec,
        abi_json: abi,
    })
}

fn parse(name: &str, yaml: &str) -> Result<PackSpec, String> {
    let doc = Document::parse(yaml, format!("packs/{name}.yaml"), &MapEnv::new())
        .map_err(|e| e.to_string())?;
    doc.deserialize::<PackSpec>().map_err(|e| e.to_string())
}

/// Every pack, fully parsed.
pub fn all() -> Vec<Pack> {
    names().into_iter().filter_map(get).collect()
}
