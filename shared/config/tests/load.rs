//! Loading: defaults, every error kind with its position and path, interpolation,
//! overrides and the summary.

use std::path::PathBuf;
use std::time::Duration;

use steward_config::{
    Config, ConfigError, DatabaseTarget, ErrorKind, EventLogBackend, LogFormat, MapEnv, Origin,
    Secret,
};

fn load(yaml: &str) -> Result<Config, ConfigError> {
    load_with(yaml, &MapEnv::new())
}

fn load_with(yaml: &str, env: &MapEnv) -> Result<Config, ConfigError> {
    Config::from_yaml_str(yaml, "steward.yaml", env)
}

/// Loads `yaml`, expects an error, checks its kind and full rendering.
#[track_caller]
fn assert_error(yaml: &str, kind: ErrorKind, expected: &str) -> ConfigError {
    assert_error_with(yaml, &MapEnv::new(), kind, expected)
}

#[track_caller]
fn assert_error_with(yaml: &str, env: &MapEnv, kind: ErrorKind, expected: &str) -> ConfigError {
    let err = match load_with(yaml, env) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    };
    assert_eq!(err.to_string(), expected);
    assert_eq!(err.kind(), kind, "{err}");
    err
}

// ----- defaults -------------------------------------------------------------------

#[test]
fn empty_file_comment_only_file_and_default_agree() {
    let default = Config::default();
    assert_eq!(load("").unwrap(), default);
    assert_eq!(load("# nothing here\n\n").unwrap(), default);
    assert_eq!(load("{}\n").unwrap(), default);
    assert_eq!(load("---\n").unwrap(), default);
    assert_eq!(load("# empty\n--- ~\n...\n").unwrap(), default);
    assert_eq!(load("---\nlog: {}\n").unwrap(), default);
}

#[test]
fn defaults_are_a_working_embedded_setup() {
    let c = Config::default();
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.event_log.backend, EventLogBackend::Embedded);
    assert_eq!(c.event_log.prefix, "steward");
    assert!(c.event_log.nats.is_none());
    assert_eq!(c.event_log.consumers.ack_wait, Duration::from_secs(30));
    assert_eq!(c.event_log.consumers.max_deliver, 5);
    assert_eq!(
        c.event_log.consumers.backoff,
        [1, 5, 30].map(Duration::from_secs).to_vec()
    );
    assert!(c.database.url.is_none());
    assert_eq!(c.database.max_connections, 10);
    assert_eq!(c.event_log_file(), PathBuf::from("./data/events.db"));
    assert_eq!(
        c.database_target(),
        DatabaseTarget::SqliteFile(PathBuf::from("./data/steward.db"))
    );
    // The default passes its own validation.
    c.validate().unwrap();
}

#[test]
fn nats_section_fills_its_own_defaults() {
    let c = load("event_log:\n  backend: nats\n  nats:\n    url: nats://127.0.0.1:4222\n").unwrap();
    let nats = c.event_log.nats.unwrap();
    assert_eq!(nats.stream, "STEWARD");
    assert_eq!(nats.replicas, 1);
    assert_eq!(nats.duplicate_window, Duration::from_secs(600));
    assert_eq!(nats.max_age, None);
    assert_eq!(nats.token, None);
}

