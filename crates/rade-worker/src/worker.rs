use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use rade_lake::{DerivedFile, DerivedTable, Lake, OpenFile, Pushed, RawFile, ReplayIndex, Written, crash_point};
use rade_schema::{Catalog, DecodeLimits, Decoder, Reject, RejectReason};
use rade_telemetry::{Metrics, Table};
use rade_window::{PartitionWindows, RuleSet, WindowConfig, WindowSpec, combined_watermark};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::claim_check::ClaimCheck;
use rade_kafka::{KafkaConfig, client_config};
use rade_kafka::DlqRecord;
use crate::dlq_sender::{DlqSender, Pending};
use crate::dlq_tail::{CommitMeta, TailPlan, read_tail, tail_for};
use crate::partition::{PartitionState, WindowView};
use crate::windows::{Cmd, Runner, SealReply, is_late};
use crate::{Error, Result};

/// The `[worker]` section: when files roll, when to flush and how long to wait.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// How often the worker flushes: rolls the files that are due, saves the window state
    /// and commits what is durable.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Memory budget: when this much Arrow data is buffered, the largest open files roll
    /// early, whatever their size.
    pub flush_size: bytesize::ByteSize,
    /// A raw file rolls when its Parquet size (estimated from the files written so far)
    /// reaches this.
    pub roll_size: bytesize::ByteSize,
    /// A raw file rolls when it has been open this long (idle partitions are flushed too).
    #[serde(with = "humantime_serde")]
    pub roll_interval: Duration,
    /// Flushes being written at once; more blocks the consumer (back-pressure).
    pub max_in_flight: usize,
    /// Time allowed to reach the cluster at startup.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed after a stop request to flush, commit and leave the group.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            flush_interval: Duration::from_secs(30),
            flush_size: bytesize::ByteSize::mib(512),
            roll_size: bytesize::ByteSize::mib(128),
            roll_interval: Duration::from_secs(300),
            max_in_flight: 2,
            connect_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// When [`Worker::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhen {
    /// When the stop flag is raised (SIGTERM, Ctrl-C).
    Signal,
    /// When every assigned partition is read to its end and flushed (demo, replays, benches).
    CaughtUp,
}

/// What a run did, for the final log line and for tests.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub consumed: u64,
    pub valid: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
    pub dlq_produced: u64,
    pub replay_skipped: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    /// Sensor windows closed, all kinds and shapes together.
    pub windows_closed: u64,
    /// Alert state changes acknowledged by the alert topic.
    pub alerts: u64,
    /// Valid records behind the watermark (in the raw lake, reported as `late`).
    pub late: u64,
    /// Last committed offset per topic partition.
    pub committed: BTreeMap<(String, i32), i64>,
}

impl Summary {
    /// Every rejected record, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// One ingest worker: a consumer-group member from the raw topics to the lake and the DLQ.
pub struct Worker {
    kafka: KafkaConfig,
    config: WorkerConfig,
    catalog: Arc<Catalog>,
    limits: DecodeLimits,
    lake: Lake,
    metrics: Metrics,
    windowing: Option<Windowing>,
    /// The DLQ topic's `max.message.bytes` when known beforehand; else asked at startup.
    dlq_max_message_bytes: Option<usize>,
}

/// Windows and rules, when `[windows] enabled`.
#[derive(Debug, Clone)]
pub struct Windowing {
    pub config: WindowConfig,
    pub specs: Arc<[WindowSpec]>,
    pub rules: Arc<RuleSet>,
}

impl Windowing {
    /// Windows and rules of a configuration, checked: errors name the window, rule file or rule.
    pub fn load(config: &WindowConfig, catalog: &Catalog) -> std::result::Result<Option<Self>, rade_window::Error> {
        let specs: Arc<[WindowSpec]> = config.specs()?.into();
        if !config.enabled {
            return Ok(None);
        }
        let rules = match &config.rules_dir {
            Some(dir) => RuleSet::load(dir, catalog, &specs)?,
            None => RuleSet::embedded(catalog, &specs)?,
        };
        Ok(Some(Windowing {
            config: config.clone(),
            specs,
            rules: Arc::new(rules),
        }))
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("group", &self.kafka.group_id)
            .field("lake", &self.lake.location())
            .finish()
    }
}

type IngestConsumer = BaseConsumer<IngestContext>;

impl Worker {
    /// A worker; nothing connects before [`Worker::run`].
    pub fn new(
        kafka: KafkaConfig,
        config: WorkerConfig,
        catalog: Arc<Catalog>,
        limits: DecodeLimits,
        lake: Lake,
        metrics: Metrics,
    ) -> Self {
        Worker {
            kafka,
            config,
            catalog,
            limits,
            lake,
            metrics,
            windowing: None,
            dlq_max_message_bytes: None,
        }
    }

    /// Aggregates windows and runs rules besides filling the raw lake.
    pub fn with_windows(mut self, windowing: Option<Windowing>) -> Self {
        self.windowing = windowing;
        self
    }

    /// Takes the DLQ topic's `max.message.bytes` as given instead of asking the cluster
    /// (librdkafka's mock cluster of the demo does not answer DescribeConfigs).
    pub fn with_dlq_max_message_bytes(mut self, bytes: usize) -> Self {
        self.dlq_max_message_bytes = Some(bytes);
        self
    }

    /// The raw topics this worker subscribes to, with their decoders.
    fn decoders(&self) -> Result<HashMap<String, Decoder>> {
        let kinds = self.kafka.ingested_kinds(&self.catalog)?;
        Ok(kinds
            .into_iter()
            .map(|k| {
                (
                    self.kafka.raw_topic(&k.kind),
                    Decoder::new(self.catalog.clone(), k, self.limits),
                )
            })
            .collect())
    }

