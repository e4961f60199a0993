//! `rade demo`: the whole slice on an embedded Kafka-protocol cluster, no set-up needed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Array, Int64Array, StringArray};
use clap::Args;
use rade_kafka::{KafkaConfig, StopWhen, Worker, WorkerConfig};
use rade_lake::{Lake, query_session};
use rade_schema::{Catalog, DecodeLimits};
use rade_sim::{FormatChoice, Simulator};
use rade_telemetry::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

use crate::simulate::{Plan, report};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the lake; emptied first.
    #[arg(long, default_value = "demo-lake")]
    lake: PathBuf,
    /// Schema catalog directory.
    #[arg(long, default_value = "schemas")]
    schemas: PathBuf,
    /// Records to simulate, spread over the last three hours of event time.
    #[arg(long, default_value_t = 30_000)]
    records: u64,
    /// Share of invalid records, spread over every reason.
    #[arg(long, default_value_t = 0.02)]
    invalid_share: f64,
}

const PARTITIONS: i32 = 3;

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    rade_telemetry::init_tracing_with(false, "warn");
    let catalog = Arc::new(
        Catalog::load(&args.schemas)
            .with_context(|| format!("while loading the schemas of {}", args.schemas.display()))?,
    );
    if args.lake.exists() {
        std::fs::remove_dir_all(&args.lake).with_context(|| format!("while emptying {}", args.lake.display()))?;
    }
    let started = Instant::now();
    println!("rade demo: an in-process Kafka mock cluster, the TPM simulator, the ingest pipeline, a local lake\n");

    let cluster = MockCluster::new(1).context("while starting the embedded Kafka mock cluster")?;
    let bootstrap = cluster.bootstrap_servers();
    let kafka = KafkaConfig {
        bootstrap_servers: bootstrap.clone(),
        group_id: "rade-demo".into(),
        ..KafkaConfig::default()
    };
    for kind in catalog.kinds() {
        cluster
            .create_topic(&kafka.raw_topic(&kind.kind), PARTITIONS, 1)
            .context("while creating the raw topics")?;
    }
    cluster
        .create_topic(&kafka.dlq_topic, 1, 1)
        .context("while creating the DLQ topic")?;
    let window_config = rade_window::WindowConfig::default();
    cluster
        .create_topic(&window_config.alerts_topic, 1, 1)
        .context("while creating the alert topic")?;
    let specs: Arc<[rade_window::WindowSpec]> = window_config.specs().map_err(anyhow::Error::new)?.into();
    // The shipped rules when run from the repository; windows without rules otherwise.
    let rules = if window_config.rules_dir.is_dir() {
        rade_window::RuleSet::load(&window_config.rules_dir, &catalog, &specs)?
    } else {
        rade_window::RuleSet::empty(&catalog)?
    };
    let windowing = rade_kafka::Windowing {
        config: window_config,
        specs,
        rules: Arc::new(rules),
    };

    println!(
        "1. simulating {} readings of about 4 000 sensors over the last 3 hours (three wire formats, {:.0}% invalid)",
        args.records,
        args.invalid_share * 100.0
    );
    let fleet = rade_sim::Fleet::new(&[], 1.0, 42);
    let sim = Simulator::new(catalog.clone(), fleet, 42).map_err(anyhow::Error::msg)?;
    let plan = Plan::new(
        sim,
        args.records,
        Some(Duration::from_secs(3 * 3600)),
        FormatChoice::Mixed,
        args.invalid_share,
        42,
    );
    let produced = rade_sim::produce(
        &rade_kafka::client_config(&kafka),
        &kafka.raw_topic_prefix,
        plan,
        Some(args.records),
        None,
        report,
    )
    .context("while producing the simulated readings")?;

    println!("2. running the ingest worker until every partition is read and durable");
    let runtime = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    let lake_url = args.lake.display().to_string();
    let lake = Lake::open(&lake_url).with_context(|| format!("while opening the lake {lake_url}"))?;
    let worker_config = WorkerConfig {
        flush_interval: Duration::from_secs(2),
        roll_interval: Duration::from_secs(10),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(
        kafka.clone(),
        worker_config,
        catalog.clone(),
        DecodeLimits::default(),
        lake.clone(),
        Metrics::new(),
    )
    .with_windows(Some(windowing.clone()))
    // The mock cluster's topics take what a broker's do by default.
    .with_dlq_max_message_bytes(1_048_588);
    let handle = runtime.handle().clone();
    let summary = std::thread::spawn(move || worker.run(handle, StopWhen::CaughtUp, Arc::new(AtomicBool::new(false))))
        .join()
        .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))?
        .context("while running the ingest worker")?;

    let examples = read_dlq(&kafka, summary.dlq_produced).context("while reading the DLQ back")?;
    let rows = runtime
        .block_on(rows_per_kind(&lake, &catalog))
        .context("while querying the lake")?;
    let lake_rows: i64 = rows.values().sum();

    println!("\n== what came in ==");
    println!(
        "  produced {} records, consumed {}",
        produced.delivered, summary.consumed
    );
    println!(
        "  valid, now in the lake: {}  (lake query counts {lake_rows} rows)",
        summary.valid
    );
    for (kind, n) in &rows {
        println!("    raw_{kind:<16} {n:>7} rows");
    }
    println!(
        "\n== what was rejected, and why (each in topic {} with its original bytes) ==",
        kafka.dlq_topic
    );
    for (reason, n) in &summary.rejected {
        let example = examples.get(reason.as_str()).map(String::as_str).unwrap_or("");
        println!("  {:<15} {n:>5}   e.g. {example}", reason.as_str());
    }
    println!("\n== windows and alerts ==");
    println!(
        "  {} sensor windows closed ({}), {} alert state changes on {}, {} late records",
        summary.windows_closed,
        windowing
            .specs
            .iter()
            .map(|s| s.label.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        summary.alerts,
        windowing.config.alerts_topic,
        summary.late
    );
    println!("  rules: {}", windowing.rules.rule_names().join(", "));
    println!("\n== where it is ==");
    println!(
        "  lake: {} ({} Parquet files, {:.1} MiB, Hive layout raw/kind=<kind>/date=<day>/hour=<HH>/)",
        lake.local_dir().unwrap_or(&lake_url),
        summary.files_written,
        summary.bytes_written as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  committed offsets: {} partitions, all at their end",
        summary.committed.len()
    );
    println!("  took {:.1} s", started.elapsed().as_secs_f64());
    println!("\n== try next ==");
    println!(
        "  rade query --lake {} \"SELECT sensor_id, max(height) AS max_cm FROM raw_water_level GROUP BY sensor_id ORDER BY max_cm DESC LIMIT 5\"",
        args.lake.display()
    );
    println!(
        "  rade query --lake {} \"SELECT hour, count(*) FROM raw_parking_bay WHERE status = 'occupied' GROUP BY hour ORDER BY hour\"",
        args.lake.display()
    );
    println!(
        "  python3 -c \"import pyarrow.dataset as ds; print(ds.dataset('{}/raw', partitioning='hive').count_rows())\"",
        args.lake.display()
    );
    println!("  make up && rade run --config deploy/local/rade.toml   # a worker on a real Kafka broker");
    let consistent = summary.consumed == summary.valid + summary.rejected_total() && lake_rows as u64 == summary.valid;
    if !consistent {
        eprintln!(
            "error: the counts do not add up: consumed {} != valid {} + rejected {}, or lake rows {lake_rows} != valid",
            summary.consumed,
            summary.valid,
            summary.rejected_total()
        );
        return Ok(ExitCode::FAILURE);
    }
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}

