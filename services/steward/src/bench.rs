//! `steward bench log`: the event log's throughput and latency, against the limit.

use std::sync::Arc;

use steward_log::bench::{self, Figures};
use steward_log::embedded::EmbeddedLog;
use steward_log::nats::{NatsConfig, NatsLog};

fn row(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>10.0} events/s   p50 {:>9.2?}   p99 {:>9.2?}   ({} events in {:.2}s)",
        f.events_per_sec, f.p50_latency, f.p99_latency, f.events, f.seconds
    );
}

/// Run the log benchmark at full speed and, with `rate`, once more paced at that rate.
pub async fn log(
    events: usize,
    batch: usize,
    nats: Option<String>,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    println!("event log: append + consume + ack of {events} events, append batches of {batch}\n");
    let dir = tempfile::tempdir()?;
    let mut paces = vec![None];
    if rate.is_some() {
        paces.push(rate);
    }
    for pace in paces {
        let label = |name: &str| match pace {
            Some(r) => format!("{name} @ {r:.0}/s"),
            None => name.to_owned(),
        };
        let file = dir.path().join(format!("bench-{}.db", run_id()));
        let embedded = EmbeddedLog::open(&file, "bench").await?;
        let f = bench::log_backend_paced(Arc::new(embedded), events, batch, pace).await?;
        row(&label("embedded (SQLite)"), &f);
        if pace.is_none() {
            println!(
                "{:<34} {:.2}x of the 50,000 events/s target",
                "",
                f.events_per_sec / 50_000.0
            );
        }
        let Some(url) = &nats else {
            continue;
        };
        let run = run_id();
        let cfg = NatsConfig::new(url.clone())
            .stream(format!("BENCH_{run}"))
            .prefix(format!("bench{run}"));
        let raw = bench::raw_jetstream_paced(&cfg, events, batch, pace).await?;
        row(&label("raw async-nats JetStream"), &raw);
        let log = NatsLog::connect(cfg).await?;
        let f = bench::log_backend_paced(Arc::new(log), events, batch, pace).await?;
        row(&label("steward JetStream backend"), &f);
        println!(
            "{:<34} {:.2}x of the raw loop (target 0.70x)",
            "",
            f.events_per_sec / raw.events_per_sec
        );
    }
    if nats.is_none() {
        println!("\n(pass --nats URL or set STEWARD_NATS_URL for the JetStream figures)");
    }
    Ok(())
}

/// CPU time of this process (user + system, and the system part) and of another one since
/// a start, from `/proc/<pid>/stat` in clock ticks of 1/100 s (USER_HZ on Linux).
struct Cpu {
    other: u32,
    at: [f64; 3],
}

impl Cpu {
    fn start(other: u32) -> Self {
        Self {
            other,
            at: Self::now(other),
        }
    }

    /// (steward, of which system, the other process)
    fn spent(&self) -> [f64; 3] {
        let now = Self::now(self.other);
        [0, 1, 2].map(|i| now[i] - self.at[i])
    }

    fn now(other: u32) -> [f64; 3] {
        let (me, system) = Self::read("self");
        [me, system, Self::read(&other.to_string()).0]
    }

    /// (user + system, system)
    fn read(pid: &str) -> (f64, f64) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 100.0
        };
        // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
        (ticks(11) + ticks(12), ticks(12))
    }
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}

/// What `steward bench watcher` measures with; see [`watcher`].
pub struct WatcherBench {
    pub blocks: u64,
    pub logs_per_block: u64,
    pub state: Option<std::path::PathBuf>,
    pub range: u64,
    pub concurrency: Vec<usize>,
    pub nats: Option<String>,
    pub positions: usize,
    pub rounds: usize,
}

