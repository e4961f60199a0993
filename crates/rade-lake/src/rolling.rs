//! The open raw files of a partition, one per event hour, and how they roll into lake files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use rade_schema::{KindSchema, Lineage, Row, RowBatchBuilder};

use crate::layout::{RawFile, hour_of};
use crate::replay::ReplayIndex;

/// The open file of one event hour: every row of that hour from offset `start` on.
#[derive(Debug)]
pub struct OpenFile {
    rows: RowBatchBuilder,
    start: i64,
    opened: Instant,
    newest_event_ms: i64,
}

impl OpenFile {
    /// Arrow bytes buffered.
    pub fn bytes(&self) -> usize {
        self.rows.approx_bytes()
    }

    /// Offset of its first row: the start of its file name.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// When its first row was buffered, by the clock the caller passed (rolling on age).
    pub fn opened(&self) -> Instant {
        self.opened
    }
}

/// What became of a row pushed into [`HourFiles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered in the open file of its hour.
    Buffered,
    /// A file of the lake holds it already (a replay): not buffered again.
    AlreadyDurable,
}

/// Files rolled by [`HourFiles::seal`], the offset to commit once they are durable, and their
/// newest event time.
#[derive(Debug)]
pub struct Sealed {
    pub files: Vec<(RawFile, RecordBatch)>,
    pub next_offset: i64,
    pub newest_event_ms: Option<i64>,
}

/// A closed file, its rows and its newest event time.
type Closed = (RawFile, RecordBatch, i64);

/// The open raw files of one Kafka partition, one per event hour, each rolling on its own;
/// with the [`ReplayIndex`] of what the lake already holds, so that a replay neither writes a
/// row twice nor leaves two files of an hour overlapping.
///
/// Takes no time of its own: the caller passes the clock, so that tests and the worker's
/// injectable clock decide what "now" is.
#[derive(Debug)]
pub struct HourFiles {
    kind: Arc<KindSchema>,
    topic: Arc<str>,
    partition: i32,
    /// The open files, by event hour.
    open: BTreeMap<i64, OpenFile>,
    /// Open files cut short by a file of the lake that starts inside their range (a replay):
    /// written with the next seal.
    cut: Vec<Closed>,
    replay: ReplayIndex,
    /// The offset the last seal made committable: everything before it is durable once that
    /// flush is.
    sealed_to: Option<i64>,
}

impl HourFiles {
    /// The files of `topic`/`partition`, of `kind`, committed up to `committed` when assigned.
    pub fn new(
        kind: Arc<KindSchema>,
        topic: Arc<str>,
        partition: i32,
        replay: ReplayIndex,
        committed: Option<i64>,
    ) -> Self {
        HourFiles {
            kind,
            topic,
            partition,
            open: BTreeMap::new(),
            cut: Vec::new(),
            replay,
            sealed_to: committed,
        }
    }

    /// Buffers the valid row at `offset` in the open file of its event hour, unless a file of
    /// the lake holds it. `now` is asked only when the row opens a file (a clock read costs
    /// about as much as a decode).
    pub fn push_row(
        &mut self,
        row: &Row<'_>,
        offset: i64,
        ingested_at_ms: i64,
        now: impl FnOnce() -> Instant,
    ) -> Pushed {
        let hour = hour_of(row.observed_at_ms);
        if let Some(file_start) = self.replay.holder(hour, offset) {
            // A file of the lake starts inside the open file's range (a replay over a lost
            // file followed by one that was written): the open file ends just before it, so
            // that the files of an hour never overlap, which compaction relies on.
            if self.open.get(&hour).is_some_and(|f| f.start < file_start)
                && let Some(file) = self.open.remove(&hour)
            {
                let closed = self.close(hour, file, file_start - 1);
                self.cut.push(closed);
            }
            return Pushed::AlreadyDurable;
        }
        let file = self.open.entry(hour).or_insert_with(|| OpenFile {
            rows: RowBatchBuilder::new(self.kind.clone(), 1024),
            start: offset,
            opened: now(),
            newest_event_ms: row.observed_at_ms,
        });
        file.newest_event_ms = file.newest_event_ms.max(row.observed_at_ms);
        file.rows.push(
            row,
            Lineage {
                topic: &self.topic,
                partition: self.partition,
                offset,
                ingested_at_ms,
            },
        );
        Pushed::Buffered
    }

    /// Whether the DLQ already holds the reject of `offset`, by what the lake says.
    pub fn holds_reject(&self, offset: i64) -> bool {
        self.replay.holds_reject(offset)
    }

    /// Arrow bytes buffered, in open files and in files cut short.
    pub fn buffered_bytes(&self) -> usize {
        self.open.values().map(OpenFile::bytes).sum::<usize>()
            + self
                .cut
                .iter()
                .map(|(_, b, _)| b.get_array_memory_size())
                .sum::<usize>()
    }

    /// Arrow bytes of the largest open file, `None` when none is open.
    pub fn largest(&self) -> Option<usize> {
        self.open.values().map(OpenFile::bytes).max()
    }

