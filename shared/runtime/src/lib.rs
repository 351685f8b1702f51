//! The shape every Steward service shares, and the supervisor that runs them.
//!
//! - A service is a [`Service`]: a name, a [`ServiceKind`], and `run(ctx)`. It reads only
//!   events and its own store, writes only events and its own store.
//! - [`Supervisor`] runs a set of services in one process. Every task is named; a service
//!   that fails or panics stops the whole process with its name in the error, because a
//!   half-running Steward is worse than a restarted one.
//! - Shutdown is ordered: intake services (watcher, api) are cancelled first and drained,
//!   then the workers, all within one grace period. Anything still running after it is
//!   abandoned and reported.
//! - [`Readiness`] is ready only when every service in the process says so; `/readyz`
//!   reports it, `/healthz` reports liveness, `/metrics` the Prometheus registry.

pub mod archiver;
mod http;
mod readiness;
mod supervisor;
pub mod telemetry;

use std::sync::Arc;

use async_trait::async_trait;
use steward_log::{EventLog, LogMetrics};
use tokio_util::sync::CancellationToken;

pub use http::{serve_http, HttpState};
pub use readiness::{Readiness, ReadyHandle};
pub use supervisor::{ShutdownReport, Supervisor, SupervisorError};

/// How a service takes part in shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Brings work in from outside (chain RPC, HTTP): stopped first, so nothing new
    /// arrives while the rest drain.
    Intake,
    /// Processes events from the log: stopped after intake has stopped.
    Worker,
}

/// Everything a service gets from the process that runs it.
#[derive(Clone)]
pub struct ServiceContext {
    pub name: &'static str,
    pub log: Arc<dyn EventLog>,
    pub metrics: LogMetrics,
    pub store: steward_store::Store,
    pub config: Arc<steward_config::Config>,
    /// Cancelled when this service must stop taking new work and return.
    pub shutdown: CancellationToken,
    pub ready: ReadyHandle,
}

/// A Steward service.
#[async_trait]
pub trait Service: Send + 'static {
    fn name(&self) -> &'static str;

    fn kind(&self) -> ServiceKind {
        ServiceKind::Worker
    }

    /// Run until `ctx.shutdown` is cancelled, then finish in-flight work and return.
    /// Mark `ctx.ready` once the service can do its job.
    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()>;
}

/// A registered service whose work has not been built yet. It reports ready (it is
/// running and healthy), says plainly in the log that it does nothing yet, and waits.
/// It consumes no events, so nothing is acked on its behalf.
pub struct Idle {
    name: &'static str,
    kind: ServiceKind,
    pending_work: &'static str,
}

impl Idle {
    /// The boxed service, ready for the registry.
    pub fn service(
        name: &'static str,
        kind: ServiceKind,
        pending_work: &'static str,
    ) -> Box<dyn Service> {
        Box::new(Self {
            name,
            kind,
            pending_work,
        })
    }
}

#[async_trait]
impl Service for Idle {
    fn name(&self) -> &'static str {
        self.name
    }

    fn kind(&self) -> ServiceKind {
        self.kind
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        tracing::info!(service = self.name, "running idle: {}", self.pending_work);
        ctx.ready.set_ready();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// A span for handling one event: every log line inside carries the story's ids.
pub fn event_span(service: &str, event: &steward_events::Envelope) -> tracing::Span {
    tracing::info_span!(
        "event",
        service = service,
        event_type = %event.event_type,
        key = %event.key,
        correlation_id = %event.correlation_id,
    )
}