/// Removes the files a run wrote and waits until the kernel has written back what it still
/// held: otherwise the write-back of one run's few hundred MB competes with the next run.
fn settle(dir: &std::path::Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        // A closing connection may remove its WAL and shared-memory files meanwhile.
        match std::fs::remove_file(entry?.path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let synced = std::process::Command::new("sync").status()?;
    anyhow::ensure!(synced.success(), "sync failed: {synced}");
    Ok(())
}

/// A fresh SQLite store for one run.
async fn bench_store(dir: &std::path::Path, run: &str) -> anyhow::Result<steward_store::Store> {
    let path = dir.join(format!("s-{run}.db"));
    Ok(steward_store::Store::connect(&format!("sqlite://{}", path.display()), 4).await?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The watcher benchmark: a chain of `blocks` blocks, each with one transaction emitting
/// `logs_per_block` ERC-20 `Transfer` logs (generated once with anvil and reloaded from its
/// state dump), ingested by the watcher and by a bare `eth_getLogs` loop; then RPC requests
/// per block for state polls of `positions` Aave positions with and without Multicall3.
pub async fn watcher(b: WatcherBench) -> anyhow::Result<()> {
    use steward_watcher::bench as wb;

    let state = b.state.clone().unwrap_or_else(|| {
        steward_testkit::tools_dir()
            .join("bench")
            .join(format!("watcher-{}x{}.json", b.blocks, b.logs_per_block))
    });
    let sidecar = state.with_extension("token");
    if !state.exists() || !sidecar.exists() {
        generate(&state, &sidecar, b.blocks, b.logs_per_block).await?;
    }
    let token: alloy::primitives::Address = std::fs::read_to_string(&sidecar)?.trim().parse()?;
    let topic0 = alloy::primitives::keccak256("Transfer(address,address,uint256)");
    let path = state.clone();
    let anvil = tokio::task::spawn_blocking(move || {
        steward_testkit::Anvil::builder()
            .arg("--load-state")
            .arg(path.display().to_string())
            .spawn()
    })
    .await?;
    let url = anvil.url();
    let (from, to) = (2, b.blocks + 1);
    println!(
        "watcher: blocks {from}..={to} on anvil ({} logs per block), eth_getLogs ranges of {} blocks\n",
        b.logs_per_block,
        b.range
    );
    let anvil_pid = anvil.pid();
    let row = |name: &str, t: &wb::Throughput, cpu: [f64; 3]| {
        println!(
            "{name:<44} {:>8.0} blocks/s {:>9.0} logs/s   ({} logs in {:.2}s)",
            t.blocks_per_sec(),
            t.logs_per_sec(),
            t.logs,
            t.seconds
        );
        if let Some([fetch, prepare, write, append, commit]) = t.stages {
            println!(
                "{:<44} stages (overlapping): waiting for fetches {fetch:.2}s, preparing {prepare:.2}s, waiting for writes {write:.2}s; writes: append {append:.2}s, store {commit:.2}s",
                ""
            );
        }
        println!(
            "{:<44} CPU: steward {:.2}s (system {:.2}s), anvil {:.2}s (of {:.2}s on 2 cores)",
            "",
            cpu[0],
            cpu[1],
            cpu[2],
            2.0 * t.seconds
        );
    };
    let dir = tempfile::tempdir()?;
    // Per concurrency and destination: (bare logs/s, watcher logs/s) of each round.
    let mut summary: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut record = |name: String, bare: f64, watcher: f64| match summary
        .iter_mut()
        .find(|(n, _)| *n == name)
    {
        Some((_, v)) => v.push((bare, watcher)),
        None => summary.push((name, vec![(bare, watcher)])),
    };
    // Per concurrency: the best ratio that writing alone allows, each round (embedded log).
    let mut bounds: Vec<(usize, f64)> = Vec::new();
    for &c in &b.concurrency {
        for round in 1..=b.rounds.max(1) {
            println!("-- {c} in flight, round {round}");
            settle(dir.path())?;
            let cpu = Cpu::start(anvil_pid);
            let bare = wb::bare_get_logs(&url, token, topic0, from, to, b.range, c).await?;
            let bare_cpu = cpu.spent();
            row(
                &format!("bare alloy eth_getLogs loop, {c} in flight"),
                &bare,
                bare_cpu,
            );
            let cfg = bench_config(&bench_chain(&url, token, from, b.range, c, false))?;
            // The embedded log, then NATS if given.
            for nats in std::iter::once(None).chain(b.nats.as_deref().map(Some)) {
                let (label, name) = match nats {
                    None => ("watcher -> embedded log (SQLite)", "embedded log"),
                    Some(_) => ("watcher -> NATS JetStream log", "NATS JetStream"),
                };
                settle(dir.path())?;
                let run = run_id();
                let log: Arc<dyn steward_log::EventLog> = match nats {
                    None => Arc::new(
                        steward_log::embedded::EmbeddedLog::open(
                            &dir.path().join(format!("e-{run}.db")),
                            "bench",
                        )
                        .await?,
                    ),
                    Some(url) => Arc::new(
                        NatsLog::connect(
                            NatsConfig::new(url.to_owned())
                                .stream(format!("BENCH_{run}"))
                                .prefix(format!("bench{run}")),
                        )
                        .await?,
                    ),
                };
                let store = bench_store(dir.path(), &run).await?;
                let cpu = Cpu::start(anvil_pid);
                let t = wb::watcher_ingest(&cfg, log.clone(), store).await?;
                check(&t, &bare)?;
                row(label, &t, cpu.spent());
                println!(
                    "{:<44} {:.2}x of the bare loop (target 0.80x)",
                    "",
                    t.logs_per_sec() / bare.logs_per_sec()
                );
                record(
                    format!("{c} in flight, {name}"),
                    bare.logs_per_sec(),
                    t.logs_per_sec(),
                );
                if nats.is_none() {
                    let bound =
                        write_floor(log.as_ref(), dir.path(), anvil_pid, &bare, bare_cpu).await?;
                    bounds.push((c, bound));
                }
            }
        }
    }
    println!(
        "\nmedians over {} rounds (logs/s; ratio of the medians, and each round's ratio):",
        b.rounds.max(1)
    );
    for (name, rounds) in &summary {
        let bare = median(rounds.iter().map(|r| r.0).collect());
        let watcher = median(rounds.iter().map(|r| r.1).collect());
        let each: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r.1 / r.0)).collect();
        println!(
            "{name:<32} bare {bare:>9.0}, watcher {watcher:>9.0}: {:.2}x (rounds: {}; target 0.80x)",
            watcher / bare,
            each.join(", ")
        );
    }
    for &c in &b.concurrency {
        let each: Vec<f64> = bounds.iter().filter(|b| b.0 == c).map(|b| b.1).collect();
        let rounds: Vec<String> = each.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "{:<32} best ratio writing alone allows: {:.2}x (rounds: {})",
            format!("{c} in flight, embedded log"),
            median(each),
            rounds.join(", ")
        );
    }
    println!();
    // With a block event per block too (headers fetched for every block).
    let c = b.concurrency.iter().copied().max().unwrap_or(1);
    let cfg = bench_config(&bench_chain(&url, token, from, b.range, c, true))?;
    settle(dir.path())?;
    let run = run_id();
    let log =
        steward_log::embedded::EmbeddedLog::open(&dir.path().join(format!("e-{run}.db")), "bench")
            .await?;
    let store = bench_store(dir.path(), &run).await?;
    let cpu = Cpu::start(anvil_pid);
    let t = wb::watcher_ingest(&cfg, Arc::new(log), store).await?;
    row(
        &format!("watcher + block events, {c} in flight"),
        &t,
        cpu.spent(),
    );

    // State polls.
    println!(
        "\nstate polls: RPC requests per block while following the head, {} Aave positions",
        b.positions
    );
    let deploy = |name: &'static str| {
        let (_, code) = steward_testkit::fixture_artifact(name);
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let from = steward_testkit::json_rpc(&url, "eth_accounts", serde_json::json!([]))?
                    [0]
                .clone();
                let hash = steward_testkit::json_rpc(
                    &url,
                    "eth_sendTransaction",
                    serde_json::json!([{ "from": from, "data": code }]),
                )?;
                loop {
                    let r = steward_testkit::json_rpc(
                        &url,
                        "eth_getTransactionReceipt",
                        serde_json::json!([hash]),
                    )?;
                    if let Some(a) = r["contractAddress"].as_str() {
                        return anyhow::Ok(a.to_owned());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            })
            .await?
        }
    };
    let multicall = deploy("Multicall3Compatible").await?;
    let pool = deploy("MockLendingPool").await?;
    for mc in [multicall.as_str(), "disabled"] {
        let borrowers: Vec<String> = (0..b.positions)
            .map(|i| format!("\"0x{:040x}\"", 0x10_0000 + i))
            .collect();
        let yaml = format!(
            "chains:\n  - name: bench\n    chain_id: 31337\n    rpc: [{{url: \"{url}\"}}]\n    blocks: false\n    multicall: {}\n    watches:\n      - name: aave\n        pack: aave-v3-pool\n        address: \"{pool}\"\n        params:\n          borrowers: [{}]\n",
            if mc == "disabled" { "disabled".to_owned() } else { format!("\"{mc}\"") },
            borrowers.join(", ")
        );
        let cfg = bench_config(&yaml)?;
        let run = run_id();
        let log = steward_log::embedded::EmbeddedLog::open(
            &dir.path().join(format!("e-{run}.db")),
            "bench",
        )
        .await?;
        let store = steward_store::Store::connect(
            &format!(
                "sqlite://{}",
                dir.path().join(format!("s-{run}.db")).display()
            ),
            4,
        )
        .await?;
        let per_block = wb::requests_per_block(&cfg, Arc::new(log), store, 20).await?;
        println!(
            "{:<44} {per_block:>8.1} requests per block",
            if mc == "disabled" {
                "without Multicall3 (one eth_call each)"
            } else {
                "with Multicall3 (aggregate3)"
            }
        );
    }
    drop(anvil);
    Ok(())
}

