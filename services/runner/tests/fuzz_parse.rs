//! The playbook parser and its checks under random input: the shipped playbooks mutated (bytes
//! flipped, cut short, lines deleted, duplicated or swapped, keys and YAML punctuation
//! inserted) and text made up from YAML's punctuation. Whatever comes in, `parse` returns —
//! it never panics — and every error it reports names a line and column inside the input.
//!
//! Lines are counted the way the YAML reader counts them (`\r\n`, `\r` and `\n` each end a
//! line); a position may be one past a line's last character (the end of the line, or of the
//! input). The checks run with the shipped playbooks' test configuration (channels, approvers,
//! notification templates known) and without one.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use steward_config::{Config, ConfigError, MapEnv, SystemEnv};
use steward_runner::playbook::{parse, CheckContext};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks")
}

fn shipped() -> &'static [String] {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(|| {
        let files = steward_runner::service::files(&root()).expect("playbooks/ is readable");
        assert!(files.len() >= 7, "the shipped playbooks: {files:?}");
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    })
}

fn config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::load_checked(
            &root().join("tests/steward.yaml"),
            &SystemEnv,
            &steward_runner::check_config,
        )
        .expect("the test configuration loads")
    })
}

/// The checks against the test configuration (building it loads the notifier's templates).
fn with_config() -> &'static CheckContext<'static> {
    static CTX: std::sync::OnceLock<CheckContext<'static>> = std::sync::OnceLock::new();
    CTX.get_or_init(|| CheckContext::for_config(config()))
}

/// The lines of `text` as YAML counts them, each with its length in characters.
fn line_lengths(text: &str) -> Vec<usize> {
    let mut out = vec![0];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(0);
            }
            '\n' => out.push(0),
            _ => *out.last_mut().unwrap() += 1,
        }
    }
    out
}

/// Parses `text` with and without a configuration; every error must be placed inside it.
fn check(text: &str) -> Result<(), TestCaseError> {
    let lines = line_lengths(text);
    for ctx in [&CheckContext::default(), with_config()] {
        let Err(errors) = parse(text, "pb.yaml", &MapEnv::new(), ctx) else {
            continue;
        };
        prop_assert!(!errors.is_empty(), "a refusal names at least one problem");
        for e in &errors {
            placed_inside(e, &lines)?;
        }
    }
    Ok(())
}

fn placed_inside(e: &ConfigError, lines: &[usize]) -> Result<(), TestCaseError> {
    let Some(at) = e.location() else {
        return Err(TestCaseError::fail(format!("no line:column in `{e}`")));
    };
    prop_assert_eq!(&at.file, "pb.yaml", "{}", e);
    prop_assert!(
        at.line >= 1 && at.line <= lines.len(),
        "line {} of {} in `{}`",
        at.line,
        lines.len(),
        e
    );
    let len = lines[at.line - 1];
    prop_assert!(
        at.column >= 1 && at.column <= len + 1,
        "column {} on a line of {} characters in `{}`",
        at.column,
        len,
        e
    );
    Ok(())
}

/// One change to a text.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte (the result read as UTF-8, invalid sequences replaced, as an editor would).
    FlipByte {
        at: usize,
        mask: u8,
    },
    /// Cut the text at a byte.
    Truncate {
        at: usize,
    },
    DeleteLine {
        line: usize,
    },
    DuplicateLine {
        line: usize,
    },
    SwapLines {
        a: usize,
        b: usize,
    },
    /// `key: value` as a new line, indented like the line it goes before (or not).
    InsertKey {
        line: usize,
        key: &'static str,
        value: &'static str,
        same_indent: bool,
    },
    /// A piece of YAML, CEL or template punctuation at a byte.
    InsertText {
        at: usize,
        text: &'static str,
    },
}

const KEYS: &[&str] = &[
    "name",
    "description",
    "enabled",
    "on",
    "event",
    "where",
    "schedule",
    "timezone",
    "manual",
    "inputs",
    "dedup",
    "cooldown",
    "steps",
    "id",
    "when",
    "retry",
    "on_error",
    "notify",
    "channels",
    "severity",
    "template",
    "context",
    "queue_liquidation",
    "request_rebalance",
    "propose_safe_tx",
    "wait_for",
    "timeout",
    "approval",
    "set",
    "calls",
    "jump",
    "unknown_field",
    "- id",
    "-",
    "<<",
    "? ",
];

