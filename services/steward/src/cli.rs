use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Steward: the back office of a DAO — chains watched, risk judged, Safe transactions
/// proposed, alerts sent.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about)]
pub struct Cli {
    /// Configuration file (YAML). Without one, embedded defaults are used.
    #[arg(long, short, global = true, env = "STEWARD_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process (embedded event log and SQLite store unless the
    /// config says otherwise).
    Up(RunArgs),
    /// Run the chosen services against NATS and PostgreSQL.
    Run {
        /// Services to run: watcher, risk, rebalancer, safe, notifier, runner, api, archiver.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Chain watching: backfill history, list the watch packs.
    #[command(subcommand)]
    Watch(WatchCommand),
    /// Measure throughput and latency.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Playbooks: check them, test them on recorded events, replay them against the log.
    #[command(subcommand)]
    Playbook(PlaybookCommand),
    /// Safe transactions for signers: the queue, one transaction in full, sign, execute
    /// (through the api service's HTTP API; `--api URL` or the config's `api.listen`).
    #[command(subcommand)]
    Safe(crate::safe_cli::SafeCommand),
}

#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Check playbook files: every problem with file:line:column, the field and what was
    /// expected (checked against the configuration's channels, approvers and operator sets
    /// when --config is given). Exits non-zero when any file is invalid.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Feed recorded events (JSON lines, one envelope each) to a playbook and print what would
    /// happen: runs, steps, rendered messages, decoded Safe transactions. Nothing is written.
    /// With an expectation file (--expect, or X.expect.yaml beside X.events.jsonl), exits
    /// non-zero when the outcome differs.
    Test {
        file: PathBuf,
        #[arg(long)]
        events: PathBuf,
        #[arg(long)]
        expect: Option<PathBuf>,
    },
    /// Run a playbook over the real event log from a sequence number or a time, as a dry run:
    /// what it would have done, nothing written.
    Replay {
        /// The playbook's name (from `playbooks.folder`).
        name: String,
        /// A sequence number, or an RFC 3339 time (2026-01-02T09:00:00Z).
        #[arg(long)]
        from: String,
        /// Last sequence (default: the log's end now).
        #[arg(long)]
        to: Option<u64>,
        /// Read the playbook from this file instead of the folder (a version not deployed yet).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Ask the runner to start a playbook that has a `manual` trigger.
    Start {
        name: String,
        /// An input, NAME=VALUE (repeat for several).
        #[arg(long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
        /// Who asks (default: cli:$USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Print the JSON Schema of playbook files.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum WatchCommand {
    /// Ingest a chain's history (final blocks only) into the event log: decoded logs of every
    /// configured watch, with eth_getLogs ranges split when a provider refuses them. Resumes
    /// where an interrupted run of the same range stopped; events already in the log are not
    /// doubled.
    Backfill {
        /// The chain's `name` in the configuration.
        #[arg(long)]
        chain: String,
        /// First block.
        #[arg(long)]
        from: u64,
        /// Last block (default: the newest final block).
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// List the watch packs shipped with this build.
    Packs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// NATS server URL; selects the JetStream event log.
    #[arg(long, env = "STEWARD_NATS_URL")]
    pub nats: Option<String>,
    /// PostgreSQL URL for the store.
    #[arg(long, env = "STEWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for embedded SQLite files.
    #[arg(long, env = "STEWARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "STEWARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration, then print the effective settings (secrets
    /// redacted). Exits non-zero with file:line:column on error.
    Check,
    /// Print the JSON Schema of the configuration file.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// safeTxHash computations/s, owner signature verifications/s against the raw secp256k1
    /// recovery rate, and proposals queued end to end per second (anvil with Safe v1.4.1;
    /// needs `scripts/install-test-deps`).
    Safe {
        /// Transactions hashed, and signatures verified.
        #[arg(long, default_value_t = 200_000)]
        hashes: usize,
        /// Proposals requested at once for the end-to-end figure.
        #[arg(long, default_value_t = 500)]
        proposals: usize,
        /// Leave simulation out of the end-to-end figure.
        #[arg(long)]
        no_simulation: bool,
    },
    /// The risk rules' throughput on position updates, and the rebalancer's planning time for
    /// a large operator set with attribute caps.
    Risk {
        /// Position updates evaluated.
        #[arg(long, default_value_t = 100_000)]
        updates: usize,
        /// Distinct positions they belong to.
        #[arg(long, default_value_t = 5_000)]
        positions: usize,
        /// Operators in the set to plan.
        #[arg(long, default_value_t = 10_000)]
        operators: usize,
        /// Capped attributes of the set (jurisdiction, geography, infrastructure, client).
        #[arg(long, default_value_t = 4)]
        attributes: usize,
        /// Plans timed (the median and the worst are reported).
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// The watcher's ingestion (blocks/s, logs/s) against a bare alloy eth_getLogs loop over
    /// the same anvil chain at the same request concurrency, and RPC requests per block for
    /// state polls with and without Multicall3. Needs `anvil` on PATH (scripts/install-test-deps).
    Watcher {
        /// Blocks in the workload, one transaction each.
        #[arg(long, default_value_t = 10_000)]
        blocks: u64,
        /// ERC-20 Transfer logs per block.
        #[arg(long, default_value_t = 20)]
        logs_per_block: u64,
        /// Where the generated chain is kept (anvil state dump); made on first use.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Blocks per eth_getLogs request.
        #[arg(long, default_value_t = 2000)]
        range: u64,
        /// Requests in flight; each value is one run (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        concurrency: Vec<usize>,
        /// NATS server for the JetStream figures.
        #[arg(long, env = "STEWARD_NATS_URL")]
        nats: Option<String>,
        /// Aave positions polled for the state-poll figures.
        #[arg(long, default_value_t = 500)]
        positions: usize,
        /// Rounds per concurrency, each the bare loop then the watcher; the summary gives
        /// the median of the rounds (a shared machine's speed drifts from run to run).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The notifier: requests rendered (every part) and handed to a transport per second,
    /// and, through the whole service (embedded log, outbox, delivery) to a fake Telegram Bot
    /// API on loopback with Telegram's limits lifted, messages per second and the time from
    /// `notify.requested` appended to the message's arrival (p50, p99) at a paced rate.
    Notifier {
        /// Requests per run.
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        /// Telegram chats the requests are spread over (one channel each).
        #[arg(long, default_value_t = 50)]
        chats: usize,
        /// Requests per second for the latency run.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// The runner: events per second matched against many loaded playbooks, and the time from
    /// an event's append to the resulting request being in the log (p50, p99), embedded log
    /// and SQLite store.
    Runner {
        /// Playbooks loaded.
        #[arg(long, default_value_t = 100)]
        playbooks: usize,
        /// Events fed for the throughput figure.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Events (each triggering one run) for the latency figure.
        #[arg(long, default_value_t = 500)]
        samples: usize,
        /// Events per second for the latency run.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Append + consume + ack throughput and publish-to-consume latency of the event log:
    /// the embedded backend, and with --nats the JetStream backend against a raw
    /// async-nats loop on the same server.
    Log {
        /// Events per run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per append batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// NATS server for the JetStream figures.
        #[arg(long, env = "STEWARD_NATS_URL")]
        nats: Option<String>,
        /// Also measure latency with appends paced at this rate (events/s): at full speed
        /// latency is mostly queueing behind the producer.
        #[arg(long)]
        rate: Option<f64>,
    },
}
