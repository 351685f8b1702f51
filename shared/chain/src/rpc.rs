//! Typed requests on an [`EndpointPool`]: heads, block headers (batched), logs, calls and
//! balances. Each goes through the pool's retry and failover policy; a `null` where a value is
//! required (a block the node says it does not have) is an invalid answer, retried elsewhere.

use alloy::primitives::{Address, Bytes, B256, U256, U64};
use alloy::providers::Provider;
use alloy::rpc::client::BatchRequest;
use alloy::rpc::types::Log;
use alloy::transports::RpcError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{EndpointPool, Result};

/// The parts of a block header the watcher uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockHeader {
    /// Block number.
    pub number: U64,
    /// Block hash.
    pub hash: B256,
    /// Parent block hash.
    pub parent_hash: B256,
    /// Seconds since the epoch.
    pub timestamp: U64,
}

impl BlockHeader {
    /// Block number as `u64`.
    pub fn num(&self) -> u64 {
        self.number.to::<u64>()
    }
}

/// The parts of a transaction receipt Steward reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Transaction hash.
    pub transaction_hash: B256,
    /// Block it was mined in.
    pub block_number: U64,
    /// 1 success, 0 reverted.
    pub status: U64,
    /// Gas used.
    pub gas_used: U64,
    /// Effective price paid per gas.
    #[serde(default)]
    pub effective_gas_price: Option<U256>,
    /// Logs emitted.
    pub logs: Vec<Log>,
}

impl Receipt {
    /// Whether the transaction succeeded.
    pub fn success(&self) -> bool {
        self.status.to::<u64>() == 1
    }
}

/// Which block a state call reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRef {
    /// The newest block.
    Latest,
    /// By number (may change under a reorg).
    Number(u64),
    /// Exactly this block (EIP-1898), failing if it is not canonical.
    Hash(B256),
}

impl BlockRef {
    fn to_json(self) -> Value {
        match self {
            BlockRef::Latest => json!("latest"),
            BlockRef::Number(n) => json!(format!("{n:#x}")),
            BlockRef::Hash(h) => json!({ "blockHash": h, "requireCanonical": true }),
        }
    }
}

/// An `eth_getLogs` filter over a block range.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFilter {
    /// First block, inclusive (hex quantity on the wire).
    #[serde(serialize_with = "hex_quantity")]
    pub from_block: u64,
    /// Last block, inclusive.
    #[serde(serialize_with = "hex_quantity")]
    pub to_block: u64,
    /// Emitting contracts (any of).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<Address>,
    /// `topics[0]` alternatives (event selectors); empty for any.
    #[serde(serialize_with = "topic0s")]
    pub topics: Vec<B256>,
}

