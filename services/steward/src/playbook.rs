//! `steward playbook …`: check playbooks, test them on recorded events, replay them against
//! the log, start manual runs, print their schema.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use steward_config::{Config, SystemEnv};
use steward_events::{Envelope, PlaybookRunRequested};
use steward_runner::dryrun::{self, Input};
use steward_runner::playbook::{self, CheckContext, Playbook};

use crate::app::CliError;

fn check_context(cfg: Option<&Config>) -> CheckContext<'_> {
    match cfg {
        Some(c) => CheckContext::for_config(c),
        None => CheckContext::default(),
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(format!("{}: cannot read: {e}", path.display())))
}

fn load(path: &Path, ctx: &CheckContext<'_>) -> Result<Playbook, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    playbook::parse(&text, &path.display().to_string(), &SystemEnv, ctx)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

/// `steward playbook validate FILES…`: every problem of every file, non-zero when any.
pub fn validate(cfg: Option<&Config>, files: &[PathBuf]) -> Result<ExitCode, CliError> {
    let ctx = check_context(cfg);
    let mut bad = 0;
    for f in files {
        match load(f, &ctx) {
            Ok(pb) => println!(
                "{}: ok (playbook `{}`, version {}, {} trigger(s), {} step(s))",
                f.display(),
                pb.name,
                pb.version,
                pb.triggers.len(),
                pb.steps.len()
            ),
            Err(problems) => {
                bad += 1;
                for p in problems {
                    println!("{p}");
                }
            }
        }
    }
    if bad > 0 {
        println!("{bad} of {} file(s) invalid", files.len());
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn templates(cfg: Option<&Config>) -> Option<steward_notifier::Templates> {
    let default = Config::default();
    steward_notifier::Templates::load(cfg.unwrap_or(&default)).ok()
}

/// The expectation file beside an events file: `X.events.jsonl` → `X.expect.yaml`.
fn expectation_beside(events: &Path) -> Option<PathBuf> {
    let name = events.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".events.jsonl")
        .or_else(|| name.strip_suffix(".jsonl"))?;
    let p = events.with_file_name(format!("{stem}.expect.yaml"));
    p.exists().then_some(p)
}

/// `steward playbook test FILE --events EVENTS.jsonl [--expect FILE]`.
pub fn test(
    cfg: Option<&Config>,
    file: &Path,
    events: &Path,
    expect: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let ctx = check_context(cfg);
    let pb = match load(file, &ctx) {
        Ok(pb) => pb,
        Err(problems) => {
            for p in problems {
                println!("{p}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let inputs = dryrun::read_events(&read(events)?, &events.display().to_string())
        .map_err(CliError::Config)?;
    let approvers = cfg
        .map(steward_runner::service::approvers)
        .unwrap_or_default();
    let t = templates(cfg);
    let outcome = dryrun::run(vec![pb], &inputs, approvers, t.as_ref());
    print!("{}", outcome.report);
    let expect = expect
        .map(Path::to_path_buf)
        .or_else(|| expectation_beside(events));
    let Some(expect) = expect else {
        println!("(no expectation file: nothing compared)");
        return Ok(ExitCode::SUCCESS);
    };
    let want = dryrun::read_expectation(&read(&expect)?, &expect.display().to_string())
        .map_err(|e| CliError::Config(e.to_string()))?;
    let diffs = dryrun::compare(&outcome, &want);
    if diffs.is_empty() {
        println!("{}: as expected", expect.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}: {} difference(s):", expect.display(), diffs.len());
        for d in diffs {
            println!("  - {d}");
        }
        Ok(ExitCode::FAILURE)
    }
}

pub use steward_runner::dryrun::{parse_from, ReplayFrom as From};

/// The named playbook from the configured folder, or from `file`.
fn find(cfg: &Config, name: &str, file: Option<&Path>) -> Result<Playbook, CliError> {
    let ctx = CheckContext::for_config(cfg);
    if let Some(f) = file {
        return load(f, &ctx).map_err(|p| CliError::Config(p.join("\n")));
    }
    let dir = steward_runner::service::folder(cfg).ok_or_else(|| {
        CliError::Config(
            "no `playbooks.folder` in the configuration: name the file with --file".into(),
        )
    })?;
    let (pbs, problems) = steward_runner::service::load_folder(&dir, &ctx);
    match pbs.into_iter().find(|p| p.name == name) {
        Some(pb) => Ok(pb),
        None if !problems.is_empty() => Err(CliError::Config(format!(
            "no loadable playbook `{name}` in {}:\n{}",
            dir.display(),
            problems.join("\n")
        ))),
        None => Err(CliError::Config(format!(
            "no playbook named `{name}` in {}",
            dir.display()
        ))),
    }
}

/// `steward playbook replay NAME --from SEQ|TIME [--to SEQ]`: the playbook over the real log,
/// as a dry run (nothing is appended).
pub async fn replay(
    cfg: &Config,
    name: &str,
    file: Option<&Path>,
    from: From,
    to: Option<u64>,
) -> Result<ExitCode, CliError> {
    let pb = find(cfg, name, file)?;
    if pb.name != name {
        return Err(CliError::Config(format!(
            "{} holds the playbook `{}`, not `{name}`: name the playbook the file holds",
            file.map_or_else(String::new, |f| f.display().to_string()),
            pb.name
        )));
    }
    let log = crate::app::open_log(cfg).await?;
    let last = log
        .last_sequence()
        .await
        .context("cannot read the log's last sequence")?;
    let end = to.unwrap_or(last).min(last);
    let (mut next, since) = match from {
        From::Sequence(s) => (s, None),
        From::Time(t) => (1, Some(t)),
    };
    let mut inputs = Vec::new();
    while next <= end {
        let batch = log
            .read(next, &[], 1000)
            .await
            .context("cannot read the log")?;
        if batch.is_empty() {
            break;
        }
        for s in batch {
            next = s.sequence + 1;
            if s.sequence > end {
                break;
            }
            if since.is_some_and(|t| s.event.time < t) {
                continue;
            }
            inputs.push(Input::Event(Box::new(s.event)));
        }
    }
    println!("replaying `{}` (version {}) over {} event(s) of the log, up to sequence {end}: a dry run, nothing is written", pb.name, pb.version, inputs.len());
    let t = templates(Some(cfg));
    let outcome = dryrun::run(
        vec![pb],
        &inputs,
        steward_runner::service::approvers(cfg),
        t.as_ref(),
    );
    print!("{}", outcome.report);
    Ok(ExitCode::SUCCESS)
}

/// `steward playbook start NAME --input k=v…`: asks the runner for a manual run.
pub async fn start(
    cfg: &Config,
    name: &str,
    inputs: &[String],
    by: Option<String>,
) -> Result<ExitCode, CliError> {
    let pb = find(cfg, name, None)?;
    let mut given = serde_json::Map::new();
    for i in inputs {
        let (k, v) = i
            .split_once('=')
            .ok_or_else(|| CliError::Config(format!("--input `{i}`: write NAME=VALUE")))?;
        given.insert(k.trim().to_owned(), serde_json::Value::String(v.to_owned()));
    }
    let checked = steward_runner::engine::check_inputs(&pb, &given).map_err(CliError::Config)?;
    let by = by.unwrap_or_else(|| {
        format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )
    });
    let request = PlaybookRunRequested {
        playbook: pb.name.clone(),
        inputs: checked,
        requested_by: by,
    };
    // A root event: its own (unique) id names the request.
    let mut e = Envelope::new("cli", String::new(), &request);
    e.key = format!("manual:{}:{}", pb.name, e.id);
    let log = crate::app::open_log(cfg).await?;
    log.append(std::slice::from_ref(&e))
        .await
        .context("cannot append the request to the log")?;
    println!(
        "requested a run of `{}` (request {}); the runner starts it",
        pb.name, e.key
    );
    Ok(ExitCode::SUCCESS)
}

/// `steward playbook schema`.
pub fn schema() -> Result<ExitCode, CliError> {
    let s = serde_json::to_string_pretty(&steward_runner::format::json_schema())
        .map_err(|e| CliError::Other(e.into()))?;
    println!("{s}");
    Ok(ExitCode::SUCCESS)
}
