//! The window thread: drives the partitions' windows ([`WindowSet`], which alone decides
//! lateness and when windows close), publishes alerts, reports late readings to the DLQ, and
//! hands each flush its files of closed windows and alerts and the state to save.
//!
//! The ingest thread only copies each valid reading's key and value into a per-partition
//! buffer; decoding again, folding, closing, the DataFusion rules and the Arrow building run
//! here, on another core. Commands arrive in order on one channel: a seal sees everything
//! sent before it, so a flush holds every late report and alert of the readings it commits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow::record_batch::RecordBatch;
use rade_kafka::DlqRecord;
use rade_lake::DerivedFile;
use rade_schema::{Decoder, KindSchema, Reject, RejectReason};
use rade_telemetry::Metrics;
use rade_window::{
    Alert, AlertFormat, ClosedWindows, Folded, PartitionWindows, RuleSet, WindowConfig, WindowSet, WindowSpec,
};
use rdkafka::message::{Header, OwnedHeaders};
use tracing::{info, warn};

use crate::Error;
use crate::derived::{aggregate_messages, derived_files};
use crate::dlq_sender::{DlqSender, Pending};
use crate::ingest::time_text;
use crate::seams::{Delivery, Produce};

pub(crate) type Key = (Arc<str>, i32);

/// Commands (about 1 024 readings each for folds) queued for the window thread at most.
pub(crate) const WINDOW_QUEUE: usize = 64;

/// The ingest thread's end of the window thread.
pub(crate) struct WinHandle {
    pub(crate) tx: std::sync::mpsc::SyncSender<Cmd>,
    /// The combined watermark the window thread last reached (`i64::MIN`: none yet), for
    /// rolling raw files whose hour it has left.
    pub(crate) watermark: Arc<AtomicI64>,
    /// Whether anything was sent since the last seal.
    pub(crate) active: bool,
}

impl WinHandle {
    pub(crate) fn watermark(&self) -> Option<i64> {
        Some(self.watermark.load(Ordering::Relaxed)).filter(|&w| w != i64::MIN)
    }
}

/// A message to the alert or aggregates topic that must be acknowledged before the flush commits.
pub(crate) struct Outgoing {
    pub(crate) delivery: Delivery,
    pub(crate) topic: String,
    pub(crate) what: &'static str,
}

/// What to do with a reading that turns out late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfLate {
    /// Nothing: it was counted and reported before the lake file holding it was written.
    Ignore,
    /// Count it: its reject is in the DLQ already (a run stopped before committing it).
    Count,
    /// Count it and send its reject to the DLQ.
    Report,
}

/// One valid reading of a [`FoldBatch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Folding {
    pub(crate) offset: i64,
    /// Where its key ends and its value ends in the batch's bytes (the key starts where the
    /// previous reading ends); `has_key` tells an empty key from none.
    pub(crate) key_end: u32,
    pub(crate) end: u32,
    pub(crate) has_key: bool,
    pub(crate) if_late: IfLate,
}

/// Valid readings of one partition for the windows, in offset order.
#[derive(Debug, Default)]
pub(crate) struct FoldBatch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) readings: Vec<Folding>,
}

