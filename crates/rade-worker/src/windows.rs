//! The window thread: folds valid records into the partitions' windows, closes them when the
//! ingest thread moves the watermark, publishes alerts, and hands each flush its files of
//! closed windows and alerts and the state to save.
//!
//! The ingest thread only copies each valid record's bytes into a per-partition buffer and
//! judges lateness against the watermark it last sent; folding, closing, the DataFusion rules
//! and the Arrow building run here, on another core. Commands arrive in order on one channel:
//! records are folded before a later close, and a seal sees everything sent before it, so the
//! window thread's lateness is exactly the ingest thread's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use rade_lake::{DerivedFile, DerivedTable, day_of};
use rade_schema::{Decoder, KindSchema};
use rade_telemetry::Metrics;
use rade_window::{Alert, AlertFormat, ClosedWindows, PartitionWindows, WindowConfig, alerts_batch};
use rdkafka::message::{Header, OwnedHeaders};
use tracing::{info, warn};

use crate::Error;
use crate::seams::{Delivery, Produce};

pub(crate) type Key = (Arc<str>, i32);

/// Commands (about 1 024 records each for folds) queued for the window thread at most.
pub(crate) const WINDOW_QUEUE: usize = 64;

/// The ingest thread's end of the window thread.
pub(crate) struct WinHandle {
    pub(crate) tx: std::sync::mpsc::SyncSender<Cmd>,
    /// Slide of every window shape, for the lateness test.
    pub(crate) slides: Vec<i64>,
    /// Whether anything was sent since the last seal.
    pub(crate) active: bool,
}

/// A message to the alert or aggregates topic that must be acknowledged before the flush commits.
pub(crate) struct Outgoing {
    pub(crate) delivery: Delivery,
    pub(crate) topic: String,
    pub(crate) what: &'static str,
}

pub(crate) enum Cmd {
    Assign {
        key: Key,
        windows: Box<PartitionWindows>,
        decoder: Decoder,
    },
    Remove {
        key: Key,
    },
    /// Valid records of one partition: `bytes` holds their values back to back, `ends` where
    /// each one ends.
    Fold {
        key: Key,
        bytes: Vec<u8>,
        ends: Vec<u32>,
        now_ms: i64,
    },
    Close {
        /// Per partition: a partition that moved here behind the others closes later.
        watermark: i64,
        now_ms: i64,
    },
    /// Everything of each partition up to its offset, for one flush.
    Seal {
        offsets: Vec<(Key, i64)>,
        reply: tokio::sync::oneshot::Sender<SealReply>,
    },
}

/// What a flush writes and waits for besides the raw files.
#[derive(Default)]
pub(crate) struct SealReply {
    pub(crate) derived: Vec<(DerivedFile, Vec<RecordBatch>)>,
    pub(crate) snapshots: Vec<(Arc<str>, i32, Vec<u8>)>,
    pub(crate) outgoing: Vec<Outgoing>,
    pub(crate) windows_closed: u64,
    pub(crate) fatal: Option<Error>,
}

struct Slot {
    windows: Box<PartitionWindows>,
    decoder: Decoder,
    closed: Vec<ClosedWindows>,
    alerts: Vec<Alert>,
    closed_at: i64,
    changed: bool,
    saved_at: Option<i64>,
}

pub(crate) struct Runner {
    slots: HashMap<Key, Slot>,
    producer: Arc<dyn Produce>,
    config: WindowConfig,
    alert_schema: Option<Arc<KindSchema>>,
    metrics: Metrics,
    outgoing: Vec<Outgoing>,
    windows_closed: u64,
    fatal: Option<Error>,
}

impl Runner {
    pub(crate) fn new(
        producer: Arc<dyn Produce>,
        config: WindowConfig,
        alert_schema: Option<Arc<KindSchema>>,
        metrics: Metrics,
    ) -> Self {
        Runner {
            slots: HashMap::new(),
            producer,
            config,
            alert_schema,
            metrics,
            outgoing: Vec::new(),
            windows_closed: 0,
            fatal: None,
        }
    }

