//! The HTTP routes: the Safe Transaction Service endpoints that its clients (`@safe-global/
//! api-kit`, `steward safe …`) use, each with and without its trailing slash.
//!
//! Reads come from the api's own projection ([`crate::model`]) and, for a Safe's live state,
//! from the chain. Writes are events: a proposal becomes `safe.tx.submitted`, a confirmation
//! `safe.signature.submitted`; the request then waits (up to `api.answer_timeout`) for the safe
//! service's verdict, found in the projection by the submission's event id (the verdict's
//! causation id), whichever api replica projected it. The API checks what it can without
//! guessing (syntax, the hash recomputed from the fields, the signer, owners and nonce read
//! live) to answer mistakes at once; the safe service's checks are the ones that count.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{hex, Address, Bytes, B256, U256};
use axum::body::Bytes as Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};
use steward_chain::EndpointPool;
use steward_events::{Envelope, SafeSignatureSubmitted, SafeTxSubmitted};
use steward_log::EventLog;
use steward_safe::signature;
use steward_safe::tx::{SafeTx, Version};
use steward_store::Store;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::decode::{hex_string, StsDecoder};
use crate::model::{self, ListQuery, Outcome};
use crate::{sts, NAME};

/// A Safe the API serves.
pub struct SafeEntry {
    pub name: String,
    pub chain_id: u64,
    pub pool: EndpointPool,
    pub decoder: StsDecoder,
}

/// What the handlers share.
pub struct AppState {
    pub store: Store,
    pub log: Arc<dyn EventLog>,
    pub safes: HashMap<Address, SafeEntry>,
    pub answer_timeout: Duration,
    /// Every configured chain's id: a hash made for another one is named as such.
    pub chain_ids: Vec<u64>,
    /// Woken whenever the projection applied events: a verdict may have arrived.
    pub applied: Arc<Notify>,
}

/// Default and largest page sizes (the Safe Transaction Service's DefaultPagination).
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 200;
/// How often a waiting request looks for a verdict projected by another replica.
const POLL: Duration = Duration::from_millis(200);

type Shared = Arc<AppState>;

fn both(router: Router<Shared>, path: &str, route: MethodRouter<Shared>) -> Router<Shared> {
    router
        .route(path, route.clone())
        .route(path.trim_end_matches('/'), route)
}

pub fn router(state: Shared) -> Router {
    let mut r = Router::new();
    r = both(r, "/api/v1/about/", get(about));
    r = both(r, "/api/v1/safes/{address}/", get(safe_info));
    r = both(
        r,
        "/api/v2/safes/{address}/multisig-transactions/",
        get(list_v2).post(propose),
    );
    r = both(
        r,
        "/api/v1/safes/{address}/multisig-transactions/",
        get(list_v1).post(propose),
    );
    r = both(r, "/api/v2/multisig-transactions/{hash}/", get(tx_v2));
    r = both(r, "/api/v1/multisig-transactions/{hash}/", get(tx_v1));
    r = both(
        r,
        "/api/v1/multisig-transactions/{hash}/confirmations/",
        get(confirmations).post(confirm),
    );
    r.fallback(|| async { error(StatusCode::NOT_FOUND, json!({ "detail": "Not found." })) })
        .with_state(state)
}

// ------------------------------------------------------------------ answers

/// An answer other than success: a status and a JSON body.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub body: Value,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type Answer = Result<Response, Problem>;

fn error(status: StatusCode, body: Value) -> Problem {
    Problem { status, body }
}

/// A field of the request that is wrong: `{"<field>": [message], "detail": message}`.
fn field_error(status: StatusCode, field: &str, message: String) -> Problem {
    error(status, json!({ field: [message], "detail": message }))
}

/// A refusal, by the API's own checks or the safe service's.
fn refused(reason: &str, detail: String) -> Problem {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "nonFieldErrors": [detail], "reason": reason, "detail": detail }),
    )
}

