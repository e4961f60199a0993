//! The physics of the simulation: what each sensor kind reads at a given time.

use rand::Rng;
use rand::rngs::SmallRng;

use crate::fleet::Sensor;

/// A measurement before encoding; `None` leaves an optional field null.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reading {
    Double(f64),
    Int(i32),
    Symbol(&'static str),
}

const DAY_MS: f64 = 86_400_000.0;

/// What a device knows when it reports: the time since its previous reading (a rain gauge
/// reports the rain of that interval) and, for an on-change device, its current state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub interval_ms: i64,
    /// A parking bay occupied, a street light on; `None`: drawn at random.
    pub on: Option<bool>,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            interval_ms: 300_000,
            on: None,
        }
    }
}

/// How busy the parking bays are at `t_ms` (share of time occupied).
pub(crate) fn bay_busy(t_ms: i64) -> f64 {
    0.3 + 0.6 * daily(t_ms, 11.0)
}

/// Whether street light `s` is on at `t_ms` (each photocell switches at its own light level).
pub(crate) fn light_on(s: &Sensor, t_ms: i64) -> bool {
    daily(t_ms, 1.0) > 0.45 + 0.04 * (s.trait_ - 0.5)
}

/// 0 at the daily low, 1 at the peak hour (UTC+1 local time, good enough for Toulon).
pub(crate) fn daily(t_ms: i64, peak_hour: f64) -> f64 {
    let hours = (t_ms as f64 / DAY_MS).fract() * 24.0 + 1.0;
    0.5 + 0.5 * ((hours - peak_hour) / 24.0 * std::f64::consts::TAU).cos()
}

fn noisy(rng: &mut SmallRng, v: f64, sd: f64) -> f64 {
    // Sum of uniforms: a cheap bell curve.
    let n: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0;
    v + n * sd
}

/// The value of `field` for `sensor` at `t_ms`, within the schema's declared range.
pub(crate) fn reading(rng: &mut SmallRng, s: &Sensor, field: &str, t_ms: i64, ctx: Ctx) -> Option<Reading> {
    let d = |peak| daily(t_ms, peak);
    let k = s.trait_;
    let r = match (s.kind.as_str(), field) {
        ("water_level", "height") => Reading::Double(noisy(rng, 40.0 + 60.0 * k + 5.0 * d(6.0), 1.5).max(-50.0)),
        ("water_level", "flow") => Reading::Double(noisy(rng, 0.5 + 3.0 * k, 0.2).max(0.0)),
        ("rainfall", "precipitation") => {
            // Mostly dry; light showers now and then, well below the heavy-rain threshold.
            let mm_per_hour = if rng.random::<f64>() < 0.1 {
                rng.random::<f64>() * 6.0
            } else {
                0.0
            };
            Reading::Double((mm_per_hour * ctx.interval_ms as f64 / 3_600_000.0 * 10.0).round() / 10.0)
        }
        ("air_quality", "no2") => Reading::Double(noisy(rng, 15.0 + 45.0 * d(8.5) * (0.5 + k), 4.0).max(0.0)),
        ("air_quality", "pm10") => Reading::Double(noisy(rng, 18.0 + 12.0 * d(9.0), 3.0).max(0.0)),
        ("air_quality", "pm25") => Reading::Double(noisy(rng, 9.0 + 6.0 * d(9.0), 2.0).max(0.0)),
        ("air_quality", "o3") => Reading::Double(noisy(rng, 40.0 + 70.0 * d(15.0), 6.0).max(0.0)),
        // Quiet enough at night to stay below the night-noise guideline of the shipped rules.
        ("noise", "LAeq") => Reading::Double(noisy(rng, 40.0 + 24.0 * d(14.0) + 6.0 * k, 2.0).clamp(20.0, 120.0)),
        ("noise", "LAmax") => Reading::Double(noisy(rng, 60.0 + 22.0 * d(14.0) + 8.0 * k, 4.0).clamp(25.0, 130.0)),
        ("weather", "temperature") => Reading::Double(noisy(rng, 11.0 + 9.0 * d(15.0) + 3.0 * k, 0.6)),
        ("weather", "relativeHumidity") => Reading::Double(noisy(rng, 0.85 - 0.35 * d(15.0), 0.04).clamp(0.05, 1.0)),
        ("parking_bay", "status") => Reading::Symbol(match ctx.on {
            Some(true) => "occupied",
            Some(false) => "free",
            None => {
                let p: f64 = rng.random();
                if p < 0.005 {
                    "unknown"
                } else if p < bay_busy(t_ms) {
                    "occupied"
                } else {
                    "free"
                }
            }
        }),
        ("car_park", "totalSpotNumber") => Reading::Int(total_spots(s)),
        ("car_park", "availableSpotNumber") => {
            let total = total_spots(s) as f64;
            // At most about 86% full on a normal day: below the nearly-full rule.
            let busy = (0.2 + 0.6 * d(11.0) + noisy(rng, 0.0, 0.03)).clamp(0.0, 1.0);
            Reading::Int((total * (1.0 - busy)).round() as i32)
        }
        ("traffic_counter", "intensity") => {
            Reading::Int(noisy(rng, 20.0 + 400.0 * d(8.0) * (0.3 + k), 10.0).max(0.0) as i32)
        }
        ("traffic_counter", "averageVehicleSpeed") => {
            Reading::Double(noisy(rng, 50.0 - 20.0 * d(8.0), 4.0).clamp(3.0, 130.0))
        }
        ("traffic_counter", "occupancy") => Reading::Double((0.05 + 0.5 * d(8.0) * k).clamp(0.0, 1.0)),
        ("energy_meter", "totalActiveEnergyImport") => {
            // A monotonic meter: the integral of a mean load since the epoch of the simulation.
            let kw = 2.0 + 40.0 * k;
            Reading::Double(1000.0 * k + kw * (t_ms as f64 / 3_600_000.0 - 490_000.0).max(0.0))
        }
        ("energy_meter", "totalActivePower") => {
            Reading::Double(noisy(rng, (2.0 + 40.0 * k) * 1000.0 * (0.5 + d(19.0)), 200.0).max(0.0))
        }
        ("public_lighting", "powerState") => {
            let on = ctx.on.unwrap_or_else(|| light_on(s, t_ms));
            Reading::Symbol(if ctx.on.is_none() && rng.random::<f64>() < 0.002 {
                "bootingUp"
            } else if on {
                "on"
            } else {
                "off"
            })
        }
        ("public_lighting", "powerConsumption") => Reading::Double(if ctx.on.unwrap_or_else(|| light_on(s, t_ms)) {
            noisy(rng, 70.0 + 80.0 * k, 3.0).max(0.0)
        } else {
            0.5
        }),
        ("waste_bin", "fillingLevel") => {
            Reading::Double(((t_ms as f64 / DAY_MS + k * 3.0) % 3.0 / 3.0).clamp(0.0, 1.0))
        }
        ("waste_bin", "temperature") => Reading::Double(noisy(rng, 14.0 + 10.0 * d(15.0), 1.0)),
        ("waste_bin", "status") => Reading::Symbol("ok"),
        _ => return None,
    };
    Some(r)
}

fn total_spots(s: &Sensor) -> i32 {
    100 + (s.trait_ * 900.0) as i32
}
