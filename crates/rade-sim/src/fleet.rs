use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One simulated sensor: its kind, id and place.
#[derive(Debug, Clone)]
pub struct Sensor {
    pub kind: String,
    pub id: String,
    pub latitude: f64,
    pub longitude: f64,
    /// A per-sensor constant in [0, 1) that spreads baselines and capacities.
    pub trait_: f64,
}

/// The sensor fleet of the territory.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub sensors: Vec<Sensor>,
}

/// Sensors per kind at scale 1.0: a few flood gauges, thousands of parking bays.
const FLEET: [(&str, &str, usize); 11] = [
    ("water_level", "wl", 12),
    ("rainfall", "rf", 20),
    ("air_quality", "aq", 15),
    ("noise", "nz", 40),
    ("weather", "wx", 30),
    ("parking_bay", "pb", 2000),
    ("car_park", "cp", 25),
    ("traffic_counter", "tc", 120),
    ("energy_meter", "em", 300),
    ("public_lighting", "pl", 800),
    ("waste_bin", "wb", 600),
];

/// The territory of the Métropole TPM, from Six-Fours to Hyères, roughly.
const LAT: (f64, f64) = (43.05, 43.20);
const LON: (f64, f64) = (5.80, 6.20);

impl Fleet {
    /// The fleet of the given kinds (all when empty), scaled; at least one sensor per kind.
    pub fn new(kinds: &[String], scale: f64, seed: u64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut sensors = Vec::new();
        for (kind, prefix, n) in FLEET {
            if !kinds.is_empty() && !kinds.iter().any(|k| k == kind) {
                continue;
            }
            let n = ((n as f64 * scale).round() as usize).max(1);
            for i in 0..n {
                sensors.push(Sensor {
                    kind: kind.to_owned(),
                    id: format!("{prefix}-{:04}", i + 1),
                    latitude: rng.random_range(LAT.0..LAT.1),
                    longitude: rng.random_range(LON.0..LON.1),
                    trait_: rng.random(),
                });
            }
        }
        Fleet { sensors }
    }

    /// Every kind the simulator knows.
    pub fn kinds() -> impl Iterator<Item = &'static str> {
        FLEET.iter().map(|(k, _, _)| *k)
    }
}