    /// Runs on the calling thread (use a blocking thread) until `stop_when` or `stop` says so;
    /// then flushes, commits and leaves the group. `runtime` runs the lake writes.
    pub fn run(self, runtime: Handle, stop_when: StopWhen, stop: Arc<AtomicBool>) -> Result<Summary> {
        let decoders = self.decoders()?;
        // Reachable first: an unreachable cluster is one clear error, not a wait per client.
        rade_kafka::probe(&self.kafka, self.config.connect_timeout)?;
        let claim = ClaimCheck::discover(
            &self.kafka,
            self.dlq_max_message_bytes,
            self.lake.clone(),
            runtime.clone(),
            self.config.connect_timeout,
        )?;
        let mut producer_config = client_config(&self.kafka);
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("compression.type", "zstd");
        if !self.kafka.properties.contains_key("batch.size") {
            // A batch of small rejects must not exceed what the DLQ topic takes either.
            producer_config.set("batch.size", claim.max_record_bytes().clamp(1, 1_000_000).to_string());
        }
        let dlq: FutureProducer = self.kafka.create(&producer_config, "creating the DLQ producer")?;

        // Windows and rules run on their own thread, fed in order by the ingest thread.
        let (win, window_thread) = match self.windowing.as_ref() {
            Some(w) => {
                // Bounded: when the window thread falls behind, the ingest thread waits for it
                // instead of queueing records without limit.
                let (tx, rx) = std::sync::mpsc::sync_channel(WINDOW_QUEUE);
                let runner = Runner::new(
                    dlq.clone(),
                    w.config.clone(),
                    self.catalog.alert().cloned(),
                    self.metrics.clone(),
                );
                let thread = std::thread::Builder::new()
                    .name("rade-windows".into())
                    .spawn(move || runner.run(rx))
                    .map_err(Error::Spawn)?;
                let handle = WinHandle {
                    tx,
                    slides: w.specs.iter().map(|s| s.slide_ms).collect(),
                    active: false,
                };
                (Some(handle), Some(thread))
            }
            None => (None, None),
        };

        let pipeline = Arc::new(Mutex::new(Pipeline {
            partitions: HashMap::new(),
            decoders,
            dlq_out: DlqSender::new(dlq.clone(), self.kafka.dlq_topic.clone(), claim),
            dlq,
            kafka: self.kafka.clone(),
            dlq_floor: BTreeMap::new(),
            pending_dlq: Vec::new(),
            win,
            dlq_chain: None,
            durable_chain: None,
            windowing: self.windowing.clone(),
            watermark: None,
            failed: false,
            in_flight: VecDeque::new(),
            lake: self.lake.clone(),
            metrics: self.metrics.clone(),
            runtime: runtime.clone(),
            config: self.config.clone(),
            first_pending_at: None,
            last_seal: Instant::now(),
            parquet_ratio: INITIAL_PARQUET_RATIO,
            summary: Summary::default(),
            tally: Tally::default(),
            fatal: None,
        }));
        let mut consumer_config = client_config(&self.kafka);
        consumer_config
            .set("group.id", &self.kafka.group_id)
            .set("client.id", format!("rade-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        // Tuning defaults that the [kafka.properties] of the config may override.
        for (key, value) in [
            // Lag per partition and broker state, for /metrics and /readyz.
            ("statistics.interval.ms", "5000"),
            // librdkafka waits 1 s before fetching again once a partition's local queue was
            // full; a worker catching up drains that queue in milliseconds and then starved
            // (measured: 1 M records read in 6 s with the default, see benches/README.md).
            ("fetch.queue.backoff.ms", "10"),
        ] {
            if !self.kafka.properties.contains_key(key) {
                consumer_config.set(key, value);
            }
        }
        let consumer: IngestConsumer = consumer_config
            .create_with_context(IngestContext {
                pipeline: pipeline.clone(),
                metrics: self.metrics.clone(),
            })
            .map_err(|e| self.kafka.client_error("creating the consumer", e))?;

        rade_kafka::probe_with(&consumer, &self.kafka, self.config.connect_timeout)?;
        let topics: Vec<String> = lock(&pipeline).decoders.keys().cloned().collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(|e| Error::kafka("subscribing to the raw topics", e))?;
        info!(group = %self.kafka.group_id, topics = topics.len(), lake = %self.lake.location(), "worker joined");

        // After a fatal error nothing more is committed: what is not durable is replayed.
        let result = poll_loop(&consumer, &pipeline, stop_when, &stop).and_then(|()| lock(&pipeline).drain(&consumer));
        // Leaving the group revokes the assignment; the revoke callback finds nothing left.
        consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && consumer.assignment().map(|a| a.count() > 0).unwrap_or(false) {
            let _ = consumer.poll(Duration::from_millis(50));
        }
        // Dropping the sender ends the window thread once it has served what it was sent.
        lock(&pipeline).win = None;
        if let Some(t) = window_thread {
            let _ = t.join();
        }
        result?;
        let mut p = lock(&pipeline);
        if let Some(e) = p.fatal.take() {
            return Err(e);
        }
        let summary = std::mem::take(&mut p.summary);
        info!(
            consumed = summary.consumed,
            valid = summary.valid,
            rejected = summary.rejected_total(),
            replay_skipped = summary.replay_skipped,
            files = summary.files_written,
            "worker stopped"
        );
        Ok(summary)
    }
}

fn lock(p: &Mutex<Pipeline>) -> MutexGuard<'_, Pipeline> {
    p.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How often size, age and end-of-input are checked while messages flow.
const CHECK_EVERY: u32 = 1024;

fn poll_loop(
    consumer: &IngestConsumer,
    pipeline: &Mutex<Pipeline>,
    stop_when: StopWhen,
    stop: &AtomicBool,
) -> Result<()> {
    let mut since_check = 0u32;
    let mut last_caught_up_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let polled = consumer.poll(Duration::from_millis(100));
        let idle = polled.is_none();
        match polled {
            None => {}
            Some(Ok(m)) => lock(pipeline).handle(&m),
            Some(Err(e)) => warn!(error = %e, "consumer error"),
        }
        since_check += 1;
        if !idle && since_check < CHECK_EVERY {
            continue;
        }
        since_check = 0;
        let mut p = lock(pipeline);
        if let Some(e) = p.fatal.take() {
            p.failed = true;
            return Err(e);
        }
        if let Err(e) = p.maybe_flush(consumer) {
            p.failed = true;
            return Err(e);
        }
        if stop_when == StopWhen::CaughtUp && idle && last_caught_up_check.elapsed() > Duration::from_millis(100) {
            last_caught_up_check = Instant::now();
            if p.caught_up(consumer) {
                info!("every assigned partition is read to its end");
                return Ok(());
            }
        }
    }
    info!("stop requested");
    Ok(())
}

/// A flush on its way to durability: the offsets to commit once its task succeeds.
struct InFlight {
    task: JoinHandle<Result<FlushOutcome>>,
    /// (topic, partition, offset to commit, position whose rejects this flush acknowledges).
    offsets: Vec<(Arc<str>, i32, i64, i64)>,
    sealed_at: Instant,
    newest_event_ms: Option<i64>,
}

struct FlushOutcome {
    /// Arrow bytes of the raw files created, and their Parquet bytes.
    raw_arrow_bytes: u64,
    raw_parquet_bytes: u64,
    dlq_acked: u64,
    /// Per DLQ partition, the offset after this flush's rejects.
    dlq_ends: BTreeMap<i32, i64>,
    alerts_acked: u64,
    windows_closed: u64,
    written: Vec<(Table, Written)>,
}

/// Which open files a seal rolls whatever their size, age and hour.
#[derive(Clone, Copy)]
enum Roll<'a> {
    /// Only those that are due.
    Due,
    /// Every one (stop, end of input).
    All,
    /// Every one of these partitions (being revoked).
    Partitions(&'a HashSet<(String, i32)>),
}

/// A write of a flush: a raw file or a file of closed windows or alerts.
enum Job {
    Raw(RawFile, arrow::record_batch::RecordBatch),
    Derived(DerivedFile, Vec<arrow::record_batch::RecordBatch>),
}

/// Everything the poll loop and the rebalance callbacks share.
struct Pipeline {
    partitions: HashMap<String, HashMap<i32, PartitionState>>,
    decoders: HashMap<String, Decoder>,
    dlq: FutureProducer,
    dlq_out: DlqSender,
    kafka: KafkaConfig,
    /// Per DLQ partition, an offset at or after which every reject this worker sends from now
    /// on lands: the end of the DLQ when the worker started, moved by each flush's
    /// acknowledgements. Commits record it, so that the next owner of a partition knows from
    /// where to look for rejects sent after the commit.
    dlq_floor: BTreeMap<i32, i64>,
    pending_dlq: Vec<Pending>,
    /// The window thread, when windows are on.
    win: Option<WinHandle>,
    /// Resolves when every flush sealed so far has its rejects acknowledged.
    dlq_chain: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Resolves when every flush sealed so far is wholly durable (files and window state).
    durable_chain: Option<tokio::sync::oneshot::Receiver<()>>,
    windowing: Option<Windowing>,
    /// Combined event-time watermark of the assigned partitions; only grows.
    watermark: Option<i64>,
    /// Set by a fatal error: nothing is committed any more, not even by the revoke that
    /// leaving the group triggers; what is not committed is replayed by the next owner.
    failed: bool,
    in_flight: VecDeque<InFlight>,
    lake: Lake,
    metrics: Metrics,
    runtime: Handle,
    config: WorkerConfig,
    first_pending_at: Option<Instant>,
    last_seal: Instant,
    /// Parquet bytes per Arrow byte of the raw files written lately, to roll on size.
    parquet_ratio: f64,
    summary: Summary,
    tally: Tally,
    fatal: Option<Error>,
}

/// Parquet bytes per Arrow byte assumed before the first file is written (zstd on sensor
/// readings measures 0.1 to 0.2).
const INITIAL_PARQUET_RATIO: f64 = 0.2;

/// Raw files of this many Arrow bytes or more in a flush update the Parquet ratio.
const RATIO_MIN_ARROW_BYTES: u64 = 256 << 10;

/// Without windows, an hour's file rolls once the partition's newest event is this far past
/// the hour (the windows' default lateness).
const DEFAULT_LATENESS_MS: i64 = 60_000;

const MS_PER_HOUR: i64 = 3_600_000;

/// Time allowed to read the DLQ back from the last commits' positions on assignment.
const DLQ_TAIL_TIMEOUT: Duration = Duration::from_secs(60);

/// Records between two reads of the wall clock in the hot loop.
const CLOCK_EVERY: u64 = 64;
/// One decode in this many is timed for `rade_decode_seconds` (scaled up).
const DECODE_SAMPLE: u64 = 16;

/// Commands (about 1 024 records each for folds) queued for the window thread at most.
const WINDOW_QUEUE: usize = 64;

/// The ingest thread's end of the window thread.
struct WinHandle {
    tx: std::sync::mpsc::SyncSender<Cmd>,
    /// Slide of every window shape, for the lateness test.
    slides: Vec<i64>,
    /// Whether anything was sent since the last seal.
    active: bool,
}

/// Counts gathered in the hot loop and published to the metrics once per check.
#[derive(Default)]
struct Tally {
    /// Records handled, for sampling.
    records: u64,
    /// The wall clock, refreshed every CLOCK_EVERY records.
    now_ms: i64,
    kinds: HashMap<String, KindTally>,
    /// Newest event time seen since the worker started.
    newest_event_ms: i64,
    replay_skipped: u64,
    decode_time: Duration,
}

#[derive(Default)]
struct KindTally {
    consumed: u64,
    valid: u64,
    late: u64,
    rejected: BTreeMap<RejectReason, u64>,
}

impl Tally {
    /// `windows`: the watermark lag comes from the windows' watermark, not the newest event.
    fn publish(&mut self, metrics: &Metrics, windows: bool) {
        for (kind, t) in self.kinds.iter_mut() {
            if t.consumed > 0 {
                metrics.records_decoded(kind, t.consumed, t.valid);
            }
            for (reason, n) in std::mem::take(&mut t.rejected) {
                metrics.rejected(kind, reason.as_str(), n);
            }
            if t.late > 0 {
                metrics.late(kind, t.late);
            }
            t.consumed = 0;
            t.valid = 0;
            t.late = 0;
        }
        metrics.replay_skipped(std::mem::take(&mut self.replay_skipped));
        if !windows && self.newest_event_ms > 0 {
            metrics.watermark_lag((chrono::Utc::now().timestamp_millis() - self.newest_event_ms) as f64 / 1000.0);
        }
        if !self.decode_time.is_zero() {
            metrics.decode_time(std::mem::take(&mut self.decode_time).as_secs_f64());
        }
    }
}

impl Pipeline {
    fn handle(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let Pipeline {
            partitions,
            dlq_out,
            pending_dlq,
            summary,
            tally,
            first_pending_at,
            fatal,
            win,
            ..
        } = self;
        let slides: &[i64] = win.as_ref().map(|w| w.slides.as_slice()).unwrap_or(&[]);
        let Some(state) = partitions.get_mut(m.topic()).and_then(|t| t.get_mut(&m.partition())) else {
            warn!(
                topic = m.topic(),
                partition = m.partition(),
                "message from a partition that is not assigned"
            );
            return;
        };
        first_pending_at.get_or_insert_with(Instant::now);
        let offset = m.offset();
        summary.consumed += 1;
        if summary.consumed % 100_000 == 0 {
            tracing::debug!(consumed = summary.consumed, "progress");
        }
        let kind = &state.decoder.kind().kind;
        if !tally.kinds.contains_key(kind) {
            tally.kinds.insert(kind.clone(), KindTally::default());
        }
        let t = tally.kinds.get_mut(kind).expect("inserted above");
        t.consumed += 1;
        // Records before the restored window state's offset are in it already: they go to
        // the lake when no file holds them, not to the windows again.
        let windows_hold = offset < state.skip_before;
        // The wall clock is read once every CLOCK_EVERY records (a few ms stale at most), and
        // one decode in DECODE_SAMPLE is timed: clock reads cost as much as a decode.
        if tally.records % CLOCK_EVERY == 0 {
            tally.now_ms = chrono::Utc::now().timestamp_millis();
        }
        tally.records += 1;
        let now_ms = tally.now_ms;
        let decoded = if tally.records % DECODE_SAMPLE == 0 {
            let started = Instant::now();
            let decoded = state.decoder.decode(m.payload(), now_ms);
            tally.decode_time += started.elapsed() * DECODE_SAMPLE as u32;
            decoded
        } else {
            state.decoder.decode(m.payload(), now_ms)
        };
        let reject = match decoded {
            Ok(row) => {
                tally.newest_event_ms = tally.newest_event_ms.max(row.observed_at_ms);
                let handled = state.push_row(&row, offset, now_ms, Instant::now);
                match handled {
                    Pushed::Buffered => {
                        summary.valid += 1;
                        t.valid += 1;
                    }
                    Pushed::AlreadyDurable => {
                        summary.replay_skipped += 1;
                        t.valid += 1;
                        tally.replay_skipped += 1;
                    }
                }
                // Replayed rows still feed the windows: the restored state does not hold them.
                let Some(view) = state.view.as_mut().filter(|_| !windows_hold) else {
                    return;
                };
                view.max_event = view.max_event.max(Some(row.observed_at_ms));
                view.last_active_ms = now_ms;
                if let Some(v) = m.payload() {
                    state.fold_bytes.extend_from_slice(v);
                    state.fold_ends.push(state.fold_bytes.len() as u32);
                }
                let closed_at = view.closed_at;
                if !is_late(row.observed_at_ms, closed_at, slides) {
                    return;
                }
                if matches!(handled, Pushed::AlreadyDurable) {
                    // Counted and reported before the file holding the row was written.
                    return;
                }
                summary.late += 1;
                t.late += 1;
                if state.dlq_holds(offset) {
                    // Reported by a run that stopped before committing it.
                    return;
                }
                Reject {
                    reason: RejectReason::Late,
                    detail: format!(
                        "event time {} is behind the watermark {}: kept in the raw lake, left out of the closed windows",
                        rade_window_time(row.observed_at_ms),
                        rade_window_time(closed_at)
                    ),
                    schema_id: Some(state.decoder.kind().id),
                }
            }
            Err(reject) => {
                *summary.rejected.entry(reject.reason).or_default() += 1;
                *t.rejected.entry(reject.reason).or_default() += 1;
                if !state.push_reject(offset) {
                    summary.replay_skipped += 1;
                    tally.replay_skipped += 1;
                    return;
                }
                reject
            }
        };
        let record = DlqRecord {
            key: m.key(),
            value: m.payload(),
            topic: m.topic(),
            partition: m.partition(),
            offset,
        };
        match dlq_out.send(&record, &reject, &state.topic) {
            Ok(pending) => pending_dlq.push(pending),
            Err(e) => {
                fatal.get_or_insert(e);
            }
        }
    }

