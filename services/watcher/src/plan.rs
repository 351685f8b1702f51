//! A chain's configuration compiled into what the watcher runs: event decoders by
//! (address, topic0), and state-call templates. Everything the configuration can get wrong
//! is found here, at start-up (and by `steward config check`), and reported by field path so
//! the error names file:line:column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use alloy::dyn_abi::{DynSolEvent, DynSolType, DynSolValue, JsonAbiExt, Specifier};
use alloy::json_abi::{Event, Function, JsonAbi};
use alloy::primitives::{keccak256, Address, Bytes, B256};
use serde_json::Value;
use steward_chain::abi::{
    coerce_args, load_abi_file, param_type, parse_abi_json, parse_event_signature,
    parse_function_signature, value_to_json,
};
use steward_config::{ChainConfig, Config, EmitMode, Validator, WatchConfig};

use crate::packs::{self, Pack};

/// Text standing for each value of a `for_each` parameter in a pack call's arguments.
const ITEM: &str = "{item}";

/// One problem: the field path and what is wrong with it.
pub type Problem = (String, String);

/// A chain, compiled.
#[derive(Debug, Clone)]
pub struct ChainPlan {
    pub name: String,
    pub chain_id: u64,
    pub watches: Vec<WatchPlan>,
    pub balances: Vec<BalancePlan>,
    pub multicall: Option<Address>,
}

/// A watch, compiled.
#[derive(Debug, Clone)]
pub struct WatchPlan {
    pub name: String,
    pub addresses: Vec<Address>,
    pub events: Vec<Arc<EventDecoder>>,
    /// Parameter holding the addresses the events come from, instead of `addresses`.
    pub events_from: Option<String>,
    /// Declared parameters and their value types.
    pub params: BTreeMap<String, DynSolType>,
    /// Values given in the configuration, canonical text.
    pub initial: BTreeMap<String, BTreeSet<String>>,
    pub discover: Vec<DiscoverPlan>,
    pub calls: Vec<CallTemplate>,
}

/// An event to decode.
#[derive(Debug, Clone)]
pub struct EventDecoder {
    pub watch: String,
    pub name: String,
    /// Canonical signature, `Transfer(address,address,uint256)`.
    pub signature: String,
    pub topic0: B256,
    pub event: Event,
    pub resolved: DynSolEvent,
}

/// "Event `event`'s argument `arg` is a value of parameter `param`."
#[derive(Debug, Clone)]
pub struct DiscoverPlan {
    pub event: String,
    pub arg: String,
    pub param: String,
}

/// When a call is evaluated.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// At blocks whose number is a multiple of this.
    Every(u64),
    /// On a cron schedule (UTC), at the newest final block.
    Schedule(Arc<cron::Schedule>),
}

/// A state call before its arguments are known (they may come from a parameter).
#[derive(Debug, Clone)]
pub struct CallTemplate {
    pub function: Arc<Function>,
    /// `getUserAccountData(address)`.
    pub signature: String,
    /// The contract, or each of the watch's addresses.
    pub address: Option<Address>,
    /// Arguments as text; [`ITEM`] stands for each value of `for_each`.
    pub args: Vec<String>,
    pub for_each: Option<String>,
    pub trigger: Trigger,
    pub emit: EmitMode,
    pub resolves: Option<String>,
}

/// Balances of named accounts, compiled.
#[derive(Debug, Clone)]
pub struct BalancePlan {
    pub name: String,
    pub accounts: Vec<Address>,
    pub tokens: Vec<Token>,
    pub every: u64,
    pub emit: EmitMode,
}

/// A balance's asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Native,
    Erc20(Address),
}

/// What a state call reads.
#[derive(Debug, Clone)]
pub enum CallTarget {
    /// A contract function.
    Contract {
        function: Arc<Function>,
        calldata: Bytes,
    },
    /// The native balance of the call's address.
    NativeBalance,
}

/// A state call ready to evaluate.
#[derive(Debug, Clone)]
pub struct CallInstance {
    /// Stable id: watch, address, function and a hash of the arguments.
    pub id: String,
    pub watch: String,
    /// The contract called (the account, for a native balance).
    pub address: Address,
    pub target: CallTarget,
    /// `balanceOf(address)`, or `eth_getBalance` for a native balance.
    pub signature: String,
    /// Arguments as payload JSON.
    pub args: Vec<Value>,
    pub trigger: Trigger,
    pub emit: EmitMode,
    /// (watch, parameter) whose values are this call's results.
    pub resolves: Option<(String, String)>,
}

