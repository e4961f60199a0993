//! [`Worker`]: its configuration, its wiring to Kafka, and the poll loop with its stop
//! conditions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rade_kafka::{KafkaConfig, client_config};
use rade_lake::Lake;
use rade_schema::{Catalog, DecodeLimits, Decoder, RejectReason};
use rade_telemetry::Metrics;
use rade_window::{RuleSet, WindowConfig, WindowSpec};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tracing::{info, warn};

use crate::claim_check::ClaimCheck;
use crate::dlq_sender::DlqSender;
use crate::kafka::{IngestConsumer, IngestContext, RdGroup, RdProducer, RdSource};
use crate::pipeline::{Parts, Pipeline, lock};
use crate::seams::{Clock, Polled, Source, SystemClock};
use crate::windows::spawn_windows;
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
        let producer: FutureProducer = self.kafka.create(&producer_config, "creating the DLQ producer")?;
        let produce: Arc<RdProducer> = Arc::new(RdProducer(producer.clone()));
        let dlq_out = DlqSender::new(produce.clone(), self.kafka.dlq_topic.clone(), claim);

        // Windows and rules run on their own thread, fed in order by the ingest thread.
        let (win, window_thread) = match self.windowing.as_ref() {
            Some(w) => {
                let (handle, thread) =
                    spawn_windows(w, produce.clone(), dlq_out.clone(), &self.catalog, &self.metrics)?;
                (Some(handle), Some(thread))
            }
            None => (None, None),
        };

        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let pipeline = Arc::new(Mutex::new(Pipeline::new(Parts {
            decoders,
            dlq_out,
            win,
            windowing: self.windowing.clone(),
            lake: self.lake.clone(),
            group: self.kafka.group_id.as_str().into(),
            metrics: self.metrics.clone(),
            runtime,
            clock,
            config: self.config.clone(),
        })));
        let consumer = self.consumer(&pipeline, &producer)?;
        rade_kafka::probe_with(&consumer, &self.kafka, self.config.connect_timeout)?;
        let topics: Vec<String> = lock(&pipeline).decoders.keys().cloned().collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(|e| Error::kafka("subscribing to the raw topics", e))?;
        info!(group = %self.kafka.group_id, topics = topics.len(), lake = %self.lake.location(), "worker joined");

        let source = RdSource {
            group: RdGroup {
                consumer: &consumer,
                producer: &producer,
                kafka: &self.kafka,
            },
        };
        let result = run_loop(&source, &pipeline, stop_when, &stop);
        // Leaving the group revokes the assignment; the revoke callback finds nothing left.
        consumer.unsubscribe();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline && consumer.assignment().map(|a| a.count() > 0).unwrap_or(false) {
            let _ = consumer.poll(Duration::from_millis(50));
        }
        // Dropping the sender ends the window thread once it has served what it was sent.
        lock(&pipeline).win = None;
        if let Some(t) = window_thread {
            let _ = t.join();
        }
        let summary = result?;
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

    /// The ingest consumer: manual commits of what is durable only, cooperative rebalancing.
    fn consumer(&self, pipeline: &Arc<Mutex<Pipeline>>, producer: &FutureProducer) -> Result<IngestConsumer> {
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
        consumer_config
            .create_with_context(IngestContext {
                pipeline: pipeline.clone(),
                metrics: self.metrics.clone(),
                producer: producer.clone(),
                kafka: self.kafka.clone(),
            })
            .map_err(|e| self.kafka.client_error("creating the consumer", e).into())
    }
}

/// How often size, age and end-of-input are checked while messages flow fast.
const CHECK_EVERY: u32 = 1024;

/// And how often at the least while they trickle in: the windows see the time (and close
/// what is due, publishing its alerts) this often whatever the rate of messages.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The clock is read every this many messages to honour `CHECK_INTERVAL`.
const CLOCK_EVERY: u32 = 16;

/// The poll loop: hands each message to the pipeline, and every `CHECK_EVERY` messages, every
/// `CHECK_INTERVAL` or when input pauses, advances the windows, flushes what is due and
/// commits what is durable; stops on `stop`, or
/// with [`StopWhen::CaughtUp`] once every assigned partition is read to its end and durable.
/// Then drains: everything read is made durable and committed, unless a fatal error came
/// first, after which nothing more is committed (what is not durable is replayed).
pub(crate) fn run_loop(
    source: &dyn Source,
    pipeline: &Mutex<Pipeline>,
    stop_when: StopWhen,
    stop: &AtomicBool,
) -> Result<Summary> {
    let group = source.group();
    poll(source, pipeline, stop_when, stop).and_then(|()| lock(pipeline).drain(group))?;
    let mut p = lock(pipeline);
    if let Some(e) = p.fatal.take() {
        return Err(e);
    }
    Ok(std::mem::take(&mut p.summary))
}

fn poll(source: &dyn Source, pipeline: &Mutex<Pipeline>, stop_when: StopWhen, stop: &AtomicBool) -> Result<()> {
    let group = source.group();
    let clock = lock(pipeline).clock.clone();
    let mut since_check = 0u32;
    let mut last_check = clock.now();
    let mut last_caught_up_check = last_check;
    while !stop.load(Ordering::Relaxed) {
        let polled = source.poll(Duration::from_millis(100), &mut |m| lock(pipeline).handle(m));
        let idle = matches!(polled, Polled::Idle);
        if let Polled::Error(e) = polled {
            warn!(error = %e, "consumer error");
        }
        since_check += 1;
        let timed = since_check.is_multiple_of(CLOCK_EVERY)
            && clock.now().saturating_duration_since(last_check) >= CHECK_INTERVAL;
        if !idle && !timed && since_check < CHECK_EVERY {
            continue;
        }
        since_check = 0;
        let now = clock.now();
        last_check = now;
        let mut p = lock(pipeline);
        if let Some(e) = p.fatal.take() {
            p.failed = true;
            return Err(e);
        }
        if let Err(e) = p.maybe_flush(group) {
            p.failed = true;
            return Err(e);
        }
        if stop_when == StopWhen::CaughtUp
            && idle
            && now.saturating_duration_since(last_caught_up_check) > Duration::from_millis(100)
        {
            last_caught_up_check = now;
            if p.caught_up(group) {
                info!("every assigned partition is read to its end");
                return Ok(());
            }
        }
    }
    info!("stop requested");
    Ok(())
}
