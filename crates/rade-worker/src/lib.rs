//! The ingest worker, the stage between the raw topics and the lake: [`Worker`].
//!
//! It joins the consumer group on the raw topics, decodes and validates each message
//! ([`rade_schema::Decoder`]), buffers valid rows per partition and event hour, and on each
//! flush sends rejects to the DLQ, writes Parquet files ([`rade_lake::Lake`]) and only then
//! commits offsets. On assignment it reads what the lake already holds, so that a replay after
//! a crash writes nothing twice; on revocation it flushes before letting go. Windows and rules
//! ([`rade_window`]) run on a thread of their own, fed in order by the ingest thread.

pub use error::{Error, Result};
pub use worker::{StopWhen, Summary, Windowing, Worker, WorkerConfig};

pub use seams::{Clock, SystemClock};

mod claim_check;
mod commit;
mod derived;
mod dlq_sender;
mod dlq_tail;
mod error;
mod flush;
mod ingest;
mod kafka;
mod partition;
mod pipeline;
mod rebalance;
mod seams;
#[cfg(test)]
mod tests;
mod windows;
mod worker;
