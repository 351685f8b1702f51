//! The `runner` service: executes YAML playbooks on events and schedules.
//!
//! Today it is registered and runs idle: it reports ready, consumes no events and does no
//! work, and says so in its log. Its behaviour lands with issue #5.

pub mod engine;
pub mod expr;
pub mod fields;
pub mod format;
pub mod playbook;
pub mod template;

use steward_runtime::{Idle, Service, ServiceKind};

pub const NAME: &str = "runner";

pub fn service() -> Box<dyn Service> {
    Idle::service(
        NAME,
        ServiceKind::Worker,
        "the playbook runner (issue #5) is not built yet",
    )
}
