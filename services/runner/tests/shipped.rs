//! The playbooks shipped in `playbooks/`: each loads against the test configuration
//! (`playbooks/tests/steward.yaml`: the channels and approvers they name), has recorded events
//! and an expectation file, and does exactly what the expectation says when fed them — the
//! same check as `steward playbook test`. The JSON Schema committed there is up to date.

use std::path::{Path, PathBuf};

use steward_config::{Config, SystemEnv};
use steward_runner::dryrun;
use steward_runner::playbook::{self, CheckContext};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks")
}

fn config() -> Config {
    Config::load_checked(
        &root().join("tests/steward.yaml"),
        &SystemEnv,
        &steward_runner::check_config,
    )
    .expect("the test configuration loads")
}

fn shipped() -> Vec<PathBuf> {
    steward_runner::service::files(&root()).expect("playbooks/ is readable")
}

fn outcome(cfg: &Config, file: &Path) -> (dryrun::Outcome, dryrun::Expectation) {
    let name = file.file_stem().unwrap().to_str().unwrap().to_owned();
    let text = std::fs::read_to_string(file).unwrap();
    let pb = playbook::parse(
        &text,
        &file.display().to_string(),
        &SystemEnv,
        &CheckContext::for_config(cfg),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}: {}",
            file.display(),
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let events_file = root().join(format!("tests/{name}.events.jsonl"));
    let expect_file = root().join(format!("tests/{name}.expect.yaml"));
    let events = std::fs::read_to_string(&events_file)
        .unwrap_or_else(|_| panic!("{name} has no recorded events ({})", events_file.display()));
    let expect = std::fs::read_to_string(&expect_file)
        .unwrap_or_else(|_| panic!("{name} has no expectation file ({})", expect_file.display()));
    let inputs = dryrun::read_events(&events, &events_file.display().to_string()).unwrap();
    let templates = steward_notifier::Templates::load(cfg).unwrap();
    let out = dryrun::run(
        vec![pb],
        &inputs,
        steward_runner::service::approvers(cfg),
        Some(&templates),
    );
    let want = dryrun::read_expectation(&expect, &expect_file.display().to_string()).unwrap();
    (out, want)
}

#[test]
fn the_nine_playbooks_are_shipped() {
    let names: Vec<String> = shipped()
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "aave-liquidation",
            "daily-digest",
            "eigenlayer-slashing",
            "governance-execute",
            "lido-rebalance",
            "liquidation-retracted",
            "oracle-alert",
            "safe-drift",
            "safe-reopened"
        ]
    );
}

#[test]
fn every_shipped_playbook_does_what_its_expectation_says_on_its_recorded_events() {
    let cfg = config();
    for file in shipped() {
        let (out, want) = outcome(&cfg, &file);
        let diffs = dryrun::compare(&out, &want);
        assert!(
            diffs.is_empty(),
            "{}:\n{}\n\nreport:\n{}",
            file.display(),
            diffs.join("\n"),
            out.report
        );
        assert!(
            !out.runs.is_empty(),
            "{}: the recorded events start no run",
            file.display()
        );
    }
}

#[test]
fn a_wrong_expectation_is_reported() {
    let cfg = config();
    let (out, _) = outcome(&cfg, &root().join("aave-liquidation.yaml"));
    let want = dryrun::read_expectation(
        "runs:\n  - {outcome: failed}\neffects:\n  - type: liquidation.requested\n    data: {debt_to_cover: \"1\"}\n",
        "wrong.yaml",
    )
    .unwrap();
    let diffs = dryrun::compare(&out, &want);
    assert!(
        diffs.iter().any(|d| d.contains("expected 1 run(s), got 2")),
        "{diffs:?}"
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("expected outcome `failed`, got `succeeded`")),
        "{diffs:?}"
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("debt_to_cover: expected \"1\", got \"4500000000\"")),
        "{diffs:?}"
    );
}

#[test]
fn the_committed_schema_is_up_to_date() {
    let path = root().join("playbook.schema.json");
    let generated =
        serde_json::to_string_pretty(&steward_runner::format::json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the playbook types; regenerate it with\n\n    UPDATE_SCHEMA=1 cargo test -p steward-runner --test shipped\n\nand commit it",
        path.display()
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["title"], "Steward playbook");
    assert_eq!(schema["additionalProperties"], false);
    for step_kind in [
        "notify",
        "queue_liquidation",
        "request_rebalance",
        "propose_safe_tx",
        "wait_for",
        "approval",
        "set",
    ] {
        assert!(
            schema["$defs"]["StepDoc"]["properties"]
                .get(step_kind)
                .is_some(),
            "{step_kind}"
        );
    }
}