impl FoldBatch {
    pub(crate) fn push(&mut self, key: Option<&[u8]>, value: &[u8], offset: i64, if_late: IfLate) {
        self.bytes.extend_from_slice(key.unwrap_or_default());
        let key_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.readings.push(Folding {
            offset,
            key_end,
            end: self.bytes.len() as u32,
            has_key: key.is_some(),
            if_late,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

pub(crate) enum Cmd {
    /// A partition's windows, fresh or restored from the lake by the ingest thread.
    Assign {
        key: Key,
        windows: Box<PartitionWindows>,
        decoder: Decoder,
        now_ms: i64,
    },
    Remove {
        key: Key,
    },
    Fold {
        key: Key,
        batch: FoldBatch,
        now_ms: i64,
    },
    /// Processing time moves: idle partitions stop holding the watermark back.
    Tick {
        now_ms: i64,
    },
    /// Every partition is read to its end: one that never delivered stops holding it back.
    EndOfInput {
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
    /// Late readings reported to the DLQ, acknowledged with the flush's other rejects.
    pub(crate) late_rejects: Vec<Pending>,
    /// Late readings counted.
    pub(crate) late: u64,
    pub(crate) windows_closed: u64,
    pub(crate) fatal: Option<Error>,
}

/// What the window thread keeps of a partition besides its windows.
struct Part {
    decoder: Decoder,
    closed: Vec<ClosedWindows>,
    alerts: Vec<Alert>,
    changed: bool,
    saved_at: Option<i64>,
}

/// Where the window thread's outputs go.
pub(crate) struct Outputs {
    pub(crate) producer: Arc<dyn Produce>,
    pub(crate) dlq: DlqSender,
    pub(crate) alert_schema: Option<Arc<KindSchema>>,
    pub(crate) metrics: Metrics,
    pub(crate) watermark: Arc<AtomicI64>,
}

pub(crate) struct Runner {
    set: WindowSet,
    parts: HashMap<Key, Part>,
    config: WindowConfig,
    out: Outputs,
    outgoing: Vec<Outgoing>,
    late_rejects: Vec<Pending>,
    late: u64,
    windows_closed: u64,
    fatal: Option<Error>,
}

impl Runner {
    pub(crate) fn new(specs: Arc<[WindowSpec]>, rules: Arc<RuleSet>, config: WindowConfig, out: Outputs) -> Self {
        Runner {
            set: WindowSet::new(specs, rules, &config),
            parts: HashMap::new(),
            config,
            out,
            outgoing: Vec::new(),
            late_rejects: Vec::new(),
            late: 0,
            windows_closed: 0,
            fatal: None,
        }
    }

    /// Serves commands until the ingest thread drops its sender.
    pub(crate) fn run(mut self, rx: std::sync::mpsc::Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            self.serve(cmd);
        }
    }

    pub(crate) fn serve(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Assign {
                key,
                windows,
                decoder,
                now_ms,
            } => {
                self.set.insert(key.clone(), *windows, now_ms);
                self.parts.insert(
                    key,
                    Part {
                        decoder,
                        closed: Vec::new(),
                        alerts: Vec::new(),
                        changed: false,
                        saved_at: None,
                    },
                );
            }
            Cmd::Remove { key } => {
                self.set.remove(&key);
                self.parts.remove(&key);
            }
            Cmd::Fold { key, batch, now_ms } => {
                self.fold(&key, &batch, now_ms);
                self.collect(now_ms);
            }
            Cmd::Tick { now_ms } => {
                self.set.tick(now_ms);
                self.collect(now_ms);
            }
            Cmd::EndOfInput { now_ms } => {
                self.set.end_of_input(now_ms);
                self.collect(now_ms);
            }
            Cmd::Seal { offsets, reply } => {
                let _ = reply.send(self.seal(offsets));
            }
        }
    }

    fn fold(&mut self, key: &Key, batch: &FoldBatch, now_ms: i64) {
        let Some(part) = self.parts.get_mut(key) else {
            return;
        };
        part.changed |= !batch.is_empty();
        let mut start = 0usize;
        for r in &batch.readings {
            let (key_end, end) = (r.key_end as usize, r.end as usize);
            let value = &batch.bytes[key_end..end];
            let record_key = r.has_key.then(|| &batch.bytes[start..key_end]);
            start = end;
            // Validated by the ingest thread already; decoding again is cheaper than shipping
            // decoded rows across threads.
            let Ok(row) = part.decoder.decode(Some(value), now_ms) else {
                continue;
            };
            let Folded::Late { closed_at } = self.set.fold(key, &row, now_ms) else {
                continue;
            };
            if r.if_late == IfLate::Ignore {
                continue;
            }
            self.late += 1;
            self.out.metrics.late(&part.decoder.kind().kind, 1);
            if r.if_late == IfLate::Count {
                continue;
            }
            let reject = Reject {
                reason: RejectReason::Late,
                detail: format!(
                    "event time {} is behind the watermark {}: kept in the raw lake, left out of the closed windows",
                    time_text(row.observed_at_ms),
                    time_text(closed_at)
                ),
                schema_id: Some(part.decoder.kind().id),
            };
            let record = DlqRecord {
                key: record_key,
                value: Some(value),
                topic: &key.0,
                partition: key.1,
                offset: r.offset,
            };
            match self.out.dlq.send(&record, &reject, &key.0) {
                Ok(pending) => self.late_rejects.push(pending),
                Err(e) => {
                    self.fatal.get_or_insert(e);
                }
            }
        }
        let split = self.set.take_split_readings(key);
        if split > 0 {
            self.out.metrics.split_readings(&part.decoder.kind().kind, split);
        }
    }

    /// Takes what closed: metrics, the aggregates topic, alerts published and kept for the
    /// lake; publishes the watermark.
    fn collect(&mut self, now_ms: i64) {
        for (key, closed, alerts) in self.set.take_output() {
            let Some(part) = self.parts.get_mut(&key) else {
                continue;
            };
            part.changed = true;
            let kind = &part.decoder.kind().kind;
            for c in &closed {
                let n = c.batch.num_rows() as u64;
                self.windows_closed += n;
                self.out.metrics.windows_closed(kind, &c.window, n);
                if !self.config.aggregates_topic.is_empty() {
                    for (k, v) in aggregate_messages(c) {
                        let sent =
                            self.out
                                .producer
                                .send(&self.config.aggregates_topic, Some(k.as_bytes()), Some(&v), None);
                        keep(&mut self.outgoing, &mut self.fatal, &self.config, sent, true);
                    }
                }
            }
            part.closed.extend(closed);
            for alert in &alerts {
                info!(rule = %alert.rule, state = alert.state.as_str(), sensor = %alert.sensor_id, message = %alert.message, "alert");
                self.out.metrics.alert(&alert.rule, alert.state.as_str());
                let value = match (self.config.alert_format, self.out.alert_schema.as_ref()) {
                    (AlertFormat::Avro, Some(schema)) => alert.to_avro(schema).unwrap_or_else(|e| {
                        warn!(error = %e, "alert not encodable as Avro; sent as JSON");
                        alert.to_json()
                    }),
                    _ => alert.to_json(),
                };
                let headers = OwnedHeaders::new().insert(Header {
                    key: rade_kafka::headers::ALERT_ID,
                    value: Some(alert.alert_id.as_str()),
                });
                let sent = self.out.producer.send(
                    &self.config.alerts_topic,
                    Some(alert.key().as_bytes()),
                    Some(&value),
                    Some(&headers),
                );
                keep(&mut self.outgoing, &mut self.fatal, &self.config, sent, false);
            }
            part.alerts.extend(alerts);
        }
        if let Some(w) = self.set.watermark() {
            self.out.watermark.store(w, Ordering::Relaxed);
            self.out.metrics.watermark_lag((now_ms - w).max(0) as f64 / 1000.0);
        }
    }

    fn seal(&mut self, offsets: Vec<(Key, i64)>) -> SealReply {
        let mut out = SealReply::default();
        for (key, next) in offsets {
            let Some(part) = self.parts.get_mut(&key) else {
                continue;
            };
            if !part.changed && part.saved_at == Some(next) {
                continue;
            }
            let closed_at = self.set.closed_at(&key).unwrap_or(i64::MIN);
            out.derived.extend(derived_files(
                &key,
                &part.decoder.kind().kind,
                closed_at,
                std::mem::take(&mut part.closed),
                std::mem::take(&mut part.alerts),
                next,
            ));
            match self.set.snapshot(&key, next) {
                Ok(bytes) => out.snapshots.push((key.0.clone(), key.1, bytes)),
                Err(e) => {
                    out.fatal.get_or_insert(Error::Windows(e));
                }
            }
            part.saved_at = Some(next);
            part.changed = false;
        }
        out.outgoing = std::mem::take(&mut self.outgoing);
        out.late_rejects = std::mem::take(&mut self.late_rejects);
        out.late = std::mem::take(&mut self.late);
        out.windows_closed = std::mem::take(&mut self.windows_closed);
        if let Some(e) = self.fatal.take() {
            out.fatal.get_or_insert(e);
        }
        out
    }
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

/// Starts the window thread for these windows and rules; its alerts and aggregates go through
/// `producer`, its late reports through `dlq`.
pub(crate) fn spawn_windows(
    windowing: &crate::worker::Windowing,
    producer: Arc<dyn Produce>,
    dlq: DlqSender,
    catalog: &rade_schema::Catalog,
    metrics: &Metrics,
) -> crate::Result<(WinHandle, std::thread::JoinHandle<()>)> {
    // Bounded: when the window thread falls behind, the ingest thread waits for it instead of
    // queueing readings without limit.
    let (tx, rx) = std::sync::mpsc::sync_channel(WINDOW_QUEUE);
    let watermark = Arc::new(AtomicI64::new(i64::MIN));
    let runner = Runner::new(
        windowing.specs.clone(),
        windowing.rules.clone(),
        windowing.config.clone(),
        Outputs {
            producer,
            dlq,
            alert_schema: catalog.alert().cloned(),
            metrics: metrics.clone(),
            watermark: watermark.clone(),
        },
    );
    let thread = std::thread::Builder::new()
        .name("rade-windows".into())
        .spawn(move || runner.run(rx))
        .map_err(Error::Spawn)?;
    Ok((
        WinHandle {
            tx,
            watermark,
            active: false,
        },
        thread,
    ))
}
