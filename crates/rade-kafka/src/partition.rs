use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use rade_lake::{DerivedFile, DerivedTable, RawFile, day_of, hour_of};
use rade_schema::{Decoder, Lineage, Row, RowBatchBuilder};
use rade_window::{Alert, ClosedWindows, PartitionWindows, alerts_batch};

/// What the lake already holds for a partition, read when it is assigned.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    /// (hour, start, end) of every raw file of this partition still ahead of the replay.
    files: Vec<(i64, i64, i64)>,
    max_end: i64,
}

impl Durable {
    pub(crate) fn new(files: &[RawFile], from_offset: i64) -> Self {
        let files: Vec<_> = files
            .iter()
            .filter(|f| f.end >= from_offset)
            .map(|f| (f.hour, f.start, f.end))
            .collect();
        let max_end = files.iter().map(|f| f.2).max().unwrap_or(-1);
        Durable { files, max_end }
    }

    /// A valid row is durable when a file of its hour covers its offset: a file holds every
    /// row of its range and hour except those already in an older file of that hour.
    fn holds_row(&self, hour: i64, offset: i64) -> bool {
        offset <= self.max_end
            && self
                .files
                .iter()
                .any(|&(h, s, e)| h == hour && s <= offset && offset <= e)
    }

    /// A reject is durable when any file of the partition ends at or after its offset: a
    /// flush writes its files only after the DLQ acknowledged its rejects and every earlier
    /// flush's rejects.
    fn holds_reject(&self, offset: i64) -> bool {
        offset <= self.max_end
    }
}

/// The state of one assigned partition between two flushes.
pub(crate) struct PartitionState {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) decoder: Decoder,
    /// Offset after the last record handled; committed once the flush holding it is durable.
    pub(crate) next_offset: Option<i64>,
    /// Committed offset when the partition was assigned.
    pub(crate) start_offset: Option<i64>,
    /// First offset of the open segment, the start of its file names.
    seg_start: Option<i64>,
    buffers: BTreeMap<i64, RowBatchBuilder>,
    durable: Durable,
    /// Whether anything (rows, rejects, skips) happened since the last seal.
    dirty: bool,
    /// Newest event time buffered since the last seal.
    newest_event_ms: Option<i64>,
    /// Event-time windows and alert state, when windows are enabled.
    pub(crate) windows: Option<PartitionWindows>,
    /// Records before this offset are already in the restored window state and the lake.
    pub(crate) skip_before: i64,
    /// Windows closed and alerts emitted since the last seal, for the lake.
    closed: Vec<ClosedWindows>,
    alerts: Vec<Alert>,
    /// Watermark the windows were last closed at.
    closed_at: i64,
    /// Whether the window state changed without a record (windows closed by the watermark).
    window_changed: bool,
}

/// A closed segment: its files, the offset to commit once they are durable, its newest event.
pub(crate) struct Sealed {
    pub(crate) files: Vec<(RawFile, RecordBatch)>,
    /// Closed windows and alerts, one file per table and day.
    pub(crate) derived: Vec<(DerivedFile, Vec<RecordBatch>)>,
    /// The window state as of `next_offset`, written once the files are durable.
    pub(crate) snapshot: Option<Vec<u8>>,
    pub(crate) next_offset: i64,
    pub(crate) newest_event_ms: Option<i64>,
}

/// What a record turned out to be.
pub(crate) enum Handled {
    Buffered,
    AlreadyDurable,
}

impl PartitionState {
    pub(crate) fn new(
        topic: Arc<str>,
        partition: i32,
        decoder: Decoder,
        start_offset: Option<i64>,
        durable: Durable,
        windows: Option<PartitionWindows>,
        skip_before: i64,
    ) -> Self {
        PartitionState {
            topic,
            partition,
            decoder,
            next_offset: None,
            start_offset,
            seg_start: None,
            buffers: BTreeMap::new(),
            durable,
            dirty: false,
            newest_event_ms: None,
            windows,
            skip_before,
            closed: Vec::new(),
            alerts: Vec::new(),
            closed_at: i64::MIN,
            window_changed: false,
        }
    }

    /// Passes over a record that the restored window state and the lake already hold.
    pub(crate) fn skip(&mut self, offset: i64) {
        self.advance(offset);
    }

