use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::catalogue::{Event, Payload, RawPayload};
use crate::json;

/// Version of the envelope's wire format. Bump it when a field changes meaning; readers
/// refuse envelopes newer than they know.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "event schema version {found} is newer than this build understands ({SCHEMA_VERSION})"
    )]
    UnsupportedVersion { found: u16 },
    #[error("event type {0:?} is not in the catalogue")]
    UnknownType(String),
    #[error("payload of {event_type} does not match its schema: {source}")]
    Payload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One fact in the log. See DESIGN §3 and `docs/architecture.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Wire schema version.
    pub v: u16,
    /// Unique id of this event (UUIDv7: time-ordered).
    pub id: Uuid,
    /// `<domain>.<entity>.<verb>`, e.g. `chain.log.observed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The service that wrote it.
    pub source: String,
    /// When it was written.
    #[serde(with = "rfc3339_millis")]
    pub time: DateTime<Utc>,
    /// Id of the root cause; follows one story from a block to a Telegram message.
    pub correlation_id: Uuid,
    /// Id of the direct cause, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Idempotency key: two events with the same key are the same fact.
    pub key: String,
    /// Chain the event concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// The typed payload, kept as raw JSON until decoded.
    pub data: Box<RawValue>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.v == other.v
            && self.id == other.id
            && self.event_type == other.event_type
            && self.source == other.source
            && self.time == other.time
            && self.correlation_id == other.correlation_id
            && self.causation_id == other.causation_id
            && self.key == other.key
            && self.chain_id == other.chain_id
            && self.data.get() == other.data.get()
    }
}

impl Envelope {
    /// A root event: it starts a new story (its own id is the correlation id).
    /// `key` must identify the fact itself (e.g. chain, block hash and log index).
    pub fn new<P: Payload>(source: &str, key: impl Into<String>, payload: &P) -> Self {
        Self::with_data(source, key.into(), P::TYPE, to_raw(payload))
    }

    /// [`Envelope::new`] for a payload that writes its own JSON (the hot paths).
    pub fn new_raw<P: RawPayload>(source: &str, key: impl Into<String>, payload: &P) -> Self {
        Self::with_data(source, key.into(), P::TYPE, payload.to_raw())
    }

    fn with_data(source: &str, key: String, event_type: &str, data: Box<RawValue>) -> Self {
        let id = Uuid::now_v7();
        Self {
            v: SCHEMA_VERSION,
            id,
            event_type: event_type.to_owned(),
            source: source.to_owned(),
            time: now_millis(),
            correlation_id: id,
            causation_id: None,
            key,
            chain_id: None,
            data,
        }
    }

