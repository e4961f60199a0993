//! Sensors that go silent: the no-signal rules, their resolution when a sensor speaks again,
//! and forgetting sensors gone for longer than `forget_after`.

use super::{PartitionWindows, Raised};
use crate::alert::{Alert, AlertState, alert_id};
use crate::template::rfc3339;

impl PartitionWindows {
    /// Forgets the sensors silent for `forget_after` with no open window, and their alerts,
    /// so that state follows the sensors that exist, not every id ever seen.
    pub(super) fn forget_gone(&mut self, watermark: i64) {
        if self.forget_ms == i64::MAX {
            return;
        }
        let forget = self.forget_ms;
        let before = self.state.sensors.len();
        self.state
            .sensors
            .retain(|_, st| !(st.heads.is_empty() && watermark.saturating_sub(st.last_seen) >= forget));
        if self.state.sensors.len() < before {
            let sensors = &self.state.sensors;
            self.state.alerts.retain(|(_, sensor), _| sensors.contains_key(sensor));
            tracing::info!(
                topic = %self.topic,
                partition = self.partition,
                forgotten = before - self.state.sensors.len(),
                "sensors silent longer than windows.forget_after forgotten"
            );
        }
    }

    pub(super) fn check_silence(&mut self, watermark: i64, now_ms: i64) {
        let rules = self.rules.clone();
        if rules.silence_rules.is_empty() {
            return;
        }
        let kind = &rules.layout.kind.kind;
        let mut raise = Vec::new();
        for (sensor, st) in &self.state.sensors {
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
        // In sensor order, whatever the hash map's.
        raise.sort_by(|a, b| (&a.1, &a.0.name).cmp(&(&b.1, &b.0.name)));
        for (rule, sensor, last_seen) in raise {
            let end = last_seen + rule.after_ms;
            let message = rule.message.render(&|name| match name {
                "sensor_id" => sensor.clone(),
                "kind" => kind.clone(),
                "last_seen" => rfc3339(last_seen),
                "silence" => {
                    humantime::format_duration(std::time::Duration::from_millis(rule.after_ms as u64)).to_string()
                }
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
    pub(super) fn resolve_silence(&mut self, sensor: &str, previous: i64, t: i64, now_ms: i64) {
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
}
