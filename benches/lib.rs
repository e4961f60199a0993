//! Shared inputs of the benchmarks: a reproducible mix of simulated messages, and raw rows
//! built from them as the worker buffers them.

use std::path::Path;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use rade_schema::{Catalog, DecodeLimits, Decoder, Lineage, Row, RowBatchBuilder, WireFormat};
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

/// Simulated readings of one kind turned into the raw rows a worker writes: encoded by the
/// simulator (Confluent-framed Avro), decoded and validated by rade's decoder, appended to the
/// kind's Arrow builder with lineage columns. The lake benchmarks build their files from it.
pub struct RawRows {
    sim: Simulator,
    decoder: Decoder,
    builder: RowBatchBuilder,
    topic: String,
    sensors: usize,
    turn: usize,
}

impl RawRows {
    /// Readings of `kind` from the simulator's fleet of that kind, scaled by `fleet_scale`.
    pub fn new(catalog: &Arc<Catalog>, kind: &str, fleet_scale: f64, seed: u64) -> RawRows {
        let schema = catalog.kind(kind).expect("a kind of the shipped catalog").clone();
        let sim = Simulator::new(catalog.clone(), Fleet::new(&[kind.to_owned()], fleet_scale, seed), seed)
            .expect("the fleet has sensors of every shipped kind");
        let limits = DecodeLimits {
            // Benchmark lakes sit at fixed dates; the decoder must not judge them by today.
            max_future_ms: i64::MAX / 4,
            ..DecodeLimits::default()
        };
        RawRows {
            sensors: sim.fleet().sensors.len(),
            sim,
            decoder: Decoder::new(catalog.clone(), schema.clone(), limits),
            builder: RowBatchBuilder::new(schema, 8192),
            topic: format!("tpm.raw.{kind}"),
            turn: 0,
        }
    }

    /// The column index of `field` in this kind's rows.
    pub fn field(&self, field: &str) -> Option<usize> {
        self.decoder.kind().fields.iter().position(|f| f.name == field)
    }

    /// One batch of `rows` readings evenly spread over `[start_ms, start_ms + span_ms)`, the
    /// fleet's sensors in turn, with the lineage of `partition` from offset `first_offset`.
    /// `tweak` may change a decoded row before it is appended.
    pub fn batch(
        &mut self,
        partition: i32,
        first_offset: i64,
        start_ms: i64,
        span_ms: i64,
        rows: usize,
        mut tweak: impl FnMut(&mut Row<'_>),
    ) -> RecordBatch {
        let format = FormatChoice::One(WireFormat::Confluent);
        for i in 0..rows {
            let t = start_ms + (i as i64 * span_ms) / rows.max(1) as i64;
            let record = self.sim.valid_of(self.turn % self.sensors, t, format);
            self.turn += 1;
            let mut row = self
                .decoder
                .decode(record.value.as_deref(), t)
                .expect("the simulator writes valid readings");
            tweak(&mut row);
            self.builder.push(
                &row,
                Lineage {
                    topic: &self.topic,
                    partition,
                    offset: first_offset + i as i64,
                    // Read by the worker two seconds after the reading.
                    ingested_at_ms: t + 2000,
                },
            );
        }
        self.builder.finish()
    }
}