/// Parameter values: (watch, parameter) → canonical text values.
pub type Params = BTreeMap<(String, String), BTreeSet<String>>;

const ERC20_BALANCE_OF: &str = "function balanceOf(address account) view returns (uint256 balance)";

impl ChainPlan {
    /// Compiles chain `index` of `config`; relative ABI paths resolve against
    /// `config.base_dir`.
    pub fn compile(config: &Config, index: usize) -> Result<Self, Vec<Problem>> {
        let chain = &config.chains[index];
        let path = format!("chains[{index}]");
        let mut problems = Vec::new();
        let mut watches = Vec::new();
        for (i, w) in chain.watches.iter().enumerate() {
            let wp = format!("{path}.watches[{i}]");
            if let Some(plan) = compile_watch(config, w, &wp, &mut problems) {
                watches.push(plan);
            }
        }
        // One decoder per (address, topic0): a log belongs to one watch.
        let mut owners: HashMap<(Address, B256), (&str, usize)> = HashMap::new();
        for (wi, w) in watches.iter().enumerate() {
            if w.events_from.is_some() {
                continue;
            }
            for a in &w.addresses {
                for e in &w.events {
                    if let Some((other, _)) = owners.insert((*a, e.topic0), (&w.name, wi)) {
                        if other != w.name {
                            problems.push((
                                format!("{path}.watches[{wi}]"),
                                format!(
                                    "{a}'s event {} is already decoded by watch `{other}`: a log can belong to one watch only",
                                    e.name
                                ),
                            ));
                        }
                    }
                }
            }
        }
        let mut balances = Vec::new();
        for (i, b) in chain.balances.iter().enumerate() {
            let bp = format!("{path}.balances[{i}]");
            let mut accounts = Vec::new();
            for (j, a) in b.accounts.iter().enumerate() {
                if let Some(a) = address(a, &format!("{bp}.accounts[{j}]"), &mut problems) {
                    accounts.push(a);
                }
            }
            let mut tokens = Vec::new();
            for (j, t) in b.tokens.iter().enumerate() {
                if t == "native" {
                    tokens.push(Token::Native);
                } else if let Some(a) = address(t, &format!("{bp}.tokens[{j}]"), &mut problems) {
                    tokens.push(Token::Erc20(a));
                }
            }
            balances.push(BalancePlan {
                name: b.name.clone(),
                accounts,
                tokens,
                every: b.every.max(1),
                emit: b.emit,
            });
        }
        let multicall = match chain.multicall.as_str() {
            "disabled" => None,
            m => address(m, &format!("{path}.multicall"), &mut problems),
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            name: chain.name.clone(),
            chain_id: chain.chain_id,
            watches,
            balances,
            multicall,
        })
    }

    /// Parameter values given in the configuration.
    pub fn initial_params(&self) -> Params {
        let mut params = Params::new();
        for w in &self.watches {
            for p in w.params.keys() {
                params.entry((w.name.clone(), p.clone())).or_default();
            }
            for (p, values) in &w.initial {
                params
                    .entry((w.name.clone(), p.clone()))
                    .or_default()
                    .extend(values.iter().cloned());
            }
        }
        params
    }

    /// Decoders by (emitting address, topic0), for the current parameter values.
    pub fn decoders(&self, params: &Params) -> HashMap<(Address, B256), Arc<EventDecoder>> {
        let mut map = HashMap::new();
        for w in &self.watches {
            let addresses: Vec<Address> = match &w.events_from {
                None => w.addresses.clone(),
                Some(p) => params
                    .get(&(w.name.clone(), p.clone()))
                    .into_iter()
                    .flatten()
                    .filter_map(|a| Address::from_str(a).ok())
                    .collect(),
            };
            for a in addresses {
                for e in &w.events {
                    map.entry((a, e.topic0)).or_insert_with(|| e.clone());
                }
            }
        }
        map
    }

    /// Every state call, for the current parameter values. A discovered value that does not
    /// fit its call is skipped with a warning.
    pub fn calls(&self, params: &Params) -> Vec<CallInstance> {
        let mut out = Vec::new();
        for w in &self.watches {
            for t in &w.calls {
                let targets: Vec<Address> = match t.address {
                    Some(a) => vec![a],
                    None => w.addresses.clone(),
                };
                let items: Vec<Option<&str>> = match &t.for_each {
                    None => vec![None],
                    Some(p) => params
                        .get(&(w.name.clone(), p.clone()))
                        .into_iter()
                        .flatten()
                        .map(|v| Some(v.as_str()))
                        .collect(),
                };
                for item in items {
                    let args: Vec<String> = t
                        .args
                        .iter()
                        .map(|a| match item {
                            Some(v) => a.replace(ITEM, v),
                            None => a.clone(),
                        })
                        .collect();
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    let values = match coerce_args(&t.function.inputs, &refs) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(chain = %self.name, watch = %w.name, function = %t.signature, error = %e, "a discovered value does not fit the call; skipped");
                            continue;
                        }
                    };
                    let Ok(calldata) = t.function.abi_encode_input(&values) else {
                        continue;
                    };
                    let args_json: Vec<Value> = values
                        .iter()
                        .zip(&t.function.inputs)
                        .map(|(v, p)| value_to_json(v, &p.components))
                        .collect();
                    for address in &targets {
                        out.push(CallInstance {
                            id: call_id(&w.name, address, &t.signature, &calldata),
                            watch: w.name.clone(),
                            address: *address,
                            target: CallTarget::Contract {
                                function: t.function.clone(),
                                calldata: calldata.clone().into(),
                            },
                            signature: t.signature.clone(),
                            args: args_json.clone(),
                            trigger: t.trigger.clone(),
                            emit: t.emit,
                            resolves: t.resolves.clone().map(|p| (w.name.clone(), p)),
                        });
                    }
                }
            }
        }
        let balance_of = Arc::new(
            parse_function_signature(ERC20_BALANCE_OF)
                .expect("the ERC-20 balanceOf signature parses"),
        );
        for b in &self.balances {
            for account in &b.accounts {
                for token in &b.tokens {
                    match token {
                        Token::Native => out.push(CallInstance {
                            id: format!("{}/{account}/native", b.name),
                            watch: b.name.clone(),
                            address: *account,
                            target: CallTarget::NativeBalance,
                            signature: "eth_getBalance".to_owned(),
                            args: Vec::new(),
                            trigger: Trigger::Every(b.every),
                            emit: b.emit,
                            resolves: None,
                        }),
                        Token::Erc20(token) => {
                            let Ok(calldata) =
                                balance_of.abi_encode_input(&[DynSolValue::Address(*account)])
                            else {
                                continue;
                            };
                            out.push(CallInstance {
                                id: call_id(&b.name, token, "balanceOf(address)", &calldata),
                                watch: b.name.clone(),
                                address: *token,
                                target: CallTarget::Contract {
                                    function: balance_of.clone(),
                                    calldata: calldata.into(),
                                },
                                signature: "balanceOf(address)".to_owned(),
                                args: vec![Value::String(account.to_checksum(None))],
                                trigger: Trigger::Every(b.every),
                                emit: b.emit,
                                resolves: None,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether any watch has events or calls at all.
    pub fn is_empty(&self) -> bool {
        self.balances.is_empty()
            && self
                .watches
                .iter()
                .all(|w| w.events.is_empty() && w.calls.is_empty())
    }
}

fn call_id(watch: &str, address: &Address, signature: &str, calldata: &[u8]) -> String {
    let h = keccak256(calldata);
    format!(
        "{watch}/{address}/{signature}/{}",
        alloy::primitives::hex::encode(&h[..6])
    )
}

fn address(text: &str, path: &str, problems: &mut Vec<Problem>) -> Option<Address> {
    let has_upper = text.chars().any(|c| c.is_ascii_uppercase());
    let has_lower = text[2.min(text.len())..]
        .chars()
        .any(|c| c.is_ascii_lowercase());
    let parsed = if has_upper && has_lower {
        Address::parse_checksummed(text, None).map_err(|_| {
            format!(
                "`{text}` fails its EIP-55 checksum (a typo?); write it all-lowercase to skip the check"
            )
        })
    } else {
        Address::from_str(text)
            .map_err(|_| format!("`{text}` is not an address: 0x and 40 hex digits"))
    };
    match parsed {
        Ok(a) => Some(a),
        Err(e) => {
            problems.push((path.to_owned(), e));
            None
        }
    }
}

/// The ABI of a watch: its pack's, plus its own file.
fn load_abis(
    config: &Config,
    w: &WatchConfig,
    pack: Option<&Pack>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<JsonAbi> {
    let mut abis = Vec::new();
    if let Some(pack) = pack {
        match parse_abi_json(pack.abi_json) {
            Ok(abi) => abis.push(abi),
            Err(e) => problems.push((format!("{path}.pack"), format!("the pack's ABI: {e}"))),
        }
    }
    if let Some(file) = &w.abi {
        let full = config.base_dir.join(file);
        match load_abi_file(&full) {
            Ok(abi) => abis.push(abi),
            Err(e) => problems.push((format!("{path}.abi"), e)),
        }
    }
    abis
}

fn find_event(abis: &[JsonAbi], name: &str) -> Result<Event, String> {
    let found: Vec<&Event> = abis
        .iter()
        .flat_map(|a| a.events.get(name).into_iter().flatten())
        .collect();
    match found.as_slice() {
        [] => {
            let known: BTreeSet<&str> = abis
                .iter()
                .flat_map(|a| a.events.keys().map(String::as_str))
                .collect();
            Err(if abis.is_empty() {
                format!("event `{name}` needs an ABI (`abi:` or a pack) or a full signature (`event {name}(…)`)")
            } else {
                format!(
                    "the ABI has no event `{name}`; it has: {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
        }
        [one] => Ok((*one).clone()),
        _ => Err(format!(
            "`{name}` is overloaded in the ABI; give the full signature to choose one"
        )),
    }
}

fn find_function(abis: &[JsonAbi], name: &str) -> Result<Function, String> {
    let found: Vec<&Function> = abis
        .iter()
        .flat_map(|a| a.functions.get(name).into_iter().flatten())
        .collect();
    match found.as_slice() {
        [] => Err(if abis.is_empty() {
            format!(
                "function `{name}` needs an ABI (`abi:` or a pack) or a full signature (`function {name}(…) view returns (…)`)"
            )
        } else {
            format!("the ABI has no function `{name}`")
        }),
        [one] => Ok((*one).clone()),
        _ => Err(format!(
            "`{name}` is overloaded in the ABI; give the full signature to choose one"
        )),
    }
}

fn decoder(watch: &str, event: Event) -> Result<Arc<EventDecoder>, String> {
    if event.anonymous {
        return Err(format!(
            "event `{}` is anonymous: it has no topic0 to match logs by",
            event.name
        ));
    }
    let resolved = event
        .resolve()
        .map_err(|e| format!("event `{}` cannot be decoded: {e}", event.name))?;
    Ok(Arc::new(EventDecoder {
        watch: watch.to_owned(),
        name: event.name.clone(),
        signature: event.signature(),
        topic0: event.selector(),
        event,
        resolved,
    }))
}

fn compile_watch(
    config: &Config,
    w: &WatchConfig,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<WatchPlan> {
    let before = problems.len();
    let pack = match &w.pack {
        Some(name) => match packs::get(name) {
            Some(p) => Some(p),
            None => {
                problems.push((
                    format!("{path}.pack"),
                    format!(
                        "unknown watch pack `{name}`; the packs are: {}",
                        packs::names().join(", ")
                    ),
                ));
                return None;
            }
        },
        None => None,
    };
    let mut addresses = Vec::new();
    if let Some(a) = &w.address {
        addresses.extend(address(a, &format!("{path}.address"), problems));
    }
    for (i, a) in w.addresses.iter().enumerate() {
        addresses.extend(address(a, &format!("{path}.addresses[{i}]"), problems));
    }
    let abis = load_abis(config, w, pack.as_ref(), path, problems);

    // Events.
    let mut events: Vec<Arc<EventDecoder>> = Vec::new();
    let mut add_event = |event: Result<Event, String>, at: String, problems: &mut Vec<Problem>| {
        match event.and_then(|e| decoder(&w.name, e)) {
            Ok(d) => {
                if let Some(other) = events.iter().find(|o| o.topic0 == d.topic0) {
                    if other.signature != d.signature || other.event.inputs != d.event.inputs {
                        problems.push((
                            at,
                            format!(
                                "`{}` has the same topic0 as `{}` already decoded by this watch; use one or the other",
                                d.signature, other.signature
                            ),
                        ));
                    }
                } else {
                    events.push(d);
                }
            }
            Err(e) => problems.push((at, e)),
        }
    };
    if let Some(p) = &pack {
        for name in &p.spec.events {
            add_event(find_event(&abis, name), format!("{path}.pack"), problems);
        }
    }
    for (i, e) in w.events.iter().enumerate() {
        let at = format!("{path}.events[{i}]");
        let parsed = if e.contains('(') {
            parse_event_signature(e)
        } else {
            find_event(&abis, e.trim())
        };
        add_event(parsed, at, problems);
    }
    if pack.is_none() && w.events.is_empty() && w.abi.is_some() && w.calls.is_empty() {
        // An ABI alone: every event in it.
        for abi in &abis {
            for e in abi.events() {
                add_event(Ok(e.clone()), format!("{path}.abi"), problems);
            }
        }
    }

    // Parameters.
    let mut params = BTreeMap::new();
    if let Some(p) = &pack {
        for (name, spec) in &p.spec.params {
            match DynSolType::parse(&spec.ty) {
                Ok(ty) => {
                    params.insert(name.clone(), ty);
                }
                Err(e) => problems.push((
                    format!("{path}.pack"),
                    format!("pack parameter `{name}`: {e}"),
                )),
            }
        }
    }
    let mut initial = BTreeMap::new();
    for (name, values) in &w.params {
        let at = format!("{path}.params.{name}");
        let Some(ty) = params.get(name) else {
            problems.push((
                at,
                match &pack {
                    Some(p) if p.spec.params.is_empty() => {
                        format!("the pack `{}` takes no parameters", p.name)
                    }
                    Some(p) => format!(
                        "the pack `{}` has no parameter `{name}`; it has: {}",
                        p.name,
                        p.spec.params.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    None => "parameters are for watch packs; this watch has no `pack`".to_owned(),
                },
            ));
            continue;
        };
        let mut set = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            match ty.coerce_str(v.as_str().trim()) {
                Ok(value) => {
                    if let Some(text) = canonical(&value) {
                        set.insert(text);
                    }
                }
                Err(_) => problems.push((
                    format!("{at}[{i}]"),
                    format!(
                        "`{}` is not {}",
                        v.as_str(),
                        steward_chain::abi::a_or_an(&ty.to_string())
                    ),
                )),
            }
        }
        initial.insert(name.clone(), set);
    }
    let mut discover = Vec::new();
    if let Some(p) = &pack {
        for d in &p.spec.discover {
            discover.push(DiscoverPlan {
                event: d.event.clone(),
                arg: d.arg.clone(),
                param: d.into.clone(),
            });
        }
    }

    // Calls.
    let mut calls = Vec::new();
    let every_override = w.every;
    if let Some(p) = &pack {
        for c in &p.spec.calls {
            let function = match find_function(&abis, &c.function) {
                Ok(f) => f,
                Err(e) => {
                    problems.push((format!("{path}.pack"), e));
                    continue;
                }
            };
            calls.push(CallTemplate {
                signature: function.signature(),
                function: Arc::new(function),
                address: None,
                args: c.args.clone(),
                for_each: c.for_each.clone(),
                trigger: Trigger::Every(every_override.or(c.every).unwrap_or(1).max(1)),
                emit: EmitMode::OnChange,
                resolves: c.resolves.clone(),
            });
        }
    }
    for (i, c) in w.calls.iter().enumerate() {
        let at = format!("{path}.calls[{i}]");
        let function = if c.function.contains('(') {
            parse_function_signature(&c.function).and_then(|f| {
                if f.outputs.is_empty() {
                    Err(
                        "give the return types (`… returns (uint256)`): they decode the answer"
                            .to_owned(),
                    )
                } else {
                    Ok(f)
                }
            })
        } else {
            find_function(&abis, c.function.trim())
        };
        let function = match function {
            Ok(f) => f,
            Err(e) => {
                problems.push((format!("{at}.function"), e));
                continue;
            }
        };
        let args: Vec<&str> = c.args.iter().map(|a| a.as_str()).collect();
        if let Err(e) = coerce_args(&function.inputs, &args) {
            problems.push((
                format!("{at}.args"),
                format!("{}: {e}", function.signature()),
            ));
            continue;
        }
        let address = match &c.address {
            Some(a) => address(a, &format!("{at}.address"), problems),
            None => None,
        };
        let trigger = match &c.schedule {
            Some(expr) => {
                match cron::Schedule::from_str(expr) {
                    Ok(s) => Trigger::Schedule(Arc::new(s)),
                    Err(e) => {
                        problems.push((
                        format!("{at}.schedule"),
                        format!("`{expr}` is not a cron schedule (sec min hour day month weekday): {e}"),
                    ));
                        continue;
                    }
                }
            }
            None => Trigger::Every(c.every.unwrap_or(1).max(1)),
        };
        calls.push(CallTemplate {
            signature: function.signature(),
            function: Arc::new(function),
            address,
            args: c.args.iter().map(|a| a.0.clone()).collect(),
            for_each: None,
            trigger,
            emit: c.emit,
            resolves: None,
        });
    }
    if problems.len() > before {
        return None;
    }
    Some(WatchPlan {
        name: w.name.clone(),
        addresses,
        events,
        events_from: pack.as_ref().and_then(|p| p.spec.events_from.clone()),
        params,
        initial,
        discover,
        calls,
    })
}

/// The canonical text of a parameter value: checksummed address, decimal integer.
pub fn canonical(value: &DynSolValue) -> Option<String> {
    match value_to_json(value, &[]) {
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks every chain of `config` (the hook `steward config check` and start-up run).
pub fn check_config(config: &Config, v: &mut Validator<'_>) {
    for i in 0..config.chains.len() {
        if let Err(problems) = ChainPlan::compile(config, i) {
            for (path, message) in problems {
                v.invalid(&path, message);
            }
        }
    }
}

/// The declared type of each value of a for_each parameter must be the input type where
/// `{item}` is used. Checked for the shipped packs by the crate's tests.
pub fn pack_is_consistent(pack: &Pack) -> Result<(), String> {
    let abi = parse_abi_json(pack.abi_json)?;
    for e in &pack.spec.events {
        find_event(std::slice::from_ref(&abi), e)?;
    }
    for c in &pack.spec.calls {
        let f = find_function(std::slice::from_ref(&abi), &c.function)?;
        if c.args.len() != f.inputs.len() {
            return Err(format!(
                "{}: {} args for {} inputs",
                c.function,
                c.args.len(),
                f.inputs.len()
            ));
        }
        for (a, input) in c.args.iter().zip(&f.inputs) {
            if a.contains(ITEM) {
                let p = c
                    .for_each
                    .as_ref()
                    .ok_or(format!("{}: {{item}} without for_each", c.function))?;
                let spec = pack
                    .spec
                    .params
                    .get(p)
                    .ok_or(format!("{}: unknown parameter {p}", c.function))?;
                let ty = param_type(input)?;
                if DynSolType::parse(&spec.ty).map_err(|e| e.to_string())? != ty {
                    return Err(format!(
                        "{}: parameter {p} is {} but the input is {ty}",
                        c.function, spec.ty
                    ));
                }
            } else {
                steward_chain::abi::coerce_arg(input, a)?;
            }
        }
        if let Some(r) = &c.resolves {
            if !pack.spec.params.contains_key(r) {
                return Err(format!("{}: resolves unknown parameter {r}", c.function));
            }
            if f.outputs.len() != 1 || f.outputs[0].ty != "address" {
                return Err(format!("{}: resolves needs one address output", c.function));
            }
        }
    }
    for d in &pack.spec.discover {
        let e = find_event(std::slice::from_ref(&abi), &d.event)?;
        if !e.inputs.iter().any(|i| i.name == d.arg) {
            return Err(format!("discover: {} has no argument {}", d.event, d.arg));
        }
        if !pack.spec.params.contains_key(&d.into) {
            return Err(format!("discover: unknown parameter {}", d.into));
        }
    }
    if let Some(p) = &pack.spec.events_from {
        if !pack.spec.params.contains_key(p) {
            return Err(format!("events_from: unknown parameter {p}"));
        }
    }
    Ok(())
}

/// A chain's configuration by name.
pub fn chain_index(config: &Config, name: &str) -> Option<usize> {
    config
        .chains
        .iter()
        .position(|c: &ChainConfig| c.name == name)
}