/// A lower bound on the watcher's time from writing alone: the events the watcher just wrote
/// to `written`, appended again to a fresh embedded log in the watcher's chunks with nothing
/// else running (no RPC, no decoding). The watcher must also get the logs from anvil, which
/// spent `bare_cpu[2]` CPU-seconds serving the bare loop, on the same 2 cores; so it needs
/// at least the longer of the write's time and (anvil's CPU + the write's CPU) / 2.
/// Prints the figures; returns the best ratio to the bare loop that this bound allows.
async fn write_floor(
    written: &dyn steward_log::EventLog,
    dir: &std::path::Path,
    anvil_pid: u32,
    bare: &steward_watcher::bench::Throughput,
    bare_cpu: [f64; 3],
) -> anyhow::Result<f64> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let page = written.read(from, &[], 50_000).await?;
        let Some(last) = page.last() else { break };
        from = last.sequence + 1;
        events.extend(page.into_iter().map(|s| s.event));
    }
    settle(dir)?;
    let log =
        steward_log::embedded::EmbeddedLog::open(&dir.join(format!("w-{}.db", run_id())), "bench")
            .await?;
    let cpu = Cpu::start(anvil_pid);
    let start = std::time::Instant::now();
    for chunk in events.chunks(20_000) {
        steward_log::EventLog::append(&log, chunk).await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let [spent, system, _] = cpu.spent();
    let floor = seconds.max((bare_cpu[2] + spent) / 2.0);
    let bound = bare.seconds / floor;
    println!(
        "{:<44} writing alone: the same {} events into a fresh embedded log, nothing else running: {seconds:.2}s ({:.0} events/s), CPU {spent:.2}s (system {system:.2}s)",
        "",
        events.len(),
        events.len() as f64 / seconds
    );
    println!(
        "{:<44} with anvil's {:.2} CPU-s for the logs, the watcher needs >= {floor:.2}s on 2 cores: at best {bound:.2}x of the bare loop",
        "", bare_cpu[2]
    );
    Ok(bound)
}

