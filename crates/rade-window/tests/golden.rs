//! Golden tests: recorded input streams (tests/golden/<case>/input.jsonl) through the windows
//! and the shipped rules (rules/), compared exactly with the recorded aggregates, alerts and
//! late records of the case. `RADE_BLESS=1 cargo test -p rade-window --test golden` rewrites
//! the expected files; do that only on purpose, and review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use rade_schema::{Catalog, DecodeLimits, Decoder};
use rade_window::{Alert, ClosedWindows, Folded, PartitionKey, RuleSet, WindowConfig, WindowSet, WindowSpec};

const LATENESS_MS: u64 = 60_000;
const IDLE_MS: u64 = 30_000;

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

/// What a stream produced, as text files to compare: all partitions together as recorded,
/// and each partition's alone.
struct Outcome {
    files: BTreeMap<String, String>,
    per_partition: BTreeMap<i32, BTreeMap<String, String>>,
}

/// How a stream is driven: the worker folds every reading, takes the output when it likes
/// and ticks when input pauses; none of that may change what comes out.
#[derive(Clone, Copy, Default)]
struct Cadence {
    /// Snapshot every partition after this record and go on with a new [`WindowSet`]
    /// restored from the snapshots, as a worker restart would.
    restart_at: Option<usize>,
    /// Seed of the random points where the output is taken and the set ticks; `None`: the
    /// output is taken after every record and the set never ticks.
    shuffle: Option<u64>,
}

/// A small deterministic generator (xorshift), so a failing cadence can be replayed.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One partition's part of one [`WindowSet::take_output`].
type Take = (i32, Vec<ClosedWindows>, Vec<Alert>);

/// Everything taken, in the order it was taken; each take's partitions by partition number
/// (the recorded files list two partitions closing at the same reading in that order).
fn take(set: &mut WindowSet, takes: &mut Vec<Take>) {
    let mut out: Vec<Take> = set
        .take_output()
        .into_iter()
        .map(|(key, closed, alerts)| (key.1, closed, alerts))
        .collect();
    out.sort_by_key(|t| t.0);
    takes.extend(out);
}

/// Plays a stream through a [`WindowSet`] the way the worker does: each partition is
/// assigned when its first record comes, every record is folded (which closes whatever it
/// makes due), and the output is taken.
fn play(case: &str, cadence: Cadence) -> Outcome {
    let catalog = Arc::new(Catalog::load(&repo().join("schemas")).expect("catalog"));
    let config = WindowConfig {
        allowed_lateness: Duration::from_millis(LATENESS_MS),
        idle_timeout: Duration::from_millis(IDLE_MS),
        ..WindowConfig::default()
    };
    let specs: Arc<[WindowSpec]> = config.specs().expect("specs").into();
    let rules = Arc::new(RuleSet::load(&repo().join("rules"), &catalog, &specs).expect("shipped rules"));
    let limits = DecodeLimits {
        max_future_ms: i64::MAX / 4,
        ..DecodeLimits::default()
    };
    let text = std::fs::read_to_string(repo().join(format!("crates/rade-window/tests/golden/{case}/input.jsonl")))
        .expect("input");
    let mut set = WindowSet::new(specs.clone(), rules.clone(), &config);
    // Per partition: its key, decoder, next offset and kind.
    let mut parts: BTreeMap<i32, (PartitionKey, Decoder, i64, String)> = BTreeMap::new();
    let mut takes: Vec<Take> = Vec::new();
    let mut late = String::from("partition,offset,sensor_id,observed_at,closed_at\n");
    let mut rng = cadence.shuffle.map(Xorshift);
    let mut now = i64::MIN;
    for (n, line) in text.lines().enumerate() {
        let input: Input = serde_json::from_str(line).expect("input line");
        if let Some(rng) = rng.as_mut() {
            // The clock has not moved since the last record: a tick changes nothing.
            if now != i64::MIN && rng.below(3) == 0 {
                set.tick(now);
            }
        }
        now = input.at;
        let (key, decoder, offset, _) = parts.entry(input.p).or_insert_with(|| {
            let topic: Arc<str> = format!("tpm.raw.{}", input.kind).into();
            let fresh = set.assign(topic.clone(), input.p, &input.kind, None, input.at);
            assert_eq!(fresh.expect("assigned"), None);
            let kind = catalog.kind(&input.kind).expect("kind").clone();
            (
                (topic, input.p),
                Decoder::new(catalog.clone(), kind, limits),
                0,
                input.kind.clone(),
            )
        });
        let bytes = serde_json::to_vec(&input.value).expect("json");
        let row = decoder
            .decode(Some(&bytes), input.at)
            .expect("every recorded record is valid");
        match set.fold(key, &row, input.at) {
            Folded::OnTime => {}
            Folded::Late { closed_at } => late.push_str(&format!(
                "{},{},{},{},{}\n",
                input.p,
                offset,
                input.value["sensor_id"].as_str().unwrap_or_default(),
                row.observed_at_ms,
                closed_at
            )),
            Folded::Unassigned => panic!("partition {} is assigned", input.p),
        }
        *offset += 1;
        // Each record, or batches of about five.
        if rng.as_mut().is_none_or(|rng| rng.below(5) == 0) {
            take(&mut set, &mut takes);
        }
        if cadence.restart_at == Some(n) {
            // A restart: what was taken is durable, every partition's state goes through a
            // snapshot into a new set.
            take(&mut set, &mut takes);
            let mut restarted = WindowSet::new(specs.clone(), rules.clone(), &config);
            for (key, _, offset, kind) in parts.values() {
                let bytes = set.snapshot(key, *offset).expect("snapshot");
                let at = restarted
                    .assign(key.0.clone(), key.1, kind, Some(&bytes), input.at)
                    .expect("restored");
                assert_eq!(at, Some(*offset));
            }
            set = restarted;
        }
    }
    take(&mut set, &mut takes);
    let mut per_partition = BTreeMap::new();
    for p in parts.keys() {
        let mine: Vec<&Take> = takes.iter().filter(|t| t.0 == *p).collect();
        let late: String = late
            .lines()
            .enumerate()
            .filter(|(i, l)| *i == 0 || l.starts_with(&format!("{p},")))
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        per_partition.insert(*p, render(&mine, late));
    }
    Outcome {
        files: render(&takes.iter().collect::<Vec<_>>(), late),
        per_partition,
    }
}

