//! Liquidations (Aave v3 `liquidationCall`): re-checked at the latest block, then proposed
//! through a Safe or sent from a relayer, with the outcome as `liquidation.executed`,
//! `liquidation.skipped` or `liquidation.failed`.
//!
//! The re-check reads the position's `getUserAccountData`: no debt left (already liquidated
//! or repaid) or a health factor at or above 1 skips it. `debtToCover` is recomputed as the
//! smaller of the request (`max`: all the pool allows) and what the liquidator holds of the
//! debt asset; the pool applies its close factor (50% of the debt above a health factor of
//! 0.95, all of it below) and the `LiquidationCall` event reports what was covered. An
//! ERC-20 approval of the pool comes first when the liquidator's allowance is short.

use std::str::FromStr;
use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use steward_chain::{BlockRef, ChainError, EndpointPool, Receipt};
use steward_events::{
    Envelope, LiquidationExecuted, LiquidationFailed, LiquidationRequested, LiquidationRetracted,
    LiquidationSkipped, Payload,
};
use steward_log::HandlerError;

use crate::core::{proposed_of, rpc, store, Core};
use crate::multisend::Call;
use crate::queue::Job;
use crate::simulate::revert_reason;
use crate::NAME;

fn f(sig: &str) -> Function {
    Function::parse(sig).unwrap_or_else(|e| panic!("{sig} parses: {e}"))
}

static ACCOUNT_DATA: LazyLock<Function> = LazyLock::new(|| {
    f("getUserAccountData(address user) view returns (uint256 totalCollateralBase, uint256 totalDebtBase, uint256 availableBorrowsBase, uint256 currentLiquidationThreshold, uint256 ltv, uint256 healthFactor)")
});
static BALANCE_OF: LazyLock<Function> =
    LazyLock::new(|| f("balanceOf(address account) view returns (uint256)"));
static ALLOWANCE: LazyLock<Function> =
    LazyLock::new(|| f("allowance(address owner, address spender) view returns (uint256)"));
static APPROVE: LazyLock<Function> =
    LazyLock::new(|| f("approve(address spender, uint256 amount) returns (bool)"));
static LIQUIDATION_CALL: LazyLock<Function> = LazyLock::new(|| {
    f("liquidationCall(address collateralAsset, address debtAsset, address user, uint256 debtToCover, bool receiveAToken)")
});

/// `LiquidationCall(address,address,address,uint256,uint256,address,bool)`'s topic.
fn liquidation_topic() -> B256 {
    keccak256("LiquidationCall(address,address,address,uint256,uint256,address,bool)")
}

const ONE: u128 = 1_000_000_000_000_000_000;

/// A health factor (18 decimals) for people.
pub fn health(hf: U256) -> String {
    if hf == U256::MAX {
        return "∞ (no debt)".into();
    }
    let one = U256::from(ONE);
    let whole = hf / one;
    let frac = (hf % one) / U256::from(100_000_000_000_000u64);
    format!("{whole}.{frac:04}")
}

/// Health factor and total debt (base currency) of `user` at the latest block.
pub async fn account_data(
    pool: &EndpointPool,
    lending_pool: Address,
    user: Address,
) -> Result<(U256, U256), ChainError> {
    let data = ACCOUNT_DATA
        .abi_encode_input(&[DynSolValue::Address(user)])
        .unwrap_or_default();
    let out = pool
        .eth_call(lending_pool, data.into(), BlockRef::Latest)
        .await?;
    let v = ACCOUNT_DATA.abi_decode_output(&out).map_err(|e| {
        ChainError::Config(format!(
            "getUserAccountData of {lending_pool} does not decode ({e}): is it an Aave v3 pool?"
        ))
    })?;
    let u = |k: usize| match v.get(k) {
        Some(DynSolValue::Uint(x, _)) => *x,
        _ => U256::ZERO,
    };
    Ok((u(5), u(1)))
}

async fn uint_call(
    pool: &EndpointPool,
    to: Address,
    f: &Function,
    args: &[DynSolValue],
) -> Result<U256, ChainError> {
    let data = f.abi_encode_input(args).unwrap_or_default();
    let out = pool.eth_call(to, data.into(), BlockRef::Latest).await?;
    Ok(
        match f
            .abi_decode_output(&out)
            .ok()
            .and_then(|v| v.into_iter().next())
        {
            Some(DynSolValue::Uint(x, _)) => x,
            _ => U256::ZERO,
        },
    )
}

