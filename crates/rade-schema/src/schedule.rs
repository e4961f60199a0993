//! How the devices of a kind report, declared beside its schema in `catalog.toml`:
//!
//! ```toml
//! [schedule.water_level]
//! every = "5m"        # a reading every 5 minutes...
//! in_event = "1m"     # ...and every minute during an event (a flood)
//!
//! [schedule.parking_bay]
//! on_change = true    # a reading on each change of state...
//! heartbeat = "1h"    # ...and at least one an hour when nothing changes
//! ```
//!
//! The simulator's devices follow their schedule, and the `missed_heartbeats` of a no-signal
//! rule is counted in the kind's [`Schedule::heartbeat`]. A schedule may also say which of the
//! configured windows the kind keeps (`windows = ["15m", "1h"]`): a parking bay that reports
//! on change needs no 1-minute window.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// How the devices of one kind report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Reports on each change of state (with a heartbeat) rather than periodically.
    pub on_change: bool,
    /// The period of a periodic device; the heartbeat of an on-change device.
    pub every: Duration,
    /// The faster period during an event (flood, pollution episode), when the kind has one.
    pub in_event: Option<Duration>,
    /// The windows the kind keeps, as labels (`15m`, `1h_every_15m`); `None`: every
    /// configured window. The window crate reads the labels.
    pub windows: Option<Vec<String>>,
}

impl Schedule {
    /// The longest gap a healthy device of the kind leaves between two readings.
    pub fn heartbeat(&self) -> Duration {
        self.every
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleDef {
    every: Option<String>,
    #[serde(default)]
    on_change: bool,
    heartbeat: Option<String>,
    in_event: Option<String>,
    windows: Option<Vec<String>>,
}

/// Checks the `[schedule.<kind>]` tables against the sensor kinds; every problem names its key.
pub(crate) fn parse_schedules(
    defs: BTreeMap<String, ScheduleDef>,
    is_sensor_kind: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Schedule>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for (kind, def) in defs {
        let mut problem = |m: String| problems.push(format!("schedule.{kind}: {m}"));
        if !is_sensor_kind(&kind) {
            problem("no sensor kind of that name in the catalog".into());
            continue;
        }
        let mut duration = |key: &str, v: &Option<String>| -> Option<Duration> {
            let text = v.as_deref()?;
            match humantime::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) => Some(d),
                Ok(_) => {
                    problem(format!("{key} = \"{text}\": at least 1s"));
                    None
                }
                Err(e) => {
                    problem(format!("{key} = \"{text}\": {e} (e.g. \"5m\", \"1h\")"));
                    None
                }
            }
        };
        let every = duration("every", &def.every);
        let heartbeat = duration("heartbeat", &def.heartbeat);
        let in_event = duration("in_event", &def.in_event);
        let every = match (def.on_change, every, heartbeat) {
            (false, Some(e), None) => e,
            (true, None, Some(h)) => h,
            (false, _, Some(_)) => {
                problems.push(format!(
                    "schedule.{kind}: heartbeat is for on_change devices; a periodic device has `every`"
                ));
                continue;
            }
            (true, Some(_), _) => {
                problems.push(format!(
                    "schedule.{kind}: an on_change device has a `heartbeat`, not `every`"
                ));
                continue;
            }
            _ => {
                if def.every.is_none() && def.heartbeat.is_none() {
                    problems.push(format!(
                        "schedule.{kind}: give `every` (periodic) or `on_change = true` with `heartbeat`"
                    ));
                }
                continue;
            }
        };
        if let Some(fast) = in_event
            && fast >= every
        {
            problems.push(format!(
                "schedule.{kind}: in_event ({}) must be shorter than the normal period ({})",
                humantime::format_duration(fast),
                humantime::format_duration(every)
            ));
            continue;
        }
        out.insert(
            kind,
            Schedule {
                on_change: def.on_change,
                every,
                in_event,
                windows: def.windows,
            },
        );
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, Schedule>, Vec<String>> {
        #[derive(Deserialize)]
        struct F {
            schedule: BTreeMap<String, ScheduleDef>,
        }
        let f: F = toml::from_str(text).expect("toml");
        parse_schedules(f.schedule, |k| k != "alert")
    }

    #[test]
    fn periodic_and_on_change_schedules_parse() {
        let s = parse(
            "[schedule.water_level]\nevery = \"5m\"\nin_event = \"1m\"\n\
             [schedule.parking_bay]\non_change = true\nheartbeat = \"1h\"\n",
        )
        .expect("valid");
        assert_eq!(s["water_level"].heartbeat(), Duration::from_secs(300));
        assert_eq!(s["water_level"].in_event, Some(Duration::from_secs(60)));
        assert!(s["parking_bay"].on_change);
        assert_eq!(s["parking_bay"].heartbeat(), Duration::from_secs(3600));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let e = parse(
            "[schedule.alert]\nevery = \"5m\"\n\
             [schedule.noise]\nevery = \"soon\"\n\
             [schedule.rainfall]\nevery = \"5m\"\nin_event = \"10m\"\n\
             [schedule.parking_bay]\non_change = true\n",
        )
        .expect_err("invalid");
        let all = e.join("\n");
        for key in [
            "schedule.alert",
            "schedule.noise: every",
            "schedule.rainfall: in_event",
            "schedule.parking_bay",
        ] {
            assert!(all.contains(key), "{key} not in {all}");
        }
    }
}
