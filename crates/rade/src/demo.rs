//! `rade demo`: the whole slice on an embedded Kafka-protocol cluster, no set-up needed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Array, Int64Array, StringArray};
use clap::Args;
use rade_kafka::KafkaConfig;
use rade_lake::{Lake, LakeLocation, LakeOptions, query_session};
use rade_schema::{Catalog, DecodeLimits};
use rade_sim::{FormatChoice, Pace, Scenario, Simulator, Traffic, TrafficPlan};
use rade_telemetry::Metrics;
use rade_worker::{StopWhen, Worker, WorkerConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

use crate::simulate::{report, scenario_start};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the lake; emptied first.
    #[arg(long, default_value = "demo-lake")]
    lake: PathBuf,
    /// Schema catalog directory; default: the shipped schemas, built in.
    #[arg(long)]
    schemas: Option<PathBuf>,
    /// Fleet size factor (1.0: about 4 000 sensors, some 50 000 readings over the 6 hours played).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Stop the simulation after this many records (the flood needs them all).
    #[arg(long)]
    records: Option<u64>,
    /// Share of invalid records (besides the valid ones), spread over every reason.
    #[arg(long, default_value_t = 0.02)]
    invalid_share: f64,
}

const PARTITIONS: i32 = 3;

/// Event time the demo plays: normal traffic, then the flood and time for its windows to close.
const PLAYED: Duration = Duration::from_secs(6 * 3600);

