//! Producer conformance: readings of every sensor kind, encoded by producers written
//! independently of rade and sent by their own Kafka clients, reach the lake once each with
//! equal values, and none reaches the DLQ.
//!
//! The producers live in tests/producers/: Java (Apache Avro's `BinaryMessageEncoder` for
//! single-object, `GenericDatumWriter` behind the Confluent header; kafka-clients), Python
//! (fastavro and the Apache `avro` package, each in both framings, and `json` with
//! full-precision doubles and RFC 3339 times with offsets; kafka-python) and Go (goavro in
//! both framings; franz-go). What they send is decided by tests/producers/python/generate.py
//! (declared ranges and their edges, optional fields null and absent, every enum symbol) and
//! read back from the lake's Delta tables by the deltalake package and pyarrow (tests/producers/python/verify.py), doubles compared by
//! their bits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use rade_integration_tests::*;

/// Every sensor kind of schemas/catalog.toml.
const KINDS: [&str; 11] = [
    "water_level",
    "rainfall",
    "air_quality",
    "noise",
    "weather",
    "parking_bay",
    "car_park",
    "traffic_counter",
    "energy_meter",
    "public_lighting",
    "waste_bin",
];

fn producers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("producers")
}

/// Runs a producer-side command to its end; its stdout, or a failure with both outputs.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tests/producers/build.sh: the Java classpath and the Go binary, built or taken from the cache.
fn build_producers() -> BTreeMap<String, String> {
    let out = run(
        "tests/producers/build.sh (Java, Go and Python producers)",
        Command::new(producers_dir().join("build.sh")).env("RADE_TEST_PYTHON", python()),
    );
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn readings_of_foreign_producers_reach_the_lake_bit_for_bit() {
    let tools = build_producers();
    // One partition per kind: each producer's readings stay in the order of their event times.
    let setup = Setup::new(&KINDS, 1).await;
    let readings = setup.dir.path().join("readings");
    let schemas = schemas_dir();
    let py = producers_dir().join("python");
    let bootstrap = bootstrap();

    let generated = run(
        "generate.py",
        Command::new(python())
            .arg(py.join("generate.py"))
            .arg("--schemas")
            .arg(&schemas)
            .arg("--out")
            .arg(&readings)
            .args(["--start-ms", &(now_ms() - 15 * 60_000).to_string(), "--seed", "10"]),
    );
    let tsv = |stream: &str| readings.join(format!("{stream}.tsv")).display().to_string();
    // In the order of generate.py's STREAMS, which its event times follow.
    let java_sent = run(
        "the Java producer",
        Command::new("java")
            .args(["-cp", &tools["JAVA_CP"], "Produce", &bootstrap, &setup.prefix])
            .arg(&schemas)
            .arg(format!("single-object={}", tsv("java-single-object")))
            .arg(format!("confluent={}", tsv("java-confluent"))),
    );
    let python_sent = run(
        "the Python producers",
        Command::new(python())
            .arg(py.join("produce.py"))
            .args(["--bootstrap", &bootstrap, "--prefix", &setup.prefix, "--schemas"])
            .arg(&schemas)
            .arg("--expected")
            .arg(readings.join("expected.jsonl"))
            .args([
                "fastavro-single-object",
                "fastavro-confluent",
                "avro-single-object",
                "avro-confluent",
                "json",
            ]),
    );
    let go_sent = run(
        "the Go producer",
        Command::new(&tools["GO_BIN"])
            .args([&bootstrap, &setup.prefix])
            .arg(&schemas)
            .arg(format!("single-object={}", tsv("goavro-single-object")))
            .arg(format!("confluent={}", tsv("goavro-confluent"))),
    );
    let sent = [java_sent, python_sent, go_sent].concat();

    run_until_caught_up(&setup.config(""), &[], &setup.log("run.log"));

    // The DLQ, by stream (the first part of the key) and reason, with a detail of each.
    let mut rejected: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
    for m in read_topic(&setup.dlq) {
        let key = m.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let stream = key.split('/').next().unwrap_or_default().to_owned();
        let reason = m.headers.get("rade.reason").cloned().unwrap_or_default();
        let e = rejected.entry((stream, reason)).or_default();
        e.0 += 1;
        if e.1.is_empty() {
            e.1 = format!("{key}: {}", m.headers.get("rade.detail").cloned().unwrap_or_default());
        }
    }
    let report = run(
        "verify.py (deltalake and pyarrow over the tables)",
        Command::new(python())
            .arg(py.join("verify.py"))
            .arg("--lake")
            .arg(setup.lake())
            .args(["--prefix", &setup.prefix, "--expected"])
            .arg(readings.join("expected.jsonl")),
    );
    let lake: serde_json::Value = serde_json::from_str(&report).expect("verify.py prints JSON");
    let dlq: Vec<String> = rejected
        .iter()
        .map(|((stream, reason), (n, example))| format!("{stream}: {n} × {reason}, e.g. {example}"))
        .collect();
    let context = format!(
        "generated: {generated}sent:\n{sent}DLQ:\n  {}\nlake: {report}",
        dlq.join("\n  ")
    );
    assert!(
        rejected.is_empty(),
        "readings of foreign producers went to the DLQ\n{context}"
    );
    let problems = lake["problems"].as_object().expect("problems");
    assert!(problems.is_empty(), "the lake differs from what was sent\n{context}");
    assert_eq!(lake["found_equal"], lake["expected"], "{context}");
    let streams = lake["expected"].as_object().expect("streams");
    assert_eq!(streams.len(), 9, "every producer and framing sent: {context}");
    assert!(
        streams.values().all(|n| n.as_u64() == Some(16 * KINDS.len() as u64)),
        "{context}"
    );
    assert_committed_to_end(&setup.group, &setup.raw_topics);
}
