use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array,
    ArrayRef, Float64Builder, Int32Array, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondArray, TimestampMillisecondBuilder,
};
use rade_schema::{FieldType, Row, Value};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::alert::{Alert, AlertState, alert_id};
use crate::layout::KindLayout;
use crate::rules::{KindRules, RuleSet};
use crate::spec::WindowSpec;
use crate::template::{cell, number, rfc3339};
use crate::{Error, Result};

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

/// The partial aggregate of one sensor in one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Partial {
    start: i64,
    records: u32,
    stats: Box<[Stat]>,
    /// Last (event time, symbol) of each enum field.
    labels: Box<[Option<(i64, u32)>]>,
}

impl Partial {
    fn new(start: i64, layout: &KindLayout) -> Self {
        Partial {
            start,
            records: 0,
            stats: vec![Stat::EMPTY; layout.measures.len()].into(),
            labels: vec![None; layout.labels.len()].into(),
        }
    }

    #[inline]
    fn add(&mut self, row: &Row<'_>, layout: &KindLayout) {
        let t = row.observed_at_ms;
        self.records += 1;
        for (stat, &i) in self.stats.iter_mut().zip(&layout.measures) {
            let v = match row.values[i] {
                Value::Double(v) => v,
                Value::Float(v) => v as f64,
                Value::Int(v) => v as f64,
                Value::Long(v) => v as f64,
                _ => continue,
            };
            stat.add(t, v);
        }
        for (label, &i) in self.labels.iter_mut().zip(&layout.labels) {
            if let Value::Symbol(s) = row.values[i]
                && label.is_none_or(|(at, _)| t >= at)
            {
                *label = Some((t, s));
            }
        }
    }
}

/// One sensor: its open windows per window shape and its newest event time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SensorState {
    last_seen: i64,
    /// Whether a no-signal rule is raised for this sensor.
    silent: bool,
    windows: Box<[Vec<Partial>]>,
}

/// An alert that is raised and not yet resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Raised {
    window_start: i64,
    window_end: i64,
}

/// Everything a partition's windows need to continue exactly where they stopped.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    sensors: HashMap<String, SensorState>,
    /// Windows ending at or before this event time are closed and emitted.
    closed_at: i64,
    /// Newest event time seen on the partition.
    max_event: Option<i64>,
    /// Raised alerts by (rule, sensor).
    alerts: BTreeMap<(String, String), Raised>,
    /// Event-time minute at which no-signal rules were last checked.
    silence_checked: i64,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    kind: String,
    windows: Vec<String>,
    next_offset: i64,
    state: State,
}

