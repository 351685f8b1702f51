//! Secrets never show: not in `Debug`, `Display`, errors, the summary, nor serialized
//! output, whether written in the file or interpolated from the environment.

use proptest::prelude::*;
use steward_config::{Config, ConfigError, MapEnv, NatsConfig, Secret};

const DB_PASSWORD: &str = "correct-horse-battery-staple";
const NATS_TOKEN: &str = "nats-token-0123456789";

fn env() -> MapEnv {
    MapEnv::new()
        .with("DB_PASSWORD", DB_PASSWORD)
        .with("NATS_TOKEN", NATS_TOKEN)
}

const YAML: &str = "\
event_log:
  backend: nats
  nats:
    url: nats://127.0.0.1:4222
    token: ${NATS_TOKEN}
database:
  url: postgres://steward:${DB_PASSWORD}@db:5432/steward
";

/// Every rendering of a loaded config that could reach a log or a terminal.
fn renderings(config: &Config) -> Vec<String> {
    vec![
        format!("{config:?}"),
        format!("{config:#?}"),
        config.summary(),
        serde_json::to_string(config).unwrap(),
        format!("{:?}", config.database_target()),
    ]
}

fn error_renderings(err: &ConfigError) -> Vec<String> {
    vec![
        err.to_string(),
        format!("{err:?}"),
        err.message().to_owned(),
    ]
}

#[track_caller]
fn assert_absent(texts: &[String], secret: &str) {
    for text in texts {
        assert!(
            !text.contains(secret),
            "secret {secret:?} leaked in:\n{text}"
        );
    }
}

#[test]
fn interpolated_secrets_do_not_show_in_any_rendering() {
    let config = Config::from_yaml_str(YAML, "steward.yaml", &env()).unwrap();
    // They are there to be used.
    let nats = config.event_log.nats.as_ref().unwrap();
    assert_eq!(nats.token.as_ref().unwrap().expose(), NATS_TOKEN);
    assert!(config
        .database
        .url
        .as_ref()
        .unwrap()
        .expose()
        .contains(DB_PASSWORD));
    let texts = renderings(&config);
    assert_absent(&texts, DB_PASSWORD);
    assert_absent(&texts, NATS_TOKEN);
    assert!(texts[0].contains("[redacted]"));
    assert!(
        texts[2].contains("postgres://steward:***@db:5432/steward"),
        "{}",
        texts[2]
    );
    let json: serde_json::Value = serde_json::from_str(&texts[3]).unwrap();
    assert_eq!(json["database"]["url"], "[redacted]");
    assert_eq!(json["event_log"]["nats"]["token"], "[redacted]");
}

#[test]
fn literal_secrets_do_not_show_either() {
    let yaml = YAML
        .replace("${NATS_TOKEN}", NATS_TOKEN)
        .replace("${DB_PASSWORD}", DB_PASSWORD);
    let config = Config::from_yaml_str(&yaml, "steward.yaml", &MapEnv::new()).unwrap();
    let texts = renderings(&config);
    assert_absent(&texts, DB_PASSWORD);
    assert_absent(&texts, NATS_TOKEN);
}

#[test]
fn nats_url_credentials_are_masked() {
    let config =
        Config::default().with_nats_url(Some(format!("nats://alice:{DB_PASSWORD}@nats:4222")));
    config.validate().unwrap();
    let texts = renderings(&config);
    assert_absent(&texts, DB_PASSWORD);
    assert!(
        texts[2].contains("nats://alice:***@nats:4222"),
        "{}",
        texts[2]
    );
    let nats = NatsConfig::new(format!(
        "nats://a:{DB_PASSWORD}@x:1,nats://b:{DB_PASSWORD}@y:2"
    ));
    assert_eq!(nats.redacted_url(), "nats://a:***@x:1,nats://b:***@y:2");
    assert_absent(&[format!("{nats:?}")], DB_PASSWORD);
}

#[test]
fn errors_on_secret_fields_do_not_echo_them() {
    // A database URL that does not parse, with the password inline or interpolated.
    for (yaml, env) in [
        (
            format!("database:\n  url: postgres://steward:{DB_PASSWORD}@db:notaport/x\n"),
            MapEnv::new(),
        ),
        (
            "database:\n  url: postgres://steward:${DB_PASSWORD}@db:notaport/x\n".to_owned(),
            env(),
        ),
        (
            format!("database:\n  url: \"{DB_PASSWORD}://x\"\n"),
            MapEnv::new(),
        ),
        ("database:\n  url: ${DB_PASSWORD}\n".to_owned(), env()),
    ] {
        let err = Config::from_yaml_str(&yaml, "steward.yaml", &env).unwrap_err();
        assert!(err.to_string().starts_with("steward.yaml:2:"), "{err}");
        assert_absent(&error_renderings(&err), DB_PASSWORD);
    }
    // The override too.
    let err = Config::default()
        .with_database_url(Some(Secret::new(format!("{DB_PASSWORD}:x"))))
        .validate()
        .unwrap_err();
    assert_absent(&error_renderings(&err), DB_PASSWORD);
    let err = Config::default()
        .with_nats_url(Some(format!("nats://u:{DB_PASSWORD}@h:port")))
        .validate()
        .unwrap_err();
    assert_absent(&error_renderings(&err), DB_PASSWORD);
}

