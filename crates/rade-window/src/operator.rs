use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use rade_schema::{Row, Value};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::alert::Alert;
use crate::eager::Quantity;
use crate::layout::KindLayout;
use crate::rules::{KindRules, RuleSet};
use crate::spec::WindowSpec;
use crate::{Error, Result};

mod alerting;
mod closed;
mod silence;
mod snapshot;

use closed::Closed;

/// Running statistics of one measurement in one window; merging is order-independent except
/// for first/last, which follow event time (ties: first arrival is first, last arrival last).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Stat {
    count: u32,
    sum: f64,
    min: f64,
    max: f64,
    first_at: i64,
    first: f64,
    last_at: i64,
    last: f64,
}

impl Stat {
    const EMPTY: Stat = Stat {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        first_at: i64::MAX,
        first: 0.0,
        last_at: i64::MIN,
        last: 0.0,
    };

    #[inline]
    fn add(&mut self, t: i64, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if t < self.first_at {
            self.first_at = t;
            self.first = v;
        }
        if t >= self.last_at {
            self.last_at = t;
            self.last = v;
        }
    }
}

/// An open window of one sensor; its statistics live in the sensor's `stats`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Head {
    /// Index of the window shape in the configuration.
    spec: u8,
    start: i64,
    records: u32,
}

/// One sensor: its open windows per window shape and its newest event time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SensorState {
    last_seen: i64,
    /// Whether a no-signal rule is raised for this sensor.
    silent: bool,
    /// Open windows of every shape, ordered by (shape, start).
    heads: SmallVec<[Head; 6]>,
    /// Statistics of `heads[k]` at `stats[k * measures..][..measures]`: one allocation per
    /// sensor, sized to the kind, touched once per reading.
    stats: Vec<Stat>,
    /// Last (event time, symbol) of each enum field of `heads[k]`, at `k * labels`.
    labels: Vec<Option<(i64, u32)>>,
    /// Whether the worker saw the sensor on another raw partition of its kind too.
    #[serde(default)]
    split: bool,
}

impl SensorState {
    /// Position of the window (`spec`, `start`), inserted empty when absent.
    #[inline]
    fn window(&mut self, spec: u8, start: i64, measures: usize, nlabels: usize) -> (usize, bool) {
        let pos = self.heads.partition_point(|h| (h.spec, h.start) < (spec, start));
        if self.heads.get(pos).is_some_and(|h| h.spec == spec && h.start == start) {
            return (pos, false);
        }
        self.heads.insert(
            pos,
            Head {
                spec,
                start,
                records: 0,
            },
        );
        if measures > 0 {
            self.stats.splice(
                pos * measures..pos * measures,
                std::iter::repeat_n(Stat::EMPTY, measures),
            );
        }
        if nlabels > 0 {
            self.labels
                .splice(pos * nlabels..pos * nlabels, std::iter::repeat_n(None, nlabels));
        }
        (pos, true)
    }

    /// Keeps the windows `keep` says to keep, in order.
    fn retain(&mut self, measures: usize, nlabels: usize, mut keep: impl FnMut(&Head) -> bool) {
        let mut w = 0;
        for r in 0..self.heads.len() {
            if !keep(&self.heads[r]) {
                continue;
            }
            if w != r {
                self.heads[w] = self.heads[r];
                self.stats.copy_within(r * measures..(r + 1) * measures, w * measures);
                self.labels.copy_within(r * nlabels..(r + 1) * nlabels, w * nlabels);
            }
            w += 1;
        }
        self.heads.truncate(w);
        self.stats.truncate(w * measures);
        self.labels.truncate(w * nlabels);
    }
}

/// An alert that is raised and not yet resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Raised {
    window_start: i64,
    window_end: i64,
}

/// Everything a partition's windows need to continue exactly where they stopped.
type Sensors = HashMap<String, SensorState, foldhash::fast::RandomState>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    sensors: Sensors,
    /// Windows ending at or before this event time are closed and emitted.
    closed_at: i64,
    /// Newest event time seen on the partition.
    max_event: Option<i64>,
    /// Raised alerts by (rule, sensor).
    alerts: BTreeMap<(String, String), Raised>,
    /// Event-time minute at which no-signal rules were last checked.
    silence_checked: i64,
}

/// What a valid record did to the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted in every window it belongs to.
    Counted,
    /// At least one of its windows had already closed at this watermark: reported as late.
    Late { closed_at: i64 },
}

