//! `rade run` and `rade check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rade_lake::Lake;
use rade_telemetry::Metrics;
use rade_worker::{StopWhen, Worker};
use tracing::{error, info};

use crate::config::{self, Config, LogFormat};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); every key can be overridden by RADE__SECTION__KEY.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Stop once every assigned partition is read to its end and durable (replays, backfills).
    #[arg(long)]
    until_caught_up: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file (TOML) to check.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the files only; do not try to reach Kafka and the lake.
    #[arg(long)]
    offline: bool,
}

/// Exit code when the configuration is refused.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code when the shutdown did not finish in time; the next worker replays without duplicates.
const EXIT_SHUTDOWN_TIMEOUT: u8 = 3;

/// Loads and validates, printing every problem; `None` when the config is refused.
pub fn load_config(path: Option<&Path>) -> Option<Config> {
    let raw = load_raw(path)?;
    config::validate(raw, Path::new("."))
        .map_err(|problems| print_refused(path, &problems))
        .ok()
}

/// Reads the layers, printing why when they cannot be read; `None` then.
pub fn load_raw(path: Option<&Path>) -> Option<config::RawConfig> {
    match config::load(path) {
        Ok(raw) => Some(raw),
        Err(e) => {
            eprintln!("error: invalid configuration\n  {}", e.replace('\n', "\n  "));
            None
        }
    }
}

/// Prints every problem of the configuration at `path` (or of the defaults).
pub fn print_refused(path: Option<&Path>, problems: &[String]) {
    let origin = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults".into());
    eprintln!("error: invalid configuration ({origin})");
    for p in problems {
        eprintln!("  {p}");
    }
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(args.config.as_deref()) else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let kinds: Vec<_> = config
        .catalog
        .kinds()
        .iter()
        .map(|k| {
            // A kind with older versions reads their records into its latest one.
            let older: Vec<_> = config
                .catalog
                .versions(&k.kind)
                .filter(|v| v.id != k.id)
                .map(|v| format!("v{} id {}", v.version, v.id))
                .collect();
            if older.is_empty() {
                format!("{} (id {})", k.kind, k.id)
            } else {
                format!("{} v{} (id {}, reads {})", k.kind, k.version, k.id, older.join(", "))
            }
        })
        .collect();
    println!("configuration OK");
    println!(
        "  kafka: {} group {}",
        config.kafka.bootstrap_servers, config.kafka.group_id
    );
    println!("  schemas: {}", kinds.join(", "));
    // The 8 bytes a single-object message carries after C3 01, as fastavro and the Apache
    // `avro` package print them, then the same value as Java's 64-bit number.
    println!("  fingerprints (CRC-64-AVRO of the Parsing Canonical Form: wire bytes, then as a 64-bit number):");
    for s in config.catalog.schemas() {
        let mut line = format!(
            "    {} v{} id {}: {} = {:#018x}",
            s.kind,
            s.version,
            s.id,
            wire_hex(s.fingerprint),
            s.fingerprint
        );
        if s.legacy_fingerprint != s.fingerprint {
            line.push_str(&format!(
                " (apache-avro 0.21's form also read: {})",
                wire_hex(s.legacy_fingerprint)
            ));
        }
        println!("{line}");
    }
    println!("  lake: {}", config.lake.location);
    match &config.windowing {
        Some(w) => {
            println!(
                "  windows: {} (lateness {}, idle after {})",
                w.specs.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", "),
                humantime::format_duration(w.config.allowed_lateness),
                humantime::format_duration(w.config.idle_timeout)
            );
            // What each kind keeps of those windows (`windows` of its catalog schedule).
            let per_kind: Vec<String> = config
                .catalog
                .kinds()
                .iter()
                .filter_map(|k| {
                    let rules = w.rules.kind(&k.kind)?;
                    let kept: Vec<&str> = w
                        .specs
                        .iter()
                        .enumerate()
                        .filter(|(s, _)| rules.keeps(*s))
                        .map(|(_, spec)| spec.label.as_str())
                        .collect();
                    let kept = match kept.len() {
                        0 => "none".to_owned(),
                        n if n == w.specs.len() => "all".to_owned(),
                        _ => kept.join(" "),
                    };
                    Some(format!("{} {kept}", k.kind))
                })
                .collect();
            println!("  windows per kind: {}", per_kind.join(", "));
            let mut eager: Vec<&str> = config
                .catalog
                .kinds()
                .iter()
                .filter_map(|k| w.rules.kind(&k.kind))
                .flat_map(|r| r.window_rules.iter().filter(|r| r.is_eager()).map(|r| r.name.as_str()))
                .collect();
            eager.sort_unstable();
            eager.dedup();
            println!(
                "  rules: {} from {} file(s) in {}: {}",
                w.rules.rule_names().len(),
                w.rules.files().len(),
                w.config
                    .rules_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| rade_window::EMBEDDED_RULES_DIR.into()),
                w.rules.rule_names().join(", ")
            );
            if !eager.is_empty() {
                println!("  eager rules (raised at the crossing reading): {}", eager.join(", "));
            }
            println!("  alerts: {} ({:?})", w.config.alerts_topic, w.config.alert_format);
        }
        None => println!("  windows: off"),
    }
    if args.offline {
        return Ok(ExitCode::SUCCESS);
    }
    let brokers = rade_kafka::probe(&config.kafka, config.worker.connect_timeout)
        .context("while checking that Kafka can be reached")?;
    println!("  kafka reachable: {brokers} broker(s)");
    let lake = open_lake(&config.lake)?;
    let runtime = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    runtime
        .block_on(lake.check_writable())
        .with_context(|| format!("while checking that the lake {} takes writes", config.lake.location))?;
    println!("  lake writable");
    Ok(ExitCode::SUCCESS)
}

