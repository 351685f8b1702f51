//! The payload fields of every catalogue type, so `steward playbook validate` can tell
//! `event.data.helth_factor` from `event.data.health_factor` before a playbook ever runs.
//!
//! The names come from the payload types themselves: serde's derived `Deserialize` hands the
//! list of a struct's fields to the deserializer, and [`fields_of`] asks for it without any
//! data. Only the first level of `data` is checked (nested values are lists and maps whose
//! shape the catalogue documents).

use serde::de::{self, DeserializeOwned, Visitor};
use steward_events::*;

/// The envelope's own fields, as `event.<field>` in conditions and templates.
pub const ENVELOPE_FIELDS: [&str; 10] = [
    "v",
    "id",
    "type",
    "source",
    "time",
    "correlation_id",
    "causation_id",
    "key",
    "chain_id",
    "data",
];

struct Probe(Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for &mut Probe {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The fields serde knows for the struct `T`.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

macro_rules! payload_fields {
    ($($ty:ident),+ $(,)?) => {
        /// The payload fields of catalogue type `event_type`; `None` for a type this table does
        /// not know (then nothing under `event.data` is checked).
        pub fn payload_fields(event_type: &str) -> Option<&'static [&'static str]> {
            $( if event_type == <$ty as Payload>::TYPE { return Some(fields_of::<$ty>()); } )+
            None
        }
    };
}

payload_fields!(
    ChainBlockObserved,
    ChainLogObserved,
    ChainStateObserved,
    ChainReorgDetected,
    RiskPositionLiquidatable,
    RiskOracleStale,
    RiskOracleDeviation,
    RiskOperatorSetAssessed,
    RiskSafeDrift,
    RiskPositionNearLiquidation,
    RiskOracleAggregatorChanged,
    RiskOracleSequencerDown,
    RiskOperatorSlashed,
    SafeTxSubmitted,
    PlaybookRunStarted,
    PlaybookStepCompleted,
    PlaybookStepFailed,
    PlaybookRunFinished,
    LiquidationRequested,
    LiquidationExecuted,
    LiquidationSkipped,
    LiquidationFailed,
    LiquidationRetracted,
    RebalanceRequested,
    RebalancePlanned,
    SafeProposalRequested,
    SafeTxProposed,
    SafeSignatureSubmitted,
    SafeSignatureAccepted,
    SafeSignatureRejected,
    SafeTxReady,
    SafeTxExecuted,
    SafeTxFailed,
    SafeTxSuperseded,
    SafeTxReopened,
    NotifyRequested,
    NotifyDelivered,
    NotifyFailed,
    LogEventDeadLettered,
    NotifySubscriptionAdded,
    NotifySubscriptionRemoved,
    PlaybookRunRequested,
    PlaybookApprovalDecided,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_the_payload_types() {
        let f = payload_fields("risk.position.liquidatable").unwrap();
        assert!(f.contains(&"health_factor") && f.contains(&"max_debt_to_cover_base"));
        assert!(
            f.contains(&"expected_collateral_base"),
            "optional fields too"
        );
        assert_eq!(payload_fields("no.such.type"), None);
    }

    #[test]
    fn every_catalogue_type_is_known() {
        // A new catalogue type must be added to the table above, or playbooks using it get no
        // field checks.
        for t in EVENT_TYPES {
            assert!(
                payload_fields(t).is_some_and(|f| !f.is_empty()),
                "{t} is not in the runner's field table (services/runner/src/fields.rs)"
            );
        }
    }
}
