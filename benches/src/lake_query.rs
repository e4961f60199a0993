//! The README's example queries over a lake of 10 million raw rows, with and without Hive
//! partition pruning.
//!
//! The lake is generated once through `Lake::write_raw` (unless `--reuse` finds it): simulated
//! readings of water_level, car_park, air_quality and parking_bay, a quarter each, evenly
//! spread over 30 days of October 2026, one file per kind, hour and partition (the layout of a
//! lake whose files roll on the hour). Air-quality stations 1, 11 and 21 get NO2 episodes
//! (readings × 4 on Tuesdays), so that the threshold query has hours to find.
//!
//! Each query then runs twice: restricted with a filter on the partition column `date`, and
//! restricted to the same event times with a filter on `observed_at` only, which DataFusion
//! cannot turn into partition pruning. Both must give the same rows. Each is timed best of
//! `--runs` on a fresh `query_session` (what `rade query` opens), planning and execution
//! included; the files in the plan and the bytes read come from the plan and its metrics.
//!
//! cargo run --release -p rade-benches --bin lake-query -- --lake /tmp/rade-bench-lake

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::record_batch::RecordBatch;
use clap::Parser;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;
use futures::{StreamExt, TryStreamExt};
use rade_lake::{Lake, LakeLocation, LakeOptions, RawFile, Written, query_session};
use rade_schema::Value;

#[derive(Parser)]
struct Cli {
    /// Where the lake is generated (a local directory).
    #[arg(long, default_value = "/tmp/rade-bench-lake")]
    lake: PathBuf,
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 30)]
    days: usize,
    /// Files per kind and hour (Kafka partitions of each raw topic).
    #[arg(long, default_value_t = 1)]
    partitions: usize,
    /// Runs per query and filter; the best is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Use the lake at `--lake` if a previous run generated it there, instead of replacing it.
    #[arg(long)]
    reuse: bool,
    /// Keep the lake afterwards (deleted by default).
    #[arg(long)]
    keep: bool,
}

const KINDS: [&str; 4] = ["water_level", "car_park", "air_quality", "parking_bay"];
/// 2026-10-01T00:00Z.
const START_MS: i64 = 1_790_812_800_000;
const HOUR_MS: i64 = 3_600_000;
/// Written last, so a lake that has it is complete.
const MARKER: &str = "_rade/bench-lake-complete";

/// The README's territory queries; `{where}` is the time restriction.
const QUERIES: [(&str, &str); 3] = [
    (
        "daily maximum water level per gauge (7 days)",
        "SELECT sensor_id, date, max(height) AS max_height_cm FROM raw_water_level \
         WHERE {where} GROUP BY sensor_id, date ORDER BY date, sensor_id",
    ),
    (
        "hourly occupancy per car park (1 day)",
        "SELECT sensor_id, date, hour, \
         round(avg(1.0 - CAST(availableSpotNumber AS DOUBLE) / totalSpotNumber), 3) AS occupancy \
         FROM raw_car_park WHERE {where} GROUP BY sensor_id, date, hour ORDER BY sensor_id, date, hour",
    ),
    (
        "hours above the NO2 threshold per station (7 days)",
        "SELECT sensor_id, count(*) FILTER (WHERE no2_hourly_mean > 200) AS hours_above_200, \
         count(*) AS hours_measured, round(max(no2_hourly_mean), 1) AS max_hourly_mean \
         FROM (SELECT sensor_id, date, hour, avg(no2) AS no2_hourly_mean FROM raw_air_quality \
         WHERE {where} AND no2 IS NOT NULL GROUP BY sensor_id, date, hour) \
         GROUP BY sensor_id ORDER BY hours_above_200 DESC, sensor_id",
    ),
];

/// The days each query of `QUERIES` covers: first and last.
const DAYS: [(&str, &str); 3] = [
    ("2026-10-10", "2026-10-16"),
    ("2026-10-14", "2026-10-14"),
    ("2026-10-10", "2026-10-16"),
];

fn pruned(first: &str, last: &str) -> String {
    if first == last {
        format!("date = '{first}'")
    } else {
        format!("date BETWEEN '{first}' AND '{last}'")
    }
}