const VALUES: &[&str] = &[
    "",
    "x",
    "1",
    "-1",
    "1h",
    "0s",
    "true",
    "null",
    "~",
    "[]",
    "{}",
    "[a, b",
    "{a: 1",
    "\"{{event.data.user}}\"",
    "\"{{#if x}}\"",
    "\"{{nope.nope}}\"",
    "\"{{}}\"",
    "event.data.x > ",
    "event.data.x == 'é'",
    "\"0 30 * * * *\"",
    "\"61 * * * *\"",
    "Mars/Olympus",
    "&a x",
    "*a",
    "!!str x",
    "|\n  block",
    ">-",
    "'unterminated",
    "\"${NOT_SET}\"",
    "${",
    "\"\\u00\"",
    "@",
    "`",
];

const TEXTS: &[&str] = &[
    ":",
    ": ",
    "-",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "#",
    "&",
    "*",
    "!",
    "|",
    ">",
    "%",
    "@",
    "`",
    "?",
    "\t",
    "\r",
    "\r\n",
    "\n",
    "\n  ",
    "\u{feff}",
    "\u{0}",
    "é",
    "\u{1F600}",
    "{{",
    "}}",
    "{{#each",
    "{{/if}}",
    "${",
    "${X}",
    "$",
    "(",
    ")",
    "&&",
    "||",
    "==",
    "'a'",
    "\"a\"",
    "event.",
    ".data",
    "steps.",
    "0x",
    "9999999999999999999999",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let idx = any::<prop::sample::Index>();
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::FlipByte { at, mask }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => any::<usize>().prop_map(|line| Mutation::DeleteLine { line }),
        1 => any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        3 => (any::<usize>(), idx.clone(), idx.clone(), any::<bool>()).prop_map(
            |(line, k, v, same_indent)| Mutation::InsertKey {
                line,
                key: KEYS[k.index(KEYS.len())],
                value: VALUES[v.index(VALUES.len())],
                same_indent,
            }
        ),
        3 => (any::<usize>(), idx).prop_map(|(at, t)| Mutation::InsertText {
            at,
            text: TEXTS[t.index(TEXTS.len())],
        }),
    ]
}

/// The byte at or before `at` (modulo the length) that starts a character.
fn boundary(text: &str, at: usize) -> usize {
    let mut i = at % (text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    match m {
        Mutation::FlipByte { at, mask } => {
            if text.is_empty() {
                return String::new();
            }
            let mut bytes = text.as_bytes().to_vec();
            let i = at % bytes.len();
            bytes[i] ^= mask;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::Truncate { at } => text[..boundary(text, *at)].to_owned(),
        Mutation::DeleteLine { line } => {
            if !lines.is_empty() {
                lines.remove(line % lines.len());
            }
            lines.concat()
        }
        Mutation::DuplicateLine { line } => {
            if !lines.is_empty() {
                let i = line % lines.len();
                lines.insert(i, lines[i]);
            }
            lines.concat()
        }
        Mutation::SwapLines { a, b } => {
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.concat()
        }
        Mutation::InsertKey {
            line,
            key,
            value,
            same_indent,
        } => {
            let i = line % (lines.len() + 1);
            let indent = match (same_indent, lines.get(i)) {
                (true, Some(l)) => l.len() - l.trim_start_matches(' ').len(),
                _ => 0,
            };
            let new = format!("{}{key}: {value}\n", " ".repeat(indent));
            let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            if i > 0 && !out[i - 1].ends_with('\n') {
                out[i - 1].push('\n');
            }
            out.insert(i, new);
            out.concat()
        }
        Mutation::InsertText { at, text: piece } => {
            let i = boundary(text, *at);
            format!("{}{piece}{}", &text[..i], &text[i..])
        }
    }
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // A failure is printed with its smallest input; no files written next to the tests.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn mutated_shipped_playbooks_never_panic_and_errors_are_placed_inside(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let texts = shipped();
        let mut text = texts[which.index(texts.len())].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        check(&text)?;
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    /// Text from YAML's punctuation, words the format knows, and odd characters.
    #[test]
    fn random_yaml_never_panics_and_errors_are_placed_inside(
        pieces in prop::collection::vec(
            prop_oneof![
                prop::sample::select(TEXTS).prop_map(str::to_owned),
                prop::sample::select(KEYS).prop_map(|k| format!("{k}: ")),
                prop::sample::select(VALUES).prop_map(str::to_owned),
                "[ a-z0-9_.]{0,8}",
                "\\PC{0,4}",
            ],
            0..40,
        ),
    ) {
        check(&pieces.concat())?;
    }
}

/// The mutations do reach the checks past YAML: some mutated playbooks still load, and
/// the refusals include errors of several kinds (so the property above is not only ever
/// exercised on YAML syntax errors).
#[test]
fn the_mutations_reach_past_the_yaml_reader() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (
        any::<prop::sample::Index>(),
        prop::collection::vec(mutation(), 1..3),
    );
    let mut loaded = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let (which, mutations) = strategy.new_tree(&mut runner).unwrap().current();
        let texts = shipped();
        let mut text = texts[which.index(texts.len())].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        match parse(&text, "pb.yaml", &MapEnv::new(), with_config()) {
            Ok(_) => loaded += 1,
            Err(errors) => kinds.extend(errors.iter().map(|e| format!("{:?}", e.kind()))),
        }
    }
    assert!(loaded > 0, "no mutated playbook loaded");
    assert!(kinds.len() >= 4, "error kinds seen: {kinds:?}");
}