/// What the pool's `LiquidationCall` event of `user` in a receipt says was covered and seized.
pub fn covered(
    logs: &[alloy::rpc::types::Log],
    lending_pool: Address,
    user: Address,
) -> Option<(U256, U256)> {
    logs.iter().find_map(|l| {
        let t = l.topics();
        (l.address() == lending_pool
            && t.len() == 4
            && t[0] == liquidation_topic()
            && t[3] == user.into_word()
            && l.data().data.len() >= 64)
            .then(|| {
                (
                    U256::from_be_slice(&l.data().data[..32]),
                    U256::from_be_slice(&l.data().data[32..64]),
                )
            })
    })
}

/// Whether a revert means the position no longer needs liquidating (the mock's and Aave
/// v3's errors: health factor not below the threshold, nothing borrowed in that asset).
fn means_healthy(reason: &str) -> bool {
    // Aave v3 Errors.sol: 45 HEALTH_FACTOR_NOT_BELOW_THRESHOLD, 47
    // SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER; the mock pool uses named custom errors.
    ["45", "47"].contains(&reason.trim())
        || reason.contains(&alloy::primitives::hex::encode(
            &keccak256("HealthFactorNotBelowThreshold()")[..4],
        ))
        || reason.contains(&alloy::primitives::hex::encode(
            &keccak256("SpecifiedCurrencyNotBorrowedByUser()")[..4],
        ))
}

struct Parsed {
    lending_pool: Address,
    user: Address,
    collateral: Address,
    debt: Address,
    requested: U256,
}

fn parse(req: &LiquidationRequested) -> Result<Parsed, String> {
    let a = |field: &str, v: &str| {
        Address::from_str(v.trim()).map_err(|_| format!("{field} must be an address, got `{v}`"))
    };
    let requested = match req.debt_to_cover.trim() {
        "max" | "" => U256::MAX,
        t => U256::from_str_radix(t, 10).map_err(|_| format!("debt_to_cover must be a whole number of the debt asset's units or `max`, got `{t}`"))?,
    };
    Ok(Parsed {
        lending_pool: a("pool", &req.pool)?,
        user: a("user", &req.user)?,
        collateral: a("collateral_asset", &req.collateral_asset)?,
        debt: a("debt_asset", &req.debt_asset)?,
        requested,
    })
}

/// The outcome event of a liquidation request, recorded once (a second outcome for the same
/// request returns the first) until a reorg retracts it ([`retract`]).
pub async fn outcome<P: Payload>(
    core: &Core,
    request: &Envelope,
    payload: &P,
) -> Result<Envelope, HandlerError> {
    // After a reorg retracted an outcome, the next one is a new fact: its key says which.
    let reopened = match core.queue.liquidation(&request.key).await.map_err(store)? {
        Some(l) if l.reopened > 0 => format!("outcome:r{}", l.reopened),
        _ => "outcome".to_owned(),
    };
    let mut e = request.derive(NAME, &reopened, payload);
    if let Some(c) = request.chain_id {
        e = e.with_chain(c);
    }
    let stood = core
        .queue
        .set_liquidation_outcome(&request.key, &String::from_utf8_lossy(&e.to_json()))
        .await
        .map_err(store)?;
    Envelope::from_json(stood.as_bytes()).map_err(|e| {
        HandlerError::Fatal(format!("stored liquidation outcome does not decode: {e}"))
    })
}

