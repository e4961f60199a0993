use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::catalog::{FieldType, KindSchema};
use crate::decode::{Row, Value};

/// The lineage columns every raw row carries, after the measurement columns.
pub const LINEAGE_COLUMNS: [&str; 4] = ["_topic", "_partition", "_offset", "_ingested_at"];

pub(crate) fn lineage_fields() -> [Field; 4] {
    [
        Field::new(LINEAGE_COLUMNS[0], DataType::Utf8, false),
        Field::new(LINEAGE_COLUMNS[1], DataType::Int32, false),
        Field::new(LINEAGE_COLUMNS[2], DataType::Int64, false),
        Field::new(
            LINEAGE_COLUMNS[3],
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]
}

/// Where a row came from: its Kafka position and when the worker read it.
#[derive(Debug, Clone, Copy)]
pub struct Lineage<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub ingested_at_ms: i64,
}

enum Column {
    F64(Float64Builder),
    F32(Float32Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Ts(TimestampMillisecondBuilder),
    Enum(StringBuilder, Arc<[String]>),
}

impl Column {
    fn new(ty: &FieldType, capacity: usize) -> Column {
        match ty {
            FieldType::Double => Column::F64(Float64Builder::with_capacity(capacity)),
            FieldType::Float => Column::F32(Float32Builder::with_capacity(capacity)),
            FieldType::Int => Column::I32(Int32Builder::with_capacity(capacity)),
            FieldType::Long => Column::I64(Int64Builder::with_capacity(capacity)),
            FieldType::Boolean => Column::Bool(BooleanBuilder::with_capacity(capacity)),
            FieldType::String => Column::Str(StringBuilder::with_capacity(capacity, capacity * 16)),
            FieldType::TimestampMillis => {
                Column::Ts(TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
            FieldType::Enum(symbols) => {
                Column::Enum(StringBuilder::with_capacity(capacity, capacity * 8), symbols.clone())
            }
        }
    }

    /// Appends a value the decoder produced for this column's type; `Null` only for optional fields.
    fn push(&mut self, v: &Value<'_>) {
        match (self, v) {
            (Column::F64(b), Value::Double(x)) => b.append_value(*x),
            (Column::F32(b), Value::Float(x)) => b.append_value(*x),
            (Column::I32(b), Value::Int(x)) => b.append_value(*x),
            (Column::I64(b), Value::Long(x)) => b.append_value(*x),
            (Column::Ts(b), Value::Long(x)) => b.append_value(*x),
            (Column::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (Column::Str(b), Value::Str(s)) => b.append_value(s),
            (Column::Enum(b, symbols), Value::Symbol(i)) => b.append_value(&symbols[*i as usize]),
            (c, _) => c.push_null(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Column::F64(b) => b.append_null(),
            Column::F32(b) => b.append_null(),
            Column::I32(b) => b.append_null(),
            Column::I64(b) => b.append_null(),
            Column::Ts(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Str(b) | Column::Enum(b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::F64(b) => Arc::new(b.finish()),
            Column::F32(b) => Arc::new(b.finish()),
            Column::I32(b) => Arc::new(b.finish()),
            Column::I64(b) => Arc::new(b.finish()),
            Column::Ts(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Str(b) | Column::Enum(b, _) => Arc::new(b.finish()),
        }
    }
}

/// Arrow columns of one kind being filled row by row, lineage included.
pub struct RowBatchBuilder {
    kind: Arc<KindSchema>,
    columns: Vec<Column>,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    ingested_at: TimestampMillisecondBuilder,
    rows: usize,
    string_bytes: usize,
}

impl std::fmt::Debug for RowBatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowBatchBuilder")
            .field("kind", &self.kind.kind)
            .field("rows", &self.rows)
            .finish()
    }
}

impl RowBatchBuilder {
    /// An empty builder with room for `capacity` rows.
    pub fn new(kind: Arc<KindSchema>, capacity: usize) -> Self {
        let columns = kind.fields.iter().map(|f| Column::new(&f.ty, capacity)).collect();
        RowBatchBuilder {
            kind,
            columns,
            topic: StringBuilder::with_capacity(capacity, capacity * 12),
            partition: Int32Builder::with_capacity(capacity),
            offset: Int64Builder::with_capacity(capacity),
            ingested_at: TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            rows: 0,
            string_bytes: 0,
        }
    }

    /// Appends a validated row of this builder's kind.
    pub fn push(&mut self, row: &Row<'_>, lineage: Lineage<'_>) {
        debug_assert_eq!(row.values.len(), self.columns.len());
        for (c, v) in self.columns.iter_mut().zip(&row.values) {
            if let Value::Str(s) = v {
                self.string_bytes += s.len();
            }
            c.push(v);
        }
        self.topic.append_value(lineage.topic);
        self.partition.append_value(lineage.partition);
        self.offset.append_value(lineage.offset);
        self.ingested_at.append_value(lineage.ingested_at_ms);
        self.string_bytes += lineage.topic.len();
        self.rows += 1;
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Approximate Arrow memory of the rows so far, to decide when to flush.
    pub fn approx_bytes(&self) -> usize {
        // 8 bytes per fixed-width value (and per string offset) is close enough for sizing.
        self.rows * (self.columns.len() + 4) * 8 + self.string_bytes
    }

    /// The rows so far as a batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        arrays.push(Arc::new(self.topic.finish()));
        arrays.push(Arc::new(self.partition.finish()));
        arrays.push(Arc::new(self.offset.finish()));
        arrays.push(Arc::new(self.ingested_at.finish()));
        self.rows = 0;
        self.string_bytes = 0;
        RecordBatch::try_new(self.kind.arrow.clone(), arrays)
            .expect("builders follow the kind's Arrow schema column for column")
    }
}