/// The closed windows of one window shape, with their derived columns.
#[derive(Debug)]
pub struct ClosedWindows {
    pub window: String,
    pub batch: RecordBatch,
}

/// The event-time windows of one Kafka partition, with the alert state of its sensors.
///
/// Records of a sensor all arrive on one partition (raw topics are keyed by sensor id), so a
/// partition's windows and alerts move with the partition when the group rebalances: they are
/// saved with [`PartitionWindows::snapshot`] at every flush and restored on assignment.
pub struct PartitionWindows {
    topic: Arc<str>,
    partition: i32,
    specs: Arc<[WindowSpec]>,
    rules: Arc<KindRules>,
    state: State,
    /// Smallest end of an open window; nothing closes before the watermark reaches it.
    next_end: i64,
    /// Processing time of the newest record, for idleness.
    last_active_ms: i64,
    pending_alerts: Vec<Alert>,
    silence_step_ms: i64,
    /// Sensors silent this long, with no open window, are forgotten (with their alerts).
    forget_ms: i64,
    /// Whether the last reading observed was its sensor's first here.
    new_sensor: bool,
    /// Readings of sensors seen on another partition too, since the last take.
    split_readings: u64,
}

impl std::fmt::Debug for PartitionWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionWindows")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("sensors", &self.state.sensors.len())
            .finish()
    }
}

impl PartitionWindows {
    /// Empty windows for a partition of `kind`; `now_ms` starts its idleness clock.
    pub fn new(
        topic: Arc<str>,
        partition: i32,
        kind: &str,
        specs: Arc<[WindowSpec]>,
        rules: &RuleSet,
        now_ms: i64,
    ) -> Result<Self> {
        let rules = rules.kind(kind).cloned().ok_or_else(|| Error::Kind {
            kind: kind.into(),
            message: "not in the catalog".into(),
        })?;
        let silence_step_ms = specs.iter().map(|s| s.slide_ms).min().unwrap_or(60_000).min(60_000);
        Ok(PartitionWindows {
            topic,
            partition,
            specs,
            rules,
            state: State {
                closed_at: i64::MIN,
                silence_checked: i64::MIN,
                ..State::default()
            },
            next_end: i64::MAX,
            last_active_ms: now_ms,
            pending_alerts: Vec::new(),
            silence_step_ms,
            forget_ms: i64::MAX,
            new_sensor: false,
            split_readings: 0,
        })
    }

    fn layout(&self) -> &KindLayout {
        &self.rules.layout
    }

