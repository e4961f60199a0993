//! The seams of `seams.rs` on librdkafka: the consumer and its rebalance callbacks, the group's
//! commits and the cluster's watermarks, and the producer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rade_kafka::KafkaConfig;
use rade_telemetry::Metrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::warn;

use crate::Result;
use crate::dlq_tail::{Held, dlq_ends, read_tail};
use crate::pipeline::{Pipeline, REQUEST_TIMEOUT, lock};
use crate::seams::{Delivery, Group, Polled, Position, Produce, Record, Source};

/// Time allowed to read the DLQ back from the last commits' positions on assignment.
const DLQ_TAIL_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) type IngestConsumer = BaseConsumer<IngestContext>;

/// A producer of librdkafka as the worker's [`Produce`].
#[derive(Clone)]
pub(crate) struct RdProducer(pub(crate) FutureProducer);

impl Produce for RdProducer {
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<&OwnedHeaders>,
    ) -> std::result::Result<Delivery, KafkaError> {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        if let Some(h) = headers {
            rec = rec.headers(h.clone());
        }
        let delivery = rade_kafka::send(&self.0, rec)?;
        Ok(Box::pin(rade_kafka::delivered(delivery)))
    }
}

/// The group as seen through the ingest consumer; watermarks and the DLQ's ends are asked on
/// the producer's connection, because the consumer's has a fetch outstanding, which holds such
/// a request back by up to `fetch.wait.max.ms` per partition.
pub(crate) struct RdGroup<'a> {
    pub(crate) consumer: &'a IngestConsumer,
    pub(crate) producer: &'a FutureProducer,
    pub(crate) kafka: &'a KafkaConfig,
}

impl Group for RdGroup<'_> {
    fn commit(&self, positions: &[Position]) -> std::result::Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in positions {
            let offset = p.offset.map_or(Offset::Invalid, Offset::Offset);
            tpl.add_partition_offset(&p.topic, p.partition, offset)?;
            if let Some(mut elem) = tpl.find_partition(&p.topic, p.partition) {
                elem.set_metadata(p.metadata.clone());
            }
        }
        self.consumer.commit(&tpl, CommitMode::Sync)
    }

    fn committed(&self, partitions: &[(String, i32)]) -> std::result::Result<Vec<Position>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = self.consumer.committed_offsets(tpl, REQUEST_TIMEOUT)?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| Position {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                offset: match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
                metadata: e.metadata().to_owned(),
            })
            .collect())
    }

    fn watermarks(&self, topic: &str, partition: i32) -> std::result::Result<(i64, i64), KafkaError> {
        self.producer
            .client()
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
    }

    fn dlq_ends(&self) -> Result<BTreeMap<i32, i64>> {
        dlq_ends(self.producer.client(), &self.kafka.dlq_topic, REQUEST_TIMEOUT)
    }

    fn read_dlq(
        &self,
        starts: &BTreeMap<i32, i64>,
        wanted: &HashSet<(String, i32)>,
    ) -> Result<HashMap<(String, i32), Held>> {
        read_tail(self.kafka, starts, wanted, DLQ_TAIL_TIMEOUT)
    }
}

/// The ingest consumer as the poll loop's [`Source`].
pub(crate) struct RdSource<'a> {
    pub(crate) group: RdGroup<'a>,
}

impl Source for RdSource<'_> {
    fn poll(&self, timeout: Duration, handle: &mut dyn FnMut(&Record<'_>)) -> Polled {
        match self.group.consumer.poll(timeout) {
            None => Polled::Idle,
            Some(Ok(m)) => {
                handle(&Record {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key(),
                    value: m.payload(),
                });
                Polled::Message
            }
            Some(Err(e)) => Polled::Error(e),
        }
    }

    fn group(&self) -> &dyn Group {
        &self.group
    }
}

/// Runs the rebalance decisions inside the consumer's poll, and publishes its statistics.
pub(crate) struct IngestContext {
    pub(crate) pipeline: Arc<Mutex<Pipeline>>,
    /// Statistics go straight to the metrics, without the pipeline's lock.
    pub(crate) metrics: Metrics,
    pub(crate) producer: FutureProducer,
    pub(crate) kafka: KafkaConfig,
}

impl IngestContext {
    fn group<'a>(&'a self, consumer: &'a IngestConsumer) -> RdGroup<'a> {
        RdGroup {
            consumer,
            producer: &self.producer,
            kafka: &self.kafka,
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for IngestContext {
    fn stats(&self, stats: rdkafka::Statistics) {
        rade_kafka::publish_consumer_stats(&stats, &self.metrics);
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &IngestConsumer, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut p = lock(&self.pipeline);
            if let Err(e) = p.revoke(&self.group(consumer), &partitions(tpl)) {
                p.fatal.get_or_insert(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &IngestConsumer, rebalance: &Rebalance<'_>) {
        let mut p = lock(&self.pipeline);
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(e) = p.assign(&self.group(consumer), &partitions(tpl)) {
                    p.fatal.get_or_insert(e);
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}
