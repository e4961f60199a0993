use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rade_schema::{FieldType, KindSchema};

use crate::{Error, Result};

/// Statistics kept per numeric measurement and window, as column suffixes.
const STAT_SUFFIXES: [&str; 9] = [
    "_count",
    "_min",
    "_max",
    "_mean",
    "_sum",
    "_first",
    "_first_at",
    "_last",
    "_last_at",
];

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Which fields of a kind are aggregated, and the Arrow schema of its closed windows.
///
/// Numeric fields other than the position (`latitude`, `longitude`) are measurements: each
/// gets count, min, max, mean, sum, first and last value with their times. Enum fields (a
/// parking bay's `status`) keep their last value.
#[derive(Debug)]
pub struct KindLayout {
    pub kind: Arc<KindSchema>,
    pub(crate) sensor: usize,
    pub(crate) measures: Vec<usize>,
    pub(crate) labels: Vec<usize>,
    /// The aggregate columns before any derived column.
    pub schema: SchemaRef,
}

impl KindLayout {
    pub fn new(kind: Arc<KindSchema>) -> Result<Self> {
        let sensor = kind
            .fields
            .iter()
            .position(|f| f.name == "sensor_id" && f.ty == FieldType::String && !f.nullable)
            .ok_or_else(|| Error::Kind {
                kind: kind.kind.clone(),
                message: "windows need a non-null string field `sensor_id`".into(),
            })?;
        let mut measures = Vec::new();
        let mut labels = Vec::new();
        for (i, f) in kind.fields.iter().enumerate() {
            if i == kind.observed_at || matches!(f.name.as_str(), "latitude" | "longitude") {
                continue;
            }
            match f.ty {
                FieldType::Double | FieldType::Float | FieldType::Int | FieldType::Long => measures.push(i),
                FieldType::Enum(_) => labels.push(i),
                _ => {}
            }
        }
        let mut fields = vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("window_start", timestamp(), false),
            Field::new("window_end", timestamp(), false),
            Field::new("records", DataType::Int64, false),
        ];
        for &i in &measures {
            let name = &kind.fields[i].name;
            for suffix in STAT_SUFFIXES {
                let ty = match suffix {
                    "_count" => DataType::Int64,
                    "_first_at" | "_last_at" => timestamp(),
                    _ => DataType::Float64,
                };
                fields.push(Field::new(format!("{name}{suffix}"), ty, true));
            }
        }
        for &i in &labels {
            fields.push(Field::new(
                format!("{}_last", kind.fields[i].name),
                DataType::Utf8,
                true,
            ));
        }
        fields.push(Field::new("_topic", DataType::Utf8, false));
        fields.push(Field::new("_partition", DataType::Int32, false));
        Ok(KindLayout {
            kind,
            sensor,
            measures,
            labels,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// The names the window state's statistics follow: the measured fields, and the enum
    /// fields with their symbols (the state keeps symbol indices, which a new symbol list
    /// would change).
    pub(crate) fn field_names(&self) -> (Vec<String>, Vec<String>) {
        let fields = &self.kind.fields;
        let measures = self.measures.iter().map(|&i| fields[i].name.clone()).collect();
        let labels = self
            .labels
            .iter()
            .map(|&i| match &fields[i].ty {
                FieldType::Enum(symbols) => format!("{}{:?}", fields[i].name, symbols),
                _ => fields[i].name.clone(),
            })
            .collect();
        (measures, labels)
    }
}