    /// Moves the watermark, closes the windows it has passed, and publishes their alerts
    /// (and aggregates, when a topic is set). Everything published is acknowledged before
    /// the flush holding it commits.
    fn advance_windows(&mut self) {
        let Some(windowing) = self.windowing.as_ref() else {
            return;
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let progress = self
            .partitions
            .values()
            .flat_map(|t| t.values())
            .filter_map(|s| s.view.map(|v| (v.max_event, v.last_active_ms)));
        let lateness = windowing.config.lateness_ms();
        let idle = windowing.config.idle_timeout.as_millis() as i64;
        // Over the partitions assigned now: a partition that moves here behind the others
        // holds the watermark back; each partition's own close point only grows.
        self.watermark = combined_watermark(progress, now_ms, lateness, idle);
        if let Some(w) = self.watermark {
            self.metrics.watermark_lag((now_ms - w).max(0) as f64 / 1000.0);
        }
        self.send_folds(now_ms);
        let Some(watermark) = self.watermark else {
            return;
        };
        let mut moved = false;
        for v in self
            .partitions
            .values_mut()
            .flat_map(|t| t.values_mut())
            .filter_map(|s| s.view.as_mut())
        {
            if watermark > v.closed_at {
                v.closed_at = watermark;
                moved = true;
            }
        }
        if moved {
            self.send_to_windows(Cmd::Close { watermark, now_ms });
        }
    }

    /// Hands the valid records buffered since the last check to the window thread.
    fn send_folds(&mut self, now_ms: i64) {
        let mut cmds = Vec::new();
        for state in self.partitions.values_mut().flat_map(|t| t.values_mut()) {
            if state.fold_ends.is_empty() {
                continue;
            }
            cmds.push(Cmd::Fold {
                key: (state.topic.clone(), state.partition),
                bytes: std::mem::take(&mut state.fold_bytes),
                ends: std::mem::take(&mut state.fold_ends),
                now_ms,
            });
        }
        for cmd in cmds {
            self.send_to_windows(cmd);
        }
    }

    fn send_to_windows(&mut self, cmd: Cmd) {
        if let Some(win) = self.win.as_mut() {
            win.active = true;
            if win.tx.send(cmd).is_err() {
                self.fatal
                    .get_or_insert(Error::WindowThreadStopped);
            }
        }
    }

    fn assigned(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }

    fn buffered_bytes(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|t| t.values())
            .map(PartitionState::buffered_bytes)
            .sum()
    }

