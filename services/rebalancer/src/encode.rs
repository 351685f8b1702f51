//! Plans as the contract calls a Safe signs.
//!
//! - **Lido**: `StakingRouter.updateTargetValidatorsLimits(moduleId, nodeOperatorId, mode,
//!   limit)` for every operator whose stake (validators) the plan lowers: the limit is its
//!   target, the mode soft (1: no deposits above it) or forced (2: exits). Operators that grow
//!   need no call: deposits go to operators with room.
//! - **EigenLayer**: one `AllocationManager.modifyAllocations(operator, AllocateParams[])`,
//!   the set's members being the operator's operator sets (`avs:id`), the stake their
//!   magnitude of one strategy. Lowering a magnitude takes effect after the deallocation
//!   delay, so what it frees cannot be allocated in the same transaction: increases are
//!   limited to the magnitude free now, and the rest is listed as a note for a later run.
//!
//! A Safe batches the calls through MultiSend (the `safe` service).

use std::str::FromStr;
use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{Address, U256};
use steward_events::SafeCall;
use steward_risk::metadata::Metadata;

use crate::plan::Plan;

static UPDATE_TARGET_LIMITS: LazyLock<Function> = LazyLock::new(|| {
    Function::parse(
        "updateTargetValidatorsLimits(uint256 _stakingModuleId, uint256 _nodeOperatorId, uint256 _targetLimitMode, uint256 _targetLimit)",
    )
    .expect("the StakingRouter signature parses")
});

static MODIFY_ALLOCATIONS: LazyLock<Function> = LazyLock::new(|| {
    serde_json::from_str(
        r#"{"type":"function","name":"modifyAllocations","stateMutability":"nonpayable","outputs":[],
            "inputs":[{"name":"operator","type":"address"},
                      {"name":"params","type":"tuple[]","components":[
                          {"name":"operatorSet","type":"tuple","components":[
                              {"name":"avs","type":"address"},{"name":"id","type":"uint32"}]},
                          {"name":"strategies","type":"address[]"},
                          {"name":"newMagnitudes","type":"uint64[]"}]}]}"#,
    )
    .expect("modifyAllocations' ABI parses")
});

fn call(to: Address, data: Vec<u8>) -> SafeCall {
    SafeCall {
        to: to.to_checksum(None),
        value: "0".into(),
        data: format!("0x{}", alloy::primitives::hex::encode(data)),
        operation: 0,
    }
}

/// The StakingRouter calls of a Lido plan. An operator's node operator id comes from the
/// metadata file (`node_operator_id`), or its id itself when that is a number.
pub fn lido(
    plan: &Plan,
    meta: &Metadata,
    router: Address,
    module_id: u64,
    mode: u8,
) -> Result<Vec<SafeCall>, String> {
    let mut calls = Vec::new();
    for m in plan.moves.iter().filter(|m| m.to < m.from) {
        let id = meta
            .get(&m.operator)
            .and_then(|i| i.node_operator_id)
            .or_else(|| m.operator.parse().ok())
            .ok_or_else(|| {
                format!(
                    "operator {} has no node_operator_id in the metadata and its id is not a number",
                    m.operator
                )
            })?;
        let data = UPDATE_TARGET_LIMITS
            .abi_encode_input(&[
                DynSolValue::Uint(U256::from(module_id), 256),
                DynSolValue::Uint(U256::from(id), 256),
                DynSolValue::Uint(U256::from(mode), 256),
                DynSolValue::Uint(U256::from(m.to), 256),
            ])
            .map_err(|e| format!("cannot encode updateTargetValidatorsLimits: {e}"))?;
        calls.push(call(router, data));
    }
    Ok(calls)
}

/// An EigenLayer operator set id: `0xavs:id`.
pub fn operator_set(id: &str) -> Result<(Address, u32), String> {
    let (avs, n) = id
        .rsplit_once(':')
        .ok_or_else(|| format!("operator set `{id}` is not `avs:id`"))?;
    let avs = Address::from_str(avs)
        .map_err(|_| format!("operator set `{id}`: `{avs}` is not an address"))?;
    let n = n
        .parse()
        .map_err(|_| format!("operator set `{id}`: `{n}` is not a number"))?;
    Ok((avs, n))
}

