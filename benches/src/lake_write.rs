//! Lake write throughput: raw files of a realistic size (1 million simulated readings each by
//! default, one kind and hour per file, as the worker rolls them) written through
//! `Lake::write_raw` two at a time, as the worker's flush does, to three stores in the same
//! run: memory (Parquet encoding only, the baseline), local disk, and S3 when `--s3` is given.
//! Each target is timed best of `--reps` on a fresh lake root; prints Parquet MB/s, records/s
//! and the ratios local / encode only and S3 / local.
//!
//! cargo run --release -p rade-benches --bin lake-write -- --s3 s3://rade-bench/write

use std::time::Instant;

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use rade_lake::{Lake, LakeLocation, LakeOptions, RawFile, Written};

#[derive(Parser)]
struct Cli {
    /// Files to write per repetition (kinds in turn, one hour each).
    #[arg(long, default_value_t = 8)]
    files: usize,
    #[arg(long, default_value_t = 1_000_000)]
    rows_per_file: usize,
    /// Files written at once (the worker writes two).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Repetitions per target; the best is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Directory under which the local lakes are made (and deleted).
    #[arg(long, default_value = "/tmp")]
    dir: std::path::PathBuf,
    /// An S3 lake URL (s3://bucket/prefix; endpoint and credentials from AWS_*); the bucket
    /// must exist. Without it, S3 is skipped.
    #[arg(long)]
    s3: Option<String>,
}

/// The kinds of the end-to-end harness: the fleet's busiest besides energy and bins.
const KINDS: [&str; 4] = ["noise", "parking_bay", "traffic_counter", "weather"];

struct Outcome {
    seconds: f64,
    bytes: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let catalog = rade_benches::catalog();
    let runtime = tokio::runtime::Runtime::new()?;
    // 2026-11-02T00:00Z: a fixed hour, so that every run writes the same files.
    let first_hour_ms = 1_793_577_600_000i64;

    eprintln!(
        "generating {} files of {} simulated readings ({KINDS:?} in turn)...",
        cli.files, cli.rows_per_file
    );
    let started = Instant::now();
    let mut makers: Vec<_> = KINDS
        .iter()
        .enumerate()
        .map(|(i, k)| rade_benches::RawRows::new(&catalog, k, 1.0, 11 + i as u64))
        .collect();
    let files: Vec<(RawFile, RecordBatch)> = (0..cli.files)
        .map(|i| {
            let kind = KINDS[i % KINDS.len()];
            let hour_ms = first_hour_ms + (i / KINDS.len()) as i64 * 3_600_000;
            let batch = makers[i % KINDS.len()].batch(0, 0, hour_ms, 3_600_000, cli.rows_per_file, |_| {});
            let file = RawFile {
                kind: kind.to_owned(),
                hour: rade_lake::hour_of(hour_ms),
                topic: format!("tpm.raw.{kind}"),
                partition: 0,
                start: 0,
                end: cli.rows_per_file as i64 - 1,
            };
            (file, batch)
        })
        .collect();
    let records = (cli.files * cli.rows_per_file) as f64;
    let arrow_bytes: usize = files.iter().map(|(_, b)| b.get_array_memory_size()).sum();
    eprintln!(
        "generated in {:.1} s: {:.0} MiB of Arrow",
        started.elapsed().as_secs_f64(),
        arrow_bytes as f64 / 1048576.0
    );

    let mut results: Vec<(&str, Outcome)> = Vec::new();
    let mut targets = vec!["encode only (memory://)", "local disk"];
    if cli.s3.is_some() {
        targets.push("S3 (moto)");
    }
    for target in targets {
        let mut best: Option<Outcome> = None;
        for rep in 0..cli.reps.max(1) {
            let (url, local) = match target {
                "local disk" => {
                    let dir = cli.dir.join(format!("rade-lake-write-{}-{rep}", std::process::id()));
                    (dir.display().to_string(), Some(dir))
                }
                "S3 (moto)" => {
                    let base = cli.s3.as_deref().expect("S3 is a target only with --s3");
                    (
                        format!("{}/{}-{rep}", base.trim_end_matches('/'), std::process::id()),
                        None,
                    )
                }
                _ => ("memory://".to_owned(), None),
            };
            let location: LakeLocation = url.parse()?;
            let lake =
                Lake::open(&location, &LakeOptions::default()).with_context(|| format!("while opening {url}"))?;
            let outcome = runtime.block_on(write_all(&lake, &files, cli.concurrency))?;
            eprintln!(
                "  {target}, rep {}: {:.2} s, {:.1} MiB",
                rep + 1,
                outcome.seconds,
                outcome.bytes as f64 / 1048576.0
            );
            if let Some(dir) = local {
                std::fs::remove_dir_all(&dir).with_context(|| format!("while deleting {}", dir.display()))?;
            } else if url.starts_with("s3://") {
                runtime.block_on(delete_all(&lake, &files))?;
            }
            if best.as_ref().is_none_or(|b| outcome.seconds < b.seconds) {
                best = Some(outcome);
            }
        }
        results.push((target, best.expect("at least one repetition")));
    }

    let parquet = results[0].1.bytes as f64;
    println!(
        "\n{} files × {} rows ({:.1} MiB of Parquet each on average, {:.1}× smaller than Arrow), {} at a time, best of {}",
        cli.files,
        cli.rows_per_file,
        parquet / cli.files as f64 / 1048576.0,
        arrow_bytes as f64 / parquet,
        cli.concurrency,
        cli.reps
    );
    println!("| target | seconds | Parquet MB/s | records/s | vs encode only |");
    println!("|---|---:|---:|---:|---:|");
    let baseline = results[0].1.seconds;
    for (target, o) in &results {
        println!(
            "| {target} | {:.2} | {:.1} | {:.0} | {:.2} |",
            o.seconds,
            o.bytes as f64 / 1e6 / o.seconds,
            records / o.seconds,
            baseline / o.seconds
        );
    }
    let throughput = |name: &str| results.iter().find(|(t, _)| *t == name).map(|(_, o)| 1.0 / o.seconds);
    if let (Some(local), Some(encode)) = (throughput("local disk"), throughput("encode only (memory://)")) {
        println!("local / encode only = {:.2}", local / encode);
        if let Some(s3) = throughput("S3 (moto)") {
            println!("S3 / local = {:.2}", s3 / local);
        }
    }
    Ok(())
}

/// Writes every file, `concurrency` at a time, and checks each was created.
async fn write_all(lake: &Lake, files: &[(RawFile, RecordBatch)], concurrency: usize) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let written: Vec<(Written, rade_lake::TableFile)> = futures::stream::iter(files)
        .map(|(file, batch)| lake.write_raw(file, vec![batch.clone()]))
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut bytes = 0;
    for (w, _) in written {
        let Written::Created { bytes: b } = w;
        bytes += b;
    }
    Ok(Outcome { seconds, bytes })
}

/// Removes a repetition's files, so that the S3 server does not keep them in memory.
async fn delete_all(lake: &Lake, files: &[(RawFile, RecordBatch)]) -> anyhow::Result<()> {
    let (store, root) = lake.store();
    for (file, _) in files {
        store.delete(&file.path(root)).await?;
    }
    Ok(())
}
