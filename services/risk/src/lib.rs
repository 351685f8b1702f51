//! The `risk` service: judges positions, oracles, operator sets and Safe configuration and emits `risk.*` findings.
//!
//! Today it is registered and runs idle: it reports ready, consumes no events and does no
//! work, and says so in its log. Its behaviour lands with issue #6.

use steward_runtime::{Idle, Service, ServiceKind};

pub const NAME: &str = "risk";

pub fn service() -> Box<dyn Service> {
    Idle::service(
        NAME,
        ServiceKind::Worker,
        "the risk evaluator (issue #6) is not built yet",
    )
}
