//! GeoParquet: raw files of a kind with a position also carry it as a point geometry.
//!
//! A kind whose rows have `latitude` and `longitude` (WGS84 degrees, doubles) gets a last
//! column `geometry`: the same position as a WKB point (x = longitude, y = latitude), with the
//! GeoParquet 1.1 `geo` key in the Parquet footer (encoding, geometry types, the file's bbox;
//! no `crs`, which means OGC:CRS84). DuckDB spatial, GeoPandas, GDAL (QGIS) and ArcGIS Pro then
//! read the files as point layers; latitude and longitude stay for every other reader.
//!
//! The geometry is always derived from latitude and longitude when a file is encoded, so a
//! compaction of files written before the column existed fills it for every row.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use geoarrow_array::GeoArrowArray;
use geoarrow_array::array::{CoordBuffer, PointArray, SeparatedCoordBuffer};
use geoarrow_schema::{CoordType, Dimension, Metadata, PointType, WkbType};
use geoparquet::writer::{GeoParquetRecordBatchEncoder, GeoParquetWriterOptionsBuilder};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

/// The name of the point column of raw files.
pub const GEOMETRY_COLUMN: &str = "geometry";

/// The columns of a kind's raw files: its columns, then `geometry` when it has a position.
pub fn raw_file_schema(kind: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = kind
        .fields()
        .iter()
        .filter(|f| f.name() != GEOMETRY_COLUMN)
        .map(|f| f.as_ref().clone())
        .collect();
    if position(kind).is_some() {
        fields.push(wkb_field());
    }
    Arc::new(Schema::new(fields))
}

/// The `geometry` column as written: WKB in a nullable binary column (the geoarrow.wkb
/// extension type, as the GeoParquet encoder writes it).
fn wkb_field() -> Field {
    Field::new(GEOMETRY_COLUMN, DataType::Binary, true).with_extension_type(WkbType::new(Default::default()))
}

/// The columns of latitude and longitude, when both are doubles.
fn position(schema: &Schema) -> Option<(usize, usize)> {
    let column = |name: &str| {
        schema
            .index_of(name)
            .ok()
            .filter(|&i| schema.field(i).data_type() == &DataType::Float64)
    };
    Some((column("latitude")?, column("longitude")?))
}

/// A Parquet writer of one lake file; for raw rows with a position, a GeoParquet writer.
pub(crate) struct FileWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    geo: Option<Geo>,
}

struct Geo {
    encoder: GeoParquetRecordBatchEncoder,
    /// The schema the encoder takes: the batch's columns, then the position as a point.
    input: SchemaRef,
    latitude: usize,
    longitude: usize,
}

fn general(e: impl std::fmt::Display) -> ParquetError {
    ParquetError::General(format!("GeoParquet: {e}"))
}

impl<W: Write + Send> FileWriter<W> {
    /// A writer of batches of `schema`; `geometry` adds the point column when the schema has
    /// a position (raw files), and any `geometry` column the batches bring is derived anew.
    pub(crate) fn try_new(
        out: W,
        schema: &Schema,
        props: WriterProperties,
        geometry: bool,
    ) -> Result<Self, ParquetError> {
        if !geometry || position(schema).is_none() {
            let writer = ArrowWriter::try_new(out, Arc::new(schema.clone()), Some(props))?;
            return Ok(FileWriter { writer, geo: None });
        }
        let mut fields: Vec<Field> = schema
            .fields()
            .iter()
            .filter(|f| f.name() != GEOMETRY_COLUMN)
            .map(|f| f.as_ref().clone())
            .collect();
        let point = PointType::new(Dimension::XY, Arc::new(Metadata::default())).with_coord_type(CoordType::Separated);
        fields.push(point.to_field(GEOMETRY_COLUMN, true));
        let input = Arc::new(Schema::new(fields));
        let options = GeoParquetWriterOptionsBuilder::default()
            .set_primary_column(GEOMETRY_COLUMN.into())
            .build();
        let encoder = GeoParquetRecordBatchEncoder::try_new(&input, &options).map_err(general)?;
        let writer = ArrowWriter::try_new(out, encoder.target_schema(), Some(props))?;
        let (latitude, longitude) = position(&input).ok_or_else(|| general("no position"))?;
        Ok(FileWriter {
            writer,
            geo: Some(Geo {
                encoder,
                input,
                latitude,
                longitude,
            }),
        })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let Some(geo) = &mut self.geo else {
            return self.writer.write(batch);
        };
        let mut columns: Vec<ArrayRef> = geo
            .input
            .fields()
            .iter()
            .filter(|f| f.name() != GEOMETRY_COLUMN)
            .map(|f| {
                batch
                    .column_by_name(f.name())
                    .cloned()
                    .ok_or_else(|| general(format!("the batch has no column {}", f.name())))
            })
            .collect::<Result<_, _>>()?;
        let points = points(&columns[geo.latitude], &columns[geo.longitude])?;
        columns.push(points.into_array_ref());
        let input = RecordBatch::try_new(geo.input.clone(), columns)?;
        let encoded = geo.encoder.encode_record_batch(&input).map_err(general)?;
        self.writer.write(&encoded)
    }

