//! [`WindowSet`]: the windows of every partition a worker holds, driven by one watermark.
//!
//! This is the one place that decides when a reading is late and when windows close; the
//! worker, the golden tests and the window benchmark all drive it the same way, so the golden
//! files prove what production runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rade_schema::Row;

use crate::alert::Alert;
use crate::operator::{ClosedWindows, Observed, PartitionWindows};
use crate::rules::RuleSet;
use crate::spec::{WindowConfig, WindowSpec};
use crate::{Error, Result};

/// A Kafka partition: topic and partition number.
pub type PartitionKey = (Arc<str>, i32);

/// What [`WindowSet::fold`] did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    /// Counted in every window it belongs to.
    OnTime,
    /// At least one window it belongs to had closed already (its partition is closed up to
    /// `closed_at`): counted in the windows still open, and to be reported as late.
    Late { closed_at: i64 },
    /// The partition is not assigned: nothing was done.
    Unassigned,
}

/// What [`WindowSet::take_output`] hands over for one partition.
pub type PartitionOutput = (PartitionKey, Vec<ClosedWindows>, Vec<Alert>);

struct Slot {
    windows: PartitionWindows,
    /// Closed windows not taken yet, in the order they closed.
    closed: Vec<ClosedWindows>,
    /// Whether the partition counted in the last computation of the watermark (it was not idle).
    counted: bool,
    /// Whether the partition is in `WindowSet::with_output`.
    listed: bool,
}

/// The windows of many partitions, with the watermark that closes them.
///
/// Every reading is judged and every window closed exactly as if the watermark were
/// recomputed after each reading, whatever the size of the caller's batches or how often it
/// calls [`WindowSet::tick`]: after each [`WindowSet::fold`] the combined watermark is brought
/// up to date and every partition whose windows are due closes at once.
///
/// The watermark is the smallest, over the partitions assigned now, of the newest event time
/// minus the allowed lateness. A partition that delivered nothing for `idle_timeout`
/// (processing time) does not count; one that never delivered holds it back until it is idle,
/// or until [`WindowSet::end_of_input`]. Being recomputed over the partitions assigned now, the
/// watermark goes down when a partition behind the others is assigned; each partition's own
/// close point ([`WindowSet::closed_at`]) only grows.
pub struct WindowSet {
    specs: Arc<[WindowSpec]>,
    rules: Arc<RuleSet>,
    lateness_ms: i64,
    idle_ms: i64,
    forget_ms: i64,
    parts: HashMap<PartitionKey, Slot, foldhash::fast::RandomState>,
    /// The combined watermark as of `computed_at`; kept up to date by every call that can
    /// move it, so a reading that moves nothing costs a few comparisons.
    watermark: Option<i64>,
    /// Processing time of the last computation of the watermark.
    computed_at: i64,
    /// Processing time of the latest call that told it.
    now_ms: i64,
    /// No later than the first moment a counted partition turns idle: the watermark is
    /// recomputed once `now` reaches it.
    recompute_at: i64,
    /// Whether the last computation left an idle partition out.
    any_idle: bool,
    /// Every partition is closed up to at least this. Moving a close point is applied lazily
    /// while it stays below `next_due` (nothing to emit): to the folded partition before its
    /// reading is judged, and by every read of a close point.
    closed_through: i64,
    /// No more than the lowest watermark at which some partition has windows to close or a
    /// no-signal check to run.
    next_due: i64,
    /// Partitions with closed windows or alerts not taken yet.
    with_output: Vec<PartitionKey>,
}

impl std::fmt::Debug for WindowSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowSet")
            .field("partitions", &self.parts.len())
            .field("watermark", &self.watermark)
            .finish()
    }
}