/// One detail per reason, from the DLQ itself.
fn read_dlq(kafka: &KafkaConfig, expected: u64) -> anyhow::Result<BTreeMap<String, String>> {
    let mut config = rade_kafka::client_config(kafka);
    config
        .set("group.id", "rade-demo-dlq-reader")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&kafka.dlq_topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut examples = BTreeMap::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen < expected && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        seen += 1;
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let (Some(reason), Some(detail)) = (header("rade.reason"), header("rade.detail")) {
            examples.entry(reason).or_insert(detail);
        }
    }
    Ok(examples)
}

async fn rows_per_kind(lake: &Lake, catalog: &Catalog) -> anyhow::Result<BTreeMap<String, i64>> {
    let ctx = query_session(lake, catalog).await?;
    let union: Vec<String> = catalog
        .kinds()
        .iter()
        .map(|k| format!("SELECT '{0}' AS kind, count(*) AS n FROM raw_{0}", k.kind))
        .collect();
    let batches = ctx.sql(&union.join(" UNION ALL ")).await?.collect().await?;
    let mut rows = BTreeMap::new();
    for b in batches {
        let kinds = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .context("kind column")?;
        let counts = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("count column")?;
        for i in 0..b.num_rows() {
            if !kinds.is_null(i) {
                rows.insert(kinds.value(i).to_owned(), counts.value(i));
            }
        }
    }
    Ok(rows)
}
