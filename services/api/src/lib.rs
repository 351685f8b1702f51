#![recursion_limit = "256"]

//! The `api` service: the Safe Transaction Service compatible HTTP API for signers.
//!
//! - It serves the endpoints the Safe ecosystem's clients use (`@safe-global/api-kit`,
//!   `steward safe …`): service info, a Safe's live state, multisig transactions (list,
//!   one, propose) and their confirmations (list, add), in the Safe Transaction Service's
//!   JSON shapes; see [`http`].
//! - It keeps its own read model from `safe.*` events ([`model`], migration `0007_api.sql`),
//!   applied exactly once per event key through the store's projection protocol, so an api
//!   pod needs only the log and the store, and any number of replicas can serve.
//! - It writes nothing but events: a proposal becomes `safe.tx.submitted`, a confirmation
//!   `safe.signature.submitted`. The safe service decides; the request waits for its verdict
//!   (`safe.signature.accepted`/`rejected`, whose causation id is the submission's id) up to
//!   `api.answer_timeout`.
//! - Nothing secret is served: no RPC URL, no relayer key; signatures are public by nature.

pub mod chain;
pub mod decode;
pub mod http;
pub mod model;
pub mod sts;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::Context as _;
use async_trait::async_trait;
use steward_config::{Config, Validator};
use steward_log::{HandlerError, Subscription};
use steward_runtime::{Service, ServiceContext, ServiceKind};
use tokio::sync::Notify;

use crate::http::{AppState, SafeEntry};
use crate::model::ApiProjection;

pub const NAME: &str = "api";

/// Events per fetch and per store transaction.
const BATCH: usize = 200;

pub fn service() -> Box<dyn Service> {
    Box::new(Api)
}

struct Api;

/// Checks of the `api:` section that need the rest of the configuration, reported at
/// file:line:column when the file is loaded.
pub fn check_config(config: &Config, v: &mut Validator<'_>) {
    if config.api.listen_addr() == config.http.listen {
        v.conflict(
            "api.listen",
            format!(
                "{} is also `http.listen` (/healthz, /readyz, /metrics): give the API its own port",
                config.api.listen_addr()
            ),
        );
    }
}

/// The Safes of the configuration, each with its chain's endpoint pool and a decoder of its
/// ABIs. A Safe whose chain or ABIs cannot be used is left out with a warning (the safe
/// service's own checks report it); the API serves the others.
pub fn safes(config: &Config) -> HashMap<Address, SafeEntry> {
    let mut pools: HashMap<String, steward_chain::EndpointPool> = HashMap::new();
    let mut out = HashMap::new();
    for s in &config.safes {
        let Ok(address) = Address::from_str(s.address.trim()) else {
            tracing::warn!(safe = %s.name, "not served: its address does not parse");
            continue;
        };
        let Some(chain) = config.chains.iter().find(|c| c.name == s.chain) else {
            tracing::warn!(safe = %s.name, chain = %s.chain, "not served: no such chain in `chains:`");
            continue;
        };
        let pool = match pools.get(&chain.name) {
            Some(p) => p.clone(),
            None => match steward_safe::account::pool_for(chain) {
                Ok(p) => {
                    pools.insert(chain.name.clone(), p.clone());
                    p
                }
                Err(e) => {
                    tracing::warn!(safe = %s.name, chain = %chain.name, error = %e, "not served: the chain's endpoints cannot be used");
                    continue;
                }
            },
        };
        let decoder = decode::StsDecoder::new(&config.base_dir, &s.abis).unwrap_or_else(|e| {
            tracing::warn!(safe = %s.name, error = %e, "calls are decoded with the built-in ABIs only");
            decode::StsDecoder::new(&config.base_dir, &[]).unwrap_or_default()
        });
        out.insert(
            address,
            SafeEntry {
                name: s.name.clone(),
                chain_id: chain.chain_id,
                pool,
                decoder,
            },
        );
    }
    out
}

#[async_trait]
impl Service for Api {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> ServiceKind {
        ServiceKind::Intake
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let listen = ctx.config.api.listen_addr();
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => Some(l),
            // The default address is taken (another Steward, another program): the API is
            // off in this process, and the rest runs. A configured one must be served.
            Err(e) if ctx.config.api.listen.is_none() => {
                tracing::error!(%listen, error = %e, "the HTTP API is OFF in this process: its default address is taken; set api.listen to serve it elsewhere");
                None
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot listen on {listen} (api.listen)"))
            }
        };
        let spec = steward_runtime::archiver::consumer_spec(&ctx, NAME).filters(["safe.>"]);
        let sub = Subscription::open(ctx.log.clone(), spec, ctx.metrics.clone()).await?;
        let applied = Arc::new(Notify::new());
        let state = Arc::new(AppState {
            store: ctx.store.clone(),
            log: ctx.log.clone(),
            safes: safes(&ctx.config),
            answer_timeout: ctx.config.api.answer_timeout,
            chain_ids: ctx.config.chains.iter().map(|c| c.chain_id).collect(),
            applied: applied.clone(),
        });
        let served = state.safes.len();
        let stop = ctx.shutdown.clone();
        let server = listener.map(|listener| {
            tracing::info!(%listen, safes = served, "Safe Transaction Service API at http://{listen}/api");
            tokio::spawn(async move {
                axum::serve(listener, http::router(state))
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            })
        });
        ctx.ready.set_ready();

        let projection = ApiProjection;
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
            if batch.is_empty() {
                continue;
            }
            let items: Vec<_> = batch.iter().map(|d| (d.sequence, &d.event)).collect();
            match ctx.store.project_batch(&projection, &items).await {
                Ok(_) => sub.ack(&batch).await?,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, events = batch.len(), "projection failed; the batch will be retried");
                    for d in &batch {
                        sub.fail(d, &HandlerError::Retry(e.to_string())).await?;
                    }
                }
                // One event cannot be applied: apply them one by one, so only that one is
                // retried or dead-lettered.
                Err(_) => {
                    for d in &batch {
                        match ctx.store.project(&projection, d.sequence, &d.event).await {
                            Ok(_) => sub.ack(std::slice::from_ref(d)).await?,
                            Err(e) => {
                                tracing::warn!(key = %d.event.key, event_type = %d.event.event_type, error = %e, "event not applied");
                                sub.fail(d, &HandlerError::from(e)).await?;
                            }
                        }
                    }
                }
            }
            applied.notify_waiters();
        }
        if let Some(server) = server {
            match server.await {
                Ok(r) => r.context("the HTTP server failed")?,
                Err(e) => anyhow::bail!("the HTTP server panicked: {e}"),
            }
        }
        Ok(())
    }
}
