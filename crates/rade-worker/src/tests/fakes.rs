//! In-memory stand-ins for the worker's seams, each writing what happens to one shared log,
//! so that a test can read the order of DLQ sends, lake writes and commits.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions,
};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;

use crate::Result;
use crate::dlq_tail::Held;
use crate::seams::{Clock, Delivery, Group, Polled, Position, Produce, Record, Source};

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A record sent to a topic (the DLQ).
    Sent { topic: String },
    /// Its acknowledgement awaited.
    Acked { topic: String },
    /// An object written to the lake.
    Put { path: String },
    /// Offsets committed: (topic, partition, offset).
    Commit(Vec<(String, i32, i64)>),
}

pub(crate) type Log = Arc<Mutex<Vec<Event>>>;

pub(crate) fn events(log: &Log) -> Vec<Event> {
    log.lock().expect("log").clone()
}

/// A clock that moves only when told.
pub(crate) struct FakeClock {
    base: Instant,
    elapsed_ms: AtomicU64,
    epoch_ms: i64,
}

impl FakeClock {
    pub(crate) fn new(epoch_ms: i64) -> Arc<Self> {
        Arc::new(FakeClock {
            base: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
            epoch_ms,
        })
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.elapsed_ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.epoch_ms + self.elapsed_ms.load(Ordering::SeqCst) as i64
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
    }
}

/// A group whose commits go to the log; committed positions and partition ends are given.
pub(crate) struct FakeGroup {
    pub(crate) log: Log,
    pub(crate) committed: Mutex<HashMap<(String, i32), Position>>,
    pub(crate) ends: Mutex<HashMap<(String, i32), i64>>,
    /// When set, every commit is refused with this error code.
    pub(crate) refuse_commits: Mutex<Option<rdkafka::types::RDKafkaErrorCode>>,
}

impl FakeGroup {
    pub(crate) fn new(log: &Log) -> Self {
        FakeGroup {
            log: log.clone(),
            committed: Mutex::new(HashMap::new()),
            ends: Mutex::new(HashMap::new()),
            refuse_commits: Mutex::new(None),
        }
    }

