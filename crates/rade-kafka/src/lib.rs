//! Kafka plumbing and the ingest worker, the stage between the raw topics and the lake.
//!
//! [`Worker`] joins the consumer group on the raw topics, decodes and validates each message
//! ([`rade_schema::Decoder`]), buffers valid rows per partition and event hour, and on each
//! flush sends rejects to the DLQ, writes Parquet files ([`rade_lake::Lake`]) and only then
//! commits offsets. On assignment it reads which offsets the lake already holds, so that a
//! replay after a crash writes nothing twice; on revocation it flushes before letting go.
//!
//! Rejects go to the DLQ with the headers of [`headers`]; a value too large for the DLQ topic
//! is kept in the lake and the DLQ record points to it (`claim_check`), and a worker assigned
//! a partition reads the DLQ back from its last commit's position so as not to send a reject
//! twice (`dlq_tail`).

pub use client::{KafkaConfig, REDACTED, client_config, committed_offsets, names_a_secret, probe};
pub use dlq::{DlqRecord, dlq_headers};
pub use error::{Error, Result};
pub use worker::{StopWhen, Summary, Windowing, Worker, WorkerConfig};

mod claim_check;
mod client;
mod dlq;
mod dlq_sender;
mod dlq_tail;
mod error;
pub mod headers;
mod partition;
mod windowing;
mod worker;