    /// Seals every `flush_interval` (rolling the files that are due), or at once when a file
    /// reaches its size or the buffers the memory budget; then commits what is durable.
    fn maybe_flush(&mut self, consumer: &IngestConsumer) -> Result<()> {
        self.tally.publish(&self.metrics, self.windowing.is_some());
        self.advance_windows();
        // One pass over the open files: whether there are any, and the largest.
        let largest = self
            .partitions
            .values()
            .flat_map(|t| t.values())
            .filter_map(PartitionState::largest_open_file)
            .max();
        let time = self.last_seal.elapsed() >= self.config.flush_interval
            && (largest.is_some() || self.first_pending_at.is_some());
        let big = largest.is_some_and(|b| b >= self.roll_arrow_bytes())
            || self.buffered_bytes() >= self.config.flush_size.as_u64() as usize;
        if time || big {
            self.seal(Roll::Due);
        }
        self.complete(consumer, false)?;
        while self.in_flight.len() > self.config.max_in_flight {
            self.complete_one(consumer)?;
        }
        Ok(())
    }

    /// Arrow bytes at which an open file is expected to reach `roll_size` in Parquet.
    fn roll_arrow_bytes(&self) -> usize {
        (self.config.roll_size.as_u64() as f64 / self.parquet_ratio.max(0.01)) as usize
    }

