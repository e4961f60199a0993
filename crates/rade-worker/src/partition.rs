use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use rade_lake::{RawFile, hour_of};
use rade_schema::{Decoder, Lineage, Row, RowBatchBuilder};

/// What the lake already holds for a partition, read when it is assigned.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    /// (hour, start, end) of every raw file of this partition still ahead of the replay.
    files: Vec<(i64, i64, i64)>,
    max_end: i64,
    /// Rejects before this offset are in the DLQ: the last commit's metadata or the saved
    /// window state says so (both are written after their flush's rejects are acknowledged).
    acked_before: i64,
}

impl Durable {
    /// `acked_before`: the offset below which rejects are known to be in the DLQ
    /// (`i64::MIN` when nothing says so).
    pub(crate) fn new(files: &[RawFile], from_offset: i64, acked_before: i64) -> Self {
        let files: Vec<_> = files
            .iter()
            .filter(|f| f.end >= from_offset)
            .map(|f| (f.hour, f.start, f.end))
            .collect();
        let max_end = files.iter().map(|f| f.2).max().unwrap_or(-1);
        Durable {
            files,
            max_end,
            acked_before,
        }
    }

    /// The first offset of the file of `hour` that holds the row at `offset`, if one does: a
    /// file holds every row of its range and hour (the files of an hour never overlap).
    fn holder(&self, hour: i64, offset: i64) -> Option<i64> {
        if offset > self.max_end {
            return None;
        }
        self.files
            .iter()
            .find(|&&(h, s, e)| h == hour && s <= offset && offset <= e)
            .map(|&(_, s, _)| s)
    }

    /// A reject is durable when any file of the partition ends at or after its offset: a
    /// flush writes its files only after the DLQ acknowledged its rejects and every earlier
    /// flush's rejects.
    fn holds_reject(&self, offset: i64) -> bool {
        offset <= self.max_end || offset < self.acked_before
    }
}

/// The open file of one event hour: every row of that hour from offset `start` on.
pub(crate) struct Segment {
    rows: RowBatchBuilder,
    /// Offset of its first row: the start of its file name.
    pub(crate) start: i64,
    /// When its first row was buffered (rolling on age).
    pub(crate) opened: Instant,
    /// Newest event time in it.
    newest_event_ms: i64,
}

impl Segment {
    /// Arrow bytes buffered.
    pub(crate) fn bytes(&self) -> usize {
        self.rows.approx_bytes()
    }
}

/// The state of one assigned partition: its open files, one per event hour, and its position.
pub(crate) struct PartitionState {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) decoder: Decoder,
    /// Offset after the last record handled; committed once the flush holding it is durable.
    pub(crate) next_offset: Option<i64>,
    /// Committed offset when the partition was assigned.
    pub(crate) start_offset: Option<i64>,
    /// The open files, by event hour; each rolls on its own (size, age, watermark).
    pub(crate) segments: BTreeMap<i64, Segment>,
    /// Open files cut short by a file of the lake that starts inside their range (a replay):
    /// written with the next seal.
    cut: Vec<(RawFile, RecordBatch, i64)>,
    durable: Durable,
    /// The offset the last seal made committable: everything before it is durable once that
    /// flush is.
    sealed_to: Option<i64>,
    /// Newest event time seen since the partition was assigned.
    pub(crate) max_event_ms: Option<i64>,
    /// What the ingest thread knows of the partition's windows, which live on the window
    /// thread; `None` when windows are off.
    pub(crate) view: Option<WindowView>,
    /// Records before this offset are already in the restored window state and the lake.
    pub(crate) skip_before: i64,
    /// Valid records not sent to the window thread yet: their values back to back, and where
    /// each one ends.
    pub(crate) fold_bytes: Vec<u8>,
    pub(crate) fold_ends: Vec<u32>,
    /// Rejects of this partition found in the DLQ when it was assigned (sent by a worker that
    /// stopped before committing them): not sent again.
    pub(crate) dlq_held: crate::dlq_tail::Held,
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

