//! The `safe` service: builds Safe transactions, collects and checks signatures, executes
//! once the threshold is met.
//!
//! - [`tx`], [`multisend`], [`signature`]: the Safe model (hashes, batches, signatures).
//! - [`core`]: the queue's rules: proposals (`safe.proposal.requested`), transactions
//!   submitted with a signature (`safe.tx.submitted`, from the API), signatures
//!   (`safe.signature.submitted`), executions and owner changes seen by the watcher.
//! - [`relayer`]: executes ready transactions and liquidations from a relayer account.
//! - [`liquidation`]: `liquidation.requested`, re-checked, proposed or relayed.
//! - [`decode`], [`simulate`]: what signers see (calls by name, would it revert).

pub mod account;
pub mod bench;
pub mod core;
pub mod decode;
pub mod liquidation;
pub mod multisend;
pub mod queue;
pub mod relayer;
pub mod signature;
pub mod simulate;
pub mod tx;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use steward_config::{Config, Validator};
use steward_log::Subscription;
use steward_runtime::{Service, ServiceContext};

pub use crate::core::Core;
pub use crate::queue::Queue;

pub const NAME: &str = "safe";

/// Events per fetch.
const BATCH: usize = 100;

/// What the service consumes.
pub const CONSUMES: [&str; 7] = [
    "safe.proposal.requested",
    "safe.tx.submitted",
    "safe.signature.submitted",
    "liquidation.requested",
    "chain.log.observed",
    "chain.state.observed",
    "chain.reorg.detected",
];

pub fn service() -> Box<dyn Service> {
    Box::new(Safe)
}

struct Safe;

#[async_trait]
impl Service for Safe {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let core = Arc::new(Core::new(&ctx.config, Queue::new(ctx.store.clone()))?);
        if let Err(e) = core.recover().await {
            tracing::warn!(error = %e, "could not hand ready transactions to the relayer yet; they are handed over when next seen");
        }
        let spec = steward_runtime::archiver::consumer_spec(&ctx, NAME).filters(CONSUMES);
        let sub = Subscription::open(ctx.log.clone(), spec, ctx.metrics.clone()).await?;
        let relayer = tokio::spawn(relayer::run(
            core.clone(),
            ctx.log.clone(),
            ctx.shutdown.clone(),
        ));
        tracing::info!(
            safes = core.safes.len(),
            relayers = core.relayers.len(),
            "Safe queue running"
        );
        ctx.ready.set_ready();
        loop {
            let batch = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                b = sub.fetch(BATCH, Duration::from_secs(1)) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "event log unavailable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for d in &batch {
                let span = steward_runtime::event_span(NAME, &d.event);
                let outcome = {
                    let _e = span.enter();
                    core.handle(&d.event)
                }
                .await;
                let written = match outcome {
                    Ok(events) if events.is_empty() => Ok(()),
                    Ok(events) => ctx.log.append(&events).await.map(|_| ()).map_err(|e| {
                        steward_log::HandlerError::Retry(format!("cannot append: {e}"))
                    }),
                    Err(e) => Err(e),
                };
                match written {
                    Ok(()) => sub.ack(std::slice::from_ref(d)).await?,
                    Err(e) => {
                        tracing::warn!(event_type = %d.event.event_type, key = %d.event.key, error = %e, "event not handled");
                        sub.fail(d, &e).await?;
                    }
                }
            }
        }
        let _ = relayer.await;
        Ok(())
    }
}

/// Checks `safes:` against `chains:`: the chain exists and follows the Safe with the `safe`
/// pack (executions and owner changes are learned from it); ABI files load.
pub fn check_config(config: &Config, v: &mut Validator<'_>) {
    for (i, s) in config.safes.iter().enumerate() {
        let p = format!("safes[{i}]");
        let Some(chain) = config.chains.iter().find(|c| c.name == s.chain) else {
            v.invalid(
                &format!("{p}.chain"),
                format!(
                    "no chain named `{}` in `chains:` (chains: {})",
                    s.chain,
                    config
                        .chains
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            continue;
        };
        let followed = chain.watches.iter().any(|w| {
            w.pack.as_deref() == Some("safe")
                && w.address
                    .iter()
                    .chain(w.addresses.iter())
                    .any(|a| a.trim().eq_ignore_ascii_case(s.address.trim()))
        });
        if !followed {
            v.invalid(
                &format!("{p}.address"),
                format!(
                    "chain `{}` has no watch with `pack: safe` at {}: add one, or executions and owner changes are never seen",
                    s.chain, s.address
                ),
            );
        }
        if let Err(e) = decode::Decoder::new(&config.base_dir, &s.abis) {
            v.invalid(&format!("{p}.abis"), e);
        }
    }
}