fn store_error(e: steward_store::StoreError) -> Problem {
    tracing::warn!(error = %e, "the api's store is unavailable");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "detail": "the store is unavailable; try again" }),
    )
}

fn not_found() -> Problem {
    error(StatusCode::NOT_FOUND, json!({ "detail": "Not found." }))
}

// ------------------------------------------------------------------ input

/// A Safe address in a path: checksummed, as the Safe Transaction Service requires.
fn path_address(text: &str) -> Result<Address, Problem> {
    let bad = |message: String| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "code": 1, "message": message, "arguments": [text] }),
        )
    };
    match Address::parse_checksummed(text, None) {
        Ok(a) => Ok(a),
        Err(_) if Address::from_str(text).is_ok() => {
            Err(bad("Checksum address validation failed".to_owned()))
        }
        Err(_) => Err(bad(format!(
            "`{text}` is not an address: 0x and 40 hex digits (checksummed)"
        ))),
    }
}

fn path_hash(text: &str) -> Result<String, Problem> {
    model::normalize_hash(text).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            json!({ "detail": format!("`{text}` is not a safeTxHash: 0x and 64 hex digits") }),
        )
    })
}

/// An address in a body: any case, but a mixed-case one must carry a valid checksum (EIP-55).
fn address(text: &str) -> Result<Address, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0x").unwrap_or(t);
    let mixed = digits.chars().any(|c| c.is_ascii_uppercase())
        && digits.chars().any(|c| c.is_ascii_lowercase());
    if mixed {
        Address::parse_checksummed(t, None).map_err(|_| {
            format!("`{t}` is not a valid address: its checksum (mixed case) is wrong")
        })
    } else {
        Address::from_str(t).map_err(|_| format!("`{t}` is not an address: 0x and 40 hex digits"))
    }
}

fn hex_data(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let Some(digits) = t.strip_prefix("0x") else {
        return Err(format!(
            "`{}` is not hex data: it must start with 0x",
            short(t)
        ));
    };
    hex::decode(digits).map_err(|e| format!("`{}` is not hex data: {e}", short(t)))
}

fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// An unsigned integer given as a JSON number or a decimal string.
fn uint(v: &Value) -> Result<U256, String> {
    match v {
        Value::Number(n) if n.is_u64() => Ok(U256::from(n.as_u64().unwrap_or_default())),
        Value::String(s)
            if !s.trim().is_empty() && s.trim().chars().all(|c| c.is_ascii_digit()) =>
        {
            U256::from_str_radix(s.trim(), 10).map_err(|e| format!("`{s}` is out of range: {e}"))
        }
        other => Err(format!(
            "must be a whole number (as a number or a decimal string), not {other}"
        )),
    }
}

/// A proposal as `POST …/multisig-transactions/` takes it.
#[derive(Debug)]
struct Proposal {
    tx: SafeTx,
    hash: B256,
    sender: Address,
    signature: Vec<u8>,
    origin: Option<String>,
}