/// A configured duration in ms; a duration too long for i64 is taken as forever.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WindowSet {
    /// No partition yet; the windows, lateness, idle timeout and forget delay come from `config`.
    pub fn new(specs: Arc<[WindowSpec]>, rules: Arc<RuleSet>, config: &WindowConfig) -> Self {
        WindowSet {
            specs,
            rules,
            lateness_ms: millis(config.allowed_lateness),
            idle_ms: millis(config.idle_timeout),
            forget_ms: millis(config.forget_after),
            parts: HashMap::default(),
            watermark: None,
            computed_at: i64::MIN,
            now_ms: i64::MIN,
            recompute_at: i64::MIN,
            any_idle: false,
            closed_through: i64::MIN,
            next_due: i64::MIN,
            with_output: Vec::new(),
        }
    }

    /// Assigns a partition of `kind`: fresh windows, or those of a snapshot taken by
    /// [`WindowSet::snapshot`]. Returns the offset the snapshot was taken at, `None` when fresh.
    ///
    /// A partition assigned already is replaced. When the snapshot cannot be restored, or the
    /// kind is unknown, nothing changes and the error is returned (the caller may then assign
    /// fresh windows). `now_ms` starts the partition's idleness clock. The watermark is
    /// recomputed but nothing closes here: the next fold or tick closes, once every partition
    /// of a rebalance is assigned.
    pub fn assign(
        &mut self,
        topic: Arc<str>,
        partition: i32,
        kind: &str,
        saved: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let mut windows =
            PartitionWindows::new(topic.clone(), partition, kind, self.specs.clone(), &self.rules, now_ms)?
                .with_forget_after(self.forget_ms);
        let offset = saved.map(|bytes| windows.restore(bytes)).transpose()?;
        self.insert((topic, partition), windows, now_ms);
        Ok(offset)
    }

    /// Assigns a partition with windows the caller made, as [`WindowSet::assign`] does: the
    /// worker restores them from the lake itself, because it weighs the snapshot's offset
    /// against the partition's before trusting it.
    pub fn insert(&mut self, key: PartitionKey, windows: PartitionWindows, now_ms: i64) {
        // The lazy close point must not reach the new partition: apply it to the others first.
        let through = self.closed_through;
        for slot in self.parts.values_mut() {
            slot.windows.close(through, now_ms);
        }
        self.closed_through = self.closed_through.min(windows.closed_at());
        self.next_due = self.next_due.min(windows.next_due());
        self.remove(&key);
        self.parts.insert(
            key,
            Slot {
                windows,
                closed: Vec::new(),
                counted: false,
                listed: false,
            },
        );
        self.recompute(now_ms);
    }

    /// Forgets a partition (revoked), with its closed windows and alerts not taken yet.
    /// Returns whether it was assigned.
    pub fn remove(&mut self, key: &PartitionKey) -> bool {
        let Some(slot) = self.parts.remove(key) else {
            return false;
        };
        if slot.listed {
            self.with_output.retain(|k| k != key);
        }
        // Without it the watermark can only rise; idleness as of the latest call.
        self.recompute(self.now_ms);
        true
    }

    /// Folds one valid reading of partition `key` into its windows, at processing time
    /// `now_ms`, then closes whatever the watermark it moves has made due, in every partition.
    pub fn fold(&mut self, key: &PartitionKey, row: &Row<'_>, now_ms: i64) -> Folded {
        let Some(slot) = self.parts.get_mut(key) else {
            return Folded::Unassigned;
        };
        // Nothing is due below `closed_through`: this only moves the close point.
        slot.windows.close(self.closed_through, now_ms);
        let (before, _) = slot.windows.progress();
        let observed = slot.windows.observe(row, now_ms);
        let new_sensor = slot.windows.take_new_sensor();
        // A new window may end before the others.
        self.next_due = self.next_due.min(slot.windows.next_due());
        if slot.windows.has_alerts() && !slot.listed {
            slot.listed = true;
            self.with_output.push(key.clone());
        }
        let t = row.observed_at_ms;
        // The watermark moves only when this partition starts counting again, when its newest
        // event grows while it may be the one holding the watermark, or when another
        // partition's idleness changes with the clock.
        let moved = !slot.counted
            || match (before, self.watermark) {
                (None, _) => true,
                (Some(before), Some(w)) => t > before && before.saturating_sub(self.lateness_ms) <= w,
                // Held back by another partition that never delivered.
                (Some(_), None) => false,
            };
        self.now_ms = now_ms;
        // This partition turns idle at `now_ms + idle` now, perhaps before the time known.
        self.recompute_at = self.recompute_at.min(now_ms.saturating_add(self.idle_ms));
        if moved || self.clock_matters(now_ms) {
            self.recompute(now_ms);
        }
        self.close_due(now_ms);
        if new_sensor {
            self.note_new_sensor(key, row);
        }
        match observed {
            Observed::Counted => Folded::OnTime,
            Observed::Late { closed_at } => Folded::Late { closed_at },
        }
    }

    /// A sensor's first reading on partition `key`: when another partition of its kind knows
    /// the sensor, its windows are split across partitions (its producer does not key by
    /// sensor id, or the topic's partitions grew); both mark it, and its readings are counted
    /// from now on.
    fn note_new_sensor(&mut self, key: &PartitionKey, row: &Row<'_>) {
        let Some(slot) = self.parts.get(key) else {
            return;
        };
        let Some(sensor) = slot.windows.sensor_of(row) else {
            return;
        };
        let kind = slot.windows.kind().to_owned();
        let mut elsewhere = false;
        for (other_key, other) in self.parts.iter_mut() {
            if other_key != key && other.windows.kind() == kind {
                elsewhere |= other.windows.mark_split(sensor);
            }
        }
        if elsewhere && let Some(slot) = self.parts.get_mut(key) {
            slot.windows.mark_split(sensor);
            slot.windows.count_split(1);
        }
    }

    /// Readings of partition `key`, since the last call, of sensors also seen on another
    /// partition of their kind (windows split across partitions).
    pub fn take_split_readings(&mut self, key: &PartitionKey) -> u64 {
        self.parts.get_mut(key).map_or(0, |s| s.windows.take_split_readings())
    }

    /// Input is idle: partitions idle for `idle_timeout` by `now_ms` stop counting, and what
    /// that makes due closes.
    pub fn tick(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        if self.clock_matters(now_ms) {
            self.recompute(now_ms);
        }
        self.close_due(now_ms);
    }

    /// Every assigned partition is read to its end: those that never delivered a reading stop
    /// holding the watermark back (until they deliver one), and what that makes due closes.
    pub fn end_of_input(&mut self, now_ms: i64) {
        for slot in self.parts.values_mut() {
            if slot.windows.progress().0.is_none() {
                slot.windows.mark_idle();
            }
        }
        self.recompute(now_ms);
        self.close_due(now_ms);
    }

    /// The windows closed and alerts emitted since the last call, per partition with any, in
    /// (topic, partition) order; each partition's in the order they happened.
    pub fn take_output(&mut self) -> Vec<PartitionOutput> {
        let mut keys = std::mem::take(&mut self.with_output);
        keys.sort_unstable();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(slot) = self.parts.get_mut(&key) else {
                continue;
            };
            slot.listed = false;
            let closed = std::mem::take(&mut slot.closed);
            let alerts = slot.windows.take_alerts();
            if !closed.is_empty() || !alerts.is_empty() {
                out.push((key, closed, alerts));
            }
        }
        out
    }

    /// The state of partition `key` as of `next_offset`, compressed: what [`WindowSet::assign`]
    /// restores. Closed windows and alerts not taken are not in it: take them first.
    pub fn snapshot(&self, key: &PartitionKey, next_offset: i64) -> Result<Vec<u8>> {
        self.parts
            .get(key)
            .ok_or_else(|| Error::Unassigned {
                topic: key.0.to_string(),
                partition: key.1,
            })?
            .windows
            .snapshot_closed_at(next_offset, self.closed_through)
    }

    /// The combined watermark as of the last fold, tick, assignment or removal; `None` while
    /// no partition can tell (none assigned, or one that never delivered holds it back).
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Event time up to which the windows of partition `key` are closed (`i64::MIN` before the
    /// first close).
    pub fn closed_at(&self, key: &PartitionKey) -> Option<i64> {
        self.parts
            .get(key)
            .map(|s| s.windows.closed_at().max(self.closed_through))
    }

    /// The longest window, in ms.
    pub fn longest_window_ms(&self) -> i64 {
        self.specs.iter().map(|s| s.size_ms).max().unwrap_or(0)
    }

    /// The window shapes, in configuration order.
    pub fn specs(&self) -> &Arc<[WindowSpec]> {
        &self.specs
    }

    /// Partitions assigned.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Whether partition `key` is assigned.
    pub fn contains(&self, key: &PartitionKey) -> bool {
        self.parts.contains_key(key)
    }

    /// The kind of partition `key`'s records.
    pub fn kind(&self, key: &PartitionKey) -> Option<&str> {
        self.parts.get(key).map(|s| s.windows.kind())
    }

    /// Sensors known to partition `key`.
    pub fn sensors(&self, key: &PartitionKey) -> Option<usize> {
        self.parts.get(key).map(|s| s.windows.sensors())
    }

    /// Open windows of partition `key`, all sensors and shapes together.
    pub fn open_windows(&self, key: &PartitionKey) -> Option<usize> {
        self.parts.get(key).map(|s| s.windows.open_windows())
    }

    /// Whether `now_ms` may change which partitions are idle since the last computation: a
    /// counted one may have turned idle, or the clock went back and an idle one may count again.
    fn clock_matters(&self, now_ms: i64) -> bool {
        now_ms >= self.recompute_at || (now_ms < self.computed_at && self.any_idle)
    }

    /// The combined watermark at `now_ms`, over the partitions assigned now.
    fn recompute(&mut self, now_ms: i64) {
        let mut watermark: Option<i64> = None;
        let mut held = false;
        let mut recompute_at = i64::MAX;
        let mut any_idle = false;
        for slot in self.parts.values_mut() {
            let (newest, active_at) = slot.windows.progress();
            let idle_at = active_at.saturating_add(self.idle_ms);
            slot.counted = now_ms < idle_at;
            if !slot.counted {
                any_idle = true;
                continue;
            }
            recompute_at = recompute_at.min(idle_at);
            match newest {
                Some(t) => {
                    let w = t.saturating_sub(self.lateness_ms);
                    watermark = Some(watermark.map_or(w, |m| m.min(w)));
                }
                None => held = true,
            }
        }
        self.watermark = if held { None } else { watermark };
        self.computed_at = now_ms;
        self.now_ms = now_ms;
        self.recompute_at = recompute_at;
        self.any_idle = any_idle;
    }

    /// Closes, in every partition, the windows the watermark has passed.
    fn close_due(&mut self, now_ms: i64) {
        let Some(watermark) = self.watermark else {
            return;
        };
        if watermark <= self.closed_through {
            return;
        }
        self.closed_through = watermark;
        // Most readings move the watermark a little and make nothing due: the close points of
        // the partitions then move lazily, and a reading costs no pass over the partitions.
        if watermark < self.next_due {
            return;
        }
        let mut next_due = i64::MAX;
        for (key, slot) in self.parts.iter_mut() {
            let closed = slot.windows.close(watermark, now_ms);
            if (!closed.is_empty() || slot.windows.has_alerts()) && !slot.listed {
                slot.listed = true;
                self.with_output.push(key.clone());
            }
            slot.closed.extend(closed);
            next_due = next_due.min(slot.windows.next_due());
        }
        self.next_due = next_due;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rade_schema::{Catalog, DecodeLimits, Decoder};

    use super::*;
    use crate::operator::combined_watermark;

    /// An hour boundary, so that windows of every shape start there.
    const T0: i64 = 1_779_998_400_000;
    const MIN: i64 = 60_000;
    const LATENESS: i64 = 60_000;
    const IDLE: i64 = 30_000;

    struct Fixture {
        set: WindowSet,
        decoder: Decoder,
    }

    fn key(p: i32) -> PartitionKey {
        ("tpm.raw.water_level".into(), p)
    }

    fn fixture() -> Fixture {
        let catalog =
            Arc::new(Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")).expect("schemas"));
        let config = WindowConfig {
            windows: vec!["1m".into(), "15m".into()],
            allowed_lateness: Duration::from_millis(LATENESS as u64),
            idle_timeout: Duration::from_millis(IDLE as u64),
            ..WindowConfig::default()
        };
        let specs: Arc<[WindowSpec]> = config.specs().expect("specs").into();
        let rules = Arc::new(RuleSet::empty(&catalog, &specs).expect("rules"));
        let kind = catalog.kind("water_level").expect("water_level").clone();
        Fixture {
            set: WindowSet::new(specs, rules, &config),
            decoder: Decoder::new(catalog, kind, DecodeLimits::default()),
        }
    }

    impl Fixture {
        fn assign(&mut self, p: i32, now: i64) {
            let k = key(p);
            assert_eq!(
                self.set.assign(k.0, k.1, "water_level", None, now).expect("assigned"),
                None
            );
        }

        /// Folds a reading of sensor `s` at event time `t`, at processing time `now`.
        fn fold(&mut self, p: i32, s: &str, t: i64, now: i64) -> Folded {
            let json =
                format!(r#"{{"sensor_id":"{s}","observed_at":{t},"latitude":43.1,"longitude":5.9,"height":50}}"#);
            let row = self.decoder.decode(Some(json.as_bytes()), t).expect("valid");
            self.set.fold(&key(p), &row, now)
        }

        /// Closed window rows taken, per partition.
        fn closed_rows(&mut self) -> BTreeMap<i32, usize> {
            let mut rows = BTreeMap::new();
            for ((_, p), closed, _) in self.set.take_output() {
                *rows.entry(p).or_default() += closed.iter().map(|c| c.batch.num_rows()).sum::<usize>();
            }
            rows
        }
    }

    use std::collections::BTreeMap;

    #[test]
    fn a_partition_behind_the_others_lowers_the_watermark_but_no_close_point() {
        let mut f = fixture();
        f.assign(0, 0);
        f.fold(0, "a", T0, 0);
        f.fold(0, "a", T0 + 10 * MIN, 0);
        let ahead = T0 + 10 * MIN - LATENESS;
        assert_eq!(f.set.watermark(), Some(ahead));
        assert_eq!(f.set.closed_at(&key(0)), Some(ahead));
        assert_eq!(f.closed_rows().get(&0), Some(&1), "the first minute of `a` closed");

        // A partition assigned now, that has not delivered yet, holds the watermark back.
        f.assign(1, 1_000);
        assert_eq!(f.set.watermark(), None);
        // Its first reading is five minutes behind: the watermark goes down to it...
        assert_eq!(f.fold(1, "b", T0 + 5 * MIN, 1_000), Folded::OnTime);
        assert_eq!(f.set.watermark(), Some(T0 + 5 * MIN - LATENESS));
        // ...while partition 0 stays closed where it was: its windows never reopen.
        assert_eq!(f.set.closed_at(&key(0)), Some(ahead));
        assert_eq!(f.fold(0, "a", T0 + 2 * MIN, 1_000), Folded::Late { closed_at: ahead });
        assert_eq!(f.set.closed_at(&key(1)), Some(T0 + 5 * MIN - LATENESS));
    }

    #[test]
    fn an_idle_partition_stops_holding_the_watermark_back_until_it_delivers() {
        let mut f = fixture();
        f.assign(0, 0);
        f.assign(1, 0);
        f.fold(1, "b", T0, 0);
        f.fold(0, "a", T0, 0);
        f.fold(0, "a", T0 + 10 * MIN, 20_000);
        assert_eq!(f.set.watermark(), Some(T0 - LATENESS), "partition 1 holds it back");
        // Partition 1 has delivered nothing for the idle timeout.
        f.set.tick(IDLE - 1);
        assert_eq!(f.set.watermark(), Some(T0 - LATENESS));
        f.set.tick(IDLE);
        let ahead = T0 + 10 * MIN - LATENESS;
        assert_eq!(f.set.watermark(), Some(ahead));
        // Every partition closes at the watermark, the idle one too.
        assert_eq!(f.set.closed_at(&key(0)), Some(ahead));
        assert_eq!(f.set.closed_at(&key(1)), Some(ahead));
        assert_eq!(f.closed_rows(), BTreeMap::from([(0, 1), (1, 1)]));
        // Back, behind the others: it counts again and lowers the watermark, but its windows
        // closed while it was idle stay closed.
        assert_eq!(
            f.fold(1, "b", T0 + 5 * MIN, IDLE + 1),
            Folded::Late { closed_at: ahead }
        );
        assert_eq!(f.set.watermark(), Some(T0 + 5 * MIN - LATENESS));
        assert_eq!(f.set.closed_at(&key(0)), Some(ahead));
        assert_eq!(f.set.closed_at(&key(1)), Some(ahead));
    }

    #[test]
    fn at_the_end_of_input_a_partition_that_never_delivered_stops_holding_back() {
        let mut f = fixture();
        f.assign(0, 0);
        f.assign(1, 0);
        f.fold(0, "a", T0, 0);
        f.fold(0, "a", T0 + 10 * MIN, 0);
        f.set.tick(1);
        assert_eq!(f.set.watermark(), None);
        assert!(f.closed_rows().is_empty());
        f.set.end_of_input(2);
        assert_eq!(f.set.watermark(), Some(T0 + 10 * MIN - LATENESS));
        assert_eq!(f.closed_rows().get(&0), Some(&1));
        // Until it delivers: then it counts like any other.
        f.fold(1, "b", T0 + 9 * MIN, 3);
        assert_eq!(f.set.watermark(), Some(T0 + 9 * MIN - LATENESS));
    }

    #[test]
    fn a_removed_partition_no_longer_counts_nor_folds() {
        let mut f = fixture();
        f.assign(0, 0);
        f.assign(1, 0);
        f.fold(0, "a", T0 + 10 * MIN, 0);
        f.fold(1, "b", T0, 0);
        assert_eq!(f.set.watermark(), Some(T0 - LATENESS));
        assert!(f.set.remove(&key(1)));
        assert!(!f.set.remove(&key(1)));
        assert_eq!(f.set.partitions(), 1);
        assert_eq!(f.set.watermark(), Some(T0 + 10 * MIN - LATENESS));
        assert_eq!(f.fold(1, "b", T0 + MIN, 1), Folded::Unassigned);
        // The next tick closes what the removal made due.
        f.set.tick(1);
        assert_eq!(f.set.closed_at(&key(0)), Some(T0 + 10 * MIN - LATENESS));
        assert!(matches!(
            f.set.snapshot(&key(1), 0),
            Err(Error::Unassigned { partition: 1, .. })
        ));
    }

    #[test]
    fn a_snapshot_restores_the_windows_where_they_stopped() {
        let mut f = fixture();
        f.assign(0, 0);
        for (i, t) in [T0, T0 + 30_000, T0 + 3 * MIN, T0 + 4 * MIN].into_iter().enumerate() {
            f.fold(0, &format!("s{}", i % 2), t, 0);
        }
        let saved = f.set.snapshot(&key(0), 42).expect("snapshot");

        let mut g = fixture();
        let k = key(0);
        assert_eq!(
            g.set
                .assign(k.0.clone(), 0, "water_level", Some(&saved), 5)
                .expect("restored"),
            Some(42)
        );
        assert_eq!(g.set.closed_at(&k), f.set.closed_at(&k));
        assert_eq!(g.set.sensors(&k), Some(2));
        assert_eq!(g.set.open_windows(&k), f.set.open_windows(&k));
        assert_eq!(g.set.watermark(), f.set.watermark());
        // Closed windows stay closed after the restart.
        let closed_at = f.set.closed_at(&k).expect("assigned");
        assert_eq!(g.fold(0, "s0", T0 + 30_000, 5), Folded::Late { closed_at });
        // A snapshot of another kind is refused, and nothing is assigned.
        let other = g.set.assign("tpm.raw.x".into(), 3, "noise", Some(&saved), 5);
        assert!(matches!(other, Err(Error::Snapshot(_))), "{other:?}");
        assert_eq!(g.set.partitions(), 1);
        assert_eq!(
            g.set.assign("tpm.raw.x".into(), 3, "noise", Some(b"not zstd"), 5).ok(),
            None
        );
        assert_eq!(g.set.partitions(), 1);
    }

    #[test]
    fn a_reading_is_late_when_the_oldest_window_holding_it_has_closed() {
        let mut f = fixture();
        f.assign(0, 0);
        f.fold(0, "a", T0 + 10 * MIN + LATENESS, 0);
        let closed_at = T0 + 10 * MIN;
        assert_eq!(f.set.closed_at(&key(0)), Some(closed_at));
        // The 1m window [T0+9m, T0+10m) has closed; [T0+10m, T0+11m) has not.
        assert_eq!(f.fold(0, "a", closed_at - 1, 0), Folded::Late { closed_at });
        assert_eq!(f.fold(0, "a", closed_at, 0), Folded::OnTime);
    }

    /// The cached watermark is the one computed from scratch over every partition after each
    /// call, whatever the order of events, clock jumps included; close points and lateness are
    /// those of closing every partition at once after each call.
    #[test]
    fn the_cached_watermark_is_the_combined_watermark_after_every_call() {
        let mut f = fixture();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: i64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as i64
        };
        // Each partition's close point, closed eagerly after every call that closes.
        let mut model: BTreeMap<i32, i64> = BTreeMap::new();
        let (mut late_readings, mut idle_calls) = (0, 0);
        let mut now = 0;
        for step in 0..5_000 {
            // The time of the latest call that tells one: mostly forward, sometimes back a
            // little (a wall clock set back).
            let at = now + next(20_000) - 2_000;
            let p = next(4) as i32;
            let op = next(20);
            let assigned = f.set.contains(&key(p));
            match op {
                0 if !assigned => {
                    f.assign(p, at);
                    model.insert(p, i64::MIN);
                }
                0 => continue,
                1 => {
                    f.set.remove(&key(p));
                    model.remove(&p);
                }
                2 | 3 => f.set.tick(at),
                4 => f.set.end_of_input(at),
                _ if !assigned => {
                    assert_eq!(f.fold(p, "a", T0, at), Folded::Unassigned);
                    continue;
                }
                _ => {
                    let t = T0 + step * 1_000 - next(300_000);
                    // The worker's rule: late when the oldest window holding the reading, of
                    // any shape (here 1m and 15m), ends at or before the close point.
                    let closed_at = model[&p];
                    let late = [MIN, 15 * MIN]
                        .iter()
                        .any(|&slide| t.div_euclid(slide) * slide + slide <= closed_at);
                    late_readings += usize::from(late);
                    let expected = if late {
                        Folded::Late { closed_at }
                    } else {
                        Folded::OnTime
                    };
                    assert_eq!(f.fold(p, "a", t, at), expected, "step {step}");
                }
            }
            if op != 1 {
                now = at;
            }
            let progress = f.set.parts.values().map(|s| s.windows.progress());
            let from_scratch = combined_watermark(progress, now, LATENESS, IDLE);
            idle_calls += usize::from(f.set.any_idle);
            assert_eq!(f.set.watermark(), from_scratch, "step {step}");
            // Folds and ticks close at once; assignments and removals wait for them.
            if let Some(w) = from_scratch.filter(|_| op >= 2) {
                for c in model.values_mut() {
                    *c = (*c).max(w);
                }
            }
            for (p, closed_at) in &model {
                assert_eq!(f.set.closed_at(&key(*p)), Some(*closed_at), "step {step}");
            }
        }
        // The walk went through late readings and idle partitions.
        assert!(
            late_readings > 100 && idle_calls > 100,
            "{late_readings} late, {idle_calls} idle"
        );
    }

    /// The shipped windows and rules over water_level's partition 0.
    fn gauges() -> (WindowSet, Decoder) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let catalog = Arc::new(Catalog::load(&root.join("schemas")).expect("schemas"));
        let config = WindowConfig::default();
        let specs: Arc<[WindowSpec]> = config.specs().expect("specs").into();
        let rules = Arc::new(RuleSet::load(&root.join("rules"), &catalog, &specs).expect("shipped rules"));
        let mut set = WindowSet::new(specs, rules, &config);
        set.assign("tpm.raw.water_level".into(), 0, "water_level", None, 0)
            .expect("assigned");
        let kind = catalog.kind("water_level").expect("water_level").clone();
        (set, Decoder::new(catalog, kind, DecodeLimits::default()))
    }

    #[test]
    fn an_eager_rule_raises_at_the_crossing_reading_and_its_window_close_does_not_raise_again() {
        let (mut set, decoder) = gauges();
        let key: PartitionKey = ("tpm.raw.water_level".into(), 0);
        // What a reading of gauge g1 let out: flood alerts as "<state> <rule> <window end -
        // T0 in s> <value>", closed 1-minute windows as "closed <rows>".
        let fold = |set: &mut WindowSet, t: i64, height: f64| -> Vec<String> {
            let json = format!(
                r#"{{"sensor_id":"g1","observed_at":{t},"latitude":43.1,"longitude":5.9,"height":{height},"flow":null}}"#
            );
            let row = decoder.decode(Some(json.as_bytes()), t).expect("valid");
            assert_eq!(set.fold(&key, &row, t), Folded::OnTime);
            let mut out = Vec::new();
            for (_, closed, alerts) in set.take_output() {
                for a in alerts.iter().filter(|a| a.rule.starts_with("flood")) {
                    let end = (a.window_end - T0) / 1000;
                    out.push(format!("{} {} {end} {:?}", a.state.as_str(), a.rule, a.observed_value));
                }
                for c in closed.iter().filter(|c| c.window == "1m") {
                    out.push(format!("closed {}", c.batch.num_rows()));
                }
            }
            out
        };
        assert!(fold(&mut set, T0, 100.0).is_empty());
        assert!(fold(&mut set, T0 + 20_000, 200.0).is_empty());
        // 260 cm crosses flood_warning's 250 while the minute [T0, T0 + 1 min) is open (the
        // watermark is 40 s less one minute of lateness): raised now, with the window so far.
        assert_eq!(
            fold(&mut set, T0 + 40_000, 260.0),
            ["RAISED flood_warning 60 Some(260.0)"]
        );
        assert_eq!(set.watermark(), Some(T0 + 40_000 - LATENESS));
        assert!(fold(&mut set, T0 + 50_000, 270.0).is_empty(), "raised once");
        // The minute closes at T0 + 2 min: its row, and no second RAISED.
        assert_eq!(fold(&mut set, T0 + 2 * MIN, 240.0), ["closed 1"]);
        // Cleared below 230 by the close of a later minute, as without eagerness: the minute
        // from T0 + 2 min holds 240 (kept), the one from T0 + 3 min 200 (cleared).
        assert!(fold(&mut set, T0 + 3 * MIN + 10_000, 200.0).is_empty());
        assert_eq!(
            fold(&mut set, T0 + 5 * MIN, 200.0),
            ["RESOLVED flood_warning 240 Some(200.0)", "closed 2"]
        );
    }

    #[test]
    fn an_eager_condition_that_could_turn_false_stops_the_rules_from_loading() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let catalog = Catalog::load(&root.join("schemas")).expect("schemas");
        let specs = WindowConfig::default().specs().expect("specs");
        for (rule, expected) in [
            (
                "name = \"mean_flood\"\nkinds = [\"water_level\"]\nwindow = \"1m\"\ncondition = \"height_mean >= 250\"",
                "rule `mean_flood`: condition (kind water_level): eager: `height_mean >= Int64(250)` can turn false",
            ),
            (
                "name = \"quiet\"\nno_signal = \"5m\"",
                "rule `quiet`: a no_signal rule has no window, condition, clear, value or eager",
            ),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(
                dir.path().join("eager.toml"),
                format!("[[rule]]\n{rule}\neager = true\nseverity = \"warning\"\nmessage = \"m\"\n"),
            )
            .expect("write");
            let err = RuleSet::load(dir.path(), &catalog, &specs)
                .expect_err("refused")
                .to_string();
            assert!(err.contains("eager.toml") && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn readings_of_a_sensor_seen_on_two_partitions_are_counted() {
        let mut f = fixture();
        f.assign(0, 0);
        f.assign(1, 0);
        f.fold(0, "s1", T0, 0);
        f.fold(0, "s2", T0 + 1_000, 0);
        assert_eq!(f.set.take_split_readings(&key(0)), 0, "one partition each so far");
        // s1 shows up on partition 1 too (an unkeyed producer): this reading and every later
        // one of s1, on either partition, is counted; s2 stays on partition 0.
        f.fold(1, "s1", T0 + 2_000, 0);
        f.fold(0, "s1", T0 + 3_000, 0);
        f.fold(0, "s2", T0 + 4_000, 0);
        f.fold(1, "s1", T0 + 5_000, 0);
        assert_eq!(f.set.take_split_readings(&key(1)), 2);
        assert_eq!(f.set.take_split_readings(&key(0)), 1);
        assert_eq!(f.set.take_split_readings(&key(0)), 0, "taken");
    }
}