    /// Rolls the files that are due (and those `roll` forces) into one flush task: DLQ
    /// acknowledgements first, then files, then the window state; the commit follows.
    ///
    /// A file is due when it reaches `roll_size`, when it has been open `roll_interval`, when
    /// the partition's watermark has left its hour (no on-time row can come for it), or when
    /// the buffers exceed `flush_size` and it is among the largest.
    fn seal(&mut self, roll: Roll<'_>) {
        self.first_pending_at = None;
        self.last_seal = Instant::now();
        let roll_arrow = self.roll_arrow_bytes();
        let roll_interval = self.config.roll_interval;
        let lateness = self
            .windowing
            .as_ref()
            .map(|w| w.config.lateness_ms())
            .unwrap_or(DEFAULT_LATENESS_MS);
        // Over the memory budget: the largest open files roll until half of it is free.
        let mut squeezed: HashSet<(Arc<str>, i32, i64)> = HashSet::new();
        let budget = self.config.flush_size.as_u64() as usize;
        let mut buffered = self.buffered_bytes();
        if matches!(roll, Roll::Due) && buffered >= budget {
            let mut open: Vec<(usize, Arc<str>, i32, i64)> = self
                .partitions
                .values()
                .flat_map(|t| t.values())
                .flat_map(|s| {
                    s.open_files()
                        .map(|(hour, file)| (file.bytes(), s.topic.clone(), s.partition, hour))
                })
                .collect();
            open.sort_by_key(|s| std::cmp::Reverse(s.0));
            for (bytes, topic, partition, hour) in open {
                if buffered <= budget / 2 {
                    break;
                }
                buffered -= bytes;
                squeezed.insert((topic, partition, hour));
            }
        }
        let mut jobs: Vec<Job> = Vec::new();
        let mut offsets = Vec::new();
        let mut newest_event_ms = None;
        for state in self.partitions.values_mut().flat_map(|t| t.values_mut()) {
            // The partition's watermark: the windows' when they are on, else its newest event
            // less the allowed lateness.
            let watermark = match state.view {
                Some(v) => Some(v.closed_at),
                None => state.max_event_ms.map(|e| e - lateness),
            };
            let topic = state.topic.clone();
            let partition = state.partition;
            let all = match roll {
                Roll::Due => false,
                Roll::All => true,
                Roll::Partitions(set) => set.contains(&(topic.to_string(), partition)),
            };
            let due = |hour: i64, seg: &OpenFile| {
                all || seg.bytes() >= roll_arrow
                    || seg.opened().elapsed() >= roll_interval
                    || watermark.is_some_and(|w| w >= (hour + 1) * MS_PER_HOUR)
                    || squeezed.contains(&(topic.clone(), partition, hour))
            };
            if let Some(sealed) = state.seal(due) {
                jobs.extend(sealed.files.into_iter().map(|(f, b)| Job::Raw(f, b)));
                let acked = state.position().unwrap_or(sealed.next_offset);
                offsets.push((state.topic.clone(), state.partition, sealed.next_offset, acked));
                newest_event_ms = newest_event_ms.max(sealed.newest_event_ms);
            }
        }
        // The window thread's part of this flush: files of closed windows and alerts, and the
        // state of every partition whose windows changed, as of its position now.
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.send_folds(now_ms);
        let windows_active = self.win.as_ref().is_some_and(|w| w.active);
        if offsets.is_empty() && !windows_active {
            return;
        }
        let window_reply = if windows_active {
            let positions: Vec<_> = self
                .partitions
                .values()
                .flat_map(|t| t.values())
                .filter(|s| s.view.is_some())
                .filter_map(|s| s.position().map(|p| ((s.topic.clone(), s.partition), p)))
                .collect();
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.send_to_windows(Cmd::Seal {
                offsets: positions,
                reply,
            });
            if let Some(w) = self.win.as_mut() {
                w.active = false;
            }
            Some(rx)
        } else {
            None
        };
        tracing::debug!(files = jobs.len(), partitions = offsets.len(), "flush sealed");
        let dlq = std::mem::take(&mut self.pending_dlq);
        let dlq_out = self.dlq_out.clone();
        let lake = self.lake.clone();
        let earlier_acked = self.dlq_chain.take();
        let (acked_tx, acked_rx) = tokio::sync::oneshot::channel();
        self.dlq_chain = Some(acked_rx);
        let earlier_durable = self.durable_chain.take();
        let (durable_tx, durable_rx) = tokio::sync::oneshot::channel();
        self.durable_chain = Some(durable_rx);
        let task = self.runtime.spawn(async move {
            let window_part = match window_reply {
                Some(rx) => rx
                    .await
                    .map_err(|_| Error::WindowThreadStopped)?,
                None => SealReply::default(),
            };
            if let Some(e) = window_part.fatal {
                return Err(e);
            }
            let windows_closed = window_part.windows_closed;
            let outgoing = window_part.outgoing;
            let snapshots = window_part.snapshots;
            let mut jobs = jobs;
            jobs.extend(window_part.derived.into_iter().map(|(f, b)| Job::Derived(f, b)));
            // Files are written only once this flush's rejects and every earlier flush's are
            // acknowledged, so any file of a partition proves to a later replay that the
            // rejects up to its last offset are in the DLQ.
            if let Some(earlier) = earlier_acked {
                earlier
                    .await
                    .map_err(|_| Error::EarlierFlushFailed)?;
            }
            let acked = dlq_out.acknowledged(dlq).await?;
            if acked.count > 0 {
                // The rejects are in the DLQ, nothing of the flush is committed yet.
                crash_point("after-dlq");
            }
            let _ = acked_tx.send(());
            let mut alerts_acked = 0;
            for out in outgoing {
                let fail = |source| rade_kafka::Error::Publish {
                    topic: out.topic.clone(),
                    what: out.what,
                    source: Box::new(source),
                };
                match out.delivery.await {
                    Ok(Ok(_)) => alerts_acked += u64::from(out.what == "an alert"),
                    Ok(Err((e, _))) => return Err(fail(e).into()),
                    Err(_) => return Err(fail(KafkaError::Canceled).into()),
                }
            }
            // Raw files in parallel; files of closed windows and alerts only once every
            // earlier flush is durable, one at a time, alerts first: a crash leaves at most
            // one flush's derived files beyond the saved state, and its alerts are there
            // whenever any of its aggregates are.
            let (derived_jobs, raw_jobs): (Vec<Job>, Vec<Job>) =
                jobs.into_iter().partition(|j| matches!(j, Job::Derived(..)));
            let mut derived_jobs = derived_jobs;
            derived_jobs.sort_by_key(|j| match j {
                Job::Derived(f, _) => !matches!(f.table, DerivedTable::Alerts),
                Job::Raw(..) => true,
            });
            let jobs = raw_jobs;
            let written: Vec<(Table, Written, u64)> = futures::stream::iter(jobs)
                .map(|job| {
                    let lake = lake.clone();
                    async move {
                        match job {
                            Job::Raw(file, batch) => {
                                let arrow = batch.get_array_memory_size() as u64;
                                let written = lake.write_raw(&file, vec![batch]).await?;
                                crash_point("after-raw-file");
                                Ok((Table::Raw, written, arrow))
                            }
                            Job::Derived(file, batch) => {
                                let table = match file.table {
                                    DerivedTable::Aggregates { .. } => Table::Aggregates,
                                    DerivedTable::Alerts => Table::Alerts,
                                };
                                Ok::<_, Error>((table, lake.write_derived(&file, batch).await?, 0))
                            }
                        }
                    }
                })
                .buffer_unordered(2)
                .try_collect()
                .await?;
            // Parquet bytes per Arrow byte of the raw files created: the ratio rolling uses.
            let (mut raw_arrow_bytes, mut raw_parquet_bytes) = (0, 0);
            for (_, w, arrow) in &written {
                if let Written::Created { bytes } = w {
                    raw_arrow_bytes += arrow;
                    raw_parquet_bytes += bytes;
                }
            }
            let mut written: Vec<(Table, Written)> = written.into_iter().map(|(table, w, _)| (table, w)).collect();
            // The window state is saved last, and only once every earlier flush is durable:
            // a restored state never runs ahead of what the lake holds.
            if let Some(earlier) = earlier_durable {
                earlier
                    .await
                    .map_err(|_| Error::EarlierFlushFailed)?;
            }
            for job in derived_jobs {
                if let Job::Derived(file, batches) = job {
                    let table = match file.table {
                        DerivedTable::Aggregates { .. } => Table::Aggregates,
                        DerivedTable::Alerts => Table::Alerts,
                    };
                    written.push((table, lake.write_derived(&file, batches).await?));
                }
            }
            // The crash points count only flushes that write something.
            let writes = !written.is_empty() || !snapshots.is_empty();
            if writes {
                crash_point("after-files");
            }
            for (topic, partition, bytes) in snapshots {
                lake.put_state(&topic, partition, bytes).await?;
            }
            if writes {
                crash_point("after-state");
            }
            let _ = durable_tx.send(());
            Ok(FlushOutcome {
                raw_arrow_bytes,
                raw_parquet_bytes,
                dlq_acked: acked.count,
                dlq_ends: acked.ends,
                alerts_acked,
                windows_closed,
                written,
            })
        });
        self.in_flight.push_back(InFlight {
            task,
            offsets,
            sealed_at: Instant::now(),
            newest_event_ms,
        });
    }

