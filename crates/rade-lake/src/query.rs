use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use rade_schema::Catalog;
use url::Url;

use crate::delta::{AsOf, TableId};
use crate::location::LakeLocation;
use crate::store::Lake;
use crate::{Error, Result};

/// A DataFusion session with one `raw_<kind>` table per kind of the catalog, `aggregates` and
/// `alerts`, each read through delta-rs from its Delta table at `as_of` (the files its log
/// names: never a file a compaction replaced or a failed flush left). Filters on the partition
/// columns (`date`, `hour`; `window`, `kind`) prune files, and the files' statistics too.
/// Identifiers keep their case, so FIWARE names such as `LAeq` need no quotes.
pub async fn query_session(lake: &Lake, catalog: &Catalog, as_of: &AsOf) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .set_bool("datafusion.sql_parser.enable_ident_normalization", false)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true);
    let ctx = SessionContext::new_with_config(config);
    let base = lake.location().store_url();
    let (store, _) = lake.store();
    ctx.register_object_store(&base, store.clone());
    let mut tables: Vec<TableId> = catalog.kinds().iter().map(|k| TableId::Raw(k.kind.clone())).collect();
    tables.push(TableId::Aggregates);
    tables.push(TableId::Alerts);
    for table in tables {
        let name = table.name();
        let provider: Arc<dyn TableProvider> = match lake.open_table_as_of(&table, as_of).await? {
            Some(t) => t
                .table_provider()
                .await
                .map_err(|e| Error::Query(format!("cannot read {name}: {e}")))?,
            None => match &table {
                // A kind with nothing written yet reads as empty.
                TableId::Raw(kind) => {
                    let kind = catalog.kind(kind.as_str()).expect("a kind of the catalog");
                    let mut fields: Vec<Field> = crate::geo::raw_file_schema(&kind.arrow)
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone())
                        .collect();
                    fields.push(Field::new("date", DataType::Utf8, true));
                    fields.push(Field::new("hour", DataType::Utf8, true));
                    let schema = Arc::new(Schema::new(fields));
                    Arc::new(
                        MemTable::try_new(schema, vec![vec![]])
                            .map_err(|e| Error::Query(format!("cannot register {name}: {e}")))?,
                    )
                }
                _ => continue,
            },
        };
        ctx.register_table(name.as_str(), provider)
            .map_err(|e| Error::Query(format!("cannot register {name}: {e}")))?;
    }
    Ok(ctx)
}

impl Lake {
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
        };
        let (_, written) = lake.write_raw(&file, vec![b.finish()]).await.expect("written");
        let table = crate::TableId::Raw("noise".into());
        lake.commit(&table, &[written], &[], &[], &Default::default())
            .await
            .expect("committed");
    }

    #[tokio::test]
    async fn raw_tables_read_back_what_was_written_with_partition_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = LakeLocation::Local(dir.path().to_path_buf());
        let lake = Lake::open(&location, &Default::default()).expect("lake");
        let catalog = catalog();
        two_noise_rows(&lake, &catalog).await;
        let ctx = query_session(&lake, &catalog, &AsOf::Latest).await.expect("session");
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
        let ctx = query_session(&lake, &catalog, &AsOf::Latest).await.expect("session");
        let batches = run(&ctx, "SELECT count(*) AS n FROM raw_noise").await;
        let text = printed(&batches);
        assert!(text.contains("| 2 |"), "{text}");
    }
}
