//! Events of the territory played over the normal traffic, each with the alerts the shipped
//! rules (`rules/`) must raise for it.
//!
//! A scenario's values are deterministic where they cross a threshold (a rise, a plateau, a
//! fall), so that each alert is raised once and resolved once, whatever the noise of the
//! normal readings around them.

use crate::fleet::{Fleet, Sensor};
use crate::readings::Reading;

const MINUTE: i64 = 60_000;

/// A named event of the territory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Rain upstream, then rising water on one gauge to its overflow height, and back.
    Flood,
    /// An NO2 and PM10 episode at one air-quality station.
    Pollution,
    /// A heat-wave afternoon: 38 °C at every weather station for three hours.
    Heatwave,
    /// A car park filling up to its last spot, and emptying.
    CarParkFull,
    /// A flood gauge switched off (battery, vandalism) for the rest of the run.
    GaugeSilent,
}

/// An alert state change a scenario must raise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedAlert {
    pub rule: &'static str,
    pub sensor_id: String,
    /// `RAISED` or `RESOLVED`, as on the alert topic.
    pub state: &'static str,
}

/// The gauge the flood and the silence happen on, the rain gauge upstream of it, and the
/// station and car park of the other scenarios: the first of their kind, in every fleet.
const GAUGE: &str = "wl-0001";
const RAIN_GAUGE: &str = "rf-0001";
const STATION: &str = "aq-0001";
const CAR_PARK: &str = "cp-0001";

/// The flood's water level profile (cm): rises from 30 to 90 min, 400 cm until 120, back down by 210.
const FLOOD_PEAK_CM: f64 = 400.0;

