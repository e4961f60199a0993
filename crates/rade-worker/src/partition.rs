use std::sync::Arc;
use std::time::Instant;

use rade_lake::{HourFiles, OpenFile, Pushed, ReplayIndex, Sealed};
use rade_schema::{Decoder, Row};

use crate::windows::FoldBatch;

/// The state of one assigned partition: its position, what it holds for the DLQ and the
/// windows, and its open raw files (owned by the lake crate's [`HourFiles`]).
pub(crate) struct PartitionState {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) decoder: Decoder,
    /// Offset after the last record handled; committed once the flush holding it is durable.
    pub(crate) next_offset: Option<i64>,
    /// Committed offset when the partition was assigned.
    pub(crate) start_offset: Option<i64>,
    /// The partition's position in its raw table as this worker last read or sealed it: the
    /// next commit expects it there (another value means another member owns it now).
    pub(crate) table_position: Option<i64>,
    /// The open files, by event hour; each rolls on its own (size, age, watermark).
    files: HourFiles,
    /// Newest event time seen since the partition was assigned.
    pub(crate) max_event_ms: Option<i64>,
    /// Whether the partition has windows (they live on the window thread).
    pub(crate) windows: bool,
    /// Records before this offset are already in the restored window state and the lake.
    pub(crate) skip_before: i64,
    /// Valid readings not sent to the window thread yet.
    pub(crate) fold: FoldBatch,
    /// Rejects of this partition found in the DLQ when it was assigned (sent by a worker that
    /// stopped before committing them): not sent again.
    pub(crate) dlq_held: crate::dlq_tail::Held,
}

impl PartitionState {
    pub(crate) fn new(
        topic: Arc<str>,
        partition: i32,
        decoder: Decoder,
        start_offset: Option<i64>,
        replay: ReplayIndex,
        windows: bool,
        skip_before: i64,
    ) -> Self {
        let files = HourFiles::new(decoder.kind().clone(), topic.clone(), partition, replay, start_offset);
        PartitionState {
            topic,
            partition,
            decoder,
            next_offset: None,
            start_offset,
            table_position: None,
            files,
            max_event_ms: None,
            windows,
            skip_before,
            fold: FoldBatch::default(),
            dlq_held: Default::default(),
        }
    }

    fn advance(&mut self, offset: i64) {
        self.next_offset = Some(offset + 1);
    }

    /// Buffers a valid row unless the lake already holds it; `now` is read only when the row
    /// opens a file.
    pub(crate) fn push_row(
        &mut self,
        row: &Row<'_>,
        offset: i64,
        ingested_at_ms: i64,
        now: impl FnOnce() -> Instant,
    ) -> Pushed {
        self.advance(offset);
        let pushed = self.files.push_row(row, offset, ingested_at_ms, now);
        if pushed == Pushed::Buffered {
            self.max_event_ms = self.max_event_ms.max(Some(row.observed_at_ms));
        }
        pushed
    }

    /// Records a reject; returns false when an earlier run already sent it to the DLQ.
    pub(crate) fn push_reject(&mut self, offset: i64) -> bool {
        self.advance(offset);
        !self.dlq_holds(offset)
    }

    /// Whether the DLQ already has the reject of `offset`: acknowledged before a file or a
    /// commit said so, or found there when the partition was assigned.
    pub(crate) fn dlq_holds(&self, offset: i64) -> bool {
        self.files.holds_reject(offset) || self.dlq_held.contains_key(&offset)
    }

    /// Arrow bytes buffered.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.files.buffered_bytes()
    }

    /// Arrow bytes of the largest open file, `None` when none is open.
    pub(crate) fn largest_open_file(&self) -> Option<usize> {
        self.files.largest()
    }

    /// The open files, by event hour.
    pub(crate) fn open_files(&self) -> impl Iterator<Item = (i64, &OpenFile)> {
        self.files.iter()
    }

    /// Rolls the open files `due` picks (see [`HourFiles::seal`]) at the partition's position;
    /// `None` before the partition has a position, or when there is nothing to flush.
    pub(crate) fn seal(&mut self, due: impl FnMut(i64, &OpenFile) -> bool) -> Option<Sealed> {
        let position = self.position()?;
        self.files.seal(position, due)
    }

    /// The offset the window state of a flush is taken at.
    pub(crate) fn position(&self) -> Option<i64> {
        self.next_offset.or(self.start_offset)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rade_lake::RawFile;
    use rade_schema::{Catalog, DecodeLimits};

    use super::*;

    const T0: i64 = 1_780_000_000_000 / 3_600_000 * 3_600_000;

    /// The rolling itself is tested in rade-lake (`rolling.rs`); here, what the worker keeps.
    #[test]
    fn the_position_the_newest_event_and_the_rejects_the_dlq_holds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let catalog = Arc::new(Catalog::load(&dir).expect("shipped catalog"));
        let kind = catalog.kind("noise").expect("noise").clone();
        let decoder = Decoder::new(catalog, kind, DecodeLimits::default());
        // The lake holds [10, 11] of the first hour; the partition was committed at 10.
        let held = RawFile {
            kind: "noise".into(),
            hour: T0 / 3_600_000,
            topic: "t".into(),
            partition: 0,
            start: 10,
            end: 11,
        };
        let replay = ReplayIndex::new(&[held], 10, i64::MIN);
        let mut s = PartitionState::new("t".into(), 0, decoder.clone(), Some(10), replay, false, i64::MIN);
        assert_eq!(s.position(), Some(10));
        let now = Instant::now();
        let push = |s: &mut PartitionState, offset: i64, at: i64| {
            let json = format!(
                r#"{{"sensor_id":"n-1","observed_at":{at},"latitude":43.1,"longitude":5.9,"LAeq":55.0,"LAmax":null}}"#
            );
            let row = decoder.decode(Some(json.as_bytes()), at).expect("valid reading");
            s.push_row(&row, offset, at, || now)
        };
        assert_eq!(push(&mut s, 10, T0 + 5), Pushed::AlreadyDurable);
        assert_eq!(s.max_event_ms, None, "a durable row is not new");
        assert!(!s.push_reject(11), "the lake's file says the DLQ has it");
        s.dlq_held.insert(13, (0, 0));
        assert!(!s.push_reject(13), "found in the DLQ when assigned");
        assert!(s.push_reject(14));
        assert_eq!(push(&mut s, 15, T0 + 7), Pushed::Buffered);
        assert_eq!(s.max_event_ms, Some(T0 + 7));
        assert_eq!(s.position(), Some(16));
        assert_eq!(s.open_files().map(|(_, f)| f.start()).collect::<Vec<_>>(), vec![15]);
        let sealed = s.seal(|_, _| true).expect("rolled");
        assert_eq!(sealed.files[0].0.start, 15);
        assert_eq!(sealed.next_offset, 16);
        assert_eq!(s.largest_open_file(), None);
    }
}
