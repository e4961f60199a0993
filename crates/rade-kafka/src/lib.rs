//! Kafka plumbing and the ingest worker, the stage between the raw topics and the lake.
//!
//! [`Worker`] joins the consumer group on the raw topics, decodes and validates each message
//! ([`rade_schema::Decoder`]), buffers valid rows per partition and event hour, and on each
//! flush sends rejects to the DLQ, writes Parquet files ([`rade_lake::Lake`]) and only then
//! commits offsets. On assignment it reads which offsets the lake already holds, so that a
//! replay after a crash writes nothing twice; on revocation it flushes before letting go.

pub use client::{KafkaConfig, client_config, committed_offsets, probe};
pub use dlq::{DlqRecord, dlq_headers};
pub use error::{Error, Result};
pub use worker::{StopWhen, Summary, Windowing, Worker, WorkerConfig};

mod client;
mod dlq;
mod error;
mod partition;
mod windowing;
mod worker;