fn hex_quantity<S: serde::Serializer>(n: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{n:#x}"))
}

fn topic0s<S: serde::Serializer>(t: &[B256], s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    if t.is_empty() {
        return s.serialize_seq(Some(0))?.end();
    }
    let mut seq = s.serialize_seq(Some(1))?;
    seq.serialize_element(t)?;
    seq.end()
}

impl EndpointPool {
    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64> {
        let n: U64 = self.request("eth_blockNumber", ()).await?;
        Ok(n.to::<u64>())
    }

    /// The header of the block tagged `tag` (`latest`, `safe`, `finalized`).
    pub async fn header_by_tag(&self, tag: &'static str) -> Result<BlockHeader> {
        self.request::<_, BlockHeader>("eth_getBlockByNumber", (tag, false))
            .await
    }

    /// The header of block `number`.
    pub async fn header(&self, number: u64) -> Result<BlockHeader> {
        self.request::<_, BlockHeader>("eth_getBlockByNumber", (format!("{number:#x}"), false))
            .await
    }

    /// Headers of `from..=to`, in order, in one JSON-RPC batch per `chunk` blocks. A block the
    /// endpoint does not have (`null`) fails the batch, which is retried on another endpoint.
    pub async fn headers(&self, from: u64, to: u64) -> Result<Vec<BlockHeader>> {
        const CHUNK: u64 = 200;
        let mut out = Vec::with_capacity((to.saturating_sub(from) + 1) as usize);
        let mut start = from;
        while start <= to {
            let end = to.min(start + CHUNK - 1);
            let part = self
                .call(|provider| async move {
                    let mut batch = BatchRequest::new(provider.client());
                    let mut waiters = Vec::with_capacity((end - start + 1) as usize);
                    for n in start..=end {
                        waiters.push(batch.add_call::<_, Option<BlockHeader>>(
                            "eth_getBlockByNumber",
                            &(format!("{n:#x}"), false),
                        )?);
                    }
                    batch.send().await?;
                    let mut headers = Vec::with_capacity(waiters.len());
                    for w in waiters {
                        match w.await? {
                            Some(h) => headers.push(h),
                            None => return Err(RpcError::NullResp),
                        }
                    }
                    Ok(headers)
                })
                .await?;
            out.extend(part);
            start = end + 1;
        }
        Ok(out)
    }

    /// `eth_getLogs`. A provider limit comes back as [`crate::ChainError::RangeTooLarge`].
    ///
    /// On an HTTP endpoint the answer is read straight from the response body into logs
    /// ([`http_logs`]); alloy's transport first copies the whole `result` (tens of MB for a
    /// catch-up's range) into a separate buffer, checking it, then parses that copy.
    pub async fn logs(&self, filter: &LogFilter) -> Result<Vec<Log>> {
        self.call_conn(|c| {
            let filter = filter.clone();
            async move {
                match c.http {
                    Some((client, url)) => http_logs(&client, url, &filter).await,
                    None => c
                        .provider
                        .raw_request::<_, Logs>("eth_getLogs".into(), (filter,))
                        .await
                        .map(|l| l.0),
                }
            }
        })
        .await
    }

    /// `eth_call` of `data` on `to` at `block`.
    pub async fn eth_call(&self, to: Address, data: Bytes, block: BlockRef) -> Result<Bytes> {
        let tx = json!({ "to": to, "data": data });
        self.request::<_, Bytes>("eth_call", (tx, block.to_json()))
            .await
    }

    /// Code at `address` at the latest block (empty for an account without code).
    pub async fn code(&self, address: Address) -> Result<Bytes> {
        self.request::<_, Bytes>("eth_getCode", (address, "latest"))
            .await
    }

    /// `eth_getTransactionCount` of `account` at `latest` or `pending`.
    pub async fn transaction_count(&self, account: Address, pending: bool) -> Result<u64> {
        let tag = if pending { "pending" } else { "latest" };
        self.request::<_, U64>("eth_getTransactionCount", (account, tag))
            .await
            .map(|n| n.to::<u64>())
    }

    /// `eth_sendRawTransaction` of a signed, EIP-2718 encoded transaction. A node that
    /// already has it answers with its hash or with "already known"; both are success.
    pub async fn send_raw_transaction(&self, raw: Bytes, hash: B256) -> Result<B256> {
        match self
            .request::<_, B256>("eth_sendRawTransaction", (raw,))
            .await
        {
            // "already known" is classified as a transaction refusal (or, with an
            // invalid-params code, as a rejection); never as a server error.
            Err(crate::ChainError::TxRefused { message, .. })
            | Err(crate::ChainError::Rejected { message, .. })
                if message.to_ascii_lowercase().contains("already known") =>
            {
                Ok(hash)
            }
            other => other,
        }
    }

    /// `eth_getTransactionReceipt`; `None` while the transaction is not mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<Receipt>> {
        self.request::<_, Option<Receipt>>("eth_getTransactionReceipt", (hash,))
            .await
    }

    /// Whether the node knows the transaction (mined or in its pool).
    pub async fn transaction_known(&self, hash: B256) -> Result<bool> {
        self.request::<_, Option<Value>>("eth_getTransactionByHash", (hash,))
            .await
            .map(|t| t.is_some())
    }

    /// `eth_estimateGas` of a call from `from`, against the latest block (not the pending
    /// one, where a transaction of the same sender may already have changed the state).
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        data: Bytes,
        value: U256,
    ) -> Result<u64> {
        let tx = json!({ "from": from, "to": to, "data": data, "value": value });
        self.request::<_, U64>("eth_estimateGas", (tx, "latest"))
            .await
            .map(|n| n.to::<u64>())
    }

    /// The base fee per gas of the latest block (zero before London).
    pub async fn base_fee(&self) -> Result<u128> {
        let block = self
            .request::<_, Value>("eth_getBlockByNumber", ("latest", false))
            .await?;
        Ok(block
            .get("baseFeePerGas")
            .and_then(Value::as_str)
            .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0))
    }

    /// Native balance of `account` at `block`.
    pub async fn balance(&self, account: Address, block: BlockRef) -> Result<U256> {
        self.request::<_, U256>("eth_getBalance", (account, block.to_json()))
            .await
    }
}

