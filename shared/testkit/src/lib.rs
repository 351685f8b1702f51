//! Test helpers: access to the real servers the test command starts.
//!
//! `scripts/test` installs and starts nats-server (JetStream) and a throwaway PostgreSQL
//! cluster on free loopback ports and exports their URLs as `STEWARD_TEST_NATS_URL` and
//! `STEWARD_TEST_DATABASE_URL`. A test that needs one of them and finds the variable unset
//! fails with a message saying how to run it: tests never skip because a server is missing.
//!
//! Every helper isolates the calling test: a unique subject prefix and stream on NATS, a
//! fresh database on PostgreSQL, so tests run in parallel without seeing each other.
//!
//! For chain tests, [`Anvil`] starts a private anvil node per test (the binary is installed
//! by `scripts/install-test-deps` and put on `PATH` by `scripts/test`), and
//! [`fixture_artifact`] reads the compiled test contracts in `shared/chain-fixtures`.

use uuid::Uuid;

mod chain;

pub use chain::{
    fixture_artifact, fixture_artifacts_dir, fixture_names, json_rpc, safe_artifact, tools_dir,
    Anvil, AnvilBuilder, SafeDeployment, ANVIL_KEYS,
};

pub const NATS_ENV: &str = "STEWARD_TEST_NATS_URL";
pub const DATABASE_ENV: &str = "STEWARD_TEST_DATABASE_URL";

fn required(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs a real {what}. Run the whole suite with `scripts/test` \
             (it installs and starts the servers), or start one yourself and export {var}."
        ),
    }
}

/// URL of the nats-server started for the test run.
pub fn nats_url() -> String {
    required(NATS_ENV, "nats-server with JetStream")
}

/// URL of the PostgreSQL server started for the test run (its `postgres` database).
pub fn postgres_admin_url() -> String {
    required(DATABASE_ENV, "PostgreSQL server")
}

/// A short unique name, safe as a NATS token, stream name or database name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// Create a fresh, empty database on the test PostgreSQL server and return its URL.
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = unique("t");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {DATABASE_ENV}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = conn.close().await;
    replace_database(&admin, &name)
}

/// `url` with its database path replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // postgres://user@host:port/db -> keep everything up to the last '/' after the authority.
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            replace_database("postgres://u@127.0.0.1:5/postgres", "t1"),
            "postgres://u@127.0.0.1:5/t1"
        );
        assert_eq!(
            replace_database("postgres://u@h:5", "t1"),
            "postgres://u@h:5/t1"
        );
        assert_eq!(
            replace_database("postgres://u@h:5/x?sslmode=disable", "t1"),
            "postgres://u@h:5/t1?sslmode=disable"
        );
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique("a"), unique("a"));
    }
}
