use std::collections::HashMap;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Readiness, ReadyHandle, Service, ServiceContext, ServiceKind};

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("service `{service}` failed: {error:#}")]
    Failed {
        service: &'static str,
        error: anyhow::Error,
    },
    #[error("service `{service}` panicked: {message}")]
    Panicked {
        service: &'static str,
        message: String,
    },
    #[error("service `{service}` stopped on its own before shutdown was requested")]
    StoppedEarly { service: &'static str },
}

/// What happened during shutdown.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Services still running when the grace period ran out; they were aborted.
    pub abandoned: Vec<&'static str>,
    /// The first failure that brought the process down, if any.
    pub failure: Option<SupervisorError>,
}

/// Runs services as named tasks, with ordered shutdown.
pub struct Supervisor {
    readiness: Readiness,
    grace: Duration,
}

struct Task {
    name: &'static str,
    kind: ServiceKind,
}

impl Supervisor {
    pub fn new(readiness: Readiness, grace: Duration) -> Self {
        Self { readiness, grace }
    }

    /// Run `services` until `stop` is cancelled or one of them fails, then shut down in
    /// order: intake first, then workers, within the grace period.
    /// `make_ctx(name, shutdown, ready)` builds each service's context.
    pub async fn run<F>(
        self,
        services: Vec<Box<dyn Service>>,
        make_ctx: F,
        stop: CancellationToken,
    ) -> ShutdownReport
    where
        F: Fn(&'static str, CancellationToken, ReadyHandle) -> ServiceContext,
    {
        let intake = CancellationToken::new();
        let workers = CancellationToken::new();
        let mut set = JoinSet::new();
        let mut tasks: HashMap<Id, Task> = HashMap::new();
        for svc in services {
            let name = svc.name();
            let kind = svc.kind();
            let token = match kind {
                ServiceKind::Intake => intake.child_token(),
                ServiceKind::Worker => workers.child_token(),
            };
            let ctx = make_ctx(name, token, self.readiness.register(name));
            let handle = set.spawn(async move { svc.run(ctx).await });
            tasks.insert(handle.id(), Task { name, kind });
            tracing::info!(service = name, ?kind, "service started");
        }

        let mut report = ShutdownReport::default();
        // Run until asked to stop or until a service ends (which is always a failure).
        tokio::select! {
            _ = stop.cancelled() => tracing::info!("shutdown requested"),
            Some(res) = set.join_next_with_id() => {
                report.failure = Self::outcome(&mut tasks, res, false);
                if let Some(f) = &report.failure {
                    tracing::error!(error = %f, "a service stopped; shutting the process down");
                }
            }
        }

        self.readiness.set_draining();
        let deadline = Instant::now() + self.grace;
        for (phase, token, kind) in [
            ("intake", &intake, ServiceKind::Intake),
            ("workers", &workers, ServiceKind::Worker),
        ] {
            token.cancel();
            tracing::info!(phase, "stopping");
            while tasks.values().any(|t| t.kind == kind) {
                match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
                    Ok(Some(res)) => {
                        if let Some(f) = Self::outcome(&mut tasks, res, true) {
                            tracing::error!(error = %f, "service failed while stopping");
                            report.failure.get_or_insert(f);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        report.abandoned = tasks.values().map(|t| t.name).collect();
                        report.abandoned.sort_unstable();
                        tracing::error!(services = ?report.abandoned, grace = ?self.grace, "grace period over; abandoning services");
                        set.abort_all();
                        return report;
                    }
                }
            }
        }
        tracing::info!("all services stopped");
        report
    }

    fn outcome(
        tasks: &mut HashMap<Id, Task>,
        res: Result<(Id, anyhow::Result<()>), tokio::task::JoinError>,
        stopping: bool,
    ) -> Option<SupervisorError> {
        let (id, result) = match res {
            Ok((id, r)) => (id, Ok(r)),
            Err(e) => (e.id(), Err(e)),
        };
        let name = tasks.remove(&id).map(|t| t.name).unwrap_or("unknown");
        match result {
            Ok(Ok(())) if stopping => {
                tracing::info!(service = name, "service stopped");
                None
            }
            Ok(Ok(())) => Some(SupervisorError::StoppedEarly { service: name }),
            Ok(Err(error)) => Some(SupervisorError::Failed {
                service: name,
                error,
            }),
            Err(e) => {
                let message = if e.is_panic() {
                    let p = e.into_panic();
                    p.downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic".to_owned())
                } else {
                    "cancelled".to_owned()
                };
                Some(SupervisorError::Panicked {
                    service: name,
                    message,
                })
            }
        }
    }
}
