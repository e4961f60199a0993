//! Window rules and the alert lifecycle: the verdicts of the rules on closed windows, the
//! eager rules' early raise on an open window, and the RAISED / RESOLVED state per (rule,
//! sensor).

use arrow::array::{Array, RecordBatch, StringArray};
use tracing::warn;

use super::closed::{Closed, time_column};
use super::{PartitionWindows, Raised};
use crate::alert::{Alert, AlertState, alert_id};
use crate::rules::{Verdicts, WindowRule};
use crate::template::{cell, number};

/// The window a row of closed (or open) windows is about.
#[derive(Clone, Copy)]
struct Window<'a> {
    sensor: &'a str,
    start: i64,
    end: i64,
}

impl PartitionWindows {
    pub(super) fn apply_rules(&mut self, spec: usize, batch: &RecordBatch, now_ms: i64) {
        let rules = self.rules.clone();
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
                let raised = self.state.alerts.get(&(rule.name.clone(), sensor.to_owned()));
                let state = match raised {
                    None if holds => AlertState::Raised,
                    None => continue,
                    // Raised by an eager rule in a later window: an earlier one cannot clear it.
                    Some(r) if ends[row] < r.window_end => continue,
                    Some(_) => {
                        let cleared = match &v.clear {
                            Some(c) => c.is_valid(row) && c.value(row),
                            None => !holds,
                        };
                        if !cleared {
                            continue;
                        }
                        AlertState::Resolved
                    }
                };
                let window = Window {
                    sensor,
                    start: starts[row],
                    end: ends[row],
                };
                self.emit(rule, &v, batch, row, window, state, now_ms);
            }
        }
    }

    /// An eager rule's condition holds of the window (`spec`, `start`) of `sensor` so far:
    /// raises its alert now, unless it is raised already. The alert is the one the window's
    /// close would raise, with the values the window has at this reading.
    pub(super) fn raise_early(&mut self, rule: usize, sensor: &str, spec: u8, start: i64, now_ms: i64) {
        let rules = self.rules.clone();
        let rule = &rules.window_rules[rule];
        if self.state.alerts.contains_key(&(rule.name.clone(), sensor.to_owned())) {
            return;
        }
        let Some(st) = self.state.sensors.get(sensor) else {
            return;
        };
        let Some(k) = st.heads.iter().position(|h| h.spec == spec && h.start == start) else {
            return;
        };
        let layout = &rules.layout;
        let (measures, nlabels) = (layout.measures.len(), layout.labels.len());
        let mut open = Closed::default();
        open.push(
            sensor,
            &st.heads[k],
            &st.stats[k * measures..(k + 1) * measures],
            &st.labels[k * nlabels..(k + 1) * nlabels],
        );
        let spec = &self.specs[spec as usize];
        let batch = rules.finish(open.batch(layout, spec, &self.topic, self.partition));
        let v = match rule.evaluate(&batch) {
            Ok(v) => v,
            Err(e) => {
                warn!(rule = %rule.name, error = %e, "eager rule failed on an open window; left to its close");
                return;
            }
        };
        // The SQL has the last word, as it will at the close.
        if !(v.condition.is_valid(0) && v.condition.value(0)) {
            return;
        }
        let window = Window {
            sensor,
            start,
            end: start + spec.size_ms,
        };
        self.emit(rule, &v, &batch, 0, window, AlertState::Raised, now_ms);
    }

    /// Records the alert state change of `rule` for row `row` of `batch` and queues its alert.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        rule: &WindowRule,
        v: &Verdicts,
        batch: &RecordBatch,
        row: usize,
        window: Window<'_>,
        state: AlertState,
        now_ms: i64,
    ) {
        let kind = &self.rules.layout.kind.kind;
        let Window { sensor, start, end } = window;
        let value = v.value.as_ref().filter(|a| a.is_valid(row)).map(|a| a.value(row));
        let mut message = rule.message.render(&|name| match name {
            "kind" => kind.clone(),
            "value" => value.map(number).unwrap_or_else(|| "n/a".into()),
            _ => cell(batch, name, row),
        });
        let key = (rule.name.clone(), sensor.to_owned());
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
                message.insert_str(0, "Resolved: ");
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
