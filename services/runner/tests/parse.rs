//! `steward playbook validate`'s errors: each names file:line:column, the field path and what
//! was expected — for an unknown field, bad CEL (at the character inside the expression), a
//! bad cron expression, an unknown template variable, an unknown step kind, a jump to a missing
//! step, and the rest of what a playbook can get wrong. Positions are checked exactly.

use steward_config::{Config, ConfigError, MapEnv};
use steward_runner::playbook::{parse, CheckContext};

const OK: &str = "\
name: ok
on:
  - event: risk.position.liquidatable
    where: event.data.active
steps:
  - id: tell
    notify:
      channels: [ops]
      severity: high
      context:
        user: \"{{event.data.user}}\"
";

fn errors(text: &str) -> Vec<String> {
    match parse(text, "pb.yaml", &MapEnv::new(), &CheckContext::default()) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ConfigError::to_string).collect(),
    }
}

fn one(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e[0].clone()
}

#[test]
fn a_good_playbook_loads() {
    let pb = parse(OK, "pb.yaml", &MapEnv::new(), &CheckContext::default()).unwrap();
    assert_eq!(
        (pb.name.as_str(), pb.steps.len(), pb.triggers.len()),
        ("ok", 1, 1)
    );
    assert_eq!(pb.version.len(), 32);
}

#[test]
fn unknown_field() {
    let e = one(&OK.replace(
        "    where: event.data.active\n",
        "    wher: event.data.active\n",
    ));
    assert!(
        e.starts_with("pb.yaml:4:11: on[0].wher: unknown field `wher`"),
        "{e}"
    );
    assert!(e.contains("(did you mean `where`?)"), "{e}");
}

#[test]
fn bad_cel_is_placed_at_the_character_inside_the_expression() {
    let e = one(&OK.replace(
        "where: event.data.active",
        "where: event.data.active && (event.data.block_number > ",
    ));
    // `where: ` puts the expression at column 12; the parser stops at its end (column 48; YAML
    // drops the trailing space).
    assert!(
        e.starts_with("pb.yaml:4:59: on[0].where: bad CEL at line 1, column 48 of the expression"),
        "{e}"
    );
    // Quoted: one more column for the quote.
    let e = one(&OK.replace(
        "where: event.data.active",
        "where: \"event.data.active &&& true\"",
    ));
    assert!(
        e.starts_with("pb.yaml:4:33: on[0].where: bad CEL at line 1, column 21"),
        "{e}"
    );
    // A block scalar: the line inside it.
    let e = one(&OK.replace(
        "where: event.data.active",
        "where: |\n      event.data.active &&\n        )",
    ));
    assert!(
        e.starts_with("pb.yaml:6:9: on[0].where: bad CEL at line 2, column 3"),
        "{e}"
    );
}

#[test]
fn names_a_condition_uses_are_checked() {
    let e = one(&OK.replace(
        "where: event.data.active",
        "where: event.data.helth_factor > 1",
    ));
    assert!(e.starts_with("pb.yaml:4:12: on[0].where: unknown name `event.data.helth_factor`: the data of risk.position.liquidatable has"), "{e}");
    assert!(e.contains("`health_factor`"), "{e}");
    let e = one(&OK.replace(
        "where: event.data.active",
        "where: frobnicate(event.data.active)",
    ));
    assert!(e.contains("unknown function `frobnicate`"), "{e}");
}

#[test]
fn bad_cron_and_time_zone() {
    let text = OK
        .replace(
            "  - event: risk.position.liquidatable\n    where: event.data.active\n",
            "  - schedule: \"0 0 25 * * *\"\n    timezone: Mars/Olympus\n",
        )
        .replace("user: \"{{event.data.user}}\"", "user: fixed");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("pb.yaml:3:15: on[0].schedule: bad cron expression `0 0 25 * * *`"),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains("expected `sec min hour day-of-month month day-of-week [year]`"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("pb.yaml:4:15: on[0].timezone: unknown time zone `Mars/Olympus`"),
        "{}",
        e[1]
    );
}

#[test]
fn unknown_template_variable_at_its_place_in_the_string() {
    let e = one(&OK.replace(
        "user: \"{{event.data.user}}\"",
        "user: \"pool {{event.data.pool}} user {{event.data.usr}}\"",
    ));
    assert!(
        e.starts_with("pb.yaml:11:46: steps[0].notify.context.user: unknown template variable `event.data.usr`"),
        "{e}"
    );
    let e = one(&OK.replace("user: \"{{event.data.user}}\"", "user: \"{{vars.safe}}\""));
    assert!(
        e.contains("unknown template variable `vars.safe`: the vars (declared or `set`) are none"),
        "{e}"
    );
    let e = one(&OK.replace(
        "user: \"{{event.data.user}}\"",
        "user: \"{{frob event.data.user}}\"",
    ));
    assert!(e.contains("unknown template helper `frob`"), "{e}");
    let e = one(&OK.replace(
        "user: \"{{event.data.user}}\"",
        "user: \"{{#if event.data.user}}\"",
    ));
    assert!(e.starts_with("pb.yaml:11:"), "{e}");
    assert!(e.contains("not a valid template"), "{e}");
}

#[test]
fn unknown_step_kind() {
    let e = one(&OK.replace("    notify:\n", "    notifiy:\n"));
    assert!(
        e.starts_with("pb.yaml:7:5: steps[0].notifiy: unknown step kind `notifiy`: a step is one of `notify`,"),
        "{e}"
    );
    assert!(e.contains("(did you mean `notify`?)"), "{e}");
}