    /// Commits the finished flushes at the head of the queue; with `wait`, all of them.
    fn complete(&mut self, consumer: &IngestConsumer, wait: bool) -> Result<()> {
        while let Some(head) = self.in_flight.front() {
            if !wait && !head.task.is_finished() {
                break;
            }
            self.complete_one(consumer)?;
        }
        Ok(())
    }

    fn complete_one(&mut self, consumer: &IngestConsumer) -> Result<()> {
        if self.failed {
            return Err(Error::Stopped);
        }
        let Some(flight) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcome = self
            .runtime
            .block_on(flight.task)
            .map_err(Error::FlushTask)
            .and_then(|o| o);
        // A flush that failed stops every later commit: its records are replayed instead.
        self.failed |= outcome.is_err();
        self.metrics
            .health()
            .set_lake_writable(!matches!(outcome, Err(Error::Lake(_))));
        let outcome = outcome?;
        // Small files carry proportionally more metadata: only sizable ones teach the ratio.
        if outcome.raw_arrow_bytes >= RATIO_MIN_ARROW_BYTES {
            let measured = outcome.raw_parquet_bytes as f64 / outcome.raw_arrow_bytes as f64;
            self.parquet_ratio = 0.5 * self.parquet_ratio + 0.5 * measured;
        }
        for (d, end) in &outcome.dlq_ends {
            let floor = self.dlq_floor.entry(*d).or_insert(*end);
            *floor = (*floor).max(*end);
        }
        self.summary.dlq_produced += outcome.dlq_acked;
        self.metrics.dlq_produced(outcome.dlq_acked);
        self.summary.alerts += outcome.alerts_acked;
        self.summary.windows_closed += outcome.windows_closed;
        for (table, w) in &outcome.written {
            if let Written::Created { bytes } = w {
                if matches!(table, Table::Raw) {
                    self.summary.files_written += 1;
                    self.summary.bytes_written += bytes;
                }
                self.metrics.lake_file(*table, *bytes);
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next, acked) in &flight.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| Error::kafka("building the commit", e))?;
            // The commit trails the position by the files still open; its metadata says up
            // to where the rejects are in the DLQ, and from where in the DLQ to look for
            // those sent after it, so that a replay does not send them again.
            let meta = CommitMeta {
                acked: Some(*acked),
                tail: Some(self.dlq_tail_of(topic, *partition, *acked)),
            };
            if let Some(mut elem) = tpl.find_partition(topic, *partition) {
                elem.set_metadata(meta.render());
            }
        }
        if tpl.count() > 0 {
            match consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
                Ok(()) => {}
                // The group is between two generations (a member joins or leaves while this
                // one stops or commits): the files are durable, only the offsets wait. The
                // next commit covers them, or the partition's next owner replays from the
                // last commit and finds the rows in the lake.
                Err(e) if rade_kafka::is_rebalance(&e) => {
                    warn!(error = %e, "offsets not committed while the group rebalances; the next commit or owner covers them");
                    return Ok(());
                }
                Err(e) => return Err(Error::kafka("committing offsets", e)),
            }
        }
        self.metrics.committed(flight.sealed_at.elapsed().as_secs_f64());
        tracing::debug!(
            seconds = flight.sealed_at.elapsed().as_secs_f64(),
            "flush durable and committed"
        );
        if let Some(t) = flight.newest_event_ms {
            self.metrics
                .end_to_end((chrono::Utc::now().timestamp_millis() - t).max(0) as f64 / 1000.0);
        }
        for (topic, partition, next, _) in flight.offsets {
            self.summary.committed.insert((topic.to_string(), partition), next);
        }
        Ok(())
    }

