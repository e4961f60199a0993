use std::sync::Arc;

use apache_avro::types::Value as AvroValue;
use arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rade_schema::KindSchema;
use serde::{Deserialize, Serialize};

use crate::rules::Severity;

/// RAISED when a rule's condition starts to hold for a sensor, RESOLVED when it is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertState {
    #[serde(rename = "RAISED")]
    Raised,
    #[serde(rename = "RESOLVED")]
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Raised => "RAISED",
            AlertState::Resolved => "RESOLVED",
        }
    }
}

/// One state change of one rule for one sensor: a record of `schemas/alert.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    pub sensor_id: String,
    pub kind: String,
    pub window_start: i64,
    pub window_end: i64,
    pub observed_value: Option<f64>,
    pub condition: String,
    pub message: String,
    pub emitted_at: i64,
    /// Kafka partition of the raw records that led to it (lake lineage; not on the topic).
    #[serde(skip)]
    pub source: Option<(Arc<str>, i32)>,
}

/// The deduplication key of a state change: the same change of the same incident gets the
/// same id on every replay, because it depends only on event time, never on the clock.
pub fn alert_id(rule: &str, sensor: &str, state: AlertState, window_end: i64) -> String {
    let mut h = blake3::Hasher::new();
    for part in [rule, sensor, state.as_str(), &window_end.to_string()] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..32].to_owned()
}

impl Alert {
    /// The record key on the alert topic: `<rule>/<sensor_id>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.rule, self.sensor_id)
    }

    /// Confluent-framed Avro (magic 0, 4-byte schema id, datum) per the catalog's alert schema.
    pub fn to_avro(&self, schema: &KindSchema) -> Result<Vec<u8>, String> {
        let value = AvroValue::Record(vec![
            ("alert_id".into(), AvroValue::String(self.alert_id.clone())),
            ("rule".into(), AvroValue::String(self.rule.clone())),
            (
                "severity".into(),
                AvroValue::Enum(self.severity as u32, self.severity.as_str().into()),
            ),
            (
                "state".into(),
                AvroValue::Enum(
                    matches!(self.state, AlertState::Resolved) as u32,
                    self.state.as_str().into(),
                ),
            ),
            ("sensor_id".into(), AvroValue::String(self.sensor_id.clone())),
            ("kind".into(), AvroValue::String(self.kind.clone())),
            ("window_start".into(), AvroValue::TimestampMillis(self.window_start)),
            ("window_end".into(), AvroValue::TimestampMillis(self.window_end)),
            (
                "observed_value".into(),
                match self.observed_value {
                    Some(v) => AvroValue::Union(1, Box::new(AvroValue::Double(v))),
                    None => AvroValue::Union(0, Box::new(AvroValue::Null)),
                },
            ),
            ("condition".into(), AvroValue::String(self.condition.clone())),
            ("message".into(), AvroValue::String(self.message.clone())),
            ("emitted_at".into(), AvroValue::TimestampMillis(self.emitted_at)),
        ]);
        let datum = apache_avro::to_avro_datum(&schema.avro, value).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(datum.len() + 5);
        out.push(0);
        out.extend_from_slice(&schema.id.to_be_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// The same record as a JSON object, for consumers without Avro.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Schema of the lake's `alerts/` files: the alert record plus the Kafka partition it came from.
pub fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("window_start", timestamp(), false),
        Field::new("window_end", timestamp(), false),
        Field::new("observed_value", DataType::Float64, true),
        Field::new("condition", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("emitted_at", timestamp(), false),
        Field::new("_topic", DataType::Utf8, true),
        Field::new("_partition", DataType::Int32, true),
    ]))
}

/// Alerts as one Arrow batch of [`alerts_schema`].
pub fn alerts_batch(alerts: &[Alert]) -> RecordBatch {
    let s = |f: fn(&Alert) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(alerts.iter().map(f))) };
    let t = |f: fn(&Alert) -> i64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter_values(alerts.iter().map(f)).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        s(|a| &a.alert_id),
        s(|a| &a.rule),
        s(|a| a.severity.as_str()),
        s(|a| a.state.as_str()),
        s(|a| &a.sensor_id),
        s(|a| &a.kind),
        t(|a| a.window_start),
        t(|a| a.window_end),
        Arc::new(Float64Array::from_iter(alerts.iter().map(|a| a.observed_value))),
        s(|a| &a.condition),
        s(|a| &a.message),
        t(|a| a.emitted_at),
        Arc::new(StringArray::from_iter(
            alerts.iter().map(|a| a.source.as_ref().map(|(t, _)| t.as_ref())),
        )),
        Arc::new(Int32Array::from_iter(
            alerts.iter().map(|a| a.source.as_ref().map(|(_, p)| *p)),
        )),
    ];
    RecordBatch::try_new(alerts_schema(), columns).expect("columns follow alerts_schema")
}