fn parse_proposal(body: &Value) -> Result<Proposal, (String, String)> {
    let field = |name: &str| body.get(name).filter(|v| !v.is_null());
    let required = |name: &str| {
        field(name).ok_or_else(|| (name.to_owned(), "This field is required.".to_owned()))
    };
    fn wrap(name: &str) -> impl Fn(String) -> (String, String) + '_ {
        move |m| (name.to_owned(), m)
    }
    let string = |name: &str| -> Result<String, (String, String)> {
        match required(name)? {
            Value::String(s) => Ok(s.clone()),
            other => Err((name.to_owned(), format!("must be a string, not {other}"))),
        }
    };
    let opt_address = |name: &str| -> Result<Address, (String, String)> {
        match field(name) {
            None => Ok(Address::ZERO),
            Some(Value::String(s)) => address(s).map_err(wrap(name)),
            Some(other) => Err((name.to_owned(), format!("must be an address, not {other}"))),
        }
    };
    let opt_uint = |name: &str| -> Result<U256, (String, String)> {
        match field(name) {
            None => Ok(U256::ZERO),
            Some(v) => uint(v).map_err(wrap(name)),
        }
    };
    let to = address(&string("to")?).map_err(wrap("to"))?;
    let value = uint(required("value")?).map_err(wrap("value"))?;
    let data = match field("data") {
        None => Vec::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(Value::String(s)) => hex_data(s).map_err(wrap("data"))?,
        Some(other) => return Err(("data".into(), format!("must be 0x hex, not {other}"))),
    };
    let operation = match required("operation")? {
        Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
            n.as_u64().unwrap_or(0) as u8
        }
        other => {
            return Err((
                "operation".into(),
                format!("must be 0 (CALL) or 1 (DELEGATECALL), not {other}"),
            ))
        }
    };
    let nonce = uint(required("nonce")?).map_err(wrap("nonce"))?;
    let nonce_u64 =
        u64::try_from(nonce).map_err(|_| ("nonce".to_owned(), "is out of range".to_owned()))?;
    let hash = B256::from_str(string("contractTransactionHash")?.trim()).map_err(|_| {
        (
            "contractTransactionHash".to_owned(),
            "must be a 32-byte hash: 0x and 64 hex digits".to_owned(),
        )
    })?;
    let sender = address(&string("sender")?).map_err(wrap("sender"))?;
    let signature = match field("signature") {
        Some(Value::String(s)) => hex_data(s).map_err(wrap("signature"))?,
        Some(other) => return Err(("signature".into(), format!("must be 0x hex, not {other}"))),
        None => {
            return Err((
                "signature".into(),
                "is required: Steward queues only transactions signed by their proposer".into(),
            ))
        }
    };
    if signature.len() < 65 {
        return Err((
            "signature".into(),
            format!(
                "must be at least 65 bytes (r ‖ s ‖ v); it has {}",
                signature.len()
            ),
        ));
    }
    let origin = match field("origin") {
        None => None,
        Some(Value::String(s)) if s.chars().count() > 200 => {
            return Err(("origin".into(), "must be at most 200 characters".into()))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok(Proposal {
        tx: SafeTx {
            to,
            value,
            data: Bytes::from(data),
            operation,
            safe_tx_gas: opt_uint("safeTxGas")?,
            base_gas: opt_uint("baseGas")?,
            gas_price: opt_uint("gasPrice")?,
            gas_token: opt_address("gasToken")?,
            refund_receiver: opt_address("refundReceiver")?,
            nonce: U256::from(nonce_u64),
        },
        hash,
        sender,
        signature,
        origin,
    })
}

fn json_body(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                json!({ "detail": "the body must be a JSON object" }),
            )
        })
}

// ------------------------------------------------------------------ verdicts

impl AppState {
    /// Appends `env` and waits for the safe service's verdict on it.
    async fn submit_and_wait(&self, env: Envelope) -> Result<Option<Outcome>, Problem> {
        let id = env.id;
        if let Err(e) = self.log.append(std::slice::from_ref(&env)).await {
            tracing::warn!(error = %e, "cannot append a submission to the event log");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "detail": "the event log is unavailable; nothing was submitted: try again" }),
            ));
        }
        tracing::info!(event_type = %env.event_type, key = %env.key, id = %id, "submitted; waiting for the safe service");
        let deadline = Instant::now() + self.answer_timeout;
        loop {
            let notified = self.applied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(o) = model::outcome(self.store.pool(), id)
                .await
                .map_err(store_error)?
            {
                return Ok(Some(o));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL), notified).await;
        }
    }

    fn timed_out(&self) -> Problem {
        error(
            StatusCode::GATEWAY_TIMEOUT,
            json!({ "detail": format!(
                "the safe service has not answered within {}s; the submission is in the event log \
                 and will still be checked: look the transaction up again later",
                self.answer_timeout.as_secs_f64()
            ) }),
        )
    }
}

