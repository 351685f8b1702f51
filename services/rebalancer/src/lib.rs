//! The `rebalancer` service: turns an operator set that breaks policy into an allocation plan and a Safe proposal.
//!
//! Today it is registered and runs idle: it reports ready, consumes no events and does no
//! work, and says so in its log. Its behaviour lands with issue #6.

mod flow;
pub mod plan;

use steward_runtime::{Idle, Service, ServiceKind};

pub const NAME: &str = "rebalancer";

pub fn service() -> Box<dyn Service> {
    Idle::service(
        NAME,
        ServiceKind::Worker,
        "the stake rebalancer (issue #6) is not built yet",
    )
}