    /// An event caused by `self`, produced by `step` (e.g. `"playbook:aave-liquidate/queue"`).
    /// The key is derived deterministically, so the same step retried yields the same key.
    pub fn derive<P: Payload>(&self, source: &str, step: &str, payload: &P) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            event_type: P::TYPE.to_owned(),
            source: source.to_owned(),
            time: now_millis(),
            correlation_id: self.correlation_id,
            causation_id: Some(self.id),
            key: derive_key(&self.key, step),
            chain_id: self.chain_id,
            data: to_raw(payload),
        }
    }

    pub fn with_chain(mut self, chain_id: u64) -> Self {
        self.chain_id = Some(chain_id);
        self
    }

    /// The NATS subject this event is published on.
    pub fn subject(&self, prefix: &str) -> String {
        crate::subject::subject_for(prefix, &self.event_type)
    }

    /// Decode the payload as a specific type; fails if the event is of another type.
    pub fn payload<P: Payload + DeserializeOwned>(&self) -> Result<P, EnvelopeError> {
        if self.event_type != P::TYPE {
            return Err(EnvelopeError::UnknownType(self.event_type.clone()));
        }
        serde_json::from_str(self.data.get()).map_err(|source| EnvelopeError::Payload {
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// Decode the payload into the catalogue enum.
    pub fn decode(&self) -> Result<Event, EnvelopeError> {
        Event::from_type_and_json(&self.event_type, self.data.get())
    }

    /// The wire form: serde_json's compact form of the envelope, written by hand because it
    /// is on every append's path (see the `json` module; a test holds the two equal).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(250 + self.key.len() + self.data.get().len());
        let mut uuid = Uuid::encode_buffer();
        out.push(b'{');
        json::field(&mut out, true, "v");
        json::uint(&mut out, u64::from(self.v));
        json::str_field(&mut out, "id", self.id.hyphenated().encode_lower(&mut uuid));
        json::str_field(&mut out, "type", &self.event_type);
        json::str_field(&mut out, "source", &self.source);
        json::str_field(
            &mut out,
            "time",
            &self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        json::str_field(
            &mut out,
            "correlation_id",
            self.correlation_id.hyphenated().encode_lower(&mut uuid),
        );
        if let Some(c) = self.causation_id {
            json::str_field(
                &mut out,
                "causation_id",
                c.hyphenated().encode_lower(&mut uuid),
            );
        }
        json::str_field(&mut out, "key", &self.key);
        if let Some(c) = self.chain_id {
            json::field(&mut out, false, "chain_id");
            json::uint(&mut out, c);
        }
        json::field(&mut out, false, "data");
        out.extend_from_slice(self.data.get().as_bytes());
        out.push(b'}');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let env: Envelope = serde_json::from_slice(bytes)?;
        if env.v > SCHEMA_VERSION {
            return Err(EnvelopeError::UnsupportedVersion { found: env.v });
        }
        Ok(env)
    }
}

/// Now, truncated to the millisecond the wire format carries, so an event read back equals
/// the event written.
fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn to_raw<P: Serialize>(payload: &P) -> Box<RawValue> {
    // Payload types are plain structs of strings and numbers: serialisation cannot fail.
    serde_json::value::to_raw_value(payload)
        .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default())
}

/// Deterministic key of an event derived from `cause_key` by `step`: the first 128 bits
/// of SHA-256 over both, hex. Fixed length however deep the causal chain.
pub fn derive_key(cause_key: &str, step: &str) -> String {
    let mut h = Sha256::new();
    h.update(cause_key.as_bytes());
    h.update([0x1f]);
    h.update(step.as_bytes());
    hex::encode(&h.finalize()[..16])
}

mod rfc3339_millis {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::*;

    #[test]
    fn derived_keys_are_deterministic_and_step_specific() {
        assert_eq!(derive_key("a", "s1"), derive_key("a", "s1"));
        assert_ne!(derive_key("a", "s1"), derive_key("a", "s2"));
        assert_ne!(derive_key("a", "s1"), derive_key("b", "s1"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(derive_key("ab", "c"), derive_key("a", "bc"));
        assert_eq!(derive_key("x", "y").len(), 32);
    }

    #[test]
    fn the_wire_form_is_serde_jsons() {
        let plain = Envelope::new(
            "watcher",
            "log:1:000000000007:0xabc:3",
            &NotifyRequested::example(),
        );
        let derived = plain
            .derive("risk \"quoted\"\n", "rule/hf", &NotifyRequested::example())
            .with_chain(u64::MAX);
        let mut odd = plain.clone().with_chain(0);
        odd.key = "tab\tand \u{1} and é".into();
        odd.v = 0;
        for e in [plain, derived, odd] {
            assert_eq!(
                String::from_utf8(e.to_json()).unwrap(),
                serde_json::to_string(&e).unwrap()
            );
            assert_eq!(Envelope::from_json(&e.to_json()).unwrap(), e);
        }
    }

    #[test]
    fn derive_carries_the_story() {
        let root = Envelope::new(
            "watcher",
            "1:0xabc:3",
            &ChainBlockObserved {
                number: 7,
                hash: "0xabc".into(),
                parent_hash: "0xab0".into(),
                timestamp: 1,
            },
        )
        .with_chain(1);
        let a = root.derive("risk", "rule/hf", &NotifyRequested::example());
        let b = root.derive("risk", "rule/hf", &NotifyRequested::example());
        assert_eq!(
            a.key, b.key,
            "a retry of the same step must produce the same key"
        );
        assert_ne!(a.id, b.id);
        assert_eq!(a.correlation_id, root.id);
        assert_eq!(a.causation_id, Some(root.id));
        assert_eq!(a.chain_id, Some(1));
        assert_eq!(a.event_type, "notify.requested");
    }

    #[test]
    fn newer_schema_is_refused() {
        let e = Envelope::new("t", "k", &NotifyRequested::example());
        let mut json: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        json["v"] = serde_json::json!(SCHEMA_VERSION + 1);
        let err = Envelope::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::UnsupportedVersion { .. }),
            "{err}"
        );
    }

    #[test]
    fn round_trip_preserves_everything() {
        let e = Envelope::new("t", "k", &NotifyRequested::example()).with_chain(10);
        let back = Envelope::from_json(&e.to_json()).unwrap();
        assert_eq!(e, back);
        assert_eq!(
            back.payload::<NotifyRequested>().unwrap(),
            NotifyRequested::example()
        );
        assert!(back.payload::<ChainBlockObserved>().is_err());
    }
}