/// 201 for an accepted signature, and for one the service already had (the Safe Transaction
/// Service answers a repeated confirmation the same way); 422 with the reason otherwise.
/// The Safe Transaction Service answers a created proposal with no body (`created` `None`).
fn verdict(outcome: Outcome, created: Option<Value>) -> Answer {
    if outcome.accepted || outcome.reason.as_deref() == Some("duplicate") {
        return Ok(match created {
            Some(body) => (StatusCode::CREATED, Json(body)).into_response(),
            None => StatusCode::CREATED.into_response(),
        });
    }
    let reason = outcome.reason.unwrap_or_else(|| "refused".to_owned());
    let detail = outcome
        .detail
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("the safe service refused it ({reason})"));
    Err(refused(&reason, detail))
}

// ------------------------------------------------------------------ handlers

async fn about(State(s): State<Shared>, headers: HeaderMap) -> Answer {
    let safes: Vec<Value> = {
        let mut v: Vec<(&Address, &SafeEntry)> = s.safes.iter().collect();
        v.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        v.into_iter()
            .map(|(a, e)| json!({ "name": e.name, "address": a.to_checksum(None), "chainId": e.chain_id }))
            .collect()
    };
    Ok(Json(json!({
        "name": "Steward (Safe Transaction Service compatible API)",
        "version": env!("CARGO_PKG_VERSION"),
        "api_version": "v1",
        "secure": headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https"),
        "host": headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default(),
        "headers": [],
        "settings": {
            "AWS_CONFIGURED": false,
            "ETHEREUM_NODE_URL": "",
            "ETHEREUM_TRACING_NODE_URL": "",
            "ETH_INTERNAL_NO_FILTER": false,
            "ETH_REORG_BLOCKS": 0,
            "TOKENS_LOGO_BASE_URI": "",
            "TOKENS_LOGO_EXTENSION": "",
        },
        "steward": { "safes": safes },
    }))
    .into_response())
}

fn unknown_safe(safe: Address) -> Problem {
    error(
        StatusCode::NOT_FOUND,
        json!({ "detail": format!("{} is not a Safe Steward queues transactions for (see `safes:` in its configuration)", safe.to_checksum(None)) }),
    )
}

async fn safe_info(State(s): State<Shared>, Path(address): Path<String>) -> Answer {
    let safe = path_address(&address)?;
    let Some(entry) = s.safes.get(&safe) else {
        return Err(unknown_safe(safe));
    };
    match crate::chain::safe_info(&entry.pool, safe).await {
        Ok(info) => Ok(Json(sts::safe_info(&info)).into_response()),
        Err(e) => {
            tracing::warn!(safe = %safe, error = %e, "cannot read the Safe from chain");
            Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "code": 50, "message": "Cannot get Safe info from blockchain", "arguments": [address] }),
            ))
        }
    }
}

