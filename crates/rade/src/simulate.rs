//! `rade simulate`: TPM sensor traffic into Kafka, each device on its kind's schedule.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rade_sim::{Fleet, FormatChoice, Pace, Progress, Scenario, Simulator, Traffic, TrafficPlan};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, Args)]
#[command(after_help = scenarios_help())]
pub struct SimulateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", env = "RADE__KAFKA__BOOTSTRAP_SERVERS")]
    bootstrap: String,
    /// Raw topics are <prefix><kind>.
    #[arg(long, default_value = "tpm.raw.")]
    topic_prefix: String,
    /// Schema catalog directory; default: the shipped schemas, built in (with the device schedules of each kind).
    #[arg(long)]
    schemas: Option<PathBuf>,
    /// Wire format: confluent, single-object, json, or mixed (all three in turn).
    #[arg(long, default_value = "mixed")]
    format: FormatChoice,
    /// Backfill: what the fleet sent over this span of event time, ending now (e.g. "6h",
    /// "2days"), sent as fast as the broker takes it. The default when --live is not given (1h).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "live")]
    backfill: Option<Duration>,
    /// Live: the fleet's readings as they fall due, event time = now, until stopped (or --count).
    #[arg(long)]
    live: bool,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Send at most this many records per second. Without --backfill, implies --live.
    #[arg(long)]
    rate: Option<f64>,
    /// Play this event of the territory over the normal traffic (see below).
    #[arg(long)]
    scenario: Option<Scenario>,
    /// List the scenarios and the alerts each must raise, and exit.
    #[arg(long)]
    list_scenarios: bool,
    /// Share of invalid records (sent besides the valid ones), over every DLQ reason the decoder judges.
    #[arg(long, default_value_t = 0.0)]
    invalid_share: f64,
    /// Only these kinds (comma-separated); default every kind.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Fleet size factor (1.0: about 4 000 sensors over the territory, some 200 000 readings a day).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Partitions of the raw topics this run creates (existing topics are left as they are).
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Random seed, for reproducible traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn scenarios_help() -> String {
    let mut s = String::from("Scenarios (--scenario <name>), and the alerts of the shipped rules each must raise:\n");
    let fleet = Fleet::new(&[], 1.0, 42);
    for sc in Scenario::ALL {
        s.push_str(&format!("  {:<14} {}\n", sc.name(), sc.story()));
        s.push_str(&format!("  {:<14} raises: {}\n", "", expected_line(sc, &fleet)));
    }
    s
}

fn expected_line(sc: Scenario, fleet: &Fleet) -> String {
    sc.expected(fleet)
        .iter()
        .map(|e| format!("{} {} {}", e.rule, e.sensor_id, e.state))
        .collect::<Vec<_>>()
        .join(", ")
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

/// When a scenario starts in a backfill ending at `end_ms`: late enough that the normal
/// traffic comes first, early enough that every window of the event closes before the end.
pub fn scenario_start(sc: Scenario, start_ms: i64, end_ms: i64) -> anyhow::Result<i64> {
    let at = end_ms - sc.tail_ms() - sc.duration_ms();
    if at < start_ms {
        anyhow::bail!(
            "the {sc} scenario needs a backfill of at least {} (its event, then time for its windows to close)",
            humantime::format_duration(Duration::from_millis((sc.duration_ms() + sc.tail_ms()) as u64))
        );
    }
    Ok(at)
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.list_scenarios {
        let fleet = Fleet::new(&args.kinds, args.scale, args.seed);
        for sc in Scenario::ALL {
            println!("{}: {}", sc.name(), sc.story());
            println!("  kinds: {}", sc.kinds().join(", "));
            println!("  raises: {}", expected_line(sc, &fleet));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = Arc::new(crate::config::catalog(args.schemas.as_deref())?);
    if let Some(k) = args.kinds.iter().find(|k| catalog.kind(k).is_none()) {
        anyhow::bail!(
            "--kinds: {k} is not a kind of the catalog{}",
            args.schemas
                .as_deref()
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default()
        );
    }
    let fleet = Fleet::new(&args.kinds, args.scale, args.seed);
    let sensors = fleet.sensors.len();
    let mut kinds: Vec<String> = fleet.sensors.iter().map(|s| s.kind.clone()).collect();
    kinds.dedup();
    let sim = Simulator::new(catalog.clone(), fleet, args.seed).map_err(anyhow::Error::msg)?;
    let now = chrono::Utc::now().timestamp_millis();
    let live = args.live || (args.rate.is_some() && args.backfill.is_none());
    let (start_ms, end_ms) = if live {
        (now, i64::MAX)
    } else {
        let span = args.backfill.unwrap_or(Duration::from_secs(3600));
        (now - span.as_millis() as i64, now)
    };
    let scenario = match args.scenario {
        Some(sc) if live => Some((sc, start_ms)),
        Some(sc) => Some((sc, scenario_start(sc, start_ms, end_ms)?)),
        None => None,
    };
    let plan = TrafficPlan {
        start_ms,
        end_ms,
        format: args.format,
        invalid_share: args.invalid_share,
        scenario,
        seed: args.seed,
    };
    let traffic = Traffic::new(sim, &catalog, plan);
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.bootstrap);
    let topics: Vec<String> = kinds.iter().map(|k| format!("{}{k}", args.topic_prefix)).collect();
    create_missing_topics(&config, &topics, args.partitions)
        .with_context(|| format!("while creating the raw topics on {}", args.bootstrap))?;
    let what = match (live, args.backfill) {
        (true, _) => "live".to_owned(),
        (false, span) => format!(
            "the last {}",
            humantime::format_duration(span.unwrap_or(Duration::from_secs(3600)))
        ),
    };
    eprintln!(
        "simulating {sensors} sensors on their schedules, {what}{}{} into {} ({}*)",
        args.scenario.map(|s| format!(", scenario {s}")).unwrap_or_default(),
        args.count.map(|c| format!(", at most {c} records")).unwrap_or_default(),
        args.bootstrap,
        args.topic_prefix
    );
    if let Some((sc, at)) = scenario {
        eprintln!(
            "  {sc} from {}: {}",
            chrono::DateTime::from_timestamp_millis(at)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default(),
            sc.story()
        );
    }
    let pace = match (live, args.rate) {
        (true, max_rate) => Pace::Live { max_rate },
        (false, Some(r)) => Pace::Rate(r),
        (false, None) => Pace::Fast,
    };
    let records = traffic.take(args.count.map_or(usize::MAX, |c| c as usize));
    let stats = rade_sim::produce_paced(&config, &args.topic_prefix, records, args.count, pace, report)
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

/// Creates the topics that do not exist yet: a topic auto-created by the first message lands
/// that message after later ones, and its device's readings are then late.
fn create_missing_topics(config: &ClientConfig, topics: &[String], partitions: i32) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let results = runtime.block_on(admin.create_topics(
        &new,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("topic {topic}: {code}"),
        }
    }
    // Wait until the broker knows them, so that the first messages find their partitions.
    let consumer: rdkafka::consumer::BaseConsumer = config.create()?;
    for t in topics {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = consumer.fetch_metadata(Some(t), Duration::from_secs(5)).is_ok_and(|m| {
                m.topics()
                    .first()
                    .is_some_and(|x| x.error().is_none() && !x.partitions().is_empty())
            });
            if ready {
                break;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("topic {t} is not visible 30 s after its creation");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}
