//! The worker's narrow seams to the outside: the clock, the consumer group, the messages it
//! reads and the producer it sends through. `kafka.rs` implements them on librdkafka; the unit
//! tests implement them in memory, so that flush, commit and rebalance ordering are tested
//! without a broker. The lake needs no seam of its own: [`rade_lake::Lake`] already runs over
//! any `object_store`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;

use crate::Result;
use crate::dlq_tail::Held;

/// Wall clock and monotonic clock, read through one value so that tests can move time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (processing time, ingestion time).
    fn now_ms(&self) -> i64;
    /// A monotonic instant (ages, intervals).
    fn now(&self) -> Instant;
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// One message of a raw topic, as the worker reads it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// A partition's position in the group: the offset to read next (`None` when never committed)
/// and the metadata rade keeps with it (`dlq_tail::CommitMeta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
    pub metadata: String,
}

/// The consumer group and the cluster as the worker's decisions need them.
pub trait Group {
    /// Commits these positions, synchronously.
    fn commit(&self, positions: &[Position]) -> std::result::Result<(), KafkaError>;
    /// The committed positions of these partitions.
    fn committed(&self, partitions: &[(String, i32)]) -> std::result::Result<Vec<Position>, KafkaError>;
    /// The low and high watermarks of a partition now.
    fn watermarks(&self, topic: &str, partition: i32) -> std::result::Result<(i64, i64), KafkaError>;
    /// The end of every partition of the DLQ topic now.
    fn dlq_ends(&self) -> Result<BTreeMap<i32, i64>>;
    /// The rejects of the `wanted` source partitions found in the DLQ from `starts` to its end.
    fn read_dlq(
        &self,
        starts: &BTreeMap<i32, i64>,
        wanted: &HashSet<(String, i32)>,
    ) -> Result<HashMap<(String, i32), Held>>;
}

/// What one poll gave.
#[derive(Debug)]
pub enum Polled {
    /// A message, handed to the callback.
    Message,
    /// Nothing within the timeout.
    Idle,
    /// A consumer error (logged; the consumer goes on).
    Error(KafkaError),
}

/// Where messages come from. Rebalances happen inside `poll`, through the pipeline.
pub trait Source {
    /// Waits up to `timeout` for one message and hands it to `handle`.
    fn poll(&self, timeout: Duration, handle: &mut dyn FnMut(&Record<'_>)) -> Polled;
    /// The group the source reads for.
    fn group(&self) -> &dyn Group;
}

/// The acknowledgement of a produced record: its partition and offset, or why not.
pub type Delivery = BoxFuture<'static, std::result::Result<(i32, i64), KafkaError>>;

/// A producer: the DLQ, the alert topic and the aggregates topic go through one.
pub trait Produce: Send + Sync {
    /// Enqueues a record (waiting while the local queue is full) and returns its delivery.
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<&OwnedHeaders>,
    ) -> std::result::Result<Delivery, KafkaError>;
}
