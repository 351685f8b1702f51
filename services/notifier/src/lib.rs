//! The `notifier` service: delivers `notify.requested` to Telegram and email, once per cause.
//!
//! Today it is registered and runs idle: it reports ready, consumes no events and does no
//! work, and says so in its log. Its behaviour lands with issue #7.

use steward_runtime::{Idle, Service, ServiceKind};

pub const NAME: &str = "notifier";

pub fn service() -> Box<dyn Service> {
    Idle::service(
        NAME,
        ServiceKind::Worker,
        "alert delivery (issue #7) is not built yet",
    )
}
