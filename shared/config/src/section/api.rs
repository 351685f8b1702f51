//! `api:` — the api service's HTTP server: the Safe Transaction Service compatible API that
//! signers' tools (the Safe{Wallet} SDKs, `steward safe …`) talk to.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::{self, HumanDuration};
use crate::validate::Validator;

/// The api service's HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port of the API, as `ip:port` (`127.0.0.1:8080`, `0.0.0.0:8080`). Clients
    /// use `http://<host>:<port>/api` as their transaction service URL. Host names are not
    /// accepted. It must differ from `http.listen` when both run in one process. Set: the
    /// process does not start unless it can listen there. Absent: `127.0.0.1:8080` if that
    /// port is free, else the API is off (said in the log) and the rest of Steward runs.
    #[serde(deserialize_with = "socket_addr")]
    #[schemars(extend("examples" = ["127.0.0.1:8080", "0.0.0.0:8080"]))]
    pub listen: Option<SocketAddr>,
    /// How long a request that submits a transaction or a signature waits for the safe
    /// service's verdict before it is answered 504 (the submission stays in the log and is
    /// still processed).
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub answer_timeout: Duration,
}

/// Where the API listens when `api.listen` is absent.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: None,
            answer_timeout: Duration::from_secs(10),
        }
    }
}

impl ApiConfig {
    /// The address to listen on: `listen`, or [`DEFAULT_LISTEN`].
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or(DEFAULT_LISTEN)
    }

    /// Checks serde cannot express.
    pub fn validate(&self, path: &str, v: &mut Validator<'_>) {
        let field = super::join(path, "answer_timeout");
        if self.answer_timeout.is_zero() {
            v.invalid(&field, "must be longer than zero");
        } else if self.answer_timeout > Duration::from_secs(300) {
            v.invalid_got(
                &field,
                "must be at most 5m: clients and proxies give up long before",
                duration::format(&self.answer_timeout),
            );
        }
    }

    /// The URL a client on this machine reaches the API at: the listen address, with an
    /// unspecified IP (`0.0.0.0`, `[::]`) replaced by loopback.
    pub fn local_url(&self) -> String {
        let mut addr = self.listen_addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an IP address and port such as `127.0.0.1:8080` or `[::]:8080` \
             (got `{text}`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_url_replaces_an_unspecified_ip() {
        let mut c = ApiConfig::default();
        assert_eq!(c.local_url(), "http://127.0.0.1:8080");
        c.listen = Some("0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.local_url(), "http://127.0.0.1:9000");
        c.listen = Some("[::]:9000".parse().unwrap());
        assert_eq!(c.local_url(), "http://[::1]:9000");
    }

    #[test]
    fn bad_values_are_reported_at_their_position() {
        let load = |yaml: &str| {
            crate::Config::from_yaml_str(yaml, "steward.yaml", &crate::MapEnv::new())
                .map(|c| c.api)
                .map_err(|e| e.to_string())
        };
        let err = load("api:\n  listen: localhost:8080\n").unwrap_err();
        assert!(
            err.starts_with("steward.yaml:2:11: api.listen: expected an IP address and port"),
            "{err}"
        );
        let err = load("api:\n  answer_timeout: 0s\n").unwrap_err();
        assert!(
            err.starts_with("steward.yaml:2:19: api.answer_timeout: must be longer than zero"),
            "{err}"
        );
        let ok = load("api:\n  listen: 0.0.0.0:9000\n  answer_timeout: 3s\n").unwrap();
        assert_eq!(ok.listen, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(load("api: {}\n").unwrap().listen, None);
        assert_eq!(ok.answer_timeout, Duration::from_secs(3));
    }
}
