//! What the lake already holds for a partition, so that a replay skips exactly its rows.

use crate::layout::RawFile;

/// What the lake already holds for one Kafka partition, read when the partition is assigned:
/// which rows a replay skips, and below which offset its rejects are in the DLQ.
///
/// Raw file names are deterministic from the offsets they cover, so a file of the lake says
/// which rows are durable whatever happened to the commit that should have followed it.
#[derive(Debug, Clone)]
pub struct ReplayIndex {
    /// (hour, start, end) of every raw file of this partition still ahead of the replay.
    files: Vec<(i64, i64, i64)>,
    max_end: i64,
    /// Rejects before this offset are in the DLQ: the last commit's metadata or the saved
    /// window state says so (both are written after their flush's rejects are acknowledged).
    acked_before: i64,
    /// Every row before this offset is in a file the table has committed: its position there.
    durable_before: i64,
}

impl Default for ReplayIndex {
    /// Nothing durable: every row and every reject is new.
    fn default() -> Self {
        ReplayIndex {
            files: Vec::new(),
            max_end: -1,
            acked_before: i64::MIN,
            durable_before: i64::MIN,
        }
    }
}

impl ReplayIndex {
    /// The raw `files` of the partition that end at or after `from_offset` (its committed
    /// offset); `acked_before`: the offset below which rejects are known to be in the DLQ
    /// (`i64::MIN` when nothing says so).
    pub fn new(files: &[RawFile], from_offset: i64, acked_before: i64) -> Self {
        let files: Vec<_> = files
            .iter()
            .filter(|f| f.end >= from_offset)
            .map(|f| (f.hour, f.start, f.end))
            .collect();
        let max_end = files.iter().map(|f| f.2).max().unwrap_or(-1);
        ReplayIndex {
            files,
            max_end,
            acked_before,
            durable_before: i64::MIN,
        }
    }

    /// The table's position of the partition (its `txn` version): every row before it is in a
    /// committed file, whatever that file's name (compaction renames them), and every reject
    /// before it is in the DLQ (acknowledged before the commit).
    pub fn with_table_position(mut self, position: Option<i64>) -> Self {
        if let Some(p) = position {
            self.durable_before = self.durable_before.max(p);
            self.acked_before = self.acked_before.max(p);
        }
        self
    }

    /// The first offset of the file of `hour` that holds the row at `offset`, if one does: a
    /// file holds every row of its range and hour (the files of an hour never overlap).
    pub(crate) fn holder(&self, hour: i64, offset: i64) -> Option<i64> {
        if offset < self.durable_before {
            // No open file starts before it: nothing to cut.
            return Some(i64::MIN);
        }
        if offset > self.max_end {
            return None;
        }
        self.files
            .iter()
            .find(|&&(h, s, e)| h == hour && s <= offset && offset <= e)
            .map(|&(_, s, _)| s)
    }

    /// Whether the reject of `offset` is in the DLQ already: any file of the partition ends at
    /// or after it (a flush writes its files only after the DLQ acknowledged its rejects and
    /// every earlier flush's), or the last commit or window state said so.
    pub fn holds_reject(&self, offset: i64) -> bool {
        offset <= self.max_end || offset < self.acked_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(hour: i64, start: i64, end: i64) -> RawFile {
        RawFile {
            kind: "noise".into(),
            hour,
            topic: "t".into(),
            partition: 0,
            start,
            end,
        }
    }

    #[test]
    fn rows_are_held_by_the_file_of_their_hour_and_range() {
        let index = ReplayIndex::new(&[file(1, 0, 4), file(2, 3, 9), file(1, 10, 12)], 2, i64::MIN);
        assert_eq!(index.holder(1, 4), Some(0));
        assert_eq!(index.holder(2, 4), Some(3));
        assert_eq!(index.holder(2, 10), None, "offset 10 of hour 2 is in no file");
        assert_eq!(index.holder(1, 13), None);
        // Files behind the committed offset are not ahead of the replay.
        let index = ReplayIndex::new(&[file(1, 0, 4)], 5, i64::MIN);
        assert_eq!(index.holder(1, 4), None);
    }

    #[test]
    fn rejects_are_held_up_to_the_last_file_or_the_acknowledged_offset() {
        let index = ReplayIndex::new(&[file(1, 0, 4)], 0, 7);
        assert!(index.holds_reject(4) && index.holds_reject(6));
        assert!(!index.holds_reject(7));
        let nothing = ReplayIndex::default();
        assert!(!nothing.holds_reject(0) && nothing.holder(0, 0).is_none());
    }
}
