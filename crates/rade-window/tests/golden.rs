//! Golden tests: recorded input streams (tests/golden/<case>/input.jsonl) through the windows
//! and the shipped rules (rules/), compared exactly with the recorded aggregates, alerts and
//! late records of the case. `RADE_BLESS=1 cargo test -p rade-window --test golden` rewrites
//! the expected files; do that only on purpose, and review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use rade_schema::{Catalog, DecodeLimits, Decoder};
use rade_window::{Alert, Observed, PartitionWindows, RuleSet, WindowConfig, WindowSpec, combined_watermark};

const LATENESS_MS: i64 = 60_000;
const IDLE_MS: i64 = 30_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(serde::Deserialize)]
struct Input {
    p: i32,
    at: i64,
    kind: String,
    value: serde_json::Value,
}

/// What a stream produced, as text files to compare.
struct Outcome {
    files: BTreeMap<String, String>,
}

/// Plays a stream the way the worker does: each record is folded into its partition's
/// windows, then the combined watermark is recomputed and every partition closes up to it.
/// A partition is snapshotted and restored in the middle of the stream when `restart_at` says
/// so, as a worker restart would.
fn play(case: &str, restart_at: Option<usize>) -> Outcome {
    let catalog = Arc::new(Catalog::load(&repo().join("schemas")).expect("catalog"));
    let config = WindowConfig::default();
    let specs: Arc<[WindowSpec]> = config.specs().expect("specs").into();
    let rules = RuleSet::load(&repo().join("rules"), &catalog, &specs).expect("shipped rules");
    let limits = DecodeLimits {
        max_future_ms: i64::MAX / 4,
        ..DecodeLimits::default()
    };
    let text = std::fs::read_to_string(repo().join(format!("crates/rade-window/tests/golden/{case}/input.jsonl")))
        .expect("input");
    let mut parts: BTreeMap<i32, (PartitionWindows, Decoder, i64, String)> = BTreeMap::new();
    let mut watermark: Option<i64> = None;
    let mut aggregates: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut late = String::from("partition,offset,sensor_id,observed_at,closed_at\n");
    for (n, line) in text.lines().enumerate() {
        let input: Input = serde_json::from_str(line).expect("input line");
        let kind = catalog.kind(&input.kind).expect("kind").clone();
        let (windows, decoder, offset, _) = parts.entry(input.p).or_insert_with(|| {
            (
                PartitionWindows::new(
                    format!("tpm.raw.{}", input.kind).into(),
                    input.p,
                    &input.kind,
                    specs.clone(),
                    &rules,
                    input.at,
                )
                .expect("windows"),
                Decoder::new(catalog.clone(), kind, limits),
                0,
                input.kind.clone(),
            )
        });
        let bytes = serde_json::to_vec(&input.value).expect("json");
        let row = decoder
            .decode(Some(&bytes), input.at)
            .expect("every recorded record is valid");
        if let Observed::Late { closed_at } = windows.observe(&row, input.at) {
            late.push_str(&format!(
                "{},{},{},{},{}\n",
                input.p,
                offset,
                input.value["sensor_id"].as_str().unwrap_or_default(),
                row.observed_at_ms,
                closed_at
            ));
        }
        *offset += 1;
        if restart_at == Some(n) {
            // A restart: every partition's state goes through a snapshot into fresh windows.
            for (p, (windows, _, offset, kind)) in parts.iter_mut() {
                let bytes = windows.snapshot(*offset).expect("snapshot");
                let mut fresh = PartitionWindows::new(
                    format!("tpm.raw.{kind}").into(),
                    *p,
                    kind.as_str(),
                    specs.clone(),
                    &rules,
                    input.at,
                )
                .expect("windows");
                assert_eq!(fresh.restore(&bytes).expect("restore"), *offset);
                *windows = fresh;
            }
        }
        let progress = parts.values().map(|(w, _, _, _)| w.progress());
        if let Some(w) = combined_watermark(progress, input.at, LATENESS_MS, IDLE_MS) {
            watermark = Some(watermark.map_or(w, |m| m.max(w)));
        }
        if let Some(w) = watermark {
            for (windows, _, _, _) in parts.values_mut() {
                for closed in windows.close(w, input.at) {
                    aggregates.entry(closed.window).or_default().push(closed.batch);
                }
                alerts.extend(windows.take_alerts());
            }
        }
    }
    let mut files = BTreeMap::new();
    for (window, batches) in aggregates {
        // Batches of different kinds have different columns: one file per kind and window.
        let mut by_kind: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        for b in batches {
            let topic = b
                .column_by_name("_topic")
                .map(|c| arrow::util::display::array_value_to_string(c, 0).unwrap_or_default())
                .unwrap_or_default();
            by_kind
                .entry(topic.trim_start_matches("tpm.raw.").to_owned())
                .or_default()
                .push(b);
        }
        for (kind, batches) in by_kind {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in &batches {
                    w.write(b).expect("csv");
                }
            }
            files.insert(
                format!("aggregates_{kind}_{window}.csv"),
                String::from_utf8(out).expect("utf-8"),
            );
        }
    }
    let mut alert_lines = String::new();
    for a in &alerts {
        alert_lines.push_str(&serde_json::to_string(a).expect("json"));
        alert_lines.push('\n');
    }
    files.insert("alerts.jsonl".into(), alert_lines);
    files.insert("late.csv".into(), late);
    Outcome { files }
}