    /// The open files, by event hour (hours since the epoch).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &OpenFile)> {
        self.open.iter().map(|(hour, file)| (*hour, file))
    }

    /// Rolls the open files `due` picks (by hour and file), with the partition at `position`
    /// (the offset after the last record handled): each becomes a file named by its first
    /// offset and `position - 1` (it holds every row of its hour in that range). Returns them
    /// with the offset to commit once they are durable: the first offset of the files still
    /// open, or `position` when none is. `None` when nothing rolled and that offset has not
    /// moved since the last seal.
    pub fn seal(&mut self, position: i64, mut due: impl FnMut(i64, &OpenFile) -> bool) -> Option<Sealed> {
        let rolling: Vec<i64> = self
            .open
            .iter()
            .filter(|(hour, file)| due(**hour, file))
            .map(|(hour, _)| *hour)
            .collect();
        let mut closed = std::mem::take(&mut self.cut);
        for hour in rolling {
            if let Some(file) = self.open.remove(&hour) {
                closed.push(self.close(hour, file, position - 1));
            }
        }
        let newest_event_ms = closed.iter().map(|c| c.2).max();
        let files: Vec<_> = closed.into_iter().map(|(file, batch, _)| (file, batch)).collect();
        // Open files start before the position: the commit waits at the oldest.
        let commit = self.open.values().map(|f| f.start).min().unwrap_or(position);
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
    fn close(&self, hour: i64, mut file: OpenFile, end: i64) -> Closed {
        let raw = RawFile {
            kind: self.kind.kind.clone(),
            hour,
            topic: self.topic.to_string(),
            partition: self.partition,
            start: file.start,
            end,
        };
        (raw, file.rows.finish(), file.newest_event_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rade_schema::{Catalog, DecodeLimits, Decoder};

    use super::*;

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_780_000_000_000 / HOUR * HOUR;

    /// The files of a partition of `noise`, and where it is (the offset after the last push).
    struct Partition {
        decoder: Decoder,
        files: HourFiles,
        position: i64,
        clock: Instant,
    }

    impl Partition {
        fn new(files: &[RawFile], committed: Option<i64>) -> Self {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
            let catalog = Arc::new(Catalog::load(&dir).expect("shipped catalog"));
            let kind = catalog.kind("noise").expect("noise").clone();
            let decoder = Decoder::new(catalog, kind.clone(), DecodeLimits::default());
            let replay = ReplayIndex::new(files, committed.unwrap_or(0), i64::MIN);
            Partition {
                decoder,
                files: HourFiles::new(kind, "t".into(), 0, replay, committed),
                position: committed.unwrap_or(0),
                clock: Instant::now(),
            }
        }

        fn push(&mut self, offset: i64, at: i64) -> Pushed {
            let json = format!(
                r#"{{"sensor_id":"n-1","observed_at":{at},"latitude":43.1,"longitude":5.9,"LAeq":55.0,"LAmax":null}}"#
            );
            let row = self.decoder.decode(Some(json.as_bytes()), at).expect("valid reading");
            self.position = offset + 1;
            let now = self.clock;
            self.files.push_row(&row, offset, at, || now)
        }

        fn seal(&mut self, due: impl FnMut(i64, &OpenFile) -> bool) -> Option<Sealed> {
            self.files.seal(self.position, due)
        }
    }

    #[test]
    fn files_roll_per_hour_and_the_commit_waits_for_the_oldest_open_file() {
        let mut s = Partition::new(&[], None);
        // Offsets alternate between two hours, as a late sensor's readings would.
        for offset in 0..4 {
            s.push(offset, T0 + (offset % 2) * HOUR + 1000);
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
        s.push(4, T0 + 2000);
        s.push(5, T0 + HOUR + 2000);
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
        let mut first = Partition::new(&[], None);
        for offset in 0..10 {
            first.push(offset, T0 + offset);
            if offset == 4 {
                let _lost = first.seal(|_, _| true).expect("rolled");
            }
        }
        let written = first.seal(|_, _| true).expect("rolled");
        let files: Vec<RawFile> = written.files.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(files.iter().map(|f| (f.start, f.end)).collect::<Vec<_>>(), vec![(5, 9)]);
        let mut replay = Partition::new(&files, Some(0));
        let handled: Vec<bool> = (0..12)
            .map(|offset| replay.push(offset, T0 + offset) == Pushed::Buffered)
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
        let mut first = Partition::new(&[], None);
        for offset in 0..6 {
            first.push(offset, T0 + (offset % 2) * HOUR);
        }
        // The second hour's file is written, the first hour's is not (a crash): commit at 0.
        let sealed = first.seal(|hour, _| hour == T0 / HOUR + 1).expect("rolled");
        assert_eq!(sealed.next_offset, 0);
        let files: Vec<RawFile> = sealed.files.iter().map(|(f, _)| f.clone()).collect();
        let mut replay = Partition::new(&files, Some(0));
        let mut buffered = Vec::new();
        for offset in 0..6 {
            if replay.push(offset, T0 + (offset % 2) * HOUR) == Pushed::Buffered {
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

    #[test]
    fn open_files_keep_the_time_they_were_given_and_report_their_sizes() {
        let mut s = Partition::new(&[], None);
        let t = s.clock;
        s.push(0, T0);
        s.clock = t + std::time::Duration::from_secs(5);
        s.push(1, T0 + 1);
        s.push(2, T0 + HOUR);
        let opened: Vec<_> = s
            .files
            .iter()
            .map(|(h, f)| (h - T0 / HOUR, f.start(), f.opened()))
            .collect();
        assert_eq!(
            opened,
            vec![(0, 0, t), (1, 2, s.clock)],
            "the clock is read when a file opens"
        );
        let sizes: Vec<usize> = s.files.iter().map(|(_, f)| f.bytes()).collect();
        assert_eq!(s.files.largest(), sizes.iter().copied().max());
        assert_eq!(s.files.buffered_bytes(), sizes.iter().sum::<usize>());
        // Rolling on age is the caller's decision, with its own clock.
        let later = t + std::time::Duration::from_secs(10);
        let sealed = s
            .seal(|_, f| later.duration_since(f.opened()).as_secs() >= 10)
            .expect("the older file rolled");
        assert_eq!(sealed.files.len(), 1);
        assert_eq!(sealed.next_offset, 2, "the commit waits for the file still open");
    }
}