fn check(
    t: &steward_watcher::bench::Throughput,
    bare: &steward_watcher::bench::Throughput,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        t.logs == bare.logs,
        "the watcher produced {} log events where the bare loop read {} logs",
        t.logs,
        bare.logs
    );
    Ok(())
}

fn bench_chain(
    url: &str,
    token: alloy::primitives::Address,
    from: u64,
    range: u64,
    concurrency: usize,
    blocks: bool,
) -> String {
    format!(
        "chains:\n  - name: bench\n    chain_id: 31337\n    rpc: [{{url: \"{url}\"}}]\n    start_block: {from}\n    blocks: {blocks}\n    multicall: disabled\n    max_block_range: {range}\n    concurrency: {concurrency}\n    watches:\n      - name: tokens\n        address: \"{token}\"\n        events: [\"event Transfer(address indexed from, address indexed to, uint256 value)\"]\n"
    )
}

fn bench_config(yaml: &str) -> anyhow::Result<steward_config::Config> {
    let doc = steward_config::Document::parse(yaml, "bench.yaml", &steward_config::MapEnv::new())?;
    Ok(steward_config::Config::from_document_checked(
        &doc,
        std::path::PathBuf::from("."),
        &steward_watcher::check_config,
    )?)
}

/// Generates the workload once: a fresh anvil, the TransferEmitter, one transaction per block,
/// then anvil stopped so that it writes its state (blocks, receipts, logs) to `state`.
async fn generate(
    state: &std::path::Path,
    sidecar: &std::path::Path,
    blocks: u64,
    per_block: u64,
) -> anyhow::Result<()> {
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)?;
    }
    println!(
        "generating the workload ({blocks} blocks x {per_block} logs) into {}; once",
        state.display()
    );
    let (state, sidecar) = (state.to_owned(), sidecar.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let anvil = steward_testkit::Anvil::builder()
            .arg("--dump-state")
            .arg(state.display().to_string())
            .spawn();
        let token = anvil.deploy_fixture("TransferEmitter");
        let data = format!("0x9a1304ae{per_block:064x}");
        let started = std::time::Instant::now();
        for i in 0..blocks {
            anvil.send_transaction(serde_json::json!({ "to": token, "data": data }));
            if (i + 1) % 1000 == 0 {
                println!("  {} blocks ({:.0?})", i + 1, started.elapsed());
            }
        }
        let head = anvil.rpc("eth_blockNumber", serde_json::json!([]));
        anyhow::ensure!(
            head == serde_json::json!(format!("{:#x}", blocks + 1)),
            "expected one block per transaction; the head is {head}"
        );
        anvil.shutdown();
        anyhow::ensure!(
            state.exists(),
            "anvil wrote no state to {}",
            state.display()
        );
        std::fs::write(&sidecar, &token)?;
        Ok(())
    })
    .await?
}