impl Core {
    /// `liquidation.requested`.
    pub(crate) async fn liquidation(
        &self,
        env: &Envelope,
        req: &LiquidationRequested,
    ) -> Result<Vec<Envelope>, HandlerError> {
        if let Some(l) = self.queue.liquidation(&env.key).await.map_err(store)? {
            if let Some(o) = l.outcome {
                return Ok(vec![Envelope::from_json(o.as_bytes())
                    .map_err(|e| HandlerError::Fatal(e.to_string()))?]);
            }
            if let Some(h) = l.safe_tx_hash {
                if let Some(row) = self.queue.by_hash(h).await.map_err(store)? {
                    return Ok(vec![proposed_of(&row)?.0]);
                }
            }
            return Ok(Vec::new());
        }
        self.queue
            .add_liquidation(&env.key, &String::from_utf8_lossy(&env.to_json()))
            .await
            .map_err(store)?;
        let failed = |error: String| LiquidationFailed {
            user: req.user.clone(),
            error,
            transaction_hash: None,
        };
        let p = match parse(req) {
            Ok(p) => p,
            Err(e) => return Ok(vec![outcome(self, env, &failed(e)).await?]),
        };
        // Where it goes: a Safe (proposed for its signers) or a relayer (sent at once).
        let via = req.via.trim();
        let (safe, relayer) = if via.eq_ignore_ascii_case("relayer") {
            let r = self
                .relayers
                .iter()
                .position(|r| env.chain_id.is_none_or(|c| r.chain_id == c));
            match r {
                Some(r) => (None, Some(r)),
                None => {
                    let why = match env.chain_id {
                        Some(c) => {
                            format!("no relayer is configured on chain {c} (safes[].relayer.key)")
                        }
                        None => "no relayer is configured (safes[].relayer.key)".to_owned(),
                    };
                    return Ok(vec![outcome(self, env, &failed(why)).await?]);
                }
            }
        } else {
            match self.find(via) {
                Some(i) if env.chain_id.is_none_or(|c| c == self.safes[i].chain_id) => {
                    (Some(i), None)
                }
                Some(i) => {
                    let why = format!(
                        "Safe `{via}` is on chain {}, the request is for chain {}",
                        self.safes[i].chain_id,
                        env.chain_id.unwrap_or_default()
                    );
                    return Ok(vec![outcome(self, env, &failed(why)).await?]);
                }
                None => {
                    let why = format!("via `{via}` is neither `relayer` nor a Safe in `safes:`");
                    return Ok(vec![outcome(self, env, &failed(why)).await?]);
                }
            }
        };
        let (pool, liquidator) = match (safe, relayer) {
            (Some(i), _) => (self.safes[i].pool.clone(), self.safes[i].address),
            (_, Some(r)) => (self.relayers[r].pool.clone(), self.relayers[r].address),
            _ => unreachable!("a route was chosen above"),
        };
        // Re-check at the latest block.
        let (hf, debt) = account_data(&pool, p.lending_pool, p.user)
            .await
            .map_err(rpc)?;
        let skipped = |reason: String| LiquidationSkipped {
            user: req.user.clone(),
            reason,
        };
        if debt.is_zero() {
            return Ok(vec![
                outcome(
                    self,
                    env,
                    &skipped(
                        "no debt left at the latest block: already liquidated or repaid".into(),
                    ),
                )
                .await?,
            ]);
        }
        if hf >= U256::from(ONE) {
            return Ok(vec![
                outcome(
                    self,
                    env,
                    &skipped(format!(
                        "healthy at the latest block: health factor {}",
                        health(hf)
                    )),
                )
                .await?,
            ]);
        }
        let balance = uint_call(
            &pool,
            p.debt,
            &BALANCE_OF,
            &[DynSolValue::Address(liquidator)],
        )
        .await
        .map_err(rpc)?;
        if balance.is_zero() {
            return Ok(vec![
                outcome(
                    self,
                    env,
                    &failed(format!(
                        "the liquidator {liquidator} holds none of the debt asset {}",
                        p.debt
                    )),
                )
                .await?,
            ]);
        }
        let cover = p.requested.min(balance);
        let allowance = uint_call(
            &pool,
            p.debt,
            &ALLOWANCE,
            &[
                DynSolValue::Address(liquidator),
                DynSolValue::Address(p.lending_pool),
            ],
        )
        .await
        .map_err(rpc)?;
        let approve = (allowance < cover).then(|| {
            Bytes::from(
                APPROVE
                    .abi_encode_input(&[
                        DynSolValue::Address(p.lending_pool),
                        DynSolValue::Uint(cover, 256),
                    ])
                    .unwrap_or_default(),
            )
        });
        let call = Bytes::from(
            LIQUIDATION_CALL
                .abi_encode_input(&[
                    DynSolValue::Address(p.collateral),
                    DynSolValue::Address(p.debt),
                    DynSolValue::Address(p.user),
                    DynSolValue::Uint(cover, 256),
                    DynSolValue::Bool(req.receive_a_token),
                ])
                .unwrap_or_default(),
        );
        if approve.is_none() {
            // Nothing to approve first: the call itself can be tried at the latest block.
            let tx = serde_json::json!({ "from": liquidator, "to": p.lending_pool, "data": call });
            let tried: Result<Bytes, ChainError> = pool.request("eth_call", (tx, "latest")).await;
            match tried {
                Ok(_) => {}
                Err(ChainError::Reverted { data, message, .. }) => {
                    let reason = data.as_ref().map_or(message, |d| revert_reason(d));
                    let raw = data
                        .as_ref()
                        .map(alloy::primitives::hex::encode)
                        .unwrap_or_default();
                    if means_healthy(&reason) || means_healthy(&raw) {
                        return Ok(vec![outcome(self, env, &skipped(format!("the pool refuses it at the latest block ({reason}): nothing left to liquidate"))).await?]);
                    }
                    return Ok(vec![
                        outcome(
                            self,
                            env,
                            &failed(format!(
                                "liquidationCall would revert at the latest block: {reason}"
                            )),
                        )
                        .await?,
                    ]);
                }
                Err(e) => return Err(rpc(e)),
            }
        }
        let why = format!(
            "Liquidate {} on {}: health factor {}; cover up to {} of {} for {} collateral",
            p.user,
            p.lending_pool,
            health(hf),
            if cover == U256::MAX {
                "the most allowed".to_owned()
            } else {
                cover.to_string()
            },
            p.debt,
            p.collateral
        );
        if let Some(i) = safe {
            let mut calls = Vec::new();
            if let Some(a) = approve {
                calls.push(Call {
                    operation: 0,
                    to: p.debt,
                    value: U256::ZERO,
                    data: a,
                });
            }
            calls.push(Call {
                operation: 0,
                to: p.lending_pool,
                value: U256::ZERO,
                data: call,
            });
            let acct = self.refresh(i).await?;
            let nonce = {
                let highest = self
                    .queue
                    .highest_pending_nonce(self.safes[i].address)
                    .await
                    .map_err(store)?;
                highest.map_or(acct.nonce, |h| (h + 1).max(acct.nonce))
            };
            let tx = self.build(i, &calls, nonce);
            let hash = tx.hash(
                self.safes[i].chain_id,
                self.safes[i].address,
                acct.hash_version(),
            );
            self.queue
                .set_liquidation_tx(&env.key, hash)
                .await
                .map_err(store)?;
            let (proposed, _) = self
                .enqueue(i, env, &acct, tx, why, "liquidation".into(), &env.key)
                .await?;
            return Ok(vec![proposed]);
        }
        let Some(r) = relayer else {
            unreachable!("a route was chosen above")
        };
        let r = &self.relayers[r];
        let mut jobs = Vec::new();
        if let Some(a) = approve {
            jobs.push(("approve", p.debt, a));
        }
        jobs.push(("liquidate", p.lending_pool, call));
        for (kind, target, data) in jobs {
            self.queue
                .add_job(&Job {
                    key: format!("liquidation:{}:{kind}", env.key),
                    relayer: r.address,
                    chain_id: r.chain_id,
                    kind: kind.into(),
                    target,
                    data: format!("0x{}", alloy::primitives::hex::encode(&data)),
                    safe_tx_hash: None,
                    liquidation_key: Some(env.key.clone()),
                    status: "pending".into(),
                    detail: None,
                })
                .await
                .map_err(store)?;
        }
        tracing::info!(user = %p.user, relayer = %r.address, "liquidation handed to the relayer: {why}");
        self.relayer_wake.notify_one();
        Ok(Vec::new())
    }
}

