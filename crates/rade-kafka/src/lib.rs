//! Kafka for rade: client configuration, errors classified once, producing with delivery
//! futures, consumer statistics, and the DLQ record with every `rade.*` header name.
//!
//! [`KafkaConfig`] is the `[kafka]` section (bootstrap, topics, security, pass-through
//! librdkafka properties, secrets redacted in every error); [`client_config`] turns it into
//! librdkafka settings. [`classify`] says of any librdkafka error whether it is transient, a
//! bad record or fatal. The ingest worker that uses all this is `rade-worker`.

pub use client::{KafkaConfig, REDACTED, client_config, committed_offsets, names_a_secret, probe, probe_with};
pub use dlq::{DlqRecord, dlq_headers, with_headers};
pub use error::{Error, Result, classify};
pub use producer::{delivered, send};
pub use stats::publish_consumer_stats;

mod client;
mod dlq;
mod error;
pub mod headers;
mod producer;
mod stats;
