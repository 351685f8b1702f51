//! The event envelope and catalogue shared by every Steward service.
//!
//! Invariants this crate upholds:
//! - An [`Envelope`] on the wire is JSON with a schema version `v`; readers accept any
//!   version up to [`SCHEMA_VERSION`] and refuse newer ones instead of guessing.
//! - `type` is a past-tense fact `<domain>.<entity>.<verb>`; the NATS subject is derived
//!   from it (see [`subject`]), never chosen by hand.
//! - `key` is the idempotency key. An event derived from another gets a deterministic key
//!   from its cause's key and the step that produced it ([`Envelope::derive`]), so a retry
//!   of the same step produces the same key and the log drops the repeat.
//! - The payload stays raw JSON until someone asks for it typed ([`Envelope::decode`]), so
//!   services that only route or archive events never pay for parsing payloads.

mod catalogue;
mod envelope;
mod json;
mod subject;

pub use catalogue::*;
pub use envelope::{derive_key, Envelope, EnvelopeError, SCHEMA_VERSION};
pub use subject::{subject_for, subject_matches, type_pattern_to_subject, SubjectError};
