//! Window and rule cost: air-quality readings of N sensors (each reporting once a minute, two
//! hours of event time) are decoded, buffered into Arrow like the worker does, then folded
//! into the windows of the default configuration (1m, 15m, 1h and 1h every 15m) with the
//! shipped rules, over 12 partitions, through the [`WindowSet`] the worker drives: every
//! reading is folded, the combined watermark follows it and windows close as soon as they are
//! due. Prints the time per record of each stage and the process's peak memory (VmHWM).
//!
//! cargo run --release -p rade-benches --bin windows -- --sensors 100000

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rade_schema::{DecodeLimits, Decoder, Lineage, RowBatchBuilder};
use rade_window::{RuleSet, WindowConfig, WindowSet, WindowSpec};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value_t = 10_000)]
    sensors: usize,
    /// Minutes of event time; every sensor reports once a minute.
    #[arg(long, default_value_t = 120)]
    minutes: i64,
    #[arg(long, default_value_t = 12)]
    partitions: usize,
    /// Window shapes (comma separated); default: the shipped configuration.
    #[arg(long, value_delimiter = ',')]
    windows: Vec<String>,
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A Confluent-framed Avro air_quality record, encoded by hand (the encoder is not measured).
fn encode(out: &mut Vec<u8>, id: u32, sensor: &str, t: i64, values: [f64; 4]) {
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    zigzag(out, sensor.len() as i64);
    out.extend_from_slice(sensor.as_bytes());
    zigzag(out, t);
    out.extend_from_slice(&43.12f64.to_le_bytes());
    out.extend_from_slice(&5.93f64.to_le_bytes());
    for v in values {
        zigzag(out, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let catalog = rade_benches::catalog();
    let kind = catalog.kind("air_quality").expect("air_quality").clone();
    let mut config = WindowConfig {
        // Processing time here is the minute being played: no partition is ever idle, and
        // sensors are never forgotten (two hours of event time), as in the earlier figures.
        idle_timeout: Duration::from_secs(365 * 86_400),
        forget_after: Duration::MAX,
        ..WindowConfig::default()
    };
    if !cli.windows.is_empty() {
        config.windows = cli.windows.clone();
    }
    let specs: Arc<[WindowSpec]> = config.specs()?.into();
    let rules_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let rules = Arc::new(RuleSet::load(&rules_dir, &catalog, &specs)?);
    let limits = DecodeLimits {
        max_future_ms: i64::MAX / 4,
        ..DecodeLimits::default()
    };
    let decoder = Decoder::new(catalog.clone(), kind.clone(), limits);
    let t0 = 1_780_000_000_000i64 - 1_780_000_000_000 % 3_600_000;
    let mut set = WindowSet::new(specs.clone(), rules, &config);
    let topic: Arc<str> = "tpm.raw.air_quality".into();
    let keys: Vec<(Arc<str>, i32)> = (0..cli.partitions).map(|p| (topic.clone(), p as i32)).collect();
    for (topic, p) in &keys {
        set.assign(topic.clone(), *p, "air_quality", None, 0)?;
    }
    let sensors: Vec<String> = (0..cli.sensors).map(|i| format!("aq-{i:06}")).collect();
    let mut builders: Vec<RowBatchBuilder> = (0..cli.partitions)
        .map(|_| RowBatchBuilder::new(kind.clone(), 8192))
        .collect();

    let (mut t_decode, mut t_windows, mut t_fold) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut records, mut closed, mut alerts) = (0u64, 0u64, 0u64);
    let mut chunk: Vec<Vec<u8>> = Vec::new();
    let mut offsets = vec![0i64; cli.partitions];
    for minute in 0..cli.minutes {
        // One minute of readings, in chunks of sensors; sensor i on partition i % partitions.
        for block in sensors.chunks(8192).enumerate() {
            let (b, names) = block;
            chunk.clear();
            for (j, s) in names.iter().enumerate() {
                let i = b * 8192 + j;
                let t = t0 + minute * 60_000 + (i as i64 * 7) % 60_000;
                let w = (minute as f64 / 10.0).sin();
                let mut buf = Vec::with_capacity(80);
                encode(
                    &mut buf,
                    kind.id,
                    s,
                    t,
                    [
                        40.0 + 30.0 * w + (i % 50) as f64 * 4.0,
                        20.0 + 5.0 * w,
                        10.0,
                        60.0 + 20.0 * w,
                    ],
                );
                chunk.push(buf);
            }
            let started = Instant::now();
            let rows: Vec<_> = chunk
                .iter()
                .map(|v| decoder.decode(Some(v), t0).expect("valid"))
                .collect();
            for (j, row) in rows.iter().enumerate() {
                let p = (b * 8192 + j) % cli.partitions;
                builders[p].push(
                    row,
                    Lineage {
                        topic: "tpm.raw.air_quality",
                        partition: p as i32,
                        offset: offsets[p],
                        ingested_at_ms: t0,
                    },
                );
                offsets[p] += 1;
            }
            for bld in builders.iter_mut() {
                if bld.len() >= 65_536 {
                    let _ = bld.finish();
                }
            }
            t_decode += started.elapsed();
            let started = Instant::now();
            let now = minute * 60_000;
            for (j, row) in rows.iter().enumerate() {
                let p = (b * 8192 + j) % cli.partitions;
                set.fold(&keys[p], row, now);
            }
            t_fold += started.elapsed();
            // The worker takes the output once per batch of readings.
            for (_, windows, raised) in set.take_output() {
                closed += windows.iter().map(|c| c.batch.num_rows() as u64).sum::<u64>();
                alerts += raised.len() as u64;
            }
            t_windows += started.elapsed();
            records += rows.len() as u64;
        }
    }
    let open: usize = keys.iter().filter_map(|k| set.open_windows(k)).sum();
    let ns = |d: Duration| d.as_nanos() as f64 / records as f64;
    println!(
        "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {:.0} |",
        cli.sensors,
        specs.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(" "),
        records,
        ns(t_decode),
        ns(t_windows),
        ns(t_windows) / ns(t_decode),
        closed,
        alerts,
        peak_rss_mib()
    );
    eprintln!(
        "open windows at the end: {open}; fold (closes and rules included) {:.0} ns/record, taking the output {:.0} ns/record",
        ns(t_fold),
        ns(t_windows - t_fold)
    );
    Ok(())
}