/// Files rolled by a seal, the offset to commit once they are durable, their newest event.
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
            segments: BTreeMap::new(),
            cut: Vec::new(),
            durable,
            sealed_to: start_offset,
            max_event_ms: None,
            view,
            skip_before,
            fold_bytes: Vec::new(),
            fold_ends: Vec::new(),
            dlq_held: Default::default(),
        }
    }

    fn advance(&mut self, offset: i64) {
        self.next_offset = Some(offset + 1);
    }

    /// Buffers a valid row unless the lake already holds it.
    pub(crate) fn push_row(&mut self, row: &Row<'_>, offset: i64, ingested_at_ms: i64) -> Handled {
        self.advance(offset);
        let hour = hour_of(row.observed_at_ms);
        if let Some(file_start) = self.durable.holder(hour, offset) {
            // A file of the lake starts inside the open file's range (a replay over a lost
            // file followed by one that was written): the open file ends just before it, so
            // that the files of an hour never overlap, which compaction relies on.
            if self.segments.get(&hour).is_some_and(|s| s.start < file_start)
                && let Some(segment) = self.segments.remove(&hour)
            {
                let closed = self.close(hour, segment, file_start - 1);
                self.cut.push(closed);
            }
            return Handled::AlreadyDurable;
        }
        self.max_event_ms = self.max_event_ms.max(Some(row.observed_at_ms));
        let kind = self.decoder.kind();
        let segment = self.segments.entry(hour).or_insert_with(|| Segment {
            rows: RowBatchBuilder::new(kind.clone(), 1024),
            start: offset,
            opened: Instant::now(),
            newest_event_ms: row.observed_at_ms,
        });
        segment.newest_event_ms = segment.newest_event_ms.max(row.observed_at_ms);
        segment.rows.push(
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
        !self.dlq_holds(offset)
    }

    /// Whether the DLQ already has the reject of `offset`: acknowledged before a file or a
    /// commit said so, or found there when the partition was assigned.
    pub(crate) fn dlq_holds(&self, offset: i64) -> bool {
        self.durable.holds_reject(offset) || self.dlq_held.contains_key(&offset)
    }

    /// Arrow bytes buffered.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.segments.values().map(Segment::bytes).sum::<usize>()
            + self
                .cut
                .iter()
                .map(|(_, b, _)| b.get_array_memory_size())
                .sum::<usize>()
    }

    /// Rolls the open files `due` picks: each becomes a file named by its first offset and
    /// the partition's position (it holds every row of its hour in that range). Returns them
    /// with the offset to commit once they are durable: the first offset of the files still
    /// open, or the position when none is. `None` when nothing rolled and that offset has
    /// not moved since the last seal.
    pub(crate) fn seal(&mut self, mut due: impl FnMut(i64, &Segment) -> bool) -> Option<Sealed> {
        let position = self.position()?;
        let rolling: Vec<i64> = self
            .segments
            .iter()
            .filter(|(hour, segment)| due(**hour, segment))
            .map(|(hour, _)| *hour)
            .collect();
        let mut closed = std::mem::take(&mut self.cut);
        for hour in rolling {
            if let Some(segment) = self.segments.remove(&hour) {
                closed.push(self.close(hour, segment, position - 1));
            }
        }
        let newest_event_ms = closed.iter().map(|c| c.2).max();
        let files: Vec<_> = closed.into_iter().map(|(file, batch, _)| (file, batch)).collect();
        // Open files start before the position: the commit waits at the oldest.
        let commit = self.segments.values().map(|s| s.start).min().unwrap_or(position);
        if files.is_empty() && self.sealed_to.is_some_and(|s| s >= commit) {
            return None;
        }
        self.sealed_to = Some(commit);
        Some(Sealed {
            files,
            next_offset: commit,
            newest_event_ms,
        })
    }

    /// An open file of `hour` as the file `[its start, end]`, its rows, its newest event.
    fn close(&self, hour: i64, mut segment: Segment, end: i64) -> (RawFile, RecordBatch, i64) {
        let file = RawFile {
            kind: self.decoder.kind().kind.clone(),
            hour,
            topic: self.topic.to_string(),
            partition: self.partition,
            start: segment.start,
            end,
            merged: false,
        };
        (file, segment.rows.finish(), segment.newest_event_ms)
    }

    /// The offset the window state of a flush is taken at.
    pub(crate) fn position(&self) -> Option<i64> {
        self.next_offset.or(self.start_offset)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rade_schema::{Catalog, DecodeLimits};

    use super::*;

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_780_000_000_000 / HOUR * HOUR;

    fn state(files: &[RawFile], committed: Option<i64>) -> PartitionState {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let catalog = Arc::new(Catalog::load(&dir).expect("shipped catalog"));
        let kind = catalog.kind("noise").expect("noise").clone();
        let decoder = Decoder::new(catalog, kind, DecodeLimits::default());
        let durable = Durable::new(files, committed.unwrap_or(0), i64::MIN);
        PartitionState::new("t".into(), 0, decoder, committed, durable, None, i64::MIN)
    }

    fn push(s: &mut PartitionState, offset: i64, at: i64) -> Handled {
        let json = format!(
            r#"{{"sensor_id":"n-1","observed_at":{at},"latitude":43.1,"longitude":5.9,"LAeq":55.0,"LAmax":null}}"#
        );
        let decoder = s.decoder.clone();
        let row = decoder.decode(Some(json.as_bytes()), at).expect("valid reading");
        s.push_row(&row, offset, at)
    }

    #[test]
    fn files_roll_per_hour_and_the_commit_waits_for_the_oldest_open_file() {
        let mut s = state(&[], None);
        // Offsets alternate between two hours, as a late sensor's readings would.
        for offset in 0..4 {
            push(&mut s, offset, T0 + (offset % 2) * HOUR + 1000);
        }
        // Only the second hour rolls: the commit stays at the first hour's first offset.
        let sealed = s.seal(|hour, _| hour == T0 / HOUR + 1).expect("a file rolled");
        assert_eq!(sealed.files.len(), 1);
        let (file, batch) = &sealed.files[0];
        assert_eq!((file.hour, file.start, file.end), (T0 / HOUR + 1, 1, 3));
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(sealed.next_offset, 0);
        // Nothing due and nothing new: no flush at all.
        assert!(s.seal(|_, _| false).is_none());
        // More rows: the first hour's file still holds offsets from 0.
        push(&mut s, 4, T0 + 2000);
        push(&mut s, 5, T0 + HOUR + 2000);
        let sealed = s.seal(|_, _| true).expect("both rolled");
        let got: Vec<_> = sealed
            .files
            .iter()
            .map(|(f, b)| (f.hour - T0 / HOUR, f.start, f.end, b.num_rows()))
            .collect();
        assert_eq!(got, vec![(0, 0, 5, 3), (1, 5, 5, 1)]);
        assert_eq!(sealed.next_offset, 6);
    }

    #[test]
    fn a_replay_over_a_lost_file_ends_it_before_the_next_file_of_its_hour() {
        // Hour 0 had two files, [0, 4] (lost in a crash) and [5, 9] (written); the commit was 0.
        let mut first = state(&[], None);
        for offset in 0..10 {
            push(&mut first, offset, T0 + offset);
            if offset == 4 {
                let _lost = first.seal(|_, _| true).expect("rolled");
            }
        }
        let written = first.seal(|_, _| true).expect("rolled");
        let files: Vec<RawFile> = written.files.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(files.iter().map(|f| (f.start, f.end)).collect::<Vec<_>>(), vec![(5, 9)]);
        let mut replay = state(&files, Some(0));
        let handled: Vec<bool> = (0..12)
            .map(|offset| matches!(push(&mut replay, offset, T0 + offset), Handled::Buffered))
            .collect();
        assert_eq!(
            handled,
            [[true; 5], [false; 5]]
                .concat()
                .into_iter()
                .chain([true, true])
                .collect::<Vec<_>>()
        );
        let sealed = replay.seal(|_, _| true).expect("rolled");
        let got: Vec<_> = sealed
            .files
            .iter()
            .map(|(f, b)| (f.start, f.end, b.num_rows()))
            .collect();
        // The lost rows in a file that ends before the written one: no two files overlap.
        assert_eq!(got, vec![(0, 4, 5), (10, 11, 2)]);
    }

    #[test]
    fn a_replay_skips_exactly_the_rows_rolled_files_hold() {
        let mut first = state(&[], None);
        for offset in 0..6 {
            push(&mut first, offset, T0 + (offset % 2) * HOUR);
        }
        // The second hour's file is written, the first hour's is not (a crash): commit at 0.
        let sealed = first.seal(|hour, _| hour == T0 / HOUR + 1).expect("rolled");
        assert_eq!(sealed.next_offset, 0);
        let files: Vec<RawFile> = sealed.files.iter().map(|(f, _)| f.clone()).collect();
        let mut replay = state(&files, Some(0));
        let mut buffered = Vec::new();
        for offset in 0..6 {
            if matches!(push(&mut replay, offset, T0 + (offset % 2) * HOUR), Handled::Buffered) {
                buffered.push(offset);
            }
        }
        assert_eq!(buffered, vec![0, 2, 4], "the rows of the lost file, and only them");
        let sealed = replay.seal(|_, _| true).expect("rolled");
        let got: Vec<_> = sealed
            .files
            .iter()
            .map(|(f, b)| (f.hour - T0 / HOUR, f.start, f.end, b.num_rows()))
            .collect();
        assert_eq!(got, vec![(0, 0, 5, 3)]);
        assert_eq!(sealed.next_offset, 6);
    }
}
