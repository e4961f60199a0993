//! The DLQ on the real broker: no message blocks its partition, whatever its size (the claim
//! check keeps what the DLQ topic cannot take), and a worker killed after the DLQ acknowledged
//! its rejects and before committing them sends none of them twice.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rade_integration_tests::*;
use rade_schema::{RejectReason, WireFormat};
use rade_sim::{Expect, FormatChoice};

const MIB: usize = 1 << 20;

/// A noise reading as JSON, padded with a field of random letters to exactly `size` bytes.
fn padded_json(base: &[u8], size: usize) -> Vec<u8> {
    use rand::Rng;
    let mut v: serde_json::Value = serde_json::from_slice(base).expect("the simulator's JSON");
    v["firmware_dump"] = serde_json::json!("");
    let empty = serde_json::to_vec(&v).expect("JSON").len();
    let mut rng = rand::rng();
    let dump: String = (0..size - empty)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect();
    v["firmware_dump"] = serde_json::json!(dump);
    let out = serde_json::to_vec(&v).expect("JSON");
    assert_eq!(out.len(), size);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_of_1_5_and_20_mb_end_in_the_dlq_and_the_partition_goes_on() {
    let setup = Setup::new(&["noise"], 1).await;
    let raw = setup.raw_topics[0].clone();
    // The raw topic takes messages of up to 32 MiB; the DLQ keeps the broker's default (1 MB).
    set_max_message_bytes(&raw, 32 * MIB).await;
    let mut sim = setup.simulator(7);
    let now = now_ms();
    let json = FormatChoice::One(WireFormat::Json);
    let mut records = Vec::new();
    let mut large = BTreeMap::new();
    for (i, size) in [MIB, 512 << 10, 5 * MIB, 20 * MIB].into_iter().enumerate() {
        for j in 0..3 {
            let r = sim.valid(now - 60_000 + (i * 10 + j) as i64, json);
            records.push((r.key.clone(), r.value.clone().expect("a value")));
        }
        let base = sim.valid(now - 30_000, json);
        large.insert(records.len(), size);
        records.push((
            base.key.clone(),
            padded_json(base.value.as_deref().expect("a value"), size),
        ));
    }
    for j in 0..3 {
        let r = sim.valid(now - 1000 + j, json);
        records.push((r.key.clone(), r.value.clone().expect("a value")));
    }
    let offsets = produce_in_order(&raw, &records, 32 * MIB).await;

    let config = setup.config("");
    let log = setup.log("run.log");
    let text = run_until_caught_up(&config, &[], &log);

    // Every valid reading is in the lake, and only those.
    let lake: BTreeSet<i64> = read_lake(&setup.lake()).iter().map(|r| r.offset).collect();
    let valid: BTreeSet<i64> = (0..records.len())
        .filter(|i| !large.contains_key(i))
        .map(|i| offsets[i])
        .collect();
    assert_eq!(lake, valid, "{text}");

    // Each large message is one `too_large` DLQ record; what does not fit the DLQ is in the lake.
    let dlq = read_topic(&setup.dlq);
    assert_eq!(
        dlq.len(),
        large.len(),
        "{:?}",
        dlq.iter().map(|m| &m.headers).collect::<Vec<_>>()
    );
    for (&i, &size) in &large {
        let offset = offsets[i];
        let m = dlq
            .iter()
            .find(|m| m.headers.get("rade.source.offset") == Some(&offset.to_string()))
            .unwrap_or_else(|| panic!("no DLQ record for offset {offset}"));
        let h = &m.headers;
        assert_eq!(h["rade.reason"], "too_large");
        assert_eq!(h["rade.dlq.id"], format!("{raw}/0/{offset}"));
        assert_eq!(m.key.as_deref(), Some(records[i].0.as_slice()));
        let original = &records[i].1;
        if size < MIB {
            // It fits the DLQ topic: the value is there, unchanged.
            assert!(!h.contains_key("rade.dlq.object"), "{h:?}");
            assert_eq!(m.value.as_deref(), Some(original.as_slice()));
            continue;
        }
        assert_eq!(
            m.value.as_deref().unwrap_or_default(),
            b"",
            "a claim check has no value"
        );
        let url = &h["rade.dlq.object"];
        let path = url.strip_prefix("file://").expect("a local lake gives file:// URLs");
        assert!(
            path.starts_with(&format!(
                "{}/_dlq/{raw}/p0/o{offset}.bin",
                setup.lake().canonicalize().expect("lake").display()
            )),
            "{path}"
        );
        let stored = std::fs::read(path).expect("the claim-checked object");
        assert!(stored == *original, "{size} bytes: the object differs from the message");
        assert_eq!(h["rade.dlq.object.size"], size.to_string());
        assert_eq!(h["rade.dlq.object.sha256"], sha256sum(std::path::Path::new(path)));
    }
    // The group committed past every one of them.
    assert_committed_to_end(&setup.group, &setup.raw_topics);
}

/// Produces `batches` × `n` readings, one in five invalid (every reason but `too_large`), paced so
/// that the worker flushes several times while they arrive.
fn paced_with_rejects(setup: &Setup, batches: usize, n: usize) -> tokio::task::JoinHandle<Vec<Produced>> {
    let mut sim = setup.simulator(91);
    let prefix = setup.prefix.clone();
    let start = now_ms() - 7_200_000;
    let mut all = Vec::new();
    for b in 0..batches {
        let batch: Vec<_> = (0..n)
            .map(|i| {
                let t = start + ((b * n + i) as i64) * 100;
                if i % 5 == 0 {
                    sim.invalid(t, rade_sim::SIMULATED_REASONS[(b + i) % 6])
                } else {
                    sim.valid(t, FormatChoice::Mixed)
                }
            })
            .collect();
        all.push(batch);
    }
    tokio::spawn(async move {
        let mut out = Vec::new();
        for batch in all {
            out.extend(produce(&prefix, batch).await);
            // Pacing the load generator, not waiting for a condition.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        out
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_after_the_dlq_acknowledged_sends_no_reject_twice() {
    let setup = Setup::new(&["noise", "water_level"], 3).await;
    let config = setup.config("[windows]\nallowed_lateness = \"4h\"\n");
    let cfg = config.to_str().expect("utf-8");
    let producer = paced_with_rejects(&setup, 60, 250);
    // The first crash comes in the very first flush that sent rejects, before any commit; the
    // second in the restarted worker's second such flush, after a commit that recorded where
    // the DLQ stood. The load goes on meanwhile.
    for point in ["after-dlq:1", "after-dlq:2"] {
        let log = setup.log(&format!("{point}.log"));
        let mut child = spawn_rade_env(&["run", "--config", cfg], &[("RADE_CRASH_AT", point)], &log);
        let status = wait_exit(&mut child, Duration::from_secs(120), &log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status.signal(), Some(9), "{point}: not killed: {status:?}\n{text}");
        assert!(text.contains("RADE_CRASH_AT"), "{point}: {text}");
        // The DLQ holds rejects that no commit covers: the next worker finds them there.
        let dlq = read_topic(&setup.dlq).len();
        let committed: i64 = setup
            .raw_topics
            .iter()
            .flat_map(|t| committed_and_ends(&setup.group, t))
            .filter_map(|(_, c, _)| c)
            .sum();
        assert!(dlq > 0, "{point}: the DLQ is empty");
        eprintln!("{point}: {dlq} DLQ records, {committed} offsets committed in all");
    }
    let produced = producer.await.expect("producer task");
    let last = run_until_caught_up(&config, &[], &setup.log("last.log"));
    assert!(last.contains("rejects already in the DLQ are not sent again"), "{last}");

    let dlq = read_topic(&setup.dlq);
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for m in &dlq {
        *ids.entry(
            m.headers
                .get("rade.dlq.id")
                .expect("every DLQ record has rade.dlq.id")
                .clone(),
        )
        .or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} rejects in the DLQ more than once: {twice:?}",
        twice.len()
    );
    let expected: BTreeSet<String> = produced
        .iter()
        .filter(|p| matches!(p.record.expect, Expect::Reject(r) if r != RejectReason::Late))
        .map(|p| format!("{}/{}/{}", p.topic, p.partition, p.offset))
        .collect();
    let got: BTreeSet<String> = ids.keys().cloned().collect();
    assert_eq!(got, expected, "the DLQ by rade.dlq.id");
    let checked = check_lake_and_dlq(&catalog(), &produced, &read_lake(&setup.lake()), &dlq);
    assert_eq!(checked.dlq_duplicates, 0);
    assert_eq!(checked.valid + checked.rejected, produced.len());
    assert_committed_to_end(&setup.group, &setup.raw_topics);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dlq_that_refuses_a_reject_stops_the_worker_naming_it() {
    let setup = Setup::new(&["noise"], 1).await;
    let mut sim = setup.simulator(5);
    let now = now_ms();
    let mut records: Vec<_> = (0..20)
        .map(|i| sim.valid(now - 1000 + i, FormatChoice::Mixed))
        .collect();
    records.insert(10, sim.invalid(now, RejectReason::Malformed));
    let produced = produce(&setup.prefix, records).await;
    let reject_at = produced[10].offset;
    // The broker refuses every record sent to a topic of that name ("Invalid topic").
    let dlq = format!("{} refused!", setup.dlq);
    let config = write_config(
        setup.dir.path(),
        &setup.prefix,
        &setup.kinds,
        &setup.group,
        &dlq,
        &setup.lake(),
        "[windows]\nenabled = false\n[kafka.properties]\n\"message.timeout.ms\" = \"3000\"\n",
    );
    let log = setup.log("run.log");
    let mut child = spawn_rade(
        &["run", "--config", config.to_str().expect("utf-8"), "--until-caught-up"],
        &log,
    );
    let status = wait_exit(&mut child, Duration::from_secs(120), &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "the DLQ topic {dlq} did not acknowledge the reject of {}/0@{reject_at}",
            setup.raw_topics[0]
        )),
        "{text}"
    );
    assert!(text.contains("sending it again"), "not retried: {text}");
    // Nothing past the reject is committed: the next run sends it again.
    for (_, committed, _) in committed_and_ends(&setup.group, &setup.raw_topics[0]) {
        assert!(
            committed.unwrap_or(0) <= reject_at,
            "committed {committed:?} past {reject_at}"
        );
    }
}
