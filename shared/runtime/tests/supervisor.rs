//! The supervisor: named failures, ordered shutdown, grace period.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use steward_log::embedded::EmbeddedLog;
use steward_log::LogMetrics;
use steward_runtime::{
    Readiness, Service, ServiceContext, ServiceKind, Supervisor, SupervisorError,
};
use tokio_util::sync::CancellationToken;

type Journal = Arc<Mutex<Vec<String>>>;

enum Behaviour {
    /// Ready, then wait for shutdown; note when stopped; take `drain` to stop.
    Wait {
        drain: Duration,
    },
    Fail,
    Panic,
    ReturnEarly,
    /// Ignore shutdown entirely.
    Hang,
}

struct Probe {
    name: &'static str,
    kind: ServiceKind,
    behaviour: Behaviour,
    journal: Journal,
}

#[async_trait]
impl Service for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn kind(&self) -> ServiceKind {
        self.kind
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        ctx.ready.set_ready();
        match self.behaviour {
            Behaviour::Wait { drain } => {
                ctx.shutdown.cancelled().await;
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("{} stopping", self.name));
                tokio::time::sleep(drain).await;
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("{} stopped", self.name));
                Ok(())
            }
            Behaviour::Fail => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                anyhow::bail!("rpc endpoint refused")
            }
            Behaviour::Panic => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("index out of range")
            }
            Behaviour::ReturnEarly => Ok(()),
            Behaviour::Hang => {
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ctx: ServiceContext,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        EmbeddedLog::open(&dir.path().join("events.db"), "steward")
            .await
            .unwrap(),
    );
    let url = format!("sqlite://{}", dir.path().join("steward.db").display());
    let store = steward_store::Store::connect(&url, 2).await.unwrap();
    let ctx = ServiceContext {
        name: "fixture",
        log,
        metrics: LogMetrics::default(),
        store,
        config: Arc::new(steward_config::Config::default()),
        shutdown: CancellationToken::new(),
        ready: Readiness::default().register("fixture"),
    };
    Fixture { _dir: dir, ctx }
}

fn probe(
    name: &'static str,
    kind: ServiceKind,
    behaviour: Behaviour,
    journal: &Journal,
) -> Box<dyn Service> {
    Box::new(Probe {
        name,
        kind,
        behaviour,
        journal: journal.clone(),
    })
}

async fn run(
    services: Vec<Box<dyn Service>>,
    stop_after: Option<Duration>,
    grace: Duration,
) -> (steward_runtime::ShutdownReport, Readiness) {
    let f = fixture().await;
    let readiness = Readiness::default();
    let stop = CancellationToken::new();
    if let Some(d) = stop_after {
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            s.cancel();
        });
    }
    let base = f.ctx.clone();
    let report = Supervisor::new(readiness.clone(), grace)
        .run(
            services,
            move |name, shutdown, ready| ServiceContext {
                name,
                shutdown,
                ready,
                ..base.clone()
            },
            stop,
        )
        .await;
    (report, readiness)
}

#[tokio::test]
async fn intake_stops_before_workers() {
    let j: Journal = Default::default();
    let services = vec![
        probe(
            "worker",
            ServiceKind::Worker,
            Behaviour::Wait {
                drain: Duration::ZERO,
            },
            &j,
        ),
        probe(
            "intake",
            ServiceKind::Intake,
            Behaviour::Wait {
                drain: Duration::from_millis(200),
            },
            &j,
        ),
    ];
    let (report, readiness) = run(
        services,
        Some(Duration::from_millis(100)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        report.failure.is_none() && report.abandoned.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        *j.lock().unwrap(),
        vec![
            "intake stopping",
            "intake stopped",
            "worker stopping",
            "worker stopped"
        ]
    );
    assert!(
        readiness.is_draining() && !readiness.is_ready(),
        "a stopped process is not ready"
    );
}

#[tokio::test]
async fn a_failing_service_stops_the_process_and_is_named() {
    let j: Journal = Default::default();
    let services = vec![
        probe(
            "steady",
            ServiceKind::Worker,
            Behaviour::Wait {
                drain: Duration::ZERO,
            },
            &j,
        ),
        probe("flaky", ServiceKind::Worker, Behaviour::Fail, &j),
    ];
    let (report, _) = run(services, None, Duration::from_secs(5)).await;
    match report.failure {
        Some(SupervisorError::Failed { service, error }) => {
            assert_eq!(service, "flaky");
            assert!(error.to_string().contains("rpc endpoint refused"));
        }
        other => panic!("expected a named failure, got {other:?}"),
    }
    assert_eq!(
        *j.lock().unwrap(),
        vec!["steady stopping", "steady stopped"],
        "the others were shut down cleanly"
    );
}

#[tokio::test]
async fn a_panicking_service_is_named_with_its_message() {
    let j: Journal = Default::default();
    let (report, _) = run(
        vec![probe("boom", ServiceKind::Intake, Behaviour::Panic, &j)],
        None,
        Duration::from_secs(5),
    )
    .await;
    match report.failure {
        Some(SupervisorError::Panicked { service, message }) => {
            assert_eq!(service, "boom");
            assert_eq!(message, "index out of range");
        }
        other => panic!("expected a panic report, got {other:?}"),
    }
}

#[tokio::test]
async fn a_service_that_returns_on_its_own_is_a_failure() {
    let j: Journal = Default::default();
    let (report, _) = run(
        vec![probe(
            "quitter",
            ServiceKind::Worker,
            Behaviour::ReturnEarly,
            &j,
        )],
        None,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(
            report.failure,
            Some(SupervisorError::StoppedEarly { service: "quitter" })
        ),
        "{:?}",
        report.failure
    );
}

#[tokio::test]
async fn services_still_running_after_the_grace_period_are_abandoned_by_name() {
    let j: Journal = Default::default();
    let services = vec![
        probe("stuck", ServiceKind::Worker, Behaviour::Hang, &j),
        probe(
            "fine",
            ServiceKind::Worker,
            Behaviour::Wait {
                drain: Duration::ZERO,
            },
            &j,
        ),
    ];
    let started = std::time::Instant::now();
    let (report, _) = run(
        services,
        Some(Duration::from_millis(50)),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(report.abandoned, vec!["stuck"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown is bounded by the grace period"
    );
}