fn unpruned(first: &str, last: &str) -> anyhow::Result<String> {
    let next = chrono::NaiveDate::parse_from_str(last, "%Y-%m-%d")?
        .succ_opt()
        .context("a day after the last")?;
    Ok(format!(
        "observed_at >= TIMESTAMP '{first}T00:00:00Z' AND observed_at < TIMESTAMP '{next}T00:00:00Z'"
    ))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let catalog = rade_benches::catalog();
    let runtime = tokio::runtime::Runtime::new()?;
    let complete = cli.lake.join(MARKER).exists();
    if !(cli.reuse && complete) {
        if cli.lake.exists() {
            std::fs::remove_dir_all(&cli.lake).with_context(|| format!("while emptying {}", cli.lake.display()))?;
        }
        generate(&cli, &runtime)?;
    } else {
        eprintln!("reusing the lake at {}", cli.lake.display());
    }

    let lake = Lake::open(&LakeLocation::Local(cli.lake.clone()), &LakeOptions::default())?;
    println!(
        "| query | restricted by | best of {} (s) | files in the plan | MiB read | rows out | pruned / unpruned |",
        cli.runs
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut session_s = f64::MAX;
    for ((name, template), (first, last)) in QUERIES.iter().zip(DAYS) {
        let mut measured = Vec::new();
        for filter in [pruned(first, last), unpruned(first, last)?] {
            let sql = template.replace("{where}", &filter);
            let mut best = f64::MAX;
            let mut first_run = None;
            for _ in 0..cli.runs.max(1) {
                let started = Instant::now();
                let ctx = runtime.block_on(query_session(&lake, &catalog, &rade_lake::AsOf::Latest))?;
                session_s = session_s.min(started.elapsed().as_secs_f64());
                let started = Instant::now();
                let run = runtime
                    .block_on(run(&ctx, &sql))
                    .with_context(|| format!("while running {sql}"))?;
                best = best.min(started.elapsed().as_secs_f64());
                first_run.get_or_insert(run);
            }
            let run = first_run.expect("at least one run");
            measured.push((filter, best, run));
        }
        let (pruned_text, unpruned_text) = (text(&measured[0].2.batches)?, text(&measured[1].2.batches)?);
        if pruned_text != unpruned_text {
            bail!("{name}: the pruned and unpruned queries disagree:\n{pruned_text}\n{unpruned_text}");
        }
        let ratio = measured[0].1 / measured[1].1;
        for (i, (filter, best, run)) in measured.iter().enumerate() {
            let restriction = if i == 0 {
                format!("`{filter}`")
            } else {
                "`observed_at`, same days".to_owned()
            };
            println!(
                "| {} | {restriction} | {best:.3} | {} | {:.1} | {} | {} |",
                if i == 0 { *name } else { "" },
                run.files,
                run.bytes_read as f64 / 1048576.0,
                run.batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
                if i == 0 {
                    format!("**{ratio:.2}**")
                } else {
                    String::new()
                },
            );
        }
        eprintln!("{name}: {}\nfirst rows:\n{}", measured[1].0, head(&pruned_text, 8));
    }
    eprintln!(
        "opening a query session (registering the tables), not in the times above: {:.1} ms at best",
        session_s * 1000.0
    );

    if !cli.keep {
        std::fs::remove_dir_all(&cli.lake).with_context(|| format!("while deleting {}", cli.lake.display()))?;
    }
    Ok(())
}

struct Run {
    batches: Vec<RecordBatch>,
    /// Files in the scans of the physical plan, after partition pruning.
    files: usize,
    bytes_read: usize,
}

async fn run(ctx: &datafusion::prelude::SessionContext, sql: &str) -> anyhow::Result<Run> {
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx()).await?;
    // A large file can be scanned in byte ranges by several partitions: count paths.
    let mut files = HashSet::new();
    let mut bytes_read = 0;
    visit(&plan, &mut |node| {
        if let Some(scan) = node.downcast_ref::<DataSourceExec>() {
            if let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>() {
                for group in &config.file_groups {
                    files.extend(group.files().iter().map(|f| f.object_meta.location.clone()));
                }
            }
            if let Some(metrics) = node.metrics() {
                for m in metrics.iter() {
                    if let MetricValue::Count { name, count } = m.value()
                        && name == "bytes_scanned"
                    {
                        bytes_read += count.value();
                    }
                }
            }
        }
    });
    Ok(Run {
        batches,
        files: files.len(),
        bytes_read,
    })
}

fn visit(plan: &Arc<dyn ExecutionPlan>, f: &mut impl FnMut(&dyn ExecutionPlan)) {
    f(plan.as_ref());
    for child in plan.children() {
        visit(child, f);
    }
}

