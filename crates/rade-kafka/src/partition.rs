use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use rade_lake::{RawFile, hour_of};
use rade_schema::{Decoder, Lineage, Row, RowBatchBuilder};

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
    /// What the ingest thread knows of the partition's windows, which live on the window
    /// thread; `None` when windows are off.
    pub(crate) view: Option<WindowView>,
    /// Records before this offset are already in the restored window state and the lake.
    pub(crate) skip_before: i64,
    /// Valid records not sent to the window thread yet: their values back to back, and where
    /// each one ends.
    pub(crate) fold_bytes: Vec<u8>,
    pub(crate) fold_ends: Vec<u32>,
}

/// The ingest thread's view of a partition's windows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowView {
    /// The watermark last sent to the window thread for this partition.
    pub(crate) closed_at: i64,
    /// Newest event time seen.
    pub(crate) max_event: Option<i64>,
    /// Processing time of the newest record (idleness).
    pub(crate) last_active_ms: i64,
}

/// A closed segment: its files, the offset to commit once they are durable, its newest event.
pub(crate) struct Sealed {
    pub(crate) files: Vec<(RawFile, RecordBatch)>,
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
        view: Option<WindowView>,
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
            view,
            skip_before,
            fold_bytes: Vec::new(),
            fold_ends: Vec::new(),
        }
    }

    /// Passes over a record that the restored window state and the lake already hold.
    pub(crate) fn skip(&mut self, offset: i64) {
        self.advance(offset);
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
        if !self.dirty {
            return None;
        }
        let next = self.position()?;
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
        self.dirty = false;
        Some(Sealed {
            files,
            next_offset: next,
            newest_event_ms: self.newest_event_ms.take(),
        })
    }

    /// The offset the window state of a flush is taken at.
    pub(crate) fn position(&self) -> Option<i64> {
        self.next_offset.or(self.start_offset)
    }
}