/// The AllocationManager call of an EigenLayer plan, and notes on what must wait.
pub fn eigenlayer(
    plan: &Plan,
    manager: Address,
    operator: Address,
    strategy: Address,
    free_magnitude: u64,
    delay_blocks: Option<u64>,
) -> Result<(Vec<SafeCall>, Vec<String>), String> {
    let mut params = Vec::new();
    let mut notes = Vec::new();
    let mut free = u128::from(free_magnitude);
    let mut deferred = Vec::new();
    for m in &plan.moves {
        let (avs, id) = operator_set(&m.operator)?;
        let new = if m.to < m.from {
            m.to
        } else {
            let want = m.to - m.from;
            let now = want.min(free);
            free -= now;
            if now < want {
                deferred.push(format!("{} more to {}", want - now, m.operator));
            }
            m.from + now
        };
        if new == m.from {
            continue;
        }
        let magnitude =
            u64::try_from(new).map_err(|_| format!("magnitude {new} does not fit a uint64"))?;
        params.push(DynSolValue::Tuple(vec![
            DynSolValue::Tuple(vec![
                DynSolValue::Address(avs),
                DynSolValue::Uint(U256::from(id), 32),
            ]),
            DynSolValue::Array(vec![DynSolValue::Address(strategy)]),
            DynSolValue::Array(vec![DynSolValue::Uint(U256::from(magnitude), 64)]),
        ]));
    }
    if !deferred.is_empty() {
        let when = match delay_blocks {
            Some(b) => format!("after the deallocation delay ({b} blocks)"),
            None => "after the deallocation delay".to_owned(),
        };
        notes.push(format!(
            "lowered magnitudes free up only {when}: then allocate {}",
            deferred.join(", ")
        ));
    }
    if params.is_empty() {
        return Ok((Vec::new(), notes));
    }
    let data = MODIFY_ALLOCATIONS
        .abi_encode_input(&[DynSolValue::Address(operator), DynSolValue::Array(params)])
        .map_err(|e| format!("cannot encode modifyAllocations: {e}"))?;
    Ok((vec![call(manager, data)], notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Move;

    fn plan(moves: Vec<(&str, u128, u128)>) -> Plan {
        Plan {
            target: Vec::new(),
            moves: moves
                .into_iter()
                .map(|(o, f, t)| Move {
                    operator: o.into(),
                    from: f,
                    to: t,
                    reason: String::new(),
                })
                .collect(),
            moved: 0,
            unmet: Vec::new(),
            exact: true,
        }
    }

    #[test]
    fn lido_limits_the_donors_only() {
        let p = plan(vec![("7", 150, 100), ("9", 10, 60)]);
        let router = Address::repeat_byte(0x11);
        let calls = lido(&p, &Metadata::default(), router, 1, 2).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].to, router.to_checksum(None));
        let data = alloy::primitives::hex::decode(&calls[0].data[2..]).unwrap();
        let args = UPDATE_TARGET_LIMITS.abi_decode_input(&data[4..]).unwrap();
        assert_eq!(
            args,
            vec![
                DynSolValue::Uint(U256::from(1), 256),
                DynSolValue::Uint(U256::from(7), 256),
                DynSolValue::Uint(U256::from(2), 256),
                DynSolValue::Uint(U256::from(100), 256),
            ]
        );
        assert!(lido(
            &plan(vec![("alice", 2, 1)]),
            &Metadata::default(),
            router,
            1,
            1
        )
        .unwrap_err()
        .contains("node_operator_id"));
    }

    #[test]
    fn eigenlayer_increases_wait_for_free_magnitude() {
        let avs = "0x00000000000000000000000000000000000000a1";
        let p = plan(vec![
            (&format!("{avs}:1"), 600, 400),
            (&format!("{avs}:2"), 100, 300),
        ]);
        let (calls, notes) = eigenlayer(
            &p,
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
            50,
            Some(100_800),
        )
        .unwrap();
        assert_eq!(calls.len(), 1);
        let data = alloy::primitives::hex::decode(&calls[0].data[2..]).unwrap();
        let args = MODIFY_ALLOCATIONS.abi_decode_input(&data[4..]).unwrap();
        let DynSolValue::Array(params) = &args[1] else {
            panic!()
        };
        let mags: Vec<DynSolValue> = params
            .iter()
            .map(|p| match p {
                DynSolValue::Tuple(t) => match &t[2] {
                    DynSolValue::Array(a) => a[0].clone(),
                    _ => panic!(),
                },
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            mags,
            vec![
                DynSolValue::Uint(U256::from(400), 64),
                DynSolValue::Uint(U256::from(150), 64)
            ]
        );
        assert!(
            notes[0].contains("100800 blocks") && notes[0].contains("150 more to"),
            "{notes:?}"
        );
    }
}
