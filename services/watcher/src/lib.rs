//! The `watcher` service: turns EVM chains into `chain.*` events (blocks, decoded logs, contract state), reorg-safe.
//!
//! Today it is registered and runs idle: it reports ready, consumes no events and does no
//! work, and says so in its log. Its behaviour lands with issue #3.

use steward_runtime::{Idle, Service, ServiceKind};

pub const NAME: &str = "watcher";

pub fn service() -> Box<dyn Service> {
    Idle::service(
        NAME,
        ServiceKind::Intake,
        "the chain watcher (issue #3) is not built yet",
    )
}
