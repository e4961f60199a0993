use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;
use std::time::Duration;

use rade_schema::{Catalog, KindSchema};

use rdkafka::ClientConfig;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};

/// The `[kafka]` section: where the cluster is and which topics rade uses.
#[derive(Clone, Deserialize, Serialize)]
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
    /// Keys of `properties` whose values are secrets although their names do not say so:
    /// the binary marks those it read from `env:` or `file:`.
    #[serde(skip)]
    pub secret_keys: BTreeSet<String>,
}

/// Words that make a property's value a secret whatever its source.
const SECRET_WORDS: [&str; 5] = ["password", "secret", "jaas", "token", "key"];

/// What replaces a secret in any text rade prints.
pub const REDACTED: &str = "[redacted]";

/// Whether a property name says its value is a secret (`sasl.password`, `ssl.key.pem`, ...).
pub fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if self.is_secret(k) { REDACTED } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("raw_topic_prefix", &self.raw_topic_prefix)
            .field("kinds", &self.kinds)
            .field("dlq_topic", &self.dlq_topic)
            .field("properties", &properties)
            .finish()
    }
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
            secret_keys: BTreeSet::new(),
        }
    }
}

impl KafkaConfig {
    /// The raw topic of a kind.
    pub fn raw_topic(&self, kind: &str) -> String {
        format!("{}{kind}", self.raw_topic_prefix)
    }

    /// Whether the value of property `key` is a secret: it came from `env:` or `file:`, or its
    /// name says so.
    pub fn is_secret(&self, key: &str) -> bool {
        self.secret_keys.contains(key) || names_a_secret(key)
    }

    /// `text` with every secret value of the properties replaced by `[redacted]`: librdkafka's
    /// error texts quote the values they refuse.
    pub fn redact(&self, text: &str) -> String {
        let mut secrets: Vec<&str> = self
            .properties
            .iter()
            .filter(|(k, v)| !v.is_empty() && self.is_secret(k))
            .map(|(_, v)| v.as_str())
            .collect();
        // The longest first, so that a secret inside another is not left half shown.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = text.to_owned();
        for s in secrets {
            out = out.replace(s, REDACTED);
        }
        out
    }

    /// Creates a client from `config`; an error's text has the secrets redacted.
    pub fn create<T: FromClientConfig>(&self, config: &ClientConfig, doing: &str) -> crate::Result<T> {
        config.create().map_err(|e| self.client_error(doing, e))
    }

    /// A client creation error with the secrets redacted.
    pub fn client_error(&self, doing: &str, e: KafkaError) -> crate::Error {
        crate::Error::Client {
            doing: doing.to_owned(),
            message: self.redact(&e.to_string()),
        }
    }

    /// Every pass-through property librdkafka refuses (an unknown name, a bad value), each
    /// with its key and without the value when it is a secret.
    pub fn check_properties(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in &self.properties {
            let mut one = ClientConfig::new();
            one.set(key, value);
            if let Err(e) = one.create_native_config() {
                let text = match e {
                    KafkaError::ClientConfig(_, desc, _, _) => desc,
                    other => other.to_string(),
                };
                let text = if self.is_secret(key) {
                    text.replace(value.as_str(), REDACTED)
                } else {
                    text
                };
                problems.push(format!("kafka.properties.{key}: {}", self.redact(&text)));
            }
        }
        problems
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
        &kafka.create(&client_config(kafka), "creating a client")?,
        kafka,
        timeout,
    )
}

pub fn probe_with<C: rdkafka::consumer::ConsumerContext>(
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
    let consumer: BaseConsumer = kafka.create(
        client_config(kafka)
            .set("group.id", &kafka.group_id)
            .set("enable.auto.commit", "false"),
        "creating a client",
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(properties: &[(&str, &str)], from_env: &[&str]) -> KafkaConfig {
        KafkaConfig {
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            secret_keys: from_env.iter().map(|k| k.to_string()).collect(),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn an_unknown_property_is_named_without_its_secret_value() {
        let c = config(&[("sasl.pasword", "hunter2-marker")], &["sasl.pasword"]);
        let problems = c.check_properties().join("\n");
        assert!(problems.contains("kafka.properties.sasl.pasword"), "{problems}");
        assert!(!problems.contains("hunter2-marker"), "{problems}");
        // librdkafka's own error, as client creation reports it, is redacted too.
        let Err(e) = c.create::<BaseConsumer>(&client_config(&c), "creating a client") else {
            panic!("an unknown property was accepted");
        };
        let text = e.to_string();
        assert!(!text.contains("hunter2-marker") && text.contains(REDACTED), "{text}");
    }

    #[test]
    fn a_bad_value_from_the_environment_is_redacted() {
        let c = config(&[("security.protocol", "marker-protocol")], &["security.protocol"]);
        let problems = c.check_properties().join("\n");
        assert!(problems.contains("kafka.properties.security.protocol"), "{problems}");
        assert!(!problems.contains("marker-protocol"), "{problems}");
        // The same value in the clear is shown: it is not a secret.
        let c = config(&[("security.protocol", "marker-protocol")], &[]);
        assert!(c.check_properties().join("\n").contains("marker-protocol"));
    }

    #[test]
    fn secret_names_are_redacted_in_debug_and_text() {
        let c = config(&[("sasl.jaas.config", "jaas-marker"), ("client.id", "me")], &[]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("jaas-marker") && debug.contains("me"), "{debug}");
        assert_eq!(c.redact("x jaas-marker y"), "x [redacted] y");
        assert!(names_a_secret("ssl.key.password") && names_a_secret("SASL.OAUTHBEARER.TOKEN"));
        assert!(!names_a_secret("bootstrap.servers"));
    }
}