async fn propose(State(s): State<Shared>, Path(address): Path<String>, body: Body) -> Answer {
    let safe = path_address(&address)?;
    let body = json_body(&body)?;
    let p = match parse_proposal(&body) {
        Ok(p) => p,
        Err((field, message)) => {
            return Err(field_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &field,
                format!("{field}: {message}"),
            ))
        }
    };
    let Some(entry) = s.safes.get(&safe) else {
        return Err(unknown_safe(safe));
    };
    // What can be checked at once, against the chain as it is now.
    let account = match steward_safe::account::read(&entry.pool, safe).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(safe = %safe, error = %e, "cannot read the Safe from chain");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "detail": format!("cannot read the Safe from chain {} to check the proposal; try again", entry.chain_id) }),
            ));
        }
    };
    let version = Version::parse(&account.version);
    let hash = p.tx.hash(entry.chain_id, safe, version);
    if hash != p.hash {
        if let Some(c) = s
            .chain_ids
            .iter()
            .find(|c| **c != entry.chain_id && p.tx.hash(**c, safe, Version::Current) == p.hash)
        {
            return Err(refused(
                "wrong_chain",
                format!(
                    "contract-tx-hash={:#x} is this transaction's hash on chain {c}; on chain {} it is {hash:#x}",
                    p.hash, entry.chain_id
                ),
            ));
        }
        return Err(refused(
            "wrong_hash",
            format!(
                "Contract-transaction-hash={hash:#x} does not match provided contract-tx-hash={:#x} \
                 (Safe {} v{} on chain {})",
                p.hash, safe, account.version, entry.chain_id
            ),
        ));
    }
    let nonce = u64::try_from(p.tx.nonce).unwrap_or(u64::MAX);
    if nonce < account.nonce {
        return Err(refused(
            "nonce_used",
            format!(
                "Tx with nonce={nonce} for safe={safe} already executed: the Safe's nonce is {}",
                account.nonce
            ),
        ));
    }
    if !account.owners.contains(&p.sender) {
        return Err(refused(
            "not_owner",
            format!(
                "Sender={} is not an owner. Current owners={:?}",
                p.sender, account.owners
            ),
        ));
    }
    // Whether the signature is the sender's is the safe service's to say (it can tell a
    // signature made for another chain); bytes that are no signature are refused here.
    if let Err(r) = signature::parse(&p.signature, hash) {
        return Err(refused(r.reason.as_str(), r.detail));
    }
    let payload = SafeTxSubmitted {
        safe: safe.to_checksum(None),
        to: p.tx.to.to_checksum(None),
        value: p.tx.value.to_string(),
        data: hex_string(&p.tx.data),
        operation: p.tx.operation,
        safe_tx_gas: p.tx.safe_tx_gas.to_string(),
        base_gas: p.tx.base_gas.to_string(),
        gas_price: p.tx.gas_price.to_string(),
        gas_token: p.tx.gas_token.to_checksum(None),
        refund_receiver: p.tx.refund_receiver.to_checksum(None),
        nonce,
        safe_tx_hash: format!("{hash:#x}"),
        sender: p.sender.to_checksum(None),
        signature: hex_string(&p.signature),
        origin: p.origin,
    };
    let key = format!("api/tx/{hash:#x}/{}/{}", p.sender, Uuid::now_v7());
    let env = Envelope::new(NAME, key, &payload).with_chain(entry.chain_id);
    match s.submit_and_wait(env).await? {
        Some(o) => verdict(o, None),
        None => Err(s.timed_out()),
    }
}

/// `limit`/`offset` and the filters of a transaction list.
fn parse_list_query(raw: Option<&str>) -> Result<(ListQuery, Vec<(String, String)>), Problem> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let bad = |name: &str, message: String| {
        Err(error(
            StatusCode::BAD_REQUEST,
            json!({ name: [message.clone()], "detail": format!("{name}: {message}") }),
        ))
    };
    let mut q = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    for (k, v) in &pairs {
        let boolean = || match v.as_str() {
            "true" | "True" | "1" => Some(true),
            "false" | "False" | "0" => Some(false),
            _ => None,
        };
        let number = || v.trim().parse::<u64>().ok();
        match k.as_str() {
            "executed" | "has_confirmations" | "trusted" => {
                let Some(b) = boolean() else {
                    return bad(k, format!("must be true or false, not `{v}`"));
                };
                match k.as_str() {
                    "executed" => q.executed = Some(b),
                    "has_confirmations" => q.has_confirmations = Some(b),
                    // Every transaction Steward queues carries its proposer's signature.
                    _ => {}
                }
            }
            "nonce" | "nonce__gte" | "nonce__lte" | "nonce__gt" | "nonce__lt" | "limit"
            | "offset" => {
                let Some(n) = number() else {
                    return bad(k, format!("must be a whole number, not `{v}`"));
                };
                match k.as_str() {
                    "nonce" => q.nonce = Some(n),
                    "nonce__gte" => q.nonce_gte = Some(n),
                    "nonce__lte" => q.nonce_lte = Some(n),
                    "nonce__gt" => q.nonce_gt = Some(n),
                    "nonce__lt" => q.nonce_lt = Some(n),
                    "limit" => q.limit = n.clamp(1, MAX_LIMIT),
                    _ => q.offset = n,
                }
            }
            "ordering" => {
                let mut order = Vec::new();
                for term in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    order.push(match term {
                        "nonce" => "nonce ASC",
                        "-nonce" => "nonce DESC",
                        "created" | "submission_date" => "submitted_at_ms ASC",
                        "-created" | "-submission_date" => "submitted_at_ms DESC",
                        "modified" => "modified_at_ms ASC",
                        "-modified" => "modified_at_ms DESC",
                        other => {
                            return bad(
                                "ordering",
                                format!("cannot order by `{other}`: use nonce, created or modified, `-` first for descending"),
                            )
                        }
                    });
                }
                q.order_by = order;
            }
            // Other filters of the Safe Transaction Service are not served; like it, the API
            // ignores parameters it does not know.
            _ => {}
        }
    }
    Ok((q, pairs))
}