#[test]
fn full_file_is_typed() {
    let yaml = "\
data_dir: /var/lib/steward
log: { format: json, level: \"info,steward_log=debug\" }
http: { listen: \"[::]:9000\" }
shutdown_grace: 1m 30s
event_log:
  backend: nats
  prefix: steward-test
  nats:
    url: nats://a:4222, nats://b:4222
    stream: STEWARD_TEST
    replicas: 3
    duplicate_window: 2m
    max_age: 30d
    token: tok
  consumers: { ack_wait: 10s, max_deliver: 3, backoff: [] }
database:
  url: postgres://steward@db/steward
  max_connections: 4
";
    let c = load(yaml).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/steward"));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.http.listen.to_string(), "[::]:9000");
    assert_eq!(c.shutdown_grace, Duration::from_secs(90));
    let nats = c.event_log.nats.as_ref().unwrap();
    assert_eq!(nats.replicas, 3);
    assert_eq!(nats.max_age, Some(Duration::from_secs(30 * 86400)));
    assert_eq!(nats.token.as_ref().unwrap().expose(), "tok");
    assert!(c.event_log.consumers.backoff.is_empty());
    assert_eq!(c.database.max_connections, 4);
}

#[test]
fn null_and_empty_values_mean_default() {
    let c = load("log:\nhttp: ~\nevent_log:\n  nats: null\n  prefix:\n").unwrap();
    assert_eq!(c, Config::default());
    // Quoted, it is a string and must be valid.
    assert_error(
        "event_log:\n  prefix: \"\"\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:11: event_log.prefix: must be one NATS subject token: letters, \
         digits, `_` and `-`, no dots (got ``)",
    );
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.yaml");
    std::fs::write(&path, "log:\n  format: json\n").unwrap();
    let c = Config::load(&path, &MapEnv::new()).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);

    std::fs::write(&path, "log:\n  formt: json\n").unwrap();
    let err = Config::load(&path, &MapEnv::new()).unwrap_err();
    assert_eq!(
        err.location().unwrap().file,
        path.display().to_string(),
        "{err}"
    );

    let missing = dir.path().join("nope.yaml");
    let err = Config::load(&missing, &MapEnv::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(err.origin(), &Origin::File(missing.display().to_string()));
    assert!(
        err.to_string()
            .contains("cannot read the configuration file"),
        "{err}"
    );
}

// ----- errors: every kind, with file:line:column and path ---------------------------

#[test]
fn yaml_syntax_error() {
    let err = assert_error(
        "log:\n  format: text\n  level: [info\n",
        ErrorKind::Syntax,
        "steward.yaml:4:1: while parsing a flow sequence, expected ',' or ']'",
    );
    assert_eq!(err.path(), "");
    assert_error(
        "log:\n\tformat: text\n",
        ErrorKind::Syntax,
        "steward.yaml:2:2: tabs disallowed within this context (block indentation)",
    );
}

#[test]
fn yaml_structure_errors() {
    assert_error(
        "log:\n  format: text\n  format: json\n",
        ErrorKind::Syntax,
        "steward.yaml:3:3: duplicate key `format` (first at line 2, column 3)",
    );
    assert_error(
        "- log\n",
        ErrorKind::Syntax,
        "steward.yaml:1:1: the top level must be a mapping of `key: value` lines",
    );
    assert_error(
        "log: &l { format: text }\nhttp: *l\n",
        ErrorKind::Syntax,
        "steward.yaml:1:9: YAML anchors and aliases (`&name`, `*name`) are not supported",
    );
}

#[test]
fn unknown_field_lists_the_expected_ones() {
    assert_error(
        "event_log:\n  nats:\n    url: nats://localhost:4222\n    replica: 3\n",
        ErrorKind::UnknownField,
        "steward.yaml:4:5: event_log.nats.replica: unknown field `replica`, expected one of \
         `url`, `stream`, `replicas`, `duplicate_window`, `max_age`, `token` (did you mean \
         `replicas`?)",
    );
    assert_error(
        "\nloglevel: debug\n",
        ErrorKind::UnknownField,
        "steward.yaml:2:1: loglevel: unknown field `loglevel`, expected one of `data_dir`, \
         `log`, `http`, `shutdown_grace`, `event_log`, `database`, `chains`, `notify`, `risk`, `operator_sets`, `safes`, `playbooks`, `api`",
    );
}

#[test]
fn wrong_type() {
    assert_error(
        "event_log:\n  consumers:\n    max_deliver: lots\n",
        ErrorKind::WrongType,
        "steward.yaml:3:18: event_log.consumers.max_deliver: expected a whole number",
    );
    assert_error(
        "event_log:\n  consumers:\n    backoff: 1s\n",
        ErrorKind::WrongType,
        "steward.yaml:3:14: event_log.consumers.backoff: invalid type: string \"1s\", \
         expected a list of durations such as `[1s, 5s, 30s]`",
    );
    assert_error(
        "log:\n  format: [text]\n",
        ErrorKind::WrongType,
        "steward.yaml:2:11: log.format: invalid type: sequence, expected enum LogFormat",
    );
}

#[test]
fn bad_duration() {
    assert_error(
        "shutdown_grace: 5 parsecs\n",
        ErrorKind::InvalidValue,
        "steward.yaml:1:17: shutdown_grace: unknown time unit `parsecs` \
         (use ns, us, ms, s, m, h, d, w, e.g. `30s`, `10m`)",
    );
    assert_error(
        "event_log:\n  consumers:\n    backoff: [1s, 5s, soon]\n",
        ErrorKind::InvalidValue,
        "steward.yaml:3:23: event_log.consumers.backoff[2]: expected a duration such as \
         `30s`, `10m` or `1h 30m` (a number comes first)",
    );
}

#[test]
fn bad_enum_value() {
    assert_error(
        "event_log:\n  backend: kafka\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:12: event_log.backend: unknown variant `kafka`, expected `embedded` \
         or `nats`",
    );
}

#[test]
fn bad_urls() {
    assert_error(
        "event_log:\n  nats:\n    url: http://localhost:4222\n",
        ErrorKind::InvalidValue,
        "steward.yaml:3:10: event_log.nats.url: unsupported scheme: use `nats://`, `tls://`, \
         `ws://` or `wss://`",
    );
    assert_error(
        "event_log:\n  nats:\n    url: \"nats://a:4222,nats://b:99999\"\n",
        ErrorKind::InvalidValue,
        "steward.yaml:3:10: event_log.nats.url: server 2 of 2: not a valid URL: invalid port \
         number",
    );
    assert_error(
        "database:\n  url: not a url\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:8: database.url: not a valid URL: relative URL without a base",
    );
    assert_error(
        "database:\n  url: mysql://db/steward\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:8: database.url: unsupported scheme: use `postgres://` (or `sqlite:`)",
    );
    assert_error(
        "http:\n  listen: localhost:9464\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:11: http.listen: expected an IP address and port such as \
         `127.0.0.1:9464` or `[::]:9464` (got `localhost:9464`)",
    );
}

#[test]
fn out_of_range_numbers() {
    let yaml =
        "event_log:\n  backend: nats\n  nats:\n    url: nats://127.0.0.1:4222\n    replicas: 0\n";
    let err = assert_error(
        yaml,
        ErrorKind::InvalidValue,
        "steward.yaml:5:15: event_log.nats.replicas: must be between 1 and 5 (got 0)",
    );
    assert_eq!(err.path(), "event_log.nats.replicas");
    let location = err.location().unwrap();
    assert_eq!(
        (location.file.as_str(), location.line, location.column),
        ("steward.yaml", 5, 15)
    );
    assert_eq!(err.message(), "must be between 1 and 5 (got 0)");

    assert_error(
        "event_log:\n  nats: { url: \"nats://h:4222\", replicas: 300 }\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:43: event_log.nats.replicas: number out of range for this field",
    );
    assert_error(
        "database:\n  max_connections: -2\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:20: database.max_connections: must not be negative",
    );
    assert_error(
        "database:\n  max_connections: 0\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:20: database.max_connections: must be at least 1 (got 0)",
    );
}

#[test]
fn bad_names() {
    assert_error(
        "event_log:\n  prefix: steward.prod\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:11: event_log.prefix: must be one NATS subject token: letters, \
         digits, `_` and `-`, no dots (got `steward.prod`)",
    );
    assert_error(
        "event_log:\n  nats:\n    url: nats://h:4222\n    stream: \"my stream\"\n",
        ErrorKind::InvalidValue,
        "steward.yaml:4:13: event_log.nats.stream: must be a stream name: letters, digits, \
         `_` and `-` (got `my stream`)",
    );
    assert_error(
        "log:\n  level: \"info,=[\"\n",
        ErrorKind::InvalidValue,
        "steward.yaml:2:10: log.level: not a valid EnvFilter directive (such as `info` or \
         `info,steward_log=debug`): invalid filter directive",
    );
}

#[test]
fn missing_required_field() {
    let err = assert_error(
        "event_log:\n  backend: nats\n  nats:\n    stream: STEWARD\n",
        ErrorKind::MissingField,
        "steward.yaml:3:3: event_log.nats: missing required field `url`",
    );
    assert_eq!(err.path(), "event_log.nats");
    assert_error(
        "event_log: { nats: { replicas: 3 } }\n",
        ErrorKind::MissingField,
        "steward.yaml:1:14: event_log.nats: missing required field `url`",
    );
}

#[test]
fn semantic_validation_after_parsing() {
    assert_error(
        "event_log:\n  backend: nats\n",
        ErrorKind::Validation,
        "steward.yaml:2:12: event_log.backend: the `nats` backend needs `event_log.nats.url` \
         (or the NATS URL override)",
    );
    assert_error(
        "event_log:\n  nats:\n    url: nats://h:4222\n    duplicate_window: 2h\n    max_age: 1h\n",
        ErrorKind::Validation,
        "steward.yaml:4:23: event_log.nats.duplicate_window: must not exceed max_age (2h > 1h)",
    );
    assert_error(
        "event_log:\n  consumers:\n    max_deliver: 2\n",
        ErrorKind::Validation,
        "steward.yaml:2:3: event_log.consumers.backoff: has 3 entries but max_deliver is 2: \
         at most 1 redeliveries follow a failure, so give fewer entries (JetStream rejects \
         the consumer otherwise)",
    );
    assert_error(
        "shutdown_grace: 0s\n",
        ErrorKind::InvalidValue,
        "steward.yaml:1:17: shutdown_grace: must be longer than zero",
    );
}

#[test]
fn nats_url_that_interpolates_to_nothing_is_reported() {
    // `${NATS_URL:-}` unset: the url is absent, so the nats section misses it.
    assert_error(
        "event_log:\n  backend: nats\n  nats:\n    url: ${NATS_URL:-}\n",
        ErrorKind::MissingField,
        "steward.yaml:3:3: event_log.nats: missing required field `url`",
    );
    // Quoted, it is an empty string: a bad value.
    assert_error(
        "event_log:\n  backend: nats\n  nats:\n    url: \"${NATS_URL:-}\"\n",
        ErrorKind::InvalidValue,
        "steward.yaml:4:10: event_log.nats.url: must not be empty: give the server URL, \
         e.g. `nats://127.0.0.1:4222`",
    );
}

// ----- interpolation ----------------------------------------------------------------

#[test]
fn interpolation_set_default_and_escape() {
    let env = MapEnv::new()
        .with("LEVEL", "debug")
        .with("REPLICAS", "3")
        .with("HOST", "nats.internal");
    let yaml = "\
log:
  level: ${LEVEL}
  format: ${FORMAT:-json}
data_dir: \"/srv/$$HOME/${DIR:-data}\"
event_log:
  prefix: ${PREFIX:-steward}
  nats:
    url: nats://${HOST}:4222
    replicas: ${REPLICAS}
    stream: ${STREAM:-}
";
    let c = load_with(yaml, &env).unwrap();
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.data_dir, PathBuf::from("/srv/$HOME/data"));
    assert_eq!(c.event_log.prefix, "steward");
    let nats = c.event_log.nats.unwrap();
    assert_eq!(nats.url, "nats://nats.internal:4222");
    assert_eq!(nats.replicas, 3);
    // Unquoted and empty after interpolation: the default.
    assert_eq!(nats.stream, "STEWARD");
}

#[test]
fn interpolation_in_lists_and_flow_mappings() {
    let env = MapEnv::new().with("FIRST", "2s").with("WAIT", "45s");
    let c = load_with(
        "event_log:\n  consumers: { ack_wait: \"${WAIT}\", backoff: [\"${FIRST}\", 10s] }\n",
        &env,
    )
    .unwrap();
    assert_eq!(c.event_log.consumers.ack_wait, Duration::from_secs(45));
    assert_eq!(
        c.event_log.consumers.backoff,
        vec![Duration::from_secs(2), Duration::from_secs(10)]
    );
}

#[test]
fn unset_variable_is_an_error_at_the_reference() {
    let err = assert_error(
        "database:\n  url: postgres://steward:${DB_PASSWORD}@db/steward\n",
        ErrorKind::Interpolation,
        "steward.yaml:2:27: database.url: environment variable `DB_PASSWORD` is not set \
         (write `${DB_PASSWORD:-default}` to give a default)",
    );
    assert_eq!(err.path(), "database.url");
    // Quoted: the column still points at the `$`.
    assert_error(
        "event_log:\n  nats:\n    url: \"nats://${NATS_HOST}:4222\"\n",
        ErrorKind::Interpolation,
        "steward.yaml:3:18: event_log.nats.url: environment variable `NATS_HOST` is not set \
         (write `${NATS_HOST:-default}` to give a default)",
    );
    // In a list.
    assert_error(
        "event_log:\n  consumers:\n    backoff: [1s, \"${SECOND}\"]\n",
        ErrorKind::Interpolation,
        "steward.yaml:3:20: event_log.consumers.backoff[1]: environment variable `SECOND` is \
         not set (write `${SECOND:-default}` to give a default)",
    );
}

#[test]
fn malformed_references() {
    assert_error(
        "log:\n  level: x${LEVEL\n",
        ErrorKind::Interpolation,
        "steward.yaml:2:11: log.level: unterminated `${`: write `${NAME}`, or `$$` for a \
         literal `$`",
    );
    assert_error(
        "log:\n  level: ${log level}\n",
        ErrorKind::Interpolation,
        "steward.yaml:2:10: log.level: `${…}` must hold a variable name (letters, digits and \
         `_`, not starting with a digit), optionally followed by `:-default`",
    );
}

#[test]
fn dollar_without_brace_is_literal_and_keys_are_not_interpolated() {
    let c = load("log:\n  level: info\ndata_dir: ./$data\n").unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./$data"));
    assert_error(
        "${SECTION}: {}\n",
        ErrorKind::UnknownField,
        "steward.yaml:1:1: ${SECTION}: unknown field `${SECTION}`, expected one of \
         `data_dir`, `log`, `http`, `shutdown_grace`, `event_log`, `database`, `chains`, `notify`, `risk`, `operator_sets`, `safes`, `playbooks`, `api`",
    );
}

#[test]
fn interpolated_values_are_not_echoed_in_errors() {
    let env = MapEnv::new().with("FORMAT", "yaml").with("N", "0");
    assert_error_with(
        "log:\n  format: ${FORMAT}\n",
        &env,
        ErrorKind::InvalidValue,
        "steward.yaml:2:11: log.format: invalid value (it comes from `${FORMAT}` and is not \
         shown), expected `text` or `json`",
    );
    assert_error_with(
        "event_log:\n  nats:\n    url: nats://h:4222\n    replicas: ${N}\n",
        &env,
        ErrorKind::InvalidValue,
        "steward.yaml:4:15: event_log.nats.replicas: must be between 1 and 5 (the value \
         comes from `${N}`)",
    );
}

// ----- overrides --------------------------------------------------------------------

#[test]
fn nats_url_override_switches_backend() {
    let c = Config::default().with_nats_url(Some("nats://nats:4222".into()));
    c.validate().unwrap();
    assert!(c.uses_nats());
    assert_eq!(c.event_log.backend, EventLogBackend::Nats);
    assert_eq!(c.event_log.nats.as_ref().unwrap().url, "nats://nats:4222");
    assert_eq!(c.event_log.nats.as_ref().unwrap().stream, "STEWARD");

    // Keeps the rest of an existing nats section.
    let c = load("event_log:\n  nats:\n    url: nats://old:4222\n    replicas: 3\n")
        .unwrap()
        .with_nats_url(Some("nats://new:4222".into()));
    let nats = c.event_log.nats.as_ref().unwrap();
    assert_eq!((nats.url.as_str(), nats.replicas), ("nats://new:4222", 3));
    assert!(c.uses_nats());

    // None changes nothing.
    assert_eq!(Config::default().with_nats_url(None), Config::default());
    assert!(!Config::default().uses_nats());
}

#[test]
fn validate_names_the_override() {
    let err = Config::default()
        .with_nats_url(Some("localhost".into()))
        .validate()
        .unwrap_err();
    assert_eq!(err.origin(), &Origin::Override("override".into()));
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
    assert_eq!(
        err.to_string(),
        "override: event_log.nats.url: not a valid URL: relative URL without a base"
    );
    let err = Config::default()
        .with_database_url(Some("mysql://root:hunter2@db/x"))
        .validate()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "override: database.url: unsupported scheme: use `postgres://` (or `sqlite:`)"
    );
    let c = Config {
        data_dir: PathBuf::new(),
        ..Config::default()
    };
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "override: data_dir: must not be empty: use `.` for the working directory"
    );
    Config::default().validate().unwrap();
}