/// After a Safe transaction ran: the outcome of the liquidation it carried, if any.
pub async fn after_execution(
    core: &Core,
    i: usize,
    _story: &Envelope,
    safe_tx_hash: B256,
    transaction_hash: B256,
    success: bool,
) -> Result<Vec<Envelope>, HandlerError> {
    let Some(l) = core
        .queue
        .liquidation_by_safe_tx(safe_tx_hash)
        .await
        .map_err(store)?
    else {
        return Ok(Vec::new());
    };
    if l.outcome.is_some() {
        return Ok(Vec::new());
    }
    let request = Envelope::from_json(l.request.as_bytes())
        .map_err(|e| HandlerError::Fatal(e.to_string()))?;
    let req: LiquidationRequested = request
        .payload()
        .map_err(|e| HandlerError::Fatal(e.to_string()))?;
    let receipt: Option<Receipt> = core.safes[i]
        .pool
        .receipt(transaction_hash)
        .await
        .map_err(rpc)?;
    Ok(vec![
        settle(
            core,
            &request,
            &req,
            receipt.as_ref(),
            transaction_hash,
            success,
        )
        .await?,
    ])
}

/// The outcome of a liquidation from the receipt of the transaction that carried it.
pub async fn settle(
    core: &Core,
    request: &Envelope,
    req: &LiquidationRequested,
    receipt: Option<&Receipt>,
    transaction_hash: B256,
    success: bool,
) -> Result<Envelope, HandlerError> {
    let found = match (parse(req), receipt) {
        (Ok(p), Some(r)) if success && r.success() => covered(&r.logs, p.lending_pool, p.user),
        _ => None,
    };
    match found {
        Some((debt, collateral)) => {
            tracing::info!(user = %req.user, transaction_hash = %transaction_hash, debt_covered = %debt, collateral_received = %collateral, "liquidated");
            outcome(
                core,
                request,
                &LiquidationExecuted {
                    user: req.user.clone(),
                    transaction_hash: transaction_hash.to_string(),
                    debt_covered: debt.to_string(),
                    collateral_received: collateral.to_string(),
                },
            )
            .await
        }
        None => {
            outcome(
                core,
                request,
                &LiquidationFailed {
                    user: req.user.clone(),
                    error: if success && receipt.is_some_and(Receipt::success) {
                        "the transaction ran but the pool reported no LiquidationCall for this user"
                            .into()
                    } else {
                        "the liquidation reverted on chain".into()
                    },
                    transaction_hash: Some(transaction_hash.to_string()),
                },
            )
            .await
        }
    }
}

