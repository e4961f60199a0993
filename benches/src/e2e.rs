//! End-to-end harness: replays a pre-filled topic set of N records (1 million by default)
//! through the real `rade run` binary into a local lake, next to a bare rdkafka consumer
//! that only reads the same topics, in the same run. Prints records/s, peak memory and the
//! worker/bare ratio. Each side runs as its own process, measured from spawn to exit
//! (group join included for both); peak memory is VmHWM sampled from /proc every 50 ms.
//!
//! cargo run --release -p rade-benches --bin e2e -- --records 1000000

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rade_schema::WireFormat;
use rade_sim::{Fleet, FormatChoice, Simulator};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// The rade binary to measure (default: next to this harness).
    #[arg(long)]
    rade: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Mode {
    /// Internal: the bare consumer side.
    Bare {
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        #[arg(long)]
        group: String,
        #[arg(long)]
        count: u64,
    },
}

const KINDS: [&str; 4] = ["noise", "parking_bay", "traffic_counter", "weather"];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Some(Mode::Bare { topics, group, count }) => bare(&cli.bootstrap, &topics, &group, count),
        None => harness(&cli),
    }
}

/// Reads `count` messages and touches each payload, nothing more.
fn bare(bootstrap: &str, topics: &[String], group: &str, count: u64) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // The worker's fetch tuning, so that both sides read the same way.
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    let (mut n, mut bytes) = (0u64, 0usize);
    while n < count {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            bytes += m?.payload().map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    println!("bare consumer read {n} messages, {bytes} bytes");
    Ok(())
}

struct Measured {
    seconds: f64,
    peak_rss_mib: f64,
}

/// Runs a command to completion, sampling its peak RSS.
fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit()).spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(Measured {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_kib as f64 / 1024.0,
    })
}

fn harness(cli: &Cli) -> anyhow::Result<()> {
    let here = std::env::current_exe()?;
    let rade = cli.rade.clone().unwrap_or_else(|| here.with_file_name("rade"));
    if !rade.exists() {
        bail!("{} is missing: cargo build --release -p rade", rade.display());
    }
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .canonicalize()?;
    let id = format!("bench-{}", std::process::id());
    let prefix = format!("{id}.raw.");
    let topics: Vec<String> = KINDS.iter().map(|k| format!("{prefix}{k}")).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &cli.bootstrap).create()?;
    let mut new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, cli.partitions, TopicReplication::Fixed(1)))
        .collect();
    let dlq = format!("{id}.dlq");
    new.push(NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)));
    for r in runtime.block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }

    eprintln!(
        "prefilling {} records (Confluent-framed Avro, kinds {KINDS:?}, {} partitions each)",
        cli.records, cli.partitions
    );
    let catalog = rade_benches::catalog();
    let kinds: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
    let mut sim = Simulator::new(catalog, Fleet::new(&kinds, 1.0, 9), 9).map_err(anyhow::Error::msg)?;
    let now = rade_benches::chrono_now_ms();
    let n = cli.records;
    let records = (0..n).map(move |i| {
        sim.valid(
            now - 6 * 3_600_000 + (i as i64 * 6 * 3_600_000 / n as i64),
            FormatChoice::One(WireFormat::Confluent),
        )
    });
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &cli.bootstrap);
    let produced = rade_sim::produce(&config, &prefix, records, Some(n), None, |_| {})?;
    if produced.delivered != n {
        bail!("only {} of {n} records were delivered", produced.delivered);
    }
    eprintln!("prefilled in {:.1} s", produced.elapsed.as_secs_f64());

    eprintln!("bare rdkafka consumer...");
    let bare = measure(Command::new(&here).args([
        "--bootstrap",
        &cli.bootstrap,
        "bare",
        "--topics",
        &topics.join(","),
        "--group",
        &format!("{id}-bare"),
        "--count",
        &n.to_string(),
    ]))?;

    let dir = tempfile_dir(&id)?;
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules").canonicalize()?;
    // The same records twice more, each time with a new group and lake: the raw path only,
    // then with the windows and rules of the shipped configuration.
    let mut runs = Vec::new();
    for (name, windows) in [
        ("raw", "[windows]\nenabled = false\n".to_owned()),
        (
            "windows",
            format!(
                "[windows]\nrules_dir = \"{}\"\nalerts_topic = \"{id}.alerts\"\n",
                rules.display()
            ),
        ),
    ] {
        eprintln!("rade worker into a local lake ({name})...");
        let lake = dir.join(format!("lake-{name}"));
        let config_path = dir.join(format!("rade-{name}.toml"));
        std::fs::write(
            &config_path,
            format!(
                "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{id}-{name}\"\nraw_topic_prefix = \"{prefix}\"\nkinds = [{}]\ndlq_topic = \"{dlq}\"\n\
                 [worker]\nflush_interval = \"1s\"\nflush_size = \"1GiB\"\nroll_interval = \"1s\"\n[lake]\nurl = \"{}\"\n[schemas]\ndir = \"{}\"\n[telemetry]\nlisten = \"\"\n{windows}",
                cli.bootstrap,
                KINDS.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", "),
                lake.display(),
                schemas.display()
            ),
        )?;
        let worker = measure(
            Command::new(&rade)
                .args([
                    "run",
                    "--config",
                    config_path.to_str().context("utf-8 path")?,
                    "--until-caught-up",
                ])
                .env("RUST_LOG", "warn"),
        )?;
        let (rows, bytes) = lake_rows(&lake.join("raw"))?;
        if rows != n {
            bail!("the {name} lake holds {rows} raw rows, expected {n}");
        }
        let (aggregates, _) = if lake.join("aggregates").exists() {
            lake_rows(&lake.join("aggregates"))?
        } else {
            (0, 0)
        };
        runs.push((name, worker, rows, bytes, aggregates));
    }
    let bare_rate = n as f64 / bare.seconds;
    println!("| run | records | seconds | records/s | µs/record | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| bare rdkafka consumer (read only) | {n} | {:.2} | {:.0} | {:.2} | {:.0} |",
        bare.seconds,
        bare_rate,
        bare.seconds * 1e6 / n as f64,
        bare.peak_rss_mib
    );
    for (name, worker, _, _, aggregates) in &runs {
        let what = match *name {
            "raw" => "rade run, windows off (raw Parquet only)".to_owned(),
            _ => format!("rade run, windows and rules on ({aggregates} window rows)"),
        };
        println!(
            "| {what} | {n} | {:.2} | {:.0} | {:.2} | {:.0} |",
            worker.seconds,
            n as f64 / worker.seconds,
            worker.seconds * 1e6 / n as f64,
            worker.peak_rss_mib
        );
    }
    println!();
    let (raw, windows) = (&runs[0], &runs[1]);
    println!(
        "worker / bare rate: {:.2}   (lake: {} rows, {:.1} MiB of Parquet)",
        (n as f64 / raw.1.seconds) / bare_rate,
        raw.2,
        raw.3 as f64 / 1048576.0
    );
    println!(
        "windows and rules / raw ingest time per record: {:.2}   (target: below 0.33)",
        (windows.1.seconds - raw.1.seconds) / raw.1.seconds
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir(id: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(id);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Rows and bytes of every Parquet file under `lake`, from the footers.
fn lake_rows(lake: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut stack = vec![lake.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                bytes += std::fs::metadata(&p)?.len();
                let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&p)?)?;
                use parquet::file::reader::FileReader;
                rows += reader.metadata().file_metadata().num_rows() as u64;
            }
        }
    }
    Ok((rows, bytes))
}