    /// Seals and waits for every flush, committing each. After a fatal error, only waits
    /// for the flushes still writing and commits nothing: no file of this worker lands after
    /// its partitions have moved to another member, which would list the lake without it.
    fn drain(&mut self, consumer: &IngestConsumer) -> Result<()> {
        self.drain_rolling(consumer, Roll::All)
    }

    /// [`Pipeline::drain`], rolling the open files `roll` forces and those that are due.
    fn drain_rolling(&mut self, consumer: &IngestConsumer, roll: Roll<'_>) -> Result<()> {
        if self.failed {
            while let Some(flight) = self.in_flight.pop_front() {
                let _ = self.runtime.block_on(flight.task);
            }
            return Err(Error::Stopped);
        }
        self.tally.publish(&self.metrics, self.windowing.is_some());
        self.advance_windows();
        self.seal(roll);
        self.complete(consumer, true)
    }

    fn assign(&mut self, consumer: &IngestConsumer, tpl: &TopicPartitionList) -> Result<()> {
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .map_err(|e| Error::kafka("reading committed offsets", e))?;
        info!(
            partitions = tpl.count(),
            "partitions assigned; reading what the lake already holds"
        );
        let mut listed: HashMap<String, Vec<RawFile>> = HashMap::new();
        for elem in committed.elements() {
            let topic = elem.topic().to_owned();
            let Some(decoder) = self.decoders.get(&topic).cloned() else {
                return Err(rade_kafka::Error::UnknownTopic {
                    topic,
                    prefix: String::new(),
                }
                .into());
            };
            if !listed.contains_key(&topic) {
                let files = self
                    .runtime
                    .block_on(self.lake.raw_files(&decoder.kind().kind, &topic))?;
                listed.insert(topic.clone(), files);
            }
            let start = match elem.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let files: Vec<RawFile> = listed[&topic]
                .iter()
                .filter(|f| f.partition == elem.partition())
                .cloned()
                .collect();
            tracing::debug!(topic = %topic, partition = elem.partition(), committed = ?start, lake_files = files.len(), "partition assigned");
            let (windows, skip_before) = self.restore_windows(&topic, elem.partition(), &decoder, start)?;
            // Rejects are in the DLQ below the offset the last commit's metadata gives, and below
            // the restored window state's.
            let acked = CommitMeta::parse(elem.metadata()).acked.unwrap_or(i64::MIN);
            let durable = ReplayIndex::new(&files, start.unwrap_or(0), skip_before.max(acked));
            let key: Arc<str> = topic.as_str().into();
            let view = windows.map(|w| {
                let view = WindowView {
                    closed_at: w.closed_at(),
                    max_event: w.progress().0,
                    last_active_ms: chrono::Utc::now().timestamp_millis(),
                };
                self.send_to_windows(Cmd::Assign {
                    key: (key.clone(), elem.partition()),
                    windows: Box::new(w),
                    decoder: decoder.clone(),
                });
                view
            });
            let state = PartitionState::new(key, elem.partition(), decoder, start, durable, view, skip_before);
            self.partitions
                .entry(topic)
                .or_default()
                .insert(elem.partition(), state);
        }
        self.find_dlq_rejects(consumer, &committed)?;
        self.metrics.assigned_partitions(self.assigned());
        Ok(())
    }

    /// Finds the rejects of newly assigned partitions that the DLQ holds beyond their last
    /// commit (a worker stopped after the DLQ acknowledged them and before committing), so
    /// that they are not sent again. A partition whose commit does not say where to look
    /// (never committed, or by an older rade) is committed at once with the DLQ's end.
    fn find_dlq_rejects(&mut self, consumer: &IngestConsumer, committed: &TopicPartitionList) -> Result<()> {
        let timeout = Duration::from_secs(10);
        if self.dlq_floor.is_empty() {
            // Before this worker sends anything: every reject it sends lands at or after these.
            self.dlq_floor = crate::dlq_tail::dlq_ends(self.dlq.client(), &self.kafka.dlq_topic, timeout)?;
        }
        let plan = TailPlan::new(committed, &self.dlq_floor);
        let client = self.dlq.client();
        let anchors = plan.anchors(&self.dlq_floor, |topic, partition| {
            // Never committed: the partition's beginning, where `earliest` starts anyway.
            client
                .fetch_watermarks(topic, partition, timeout)
                .map(|(low, _)| low)
                .map_err(|e| Error::kafka("reading the beginning of a partition", e))
        })?;
        if anchors.count() > 0
            && let Err(e) = consumer.commit(&anchors, rdkafka::consumer::CommitMode::Sync)
        {
            warn!(error = %e, "the DLQ position of newly assigned partitions not committed; a crash before their first commit may send rejects twice");
        }
        if plan.wanted.is_empty() {
            return Ok(());
        }
        match read_tail(&self.kafka, &plan.starts, &plan.wanted, DLQ_TAIL_TIMEOUT) {
            Ok(found) => {
                for ((topic, partition), held) in found {
                    if let Some(state) = self.partitions.get_mut(&topic).and_then(|t| t.get_mut(&partition)) {
                        info!(
                            topic,
                            partition,
                            rejects = held.len(),
                            "rejects already in the DLQ are not sent again"
                        );
                        state.dlq_held = held;
                    }
                }
            }
            Err(e) => warn!(error = %e, "rejects sent before the last stop may be sent to the DLQ again"),
        }
        Ok(())
    }

    /// The DLQ tail to commit for a partition whose rejects before `acked` are in the DLQ.
    fn dlq_tail_of(&mut self, topic: &str, partition: i32, acked: i64) -> BTreeMap<i32, i64> {
        match self.partitions.get_mut(topic).and_then(|t| t.get_mut(&partition)) {
            Some(state) => {
                // Rejects found before the acknowledged offset are covered by it from now on.
                state.dlq_held = state.dlq_held.split_off(&acked);
                tail_for(&self.dlq_floor, &state.dlq_held)
            }
            None => self.dlq_floor.clone(),
        }
    }