fn check(case: &str) {
    let outcome = play(case, None);
    let dir = repo().join(format!("crates/rade-window/tests/golden/{case}"));
    if std::env::var_os("RADE_BLESS").is_some() {
        for entry in std::fs::read_dir(&dir).expect("case dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "input.jsonl" {
                std::fs::remove_file(entry.path()).expect("remove old expected file");
            }
        }
        for (name, text) in &outcome.files {
            std::fs::write(dir.join(name), text).expect("write expected");
        }
        return;
    }
    let mut expected_names: Vec<String> = std::fs::read_dir(&dir)
        .expect("case dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "input.jsonl")
        .collect();
    expected_names.sort();
    let produced: Vec<String> = outcome.files.keys().cloned().collect();
    assert_eq!(produced, expected_names, "{case}: the set of output files differs");
    for (name, text) in &outcome.files {
        let expected = std::fs::read_to_string(dir.join(name)).expect("expected file");
        assert!(
            *text == expected,
            "{case}/{name} differs from the recorded output (RADE_BLESS=1 to accept on purpose)\n--- produced ---\n{}",
            text.lines().take(40).collect::<Vec<_>>().join("\n")
        );
    }
    // The same stream with a restart in the middle gives exactly the same output.
    let half = std::fs::read_to_string(dir.join("input.jsonl"))
        .expect("input")
        .lines()
        .count()
        / 2;
    let restarted = play(case, Some(half));
    // Only the processing time of alerts may differ: a restarted partition's idleness clock
    // starts again.
    let without_time = |t: &str| -> String {
        t.lines()
            .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(mut v) if v.get("emitted_at").is_some() => {
                    v["emitted_at"] = serde_json::Value::Null;
                    v.to_string()
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (name, text) in &outcome.files {
        assert_eq!(
            without_time(&restarted.files[name]),
            without_time(text),
            "{case}/{name} differs after a restart at record {half}"
        );
    }
}

#[test]
fn in_order_stream() {
    check("in_order");
}

#[test]
fn out_of_order_stream() {
    check("out_of_order");
    // Shuffled within the allowed lateness, the stream closes into the very same windows.
    let ordered = play("in_order", None);
    let shuffled = play("out_of_order", None);
    for (name, text) in &ordered.files {
        if name.starts_with("aggregates_") {
            assert_eq!(&shuffled.files[name], text, "{name}: order changed the aggregates");
        }
    }
    let ids = |o: &Outcome| -> Vec<String> {
        o.files["alerts.jsonl"]
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["alert_id"].to_string())
            .collect()
    };
    assert_eq!(ids(&shuffled), ids(&ordered), "order changed the alerts");
}

#[test]
fn late_records_are_reported_and_never_reopen_a_window() {
    check("late");
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    check("idle_partition");
}