impl Scenario {
    /// Every scenario, in the order of `--list-scenarios`.
    pub const ALL: [Scenario; 5] = [
        Scenario::Flood,
        Scenario::Pollution,
        Scenario::Heatwave,
        Scenario::CarParkFull,
        Scenario::GaugeSilent,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Flood => "flood",
            Scenario::Pollution => "pollution",
            Scenario::Heatwave => "heatwave",
            Scenario::CarParkFull => "car_park_full",
            Scenario::GaugeSilent => "gauge_silent",
        }
    }

    /// What happens, in a sentence.
    pub fn story(self) -> &'static str {
        match self {
            Scenario::Flood => {
                "45 mm/h of rain on rf-0001 for 2 h; 30 min in, gauge wl-0001 rises from its normal level to 400 cm in an hour, stays there 30 min, and falls back in 1 h 30 (it reports every minute in flood)"
            }
            Scenario::Pollution => {
                "station aq-0001: NO2 up to 260 µg/m³ and PM10 up to 95 µg/m³ for 2 h 30 (it reports every 5 min during the episode)"
            }
            Scenario::Heatwave => "every weather station at 38 °C for 3 h in the afternoon",
            Scenario::CarParkFull => {
                "car park cp-0001 fills up to its last spot in 30 min, stays full 1 h, and empties"
            }
            Scenario::GaugeSilent => "gauge wl-0001 stops reporting and stays silent until the end",
        }
    }

    /// The sensor kinds it plays on (the rest of the fleet is only background).
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Scenario::Flood | Scenario::GaugeSilent => &["water_level", "rainfall"],
            Scenario::Pollution => &["air_quality"],
            Scenario::Heatwave => &["weather"],
            Scenario::CarParkFull => &["car_park"],
        }
    }

    /// How long the event lasts from its start, in event time.
    pub fn duration_ms(self) -> i64 {
        match self {
            Scenario::Flood => 240 * MINUTE,
            Scenario::Pollution => 180 * MINUTE,
            Scenario::Heatwave => 210 * MINUTE,
            Scenario::CarParkFull => 150 * MINUTE,
            // Three heartbeats of a gauge, and some margin for the watermark.
            Scenario::GaugeSilent => 60 * MINUTE,
        }
    }

    /// Event time after the event ends that the run must still cover, so that every window
    /// of the event closes, and the one after it that resolves its alerts. The hourly windows
    /// (rain, air, heat) are aligned on the clock: the first whole hour after the event may
    /// start nearly an hour after it and end an hour later, then the watermark needs the
    /// allowed lateness more. With 90 minutes, an event ending just after the hour lost its
    /// last RESOLVED (seen once as a `pm10_information` missing from the pollution scenario).
    /// The flood keeps 90 minutes: its rain (hourly windows) stops two hours before its end,
    /// its water alerts resolve on 1- and 15-minute windows, and the demo's six hours of
    /// backfill hold it with its tail.
    pub fn tail_ms(self) -> i64 {
        match self {
            Scenario::Flood => 90 * MINUTE,
            _ => 150 * MINUTE,
        }
    }

    /// The alert state changes the shipped rules raise for it, on `fleet`, sorted.
    pub fn expected(self, fleet: &Fleet) -> Vec<ExpectedAlert> {
        let both = |rule: &'static str, sensor: &str| {
            ["RAISED", "RESOLVED"].map(|state| ExpectedAlert {
                rule,
                sensor_id: sensor.to_owned(),
                state,
            })
        };
        let mut out: Vec<ExpectedAlert> = match self {
            Scenario::Flood => [
                both("heavy_rain", RAIN_GAUGE),
                both("water_rising_fast", GAUGE),
                both("flood_warning", GAUGE),
                both("flood_alarm", GAUGE),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Scenario::Pollution => [
                both("no2_information", STATION),
                both("pm10_information", STATION),
                both("pm10_alert", STATION),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Scenario::Heatwave => fleet
                .sensors
                .iter()
                .filter(|s| s.kind == "weather")
                .flat_map(|s| both("heat_wave", &s.id))
                .collect(),
            Scenario::CarParkFull => both("car_park_nearly_full", CAR_PARK).into(),
            Scenario::GaugeSilent => vec![ExpectedAlert {
                rule: "sensor_silent",
                sensor_id: GAUGE.to_owned(),
                state: "RAISED",
            }],
        };
        out.sort();
        out
    }

    /// Whether `sensor` sends nothing at `at_ms` after the start of the event.
    pub(crate) fn off(self, sensor: &Sensor, at_ms: i64) -> bool {
        self == Scenario::GaugeSilent && sensor.id == GAUGE && at_ms >= 0
    }

    /// Whether `sensor` reports at its faster event period at `at_ms` after the start.
    pub(crate) fn in_event(self, sensor: &Sensor, at_ms: i64) -> bool {
        let m = at_ms as f64 / MINUTE as f64;
        match (self, sensor.id.as_str()) {
            (Scenario::Flood, GAUGE) => (25.0..230.0).contains(&m),
            (Scenario::Flood, RAIN_GAUGE) => (0.0..130.0).contains(&m),
            (Scenario::Pollution, STATION) => (0.0..170.0).contains(&m),
            _ => false,
        }
    }

    /// The measurement `field` of `sensor` at `at_ms` after the start, given its normal value.
    pub(crate) fn adjust(self, sensor: &Sensor, field: &str, at_ms: i64, interval_ms: i64, normal: Reading) -> Reading {
        let m = at_ms as f64 / MINUTE as f64;
        let above = |profile: f64| match normal {
            Reading::Double(x) => Reading::Double(x.max(profile)),
            other => other,
        };
        match (self, sensor.id.as_str(), sensor.kind.as_str(), field) {
            (Scenario::Flood, GAUGE, _, "height") => above(FLOOD_PEAK_CM * trapezoid(m, 30.0, 90.0, 120.0, 210.0)),
            (Scenario::Flood, RAIN_GAUGE, _, "precipitation") => {
                let mm_per_hour = 45.0 * trapezoid(m, 0.0, 5.0, 115.0, 120.0);
                match normal {
                    Reading::Double(x) => {
                        Reading::Double(((x + mm_per_hour * interval_ms as f64 / 3_600_000.0) * 10.0).round() / 10.0)
                    }
                    other => other,
                }
            }
            (Scenario::Pollution, STATION, _, "no2") => above(260.0 * trapezoid(m, 0.0, 15.0, 150.0, 165.0)),
            (Scenario::Pollution, STATION, _, "pm10") => above(95.0 * trapezoid(m, 0.0, 15.0, 150.0, 165.0)),
            (Scenario::Heatwave, _, "weather", "temperature") => above(38.0 * trapezoid(m, 0.0, 15.0, 195.0, 210.0)),
            (Scenario::CarParkFull, CAR_PARK, _, "availableSpotNumber") => {
                let full = trapezoid(m, 0.0, 30.0, 90.0, 150.0);
                let total = 100.0 + (sensor.trait_ * 900.0).floor();
                match normal {
                    Reading::Int(free) => Reading::Int(free.min((total * (1.0 - full)).round() as i32)),
                    other => other,
                }
            }
            _ => normal,
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| {
            format!(
                "unknown scenario `{s}`; known: {}",
                Scenario::ALL.map(Scenario::name).join(", ")
            )
        })
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// 0 before `a`, rising to 1 at `b`, 1 until `c`, falling to 0 at `d`.
fn trapezoid(x: f64, a: f64, b: f64, c: f64, d: f64) -> f64 {
    if x <= a || x >= d {
        0.0
    } else if x < b {
        (x - a) / (b - a)
    } else if x <= c {
        1.0
    } else {
        (d - x) / (d - c)
    }
}
