//! The `api` service: serves HTTP for signers and operators, including the Safe Transaction Service API.
//!
//! Today it is registered and runs idle: it reports ready, consumes no events and does no
//! work, and says so in its log. Its behaviour lands with issue #4.

use steward_runtime::{Idle, Service, ServiceKind};

pub const NAME: &str = "api";

pub fn service() -> Box<dyn Service> {
    Idle::service(
        NAME,
        ServiceKind::Intake,
        "the HTTP API (issue #4) is not built yet",
    )
}