/// `next`/`previous` links, as Django REST framework's LimitOffsetPagination writes them.
fn page_link(
    headers: &HeaderMap,
    path: &str,
    pairs: &[(String, String)],
    limit: u64,
    offset: Option<u64>,
) -> Value {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "limit" && k != "offset") {
        query.append_pair(k, v);
    }
    query.append_pair("limit", &limit.to_string());
    if let Some(o) = offset {
        query.append_pair("offset", &o.to_string());
    }
    json!(format!("{scheme}://{host}{path}?{}", query.finish()))
}

async fn list(
    s: Shared,
    address: String,
    raw: Option<String>,
    headers: HeaderMap,
    path: &str,
    v2: bool,
) -> Answer {
    let safe = path_address(&address)?;
    let (q, pairs) = parse_list_query(raw.as_deref())?;
    let entry = s.safes.get(&safe);
    let safe_text = safe.to_checksum(None);
    let pool = s.store.pool();
    let (count, rows) = model::list(pool, &safe_text, &q)
        .await
        .map_err(store_error)?;
    let unique = model::unique_nonces(pool, &safe_text)
        .await
        .map_err(store_error)?;
    let hashes: Vec<&str> = rows.iter().map(|r| r.safe_tx_hash.as_str()).collect();
    let confirmations = model::confirmations(pool, &hashes)
        .await
        .map_err(store_error)?;
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let c = confirmations
                .get(&r.safe_tx_hash)
                .map(Vec::as_slice)
                .unwrap_or_default();
            sts::transaction(
                r,
                c,
                entry.map(|e| &e.decoder),
                entry.map(|e| e.chain_id),
                v2,
            )
        })
        .collect();
    let path = path.replace("{address}", &address);
    let next = if q.offset + q.limit < count {
        page_link(&headers, &path, &pairs, q.limit, Some(q.offset + q.limit))
    } else {
        Value::Null
    };
    let previous = if q.offset == 0 {
        Value::Null
    } else if q.offset <= q.limit {
        page_link(&headers, &path, &pairs, q.limit, None)
    } else {
        page_link(&headers, &path, &pairs, q.limit, Some(q.offset - q.limit))
    };
    Ok(Json(json!({
        "count": count,
        "next": next,
        "previous": previous,
        "results": results,
        "countUniqueNonce": unique,
    }))
    .into_response())
}

async fn list_v2(
    State(s): State<Shared>,
    Path(address): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    list(
        s,
        address,
        raw,
        headers,
        "/api/v2/safes/{address}/multisig-transactions/",
        true,
    )
    .await
}

async fn list_v1(
    State(s): State<Shared>,
    Path(address): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    list(
        s,
        address,
        raw,
        headers,
        "/api/v1/safes/{address}/multisig-transactions/",
        false,
    )
    .await
}

