//! The readings a fleet sends over a span of event time, each device on its kind's schedule.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rade_schema::{Catalog, RejectReason, Schedule};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::fleet::Sensor;
use crate::readings::{Ctx, bay_busy, light_on};
use crate::scenario::Scenario;
use crate::sim::{FormatChoice, SIMULATED_REASONS, SimRecord, Simulator};

/// The schedule of a kind the catalog declares none for.
const DEFAULT_SCHEDULE: Schedule = Schedule {
    on_change: false,
    every: Duration::from_secs(300),
    in_event: None,
    windows: None,
};

/// A parking bay stays occupied for this long on average.
const MEAN_STAY_MS: f64 = 90.0 * 60_000.0;

/// What a traffic run plays.
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    /// Event time of the first readings.
    pub start_ms: i64,
    /// Event time after which nothing is sent; `i64::MAX` for no end.
    pub end_ms: i64,
    pub format: FormatChoice,
    /// Share of invalid records, sent besides the valid ones, over every reason the decoder judges.
    pub invalid_share: f64,
    /// A scenario and the event time it starts at.
    pub scenario: Option<(Scenario, i64)>,
    pub seed: u64,
}

struct Device {
    schedule: Schedule,
    /// Whether the kind has a state that changes (parking bay, street light).
    stateful: bool,
    on: bool,
    next_change: i64,
    last_ms: Option<i64>,
}

/// Every reading of the fleet, in event-time order, as its devices' schedules make them.
pub struct Traffic {
    sim: Simulator,
    plan: TrafficPlan,
    devices: Vec<Device>,
    due: BinaryHeap<Reverse<(i64, usize)>>,
    rng: SmallRng,
    pending: Option<SimRecord>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("devices", &self.devices.len())
            .field("plan", &self.plan)
            .finish()
    }
}

impl Traffic {
    /// The traffic of `sim`'s fleet on the schedules of `catalog`, as `plan` says.
    pub fn new(sim: Simulator, catalog: &Catalog, plan: TrafficPlan) -> Traffic {
        let mut rng = SmallRng::seed_from_u64(plan.seed ^ 0x7a4f);
        let mut devices = Vec::with_capacity(sim.fleet().sensors.len());
        let mut due = BinaryHeap::with_capacity(sim.fleet().sensors.len());
        for (i, s) in sim.fleet().sensors.iter().enumerate() {
            let schedule = catalog.schedule(&s.kind).cloned().unwrap_or(DEFAULT_SCHEDULE);
            let stateful = schedule.on_change && matches!(s.kind.as_str(), "parking_bay" | "public_lighting");
            let every = schedule.every.as_millis() as i64;
            let mut d = Device {
                schedule,
                stateful,
                on: false,
                next_change: i64::MAX,
                last_ms: None,
            };
            if stateful {
                d.on = match s.kind.as_str() {
                    "parking_bay" => rng.random::<f64>() < bay_busy(plan.start_ms),
                    _ => light_on(s, plan.start_ms),
                };
                d.next_change = next_change(&mut rng, s, d.on, plan.start_ms);
            }
            // Devices are out of phase: each starts somewhere in its first period.
            let first = (plan.start_ms + rng.random_range(0..every.max(1))).min(d.next_change);
            devices.push(d);
            due.push(Reverse((first, i)));
        }
        Traffic {
            sim,
            plan,
            devices,
            due,
            rng,
            pending: None,
        }
    }

    /// The fleet being simulated.
    pub fn fleet(&self) -> &crate::Fleet {
        self.sim.fleet()
    }
}

/// When an on-change device next changes state after `t_ms`.
fn next_change(rng: &mut SmallRng, s: &Sensor, on: bool, t_ms: i64) -> i64 {
    match s.kind.as_str() {
        "parking_bay" => {
            // Stays are exponential; free spells are shorter when the street is busy.
            let busy = bay_busy(t_ms);
            let mean = if on {
                MEAN_STAY_MS
            } else {
                MEAN_STAY_MS * (1.0 - busy) / busy
            };
            let u: f64 = rng.random_range(1e-9..1.0);
            t_ms + (-u.ln() * mean).max(1000.0) as i64
        }
        _ => {
            // Street lights switch at dusk and dawn: the first minute their photocell flips.
            let mut t = t_ms + 60_000;
            while t < t_ms + 86_400_000 {
                if light_on(s, t) != on {
                    return t;
                }
                t += 60_000;
            }
            i64::MAX
        }
    }
}