/// `steward bench notifier`: rendering throughput, the whole service's throughput to a fake
/// Telegram server, and append-to-arrival latency at a paced rate.
pub async fn notifier(messages: usize, chats: usize, rate: f64) -> anyhow::Result<()> {
    use steward_notifier::bench as nb;

    anyhow::ensure!(
        chats >= 1 && rate > 0.0,
        "--chats and --rate must be positive"
    );
    println!("notifier: {messages} notify.requested (template `liquidation`), {chats} chats\n");
    let r = tokio::task::spawn_blocking(move || nb::render(messages)).await??;
    println!(
        "{:<52} {:>9.0} messages/s   ({} in {:.2}s)",
        "rendered (4 parts) + e-mail built, one core",
        r.per_sec(),
        r.messages,
        r.seconds
    );
    let p = nb::pipeline(messages, chats).await?;
    println!(
        "{:<52} {:>9.0} messages/s   ({} in {:.2}s)",
        "log -> notifier -> fake Telegram (limits lifted)",
        p.per_sec(),
        p.messages,
        p.seconds
    );
    let n = ((rate * 10.0) as usize).clamp(100, 5000);
    let l = nb::latency(n, rate, chats).await?;
    println!(
        "{:<52} p50 {:>9.2?}   p99 {:>9.2?}   max {:>9.2?}   ({} at {:.0}/s)",
        "append -> arrival at fake Telegram", l.p50, l.p99, l.max, l.messages, l.rate
    );
    Ok(())
}

