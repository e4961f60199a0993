//! `rade lake`: maintenance of the lake's Delta tables through delta-rs (compaction, vacuum)
//! and their history.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use rade_lake::{CompactOptions, Lake, TableId};

use crate::config::LogFormat;
use crate::run::{EXIT_CONFIG, load_config, open_lake};

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Compact the small files of every table (OPTIMIZE, bin-packing per partition); safe
    /// beside running workers and queries: readers see the old files or the new, never both.
    Compact(CompactArgs),
    /// Delete the files no recent version of a table reads any more (compacted away, or left
    /// by a flush that never committed); time travel reaches back as far as the retention.
    Vacuum(VacuumArgs),
    /// The commits of a table, newest first: version, time, operation.
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Configuration file of the workers (their lake, group and kinds).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Only this table (raw_<kind>, aggregates or alerts); default: every table.
    #[arg(long)]
    table: Option<String>,
    /// A partition is compacted once it has this many files.
    #[arg(long, default_value_t = 2)]
    min_files: usize,
    /// Compacted files are about this size.
    #[arg(long, default_value = "128MiB")]
    target_size: bytesize::ByteSize,
    /// Files of closed windows and alerts younger than this are left alone (a worker that
    /// crashed right after writing them may take them back when it restarts).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Print what would be compacted, change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// Configuration file of the workers.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Only this table; default: every table.
    #[arg(long)]
    table: Option<String>,
    /// Files removed from a table less than this long ago are kept (time travel and queries
    /// still running may read them).
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Print how many files would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The table: raw_<kind>, aggregates or alerts.
    table: String,
    /// Configuration file (its lake).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// At most this many commits.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

pub fn lake(command: LakeCommand) -> anyhow::Result<ExitCode> {
    match command {
        LakeCommand::Compact(args) => compact(args),
        LakeCommand::Vacuum(args) => vacuum(args),
        LakeCommand::History(args) => history(args),
    }
}

/// The tables `only` names (checked), or every table of the configured kinds.
fn tables(kinds: &[String], only: Option<&str>) -> anyhow::Result<Vec<TableId>> {
    if let Some(name) = only {
        let table = TableId::parse(name)
            .with_context(|| format!("{name}: not a table (raw_<kind>, aggregates or alerts)"))?;
        return Ok(vec![table]);
    }
    let mut all: Vec<TableId> = kinds.iter().map(|k| TableId::Raw(k.clone())).collect();
    all.push(TableId::Aggregates);
    all.push(TableId::Alerts);
    Ok(all)
}

struct Opened {
    lake: Lake,
    group: String,
    kinds: Vec<String>,
    runtime: tokio::runtime::Runtime,
}

fn open(config: Option<&std::path::Path>) -> anyhow::Result<Option<Opened>> {
    let Some(config) = load_config(config) else {
        return Ok(None);
    };
    rade_telemetry::init_tracing(config.log == LogFormat::Json);
    let kinds = config
        .kafka
        .ingested_kinds(&config.catalog)?
        .iter()
        .map(|k| k.kind.clone())
        .collect();
    Ok(Some(Opened {
        lake: open_lake(&config.lake)?,
        group: config.kafka.group_id.clone(),
        kinds,
        runtime: tokio::runtime::Runtime::new().context("while starting the async runtime")?,
    }))
}

fn compact(args: CompactArgs) -> anyhow::Result<ExitCode> {
    let Some(o) = open(args.config.as_deref())? else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let options = CompactOptions {
        min_files: args.min_files,
        target_size: args.target_size.as_u64(),
        settle: args.settle,
        group: o.group.clone(),
        dry_run: args.dry_run,
    };
    let mut failed = false;
    for table in tables(&o.kinds, args.table.as_deref())? {
        match o.runtime.block_on(o.lake.compact_table(&table, &options)) {
            Ok(r) if args.dry_run => println!(
                "{}: would compact {} partitions; {} not settled yet",
                r.table, r.partitions, r.unsettled
            ),
            Ok(r) => println!(
                "{}: compacted {} partitions, {} files into {}; {} partitions not settled yet{}",
                r.table,
                r.partitions,
                r.files_removed,
                r.files_added,
                r.unsettled,
                r.version.map(|v| format!("; now at version {v}")).unwrap_or_default()
            ),
            Err(e) => {
                eprintln!("{}: not compacted: {e}", table.name());
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn vacuum(args: VacuumArgs) -> anyhow::Result<ExitCode> {
    let Some(o) = open(args.config.as_deref())? else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let mut failed = false;
    for table in tables(&o.kinds, args.table.as_deref())? {
        match o
            .runtime
            .block_on(o.lake.vacuum_table(&table, args.retention, args.dry_run))
        {
            Ok(r) => println!(
                "{}: {} {} files",
                r.table,
                if args.dry_run { "would delete" } else { "deleted" },
                r.files_deleted
            ),
            Err(e) => {
                eprintln!("{}: not vacuumed: {e}", table.name());
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let Some(o) = open(args.config.as_deref())? else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let table = tables(&o.kinds, Some(&args.table))?.remove(0);
    let entries = o
        .runtime
        .block_on(o.lake.table_history(&table, Some(args.limit)))
        .with_context(|| format!("while reading the history of {}", table.name()))?;
    println!("version,timestamp,operation,parameters");
    for e in entries {
        let at = e
            .timestamp_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        println!(
            "{},{},{},\"{}\"",
            e.version.map(|v| v.to_string()).unwrap_or_default(),
            at,
            e.operation,
            e.details.replace('"', "\"\"")
        );
    }
    Ok(ExitCode::SUCCESS)
}