    /// Folds one valid record into its windows. `now_ms` is processing time.
    pub fn observe(&mut self, row: &Row<'_>, now_ms: i64) -> Observed {
        self.last_active_ms = now_ms;
        let t = row.observed_at_ms;
        self.state.max_event = self.state.max_event.max(Some(t));
        let Value::Str(sensor) = &row.values[self.rules.layout.sensor] else {
            return Observed::Counted;
        };
        let closed_at = self.state.closed_at;
        let layout = &self.rules.layout;
        let (measures, nlabels) = (layout.measures.len(), layout.labels.len());
        // One probe for a known sensor; a second only the first time a sensor is seen.
        let st = match self.state.sensors.get_mut(sensor.as_ref()) {
            Some(st) => st,
            None => self.state.sensors.entry(sensor.to_string()).or_insert_with(|| {
                self.new_sensor = true;
                SensorState {
                    last_seen: i64::MIN,
                    silent: false,
                    heads: SmallVec::new(),
                    stats: Vec::new(),
                    labels: Vec::new(),
                    split: false,
                }
            }),
        };
        self.split_readings += u64::from(st.split);
        let previous = st.last_seen;
        st.last_seen = st.last_seen.max(t);
        let mut late = false;
        // Windows in which an eager rule's condition now holds: (rule, window shape, start).
        let mut decided: SmallVec<[(usize, u8, i64); 2]> = SmallVec::new();
        for (s, spec) in self.specs.iter().enumerate() {
            if !self.rules.keeps(s) {
                continue;
            }
            for start in spec.starts(t) {
                let end = start + spec.size_ms;
                if end <= closed_at {
                    late = true;
                    continue;
                }
                let (k, created) = st.window(s as u8, start, measures, nlabels);
                if created {
                    self.next_end = self.next_end.min(end);
                }
                st.heads[k].records += 1;
                for (stat, &i) in st.stats[k * measures..(k + 1) * measures]
                    .iter_mut()
                    .zip(&layout.measures)
                {
                    let v = match row.values[i] {
                        Value::Double(v) => v,
                        Value::Float(v) => v as f64,
                        Value::Int(v) => v as f64,
                        Value::Long(v) => v as f64,
                        _ => continue,
                    };
                    stat.add(t, v);
                }
                for (label, &i) in st.labels[k * nlabels..(k + 1) * nlabels].iter_mut().zip(&layout.labels) {
                    if let Value::Symbol(sym) = row.values[i]
                        && label.is_none_or(|(at, _)| t >= at)
                    {
                        *label = Some((t, sym));
                    }
                }
                for &r in &self.rules.eager {
                    let rule = &self.rules.window_rules[r];
                    let stats = &st.stats[k * measures..(k + 1) * measures];
                    let records = st.heads[k].records;
                    if rule.spec == s
                        && rule.eager.as_ref().is_some_and(|m| {
                            m.holds(&|q| match q {
                                Quantity::Records => f64::from(records),
                                Quantity::Count(i) => f64::from(stats[i].count),
                                Quantity::Max(i) => stats[i].max,
                                Quantity::Min(i) => stats[i].min,
                            })
                        })
                    {
                        decided.push((r, s as u8, start));
                    }
                }
            }
        }
        if st.silent && t > previous {
            st.silent = false;
            let sensor = sensor.to_string();
            self.resolve_silence(&sensor, previous, t, now_ms);
        }
        if !decided.is_empty() {
            let sensor = sensor.to_string();
            for (rule, spec, start) in decided {
                self.raise_early(rule, &sensor, spec, start, now_ms);
            }
        }
        if late {
            Observed::Late { closed_at }
        } else {
            Observed::Counted
        }
    }

    /// The sensor id of a reading of the partition's kind.
    pub(crate) fn sensor_of<'r>(&self, row: &'r Row<'_>) -> Option<&'r str> {
        match row.values.get(self.rules.layout.sensor) {
            Some(Value::Str(s)) => Some(s.as_ref()),
            _ => None,
        }
    }

    /// Whether the last reading observed was its sensor's first on this partition; resets.
    pub(crate) fn take_new_sensor(&mut self) -> bool {
        std::mem::take(&mut self.new_sensor)
    }

    /// Marks `sensor` as seen on another partition too, when this partition knows it.
    pub(crate) fn mark_split(&mut self, sensor: &str) -> bool {
        match self.state.sensors.get_mut(sensor) {
            Some(st) => {
                st.split = true;
                true
            }
            None => false,
        }
    }

    /// Counts readings of split sensors (see [`PartitionWindows::take_split_readings`]).
    pub(crate) fn count_split(&mut self, n: u64) {
        self.split_readings += n;
    }

    /// Readings, since the last call, of sensors the worker also saw on another partition
    /// of their kind.
    pub fn take_split_readings(&mut self) -> u64 {
        std::mem::take(&mut self.split_readings)
    }

    /// Forgets sensors that sent nothing for `ms` of event time (none by default).
    pub fn with_forget_after(mut self, ms: i64) -> Self {
        self.forget_ms = ms.max(1);
        self
    }

    /// Newest event time seen, and processing time of the newest record.
    pub fn progress(&self) -> (Option<i64>, i64) {
        (self.state.max_event, self.last_active_ms)
    }

    /// Idle from now on, until its next record: at the end of the input, a partition that
    /// never delivered stops holding the watermark back.
    pub(crate) fn mark_idle(&mut self) {
        self.last_active_ms = i64::MIN / 2;
    }

    /// The lowest watermark at which [`PartitionWindows::close`] has more to do than move the
    /// close point: the end of the first open window, or the next no-signal check.
    pub(crate) fn next_due(&self) -> i64 {
        let next_check = self
            .state
            .silence_checked
            .saturating_add(1)
            .saturating_mul(self.silence_step_ms);
        self.next_end.min(next_check)
    }

    /// Whether alerts wait for [`PartitionWindows::take_alerts`].
    pub(crate) fn has_alerts(&self) -> bool {
        !self.pending_alerts.is_empty()
    }

    /// The kind of the partition's records.
    pub fn kind(&self) -> &str {
        &self.rules.layout.kind.kind
    }