#[test]
fn jumps_go_to_later_steps_that_exist() {
    let e = one(&OK.replace("    notify:\n", "    on_error: goto cleanup\n    notify:\n"));
    assert!(
        e.starts_with(
            "pb.yaml:7:20: steps[0].on_error: jump to a missing step `cleanup`: the steps are tell"
        ),
        "{e}"
    );
    let e = one(&OK.replace("    notify:\n", "    on_error: goto tell\n    notify:\n"));
    assert!(e.contains("jumps back: a jump goes to a later step"), "{e}");
    let e = one(&OK.replace("    notify:\n", "    on_error: retry\n    notify:\n"));
    assert!(
        e.contains("expected `fail`, `continue` or `goto STEP`"),
        "{e}"
    );
}

#[test]
fn steps_and_triggers_need_exactly_one_kind_and_ids_are_unique() {
    let e = one(&OK.replace("    notify:\n", "    set: {x: \"1\"}\n    notify:\n"));
    assert!(e.contains("step `tell` must have exactly one kind"), "{e}");
    let text = format!("{OK}  - id: tell\n    set: {{x: \"1\"}}\n");
    let e = one(&text);
    assert!(
        e.starts_with("pb.yaml:12:9: steps[1].id: step id `tell` is used twice"),
        "{e}"
    );
    let e = one(&OK.replace(
        "  - event: risk.position.liquidatable\n",
        "  - event: risk.position.liquidatable\n    manual: true\n",
    ));
    assert!(
        e.contains("a trigger is exactly one of `event`, `schedule` or `manual` (2 given)"),
        "{e}"
    );
    let e = one(&OK.replace("risk.position.liquidatable", "risk.positon.*"));
    assert!(e.contains("matches no event type of the catalogue"), "{e}");
    // The runner's own events start no run: refused, not silently inert.
    let e = errors(&OK.replace("risk.position.liquidatable", "playbook.run.finished"));
    assert!(
        e[0].starts_with("pb.yaml:3:12: on[0].event: `playbook.run.finished` matches only the runner's own events (`playbook.*`)"),
        "{e:#?}"
    );
    // The same for what a step waits for.
    let wait = "  - id: later\n    wait_for: {event: playbook.step.*, timeout: 1m}\n";
    let e = one(&format!("{OK}{wait}"));
    assert!(e.contains("steps[1].wait_for.event"), "{e}");
    assert!(e.contains("matches only the runner's own events"), "{e}");
    let wait = "  - id: later\n    wait_for: {event: safe.tx.exeduted, timeout: 1m}\n";
    let e = one(&format!("{OK}{wait}"));
    assert!(e.contains("matches no event type of the catalogue"), "{e}");
    // A pattern reaching beyond the runner's events is fine.
    let e = errors(&OK.replace("risk.position.liquidatable", "\">\""));
    assert!(!e.iter().any(|e| e.contains("on[0].event")), "{e:#?}");
}

#[test]
fn step_fields_are_checked() {
    let safe = "  - id: propose\n    propose_safe_tx:\n      safe: \"0x12\"\n      reason: r\n      calls:\n        - to: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n          function: \"function transfer(address to, uint256 amount)\"\n          args: [\"0x5FbDB2315678afecb367f032d93F642f64180aa3\", \"lots\"]\n";
    let e = errors(&format!("{OK}{safe}"));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("pb.yaml:14:13: steps[1].propose_safe_tx.safe: expected an address"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with(
            "pb.yaml:19:64: steps[1].propose_safe_tx.calls[0].args[1]: `lots` is not an uint256"
        ),
        "{}",
        e[1]
    );
    let e = one(&format!(
        "{OK}  - id: w\n    wait_for: {{event: safe.tx.executed, timeout: soon}}\n"
    ));
    assert!(
        e.contains("steps[1].wait_for.timeout: expected a duration"),
        "{e}"
    );
    let e = one(&OK.replace("severity: high", "severity: dire"));
    assert!(
        e.starts_with("pb.yaml:9:17: steps[0].notify.severity: expected a severity"),
        "{e}"
    );
    let e = one(&format!("{OK}  - id: later\n    when: steps.after.done\n    set: {{x: \"1\"}}\n  - id: after\n    set: {{y: \"2\"}}\n"));
    assert!(
        e.contains("step `after` has not run yet at this point"),
        "{e}"
    );
}

#[test]
fn names_are_checked_against_the_configuration_when_there_is_one() {
    let config: Config = serde_json::from_value(serde_json::json!({})).unwrap_or_default();
    let ctx = CheckContext::for_config(&config);
    let e: Vec<String> = parse(OK, "pb.yaml", &MapEnv::new(), &ctx)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e, vec!["pb.yaml:8:18: steps[0].notify.channels[0]: no notification channel named `ops` in the configuration (there are: none)".to_owned()]);
}

#[test]
fn environment_values_fill_playbooks_and_are_not_echoed() {
    let text = OK.replace("severity: high", "severity: ${SEVERITY}");
    let env = MapEnv::new().with("SEVERITY", "sekrit-value");
    let e: Vec<String> = parse(&text, "pb.yaml", &env, &CheckContext::default())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e.len(), 1);
    assert!(!e[0].contains("sekrit-value"), "{}", e[0]);
}
