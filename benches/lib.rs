//! Shared inputs of the benchmarks: a reproducible mix of simulated messages.

use std::path::Path;
use std::sync::Arc;

use rade_schema::{Catalog, WireFormat};
use rade_sim::{Fleet, FormatChoice, SimRecord, Simulator};

/// The repository's schema catalog.
pub fn catalog() -> Arc<Catalog> {
    Arc::new(
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")).expect("the shipped schemas load"),
    )
}

/// `n` valid readings of every kind (fleet-weighted), spread over the last hour, in `format`.
pub fn messages(catalog: &Arc<Catalog>, n: usize, format: WireFormat, seed: u64) -> Vec<SimRecord> {
    let mut sim = Simulator::new(catalog.clone(), Fleet::new(&[], 1.0, seed), seed).expect("simulator");
    let now = chrono_now_ms();
    (0..n)
        .map(|i| {
            sim.valid(
                now - 3_600_000 + (i as i64 * 3_600_000 / n as i64),
                FormatChoice::One(format),
            )
        })
        .collect()
}

/// Milliseconds since the epoch.
pub fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