    /// Closes every window that ends at or before `watermark`, computes derived columns,
    /// runs the rules and returns the closed windows per shape. Alerts are kept for
    /// [`PartitionWindows::take_alerts`].
    pub fn close(&mut self, watermark: i64, now_ms: i64) -> Vec<ClosedWindows> {
        if watermark <= self.state.closed_at {
            return Vec::new();
        }
        let due = watermark >= self.next_due();
        self.state.closed_at = watermark;
        if !due {
            return Vec::new();
        }
        let mut out = Vec::new();
        if watermark >= self.next_end {
            let PartitionWindows {
                state,
                specs,
                rules,
                topic,
                partition,
                ..
            } = self;
            let layout = &rules.layout;
            let mut closed: Vec<Closed<'_>> = specs.iter().map(|_| Closed::default()).collect();
            let mut next_end = i64::MAX;
            let (measures, nlabels) = (layout.measures.len(), layout.labels.len());
            for (sensor, st) in state.sensors.iter_mut() {
                let mut any = false;
                for (k, h) in st.heads.iter().enumerate() {
                    let spec = &specs[h.spec as usize];
                    if spec.closed_by(h.start, watermark) {
                        any = true;
                        closed[h.spec as usize].push(
                            sensor,
                            h,
                            &st.stats[k * measures..(k + 1) * measures],
                            &st.labels[k * nlabels..(k + 1) * nlabels],
                        );
                    } else {
                        next_end = next_end.min(h.start + spec.size_ms);
                    }
                }
                if any {
                    st.retain(measures, nlabels, |h| {
                        !specs[h.spec as usize].closed_by(h.start, watermark)
                    });
                }
            }
            let batches: Vec<(usize, RecordBatch)> = closed
                .into_iter()
                .enumerate()
                .filter(|(_, c)| !c.is_empty())
                .map(|(s, c)| (s, c.batch(layout, &specs[s], topic, *partition)))
                .collect();
            self.next_end = next_end;
            for (s, batch) in batches {
                let batch = self.rules.finish(batch);
                self.apply_rules(s, &batch, now_ms);
                out.push(ClosedWindows {
                    window: self.specs[s].label.clone(),
                    batch,
                });
            }
        }
        let minute = watermark.div_euclid(self.silence_step_ms);
        if minute > self.state.silence_checked {
            self.state.silence_checked = minute;
            self.check_silence(watermark, now_ms);
            self.forget_gone(watermark);
        }
        out
    }

    /// Alerts emitted since the last call, in order.
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.pending_alerts)
    }

    /// Watermark up to which windows are closed.
    pub fn closed_at(&self) -> i64 {
        self.state.closed_at
    }

    /// The longest window, in ms.
    pub fn longest_window_ms(&self) -> i64 {
        self.specs.iter().map(|s| s.size_ms).max().unwrap_or(0)
    }

    /// Open windows of every sensor, all shapes together.
    pub fn open_windows(&self) -> usize {
        self.state.sensors.values().map(|s| s.heads.len()).sum()
    }

    /// Sensors known to the partition.
    pub fn sensors(&self) -> usize {
        self.state.sensors.len()
    }
}

