//! `database:` — the services' own stores.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::join;
use crate::secret::Secret;
use crate::validate::Validator;

/// The database that holds the services' own state (not the events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL: `postgres://user:password@host:5432/dbname` (or `sqlite:path`).
    /// A secret (it usually holds a password): write it as `${DATABASE_URL}` or with
    /// `${DB_PASSWORD}` inside. Absent: a SQLite file under `data_dir`.
    pub url: Option<Secret>,
    /// Most connections the pool opens, at least 1.
    #[schemars(range(min = 1))]
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
        }
    }
}

/// The schemes a database URL may use.
const DATABASE_SCHEMES: [&str; 3] = ["postgres", "postgresql", "sqlite"];

/// Checks a database URL; the message never includes the URL.
fn check_database_url(url: &Secret) -> Result<(), String> {
    if url.is_empty() {
        return Err("must not be empty (leave it out for the embedded SQLite file)".into());
    }
    let parsed = url::Url::parse(url.expose()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !DATABASE_SCHEMES.contains(&parsed.scheme()) {
        return Err("unsupported scheme: use `postgres://` (or `sqlite:`)".to_owned());
    }
    Ok(())
}

impl DatabaseConfig {
    pub(crate) fn validate(&self, path: &str, v: &mut Validator<'_>) {
        if let Some(url) = &self.url {
            if let Err(message) = check_database_url(url) {
                v.invalid(&join(path, "url"), message);
            }
        }
        if self.max_connections == 0 {
            v.invalid_got(
                &join(path, "max_connections"),
                "must be at least 1",
                self.max_connections,
            );
        }
    }
}