async fn one(s: Shared, hash: String, v2: bool) -> Answer {
    let hash = path_hash(&hash)?;
    let pool = s.store.pool();
    let row = model::tx(pool, &hash)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let confirmations = model::confirmations(pool, &[hash.as_str()])
        .await
        .map_err(store_error)?
        .remove(&hash)
        .unwrap_or_default();
    let entry = Address::from_str(&row.safe)
        .ok()
        .and_then(|a| s.safes.get(&a));
    Ok(Json(sts::transaction(
        &row,
        &confirmations,
        entry.map(|e| &e.decoder),
        entry.map(|e| e.chain_id),
        v2,
    ))
    .into_response())
}

async fn tx_v2(State(s): State<Shared>, Path(hash): Path<String>) -> Answer {
    one(s, hash, true).await
}

async fn tx_v1(State(s): State<Shared>, Path(hash): Path<String>) -> Answer {
    one(s, hash, false).await
}

async fn confirmations(
    State(s): State<Shared>,
    Path(hash): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let hash = path_hash(&hash)?;
    let (q, pairs) = parse_list_query(raw.as_deref())?;
    let all = model::confirmations(s.store.pool(), &[hash.as_str()])
        .await
        .map_err(store_error)?
        .remove(&hash)
        .unwrap_or_default();
    let count = all.len() as u64;
    let page: Vec<Value> = all
        .iter()
        .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(q.limit).unwrap_or(usize::MAX))
        .map(sts::confirmation)
        .collect();
    let path = format!("/api/v1/multisig-transactions/{hash}/confirmations/");
    let next = if q.offset + q.limit < count {
        page_link(&headers, &path, &pairs, q.limit, Some(q.offset + q.limit))
    } else {
        Value::Null
    };
    let previous = if q.offset == 0 {
        Value::Null
    } else {
        page_link(
            &headers,
            &path,
            &pairs,
            q.limit,
            q.offset.checked_sub(q.limit).filter(|o| *o > 0),
        )
    };
    Ok(
        Json(json!({ "count": count, "next": next, "previous": previous, "results": page }))
            .into_response(),
    )
}

