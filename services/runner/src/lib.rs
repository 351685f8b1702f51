//! The `runner` service: YAML playbooks that turn events and schedules into liquidations,
//! rebalances, Safe proposals and alerts (`playbooks/README.md` is the format's guide).
//!
//! - [`format`] is the file as written, [`playbook`] reads and checks it (every problem at
//!   file:line:column with the field path, inside CEL expressions and templates too) and
//!   compiles it; [`expr`] is CEL, [`template`] handlebars with the notifier's helpers.
//! - [`engine`] is the runner without I/O: runs are event-sourced (`playbook.run.started`,
//!   `playbook.step.completed|failed`, `playbook.run.finished`, folded back into state), every
//!   effect's key is derived from the run key and the step id, `dedup` and `cooldown` hold back
//!   floods, runs keep the playbook version they started with.
//! - [`service`] runs the engine between the log, the clock, the folder (reloaded on change
//!   and on SIGHUP) and the store ([`store`]); [`dryrun`] runs it over recorded or logged events
//!   and prints what would happen (`steward playbook test|replay`).

pub mod bench;
pub mod dryrun;
pub mod engine;
pub mod expr;
pub mod fields;
pub mod format;
pub mod harness;
pub mod playbook;
pub mod service;
pub mod store;
pub mod template;

use std::sync::Arc;

use steward_config::{Config, Validator};
use steward_runtime::Service;

pub use engine::Engine;
pub use playbook::{CheckContext, Playbook};
pub use service::{Clock, Runner, SystemClock, TokioClock};

pub const NAME: &str = "runner";

pub fn service() -> Box<dyn Service> {
    Box::new(Runner::new(Arc::new(SystemClock)))
}

/// The service with another clock (tests: [`TokioClock`] under paused time).
pub fn service_with_clock(clock: Arc<dyn Clock>) -> Box<dyn Service> {
    Box::new(Runner::new(clock))
}

/// The runner's configuration check: every playbook in `playbooks.folder` loads, against the
/// configuration's channels, approvers, operator sets and templates. Problems name the
/// playbook's file:line:column.
pub fn check_config(config: &Config, v: &mut Validator<'_>) {
    let Some(dir) = service::folder(config) else {
        return;
    };
    let ctx = CheckContext::for_config(config);
    let (_, problems) = service::load_folder(&dir, &ctx);
    for p in problems {
        v.invalid("playbooks.folder", p);
    }
}
