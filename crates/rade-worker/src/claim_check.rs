//! The claim check: a DLQ value too large for the DLQ topic is kept in the lake, under
//! `_dlq/<topic>/p<partition>/o<offset>.bin`, and the DLQ record points to it.
//!
//! Kafka refuses a record larger than the topic's `max.message.bytes` (the broker's
//! `message.max.bytes` by default, about 1 MB) and librdkafka one larger than the producer's
//! `message.max.bytes` (1 000 000 bytes). A raw topic may accept larger messages than the DLQ
//! does, and such a message would otherwise stop the worker at every restart: its partition
//! would never move again. The object is written before the DLQ record is sent, so it is
//! durable before the offset that covers it is committed.

use std::time::Duration;

use bytes::Bytes;
use rade_lake::Lake;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::OwnedHeaders;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tracing::{info, warn};

use crate::{Error, Result};
use rade_kafka::headers;
use rade_kafka::{KafkaConfig, client_config};

/// librdkafka's default `message.max.bytes`.
const PRODUCER_DEFAULT_MAX: usize = 1_000_000;
/// The broker's default `message.max.bytes`, assumed when the DLQ topic cannot be described.
const BROKER_DEFAULT_MAX: usize = 1_048_588;
/// Room left under the limit for the record batch framing (61 bytes), the record's own
/// framing and a zstd frame that does not shrink its input.
const FRAMING: usize = 1024;

/// Where the DLQ's size limit is, and the lake that keeps what is beyond it.
#[derive(Clone)]
pub(crate) struct ClaimCheck {
    lake: Lake,
    runtime: Handle,
    /// The largest DLQ record (key, value and headers) that is sent as it is.
    max_record_bytes: usize,
}

impl ClaimCheck {
    /// Finds the DLQ's limit: the smaller of the producer's `message.max.bytes` and the DLQ
    /// topic's `max.message.bytes` (`topic_max` when given, else asked to the cluster).
    pub(crate) fn discover(
        kafka: &KafkaConfig,
        topic_max: Option<usize>,
        lake: Lake,
        runtime: Handle,
        timeout: Duration,
    ) -> Result<Self> {
        let producer_max = kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(PRODUCER_DEFAULT_MAX);
        let asked = match topic_max {
            Some(max) => Ok(Some(max)),
            None => topic_max_message_bytes(kafka, &runtime, timeout),
        };
        let topic_max = match asked {
            Ok(Some(max)) => max,
            Ok(None) => BROKER_DEFAULT_MAX,
            Err(e) => {
                warn!(topic = %kafka.dlq_topic, error = %e, assumed = BROKER_DEFAULT_MAX,
                    "cannot read the DLQ topic's max.message.bytes; the broker default is assumed");
                BROKER_DEFAULT_MAX
            }
        };
        let limit = producer_max.min(topic_max);
        info!(topic = %kafka.dlq_topic, limit, "DLQ records above this size keep their value in the lake");
        Ok(ClaimCheck::new(lake, runtime, limit))
    }

    /// A claim check for a DLQ that takes records of up to `limit` bytes.
    pub(crate) fn new(lake: Lake, runtime: Handle, limit: usize) -> Self {
        ClaimCheck {
            lake,
            runtime,
            max_record_bytes: limit.saturating_sub(FRAMING),
        }
    }

    /// The largest record the DLQ takes as it is (what a batch of the DLQ producer may hold).
    pub(crate) fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Whether a record of this key, value and headers goes to the DLQ as it is.
    pub(crate) fn fits(&self, key: usize, value: usize, headers: &OwnedHeaders) -> bool {
        key + value + headers_size(headers) <= self.max_record_bytes
    }

    /// Keeps `value` in the lake for the reject at `topic`/`partition`@`offset` and adds the
    /// headers that point to it. Blocks until the object is durable.
    pub(crate) fn keep(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        value: &[u8],
        headers: OwnedHeaders,
    ) -> Result<OwnedHeaders> {
        let sha256 = hex(&Sha256::digest(value));
        let size = value.len().to_string();
        let url =
            self.runtime.block_on(
                self.lake
                    .put_dlq_object(topic, partition, offset, Bytes::copy_from_slice(value)),
            )?;
        info!(topic, partition, offset, bytes = value.len(), object = %url, "DLQ value kept in the lake (claim check)");
        let h = rade_kafka::with_headers(
            headers,
            &[
                (headers::OBJECT, url.as_str()),
                (headers::OBJECT_SIZE, size.as_str()),
                (headers::OBJECT_SHA256, sha256.as_str()),
            ],
        );
        Ok(h)
    }
}

/// The size librdkafka counts for headers against `message.max.bytes`, rounded up.
fn headers_size(h: &OwnedHeaders) -> usize {
    use rdkafka::message::Headers;
    h.iter()
        .map(|x| x.key.len() + x.value.map(<[u8]>::len).unwrap_or(0) + 16)
        .sum()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The DLQ topic's `max.message.bytes`; `None` when the topic does not say.
fn topic_max_message_bytes(kafka: &KafkaConfig, runtime: &Handle, timeout: Duration) -> Result<Option<usize>> {
    let admin: AdminClient<DefaultClientContext> = kafka.create(&client_config(kafka), "creating an admin client")?;
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let resources = [ResourceSpecifier::Topic(&kafka.dlq_topic)];
    let results = runtime
        .block_on(admin.describe_configs(&resources, &opts))
        .map_err(|e| Error::kafka("describing the DLQ topic", e))?;
    let Some(result) = results.into_iter().next() else {
        return Ok(None);
    };
    let resource =
        result.map_err(|code| Error::kafka("describing the DLQ topic", rdkafka::error::KafkaError::AdminOp(code)))?;
    Ok(resource
        .get("max.message.bytes")
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.parse().ok()))
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Header;

    use super::*;

    #[test]
    fn a_record_fits_below_the_limit_less_its_framing() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let lake = Lake::open(&rade_lake::LakeLocation::Memory, &Default::default()).expect("lake");
        let check = ClaimCheck::new(lake, runtime.handle().clone(), 1_000_000);
        let h = OwnedHeaders::new().insert(Header {
            key: "k",
            value: Some("v"),
        });
        assert!(check.fits(10, 900_000, &h));
        assert!(!check.fits(10, 999_000, &h));
        assert!(!check.fits(999_000, 10, &h), "the key counts too");
    }

    #[test]
    fn the_value_is_kept_whole_and_the_headers_say_where() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let lake = Lake::open(&rade_lake::LakeLocation::Memory, &Default::default()).expect("lake");
        let check = ClaimCheck::new(lake.clone(), runtime.handle().clone(), 1000);
        let value: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let h = check
            .keep("t.raw.noise", 2, 41, &value, OwnedHeaders::new())
            .expect("kept");
        use rdkafka::message::Headers;
        let got: std::collections::BTreeMap<String, String> = h
            .iter()
            .map(|x| {
                (
                    x.key.to_owned(),
                    String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(got[headers::OBJECT], "memory:///_dlq/t.raw.noise/p2/o41.bin");
        assert_eq!(got[headers::OBJECT_SIZE], "5000");
        assert_eq!(got[headers::OBJECT_SHA256], hex(&Sha256::digest(&value)));
        let stored = runtime
            .block_on(lake.read_dlq_object("t.raw.noise", 2, 41))
            .expect("object");
        assert_eq!(stored.as_ref(), value.as_slice());
    }

    #[test]
    fn sha256_is_the_standard_one() {
        // `printf abc | sha256sum`
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
