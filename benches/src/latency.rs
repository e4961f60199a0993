//! Live alert latency: a real `rade run` on a real broker, fed water-level readings in real
//! time (event time = the wall clock when sent, keyed by sensor) at a steady rate, with the
//! shipped rules plus one probe rule decided when its window closes. Prints, from the alerts
//! read back off the alert topic:
//!
//! - after the watermark: the time from the watermark passing a window's end (the wall clock
//!   reaching window end + allowed lateness, since event time is the wall clock) to the probe
//!   rule's alert on the topic. The probe rule watches 5-second windows (added to the shipped
//!   windows for this run) so that a window closes every 5 s: `close-<i>` gauges take turns
//!   being high (300 cm) for one 5-second slot each;
//! - after the crossing: the time from sending the reading that crosses 250 cm to the eager
//!   `flood_warning` alert on the topic. `flood-<i>` gauges are high one minute in four, at
//!   staggered minutes.
//!
//! The other gauges stay calm (100 cm). `RADE_KEEP=1` keeps the worker's folder (config, log,
//! lake) under the temp directory.
//!
//! cargo run --release -p rade-benches --bin latency -- --rate 200 --seconds 180

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rade_benches::chrono_now_ms;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Readings per second, every gauge reporting once a second.
    #[arg(long, value_delimiter = ',', default_values_t = [200u32, 20_000])]
    rate: Vec<u32>,
    /// How long each rate is played, after the warm-up.
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Gauges raising the eager flood rule, among the others.
    #[arg(long, default_value_t = 64)]
    flood_probes: u32,
}

const MIN: i64 = 60_000;
const LATENESS_MS: i64 = 60_000;
/// The probe rule's window, and the gauges taking turns to be high in it.
const SLOT_MS: i64 = 5_000;
const CLOSE_PROBES: u32 = 12;
const WARM_UP_S: u64 = 20;

/// The probe rule: decided when its 5-second window closes (not eager), raised by a high slot
/// and resolved by the calm one after it.
const PROBE_RULE: &str = r#"
[[rule]]
name = "probe_close"
kinds = ["water_level"]
window = "5s"
severity = "info"
condition = "starts_with(sensor_id, 'close-') AND height_max >= 250"
clear = "height_max < 230"
message = "{sensor_id}"
"#;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!(
        "| readings/s | gauges | probe alerts after the watermark: n, p50, p99, max (ms) | flood alerts after the crossing reading: n, p50, p99, max (ms) |"
    );
    println!("|---:|---:|---|---|");
    for &rate in &cli.rate {
        let (close, eager) = run(&cli, rate)?;
        println!("| {rate} | {rate} | {} | {} |", summary(close), summary(eager));
    }
    Ok(())
}

fn summary(mut ms: Vec<i64>) -> String {
    if ms.is_empty() {
        return "none".into();
    }
    ms.sort_unstable();
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!("{}, {}, {}, {}", ms.len(), at(0.5), at(0.99), ms[ms.len() - 1])
}