/// `eth_getLogs` as one JSON-RPC request over HTTP, its answer parsed from the body in one
/// pass. Failures take the shapes alloy's HTTP transport gives them (HTTP status with body,
/// JSON-RPC error, `null` result, undecodable body), so the pool classifies them the same.
async fn http_logs(
    client: &reqwest::Client,
    url: url::Url,
    filter: &LogFilter,
) -> alloy::transports::TransportResult<Vec<Log>> {
    use alloy::rpc::json_rpc::ErrorPayload;
    use alloy::transports::TransportErrorKind;

    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        result: Option<Logs>,
        #[serde(default)]
        error: Option<ErrorPayload>,
    }
    let request = json!({"jsonrpc": "2.0", "id": 0, "method": "eth_getLogs", "params": [filter]});
    let body = serde_json::to_vec(&request).map_err(RpcError::ser_err)?;
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(TransportErrorKind::custom)?;
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) if !status.is_success() => {
            return Err(TransportErrorKind::http_error(
                status.as_u16(),
                format!("<failed to read the body: {e}>"),
            ))
        }
        Err(e) => return Err(TransportErrorKind::custom(e)),
    };
    let excerpt = || String::from_utf8_lossy(&bytes[..bytes.len().min(1000)]).into_owned();
    if !status.is_success() {
        // As alloy: an error status whose body is a JSON-RPC error is that error (a provider
        // refusing a range with HTTP 400 must still be a range refusal, to be split).
        return match serde_json::from_slice::<Answer>(&bytes) {
            Ok(Answer {
                error: Some(error), ..
            }) => Err(RpcError::ErrorResp(error)),
            _ => Err(TransportErrorKind::http_error(status.as_u16(), excerpt())),
        };
    }
    let answer: Answer =
        serde_json::from_slice(&bytes).map_err(|e| RpcError::deser_err(e, excerpt()))?;
    match (answer.error, answer.result) {
        (Some(error), _) => Err(RpcError::ErrorResp(error)),
        (None, Some(logs)) => Ok(logs.0),
        (None, None) => Err(RpcError::NullResp),
    }
}

/// An `eth_getLogs` answer, read into alloy's [`Log`] field by field. Alloy's own
/// `Deserialize` for `Log` goes through serde's `flatten`, which buffers every log object
/// into an intermediate tree first: for a catch-up reading ~40,000 logs per answer that was
/// about half the parsing time. Same result and strictness (a test compares them): unknown
/// fields are skipped; `address`, `topics`, `data`, `blockNumber`, `transactionIndex` and
/// `logIndex` are required (the last three may be `null`, for a pending log).
#[derive(Debug)]
struct Logs(Vec<Log>);

impl<'de> Deserialize<'de> for Logs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Seq;
        impl<'de> serde::de::Visitor<'de> for Seq {
            type Value = Vec<Log>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of logs")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(OneLog(log)) = seq.next_element()? {
                    out.push(log);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Seq).map(Logs)
    }
}

struct OneLog(Log);

