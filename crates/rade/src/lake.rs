//! `rade lake compact`: merges the lake's small raw files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use rade_lake::CompactOptions;

use crate::config::LogFormat;
use crate::run::{EXIT_CONFIG, load_config, open_lake};

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Merge the small raw files of each Kafka partition and event hour that the consumer
    /// group has committed past; safe beside running workers and queries (see deploy/README.md).
    Compact(CompactArgs),
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Configuration file of the workers (their lake, group and topics).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A partition-hour is merged once it has this many files.
    #[arg(long, default_value_t = 2)]
    min_files: usize,
    /// Inputs of a merged file add up to about this size.
    #[arg(long, default_value = "128MiB")]
    target_size: bytesize::ByteSize,
    /// Merged inputs are deleted once their merged file is this old (longer than any query
    /// that may have listed them); `0s` deletes them at once.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// How long the lake's compaction lease lasts (renewed halfway): after a run that died,
    /// the next one waits this long.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// Print what would be merged and deleted, change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn lake(command: LakeCommand) -> anyhow::Result<ExitCode> {
    match command {
        LakeCommand::Compact(args) => compact(args),
    }
}

fn compact(args: CompactArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(args.config.as_deref()) else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    rade_telemetry::init_tracing(config.log == LogFormat::Json);
    let topics: Vec<String> = config
        .kafka
        .ingested_kinds(&config.catalog)?
        .iter()
        .map(|k| config.kafka.raw_topic(&k.kind))
        .collect();
    let committed = rade_kafka::committed_offsets(&config.kafka, &topics, config.worker.connect_timeout)
        .with_context(|| format!("while reading the committed offsets of group {}", config.kafka.group_id))?;
    let lake = open_lake(&config.lake)?;
    let options = CompactOptions {
        min_files: args.min_files,
        target_size: args.target_size.as_u64(),
        grace: args.grace,
        dry_run: args.dry_run,
        lease: args.lease,
    };
    let runtime = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    let report = match runtime.block_on(lake.compact(&committed, &options)) {
        Ok(report) => report,
        // Another run holds the lease: nothing to do now (a CronJob tries again later).
        Err(rade_lake::Error::Busy(message)) => {
            eprintln!("nothing done: {message}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("while compacting {}", config.lake.location)),
    };
    let verb = if args.dry_run { "would merge" } else { "merged" };
    println!(
        "{verb} {} files into {} ({} rows, {} written); {} merged files deleted, {} waiting for their grace period; {} partitions not committed yet left alone",
        report.inputs,
        report.merged,
        report.rows,
        bytesize::ByteSize::b(report.bytes_written),
        report.deleted,
        report.waiting,
        report.unsettled_partitions
    );
    for problem in &report.failed {
        eprintln!("not compacted: {problem}");
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