fn text(batches: &[RecordBatch]) -> anyhow::Result<String> {
    Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

fn head(text: &str, lines: usize) -> String {
    text.lines().take(lines + 3).collect::<Vec<_>>().join("\n")
}

/// Writes the lake: every kind's share of the rows, one file per kind, hour and partition,
/// written two at a time as the worker does while the next files are simulated.
fn generate(cli: &Cli, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let hours = cli.days * 24;
    let files_per_kind = hours * cli.partitions;
    let per_kind = cli.rows / KINDS.len();
    if per_kind < files_per_kind {
        bail!(
            "{} rows are too few for one row per file of {files_per_kind} files per kind",
            cli.rows
        );
    }
    eprintln!(
        "generating {} rows ({KINDS:?}, {} days, {} files of about {} rows per kind) in {}...",
        per_kind * KINDS.len(),
        cli.days,
        files_per_kind,
        per_kind / files_per_kind,
        cli.lake.display()
    );
    let started = Instant::now();
    let lake = Lake::open(&LakeLocation::Local(cli.lake.clone()), &LakeOptions::default())?;
    let catalog = rade_benches::catalog();
    let partitions = cli.partitions;
    let (tx, rx) = tokio::sync::mpsc::channel::<(RawFile, RecordBatch)>(4);
    let producer = std::thread::spawn(move || {
        for (k, kind) in KINDS.iter().enumerate() {
            // Ten times the simulator's fleet: 120 gauges, 250 car parks, 150 stations, 20 000 bays.
            let mut rows = rade_benches::RawRows::new(&catalog, kind, 10.0, 100 + k as u64);
            let no2 = rows.field("no2");
            let mut offsets = vec![0i64; partitions];
            for f in 0..files_per_kind {
                let (hour, partition) = (f / partitions, f % partitions);
                let n = per_kind / files_per_kind + usize::from(f < per_kind % files_per_kind);
                let hour_ms = START_MS + hour as i64 * HOUR_MS;
                let batch = rows.batch(partition as i32, offsets[partition], hour_ms, HOUR_MS, n, |row| {
                    if let Some(i) = no2 {
                        episode(row, i);
                    }
                });
                let file = RawFile {
                    kind: (*kind).to_owned(),
                    hour: rade_lake::hour_of(hour_ms),
                    topic: format!("tpm.raw.{kind}"),
                    partition: partition as i32,
                    start: offsets[partition],
                    end: offsets[partition] + n as i64 - 1,
                };
                offsets[partition] += n as i64;
                if tx.blocking_send((file, batch)).is_err() {
                    return;
                }
            }
        }
    });
    let files = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let written: Vec<(Written, rade_lake::TableFile)> = runtime.block_on(
        files
            .map(|(file, batch)| {
                let lake = lake.clone();
                async move { lake.write_raw(&file, vec![batch]).await }
            })
            .buffer_unordered(2)
            .try_collect(),
    )?;
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the generating thread panicked"))?;
    let bytes: u64 = written.iter().map(|(Written::Created { bytes }, _)| *bytes).sum();
    let files_written = written.len();
    // The files become the tables' in one commit per table, as a worker's flushes would.
    let mut by_table: std::collections::BTreeMap<rade_lake::TableId, Vec<rade_lake::TableFile>> = Default::default();
    for (_, f) in written {
        by_table.entry(f.table.clone()).or_default().push(f);
    }
    for (table, files) in by_table {
        runtime.block_on(lake.commit(&table, &files, &[], &[], &Default::default()))?;
    }
    let marker = cli.lake.join(MARKER);
    std::fs::create_dir_all(marker.parent().expect("the marker is in a directory"))?;
    std::fs::write(&marker, b"")?;
    eprintln!(
        "generated in {:.1} s: {} files, {:.1} MiB of Parquet",
        started.elapsed().as_secs_f64(),
        files_written,
        bytes as f64 / 1048576.0
    );
    Ok(())
}

/// NO2 episodes: stations aq-0001, aq-0011 and aq-0021 read four times more on Tuesdays.
fn episode(row: &mut rade_schema::Row<'_>, no2: usize) {
    // Days since 1970-01-01, a Thursday: Monday is 4, Tuesday 5 (mod 7).
    let tuesday = (row.observed_at_ms / (24 * HOUR_MS)) % 7 == 5;
    let station =
        matches!(row.values.first(), Some(Value::Str(s)) if matches!(s.as_ref(), "aq-0001" | "aq-0011" | "aq-0021"));
    if tuesday
        && station
        && let Value::Double(x) = row.values[no2]
    {
        row.values[no2] = Value::Double(x * 4.0);
    }
}