    /// Serves commands until the ingest thread drops its sender.
    pub(crate) fn run(mut self, rx: std::sync::mpsc::Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Cmd::Assign { key, windows, decoder } => {
                    let closed_at = windows.closed_at();
                    self.slots.insert(
                        key,
                        Slot {
                            windows,
                            decoder,
                            closed: Vec::new(),
                            alerts: Vec::new(),
                            closed_at,
                            changed: false,
                            saved_at: None,
                        },
                    );
                }
                Cmd::Remove { key } => {
                    self.slots.remove(&key);
                }
                Cmd::Fold {
                    key,
                    bytes,
                    ends,
                    now_ms,
                } => {
                    let Some(slot) = self.slots.get_mut(&key) else {
                        continue;
                    };
                    let mut start = 0usize;
                    for &end in &ends {
                        let value = &bytes[start..end as usize];
                        start = end as usize;
                        // Validated by the ingest thread already; decoding again is cheaper
                        // than shipping decoded rows across threads.
                        if let Ok(row) = slot.decoder.decode(Some(value), now_ms) {
                            slot.windows.observe(&row, now_ms);
                        }
                    }
                    slot.changed |= !ends.is_empty();
                    self.take_alerts(&key);
                }
                Cmd::Close { watermark, now_ms } => {
                    let keys: Vec<Key> = self.slots.keys().cloned().collect();
                    for key in keys {
                        self.close(&key, watermark, now_ms);
                    }
                }
                Cmd::Seal { offsets, reply } => {
                    let mut out = SealReply::default();
                    for (key, next) in offsets {
                        self.take_alerts(&key);
                        let Some(slot) = self.slots.get_mut(&key) else {
                            continue;
                        };
                        if !slot.changed && slot.saved_at == Some(next) {
                            continue;
                        }
                        out.derived.extend(derived_files(&key, slot, next));
                        match slot.windows.snapshot(next) {
                            Ok(bytes) => out.snapshots.push((key.0.clone(), key.1, bytes)),
                            Err(e) => {
                                out.fatal.get_or_insert(Error::Windows(e));
                            }
                        }
                        slot.saved_at = Some(next);
                        slot.changed = false;
                    }
                    out.outgoing = std::mem::take(&mut self.outgoing);
                    out.windows_closed = std::mem::take(&mut self.windows_closed);
                    if let Some(e) = self.fatal.take() {
                        out.fatal.get_or_insert(e);
                    }
                    let _ = reply.send(out);
                }
            }
        }
    }

    fn close(&mut self, key: &Key, watermark: i64, now_ms: i64) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if watermark > slot.closed_at {
            slot.closed_at = watermark;
            let closed = slot.windows.close(watermark, now_ms);
            let kind = &slot.decoder.kind().kind;
            for c in &closed {
                let n = c.batch.num_rows() as u64;
                self.windows_closed += n;
                self.metrics.windows_closed(kind, &c.window, n);
                if !self.config.aggregates_topic.is_empty() {
                    for (k, v) in aggregate_messages(c) {
                        let sent =
                            self.producer
                                .send(&self.config.aggregates_topic, Some(k.as_bytes()), Some(&v), None);
                        Self::keep(&mut self.outgoing, &mut self.fatal, &self.config, sent, true);
                    }
                }
            }
            slot.changed |= !closed.is_empty();
            slot.closed.extend(closed);
        }
        self.take_alerts(key);
    }

    /// Keeps a sent message's delivery for the flush to wait on; a refusal stops the worker.
    fn keep(
        outgoing: &mut Vec<Outgoing>,
        fatal: &mut Option<Error>,
        config: &WindowConfig,
        sent: std::result::Result<Delivery, rdkafka::error::KafkaError>,
        aggregates: bool,
    ) {
        let (topic, what) = if aggregates {
            (&config.aggregates_topic, "aggregates")
        } else {
            (&config.alerts_topic, "an alert")
        };
        match sent {
            Ok(delivery) => outgoing.push(Outgoing {
                delivery,
                topic: topic.clone(),
                what,
            }),
            Err(source) => {
                fatal.get_or_insert(
                    rade_kafka::Error::Publish {
                        topic: topic.clone(),
                        what,
                        source: Box::new(source),
                    }
                    .into(),
                );
            }
        }
    }

    /// Publishes the alerts a partition's windows emitted and keeps them for the lake.
    fn take_alerts(&mut self, key: &Key) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let alerts = slot.windows.take_alerts();
        if alerts.is_empty() {
            return;
        }
        slot.changed = true;
        for alert in &alerts {
            info!(rule = %alert.rule, state = alert.state.as_str(), sensor = %alert.sensor_id, message = %alert.message, "alert");
            self.metrics.alert(&alert.rule, alert.state.as_str());
            let value = match (self.config.alert_format, self.alert_schema.as_ref()) {
                (AlertFormat::Avro, Some(schema)) => alert.to_avro(schema).unwrap_or_else(|e| {
                    warn!(error = %e, "alert not encodable as Avro; sent as JSON");
                    alert.to_json()
                }),
                _ => alert.to_json(),
            };
            let key_text = alert.key();
            let headers = OwnedHeaders::new().insert(Header {
                key: rade_kafka::headers::ALERT_ID,
                value: Some(alert.alert_id.as_str()),
            });
            let sent = self.producer.send(
                &self.config.alerts_topic,
                Some(key_text.as_bytes()),
                Some(&value),
                Some(&headers),
            );
            Self::keep(&mut self.outgoing, &mut self.fatal, &self.config, sent, false);
        }
        slot.alerts.extend(alerts);
    }
}