/// The files of closed windows (one per kind and window), alerts and late records.
fn render(takes: &[&Take], late: String) -> BTreeMap<String, String> {
    let mut aggregates: BTreeMap<&str, Vec<&RecordBatch>> = BTreeMap::new();
    for (_, closed, _) in takes {
        for c in closed {
            aggregates.entry(&c.window).or_default().push(&c.batch);
        }
    }
    let mut files = BTreeMap::new();
    for (window, batches) in aggregates {
        // Batches of different kinds have different columns: one file per kind and window.
        let mut by_kind: BTreeMap<String, Vec<&RecordBatch>> = BTreeMap::new();
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
                for b in batches {
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
    for (_, _, alerts) in takes {
        for a in alerts {
            alert_lines.push_str(&serde_json::to_string(a).expect("json"));
            alert_lines.push('\n');
        }
    }
    files.insert("alerts.jsonl".into(), alert_lines);
    files.insert("late.csv".into(), late);
    files
}

fn check(case: &str) {
    let outcome = play(case, Cadence::default());
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
    let restarted = play(
        case,
        Cadence {
            restart_at: Some(half),
            ..Cadence::default()
        },
    );
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
    let ordered = play("in_order", Cadence::default());
    let shuffled = play("out_of_order", Cadence::default());
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

/// The worker folds every reading but takes the output per batch and ticks when input
/// pauses: whatever the cadence, every partition gets exactly the same windows, alerts and
/// late records (only how partitions interleave in a shared file follows the takes).
#[test]
fn output_does_not_depend_on_batching_or_ticks() {
    for case in ["in_order", "out_of_order", "late", "idle_partition"] {
        let each_record = play(case, Cadence::default());
        for seed in [1, 7, 0x5eed, 0xdead_beef] {
            let batched = play(
                case,
                Cadence {
                    shuffle: Some(seed),
                    ..Cadence::default()
                },
            );
            assert_eq!(
                batched.per_partition, each_record.per_partition,
                "{case}: taking the output in batches and ticking (seed {seed}) changed it"
            );
            if each_record.per_partition.len() == 1 {
                assert_eq!(batched.files, each_record.files, "{case} (seed {seed})");
            }
        }
    }
}
