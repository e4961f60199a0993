use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use rade_schema::{Catalog, KindSchema};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};

/// The `[kafka]` section: where the cluster is and which topics rade uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Consumer group of the ingest workers.
    pub group_id: String,
    /// Raw topics are `<raw_topic_prefix><kind>`.
    pub raw_topic_prefix: String,
    /// Kinds to ingest; empty means every kind of the catalog.
    pub kinds: Vec<String>,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Extra librdkafka settings (security.protocol, sasl.*, ssl.*), passed through as they are;
    /// the binary resolves `file:` and `env:` values before they reach here.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: "rade-ingest".into(),
            raw_topic_prefix: "tpm.raw.".into(),
            kinds: Vec::new(),
            dlq_topic: "tpm.dlq".into(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The raw topic of a kind.
    pub fn raw_topic(&self, kind: &str) -> String {
        format!("{}{kind}", self.raw_topic_prefix)
    }

    /// The kinds the workers ingest: `kinds`, or every kind of the catalog when it is empty.
    pub fn ingested_kinds(&self, catalog: &Catalog) -> crate::Result<Vec<Arc<KindSchema>>> {
        if self.kinds.is_empty() {
            return Ok(catalog.kinds().to_vec());
        }
        self.kinds
            .iter()
            .map(|k| {
                catalog.kind(k).cloned().ok_or_else(|| crate::Error::UnknownTopic {
                    topic: self.raw_topic(k),
                    prefix: self.raw_topic_prefix.clone(),
                })
            })
            .collect()
    }
}

/// Settings shared by every client of rade: bootstrap and the pass-through properties.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// Asks the cluster for its metadata, to tell at startup whether it can be reached at all
/// (librdkafka itself retries an unreachable broker forever). Returns the broker count.
pub fn probe(kafka: &KafkaConfig, timeout: Duration) -> crate::Result<usize> {
    probe_with(
        &client_config(kafka)
            .create()
            .map_err(|e| crate::Error::kafka("creating a client", e))?,
        kafka,
        timeout,
    )
}

pub(crate) fn probe_with<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    kafka: &KafkaConfig,
    timeout: Duration,
) -> crate::Result<usize> {
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|source| crate::Error::Unreachable {
            bootstrap: kafka.bootstrap_servers.clone(),
            timeout_s: timeout.as_secs(),
            source,
        })?;
    Ok(metadata.brokers().len())
}

/// The consumer group's committed offset of every partition of `topics` that has one (what
/// the workers have made durable): compaction merges only files below it.
pub fn committed_offsets(
    kafka: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> crate::Result<std::collections::HashMap<(String, i32), i64>> {
    let consumer: BaseConsumer = client_config(kafka)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| crate::Error::kafka("creating a client", e))?;
    probe_with(&consumer, kafka, timeout)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| crate::Error::kafka("reading topic metadata", e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| crate::Error::kafka("reading committed offsets", e))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect())
}