#[test]
fn the_shipped_playbooks_load_unmutated() {
    for text in shipped() {
        check(text).unwrap();
        parse(text, "pb.yaml", &SystemEnv, with_config()).unwrap();
    }
}

#[test]
fn line_lengths_counts_lines_as_yaml_does() {
    assert_eq!(line_lengths(""), vec![0]);
    assert_eq!(line_lengths("ab\ncd"), vec![2, 2]);
    assert_eq!(line_lengths("ab\r\ncd\n"), vec![2, 2, 0]);
    assert_eq!(line_lengths("a\rbé"), vec![1, 2]);
}

// What the properties above found, pinned.

fn first_error(text: &str) -> String {
    match parse(text, "pb.yaml", &MapEnv::new(), &CheckContext::default()) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e[0].to_string(),
    }
}

const FOLDED: &str = "\
name: folded
on:
  - event: risk.safe.drift
    where: >-
      event.data.active &&
      event.data.field == 'owners' &&& true
steps:
  - id: tell
    notify: {channels: [ops], severity: high}
";

#[test]
fn an_error_in_a_folded_scalars_second_line_is_placed_on_that_line() {
    // The expression is one line once folded (column 53 of it: the third `&`); in the file,
    // line 6 (it was placed on line 5, past its end).
    let e = first_error(FOLDED);
    assert!(
        e.starts_with("pb.yaml:6:38: on[0].where: bad CEL at line 1, column 53 of the expression"),
        "{e}"
    );
    // A name on the second line of a plain scalar over two lines.
    let e = first_error(&FOLDED.replace(
        "    where: >-\n      event.data.active &&\n      event.data.field == 'owners' &&& true\n",
        "    where: event.data.active &&\n      event.data.feild == 'owners'\n",
    ));
    assert!(
        e.starts_with("pb.yaml:5:7: on[0].where: unknown name `event.data.feild`"),
        "{e}"
    );
}

#[test]
fn an_error_at_the_end_of_a_text_without_a_final_line_break_is_inside_it() {
    // (It was placed on line 3.)
    let e = first_error("name: x\non: [");
    assert!(e.starts_with("pb.yaml:2:6: "), "{e}");
}

#[test]
fn an_empty_document_is_refused_at_its_start() {
    // (It had no position at all.)
    for (text, at) in [("", "1:1"), ("null", "1:1"), ("~\n", "1:1"), ("  ", "1:3")] {
        let e = first_error(text);
        assert!(
            e.starts_with(&format!("pb.yaml:{at}: missing required field `name`")),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn a_var_whose_name_is_no_path_is_placed_at_the_vars() {
    // (It had no position at all.)
    let e = first_error(&FOLDED.replace(
        "    where: >-\n      event.data.active &&\n      event.data.field == 'owners' &&& true\n",
        "",
    ).replace("steps:", "vars:\n  o[p: 1\nsteps:"));
    assert!(
        e.starts_with("pb.yaml:4:1: vars.o[p: a var's name is letters, digits"),
        "{e}"
    );
}
