//! `playbooks:` — where the runner finds its playbooks, how it notices changes, and the
//! people who may answer a playbook's `approval` step.
//!
//! The playbooks themselves are YAML files of their own (see `playbooks/README.md`), checked by
//! `steward playbook validate` and, for the files in `folder`, by the runner's configuration
//! check at load time (`steward_runner::check_config`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_token, join, TOKEN_PATTERN};
use crate::duration::{self, HumanDuration};
use crate::validate::Validator;

/// The runner's playbooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybooksConfig {
    /// The folder of playbook files (`*.yaml`, `*.yml`), relative to the configuration file's
    /// directory. Absent: the runner runs no playbooks, and says so (playbooks act on funds, so
    /// none runs unless a folder is named).
    pub folder: Option<PathBuf>,
    /// How often the folder is checked for changed files (new runs use the new version; runs
    /// in flight keep theirs). `0s` turns the check off; SIGHUP reloads at any time.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub reload_interval: Duration,
    /// People who may answer `approval` steps, by the name playbooks use for them.
    #[schemars(extend("propertyNames" = { "pattern": TOKEN_PATTERN }))]
    pub approvers: BTreeMap<String, ApproverConfig>,
}

impl Default for PlaybooksConfig {
    fn default() -> Self {
        Self {
            folder: None,
            reload_interval: Duration::from_secs(5),
            approvers: BTreeMap::new(),
        }
    }
}

/// One person who may approve or deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproverConfig {
    /// Their Telegram user id (a number; the bot shows it in `/help`): answers from this user
    /// count for them. The chat must also be on the bot's allowlist.
    pub telegram_user_id: Option<i64>,
}

impl PlaybooksConfig {
    pub(crate) fn validate(&self, path: &str, v: &mut Validator<'_>) {
        if self
            .folder
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            v.invalid(
                &join(path, "folder"),
                "must not be empty: use `.` for the configuration file's directory",
            );
        }
        for (name, a) in &self.approvers {
            let p = join(&join(path, "approvers"), name);
            if !is_token(name) {
                v.invalid_got(
                    &p,
                    "an approver's name is letters, digits, `_` or `-`",
                    name,
                );
            }
            if a.telegram_user_id.is_none() {
                v.invalid(
                    &p,
                    "an approver needs a way to answer: give `telegram_user_id`",
                );
            }
        }
    }

    /// One line for `steward config check`.
    pub fn summary(&self) -> String {
        let Some(folder) = &self.folder else {
            return "none (no `playbooks.folder`: the runner runs no playbooks)".to_owned();
        };
        format!(
            "folder {}, {}, {} approver{}",
            folder.display(),
            if self.reload_interval.is_zero() {
                "reloaded on SIGHUP only".to_owned()
            } else {
                format!(
                    "checked for changes every {}",
                    duration::format(&self.reload_interval)
                )
            },
            self.approvers.len(),
            if self.approvers.len() == 1 { "" } else { "s" }
        )
    }
}
