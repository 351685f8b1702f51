//! `http:` — the operational HTTP server.

use std::net::{Ipv4Addr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The operational HTTP server: `/healthz` (liveness), `/readyz` (readiness) and
/// `/metrics` (Prometheus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on, as `ip:port` (`127.0.0.1:9464`, `0.0.0.0:9464`,
    /// `[::]:9464`). Host names are not accepted. Bind to a non-loopback address only
    /// when something trusted (a Kubernetes probe, Prometheus) needs to reach it.
    #[serde(deserialize_with = "socket_addr")]
    #[schemars(extend("examples" = ["127.0.0.1:9464", "0.0.0.0:9464"]))]
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9464)),
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an IP address and port such as `127.0.0.1:9464` or `[::]:9464` \
             (got `{text}`)"
        ))
    })
}