/// Kills the worker when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One rate: the latencies after the watermark and after the crossing, in ms.
fn run(cli: &Cli, rate: u32) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let here = std::env::current_exe()?;
    let rade = here.with_file_name("rade");
    if !rade.exists() {
        bail!("{} is missing: cargo build --release -p rade", rade.display());
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let id = format!("latency-{}-{rate}", std::process::id());
    let prefix = format!("{id}.raw.");
    let raw = format!("{prefix}water_level");
    let (alerts, dlq) = (format!("{id}.alerts"), format!("{id}.dlq"));
    let runtime = tokio::runtime::Runtime::new()?;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &cli.bootstrap).create()?;
    let new = [
        NewTopic::new(&raw, cli.partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&alerts, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
    ];
    for r in runtime.block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }

    let dir = std::env::temp_dir().join(&id);
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules)?;
    for entry in std::fs::read_dir(repo.join("rules"))? {
        let path = entry?.path();
        std::fs::copy(&path, rules.join(path.file_name().context("a file name")?))?;
    }
    std::fs::write(rules.join("probe.toml"), PROBE_RULE)?;
    let config = dir.join("rade.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{id}\"\nraw_topic_prefix = \"{prefix}\"\nkinds = [\"water_level\"]\ndlq_topic = \"{dlq}\"\n\
             [lake]\nurl = \"{}\"\n[schemas]\ndir = \"{}\"\n[telemetry]\nlisten = \"\"\n\
             [windows]\nwindows = [\"1m\", \"15m\", \"1h\", \"1h_every_15m\", \"5s\"]\nrules_dir = \"{}\"\nalerts_topic = \"{alerts}\"\nalert_format = \"json\"\nallowed_lateness = \"{}ms\"\n",
            cli.bootstrap,
            dir.join("lake").display(),
            repo.join("schemas").display(),
            rules.display(),
            LATENESS_MS,
        ),
    )?;
    let log = std::fs::File::create(dir.join("rade.log"))?;
    let _worker = Worker(
        Command::new(&rade)
            .args(["run", "--config", config.to_str().context("utf-8 path")?])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );

    // The alert topic, read from its start on a thread of its own: (wall clock ms, alert).
    let seen: Arc<Mutex<Vec<(i64, serde_json::Value)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &cli.bootstrap)
            .set("group.id", format!("{id}-reader"))
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        consumer.subscribe(&[&alerts])?;
        let (seen, done) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                    let at = chrono_now_ms();
                    if let Some(v) = m.payload().and_then(|p| serde_json::from_slice(p).ok()) {
                        seen.lock().expect("seen").push((at, v));
                    }
                }
            }
        })
    };

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &cli.bootstrap)
        .set("linger.ms", "1")
        .create()?;
    let flood = cli.flood_probes;
    let gauges: Vec<String> = (0..rate)
        .map(|i| match i {
            i if i < flood => format!("flood-{i}"),
            i if i < flood + CLOSE_PROBES => format!("close-{}", i - flood),
            i => format!("g-{i}"),
        })
        .collect();
    // Whether gauge `i` reads high at `now`.
    let high = |i: u32, now: i64| {
        if i < flood {
            now.div_euclid(MIN).rem_euclid(4) == i64::from(i % 4)
        } else if i < flood + CLOSE_PROBES {
            now.div_euclid(SLOT_MS).rem_euclid(i64::from(CLOSE_PROBES)) == i64::from(i - flood)
        } else {
            false
        }
    };
    let mut crossings: HashMap<(String, i64), i64> = HashMap::new();
    let started = Instant::now();
    // The worker joins its group in a few seconds: windows that start later are measured.
    let play = Duration::from_secs(WARM_UP_S + cli.seconds);
    let warm_until = chrono_now_ms() + WARM_UP_S as i64 * 1000;
    let mut sent = 0u64;
    eprintln!(
        "{rate} readings/s for {} s ({WARM_UP_S} s of warm-up first)...",
        play.as_secs()
    );
    while started.elapsed() < play {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let i = (sent % u64::from(rate)) as usize;
            let now = chrono_now_ms();
            let minute = now.div_euclid(MIN);
            let sensor = &gauges[i];
            let high = high(i as u32, now);
            let height = if high { 300.0 } else { 100.0 };
            let value = format!(
                r#"{{"sensor_id":"{sensor}","observed_at":{now},"latitude":43.1,"longitude":5.9,"height":{height},"flow":null}}"#
            );
            loop {
                match producer.send(BaseRecord::to(&raw).key(sensor.as_str()).payload(&value)) {
                    Ok(()) => break,
                    Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                        producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => bail!("producing: {e}"),
                }
            }
            if high && (i as u32) < flood {
                crossings.entry((sensor.clone(), minute)).or_insert(now);
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
    }
    producer.flush(Duration::from_secs(10))?;
    eprintln!(
        "sent {sent} readings in {:.1} s: {:.0} readings/s",
        started.elapsed().as_secs_f64(),
        sent as f64 / started.elapsed().as_secs_f64()
    );
    // Alerts of windows closed while readings flowed are on the topic within seconds; the
    // windows still open when the readings stop are not measured.
    std::thread::sleep(Duration::from_secs(3));
    done.store(true, Ordering::Relaxed);
    let _ = reader.join();

    let seen = seen.lock().expect("seen");
    let mut by_rule: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, a) in seen.iter() {
        *by_rule.entry(format!("{} {}", a["rule"], a["state"])).or_default() += 1;
    }
    eprintln!("alerts read: {by_rule:?}");
    let (mut close, mut eager) = (Vec::new(), Vec::new());
    for (at, a) in seen.iter() {
        let (Some(rule), Some(sensor), Some(end)) =
            (a["rule"].as_str(), a["sensor_id"].as_str(), a["window_end"].as_i64())
        else {
            continue;
        };
        match (rule, a["state"].as_str()) {
            ("probe_close", _) if end - SLOT_MS >= warm_until => close.push(at - (end + LATENESS_MS)),
            ("flood_warning", Some("RAISED")) if end - MIN >= warm_until => {
                if let Some(sent_at) = crossings.get(&(sensor.to_owned(), (end - MIN).div_euclid(MIN))) {
                    eager.push(at - sent_at);
                }
            }
            _ => {}
        }
    }
    if std::env::var_os("RADE_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((close, eager))
}