    /// Closes the windows the watermark has passed; returns what closed and the new alerts.
    pub(crate) fn close_windows(&mut self, watermark: i64, now_ms: i64) -> (&[ClosedWindows], Vec<Alert>) {
        let Some(w) = self.windows.as_mut() else {
            return (&[], Vec::new());
        };
        let before = self.closed.len();
        if watermark > self.closed_at {
            self.closed_at = watermark;
            let closed = w.close(watermark, now_ms);
            if !closed.is_empty() {
                self.window_changed = true;
            }
            self.closed.extend(closed);
        }
        let alerts = w.take_alerts();
        if !alerts.is_empty() {
            self.window_changed = true;
            self.alerts.extend(alerts.iter().cloned());
        }
        (&self.closed[before..], alerts)
    }

    fn advance(&mut self, offset: i64) {
        self.seg_start.get_or_insert(offset);
        self.next_offset = Some(offset + 1);
        self.dirty = true;
    }

    /// Buffers a valid row unless the lake already holds it.
    pub(crate) fn push_row(&mut self, row: &Row<'_>, offset: i64, ingested_at_ms: i64) -> Handled {
        self.advance(offset);
        let hour = hour_of(row.observed_at_ms);
        if self.durable.holds_row(hour, offset) {
            return Handled::AlreadyDurable;
        }
        self.newest_event_ms = self.newest_event_ms.max(Some(row.observed_at_ms));
        let kind = self.decoder.kind();
        let builder = self
            .buffers
            .entry(hour)
            .or_insert_with(|| RowBatchBuilder::new(kind.clone(), 1024));
        builder.push(
            row,
            Lineage {
                topic: &self.topic,
                partition: self.partition,
                offset,
                ingested_at_ms,
            },
        );
        Handled::Buffered
    }

    /// Records a reject; returns false when an earlier run already sent it to the DLQ.
    pub(crate) fn push_reject(&mut self, offset: i64) -> bool {
        self.advance(offset);
        !self.durable.holds_reject(offset)
    }

    /// Arrow bytes buffered.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffers.values().map(RowBatchBuilder::approx_bytes).sum()
    }

    /// Closes the open segment: one file per hour named by the segment's offset range, the
    /// offset to commit once they and the segment's rejects are durable, and the newest event.
    pub(crate) fn seal(&mut self) -> Option<Sealed> {
        if !self.dirty && !self.window_changed {
            return None;
        }
        let next = self.next_offset.or(self.start_offset)?;
        let start = self.seg_start.take().unwrap_or(next);
        let kind = self.decoder.kind().kind.clone();
        let files = std::mem::take(&mut self.buffers)
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(hour, mut b)| {
                let file = RawFile {
                    kind: kind.clone(),
                    hour,
                    topic: self.topic.to_string(),
                    partition: self.partition,
                    start,
                    end: next - 1,
                };
                (file, b.finish())
            })
            .collect();
        let mut derived = Vec::new();
        let file = |table: DerivedTable, day_ms: i64| DerivedFile {
            table,
            day_ms,
            topic: self.topic.to_string(),
            partition: self.partition,
            next_offset: next,
            watermark_ms: self.closed_at.max(0),
        };
        let mut by_window: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        for c in std::mem::take(&mut self.closed) {
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
        let alerts = std::mem::take(&mut self.alerts);
        if !alerts.is_empty() {
            // Alerts by the day of their window's end: a silence alert's window starts with the
            // last reading, which may be days old.
            for (day, batches) in split_by_day(&[alerts_batch(&alerts)], "window_end") {
                derived.push((file(DerivedTable::Alerts, day), batches));
            }
        }
        let snapshot = self.windows.as_ref().and_then(|w| match w.snapshot(next) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "window state not saved");
                None
            }
        });
        self.dirty = false;
        self.window_changed = false;
        Some(Sealed {
            files,
            derived,
            snapshot,
            next_offset: next,
            newest_event_ms: self.newest_event_ms.take(),
        })
    }
}

/// Groups batches by the UTC day of their `column` (the lake's `date=`); a batch
/// is split only when it spans two days. Batches are not concatenated: the Parquet writer
/// takes them as they are.
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