/// The files of closed windows and alerts of a partition since its last flush.
fn derived_files(key: &Key, slot: &mut Slot, next: i64) -> Vec<(DerivedFile, Vec<RecordBatch>)> {
    let kind = slot.decoder.kind().kind.clone();
    let watermark = slot.closed_at.max(0);
    let file = |table: DerivedTable, day_ms: i64| DerivedFile {
        table,
        day_ms,
        topic: key.0.to_string(),
        partition: key.1,
        next_offset: next,
        watermark_ms: watermark,
    };
    let mut derived = Vec::new();
    let mut by_window: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for c in std::mem::take(&mut slot.closed) {
        by_window.entry(c.window).or_default().push(c.batch);
    }
    for (window, batches) in by_window {
        for (day, batches) in split_by_day(&batches, "window_start") {
            let table = DerivedTable::Aggregates {
                window: window.clone(),
                kind: kind.clone(),
            };
            derived.push((file(table, day), batches));
        }
    }
    let alerts = std::mem::take(&mut slot.alerts);
    if !alerts.is_empty() {
        // Alerts by the day of their window's end: a silence alert's window starts with the
        // last reading, which may be days old.
        for (day, batches) in split_by_day(&[alerts_batch(&alerts)], "window_end") {
            derived.push((file(DerivedTable::Alerts, day), batches));
        }
    }
    derived
}

/// Groups batches by the UTC day of their `column` (the lake's `date=`); a batch is split only
/// when it spans two days. Batches are not concatenated: the Parquet writer takes them as they
/// are.
fn split_by_day(batches: &[RecordBatch], column: &str) -> Vec<(i64, Vec<RecordBatch>)> {
    let mut days: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let Some(starts) = batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        else {
            tracing::error!(
                column,
                "a batch of closed windows or alerts without its time column; not written"
            );
            continue;
        };
        let values = starts.values();
        let (Some(first), Some(last)) = (values.iter().min(), values.iter().max()) else {
            continue;
        };
        if day_of(*first) == day_of(*last) {
            days.entry(day_of(*first)).or_default().push(batch.clone());
            continue;
        }
        let mut d = day_of(*first);
        while d <= day_of(*last) {
            let mask: arrow::array::BooleanArray = values.iter().map(|&t| Some(day_of(t) == d)).collect();
            if let Ok(part) = arrow::compute::filter_record_batch(batch, &mask)
                && part.num_rows() > 0
            {
                days.entry(d).or_default().push(part);
            }
            d += 86_400_000;
        }
    }
    days.into_iter().collect()
}

/// Closed windows as JSON messages for the aggregates topic, keyed by sensor id.
fn aggregate_messages(c: &ClosedWindows) -> Vec<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        if writer.write(&c.batch).and_then(|()| writer.finish()).is_err() {
            return Vec::new();
        }
    }
    let sensors = c.batch.column(0).as_any().downcast_ref::<arrow::array::StringArray>();
    // Each line is a JSON object: the window goes in as its first member.
    let window = serde_json::to_string(&c.window).unwrap_or_default();
    buf.split(|&b| b == b'\n')
        .filter(|l| l.len() > 1)
        .enumerate()
        .map(|(i, line)| {
            let mut v = format!("{{\"window\":{window},").into_bytes();
            v.extend_from_slice(&line[1..]);
            let key = sensors.map(|s| s.value(i).to_owned()).unwrap_or_default();
            (key, v)
        })
        .collect()
}

/// Whether a reading is late: the oldest window of any shape that holds `t` ends at or before
/// `closed_at`, the watermark last sent to the window thread for its partition.
pub(crate) fn is_late(t: i64, closed_at: i64, slides: &[i64]) -> bool {
    slides
        .iter()
        .any(|&slide| t.div_euclid(slide) * slide + slide <= closed_at)
}
