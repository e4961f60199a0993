//! `rade`: parse the command line, load and check the configuration, wire the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod demo;
mod lake;
mod query;
mod run;
mod simulate;

/// rade: the stream-processing pipeline of the SMART TPM data platform.
///
/// Kafka raw sensor topics -> Avro validation -> dead-letter topic for bad records ->
/// Hive-partitioned Parquet lake (local disk or S3); event-time windows per sensor and SQL
/// alert rules (DataFusion) -> alert topic and the lake's aggregates/ and alerts/.
/// `rade --version`: the package version and the commit it was built from (see build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("RADE_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(name = "rade", version = VERSION, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embedded demo: in-process Kafka mock cluster, simulator, pipeline and a local lake.
    Demo(demo::DemoArgs),
    /// Run an ingest worker (lake, windows, alert rules) that joins the consumer group on a real cluster.
    Run(run::RunArgs),
    /// Produce realistic TPM sensor traffic (and chosen invalid records) into Kafka.
    Simulate(simulate::SimulateArgs),
    /// Run SQL over the lake tables (raw_<kind>, aggregates, alerts) with DataFusion.
    Query(query::QueryArgs),
    /// Validate the configuration, schemas and alert rules without starting anything.
    Check(run::CheckArgs),
    /// Maintain the lake's Delta tables: compact (OPTIMIZE), vacuum, history.
    #[command(subcommand)]
    Lake(lake::LakeCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::demo(args),
        Command::Run(args) => run::run(args),
        Command::Simulate(args) => simulate::simulate(args),
        Command::Query(args) => query::query(args),
        Command::Check(args) => run::check(args),
        Command::Lake(command) => lake::lake(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // librdkafka's texts quote the values they refuse: no secret of the config leaves.
            eprintln!("error: {}", config::redact(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
