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
    pub async fn logs(&self, filter: &LogFilter) -> Result<Vec<Log>> {
        self.request::<_, Vec<Log>>("eth_getLogs", (filter.clone(),))
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

#[cfg(test)]
mod tests {
    use super::*;

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
