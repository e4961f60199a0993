//! `rade query`: SQL over the lake.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use clap::{Args, ValueEnum};
use rade_lake::{AsOf, LakeLocation, query_session};

use crate::config::LakeConfig;
use crate::run::{EXIT_CONFIG, load_raw, open_lake, print_refused};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL; tables are raw_<kind> (e.g. raw_water_level) with partition columns date and
    /// hour, aggregates (window, kind, date) and alerts (date): the lake's Delta tables.
    sql: String,
    /// Configuration file (TOML) whose [lake] section (url, S3 retries) and schemas.dir are
    /// used; every key can be overridden by RADE__SECTION__KEY.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Lake URL (file:///path, a local path, or s3://bucket/prefix); default: the config's
    /// lake.url, else ./lake.
    #[arg(long, env = "RADE__LAKE__URL")]
    lake: Option<LakeLocation>,
    /// Schema catalog directory; default: the config's schemas.dir, else the shipped schemas,
    /// built in.
    #[arg(long)]
    schemas: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Output,
    /// Print the physical plan (with the files each scan reads) instead of running the query.
    #[arg(long)]
    explain: bool,
    /// Read the tables as they were: a table version (each table's own, see `rade lake
    /// history`) or an RFC 3339 time (every table as of then).
    #[arg(long, value_name = "VERSION|TIME")]
    as_of: Option<AsOf>,
}

pub fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    // Only the sections a reader needs are checked: a query does not reach Kafka.
    let Some((mut lake, schemas)) = reader_config(args.config.as_deref()) else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    if let Some(location) = args.lake {
        lake.location = location;
    }
    let catalog = crate::config::catalog(args.schemas.as_deref().or(schemas.as_deref()))?;
    let lake = open_lake(&lake)?;
    let runtime = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    let batches: Vec<RecordBatch> = runtime.block_on(async {
        let ctx = query_session(&lake, &catalog, args.as_of.as_ref().unwrap_or(&AsOf::Latest)).await?;
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

/// The `[lake]` section and `schemas.dir` of the layered configuration (defaults < `path` <
/// `RADE__SECTION__KEY`), printing every problem; `None` when they are refused.
fn reader_config(path: Option<&Path>) -> Option<(LakeConfig, Option<PathBuf>)> {
    let raw = load_raw(path)?;
    let mut problems = Vec::new();
    let lake = raw.lake.check(Path::new("."), &mut problems);
    if !problems.is_empty() {
        print_refused(path, &problems);
        return None;
    }
    Some((lake, raw.schemas.dir))
}

#[cfg(test)]
mod tests {
    use rade_lake::LakeOptions;

    use super::*;

    #[test]
    fn a_query_takes_the_lake_and_retries_of_its_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rade.toml");
        std::fs::write(&path, "[lake]\nurl = \"l\"\nmax_retries = 2\n[schemas]\ndir = \"s\"\n").expect("write");
        let (lake, schemas) = reader_config(Some(&path)).expect("valid");
        assert_eq!(lake.location, LakeLocation::Local(dir.path().join("l")));
        assert_eq!(
            lake.options,
            LakeOptions {
                max_retries: 2,
                ..LakeOptions::default()
            }
        );
        assert_eq!(schemas, Some(dir.path().join("s")));

        std::fs::write(&path, "[lake]\nbackoff_initial = \"0s\"\n").expect("write");
        assert!(reader_config(Some(&path)).is_none(), "refused");
        let (lake, _) = reader_config(None).expect("the defaults");
        assert_eq!(lake.location, LakeLocation::Local(Path::new(".").join("lake")));
        assert_eq!(lake.options, LakeOptions::default());
    }
}