async fn confirm(State(s): State<Shared>, Path(hash): Path<String>, body: Body) -> Answer {
    let hash = path_hash(&hash)?;
    let body = json_body(&body)?;
    let raw = match body.get("signature") {
        Some(Value::String(t)) => match hex_data(t) {
            Ok(b) => b,
            Err(m) => return Err(field_error(StatusCode::BAD_REQUEST, "signature", m)),
        },
        _ => {
            return Err(field_error(
                StatusCode::BAD_REQUEST,
                "signature",
                "signature: This field is required (0x hex).".to_owned(),
            ))
        }
    };
    if raw.len() < 65 {
        return Err(field_error(
            StatusCode::BAD_REQUEST,
            "signature",
            format!(
                "signature: must be at least 65 bytes (r ‖ s ‖ v); it has {}",
                raw.len()
            ),
        ));
    }
    let row = model::tx(s.store.pool(), &hash)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                json!({ "detail": format!("Multisig transaction with safe-tx-hash={hash} was not found") }),
            )
        })?;
    if row.is_executed() {
        return Err(field_error(
            StatusCode::BAD_REQUEST,
            "signature",
            format!("Transaction with safe-tx-hash={hash} was already executed"),
        ));
    }
    let safe_tx_hash = B256::from_str(&hash).unwrap_or_default();
    let sig = match signature::parse(&raw, safe_tx_hash) {
        Ok(sig) => sig,
        Err(r) => return Err(refused(r.reason.as_str(), r.detail)),
    };
    let chain_id = Address::from_str(&row.safe)
        .ok()
        .and_then(|a| s.safes.get(&a))
        .map(|e| e.chain_id);
    let payload = SafeSignatureSubmitted {
        safe: row.safe.clone(),
        safe_tx_hash: hash.clone(),
        owner: sig.owner.to_checksum(None),
        signature: hex_string(&raw),
        via: "api".to_owned(),
    };
    let key = format!("api/signature/{hash}/{}/{}", sig.owner, Uuid::now_v7());
    let mut env = Envelope::new(NAME, key, &payload);
    if let Some(c) = chain_id {
        env = env.with_chain(c);
    }
    match s.submit_and_wait(env).await? {
        Some(o) => verdict(o, Some(json!({ "signature": hex_string(&raw) }))),
        None => Err(s.timed_out()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> Value {
        json!({
            "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "value": "1000",
            "data": "0x",
            "operation": 0,
            "safeTxGas": "0",
            "baseGas": 0,
            "gasPrice": "0",
            "gasToken": "0x0000000000000000000000000000000000000000",
            "refundReceiver": null,
            "nonce": 3,
            "contractTransactionHash": format!("{:#x}", B256::repeat_byte(1)),
            "sender": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "signature": format!("0x{}", "11".repeat(65)),
        })
    }

    #[test]
    fn proposals_take_numbers_as_numbers_or_strings_and_nulls_as_defaults() {
        let p = parse_proposal(&proposal()).unwrap();
        assert_eq!(p.tx.value, U256::from(1000));
        assert_eq!(p.tx.nonce, U256::from(3));
        assert_eq!(p.tx.refund_receiver, Address::ZERO);
        assert!(p.tx.data.is_empty());
        assert_eq!(p.signature.len(), 65);
        assert_eq!(p.origin, None);
    }

    #[test]
    fn bad_fields_are_named_with_what_is_wrong() {
        let with = |k: &str, v: Value| {
            let mut b = proposal();
            b[k] = v;
            parse_proposal(&b).unwrap_err()
        };
        let (f, m) = with("to", json!("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"));
        assert_eq!(f, "to");
        assert!(m.contains("checksum"), "{m}");
        let (f, m) = with("data", json!("0xzz"));
        assert_eq!(f, "data");
        assert!(m.contains("not hex"), "{m}");
        let (f, _) = with("operation", json!(2));
        assert_eq!(f, "operation");
        let (f, m) = with("value", json!("-1"));
        assert_eq!(f, "value");
        assert!(m.contains("whole number"), "{m}");
        let (f, m) = with("signature", json!("0x1234"));
        assert_eq!(f, "signature");
        assert!(m.contains("65 bytes"), "{m}");
        let (f, m) = with("signature", Value::Null);
        assert_eq!(f, "signature");
        assert!(m.contains("required"), "{m}");
        let (f, _) = with("contractTransactionHash", json!("0x12"));
        assert_eq!(f, "contractTransactionHash");
    }

    #[test]
    fn list_queries_are_checked() {
        let (q, _) = parse_list_query(Some(
            "executed=false&nonce__gte=4&ordering=nonce,-modified&limit=500&offset=2",
        ))
        .unwrap();
        assert_eq!(q.executed, Some(false));
        assert_eq!(q.nonce_gte, Some(4));
        assert_eq!(q.order_by, vec!["nonce ASC", "modified_at_ms DESC"]);
        assert_eq!(q.limit, MAX_LIMIT);
        assert_eq!(q.offset, 2);
        for bad in ["executed=maybe", "nonce__gte=-1", "ordering=to", "limit=x"] {
            assert!(parse_list_query(Some(bad)).is_err(), "{bad}");
        }
        let (q, _) = parse_list_query(None).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert!(q.order_by.is_empty());
    }

    #[test]
    fn path_addresses_must_be_checksummed() {
        assert!(path_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_ok());
        let r = path_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").unwrap_err();
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.body["message"], "Checksum address validation failed");
        let r = path_address("0x5aaeb").unwrap_err();
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.body["code"], 1);
    }
}