    /// Writes the footer, with the `geo` key for a GeoParquet file.
    pub(crate) fn close(mut self) -> Result<(), ParquetError> {
        if let Some(geo) = self.geo {
            let key = geo.encoder.into_keyvalue().map_err(general)?;
            self.writer.append_key_value_metadata(key);
        }
        self.writer.close()?;
        Ok(())
    }
}

/// Points at (longitude, latitude), without copying the coordinates; null where either is.
fn points(latitude: &ArrayRef, longitude: &ArrayRef) -> Result<PointArray, ParquetError> {
    let (Some(lat), Some(lon)) = (
        latitude.as_primitive_opt::<Float64Type>(),
        longitude.as_primitive_opt::<Float64Type>(),
    ) else {
        return Err(general("latitude and longitude must be doubles"));
    };
    let nulls = NullBuffer::union(lat.nulls(), lon.nulls());
    let empty = ScalarBuffer::<f64>::from(Vec::new());
    let coords = SeparatedCoordBuffer::from_array(
        [lon.values().clone(), lat.values().clone(), empty.clone(), empty],
        Dimension::XY,
    )
    .map_err(general)?;
    PointArray::try_new(CoordBuffer::Separated(coords), nulls, Arc::new(Metadata::default())).map_err(general)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, StringArray};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn batch(rows: &[(&str, f64, f64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("latitude", DataType::Float64, false),
            Field::new("longitude", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .expect("batch")
    }

    fn encode(batches: &[RecordBatch]) -> Bytes {
        let mut out = Vec::new();
        let mut w =
            FileWriter::try_new(&mut out, &batches[0].schema(), WriterProperties::default(), true).expect("writer");
        for b in batches {
            w.write(b).expect("write");
        }
        w.close().expect("close");
        Bytes::from(out)
    }

    /// The little-endian WKB of a 2D point.
    fn wkb(x: f64, y: f64) -> Vec<u8> {
        let mut v = vec![1, 1, 0, 0, 0];
        v.extend(x.to_le_bytes());
        v.extend(y.to_le_bytes());
        v
    }

    #[test]
    fn positions_become_wkb_points_with_geoparquet_metadata() {
        let bytes = encode(&[
            batch(&[("a", 43.12, 5.93), ("b", 43.05, 6.13)]),
            batch(&[("c", 43.20, 5.80)]),
        ]);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).expect("parquet");
        let geo = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == "geo"))
            .and_then(|k| k.value.clone())
            .expect("a geo key");
        let geo: serde_json::Value = serde_json::from_str(&geo).expect("JSON");
        assert_eq!(geo["version"], "1.1.0");
        assert_eq!(geo["primary_column"], "geometry");
        let column = &geo["columns"]["geometry"];
        assert_eq!(column["encoding"], "WKB");
        assert_eq!(column["geometry_types"], serde_json::json!(["Point"]));
        assert!(column.get("crs").is_none(), "no crs means OGC:CRS84: {column}");
        assert_eq!(column["bbox"], serde_json::json!([5.80, 43.05, 6.13, 43.20]));
        assert_eq!(
            reader.schema().fields(),
            raw_file_schema(&batch(&[]).schema()).fields(),
            "the file's columns are the raw file schema"
        );
        let rows: Vec<RecordBatch> = reader.build().expect("reader").collect::<Result<_, _>>().expect("rows");
        let geometry: Vec<Vec<u8>> = rows
            .iter()
            .flat_map(|b| {
                let g = b
                    .column_by_name("geometry")
                    .expect("geometry")
                    .as_binary::<i32>()
                    .clone();
                (0..g.len()).map(move |i| g.value(i).to_vec()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(geometry, vec![wkb(5.93, 43.12), wkb(6.13, 43.05), wkb(5.80, 43.20)]);

        // Rewriting the file (a compaction) derives the column again, the same.
        let again = encode(&rows);
        let reread: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(again)
            .expect("parquet")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(reread, rows);
    }

    #[test]
    fn files_without_a_position_are_plain_parquet() {
        let schema = Schema::new(vec![Field::new("sensor_id", DataType::Utf8, false)]);
        assert_eq!(raw_file_schema(&schema).fields().len(), 1);
        let mut out = Vec::new();
        let w = FileWriter::try_new(&mut out, &schema, WriterProperties::default(), true).expect("writer");
        w.close().expect("close");
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out)).expect("parquet");
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        assert!(kv.iter().all(|k| k.key != "geo"));
    }
}