#[test]
fn interpolated_values_do_not_leak_through_other_fields_errors() {
    // A secret put (by mistake) where serde would echo the value.
    for yaml in [
        "log:\n  format: ${DB_PASSWORD}\n",
        "event_log:\n  backend: ${DB_PASSWORD}\n",
        "event_log:\n  prefix: ${DB_PASSWORD}.x\n",
        "event_log:\n  consumers:\n    backoff: ${DB_PASSWORD}\n",
        "event_log:\n  consumers:\n    backoff: [\"1${DB_PASSWORD}\"]\n",
        "shutdown_grace: 1${DB_PASSWORD}\n",
        "http:\n  listen: ${DB_PASSWORD}\n",
        "log:\n  level: \"${DB_PASSWORD}=[\"\n",
        "event_log:\n  nats:\n    url: nats://h:1\n    stream: \"a ${DB_PASSWORD}\"\n",
    ] {
        let err = Config::from_yaml_str(yaml, "steward.yaml", &env()).unwrap_err();
        assert!(
            err.to_string().starts_with("steward.yaml:"),
            "{yaml}: {err}"
        );
        assert_absent(&error_renderings(&err), DB_PASSWORD);
    }
}

#[test]
fn unrelated_errors_in_a_file_with_secrets_do_not_show_them() {
    let yaml = format!("{YAML}  max_connections: 0\n");
    let err = Config::from_yaml_str(&yaml, "steward.yaml", &env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "steward.yaml:8:20: database.max_connections: must be at least 1 (got 0)"
    );
    let texts = error_renderings(&err);
    assert_absent(&texts, DB_PASSWORD);
    assert_absent(&texts, NATS_TOKEN);
}

#[test]
fn env_and_document_debug_hide_values() {
    let env = env();
    assert_absent(&[format!("{env:?}")], DB_PASSWORD);
    let doc = steward_config::Document::parse(YAML, "steward.yaml", &env).unwrap();
    assert_absent(&[format!("{doc:?}")], DB_PASSWORD);
    assert_absent(&[format!("{doc:?}")], NATS_TOKEN);
}

proptest! {
    #[test]
    fn a_random_secret_never_appears_in_config_debug(secret in "[A-Za-z0-9]{8}\\PC{0,24}") {
        let mut config = Config::default().with_nats_url(Some("nats://127.0.0.1:4222".into()));
        config.event_log.nats.as_mut().unwrap().token = Some(Secret::new(secret.clone()));
        config.database.url = Some(Secret::new(secret.clone()));
        let debug = format!("{config:?}");
        prop_assert!(!debug.contains(&secret), "{}", debug);
        let pretty = format!("{config:#?}");
        prop_assert!(!pretty.contains(&secret));
        prop_assert!(!config.summary().contains(&secret));
        prop_assert!(!serde_json::to_string(&config).unwrap().contains(&secret));
    }

    #[test]
    fn a_random_interpolated_secret_never_leaks(secret in "[A-Za-z0-9]{8}\\PC{0,24}") {
        let env = MapEnv::new().with("DB_PASSWORD", secret.clone()).with("NATS_TOKEN", secret.clone());
        match Config::from_yaml_str(YAML, "steward.yaml", &env) {
            Ok(config) => {
                for text in renderings(&config) {
                    prop_assert!(!text.contains(&secret), "{}", text);
                }
            }
            Err(err) => {
                for text in error_renderings(&err) {
                    prop_assert!(!text.contains(&secret), "{}", text);
                }
            }
        }
        // And where serde would have echoed it.
        let err = Config::from_yaml_str("log:\n  format: ${DB_PASSWORD}\n", "steward.yaml", &env)
            .unwrap_err();
        for text in error_renderings(&err) {
            prop_assert!(!text.contains(&secret), "{}", text);
        }
    }
}

#[test]
fn a_message_that_would_echo_an_interpolated_value_names_the_variable() {
    let err = Config::from_yaml_str(
        "event_log:\n  backend: ${DB_PASSWORD}\n",
        "steward.yaml",
        &env(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "steward.yaml:2:12: event_log.backend: invalid value (it comes from `${DB_PASSWORD}` \
         and is not shown), expected `embedded` or `nats`"
    );
}

/// The relayer key as the manifests give it: only the safe pod has the variable. Unset, quoted
/// or not, the file loads with the relayer off; set, the key is there and shows nowhere.
#[test]
fn an_unset_relayer_key_turns_the_relayer_off_and_a_set_one_never_shows() {
    let yaml = |key: &str| {
        format!(
            "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"http://127.0.0.1:8545\"}}]\n    watches:\n      - {{name: t, pack: safe, address: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"}}\nsafes:\n  - name: treasury\n    chain: local\n    address: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n    multi_send: \"0x38869bf66a61cF6bDB996A6aE40D5853Fd43B526\"\n    multi_send_call_only: \"0x9641d764fc13c8B624c04430C7356C1C7C8102e2\"\n    relayer:\n      key: {key}\n"
        )
    };
    for key in ["${SAFE_RELAYER_KEY:-}", "\"${SAFE_RELAYER_KEY:-}\""] {
        let config = Config::from_yaml_str(&yaml(key), "steward.yaml", &MapEnv::new())
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let relayer = config.safes[0].relayer.as_ref().unwrap();
        assert!(!relayer.enabled(), "{key}");
    }
    let hex_key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let env = MapEnv::new().with("SAFE_RELAYER_KEY", hex_key);
    let config =
        Config::from_yaml_str(&yaml("${SAFE_RELAYER_KEY:-}"), "steward.yaml", &env).unwrap();
    let relayer = config.safes[0].relayer.as_ref().unwrap();
    assert!(relayer.enabled());
    assert_eq!(relayer.key.expose(), hex_key);
    assert_absent(&renderings(&config), hex_key);
    assert_absent(&renderings(&config), hex_key.trim_start_matches("0x"));
}