/// `steward bench risk`: the rules' throughput on position updates, and plan times for a large
/// operator set (target: 50 ms for 10,000 operators with 4 capped attributes).
pub fn risk(
    updates: usize,
    positions: usize,
    operators: usize,
    attributes: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let (rate, findings) = steward_risk::bench::positions(updates, positions)?;
    println!(
        "risk rules: {updates} position updates over {positions} positions: {rate:.0} updates/s ({findings} findings)"
    );
    use steward_rebalancer::plan::{plan, Operator, Policy};
    let names = ["jurisdiction", "geography", "infrastructure", "client"];
    let mut seed: u64 = 42;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let ops: Vec<Operator> = (0..operators)
        .map(|i| {
            // Mostly 1..2000 validators; the first 20 far above a 1% cap.
            let stake = u128::from(rnd() % 2000) + if i < 20 { 50_000 } else { 0 };
            let mut o = Operator::new(format!("op{i:05}"), stake);
            for a in names.iter().take(attributes) {
                o = o.with_attribute(a, &format!("g{}", rnd() % 12));
            }
            o.with_performance(if rnd() % 50 == 0 { 0.3 } else { 0.97 })
        })
        .collect();
    let policy = Policy {
        operator_cap_bps: 100,
        attribute_caps_bps: names
            .iter()
            .take(attributes)
            .map(|a| ((*a).to_owned(), 1200))
            .collect(),
        min_performance: Some(0.9),
        underperformer_cap_bps: 0,
        max_move: None,
    };
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        let p = plan(&ops, &policy);
        times.push(t.elapsed());
        last = Some(p);
    }
    times.sort();
    let p = last.unwrap_or_else(|| unreachable!());
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "rebalance plan: {operators} operators, {attributes} capped attributes ({}): median {median:.1?}, worst {worst:.1?} over {} runs; {:.2}x of the 50 ms target (median); {} moved in {} moves, {} unmet",
        if p.exact { "exact" } else { "greedy" },
        times.len(),
        median.as_secs_f64() / 0.050,
        p.moved,
        p.moves.len(),
        p.unmet.len()
    );
    Ok(())
}

/// `steward bench runner`: engine matching throughput with many playbooks loaded, and
/// append-to-request latency through the runner service (embedded log, SQLite store).
pub async fn runner(
    playbooks: usize,
    events: usize,
    samples: usize,
    rate: f64,
) -> anyhow::Result<()> {
    let (per_second, emitted) = steward_runner::bench::throughput(playbooks, events)?;
    println!(
        "runner engine: {events} events against {playbooks} playbooks: {per_second:.0} events/s ({emitted} events written: runs, steps, requests)"
    );
    let lat = steward_runner::bench::latency(playbooks, samples, rate).await?;
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    println!(
        "runner service: {samples} triggering events at {rate}/s with {playbooks} playbooks, append -> notify.requested in the log: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        lat[lat.len() - 1].as_secs_f64() * 1000.0
    );
    Ok(())
}