    /// The windows of a newly assigned partition, from the state its last owner saved. When
    /// that state is ahead of the committed offset (a crash between saving it and committing),
    /// the records in between are skipped: they are in the state and in the lake.
    fn restore_windows(
        &self,
        topic: &str,
        partition: i32,
        decoder: &Decoder,
        committed: Option<i64>,
    ) -> Result<(Option<PartitionWindows>, i64)> {
        let Some(windowing) = self.windowing.as_ref() else {
            return Ok((None, i64::MIN));
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let kind = &decoder.kind().kind;
        let forget_ms = windowing.config.forget_after.as_millis().min(i64::MAX as u128) as i64;
        let fresh = || {
            PartitionWindows::new(
                topic.into(),
                partition,
                kind,
                windowing.specs.clone(),
                &windowing.rules,
                now_ms,
            )
            .map(|w| w.with_forget_after(forget_ms))
        };
        let mut windows = fresh()?;
        let saved = self.runtime.block_on(self.lake.get_state(topic, partition))?;
        let mut at = -1;
        if let Some(bytes) = saved {
            match windows.restore(&bytes) {
                Ok(offset) => {
                    let committed = committed.unwrap_or(0);
                    if offset < committed {
                        warn!(
                            topic,
                            partition,
                            state_at = offset,
                            committed,
                            "window state older than the committed offset: records in between are missing from the open windows"
                        );
                    }
                    info!(
                        topic,
                        partition,
                        state_at = offset,
                        sensors = windows.sensors(),
                        open_windows = windows.open_windows(),
                        "window state restored"
                    );
                    at = offset;
                    // A state beyond the end of the partition belongs to another life of the
                    // topic (deleted and created again): trusting it would skip records.
                    let high = self
                        .dlq
                        .client()
                        .fetch_watermarks(topic, partition, Duration::from_secs(10))
                        .map(|(_, high)| high)
                        .map_err(|e| Error::kafka("reading the end of a partition", e))?;
                    if offset > high {
                        warn!(
                            topic,
                            partition,
                            state_at = offset,
                            end = high,
                            "window state is beyond the end of the partition; windows start empty"
                        );
                        windows = fresh()?;
                        at = -1;
                    }
                }
                Err(e) => {
                    warn!(topic, partition, error = %e, "window state not restored; windows start empty");
                    windows = fresh()?;
                }
            }
        }
        // Files of closed windows and alerts written after the saved state (a crash between
        // the two, possibly halfway through them) are deleted: the replay from the saved state
        // closes the same windows again and writes them once. Their alerts may reach the topic
        // a second time, with the same alert_id; the lake keeps them once. Without a saved
        // state nothing is deleted: files already in the lake are never trusted less than that.
        if at >= 0 {
            let since = rade_lake::day_of(windows.closed_at().max(0) - windows.longest_window_ms());
            let beyond = self.runtime.block_on(self.lake.derived_after(
                kind,
                topic,
                partition,
                at,
                windows.closed_at().max(0),
                since,
            ))?;
            for file in &beyond {
                self.runtime.block_on(self.lake.delete_derived(file))?;
            }
            if !beyond.is_empty() {
                info!(
                    topic,
                    partition,
                    files = beyond.len(),
                    "files of windows closed after the saved state deleted; they are closed again"
                );
            }
        }
        Ok((Some(windows), if at < 0 { i64::MIN } else { at }))
    }

    fn revoke(&mut self, consumer: &IngestConsumer, tpl: &TopicPartitionList) -> Result<()> {
        // What was read from a partition must be durable and committed before another
        // member can read it again. The partitions kept (a cooperative rebalance) keep their
        // open files: a rebalance does not cut every file short.
        let revoked: HashSet<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let result = self.drain_rolling(consumer, Roll::Partitions(&revoked));
        for elem in tpl.elements() {
            if let Some(t) = self.partitions.get_mut(elem.topic())
                && let Some(state) = t.remove(&elem.partition())
                && state.view.is_some()
            {
                self.send_to_windows(Cmd::Remove {
                    key: (state.topic.clone(), state.partition),
                });
            }
            self.metrics.forget_partition(elem.topic(), elem.partition());
        }
        self.metrics.assigned_partitions(self.assigned());
        info!(
            partitions = tpl.count(),
            "partitions revoked after flushing and committing"
        );
        result
    }

    /// Whether every assigned partition has been read to its high watermark and is flushed.
    fn caught_up(&mut self, consumer: &IngestConsumer) -> bool {
        if self.partitions.values().all(HashMap::is_empty) {
            return false;
        }
        // Input has paused: make what was read durable first (a no-op when nothing is pending).
        if let Err(e) = self.drain(consumer) {
            self.fatal.get_or_insert(e);
            return false;
        }
        let states: Vec<_> = self.partitions.values().flat_map(|t| t.values()).collect();
        let started = Instant::now();
        let done = states.iter().all(|s| {
            let position = s.next_offset.or(s.start_offset).unwrap_or(0);
            // The producer's own connection: the consumer's has a fetch outstanding, which holds
            // a watermark request back by up to fetch.wait.max.ms per partition.
            match self
                .dlq
                .client()
                .fetch_watermarks(&s.topic, s.partition, Duration::from_secs(5))
            {
                Ok((low, high)) => position >= high || low == high,
                Err(_) => false,
            }
        });
        tracing::debug!(done, seconds = started.elapsed().as_secs_f64(), "end of input checked");
        if done {
            // At the end of the input, a partition that never delivered a record stops
            // holding the watermark back: the others' windows close before the worker stops.
            let mut changed = false;
            for s in self.partitions.values_mut().flat_map(|t| t.values_mut()) {
                if let Some(v) = s.view.as_mut()
                    && v.max_event.is_none()
                {
                    v.last_active_ms = i64::MIN / 2;
                    changed = true;
                }
            }
            if changed && let Err(e) = self.drain(consumer) {
                self.fatal.get_or_insert(e);
                return false;
            }
        }
        done
    }
}

fn rade_window_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Runs the rebalance decisions inside the consumer's poll.
struct IngestContext {
    pipeline: Arc<Mutex<Pipeline>>,
    /// Statistics go straight to the metrics, without the pipeline's lock.
    metrics: Metrics,
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
            if let Err(e) = p.revoke(consumer, tpl) {
                p.fatal.get_or_insert(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &IngestConsumer, rebalance: &Rebalance<'_>) {
        let mut p = lock(&self.pipeline);
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(e) = p.assign(consumer, tpl) {
                    p.fatal.get_or_insert(e);
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}