/// A liquidation's Safe transaction was superseded: it will never run.
pub async fn superseded(
    core: &Core,
    _story: &Envelope,
    safe_tx_hash: B256,
) -> Result<Vec<Envelope>, HandlerError> {
    let Some(l) = core
        .queue
        .liquidation_by_safe_tx(safe_tx_hash)
        .await
        .map_err(store)?
    else {
        return Ok(Vec::new());
    };
    if l.outcome.is_some() {
        return Ok(Vec::new());
    }
    let request = Envelope::from_json(l.request.as_bytes())
        .map_err(|e| HandlerError::Fatal(e.to_string()))?;
    let req: LiquidationRequested = request
        .payload()
        .map_err(|e| HandlerError::Fatal(e.to_string()))?;
    Ok(vec![outcome(core, &request, &LiquidationFailed {
        user: req.user,
        error: format!("its Safe transaction {safe_tx_hash} was superseded: another transaction used the nonce"),
        transaction_hash: None,
    })
    .await?])
}

/// A reorg retracted `transaction_hash`, which concluded liquidation `key`: its outcome no
/// longer stands (`liquidation.retracted`, once per reopening). `None` when it had no outcome.
pub async fn retract(
    core: &Core,
    key: &str,
    transaction_hash: B256,
) -> Result<Option<Envelope>, HandlerError> {
    let Some((before, reopened)) = core.queue.reopen_liquidation(key).await.map_err(store)? else {
        return Ok(None);
    };
    let bad = |e: steward_events::EnvelopeError| HandlerError::Fatal(e.to_string());
    let request = Envelope::from_json(before.request.as_bytes()).map_err(bad)?;
    let req: LiquidationRequested = request.payload().map_err(bad)?;
    let previous = match &before.outcome {
        Some(o) => Envelope::from_json(o.as_bytes()).map_err(bad)?.event_type,
        None => String::new(),
    };
    tracing::warn!(user = %req.user, transaction_hash = %transaction_hash, previous = %previous, reopened,
        "a reorg retracted the transaction that concluded a liquidation; it goes again");
    let mut e = request.derive(
        NAME,
        &format!("retracted:{reopened}"),
        &LiquidationRetracted {
            user: req.user.clone(),
            previous,
            transaction_hash: transaction_hash.to_string(),
            via: req.via.trim().to_owned(),
            reopened,
        },
    );
    if let Some(c) = request.chain_id {
        e = e.with_chain(c);
    }
    Ok(Some(e))
}
