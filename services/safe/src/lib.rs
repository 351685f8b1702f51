//! The `safe` service: builds Safe transactions, collects and checks signatures, executes once the threshold is met.
//!
//! Today it is registered and runs idle: it reports ready, consumes no events and does no
//! work, and says so in its log. Its behaviour lands with issue #4.

pub mod account;
pub mod decode;
pub mod multisend;
pub mod queue;
pub mod signature;
pub mod simulate;
pub mod tx;

use steward_runtime::{Idle, Service, ServiceKind};

pub const NAME: &str = "safe";

pub fn service() -> Box<dyn Service> {
    Idle::service(
        NAME,
        ServiceKind::Worker,
        "the Safe proposal queue (issue #4) is not built yet",
    )
}