const SNAPSHOT_VERSION: u32 = 1;

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
        let nspecs = self.specs.len();
        if !self.state.sensors.contains_key(sensor.as_ref()) {
            self.state.sensors.insert(
                sensor.to_string(),
                SensorState {
                    last_seen: i64::MIN,
                    silent: false,
                    windows: vec![Vec::new(); nspecs].into(),
                },
            );
        }
        let closed_at = self.state.closed_at;
        let layout = &self.rules.layout;
        let st = self.state.sensors.get_mut(sensor.as_ref()).expect("inserted above");
        let previous = st.last_seen;
        st.last_seen = st.last_seen.max(t);
        let mut late = false;
        for (spec, windows) in self.specs.iter().zip(st.windows.iter_mut()) {
            for start in spec.starts(t) {
                let end = start + spec.size_ms;
                if end <= closed_at {
                    late = true;
                    continue;
                }
                let i = match windows.binary_search_by_key(&start, |p| p.start) {
                    Ok(i) => i,
                    Err(i) => {
                        windows.insert(i, Partial::new(start, layout));
                        self.next_end = self.next_end.min(end);
                        i
                    }
                };
                windows[i].add(row, layout);
            }
        }
        if st.silent {
            st.silent = false;
            let sensor = sensor.to_string();
            self.resolve_silence(&sensor, previous, t, now_ms);
        }
        if late {
            Observed::Late { closed_at }
        } else {
            Observed::Counted
        }
    }

    /// Newest event time seen, and processing time of the newest record.
    pub fn progress(&self) -> (Option<i64>, i64) {
        (self.state.max_event, self.last_active_ms)
    }

    /// Closes every window that ends at or before `watermark`, computes derived columns,
    /// runs the rules and returns the closed windows per shape. Alerts are kept for
    /// [`PartitionWindows::take_alerts`].
    pub fn close(&mut self, watermark: i64, now_ms: i64) -> Vec<ClosedWindows> {
        if watermark <= self.state.closed_at {
            return Vec::new();
        }
        self.state.closed_at = watermark;
        let mut out = Vec::new();
        if watermark >= self.next_end {
            let mut rows: Vec<Vec<(String, Partial)>> = vec![Vec::new(); self.specs.len()];
            let mut next_end = i64::MAX;
            for (sensor, st) in self.state.sensors.iter_mut() {
                for ((spec, windows), out) in self.specs.iter().zip(st.windows.iter_mut()).zip(rows.iter_mut()) {
                    let n = windows.partition_point(|p| spec.closed_by(p.start, watermark));
                    out.extend(windows.drain(..n).map(|p| (sensor.clone(), p)));
                    if let Some(p) = windows.first() {
                        next_end = next_end.min(p.start + spec.size_ms);
                    }
                }
            }
            self.next_end = next_end;
            let mut batches = Vec::new();
            for (s, mut rows) in rows.into_iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                rows.sort_unstable_by(|a, b| (a.1.start, &a.0).cmp(&(b.1.start, &b.0)));
                batches.push((s, self.batch(&self.specs[s], &rows)));
            }
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
        }
        out
    }

    /// Alerts emitted since the last call, in order.
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.pending_alerts)
    }

    fn batch(&self, spec: &WindowSpec, rows: &[(String, Partial)]) -> RecordBatch {
        let layout = self.layout();
        let n = rows.len();
        let ts = |v: Vec<i64>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")) };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            ts(rows.iter().map(|r| r.1.start).collect()),
            ts(rows.iter().map(|r| r.1.start + spec.size_ms).collect()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.records as i64))),
        ];
        for m in 0..layout.measures.len() {
            let mut count = Int64Builder::with_capacity(n);
            let mut f: Vec<Float64Builder> = (0..6).map(|_| Float64Builder::with_capacity(n)).collect();
            let mut first_at = TimestampMillisecondBuilder::with_capacity(n);
            let mut last_at = TimestampMillisecondBuilder::with_capacity(n);
            for (_, p) in rows {
                let s = &p.stats[m];
                count.append_value(s.count as i64);
                if s.count == 0 {
                    f.iter_mut().for_each(|b| b.append_null());
                    first_at.append_null();
                    last_at.append_null();
                    continue;
                }
                // min, max, mean, sum, first, last
                for (b, v) in f
                    .iter_mut()
                    .zip([s.min, s.max, s.sum / s.count as f64, s.sum, s.first, s.last])
                {
                    b.append_value(v);
                }
                first_at.append_value(s.first_at);
                last_at.append_value(s.last_at);
            }
            let mut f: Vec<ArrayRef> = f.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef).collect();
            let last = f.pop().expect("six columns");
            let first = f.pop().expect("six columns");
            columns.push(Arc::new(count.finish()));
            columns.extend(f);
            columns.push(first);
            columns.push(Arc::new(first_at.finish().with_timezone("UTC")));
            columns.push(last);
            columns.push(Arc::new(last_at.finish().with_timezone("UTC")));
        }
        for (l, &i) in layout.labels.iter().enumerate() {
            let FieldType::Enum(symbols) = &layout.kind.fields[i].ty else {
                continue;
            };
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for (_, p) in rows {
                b.append_option(p.labels[l].and_then(|(_, s)| symbols.get(s as usize)));
            }
            columns.push(Arc::new(b.finish()));
        }
        columns.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            self.topic.as_ref(),
            n,
        ))));
        columns.push(Arc::new(Int32Array::from_value(self.partition, n)));
        RecordBatch::try_new(layout.schema.clone(), columns).expect("columns follow the kind's aggregate schema")
    }

    fn apply_rules(&mut self, spec: usize, batch: &RecordBatch, now_ms: i64) {
        let rules = self.rules.clone();
        let kind = &rules.layout.kind.kind;
        let sensors = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("sensor_id is the first column");
        let starts = time_column(batch, 1);
        let ends = time_column(batch, 2);
        for rule in rules.window_rules.iter().filter(|r| r.spec == spec) {
            let v = match rule.evaluate(batch) {
                Ok(v) => v,
                Err(e) => {
                    warn!(rule = %rule.name, error = %e, "rule failed on closed windows; skipped for them");
                    continue;
                }
            };
            for row in 0..batch.num_rows() {
                let sensor = sensors.value(row);
                let holds = v.condition.is_valid(row) && v.condition.value(row);
                let key = (rule.name.clone(), sensor.to_owned());
                let raised = self.state.alerts.contains_key(&key);
                let state = if !raised && holds {
                    AlertState::Raised
                } else if raised {
                    let cleared = match &v.clear {
                        Some(c) => c.is_valid(row) && c.value(row),
                        None => !holds,
                    };
                    if !cleared {
                        continue;
                    }
                    AlertState::Resolved
                } else {
                    continue;
                };
                let (start, end) = (starts[row], ends[row]);
                let value = v.value.as_ref().filter(|a| a.is_valid(row)).map(|a| a.value(row));
                let mut message = rule.message.render(&|name| match name {
                    "kind" => kind.clone(),
                    "value" => value.map(number).unwrap_or_else(|| "n/a".into()),
                    _ => cell(batch, name, row),
                });
                if state == AlertState::Resolved {
                    message.insert_str(0, "Resolved: ");
                }
                match state {
                    AlertState::Raised => {
                        self.state.alerts.insert(
                            key,
                            Raised {
                                window_start: start,
                                window_end: end,
                            },
                        );
                    }
                    AlertState::Resolved => {
                        self.state.alerts.remove(&key);
                    }
                }
                self.pending_alerts.push(Alert {
                    alert_id: alert_id(&rule.name, sensor, state, end),
                    rule: rule.name.clone(),
                    severity: rule.severity,
                    state,
                    sensor_id: sensor.to_owned(),
                    kind: kind.clone(),
                    window_start: start,
                    window_end: end,
                    observed_value: value,
                    condition: rule.condition_sql.clone(),
                    message,
                    emitted_at: now_ms,
                    source: Some((self.topic.clone(), self.partition)),
                });
            }
        }
    }

    fn check_silence(&mut self, watermark: i64, now_ms: i64) {
        let rules = self.rules.clone();
        if rules.silence_rules.is_empty() {
            return;
        }
        let kind = &rules.layout.kind.kind;
        let mut sensors: Vec<&String> = self.state.sensors.keys().collect();
        sensors.sort();
        let mut raise = Vec::new();
        for sensor in sensors {
            let st = &self.state.sensors[sensor];
            for rule in &rules.silence_rules {
                if watermark - st.last_seen < rule.after_ms {
                    continue;
                }
                let key = (rule.name.clone(), sensor.clone());
                if self.state.alerts.contains_key(&key) {
                    continue;
                }
                raise.push((rule, sensor.clone(), st.last_seen));
            }
        }
        for (rule, sensor, last_seen) in raise {
            let end = last_seen + rule.after_ms;
            let message = rule.message.render(&|name| match name {
                "sensor_id" => sensor.clone(),
                "kind" => kind.clone(),
                "last_seen" => rfc3339(last_seen),
                "silence" => humantime::format_duration(std::time::Duration::from_millis(rule.after_ms as u64)).to_string(),
                _ => String::new(),
            });
            self.state.alerts.insert(
                (rule.name.clone(), sensor.clone()),
                Raised {
                    window_start: last_seen,
                    window_end: end,
                },
            );
            if let Some(st) = self.state.sensors.get_mut(&sensor) {
                st.silent = true;
            }
            self.pending_alerts.push(Alert {
                alert_id: alert_id(&rule.name, &sensor, AlertState::Raised, end),
                rule: rule.name.clone(),
                severity: rule.severity,
                state: AlertState::Raised,
                sensor_id: sensor,
                kind: kind.clone(),
                window_start: last_seen,
                window_end: end,
                observed_value: None,
                condition: rule.condition_sql.clone(),
                message,
                emitted_at: now_ms,
                source: Some((self.topic.clone(), self.partition)),
            });
        }
    }

    /// A record from a sensor under a no-signal alert: the silence is over.
    fn resolve_silence(&mut self, sensor: &str, previous: i64, t: i64, now_ms: i64) {
        let rules = self.rules.clone();
        for rule in &rules.silence_rules {
            let key = (rule.name.clone(), sensor.to_owned());
            if self.state.alerts.remove(&key).is_none() {
                continue;
            }
            self.pending_alerts.push(Alert {
                alert_id: alert_id(&rule.name, sensor, AlertState::Resolved, t),
                rule: rule.name.clone(),
                severity: rule.severity,
                state: AlertState::Resolved,
                sensor_id: sensor.to_owned(),
                kind: rules.layout.kind.kind.clone(),
                window_start: previous,
                window_end: t,
                observed_value: None,
                condition: rule.condition_sql.clone(),
                message: format!("{sensor} sends again (silent since {})", rfc3339(previous)),
                emitted_at: now_ms,
                source: Some((self.topic.clone(), self.partition)),
            });
        }
    }

    /// Open windows of every sensor, all shapes together.
    pub fn open_windows(&self) -> usize {
        self.state
            .sensors
            .values()
            .map(|s| s.windows.iter().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// Sensors known to the partition.
    pub fn sensors(&self) -> usize {
        self.state.sensors.len()
    }

    /// The whole state, as of `next_offset`, compressed: what [`PartitionWindows::restore`] takes.
    pub fn snapshot(&self, next_offset: i64) -> Result<Vec<u8>> {
        #[derive(Serialize)]
        struct SnapshotRef<'a> {
            version: u32,
            kind: &'a str,
            windows: Vec<&'a str>,
            next_offset: i64,
            state: &'a State,
        }
        let snap = SnapshotRef {
            version: SNAPSHOT_VERSION,
            kind: &self.rules.layout.kind.kind,
            windows: self.specs.iter().map(|s| s.label.as_str()).collect(),
            next_offset,
            state: &self.state,
        };
        let mut cbor = Vec::new();
        ciborium::into_writer(&snap, &mut cbor).map_err(|e| Error::Snapshot(e.to_string()))?;
        zstd::encode_all(cbor.as_slice(), 1).map_err(|e| Error::Snapshot(e.to_string()))
    }

    /// Restores a snapshot taken by [`PartitionWindows::snapshot`]; returns the offset it
    /// was taken at. A snapshot of other windows or another kind is refused.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<i64> {
        let cbor = zstd::decode_all(bytes).map_err(|e| Error::Snapshot(e.to_string()))?;
        let snap: Snapshot = ciborium::from_reader(cbor.as_slice()).map_err(|e| Error::Snapshot(e.to_string()))?;
        let labels: Vec<&str> = self.specs.iter().map(|s| s.label.as_str()).collect();
        if snap.version != SNAPSHOT_VERSION || snap.kind != self.rules.layout.kind.kind || snap.windows != labels {
            return Err(Error::Snapshot(format!(
                "taken with kind {} and windows {:?}, now {} and {:?}",
                snap.kind, snap.windows, self.rules.layout.kind.kind, labels
            )));
        }
        let mut state = snap.state;
        let measures = self.layout().measures.len();
        let labels = self.layout().labels.len();
        let known: std::collections::HashSet<&str> = self
            .rules
            .window_rules
            .iter()
            .map(|r| r.name.as_str())
            .chain(self.rules.silence_rules.iter().map(|r| r.name.as_str()))
            .collect();
        // Alerts of rules that no longer exist are forgotten.
        state.alerts.retain(|(rule, _), _| known.contains(rule.as_str()));
        let mut next_end = i64::MAX;
        for s in state.sensors.values_mut() {
            for (spec, windows) in self.specs.iter().zip(s.windows.iter()) {
                if windows.iter().any(|p| p.stats.len() != measures || p.labels.len() != labels) {
                    return Err(Error::Snapshot("taken with another version of the kind's schema".into()));
                }
                if let Some(p) = windows.first() {
                    next_end = next_end.min(p.start + spec.size_ms);
                }
            }
            s.silent = false;
        }
        for (rule, sensor) in state.alerts.keys() {
            if self.rules.silence_rules.iter().any(|r| &r.name == rule)
                && let Some(s) = state.sensors.get_mut(sensor)
            {
                s.silent = true;
            }
        }
        self.state = state;
        self.next_end = next_end;
        Ok(snap.next_offset)
    }
}

fn time_column(batch: &RecordBatch, i: usize) -> Vec<i64> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default()
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
        let Some(t) = max_event else {
            return None;
        };
        let w = t - lateness_ms;
        wm = Some(wm.map_or(w, |m| m.min(w)));
    }
    wm
}
