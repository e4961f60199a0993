//! Table maintenance through delta-rs: compaction (OPTIMIZE, bin-packing per partition) and
//! vacuum. Both commit like any writer: beside running workers, blind appends and a compaction
//! do not conflict, and a conflicting commit is retried by delta-rs.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::{FilterOp, FilterValue};

use crate::delta::{LiveFile, TableId, app_id, live_files, position};
use crate::layout::{DerivedFile, RawFile};
use crate::store::Lake;
use crate::{Error, Result};

/// What `rade lake compact` does.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// A partition is compacted once it has this many files.
    pub min_files: usize,
    /// Compacted files are about this size.
    pub target_size: u64,
    /// Files of closed windows and alerts younger than this are left alone: a worker that
    /// crashes right after writing them may still take them back.
    pub settle: Duration,
    /// The consumer group whose positions say which raw files are settled.
    pub group: String,
    /// Say what would be compacted, change nothing.
    pub dry_run: bool,
}

/// What a compaction of one table did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    pub table: String,
    pub partitions: usize,
    pub files_removed: u64,
    pub files_added: u64,
    /// Partitions left alone: a worker's position has not passed all their files yet.
    pub unsettled: usize,
    pub version: Option<u64>,
}

/// What a vacuum of one table did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VacuumReport {
    pub table: String,
    pub files_deleted: usize,
}

/// One commit of a table's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub version: Option<i64>,
    pub timestamp_ms: Option<i64>,
    pub operation: String,
    pub details: String,
}

fn err(table: &TableId, e: impl std::fmt::Display) -> Error {
    Error::Table {
        table: table.name(),
        message: e.to_string(),
    }
}

impl Lake {
    /// Compacts the settled partitions of `table` that have at least `min_files` files.
    ///
    /// A raw partition (`date`, `hour`) is settled when each of its files written by a worker
    /// ends before its Kafka partition's position in the table: a replay never needs to find
    /// those rows by file name again. A partition of `aggregates` or `alerts` is settled when
    /// none of its files is younger than `settle`.
    pub async fn compact_table(&self, table: &TableId, options: &CompactOptions) -> Result<CompactReport> {
        let mut report = CompactReport {
            table: table.name(),
            ..Default::default()
        };
        let Some(t) = self.open_table(table).await? else {
            return Ok(report);
        };
        let files = live_files(&t).await.map_err(|e| err(table, e))?;
        let mut partitions: BTreeMap<Vec<(String, String)>, Vec<LiveFile>> = BTreeMap::new();
        for f in files {
            partitions.entry(f.partition_values.clone()).or_default().push(f);
        }
        let mut positions: HashMap<(String, i32), Option<i64>> = HashMap::new();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let settle_ms = options.settle.as_millis() as i64;
        let mut chosen = Vec::new();
        for (values, files) in partitions {
            if files.len() < options.min_files {
                continue;
            }
            let mut settled = true;
            for f in &files {
                match table {
                    TableId::Raw(kind) => {
                        let Some(raw) = RawFile::parse_in_table(kind, &f.path) else {
                            continue; // already compacted
                        };
                        let key = (raw.topic.clone(), raw.partition);
                        if !positions.contains_key(&key) {
                            let app = app_id(&options.group, &raw.topic, raw.partition);
                            positions.insert(key.clone(), position(&t, table, &app).await?);
                        }
                        if positions[&key].is_none_or(|p| raw.end >= p) {
                            settled = false;
                        }
                    }
                    _ => {
                        if DerivedFile::parse_in_table(table, &f.path).is_some() && now_ms - f.modified_ms < settle_ms {
                            settled = false;
                        }
                    }
                }
            }
            if settled {
                chosen.push(values);
            } else {
                report.unsettled += 1;
            }
        }
        report.partitions = chosen.len();
        if options.dry_run || chosen.is_empty() {
            return Ok(report);
        }
        let target = NonZeroU64::new(options.target_size.max(1)).expect("at least 1");
        let mut t = t;
        for values in chosen {
            let filters: Vec<_> = values
                .iter()
                .map(|(k, v)| (k.as_str(), FilterOp::Eq, FilterValue::Scalar(v.as_str())))
                .collect();
            let (next, metrics) = t
                .clone()
                .optimize()
                .with_type(OptimizeType::Compact)
                .with_filters(&filters)
                .with_target_size(target)
                .with_writer_properties(self.writer_properties())
                .with_commit_properties(CommitProperties::default().with_create_checkpoint(true))
                .await
                .map_err(|e| err(table, e))?;
            report.files_removed += metrics.num_files_removed;
            report.files_added += metrics.num_files_added;
            report.version = next.version();
            t = next;
        }
        Ok(report)
    }

    /// Deletes the files no version newer than `retention` reads any more (compacted away, or
    /// left by a flush that never committed), then the log older than the table keeps.
    pub async fn vacuum_table(&self, table: &TableId, retention: Duration, dry_run: bool) -> Result<VacuumReport> {
        let mut report = VacuumReport {
            table: table.name(),
            ..Default::default()
        };
        let Some(t) = self.open_table(table).await? else {
            return Ok(report);
        };
        let retention = chrono::Duration::from_std(retention).map_err(|e| err(table, e))?;
        let (_, metrics) = t
            .vacuum()
            // Full: also the files no commit ever named (a flush that crashed before it).
            .with_mode(VacuumMode::Full)
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_dry_run(dry_run)
            .await
            .map_err(|e| err(table, e))?;
        report.files_deleted = metrics.files_deleted.len();
        Ok(report)
    }

    /// The commits of a table, newest first.
    pub async fn table_history(&self, table: &TableId, limit: Option<usize>) -> Result<Vec<HistoryEntry>> {
        use futures::TryStreamExt;
        let Some(t) = self.open_table(table).await? else {
            return Err(err(table, "no such table in the lake (nothing written to it yet)"));
        };
        let infos: Vec<_> = t.history(limit).try_collect().await.map_err(|e| err(table, e))?;
        let newest = t.version().unwrap_or(0) as i64;
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(i, c)| HistoryEntry {
                version: Some(newest - i as i64),
                timestamp_ms: c.timestamp,
                operation: c.operation.clone().unwrap_or_default(),
                details: serde_json::to_string(&c.operation_parameters).unwrap_or_default(),
            })
            .collect())
    }
}
