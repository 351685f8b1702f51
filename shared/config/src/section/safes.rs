//! `safes:` — the Safes Steward queues transactions for, and how it may execute them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::chains::is_address_syntax;
use super::{is_token, join, TOKEN_PATTERN};
use crate::duration::{self, HumanDuration};
use crate::secret::Secret;
use crate::validate::Validator;

/// One Safe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SafeConfig {
    /// Name of the Safe in logs and commands. Letters, digits, `_` and `-`; unique.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub name: String,
    /// The chain's `name` in `chains:`. Add a watch with `pack: safe` at this address there:
    /// executions, owner and threshold changes are learned from it.
    pub chain: String,
    /// The Safe's address.
    pub address: String,
    /// MultiSend (v1.4.1: `0x38869bf66a61cF6bDB996A6aE40D5853Fd43B526`), for batches that
    /// need a DELEGATECALL inside.
    pub multi_send: String,
    /// MultiSendCallOnly (v1.4.1: `0x9641d764fc13c8B624c04430C7356C1C7C8102e2`), for every
    /// other batch.
    pub multi_send_call_only: String,
    /// SimulateTxAccessor (v1.4.1: `0x3d4BA2E0884aa488718476ca2FB8Efc291A46199`): proposals
    /// are simulated through it before they are queued. Absent: not simulated.
    #[serde(default)]
    pub simulate_tx_accessor: Option<String>,
    /// JSON ABI files (relative to this configuration file) used to show signers what each
    /// call does.
    #[serde(default)]
    pub abis: Vec<PathBuf>,
    /// The page where signers sign, with `{safe}`, `{safe_tx_hash}` and `{chain_id}` filled
    /// in (e.g. `https://app.safe.global/transactions/tx?safe=eth:{safe}&id=multisig_{safe}_{safe_tx_hash}`).
    #[serde(default)]
    pub signing_url: Option<String>,
    /// A relayer that executes transactions once they have enough signatures. Absent (or
    /// its key empty): ready transactions wait for an owner to execute them.
    #[serde(default)]
    pub relayer: Option<RelayerConfig>,
}

fn no_key() -> Secret {
    Secret::new("")
}

/// The relayer account and its fee policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayerConfig {
    /// The relayer's private key, 0x hex. A secret: write `${SAFE_RELAYER_KEY:-}`; empty or
    /// absent (an unset variable in an unquoted scalar reads as nothing) disables the relayer,
    /// so pods that are not given the variable still start.
    #[serde(default = "no_key")]
    pub key: Secret,
    /// Highest fee per gas paid, in gwei.
    #[serde(default = "default_max_fee")]
    pub max_fee_gwei: f64,
    /// Priority fee (tip) per gas, in gwei, at the first attempt.
    #[serde(default = "default_priority")]
    pub priority_fee_gwei: f64,
    /// A transaction not mined within this long is sent again with higher fees.
    #[serde(default = "default_resubmit", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub resubmit_after: Duration,
    /// Fee increase per resubmission, in percent (nodes require at least 10).
    #[serde(default = "default_bump")]
    pub bump_percent: u32,
}

fn default_max_fee() -> f64 {
    200.0
}
fn default_priority() -> f64 {
    2.0
}
fn default_resubmit() -> Duration {
    Duration::from_secs(60)
}
fn default_bump() -> u32 {
    15
}

impl RelayerConfig {
    /// Whether a key is set.
    pub fn enabled(&self) -> bool {
        !self.key.expose().trim().is_empty()
    }
}

/// Checks the `safes:` list.
pub(crate) fn validate_safes(safes: &[SafeConfig], v: &mut Validator<'_>) {
    let mut names = HashSet::new();
    for (i, s) in safes.iter().enumerate() {
        let p = format!("safes[{i}]");
        if !is_token(&s.name) {
            v.invalid_got(
                &join(&p, "name"),
                "must be letters, digits, `_` or `-`",
                &s.name,
            );
        } else if !names.insert(s.name.as_str()) {
            v.conflict(
                &join(&p, "name"),
                format!("another Safe is named `{}`", s.name),
            );
        }
        for (field, value) in [
            ("address", Some(&s.address)),
            ("multi_send", Some(&s.multi_send)),
            ("multi_send_call_only", Some(&s.multi_send_call_only)),
            ("simulate_tx_accessor", s.simulate_tx_accessor.as_ref()),
        ] {
            if let Some(a) = value {
                if !is_address_syntax(a) {
                    v.invalid_got(
                        &join(&p, field),
                        "must be an address: 0x and 40 hex digits",
                        a,
                    );
                }
            }
        }
        if let Some(r) = &s.relayer {
            let rp = join(&p, "relayer");
            if r.enabled() {
                let k = r.key.expose().trim();
                let hex = k.strip_prefix("0x").unwrap_or(k);
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    // The key is a secret: say what is wrong, never what it is.
                    v.invalid(
                        &join(&rp, "key"),
                        "must be a private key: 32 bytes of hex (64 digits, 0x optional)",
                    );
                }
            }
            if !(r.max_fee_gwei > 0.0 && r.max_fee_gwei.is_finite()) {
                v.invalid_got(
                    &join(&rp, "max_fee_gwei"),
                    "must be above zero",
                    r.max_fee_gwei,
                );
            }
            if !(r.priority_fee_gwei >= 0.0 && r.priority_fee_gwei <= r.max_fee_gwei) {
                v.invalid_got(
                    &join(&rp, "priority_fee_gwei"),
                    "must be between 0 and max_fee_gwei",
                    r.priority_fee_gwei,
                );
            }
            if r.bump_percent < 10 {
                v.invalid_got(
                    &join(&rp, "bump_percent"),
                    "must be at least 10: nodes refuse a replacement with less",
                    r.bump_percent,
                );
            }
            if r.resubmit_after.is_zero() {
                v.invalid(&join(&rp, "resubmit_after"), "must be longer than zero");
            }
        }
    }
}
