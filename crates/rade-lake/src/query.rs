use arrow::datatypes::DataType;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SessionConfig};
use rade_schema::Catalog;
use url::Url;

use crate::location::LakeLocation;
use crate::store::Lake;
use crate::{Error, Result};

/// A DataFusion session with one `raw_<kind>` table per kind of the catalog, over the lake,
/// partitioned by the Hive columns `date` and `hour` so that filters on them prune files.
/// Identifiers keep their case, so FIWARE names such as `LAeq` need no quotes. Raw files that
/// a compaction has merged are hidden (see the protocol in `compact.rs`).
pub async fn query_session(lake: &Lake, catalog: &Catalog) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .set_bool("datafusion.sql_parser.enable_ident_normalization", false)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true);
    let ctx = SessionContext::new_with_config(config);
    let base = lake.location().store_url();
    let (store, _) = lake.store();
    // Raw files that compaction has merged are not listed while they wait to be deleted.
    ctx.register_object_store(&base, crate::compact::visible_store(store.clone()));
    for kind in catalog.kinds() {
        // The raw files' schema (the position also as a GeoParquet point), without the
        // partition columns, which come from the paths.
        let schema = crate::geo::raw_file_schema(&kind.arrow);
        let url = lake.table_url(&format!("raw/kind={}/", kind.kind))?;
        let options = ParquetReadOptions::default()
            .schema(&schema)
            .table_partition_cols(vec![("date".into(), DataType::Utf8), ("hour".into(), DataType::Utf8)]);
        ctx.register_parquet(format!("raw_{}", kind.kind), url.as_str(), options)
            .await
            .map_err(|e| Error::Query(format!("cannot register raw_{}: {e}", kind.kind)))?;
    }
    // Closed windows of every kind in one table: its columns are the union of the kinds'
    // (a column a kind does not have is null), read from the files themselves.
    for (table, dir, partitions) in [
        ("aggregates", "aggregates/", vec!["window", "kind", "date"]),
        ("alerts", "alerts/", vec!["date"]),
    ] {
        if !lake.has_files(dir).await? {
            continue;
        }
        let url = lake.table_url(dir)?;
        let options = ParquetReadOptions::default()
            .table_partition_cols(partitions.into_iter().map(|p| (p.to_owned(), DataType::Utf8)).collect());
        ctx.register_parquet(table, url.as_str(), options)
            .await
            .map_err(|e| Error::Query(format!("cannot register {table}: {e}")))?;
    }
    Ok(ctx)
}

impl Lake {
    /// Whether a directory of the lake holds at least one Parquet file.
    pub(crate) async fn has_files(&self, relative: &str) -> Result<bool> {
        use futures::StreamExt;
        let (store, root) = self.store();
        let mut prefix = root.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            prefix = prefix.join(part);
        }
        let mut listing = store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            match meta {
                Ok(m) if m.location.as_ref().ends_with(".parquet") => return Ok(true),
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(source) => {
                    return Err(Error::Store {
                        path: prefix.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(false)
    }

    /// The URL of a directory of the lake, as DataFusion lists it under the store of
    /// [`LakeLocation::store_url`].
    pub(crate) fn table_url(&self, relative: &str) -> Result<Url> {
        let (_, root) = self.store();
        let mut path = String::new();
        match self.location() {
            LakeLocation::Local(dir) => path.push_str(dir.to_string_lossy().trim_end_matches('/')),
            LakeLocation::S3 { .. } | LakeLocation::Memory if !root.as_ref().is_empty() => {
                path.push('/');
                path.push_str(root.as_ref());
            }
            LakeLocation::S3 { .. } | LakeLocation::Memory => {}
        }
        path.push('/');
        path.push_str(relative);
        self.location().store_url().join(&path).map_err(|e| Error::Open {
            location: self.location().to_string(),
            message: format!("no table URL for {path}: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::layout::{RawFile, hour_of};
    use rade_schema::{DecodeLimits, Decoder, Lineage, RowBatchBuilder};

    async fn run(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<arrow::record_batch::RecordBatch> {
        ctx.sql(sql).await.expect("plans").collect().await.expect("runs")
    }

    fn printed(batches: &[arrow::record_batch::RecordBatch]) -> String {
        arrow::util::pretty::pretty_format_batches(batches)
            .expect("prints")
            .to_string()
    }

    fn catalog() -> Catalog {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")).expect("schemas")
    }

    /// Writes two noise readings (LAeq 55.5 and 61.0) into one raw file of `lake`.
    async fn two_noise_rows(lake: &Lake, catalog: &Catalog) {
        let kind = catalog.kind("noise").expect("noise").clone();
        let decoder = Decoder::new(Arc::new(catalog.clone()), kind.clone(), DecodeLimits::default());
        let t = 1_780_000_000_000i64;
        let mut b = RowBatchBuilder::new(kind.clone(), 4);
        for (i, level) in [55.5, 61.0].into_iter().enumerate() {
            let json =
                format!(r#"{{"sensor_id":"nz-1","observed_at":{t},"latitude":43.1,"longitude":5.9,"LAeq":{level}}}"#);
            let row = decoder.decode(Some(json.as_bytes()), t).expect("valid");
            b.push(
                &row,
                Lineage {
                    topic: "tpm.raw.noise",
                    partition: 0,
                    offset: i as i64,
                    ingested_at_ms: t,
                },
            );
        }
        let file = RawFile {
            kind: "noise".into(),
            hour: hour_of(t),
            topic: "tpm.raw.noise".into(),
            partition: 0,
            start: 0,
            end: 1,
            merged: false,
        };
        lake.write_raw(&file, vec![b.finish()]).await.expect("written");
    }

    #[tokio::test]
    async fn raw_tables_read_back_what_was_written_with_partition_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = LakeLocation::Local(dir.path().to_path_buf());
        let lake = Lake::open(&location, &Default::default()).expect("lake");
        let catalog = catalog();
        two_noise_rows(&lake, &catalog).await;
        let ctx = query_session(&lake, &catalog).await.expect("session");
        let batches = run(
            &ctx,
            "SELECT max(LAeq) AS m, count(*) AS n, min(date) AS d, min(hour) AS h FROM raw_noise",
        )
        .await;
        let text = printed(&batches);
        assert!(text.contains("| 61.0 | 2 | 2026-05-28 | 20 |"), "{text}");
        // Other kinds are registered even with no file yet.
        let empty = run(&ctx, "SELECT count(*) FROM raw_water_level").await;
        assert_eq!(printed(&empty).matches("| 0 ").count(), 1);
    }

    #[tokio::test]
    async fn a_lake_in_memory_is_queried_from_its_own_store() {
        let lake = Lake::open(&LakeLocation::Memory, &Default::default()).expect("lake");
        let catalog = catalog();
        two_noise_rows(&lake, &catalog).await;
        let ctx = query_session(&lake, &catalog).await.expect("session");
        let batches = run(&ctx, "SELECT count(*) AS n FROM raw_noise").await;
        let text = printed(&batches);
        assert!(text.contains("| 2 |"), "{text}");
    }
}