impl<'de> Deserialize<'de> for OneLog {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum Field {
            Address,
            Topics,
            Data,
            BlockHash,
            BlockNumber,
            BlockTimestamp,
            TransactionHash,
            TransactionIndex,
            LogIndex,
            Removed,
            #[serde(other)]
            Other,
        }
        struct Map;
        impl<'de> serde::de::Visitor<'de> for Map {
            type Value = Log;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a log object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Log, A::Error> {
                use serde::de::Error;
                let quantity = |q: Option<U64>| q.map(|q| q.to::<u64>());
                let (mut address, mut topics, mut data) = (None, None, None);
                // Present (possibly `null`), as alloy requires of these three.
                let (mut number, mut tx_index, mut index) = (false, false, false);
                let mut log = Log::default();
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Address => address = Some(map.next_value::<Address>()?),
                        Field::Topics => topics = Some(map.next_value::<Vec<B256>>()?),
                        Field::Data => data = Some(map.next_value::<Bytes>()?),
                        Field::BlockHash => log.block_hash = map.next_value()?,
                        Field::BlockNumber => {
                            log.block_number = quantity(map.next_value()?);
                            number = true;
                        }
                        Field::BlockTimestamp => log.block_timestamp = quantity(map.next_value()?),
                        Field::TransactionHash => log.transaction_hash = map.next_value()?,
                        Field::TransactionIndex => {
                            log.transaction_index = quantity(map.next_value()?);
                            tx_index = true;
                        }
                        Field::LogIndex => {
                            log.log_index = quantity(map.next_value()?);
                            index = true;
                        }
                        Field::Removed => log.removed = map.next_value()?,
                        Field::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                for (present, name) in [
                    (number, "blockNumber"),
                    (tx_index, "transactionIndex"),
                    (index, "logIndex"),
                ] {
                    if !present {
                        return Err(A::Error::missing_field(name));
                    }
                }
                log.inner = alloy::primitives::Log::new_unchecked(
                    address.ok_or_else(|| A::Error::missing_field("address"))?,
                    topics.ok_or_else(|| A::Error::missing_field("topics"))?,
                    data.ok_or_else(|| A::Error::missing_field("data"))?,
                );
                Ok(log)
            }
        }
        d.deserialize_map(Map).map(OneLog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_read_as_alloy_reads_them() {
        let answer = json!([
            {
                "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
                "topics": [
                    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
                    "0x000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266"
                ],
                "data": "0x00000000000000000000000000000000000000000000000000000000000003e8",
                "blockHash": "0x1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809",
                "blockNumber": "0x2a",
                "blockTimestamp": "0x6553f100",
                "transactionHash": "0x0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "transactionIndex": "0x0",
                "logIndex": "0x13",
                "removed": false,
                "somethingNew": {"a": [1, 2]}
            },
            {
                "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
                "topics": [],
                "data": "0x",
                "blockHash": null,
                "blockNumber": null,
                "transactionHash": null,
                "transactionIndex": null,
                "logIndex": null,
                "removed": true
            }
        ])
        .to_string();
        let ours = serde_json::from_str::<Logs>(&answer).unwrap().0;
        let alloys: Vec<Log> = serde_json::from_str(&answer).unwrap();
        assert_eq!(ours, alloys);
        assert_eq!(ours[0].log_index, Some(19));
        assert_eq!(ours[0].block_timestamp, Some(0x6553f100));
        assert!(ours[1].removed);

        let without_index = json!([{"address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "topics": [], "data": "0x", "blockNumber": "0x1", "transactionIndex": "0x0"}])
        .to_string();
        let err = serde_json::from_str::<Logs>(&without_index).unwrap_err();
        assert!(
            err.to_string().contains("missing field `logIndex`"),
            "{err}"
        );
        assert!(
            serde_json::from_str::<Vec<Log>>(&without_index).is_err(),
            "alloy too"
        );
        let without_data = json!([{"address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "topics": [], "blockNumber": null, "transactionIndex": null, "logIndex": null}]);
        let err = serde_json::from_str::<Logs>(&without_data.to_string()).unwrap_err();
        assert!(err.to_string().contains("missing field `data`"), "{err}");
        let bad_hash = json!([{"address": "0x5fbdb2315678afecb367f032d93f642f64180aa3", "topics": ["0x12"], "data": "0x"}]);
        assert!(serde_json::from_str::<Logs>(&bad_hash.to_string()).is_err());
    }

    #[test]
    fn filter_serialises_as_json_rpc_expects() {
        let f = LogFilter {
            from_block: 16,
            to_block: 255,
            address: vec![Address::repeat_byte(1)],
            topics: vec![B256::repeat_byte(2)],
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["fromBlock"], "0x10");
        assert_eq!(v["toBlock"], "0xff");
        assert_eq!(v["topics"][0][0], format!("{}", B256::repeat_byte(2)));
        let any = LogFilter {
            address: vec![],
            topics: vec![],
            ..f
        };
        let v = serde_json::to_value(&any).unwrap();
        assert!(v.get("address").is_none());
        assert_eq!(v["topics"], json!([]));
    }
}
