//! Files committed next to the code: the JSON Schema and the example configuration.

use std::path::{Path, PathBuf};

use steward_config::{Config, EventLogBackend, MapEnv};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json");
    let generated = serde_json::to_string_pretty(&steward_config::json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the config types; regenerate it with\n\n    \
         UPDATE_SCHEMA=1 cargo test -p steward-config --test artifacts\n\nand commit it",
        path.display()
    );
}

#[test]
fn schema_describes_every_field_and_shows_secrets_as_strings() {
    let schema = steward_config::json_schema();
    let text = schema.to_string();
    assert_eq!(schema["title"], "Steward configuration");
    assert_eq!(schema["additionalProperties"], false);
    // Every property has a description (from the doc comments).
    fn walk(v: &serde_json::Value, at: &str) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                assert!(
                    prop.get("description").is_some(),
                    "{at}.{name} has no description"
                );
                walk(prop, &format!("{at}.{name}"));
            }
        }
        if let Some(defs) = v.get("$defs").and_then(|d| d.as_object()) {
            for (name, def) in defs {
                walk(def, name);
            }
        }
    }
    walk(&schema, "");
    let token = &schema["$defs"]["NatsConfig"]["properties"]["token"];
    assert!(token.to_string().contains("\"string\""), "{token}");
    let url = &schema["$defs"]["DatabaseConfig"]["properties"]["url"];
    assert!(url.to_string().contains("\"string\""), "{url}");
    assert!(text.contains("\"maximum\":5"));
}

#[test]
fn example_config_loads() {
    let path = repo_root().join("deploy/steward.example.yaml");
    let env = MapEnv::new()
        .with("NATS_URL", "nats://nats.internal:4222")
        .with("NATS_TOKEN", "example-nats-token")
        .with("DB_PASSWORD", "example-db-password");
    let config = Config::load(&path, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.event_log.backend, EventLogBackend::Nats);
    let nats = config.event_log.nats.as_ref().unwrap();
    assert_eq!(nats.url, "nats://nats.internal:4222");
    assert_eq!(nats.token.as_ref().unwrap().expose(), "example-nats-token");
    let db = config.database.url.as_ref().unwrap().expose();
    assert!(
        db.contains("example-db-password"),
        "database url uses ${{DB_PASSWORD}}"
    );
    let summary = config.summary();
    for secret in ["example-nats-token", "example-db-password"] {
        assert!(!summary.contains(secret));
        assert!(!format!("{config:?}").contains(secret));
    }
}

#[test]
fn example_config_without_its_variables_names_the_first_missing_one() {
    let path = repo_root().join("deploy/steward.example.yaml");
    let err = Config::load(&path, &MapEnv::new()).unwrap_err();
    assert_eq!(err.kind(), steward_config::ErrorKind::Interpolation);
    assert!(err.to_string().contains("is not set"), "{err}");
}