/// The gauge the flood scenario rises on.
const FLOOD_GAUGE: &str = "wl-0001";

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    rade_telemetry::init_tracing_with(false, "warn,buoyant_kernel=off,buoyant_kernel_engine=off");
    let catalog = Arc::new(crate::config::catalog(args.schemas.as_deref())?);
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
    // JSON alerts, so that the demo reads its own alert topic back without an Avro decoder.
    let window_config = rade_window::WindowConfig {
        alert_format: rade_window::AlertFormat::Json,
        ..rade_window::WindowConfig::default()
    };
    cluster
        .create_topic(&window_config.alerts_topic, 1, 1)
        .context("while creating the alert topic")?;
    let specs: Arc<[rade_window::WindowSpec]> = window_config.specs().map_err(anyhow::Error::new)?.into();
    // The shipped rules, built in: the demo runs from any folder.
    let rules = rade_window::RuleSet::embedded(&catalog, &specs)?;
    let windowing = rade_worker::Windowing {
        config: window_config,
        specs,
        rules: Arc::new(rules),
    };

    let scenario = Scenario::Flood;
    let end_ms = chrono::Utc::now().timestamp_millis();
    let start_ms = end_ms - PLAYED.as_millis() as i64;
    let flood_at = scenario_start(scenario, start_ms, end_ms)?;
    let fleet = rade_sim::Fleet::new(&[], args.scale, 42);
    println!(
        "1. simulating {} sensors over the last {} of event time, each on its kind's schedule (schemas/catalog.toml), \
         three wire formats, {:.0}% invalid records besides;\n   over it, scenario `flood`: {}",
        fleet.sensors.len(),
        humantime::format_duration(PLAYED),
        args.invalid_share * 100.0,
        scenario.story()
    );
    let sim = Simulator::new(catalog.clone(), fleet, 42).map_err(anyhow::Error::msg)?;
    let traffic = Traffic::new(
        sim,
        &catalog,
        TrafficPlan {
            start_ms,
            end_ms,
            format: FormatChoice::Mixed,
            invalid_share: args.invalid_share,
            scenario: Some((scenario, flood_at)),
            seed: 42,
        },
    );

    println!("2. the ingest worker reads them as they are sent, until every record is in the lake or the DLQ");
    let runtime = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    let location = LakeLocation::Local(args.lake.clone());
    let lake =
        Lake::open(&location, &LakeOptions::default()).with_context(|| format!("while opening the lake {location}"))?;
    let worker_config = WorkerConfig {
        flush_interval: Duration::from_secs(2),
        roll_interval: Duration::from_secs(10),
        ..WorkerConfig::default()
    };
    let metrics = Metrics::new();
    let worker = Worker::new(
        kafka.clone(),
        worker_config,
        catalog.clone(),
        DecodeLimits::default(),
        lake.clone(),
        metrics.clone(),
    )
    .with_windows(Some(windowing.clone()))
    // The mock cluster's topics take what a broker's do by default.
    .with_dlq_max_message_bytes(1_048_588);
    let handle = runtime.handle().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let worker_stop = stop.clone();
    let worker_thread = std::thread::spawn(move || worker.run(handle, StopWhen::Signal, worker_stop));
    // When each reading of the flood gauge was handed to Kafka, for the alert delays.
    let mut sent_at: HashMap<i64, i64> = HashMap::new();
    let records = traffic
        .take(args.records.map_or(usize::MAX, |n| n as usize))
        .inspect(|r| {
            if r.key == FLOOD_GAUGE.as_bytes() {
                sent_at.insert(r.observed_at_ms, chrono::Utc::now().timestamp_millis());
            }
        });
    let produced = rade_sim::produce_paced(
        &rade_kafka::client_config(&kafka),
        &kafka.raw_topic_prefix,
        records,
        None,
        Pace::Fast,
        report,
    )
    .context("while producing the simulated readings")?;
    // Every record read, the worker stops: it makes what it read durable first.
    let deadline = Instant::now() + Duration::from_secs(300);
    while consumed(&metrics) < produced.delivered && !worker_thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let summary = worker_thread
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
    let alerts =
        read_alerts(&kafka, &windowing.config.alerts_topic, summary.alerts).context("while reading the alerts back")?;
    let crossings = runtime
        .block_on(crossings(&lake, &catalog, &windowing.rules))
        .context("while querying the lake for the flood")?;
    print_timeline(&alerts, &crossings, &sent_at, &windowing.config.alerts_topic);
    println!("\n== where it is ==");
    println!(
        "  lake: {} ({} Parquet files, {:.1} MiB; Delta tables raw/<kind>/, partitioned date=<day>/hour=<HH>/)",
        lake.location(),
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
        "  python3 -c \"from deltalake import DeltaTable; print(DeltaTable('{}/raw/water_level').to_pyarrow_dataset().count_rows())\"",
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
    let ctx = query_session(lake, catalog, &rade_lake::AsOf::Latest).await?;
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

/// Raw records read so far, from the worker's own metrics.
fn consumed(metrics: &Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("rade_records_consumed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Every alert of the topic, with the time the broker got it (its Kafka timestamp).
fn read_alerts(kafka: &KafkaConfig, topic: &str, expected: u64) -> anyhow::Result<Vec<(rade_window::Alert, i64)>> {
    let mut config = rade_kafka::client_config(kafka);
    config
        .set("group.id", "rade-demo-alert-reader")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (out.len() as u64) < expected && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let (Some(payload), Some(at)) = (m.payload(), m.timestamp().to_millis()) else {
            continue;
        };
        if let Ok(alert) = serde_json::from_slice::<rade_window::Alert>(payload) {
            out.push((alert, at));
        }
    }
    Ok(out)
}

/// A flood threshold of the rules (`height_max >= N`) and when the gauge first reached it.
struct Crossing {
    rule: String,
    threshold: f64,
    at_ms: Option<i64>,
    /// Whether the rule is eager: raised at the crossing reading, not when its window closes.
    eager: bool,
}

async fn crossings(lake: &Lake, catalog: &Catalog, rules: &rade_window::RuleSet) -> anyhow::Result<Vec<Crossing>> {
    let Some(water) = rules.kind("water_level") else {
        return Ok(Vec::new());
    };
    let ctx = query_session(lake, catalog, &rade_lake::AsOf::Latest).await?;
    let mut out = Vec::new();
    for rule in &water.window_rules {
        let Some(threshold) = rule
            .condition_sql
            .strip_prefix("height_max >= ")
            .and_then(|n| n.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let sql = format!(
            "SELECT arrow_cast(min(observed_at), 'Int64') / 1000 FROM raw_water_level WHERE sensor_id = '{FLOOD_GAUGE}' AND height >= {threshold}"
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let at_ms = batches
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().cloned())
            .filter(|a| !a.is_empty() && a.is_valid(0))
            .map(|a| a.value(0));
        out.push(Crossing {
            rule: rule.name.clone(),
            threshold,
            at_ms,
            eager: rule.is_eager(),
        });
    }
    Ok(out)
}

fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The story of the flood: each threshold crossed, each alert raised and resolved, and how
/// long after the crossing the alert was on the alert topic.
fn print_timeline(
    alerts: &[(rade_window::Alert, i64)],
    crossings: &[Crossing],
    sent_at: &HashMap<i64, i64>,
    topic: &str,
) {
    println!("\n== alert timeline (event time, UTC; the flood on gauge {FLOOD_GAUGE}, rain upstream) ==");
    enum Line<'a> {
        Crossing(&'a Crossing),
        Alert(&'a rade_window::Alert, i64),
    }
    // The crossing of a rule's threshold, when the alert is a RAISED of that rule.
    let crossing_of = |a: &rade_window::Alert| {
        crossings
            .iter()
            .find(|c| c.rule == a.rule && a.sensor_id == FLOOD_GAUGE)
            .filter(|c| c.at_ms.is_some() && a.state == rade_window::AlertState::Raised)
    };
    // An alert is told when it was decided: at its crossing reading for an eager rule, at
    // its window's end otherwise. The stable sort keeps a crossing before its alert.
    let mut lines: Vec<(i64, Line<'_>)> = crossings
        .iter()
        .filter_map(|c| c.at_ms.map(|at| (at, Line::Crossing(c))))
        .chain(alerts.iter().map(|(a, on_topic)| {
            let decided = crossing_of(a)
                .filter(|c| c.eager)
                .and_then(|c| c.at_ms)
                .unwrap_or(a.window_end);
            (decided, Line::Alert(a, *on_topic))
        }))
        .collect();
    lines.sort_by_key(|(t, _)| *t);
    for (t, line) in &lines {
        match line {
            Line::Crossing(c) => println!(
                "  {}  water at {FLOOD_GAUGE} reaches {} cm ({} threshold)",
                clock(*t),
                c.threshold,
                c.rule
            ),
            Line::Alert(a, on_topic) => {
                let delay = crossing_of(a)
                    .map(|c| {
                        let at = c.at_ms.unwrap_or(a.window_end);
                        let wall = sent_at
                            .get(&at)
                            .map(|sent| {
                                format!(
                                    "; on {topic} {:.1} s (wall clock) after the crossing reading was sent",
                                    (*on_topic - sent) as f64 / 1000.0
                                )
                            })
                            .unwrap_or_default();
                        if c.eager {
                            format!("  raised at the crossing reading (eager rule){wall}")
                        } else {
                            format!(
                                "  window closed {} after the crossing{wall}",
                                humantime::format_duration(Duration::from_secs(
                                    ((a.window_end - at).max(0) as u64).div_ceil(1000)
                                ))
                            )
                        }
                    })
                    .unwrap_or_default();
                println!(
                    "  {}  {:<18} {:<8} {}{delay}",
                    clock(*t),
                    a.rule,
                    a.state.as_str(),
                    a.sensor_id
                );
            }
        }
    }
    if lines.is_empty() {
        println!("  (no alert)");
    }
    let silent = alerts.iter().filter(|(a, _)| a.rule == "sensor_silent").count();
    println!("  silence alerts (sensor_silent, 3 missed heartbeats of the kind's schedule): {silent}");
}
