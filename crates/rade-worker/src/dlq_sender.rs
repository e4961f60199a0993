//! Sending rejects to the DLQ and waiting for its acknowledgements.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rade_schema::Reject;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use tracing::warn;

use crate::claim_check::ClaimCheck;
use crate::seams::{Delivery, Produce};
use crate::{Error, Result};
use rade_kafka::{DlqRecord, dlq_headers};

/// Attempts of a DLQ record that the DLQ refuses, before the worker stops.
const ATTEMPTS: u32 = 4;
/// Wait before the second attempt; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The DLQ producer of the ingest thread.
#[derive(Clone)]
pub(crate) struct DlqSender {
    producer: Arc<dyn Produce>,
    topic: String,
    claim: ClaimCheck,
}

/// A reject sent and not acknowledged yet, with what it takes to send it again.
pub(crate) struct Pending {
    delivery: Delivery,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: OwnedHeaders,
}

/// What the DLQ acknowledged of one flush.
#[derive(Debug, Default)]
pub(crate) struct Acked {
    pub(crate) count: u64,
    /// Per DLQ partition, the offset after the last record acknowledged at its first attempt:
    /// the producer keeps the order of a partition, so every record sent after these lands
    /// at or beyond it.
    pub(crate) ends: BTreeMap<i32, i64>,
}

impl DlqSender {
    pub(crate) fn new(producer: Arc<dyn Produce>, topic: String, claim: ClaimCheck) -> Self {
        DlqSender { producer, topic, claim }
    }

    /// Sends a reject. A value the DLQ topic would refuse for its size is first kept in the
    /// lake, and the record points to it with an empty value (the claim check).
    pub(crate) fn send(&self, record: &DlqRecord<'_>, reject: &Reject, topic: &Arc<str>) -> Result<Pending> {
        let mut headers = dlq_headers(record, reject);
        let mut value = record.value;
        let key_len = record.key.map_or(0, <[u8]>::len);
        if let Some(v) = value
            && !self.claim.fits(key_len, v.len(), &headers)
        {
            headers = self
                .claim
                .keep(record.topic, record.partition, record.offset, v, headers)?;
            value = None;
        }
        // librdkafka may refuse at once (a topic it knows to be invalid; a full local queue is
        // already waited out): the same attempts as for a refused delivery.
        let mut attempt = 1;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.producer.send(&self.topic, record.key, value, Some(&headers)) {
                Ok(delivery) => {
                    return Ok(Pending {
                        delivery,
                        topic: topic.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        key: record.key.map(<[u8]>::to_vec),
                        value: value.map(<[u8]>::to_vec),
                        headers,
                    });
                }
                Err(e) if attempt < ATTEMPTS => {
                    warn!(dlq = %self.topic, topic = %topic, partition = record.partition, offset = record.offset,
                        attempt, error = %e, "the DLQ refused a reject; sending it again");
                    std::thread::sleep(backoff);
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(self.refused(topic, record.partition, record.offset, attempt, e)),
            }
        }
    }

    /// Waits for every acknowledgement. A record the DLQ refuses is sent again, up to
    /// `ATTEMPTS` times with a growing backoff, whatever the error's disposition (a refusal
    /// that looks fatal, such as an invalid topic, may be a topic being created); then the
    /// worker stops, naming the DLQ topic: a reject is never skipped.
    pub(crate) async fn acknowledged(&self, pending: Vec<Pending>) -> Result<Acked> {
        let mut acked = Acked::default();
        for p in pending {
            let mut delivery = p.delivery;
            let mut attempt = 1;
            let mut backoff = FIRST_BACKOFF;
            loop {
                match delivery.await {
                    Ok((partition, offset)) => {
                        acked.count += 1;
                        if attempt == 1 {
                            let end = acked.ends.entry(partition).or_insert(0);
                            *end = (*end).max(offset + 1);
                        }
                        break;
                    }
                    Err(e) if attempt < ATTEMPTS => {
                        warn!(dlq = %self.topic, topic = %p.topic, partition = p.partition, offset = p.offset,
                            attempt, error = %e, "the DLQ refused a reject; sending it again");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                        attempt += 1;
                        delivery = self
                            .producer
                            .send(&self.topic, p.key.as_deref(), p.value.as_deref(), Some(&p.headers))
                            .map_err(|source| self.refused(&p.topic, p.partition, p.offset, attempt, source))?;
                    }
                    Err(e) => return Err(self.refused(&p.topic, p.partition, p.offset, attempt, e)),
                }
            }
        }
        Ok(acked)
    }

    fn refused(&self, topic: &str, partition: i32, offset: i64, attempts: u32, source: KafkaError) -> Error {
        rade_kafka::Error::Dlq {
            dlq: self.topic.clone(),
            attempts,
            topic: topic.to_owned(),
            partition,
            offset,
            source: Box::new(source),
        }
        .into()
    }
}