/// The watermark of a worker: the smallest of its partitions' newest event time minus the
/// allowed lateness. A partition that has delivered nothing for `idle_ms` does not count;
/// one that never delivered anything holds the watermark back until it is idle. `None` when
/// no partition can tell.
pub fn combined_watermark(
    partitions: impl Iterator<Item = (Option<i64>, i64)>,
    now_ms: i64,
    lateness_ms: i64,
    idle_ms: i64,
) -> Option<i64> {
    let mut wm: Option<i64> = None;
    for (max_event, last_active) in partitions {
        if now_ms - last_active >= idle_ms {
            continue;
        }
        let t = max_event?;
        let w = t - lateness_ms;
        wm = Some(wm.map_or(w, |m| m.min(w)));
    }
    wm
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arrow::array::Int64Array;
    use rade_schema::{Catalog, DecodeLimits, Decoder};

    use super::*;
    use crate::spec::WindowConfig;

    #[test]
    fn sensors_gone_for_longer_than_forget_after_are_forgotten() {
        let catalog =
            Arc::new(Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")).expect("schemas"));
        let specs: Arc<[WindowSpec]> = WindowConfig::default().specs().expect("specs").into();
        let rules = RuleSet::empty(&catalog, &specs).expect("rules");
        let day = 86_400_000;
        let mut w = PartitionWindows::new("t".into(), 0, "noise", specs, &rules, 0)
            .expect("windows")
            .with_forget_after(day);
        let kind = catalog.kind("noise").expect("noise").clone();
        let decoder = Decoder::new(catalog.clone(), kind, DecodeLimits::default());
        let t0 = 1_780_000_000_000i64;
        for (sensor, t) in [("gone", t0), ("here", t0), ("here", t0 + day + 3_600_000)] {
            let json =
                format!(r#"{{"sensor_id":"{sensor}","observed_at":{t},"latitude":43.1,"longitude":5.9,"LAeq":50}}"#);
            let row = decoder.decode(Some(json.as_bytes()), t).expect("valid");
            w.observe(&row, 0);
        }
        assert_eq!(w.sensors(), 2);
        // A day and two hours later every window of `gone` is closed: it is forgotten, `here` stays.
        w.close(t0 + day + 2 * 3_600_000, 0);
        assert_eq!(w.sensors(), 1);
    }

    #[test]
    fn open_windows_survive_a_field_added_to_the_kinds_schema() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let v1 = Arc::new(Catalog::load(&shipped).expect("schemas"));
        // noise version 2: a measured field `battery_pct` added.
        let dir = tempfile::tempdir().expect("tempdir");
        for e in std::fs::read_dir(&shipped).expect("schemas") {
            let p = e.expect("entry").path();
            std::fs::copy(&p, dir.path().join(p.file_name().expect("name"))).expect("copied");
        }
        let mut avsc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(shipped.join("noise.avsc")).expect("avsc")).expect("JSON");
        avsc["fields"].as_array_mut().expect("fields").push(serde_json::json!(
            {"name": "battery_pct", "type": ["null", "double"], "default": null}
        ));
        std::fs::write(dir.path().join("noise.v2.avsc"), avsc.to_string()).expect("written");
        let mut catalog = std::fs::read_to_string(shipped.join("catalog.toml")).expect("catalog");
        catalog.push_str("\n[[schema]]\nkind = \"noise\"\nid = 1104\nversion = 2\nfile = \"noise.v2.avsc\"\n");
        std::fs::write(dir.path().join("catalog.toml"), catalog).expect("written");
        let v2 = Arc::new(Catalog::load(dir.path()).expect("version 2 loads"));

        let specs: Arc<[WindowSpec]> = WindowConfig::default().specs().expect("specs").into();
        let t0 = 1_780_000_000_000i64;
        let reading = |catalog: &Arc<Catalog>, t: i64, extra: &str| {
            let kind = catalog.kind("noise").expect("noise").clone();
            let json =
                format!(r#"{{"sensor_id":"nz-1","observed_at":{t},"latitude":43.1,"longitude":5.9,"LAeq":50{extra}}}"#);
            let d = Decoder::new(catalog.clone(), kind, DecodeLimits::default());
            (d, json)
        };
        let mut before = PartitionWindows::new(
            "t".into(),
            0,
            "noise",
            specs.clone(),
            &RuleSet::empty(&v1, &specs).expect("rules"),
            0,
        )
        .expect("windows");
        let (d, json) = reading(&v1, t0, "");
        before.observe(&d.decode(Some(json.as_bytes()), t0).expect("valid"), 0);
        let saved = before.snapshot(1).expect("snapshot");

        let rules = RuleSet::empty(&v2, &specs).expect("rules");
        let mut after = PartitionWindows::new("t".into(), 0, "noise", specs, &rules, 0).expect("windows");
        assert_eq!(after.restore(&saved).expect("restored across the new version"), 1);
        assert_eq!(after.open_windows(), before.open_windows());
        let (d, json) = reading(&v2, t0 + 1000, r#","battery_pct":80"#);
        after.observe(&d.decode(Some(json.as_bytes()), t0 + 1000).expect("valid"), 0);
        let closed = after.close(t0 + 2 * 86_400_000, 0);
        let batch = &closed.first().expect("closed windows").batch;
        let int = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .map(|a| a.value(0))
        };
        // The reading before the switch is still in the window; the new field counts from it on.
        assert_eq!(int("LAeq_count"), Some(2));
        assert_eq!(int("battery_pct_count"), Some(1));
    }
}
