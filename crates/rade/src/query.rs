//! `rade query`: SQL over the lake.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use clap::{Args, ValueEnum};
use rade_lake::{Lake, query_session};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL; tables are raw_<kind> (e.g. raw_water_level) with partition columns date and hour.
    sql: String,
    /// Lake URL (file:///path, a local path, or s3://bucket/prefix).
    #[arg(long, default_value = "lake", env = "RADE__LAKE__URL")]
    lake: String,
    /// Schema catalog directory; default: the shipped schemas, built in.
    #[arg(long)]
    schemas: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Output,
    /// Print the physical plan (with the files each scan reads) instead of running the query.
    #[arg(long)]
    explain: bool,
}

pub fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let catalog = crate::config::catalog(args.schemas.as_deref())?;
    let lake = Lake::open(&args.lake).with_context(|| format!("while opening the lake {}", args.lake))?;
    let runtime = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    let batches: Vec<RecordBatch> = runtime.block_on(async {
        let ctx = query_session(&lake, &catalog).await?;
        let sql = if args.explain {
            format!("EXPLAIN {}", args.sql)
        } else {
            args.sql.clone()
        };
        let df = ctx.sql(&sql).await.context("while planning the query")?;
        df.collect().await.context("while running the query")
    })?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Output::Table => {
            let text = arrow::util::pretty::pretty_format_batches(&batches).context("while printing")?;
            use std::io::Write;
            writeln!(out, "{text}")?;
        }
        Output::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(out);
            for b in &batches {
                w.write(b)?;
            }
        }
        Output::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
