//! `rade simulate`: TPM sensor traffic into Kafka.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rade_sim::{FormatChoice, Progress, SIMULATED_REASONS, SimRecord, Simulator};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", env = "RADE__KAFKA__BOOTSTRAP_SERVERS")]
    bootstrap: String,
    /// Raw topics are <prefix><kind>.
    #[arg(long, default_value = "tpm.raw.")]
    topic_prefix: String,
    /// Schema catalog directory; default: the shipped schemas, built in.
    #[arg(long)]
    schemas: Option<PathBuf>,
    /// Wire format: confluent, single-object, json, or mixed (all three in turn).
    #[arg(long, default_value = "mixed")]
    format: FormatChoice,
    /// Number of records to send.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Backfill: spread event times evenly over this span, ending now (e.g. "6h", "2days").
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "rate")]
    backfill: Option<Duration>,
    /// Live: send this many records per second with event time = now.
    #[arg(long)]
    rate: Option<f64>,
    /// Share of invalid records, spread over every DLQ reason the decoder judges.
    #[arg(long, default_value_t = 0.0)]
    invalid_share: f64,
    /// Only these kinds (comma-separated); default every kind.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Fleet size factor (1.0: about 4 000 sensors over the territory).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Random seed, for reproducible traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// The records of a simulation plan, made lazily.
pub struct Plan {
    sim: Simulator,
    rng: SmallRng,
    count: u64,
    i: u64,
    start_ms: i64,
    step_ms: f64,
    live: bool,
    format: FormatChoice,
    invalid_share: f64,
}

impl Plan {
    pub fn new(
        sim: Simulator,
        count: u64,
        span: Option<Duration>,
        format: FormatChoice,
        invalid_share: f64,
        seed: u64,
    ) -> Plan {
        let now = chrono::Utc::now().timestamp_millis();
        let (start_ms, step_ms, live) = match span {
            Some(span) => {
                let span = span.as_millis() as i64;
                (now - span, span as f64 / count.max(1) as f64, false)
            }
            None => (now, 0.0, true),
        };
        Plan {
            sim,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
            count,
            i: 0,
            start_ms,
            step_ms,
            live,
            format,
            invalid_share,
        }
    }
}

impl Iterator for Plan {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        if self.i >= self.count {
            return None;
        }
        let t = if self.live {
            chrono::Utc::now().timestamp_millis()
        } else {
            self.start_ms + (self.i as f64 * self.step_ms) as i64
        };
        self.i += 1;
        Some(if self.rng.random::<f64>() < self.invalid_share {
            let reason = SIMULATED_REASONS[self.rng.random_range(0..SIMULATED_REASONS.len())];
            self.sim.invalid(t, reason)
        } else {
            self.sim.valid(t, self.format)
        })
    }
}

pub fn report(p: Progress) {
    let rate = p.sent as f64 / p.elapsed.as_secs_f64().max(1e-3);
    match p.total {
        Some(total) => eprintln!(
            "  sent {}/{} ({:.0}%) at {:.0} records/s",
            p.sent,
            total,
            100.0 * p.sent as f64 / total.max(1) as f64,
            rate
        ),
        None => eprintln!("  sent {} at {:.0} records/s", p.sent, rate),
    }
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let catalog = Arc::new(crate::config::catalog(args.schemas.as_deref())?);
    let fleet = rade_sim::Fleet::new(&args.kinds, args.scale, args.seed);
    let sensors = fleet.sensors.len();
    let sim = Simulator::new(catalog, fleet, args.seed).map_err(anyhow::Error::msg)?;
    let span = if args.rate.is_some() {
        None
    } else {
        Some(args.backfill.unwrap_or(Duration::from_secs(3600)))
    };
    let plan = Plan::new(sim, args.count, span, args.format, args.invalid_share, args.seed);
    eprintln!(
        "simulating {} records from {sensors} sensors into {} ({}*)",
        args.count, args.bootstrap, args.topic_prefix
    );
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &args.bootstrap);
    let stats = rade_sim::produce(&config, &args.topic_prefix, plan, Some(args.count), args.rate, report)
        .with_context(|| format!("while producing to {}", args.bootstrap))?;
    eprintln!(
        "done: {} delivered, {} failed in {:.1} s",
        stats.delivered,
        stats.failed,
        stats.elapsed.as_secs_f64()
    );
    Ok(if stats.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
