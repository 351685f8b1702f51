//! Wiring: configuration → event log, store, services, HTTP endpoints, signals.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use steward_config::{Config, SystemEnv};
use steward_log::{EventLog, LogMetrics, MeteredLog};
use steward_runtime::{serve_http, HttpState, Readiness, Service, ServiceContext, Supervisor};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    BenchCommand, Cli, Command, ConfigCommand, PlaybookCommand, RunArgs, WatchCommand,
};

pub enum CliError {
    /// Bad usage or configuration: the message says what to change.
    Config(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Other(e)
    }
}

type Factory = fn() -> Box<dyn Service>;

/// Every service this binary can run, by name, in start order.
pub const SERVICES: &[(&str, Factory)] = &[
    ("archiver", steward_runtime::archiver::service),
    ("risk", steward_risk::service),
    ("rebalancer", steward_rebalancer::service),
    ("safe", steward_safe::service),
    ("notifier", steward_notifier::service),
    ("runner", steward_runner::service),
    ("watcher", steward_watcher::service),
    ("api", steward_api::service),
];

fn service_names() -> String {
    SERVICES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            let cfg = load_config(cli.config.as_deref())?;
            println!("{}", cfg.summary());
            println!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Schema) => {
            let schema = serde_json::to_string_pretty(&steward_config::json_schema())
                .map_err(|e| CliError::Other(e.into()))?;
            println!("{schema}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => {
            let cfg = apply_overrides(load_config(cli.config.as_deref())?, &args)?;
            let all: Vec<&str> = SERVICES.iter().map(|(n, _)| *n).collect();
            run_services(cfg, &all, args.log_json).await
        }
        Command::Run { services, args } => {
            let cfg = apply_overrides(load_config(cli.config.as_deref())?, &args)?;
            let mut chosen: Vec<&str> = Vec::new();
            for s in &services {
                match SERVICES.iter().find(|(n, _)| n == s) {
                    Some((n, _)) if !chosen.contains(n) => chosen.push(n),
                    Some(_) => {}
                    None => {
                        return Err(CliError::Config(format!(
                            "unknown service `{s}`; choose from: {}",
                            service_names()
                        )))
                    }
                }
            }
            if !cfg.uses_nats() {
                return Err(CliError::Config(
                    "`steward run` runs services as separate processes, which share the event log through NATS: \
                     pass --nats URL (or STEWARD_NATS_URL), or set event_log.backend: nats in the config. \
                     Use `steward up` to run everything in one process without a server."
                        .into(),
                ));
            }
            if cfg.database.url.is_none() {
                return Err(CliError::Config(
                    "`steward run` needs a shared PostgreSQL store: pass --database-url URL (or STEWARD_DATABASE_URL), \
                     or set database.url in the config."
                        .into(),
                ));
            }
            run_services(cfg, &chosen, args.log_json).await
        }
        Command::Watch(WatchCommand::Packs) => {
            for pack in steward_watcher::packs::all() {
                println!("{:<32} {}", pack.name, pack.spec.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch(WatchCommand::Backfill {
            chain,
            from,
            to,
            args,
        }) => {
            let cfg = apply_overrides(load_config(cli.config.as_deref())?, &args)?;
            crate::watch::backfill(cfg, chain, from, to, args.log_json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Risk {
            updates,
            positions,
            operators,
            attributes,
            runs,
        }) => {
            crate::bench::risk(updates, positions, operators, attributes, runs)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Watcher {
            blocks,
            logs_per_block,
            state,
            range,
            concurrency,
            nats,
            positions,
            rounds,
        }) => {
            crate::bench::watcher(crate::bench::WatcherBench {
                blocks,
                logs_per_block,
                state,
                range,
                concurrency,
                nats,
                positions,
                rounds,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Safe {
            hashes,
            proposals,
            no_simulation,
        }) => {
            crate::bench::safe(hashes, proposals, !no_simulation).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Notifier {
            messages,
            chats,
            rate,
        }) => {
            crate::bench::notifier(messages, chats, rate).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Runner {
            playbooks,
            events,
            samples,
            rate,
        }) => {
            crate::bench::runner(playbooks, events, samples, rate).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Playbook(cmd) => playbook_command(cli.config.as_deref(), cmd).await,
        Command::Safe(cmd) => {
            let cfg = load_config(cli.config.as_deref())?;
            crate::safe_cli::run(cmd, cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Log {
            events,
            batch,
            nats,
            rate,
        }) => {
            crate::bench::log(events, batch, nats, rate).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn playbook_command(
    config: Option<&Path>,
    cmd: PlaybookCommand,
) -> Result<ExitCode, CliError> {
    use crate::playbook;
    match cmd {
        PlaybookCommand::Validate { files } => {
            let cfg = config.map(|p| load_config(Some(p))).transpose()?;
            playbook::validate(cfg.as_ref(), &files)
        }
        PlaybookCommand::Test {
            file,
            events,
            expect,
        } => {
            let cfg = config.map(|p| load_config(Some(p))).transpose()?;
            playbook::test(cfg.as_ref(), &file, &events, expect.as_deref())
        }
        PlaybookCommand::Replay {
            name,
            from,
            to,
            file,
            args,
        } => {
            let cfg = apply_overrides(load_config(config)?, &args)?;
            let from = playbook::parse_from(&from).map_err(CliError::Config)?;
            playbook::replay(&cfg, &name, file.as_deref(), from, to).await
        }
        PlaybookCommand::Start {
            name,
            inputs,
            by,
            args,
        } => {
            let cfg = apply_overrides(load_config(config)?, &args)?;
            playbook::start(&cfg, &name, &inputs, by).await
        }
        PlaybookCommand::Schema => playbook::schema(),
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    match path {
        Some(p) => Config::load_checked(p, &SystemEnv, &check_services)
            .map_err(|e| CliError::Config(e.to_string())),
        None => Ok(Config::default()),
    }
}

/// The services' own configuration checks, run when the file is loaded (start-up and
/// `steward config check`), so their problems too name file:line:column.
fn check_services(cfg: &Config, v: &mut steward_config::Validator<'_>) {
    steward_watcher::check_config(cfg, v);
    steward_risk::check_config(cfg, v);
    steward_notifier::check_config(cfg, v);
    steward_runner::check_config(cfg, v);
    steward_safe::check_config(cfg, v);
    steward_api::check_config(cfg, v);
}

fn apply_overrides(cfg: Config, args: &RunArgs) -> Result<Config, CliError> {
    let mut cfg = cfg
        .with_nats_url(args.nats.clone())
        .with_database_url(args.database_url.clone());
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        cfg.http.listen = l;
    }
    cfg.validate()
        .map_err(|e| CliError::Config(e.to_string()))?;
    Ok(cfg)
}

pub(crate) async fn open_log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    let el = &cfg.event_log;
    match (&el.nats, cfg.uses_nats()) {
        (Some(n), true) => {
            let nats = steward_log::nats::NatsConfig::new(n.url.clone())
                .stream(n.stream.clone())
                .prefix(el.prefix.clone())
                .replicas(usize::from(n.replicas))
                .duplicate_window(n.duplicate_window)
                .max_age(n.max_age)
                .token(n.token.as_ref().map(|t| t.expose().to_owned()))
                .connection_name("steward");
            let log = steward_log::nats::NatsLog::connect(nats)
                .await
                .context("cannot start the NATS event log")?;
            Ok(Arc::new(log))
        }
        (None, true) => anyhow::bail!("event_log.backend is nats but event_log.nats is missing"),
        _ => {
            let path = cfg.event_log_file();
            let log = steward_log::embedded::EmbeddedLog::open(&path, &el.prefix)
                .await
                .with_context(|| {
                    format!("cannot open the embedded event log at {}", path.display())
                })?;
            Ok(Arc::new(log))
        }
    }
}

pub(crate) async fn open_store(cfg: &Config) -> anyhow::Result<steward_store::Store> {
    let url = match cfg.database_target() {
        steward_config::DatabaseTarget::Url(secret) => secret.expose().to_owned(),
        steward_config::DatabaseTarget::SqliteFile(path) => format!("sqlite://{}", path.display()),
    };
    steward_store::Store::connect(&url, cfg.database.max_connections)
        .await
        .context("cannot open the store")
}

async fn run_services(cfg: Config, names: &[&str], log_json: bool) -> Result<ExitCode, CliError> {
    let format = if log_json || cfg.log.format == steward_config::LogFormat::Json {
        steward_runtime::telemetry::LogFormat::Json
    } else {
        steward_runtime::telemetry::LogFormat::Text
    };
    steward_runtime::telemetry::init(format, &cfg.log.level).map_err(CliError::Config)?;

    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| {
            CliError::Config(format!(
                "cannot listen on {} for /healthz, /readyz and /metrics: {e}",
                cfg.http.listen
            ))
        })?;
    let mut registry = Registry::default();
    let metrics = LogMetrics::register(&mut registry);
    let log: Arc<dyn EventLog> = Arc::new(MeteredLog::new(open_log(&cfg).await?, metrics.clone()));
    let store = open_store(&cfg).await?;
    tracing::info!(backend = log.backend(), store = ?store.dialect(), listen = %cfg.http.listen, services = ?names, "steward starting");

    let readiness = Readiness::default();
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(serve_http(
        listener,
        HttpState {
            readiness: readiness.clone(),
            registry: Arc::new(registry),
        },
        http_stop.clone(),
    ));

    let stop = CancellationToken::new();
    tokio::spawn(wait_for_signal(stop.clone()));

    let services: Vec<Box<dyn Service>> = names
        .iter()
        .filter_map(|n| SERVICES.iter().find(|(s, _)| s == n).map(|(_, f)| f()))
        .collect();
    let config = Arc::new(cfg);
    let grace = config.shutdown_grace;
    let report = Supervisor::new(readiness, grace)
        .run(
            services,
            |name, shutdown, ready| ServiceContext {
                name,
                log: log.clone(),
                metrics: metrics.clone(),
                store: store.clone(),
                config: config.clone(),
                shutdown,
                ready,
            },
            stop,
        )
        .await;

    http_stop.cancel();
    let _ = http.await;
    store.close().await;
    let failed = report.failure.is_some() || !report.abandoned.is_empty();
    if let Some(f) = report.failure {
        tracing::error!(error = %f, "steward stopped because a service failed");
    }
    if !report.abandoned.is_empty() {
        tracing::error!(services = ?report.abandoned, "services abandoned at the end of the grace period");
    }
    tracing::info!("steward stopped");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops steward");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    stop.cancel();
}
