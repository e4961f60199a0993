//! Closed windows of one shape into an Arrow batch, and reading a time column back.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondArray,
};
use rade_schema::FieldType;

use super::{Head, Stat};
use crate::layout::KindLayout;
use crate::spec::WindowSpec;

/// Windows of one shape closed by one watermark, gathered column by column.
#[derive(Default)]
pub(super) struct Closed<'a> {
    sensors: Vec<&'a str>,
    starts: Vec<i64>,
    records: Vec<u32>,
    /// `stats[i * measures + m]`
    stats: Vec<Stat>,
    /// `labels[i * labels + l]`
    labels: Vec<Option<(i64, u32)>>,
}

impl<'a> Closed<'a> {
    /// Whether no window closed.
    pub(super) fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub(super) fn push(&mut self, sensor: &'a str, h: &Head, stats: &[Stat], labels: &[Option<(i64, u32)>]) {
        self.sensors.push(sensor);
        self.starts.push(h.start);
        self.records.push(h.records);
        self.stats.extend_from_slice(stats);
        self.labels.extend_from_slice(labels);
    }

    /// The Arrow batch of the kind's aggregate schema, ordered by window start then sensor.
    pub(super) fn batch(&self, layout: &KindLayout, spec: &WindowSpec, topic: &str, partition: i32) -> RecordBatch {
        let n = self.starts.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            (self.starts[a], self.sensors[a]).cmp(&(self.starts[b], self.sensors[b]))
        });
        let ts = |v: Vec<i64>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")) };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                order.iter().map(|&i| self.sensors[i as usize]),
            )),
            ts(order.iter().map(|&i| self.starts[i as usize]).collect()),
            ts(order.iter().map(|&i| self.starts[i as usize] + spec.size_ms).collect()),
            Arc::new(Int64Array::from_iter_values(
                order.iter().map(|&i| self.records[i as usize] as i64),
            )),
        ];
        let measures = layout.measures.len();
        for m in 0..measures {
            let stat = |i: u32| &self.stats[i as usize * measures + m];
            let float = |f: fn(&Stat) -> f64| -> ArrayRef {
                Arc::new(Float64Array::from_iter(order.iter().map(|&i| {
                    let s = stat(i);
                    (s.count > 0).then(|| f(s))
                })))
            };
            let time = |f: fn(&Stat) -> i64| -> ArrayRef {
                Arc::new(
                    TimestampMillisecondArray::from_iter(order.iter().map(|&i| {
                        let s = stat(i);
                        (s.count > 0).then(|| f(s))
                    }))
                    .with_timezone("UTC"),
                )
            };
            columns.push(Arc::new(Int64Array::from_iter_values(
                order.iter().map(|&i| stat(i).count as i64),
            )));
            columns.push(float(|s| s.min));
            columns.push(float(|s| s.max));
            columns.push(float(|s| s.sum / s.count as f64));
            columns.push(float(|s| s.sum));
            columns.push(float(|s| s.first));
            columns.push(time(|s| s.first_at));
            columns.push(float(|s| s.last));
            columns.push(time(|s| s.last_at));
        }
        let nlabels = layout.labels.len();
        for (l, &f) in layout.labels.iter().enumerate() {
            let FieldType::Enum(symbols) = &layout.kind.fields[f].ty else {
                continue;
            };
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for &i in &order {
                b.append_option(self.labels[i as usize * nlabels + l].and_then(|(_, s)| symbols.get(s as usize)));
            }
            columns.push(Arc::new(b.finish()));
        }
        columns.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(topic, n))));
        columns.push(Arc::new(Int32Array::from_value(partition, n)));
        RecordBatch::try_new(layout.schema.clone(), columns).expect("columns follow the kind's aggregate schema")
    }
}

pub(super) fn time_column(batch: &RecordBatch, i: usize) -> Vec<i64> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default()
}
