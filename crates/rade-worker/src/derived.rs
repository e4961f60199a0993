//! What the window thread hands a flush: the files of closed windows and alerts of a
//! partition, by day, and the closed windows as messages for the aggregates topic.

use std::collections::BTreeMap;

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use rade_lake::{DerivedFile, DerivedTable, day_of};
use rade_window::{Alert, ClosedWindows, alerts_batch};

use crate::windows::Key;

/// The files of closed windows and alerts of a partition since its last flush.
pub(crate) fn derived_files(
    key: &Key,
    kind: &str,
    closed_at: i64,
    closed: Vec<ClosedWindows>,
    alerts: Vec<Alert>,
    next: i64,
) -> Vec<(DerivedFile, Vec<RecordBatch>)> {
    let watermark = closed_at.max(0);
    let file = |table: DerivedTable, day_ms: i64| DerivedFile {
        table,
        day_ms,
        topic: key.0.to_string(),
        partition: key.1,
        next_offset: next,
        watermark_ms: watermark,
    };
    let mut derived = Vec::new();
    let mut by_window: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for c in closed {
        by_window.entry(c.window).or_default().push(c.batch);
    }
    for (window, batches) in by_window {
        for (day, batches) in split_by_day(&batches, "window_start") {
            let table = DerivedTable::Aggregates {
                window: window.clone(),
                kind: kind.to_owned(),
            };
            derived.push((file(table, day), batches));
        }
    }
    if !alerts.is_empty() {
        // Alerts by the day of their window's end: a silence alert's window starts with the
        // last reading, which may be days old.
        for (day, batches) in split_by_day(&[alerts_batch(&alerts)], "window_end") {
            derived.push((file(DerivedTable::Alerts, day), batches));
        }
    }
    derived
}

/// Groups batches by the UTC day of their `column` (the lake's `date=`); a batch is split only
/// when it spans two days. Batches are not concatenated: the Parquet writer takes them as they
/// are.
fn split_by_day(batches: &[RecordBatch], column: &str) -> Vec<(i64, Vec<RecordBatch>)> {
    let mut days: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let Some(starts) = batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        else {
            tracing::error!(
                column,
                "a batch of closed windows or alerts without its time column; not written"
            );
            continue;
        };
        let values = starts.values();
        let (Some(first), Some(last)) = (values.iter().min(), values.iter().max()) else {
            continue;
        };
        if day_of(*first) == day_of(*last) {
            days.entry(day_of(*first)).or_default().push(batch.clone());
            continue;
        }
        let mut d = day_of(*first);
        while d <= day_of(*last) {
            let mask: arrow::array::BooleanArray = values.iter().map(|&t| Some(day_of(t) == d)).collect();
            if let Ok(part) = arrow::compute::filter_record_batch(batch, &mask)
                && part.num_rows() > 0
            {
                days.entry(d).or_default().push(part);
            }
            d += 86_400_000;
        }
    }
    days.into_iter().collect()
}

/// Closed windows as JSON messages for the aggregates topic, keyed by sensor id.
pub(crate) fn aggregate_messages(c: &ClosedWindows) -> Vec<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        if writer.write(&c.batch).and_then(|()| writer.finish()).is_err() {
            return Vec::new();
        }
    }
    let sensors = c.batch.column(0).as_any().downcast_ref::<arrow::array::StringArray>();
    // Each line is a JSON object: the window goes in as its first member.
    let window = serde_json::to_string(&c.window).unwrap_or_default();
    buf.split(|&b| b == b'\n')
        .filter(|l| l.len() > 1)
        .enumerate()
        .map(|(i, line)| {
            let mut v = format!("{{\"window\":{window},").into_bytes();
            v.extend_from_slice(&line[1..]);
            let key = sensors.map(|s| s.value(i).to_owned()).unwrap_or_default();
            (key, v)
        })
        .collect()
}