/// `steward bench safe`: safeTxHash computations/s; owner signature verifications/s against
/// the raw secp256k1 recovery rate on the same signatures; proposals queued end to end per
/// second (log → safe service → simulated, decoded, stored → `safe.tx.proposed` in the log),
/// on `steward up`'s embedded log and SQLite store, against anvil with Safe v1.4.1.
pub async fn safe(hashes: usize, proposals: usize, simulate: bool) -> anyhow::Result<()> {
    use steward_safe::bench as sb;
    let txs = sb::transactions(hashes);
    let rate = sb::hashes(&txs);
    println!(
        "{:<58} {rate:>12.0} /s   ({hashes} transactions, calldata 0-256 bytes)",
        "safeTxHash (v1.3+ domain)"
    );
    let signed = sb::signed(&txs, 5);
    let raw = sb::raw_recoveries(&signed);
    let verified = sb::verifications(&signed, 5);
    println!(
        "{:<58} {raw:>12.0} /s",
        "raw secp256k1 public-key recovery (the limit)"
    );
    println!(
        "{:<58} {verified:>12.0} /s   = {:.2}x the raw recovery rate",
        "owner signature verification (parse, recover, owner?)",
        verified / raw
    );

    let anvil = steward_testkit::Anvil::start();
    let d = anvil.deploy_safe();
    let owners = [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".to_owned(),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".to_owned(),
    ];
    let safe = anvil.create_safe(&d, &owners, 2, 1);
    let token = anvil.deploy_fixture("MockERC20");
    let dir = tempfile::tempdir()?;
    let accessor = if simulate {
        format!("    simulate_tx_accessor: \"{}\"\n", d.simulate_tx_accessor)
    } else {
        String::new()
    };
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{url}\"}}]\n    multicall: disabled\n    watches:\n      - {{name: treasury, pack: safe, address: \"{safe}\"}}\nsafes:\n  - name: treasury\n    chain: local\n    address: \"{safe}\"\n    multi_send: \"{ms}\"\n    multi_send_call_only: \"{msco}\"\n{accessor}",
        url = anvil.url(),
        ms = d.multi_send,
        msco = d.multi_send_call_only,
    );
    let doc = steward_config::Document::parse(&yaml, "bench.yaml", &steward_config::MapEnv::new())?;
    let config = steward_config::Config::from_document_checked(
        &doc,
        dir.path().to_path_buf(),
        &steward_safe::check_config,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let log: std::sync::Arc<dyn steward_log::EventLog> = std::sync::Arc::new(
        steward_log::embedded::EmbeddedLog::open(&dir.path().join("events.db"), "steward").await?,
    );
    let store = steward_store::Store::connect(
        &format!("sqlite://{}", dir.path().join("steward.db").display()),
        4,
    )
    .await?;
    let token_stop = tokio_util::sync::CancellationToken::new();
    let readiness = steward_runtime::Readiness::default();
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = steward_runtime::ServiceContext {
        name: steward_safe::NAME,
        log: log.clone(),
        metrics: steward_log::LogMetrics::register(&mut registry),
        store,
        config: std::sync::Arc::new(config),
        shutdown: token_stop.clone(),
        ready: readiness.register(steward_safe::NAME),
    };
    let service = tokio::spawn(steward_safe::service().run(ctx));
    while !readiness.is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let requests: Vec<steward_events::Envelope> = (0..proposals)
        .map(|i| {
            steward_events::Envelope::new(
                "bench",
                format!("bench:{i}"),
                &steward_events::SafeProposalRequested {
                    safe: "treasury".into(),
                    calls: vec![steward_events::SafeCall {
                        to: token.clone(),
                        value: "0".into(),
                        data: format!(
                            "0x40c10f19{:0>64}{:064x}",
                            safe.trim_start_matches("0x"),
                            i + 1
                        ),
                        operation: 0,
                    }],
                    reason: "bench".into(),
                    replace_nonce: None,
                },
            )
        })
        .collect();
    let start = std::time::Instant::now();
    log.append(&requests).await?;
    let filter = ["safe.tx.proposed".to_owned()];
    loop {
        let n = log.read(1, &filter, proposals + 1).await?.len();
        if n >= proposals {
            break;
        }
        if start.elapsed() > std::time::Duration::from_secs(600) {
            anyhow::bail!("only {n} of {proposals} proposals queued in 10 minutes");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    token_stop.cancel();
    let _ = service.await;
    println!(
        "{:<58} {:>12.0} /s   ({proposals} in {secs:.2}s; simulation {})",
        "proposals queued end to end (log -> safe -> log)",
        proposals as f64 / secs,
        if simulate { "on" } else { "off" }
    );
    Ok(())
}
