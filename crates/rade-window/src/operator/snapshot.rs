//! A partition's windows saved at each flush and restored on assignment, surviving a field
//! added to the kind's schema.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{PartitionWindows, Raised, Sensors, Stat, State};
use crate::{Error, Result};

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    kind: String,
    windows: Vec<String>,
    next_offset: i64,
    state: State,
    /// The measured and enum fields the state's statistics follow, in order; absent in the
    /// snapshots of earlier releases, which are taken as of the current layout.
    #[serde(default)]
    measures: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

const SNAPSHOT_VERSION: u32 = 2;

impl PartitionWindows {
    /// The whole state, as of `next_offset`, compressed: what [`PartitionWindows::restore`] takes.
    pub fn snapshot(&self, next_offset: i64) -> Result<Vec<u8>> {
        self.snapshot_closed_at(next_offset, self.state.closed_at)
    }

    /// [`PartitionWindows::snapshot`], closed up to `closed_at` (at least its own close point):
    /// a [`crate::WindowSet`] moves the close point of partitions with nothing due lazily.
    pub(crate) fn snapshot_closed_at(&self, next_offset: i64, closed_at: i64) -> Result<Vec<u8>> {
        /// [`State`] by reference, serialized exactly like it.
        #[derive(Serialize)]
        struct StateRef<'a> {
            sensors: &'a Sensors,
            closed_at: i64,
            max_event: Option<i64>,
            alerts: &'a BTreeMap<(String, String), Raised>,
            silence_checked: i64,
        }
        #[derive(Serialize)]
        struct SnapshotRef<'a> {
            version: u32,
            kind: &'a str,
            windows: Vec<&'a str>,
            next_offset: i64,
            state: StateRef<'a>,
            measures: Vec<String>,
            labels: Vec<String>,
        }
        let (measures, labels) = self.layout().field_names();
        let snap = SnapshotRef {
            version: SNAPSHOT_VERSION,
            kind: &self.rules.layout.kind.kind,
            windows: self.specs.iter().map(|s| s.label.as_str()).collect(),
            next_offset,
            state: StateRef {
                sensors: &self.state.sensors,
                closed_at: closed_at.max(self.state.closed_at),
                max_event: self.state.max_event,
                alerts: &self.state.alerts,
                silence_checked: self.state.silence_checked,
            },
            measures,
            labels,
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
        // A snapshot taken before the kind's schema gained (or lost) a field: statistics
        // follow their field by name, and a new field starts empty in the open windows.
        let (now_measures, now_labels) = self.layout().field_names();
        if let Some(old) = snap.measures.as_deref()
            && old != now_measures.as_slice()
        {
            let map = positions(old, &now_measures);
            for s in state.sensors.values_mut() {
                s.stats = remap(&s.stats, s.heads.len(), old.len(), &map, Stat::EMPTY)?;
            }
        }
        if let Some(old) = snap.labels.as_deref()
            && old != now_labels.as_slice()
        {
            let map = positions(old, &now_labels);
            for s in state.sensors.values_mut() {
                s.labels = remap(&s.labels, s.heads.len(), old.len(), &map, None)?;
            }
        }
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
            if s.stats.len() != s.heads.len() * measures
                || s.labels.len() != s.heads.len() * labels
                || s.heads.iter().any(|h| h.spec as usize >= self.specs.len())
            {
                return Err(Error::Snapshot(
                    "taken with another version of the kind's schema".into(),
                ));
            }
            for h in &s.heads {
                next_end = next_end.min(h.start + self.specs[h.spec as usize].size_ms);
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

/// For each field now, its position among the snapshot's fields.
fn positions(old: &[String], now: &[String]) -> Vec<Option<usize>> {
    now.iter().map(|n| old.iter().position(|o| o == n)).collect()
}

/// Per-window values laid out `old` per head, rearranged to follow the fields now.
fn remap<T: Copy>(values: &[T], heads: usize, old: usize, map: &[Option<usize>], empty: T) -> Result<Vec<T>> {
    if values.len() != heads * old {
        return Err(Error::Snapshot(
            "taken with another version of the kind's schema".into(),
        ));
    }
    let mut out = Vec::with_capacity(heads * map.len());
    for k in 0..heads {
        out.extend(map.iter().map(|m| m.map_or(empty, |o| values[k * old + o])));
    }
    Ok(out)
}