impl Iterator for Traffic {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        if let Some(r) = self.pending.take() {
            return Some(r);
        }
        loop {
            let Reverse((t, i)) = self.due.pop()?;
            if t > self.plan.end_ms {
                return None;
            }
            let scenario = self.plan.scenario;
            let sensor = &self.sim.fleet().sensors[i];
            let d = &mut self.devices[i];
            let at = |(_, start): (Scenario, i64)| t - start;
            let off = scenario.is_some_and(|sc| sc.0.off(sensor, at(sc)));
            let fast = scenario.is_some_and(|sc| sc.0.in_event(sensor, at(sc)));
            let every = match (fast, d.schedule.in_event) {
                (true, Some(fast)) => fast,
                _ => d.schedule.every,
            }
            .as_millis() as i64;
            if d.stateful && t >= d.next_change {
                d.on = !d.on;
                d.next_change = next_change(&mut self.rng, sensor, d.on, t);
            }
            // A little clock drift, never enough to miss a heartbeat.
            let jitter = self.rng.random_range(-every / 200..=every / 200);
            let next = if d.stateful {
                (t + every).min(d.next_change)
            } else {
                t + every + jitter
            };
            self.due.push(Reverse((next.max(t + 1), i)));
            if off {
                continue;
            }
            let ctx = Ctx {
                interval_ms: d.last_ms.map_or(every, |last| t - last),
                on: d.stateful.then_some(d.on),
            };
            d.last_ms = Some(t);
            let record = self
                .sim
                .reading_of(i, t, self.plan.format, ctx, |s, field, r| match scenario {
                    Some((sc, start)) => sc.adjust(s, field, t - start, ctx.interval_ms, r),
                    None => r,
                });
            if self.rng.random::<f64>() < self.plan.invalid_share {
                let reason: RejectReason = SIMULATED_REASONS[self.rng.random_range(0..SIMULATED_REASONS.len())];
                self.pending = Some(record);
                return Some(self.sim.invalid(t, reason));
            }
            return Some(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::Fleet;

    fn catalog() -> Arc<Catalog> {
        Arc::new(Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")).expect("schemas load"))
    }

    fn day(scenario: Option<(Scenario, i64)>) -> (Vec<SimRecord>, Fleet) {
        let catalog = catalog();
        let fleet = Fleet::new(&[], 0.05, 5);
        let sim = Simulator::new(catalog.clone(), fleet.clone(), 5).expect("simulator");
        let start = 1_780_000_000_000;
        let plan = TrafficPlan {
            start_ms: start,
            end_ms: start + 86_400_000,
            format: FormatChoice::Mixed,
            invalid_share: 0.0,
            scenario: scenario.map(|(s, at)| (s, start + at)),
            seed: 5,
        };
        (Traffic::new(sim, &catalog, plan).collect(), fleet)
    }

    #[test]
    fn devices_keep_their_schedule_in_event_time_order() {
        let catalog = catalog();
        let (records, fleet) = day(None);
        assert!(records.windows(2).all(|w| w[0].observed_at_ms <= w[1].observed_at_ms));
        let mut times: HashMap<Vec<u8>, Vec<i64>> = HashMap::new();
        for r in &records {
            times.entry(r.key.clone()).or_default().push(r.observed_at_ms);
        }
        assert_eq!(times.len(), fleet.sensors.len(), "every device reports");
        for s in &fleet.sensors {
            let schedule = catalog.schedule(&s.kind).expect("every shipped kind has a schedule");
            let t = &times[s.id.as_bytes()];
            let gap = t.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            let heartbeat = schedule.heartbeat().as_millis() as i64;
            assert!(gap <= heartbeat + heartbeat / 100, "{}: gap {gap} ms", s.id);
            if !schedule.on_change {
                let expected = 86_400_000 / heartbeat;
                assert!((t.len() as i64 - expected).abs() <= 1, "{}: {} readings", s.id, t.len());
            }
        }
        // A parking bay reports its changes besides its heartbeats.
        let bays: Vec<&Sensor> = fleet.sensors.iter().filter(|s| s.kind == "parking_bay").collect();
        let per_bay = bays.iter().map(|s| times[s.id.as_bytes()].len()).sum::<usize>() / bays.len();
        assert!(per_bay > 24 + 5, "{per_bay} readings a day per bay");
    }

    #[test]
    fn a_switched_off_gauge_sends_nothing_and_a_flooding_gauge_reports_every_minute() {
        let (records, _) = day(Some((Scenario::GaugeSilent, 3_600_000)));
        let last = records
            .iter()
            .filter(|r| r.key == b"wl-0001")
            .map(|r| r.observed_at_ms)
            .max()
            .expect("the gauge reported before");
        assert!(last < 1_780_000_000_000 + 3_600_000);
        let (records, _) = day(Some((Scenario::Flood, 3_600_000)));
        let n = |key: &[u8]| records.iter().filter(|r| r.key == key).count();
        assert!(n(b"wl-0001") > 288 + 150, "{}", n(b"wl-0001"));
        assert!(n(b"wl-0001") < 288 + 250, "{}", n(b"wl-0001"));
    }
}