/// Opens the lake of a checked `[lake]` section.
pub fn open_lake(lake: &config::LakeConfig) -> anyhow::Result<Lake> {
    Lake::open(&lake.location, &lake.options).with_context(|| format!("while opening the lake {}", lake.location))
}

/// A fingerprint as the hex of its little-endian bytes, the order of the single-object header.
fn wire_hex(fingerprint: u64) -> String {
    fingerprint.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(args.config.as_deref()) else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    rade_telemetry::init_tracing(config.log == LogFormat::Json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rade-io")
        .build()
        .context("while starting the async runtime")?;
    let lake = open_lake(&config.lake)?;
    runtime
        .block_on(lake.check_writable())
        .with_context(|| format!("while checking that the lake {} takes writes", config.lake.location))?;
    let shutdown_timeout = config.worker.shutdown_timeout;
    let metrics = Metrics::new();
    if let Some(addr) = config.listen {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("while binding the metrics endpoint to {addr} (telemetry.listen)"))?;
        let bound = listener.local_addr().unwrap_or(addr);
        info!(addr = %bound, "serving /metrics, /healthz and /readyz");
        let server = rade_telemetry::serve(listener, metrics.clone(), std::future::pending());
        runtime.spawn(async move {
            if let Err(e) = server.await {
                error!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    let worker = Worker::new(
        config.kafka,
        config.worker,
        config.catalog,
        config.limits,
        lake,
        metrics,
    )
    .with_windows(config.windowing);

    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn(wait_for_signal(stop.clone()));
    let handle = runtime.handle().clone();
    let stop_when = if args.until_caught_up {
        StopWhen::CaughtUp
    } else {
        StopWhen::Signal
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let worker_stop = stop.clone();
    std::thread::Builder::new()
        .name("rade-ingest".into())
        .spawn(move || {
            let _ = tx.send(worker.run(handle, stop_when, worker_stop));
        })
        .context("while starting the ingest thread")?;

    let mut stopping_since: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(_summary)) => return Ok(ExitCode::SUCCESS),
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context("the ingest worker stopped")),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the ingest thread ended without a result")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop.load(Ordering::Relaxed) {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if since.elapsed() > shutdown_timeout {
                error!(
                    timeout = ?shutdown_timeout,
                    "shutdown did not finish in time; uncommitted records will be replayed by the next worker, without duplicates"
                );
                return Ok(ExitCode::from(EXIT_SHUTDOWN_TIMEOUT));
            }
        }
    }
}

async fn wait_for_signal(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("cannot install the signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received: flushing, committing and leaving the group"),
        _ = int.recv() => info!("SIGINT received: flushing, committing and leaving the group"),
    }
    stop.store(true, Ordering::Relaxed);
}
