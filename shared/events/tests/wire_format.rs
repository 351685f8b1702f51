//! Snapshot tests of the wire format: a change to these snapshots is a change to what every
//! deployed service reads, so it must be deliberate (bump SCHEMA_VERSION if meaning changes).

use chrono::{TimeZone, Utc};
use serde_json::json;
use steward_events::*;
use uuid::Uuid;

fn fixed<P: Payload>(payload: &P) -> Envelope {
    let mut e = Envelope::new("watcher", "1:0xb10c:7", payload).with_chain(1);
    e.id = Uuid::parse_str("0192f1a0-7c00-7000-8000-000000000001").unwrap();
    e.correlation_id = e.id;
    e.time = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    e
}

#[test]
fn envelope_wire_format() {
    let block = ChainBlockObserved {
        number: 7,
        hash: "0xb10c".into(),
        parent_hash: "0xb10b".into(),
        timestamp: 1_764_072_000,
    };
    let root = fixed(&block);
    insta::assert_snapshot!("envelope_root", String::from_utf8(root.to_json()).unwrap());

    let mut derived = root.derive("risk", "rule/hf", &NotifyRequested::example());
    derived.id = Uuid::parse_str("0192f1a0-7c00-7000-8000-000000000002").unwrap();
    derived.time = root.time;
    insta::assert_snapshot!(
        "envelope_derived",
        String::from_utf8(derived.to_json()).unwrap()
    );
}

#[test]
fn payload_wire_formats() {
    let mut args = serde_json::Map::new();
    args.insert(
        "from".into(),
        json!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
    );
    args.insert("value".into(), json!("1000000000000000000000"));
    let log = ChainLogObserved {
        block_number: 7,
        block_hash: "0xb10c".into(),
        transaction_hash: "0x7a".into(),
        log_index: 3,
        address: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
        event: "Transfer".into(),
        signature: "Transfer(address,address,uint256)".into(),
        watch: Some("erc20".into()),
        args,
        removed: false,
    };
    insta::assert_json_snapshot!("chain_log_observed", log);

    let dl = LogEventDeadLettered {
        consumer: "risk".into(),
        sequence: 42,
        deliveries: 5,
        last_error: "boom".into(),
        event: json!({"type": "chain.block.observed"}),
        severity: Severity::High,
    };
    insta::assert_json_snapshot!("log_event_dead_lettered", dl);

    let sub = NotifySubscriptionAdded {
        chat_id: -1001234567890,
        user_id: Some(42),
        subscription: "high".into(),
    };
    insta::assert_json_snapshot!("notify_subscription_added", sub);
    let unsub = NotifySubscriptionRemoved {
        chat_id: -1001234567890,
        user_id: Some(42),
        subscription: None,
    };
    insta::assert_json_snapshot!("notify_subscription_removed", unsub);
}

#[test]
fn every_catalogue_type_decodes_by_name() {
    // The catalogue and the `Event` enum must agree; a type with no decoder is a bug.
    assert_eq!(EVENT_TYPES.len(), 43);
    for t in EVENT_TYPES {
        if let Err(EnvelopeError::UnknownType(_)) = Event::from_type_and_json(t, "{}") {
            panic!("{t} has no decoder");
        }
    }
    let e = fixed(&NotifyRequested::example());
    match e.decode().unwrap() {
        Event::NotifyRequested(n) => assert_eq!(n, NotifyRequested::example()),
        other => panic!("decoded as {}", other.event_type()),
    }
    assert!(matches!(
        Event::from_type_and_json("no.such.type", "{}"),
        Err(EnvelopeError::UnknownType(_))
    ));
}