#[test]
fn database_url_override() {
    let c = Config::default().with_database_url(Some("postgres://steward:pw@db:5432/steward"));
    c.validate().unwrap();
    match c.database_target() {
        DatabaseTarget::Url(url) => {
            assert_eq!(url.expose(), "postgres://steward:pw@db:5432/steward")
        }
        other => panic!("{other:?}"),
    }
    let c = Config::default().with_database_url(Some(Secret::new("postgres://db/x")));
    assert!(c.database.url.is_some());
    assert_eq!(
        Config::default().with_database_url(None::<String>),
        Config::default()
    );
}

// ----- summary ----------------------------------------------------------------------

#[test]
fn summary_of_defaults() {
    let summary = Config::default().summary();
    assert!(
        summary.contains(
            "event log:      embedded (SQLite file ./data/events.db), subject prefix `steward`"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("database:       embedded (SQLite file ./data/steward.db), pool of 10"),
        "{summary}"
    );
    assert!(
        summary.contains("http:           127.0.0.1:9464 (/healthz, /readyz, /metrics)"),
        "{summary}"
    );
    assert!(summary.contains("shutdown grace: 30s"), "{summary}");
    assert!(
        summary.contains("  consumers:    ack wait 30s, max deliver 5, backoff 1s, 5s, 30s"),
        "{summary}"
    );
}

#[test]
fn summary_of_a_nats_setup_is_redacted() {
    let env = MapEnv::new()
        .with("NATS_PASSWORD", "n4ts-pw")
        .with("NATS_TOKEN", "t0ken-value")
        .with("DB_PASSWORD", "db-pw-value");
    let yaml = "\
event_log:
  backend: nats
  nats:
    url: nats://alice:${NATS_PASSWORD}@nats:4222
    replicas: 3
    max_age: 7d
    token: ${NATS_TOKEN}
database:
  url: postgres://steward:${DB_PASSWORD}@db:5432/steward
";
    let summary = load_with(yaml, &env).unwrap().summary();
    assert!(
        summary.contains("event log:      NATS JetStream, subject prefix `steward`"),
        "{summary}"
    );
    assert!(
        summary.contains("  url:          nats://alice:***@nats:4222"),
        "{summary}"
    );
    assert!(
        summary
            .contains("  stream:       STEWARD (3 replicas, duplicate window 10m, events kept 7d)"),
        "{summary}"
    );
    assert!(
        summary.contains("  token:        set (redacted)"),
        "{summary}"
    );
    assert!(
        summary.contains("database:       postgres://steward:***@db:5432/steward, pool of 10"),
        "{summary}"
    );
    for secret in ["n4ts-pw", "t0ken-value", "db-pw-value"] {
        assert!(!summary.contains(secret), "{secret} in {summary}");
    }
}

#[test]
fn quoted_values_are_strings() {
    assert_error(
        "database:\n  max_connections: \"4\"\n",
        ErrorKind::WrongType,
        "steward.yaml:2:20: database.max_connections: invalid type: string \"4\", expected u32",
    );
}

// ----- other YAML files: Document and Located ---------------------------------------

mod playbook {
    use serde::Deserialize;
    use steward_config::{Document, ErrorKind, Located, MapEnv, Position};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Playbook {
        name: String,
        triggers: Vec<Trigger>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Trigger {
        cron: Located<String>,
        #[serde(default)]
        note: Option<Located<u32>>,
    }

    const PLAYBOOK: &str = "\
name: nightly
triggers:
  - cron: \"0 3 * * *\"
  - cron: every full moon
    note: 7
  - cron: ${SCHEDULE}
";

    #[test]
    fn located_values_keep_their_positions_for_later_errors() {
        let env = MapEnv::new().with("SCHEDULE", "s3cret-schedule");
        let doc = Document::parse(PLAYBOOK, "playbooks/nightly.yaml", &env).unwrap();
        let playbook: Playbook = doc.deserialize().unwrap();
        assert_eq!(playbook.name, "nightly");
        let second = &playbook.triggers[1];
        assert_eq!(second.cron.get(), "every full moon");
        assert_eq!(*second.cron, "every full moon");
        assert_eq!(
            second.cron.position(),
            Some(Position {
                line: 4,
                column: 11
            })
        );
        let note = second.note.as_ref().unwrap();
        assert_eq!(
            (**note, note.position()),
            (
                7,
                Some(Position {
                    line: 5,
                    column: 11
                })
            )
        );
        assert_eq!(
            playbook.triggers[0].cron.position(),
            Some(Position {
                line: 3,
                column: 11
            })
        );

        let err = doc.error_at(
            ErrorKind::InvalidValue,
            "triggers[1].cron",
            second.cron.position(),
            "not a cron expression",
        );
        assert_eq!(
            err.to_string(),
            "playbooks/nightly.yaml:4:11: triggers[1].cron: not a cron expression"
        );
        // The same, located by path.
        assert_eq!(
            doc.error(
                ErrorKind::InvalidValue,
                "triggers[1].cron",
                "not a cron expression"
            ),
            err
        );
        assert_eq!(
            doc.position_of("triggers[1]"),
            Some(Position { line: 4, column: 5 })
        );
        assert_eq!(
            doc.position_of("triggers"),
            Some(Position { line: 2, column: 1 })
        );
        assert_eq!(doc.position_of("triggers[7]"), None);
        assert_eq!(
            doc.nearest_position("triggers[1].missing"),
            Some(Position { line: 4, column: 5 })
        );

        // An interpolated value is placed but not echoed.
        let third = &playbook.triggers[2];
        assert_eq!(
            third.cron.position(),
            Some(Position {
                line: 6,
                column: 11
            })
        );
        assert_eq!(doc.interpolated_vars("triggers[2].cron"), ["SCHEDULE"]);
        let err = doc.error(
            ErrorKind::InvalidValue,
            "triggers[2].cron",
            format!("`{}` is not a cron expression", *third.cron),
        );
        assert_eq!(
            err.to_string(),
            "playbooks/nightly.yaml:6:11: triggers[2].cron: invalid value (it comes from \
             `${SCHEDULE}` and is not shown)"
        );
    }

    #[test]
    fn deserialize_errors_use_the_same_format() {
        let err = Document::parse(
            "name: x\ntriggers:\n  - cron: a\n    crn: b\n",
            "p.yaml",
            &MapEnv::new(),
        )
        .unwrap()
        .deserialize::<Playbook>()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.yaml:4:5: triggers[0].crn: unknown field `crn`, expected `cron` or `note` \
             (did you mean `cron`?)"
        );
    }
}