    /// The offsets committed so far, anchors of newly assigned partitions excluded.
    pub(crate) fn commits(&self) -> Vec<(String, i32, i64)> {
        events(&self.log)
            .into_iter()
            .filter_map(|e| match e {
                Event::Commit(c) => Some(c),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

impl Group for FakeGroup {
    fn commit(&self, positions: &[Position]) -> std::result::Result<(), KafkaError> {
        if let Some(code) = *self.refuse_commits.lock().expect("refuse") {
            return Err(KafkaError::ConsumerCommit(code));
        }
        let mut committed = self.committed.lock().expect("committed");
        for p in positions {
            committed.insert((p.topic.clone(), p.partition), p.clone());
        }
        self.log.lock().expect("log").push(Event::Commit(
            positions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.offset.unwrap_or(-1)))
                .collect(),
        ));
        Ok(())
    }

    fn committed(&self, partitions: &[(String, i32)]) -> std::result::Result<Vec<Position>, KafkaError> {
        let committed = self.committed.lock().expect("committed");
        Ok(partitions
            .iter()
            .map(|(t, p)| {
                committed.get(&(t.clone(), *p)).cloned().unwrap_or(Position {
                    topic: t.clone(),
                    partition: *p,
                    offset: None,
                    // As a partition committed by this rade with an empty DLQ: no anchor commit.
                    metadata: "rade.dlq.tail=".into(),
                })
            })
            .collect())
    }

    fn watermarks(&self, topic: &str, partition: i32) -> std::result::Result<(i64, i64), KafkaError> {
        let end = self
            .ends
            .lock()
            .expect("ends")
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(0);
        Ok((0, end))
    }

    fn dlq_ends(&self) -> Result<BTreeMap<i32, i64>> {
        Ok(BTreeMap::from([(0, 0)]))
    }

    fn read_dlq(&self, _: &BTreeMap<i32, i64>, _: &HashSet<(String, i32)>) -> Result<HashMap<(String, i32), Held>> {
        Ok(HashMap::new())
    }
}

/// A producer that acknowledges at once, at increasing offsets of partition 0.
pub(crate) struct FakeProducer {
    pub(crate) log: Log,
    next: AtomicU64,
}

impl FakeProducer {
    pub(crate) fn new(log: &Log) -> Arc<Self> {
        Arc::new(FakeProducer {
            log: log.clone(),
            next: AtomicU64::new(0),
        })
    }
}

impl Produce for FakeProducer {
    fn send(
        &self,
        topic: &str,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        _headers: Option<&OwnedHeaders>,
    ) -> std::result::Result<Delivery, KafkaError> {
        self.log.lock().expect("log").push(Event::Sent {
            topic: topic.to_owned(),
        });
        let offset = self.next.fetch_add(1, Ordering::SeqCst) as i64;
        let (log, topic) = (self.log.clone(), topic.to_owned());
        Ok(Box::pin(async move {
            log.lock().expect("log").push(Event::Acked { topic });
            Ok((0, offset))
        }))
    }
}

/// Messages of one partition, handed out one per poll; idle once they are all read.
pub(crate) struct FakeSource<'a> {
    pub(crate) group: &'a FakeGroup,
    pub(crate) topic: String,
    pub(crate) values: Mutex<VecDeque<(i64, Vec<u8>)>>,
}

impl Source for FakeSource<'_> {
    fn poll(&self, _timeout: Duration, handle: &mut dyn FnMut(&Record<'_>)) -> Polled {
        let next = self.values.lock().expect("values").pop_front();
        match next {
            None => Polled::Idle,
            Some((offset, value)) => {
                handle(&Record {
                    topic: &self.topic,
                    partition: 0,
                    offset,
                    key: None,
                    value: Some(&value),
                });
                Polled::Message
            }
        }
    }

    fn group(&self) -> &dyn Group {
        self.group
    }
}

/// An in-memory store that logs its writes, can refuse them, and can hold them at a gate
/// until the test opens it.
#[derive(Debug)]
pub(crate) struct LoggedStore {
    inner: InMemory,
    log: Log,
    pub(crate) refuse: AtomicBool,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

#[derive(Debug, Default)]
struct Gate {
    closed: bool,
    waiting: usize,
}

impl LoggedStore {
    pub(crate) fn new(log: &Log) -> Arc<Self> {
        Arc::new(LoggedStore {
            inner: InMemory::new(),
            log: log.clone(),
            refuse: AtomicBool::new(false),
            gate: Arc::new((Mutex::new(Gate::default()), Condvar::new())),
        })
    }

    /// From now on, writes wait until [`LoggedStore::open`].
    pub(crate) fn close_gate(&self) {
        self.gate.0.lock().expect("gate").closed = true;
    }

    pub(crate) fn open(&self) {
        self.gate.0.lock().expect("gate").closed = false;
        self.gate.1.notify_all();
    }

    /// Waits until a write is held at the gate.
    pub(crate) fn wait_for_held_write(&self) {
        let (lock, cvar) = &*self.gate;
        let mut g = lock.lock().expect("gate");
        while g.waiting == 0 {
            g = cvar.wait(g).expect("gate");
        }
    }

    /// Paths of the objects under `prefix`.
    pub(crate) async fn paths(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let mut paths: Vec<String> = self
            .inner
            .list(Some(&Path::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        paths.sort();
        paths
    }
}

impl std::fmt::Display for LoggedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoggedStore")
    }
}

#[async_trait]
impl ObjectStore for LoggedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let gate = self.gate.clone();
        tokio::task::spawn_blocking(move || pass(&gate))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "LoggedStore",
                source: Box::new(e),
            })?;
        if self.refuse.load(Ordering::SeqCst) {
            return Err(object_store::Error::PermissionDenied {
                path: location.to_string(),
                source: "the test refuses writes".into(),
            });
        }
        let put = self.inner.put_opts(location, payload, opts).await?;
        self.log.lock().expect("log").push(Event::Put {
            path: location.to_string(),
        });
        Ok(put)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Waits at the gate while it is closed, counted as held.
fn pass(gate: &(Mutex<Gate>, Condvar)) {
    let (lock, cvar) = gate;
    let mut g = lock.lock().expect("gate");
    if g.closed {
        g.waiting += 1;
        cvar.notify_all();
        while g.closed {
            g = cvar.wait(g).expect("gate");
        }
        g.waiting -= 1;
    }
}
