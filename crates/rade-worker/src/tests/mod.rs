//! The worker's decisions without a broker: flush before commit, a revoke during a flush, a
//! fatal lake error, and when the poll loop stops. The seams are the in-memory fakes of
//! `fakes.rs`; the lake is the real `Lake` over an in-memory store that logs its writes.

mod fakes;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use rade_lake::{Lake, LakeLocation};
use rade_schema::{Catalog, DecodeLimits, Decoder, Disposition};
use rade_telemetry::Metrics;
use rade_window::WindowConfig;

use self::fakes::{Event, FakeClock, FakeGroup, FakeProducer, FakeSource, LoggedStore, events};
use crate::claim_check::ClaimCheck;
use crate::dlq_sender::DlqSender;
use crate::flush::Roll;
use crate::pipeline::{Parts, Pipeline, lock};
use crate::seams::{Polled, Record, Source};
use crate::windows::spawn_windows;
use crate::worker::{StopWhen, Windowing, WorkerConfig, run_loop};
use crate::{Error, Summary};

const TOPIC: &str = "tpm.raw.noise";
const DLQ: &str = "tpm.dlq";
const EPOCH_MS: i64 = 1_780_000_000_000;

/// A pipeline over the fakes, with partition 0 of the noise topic assigned.
struct Rig {
    log: fakes::Log,
    group: FakeGroup,
    store: Arc<LoggedStore>,
    clock: Arc<FakeClock>,
    pipeline: Mutex<Pipeline>,
    _runtime: tokio::runtime::Runtime,
}

impl Rig {
    fn new() -> Rig {
        Rig::build(false)
    }

    /// With `windows`, the shipped windows and rules on their thread, as `rade run` has them.
    fn build(windows: bool) -> Rig {
        let log: fakes::Log = Arc::default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let store = LoggedStore::new(&log);
        let lake = Lake::new(store.clone(), Path::from("lake"), LakeLocation::Memory);
        let catalog = Arc::new(Catalog::embedded().expect("the shipped catalog"));
        let kind = catalog.kind("noise").expect("noise").clone();
        let decoders = HashMap::from([(
            TOPIC.to_owned(),
            Decoder::new(catalog.clone(), kind, DecodeLimits::default()),
        )]);
        let clock = FakeClock::new(EPOCH_MS);
        let claim = ClaimCheck::new(lake.clone(), runtime.handle().clone(), 1_000_000);
        let producer = FakeProducer::new(&log);
        let dlq_out = DlqSender::new(producer.clone(), DLQ.into(), claim);
        let metrics = Metrics::new();
        let (win, windowing) = if windows {
            let windowing = Windowing::load(&WindowConfig::default(), &catalog)
                .expect("the shipped windows and rules")
                .expect("enabled");
            let (handle, _thread) = spawn_windows(&windowing, producer, dlq_out.clone(), &catalog, &metrics)
                .expect("the window thread starts");
            (Some(handle), Some(windowing))
        } else {
            (None, None)
        };
        let pipeline = Pipeline::new(Parts {
            decoders,
            dlq_out,
            win,
            windowing,
            lake,
            group: "g".into(),
            metrics,
            runtime: runtime.handle().clone(),
            clock: clock.clone(),
            config: WorkerConfig::default(),
        });
        let rig = Rig {
            group: FakeGroup::new(&log),
            log,
            store,
            clock,
            pipeline: Mutex::new(pipeline),
            _runtime: runtime,
        };
        lock(&rig.pipeline)
            .assign(&rig.group, &[(TOPIC.to_owned(), 0)])
            .expect("assign");
        rig
    }

    /// `n` messages from offset 0: readings a second apart, a malformed one at each offset of
    /// `bad`.
    fn messages(&self, n: i64, bad: &[i64]) -> VecDeque<(i64, Vec<u8>)> {
        (0..n)
            .map(|offset| {
                let value = if bad.contains(&offset) {
                    b"{not json".to_vec()
                } else {
                    let at = EPOCH_MS - 60_000 + offset * 1000;
                    format!(
                        r#"{{"sensor_id":"n-1","observed_at":{at},"latitude":43.1,"longitude":5.9,"LAeq":55.0,"LAmax":null}}"#
                    )
                    .into_bytes()
                };
                (offset, value)
            })
            .collect()
    }

    /// Readings of sensor n-1 at these event times, from offset 0, all of this `laeq`.
    fn readings_at(&self, times: &[i64], laeq: f64) -> VecDeque<(i64, Vec<u8>)> {
        times
            .iter()
            .enumerate()
            .map(|(offset, at)| {
                let value = format!(
                    r#"{{"sensor_id":"n-1","observed_at":{at},"latitude":43.1,"longitude":5.9,"LAeq":{laeq:.1},"LAmax":null}}"#
                );
                (offset as i64, value.into_bytes())
            })
            .collect()
    }

    fn handle_all(&self, messages: VecDeque<(i64, Vec<u8>)>) {
        let mut p = lock(&self.pipeline);
        for (offset, value) in messages {
            p.handle(&Record {
                topic: TOPIC,
                partition: 0,
                offset,
                key: None,
                value: Some(&value),
            });
        }
    }

    fn set_end(&self, end: i64) {
        self.group.ends.lock().expect("ends").insert((TOPIC.to_owned(), 0), end);
    }

    fn run(&self, source: &dyn Source, stop: &AtomicBool) -> crate::Result<Summary> {
        run_loop(source, &self.pipeline, StopWhen::CaughtUp, stop)
    }
}

/// A source over the rig's messages that waits out its timeout on the fake clock when it has
/// nothing, and raises `stop` after `stop_after_idle` empty polls.
struct Polling<'a> {
    inner: FakeSource<'a>,
    clock: &'a FakeClock,
    idle_polls: Mutex<usize>,
    stop_after_idle: Option<(usize, &'a AtomicBool)>,
}

impl Source for Polling<'_> {
    fn poll(&self, timeout: Duration, handle: &mut dyn FnMut(&Record<'_>)) -> Polled {
        let polled = self.inner.poll(timeout, handle);
        if matches!(polled, Polled::Idle) {
            self.clock.advance(timeout);
            let mut idle = self.idle_polls.lock().expect("idle");
            *idle += 1;
            if let Some((n, stop)) = self.stop_after_idle
                && *idle >= n
            {
                stop.store(true, Ordering::SeqCst);
            }
        }
        polled
    }

    fn group(&self) -> &dyn crate::seams::Group {
        self.inner.group()
    }
}

fn source<'a>(
    rig: &'a Rig,
    messages: VecDeque<(i64, Vec<u8>)>,
    stop_after_idle: Option<(usize, &'a AtomicBool)>,
) -> Polling<'a> {
    Polling {
        inner: FakeSource {
            group: &rig.group,
            topic: TOPIC.into(),
            values: Mutex::new(messages),
        },
        clock: &rig.clock,
        idle_polls: Mutex::new(0),
        stop_after_idle,
    }
}

fn position_of(log: &[Event], wanted: impl Fn(&Event) -> bool) -> usize {
    log.iter().position(wanted).unwrap_or(usize::MAX)
}

#[test]
fn rejects_are_acknowledged_then_files_written_then_offsets_committed() {
    let rig = Rig::new();
    rig.set_end(20);
    let stop = AtomicBool::new(false);
    let summary = rig
        .run(&source(&rig, rig.messages(20, &[7]), None), &stop)
        .expect("the run succeeds");
    assert_eq!((summary.consumed, summary.valid, summary.rejected_total()), (20, 19, 1));
    assert_eq!(summary.committed.get(&(TOPIC.to_owned(), 0)), Some(&20));
    let log = events(&rig.log);
    let acked = position_of(&log, |e| matches!(e, Event::Acked { topic } if topic == DLQ));
    let raw = position_of(&log, |e| matches!(e, Event::Put { path } if path.ends_with(".parquet")));
    // The table's commit (version 0 created it) names the file with the position.
    let table = position_of(
        &log,
        |e| matches!(e, Event::Put { path } if path.ends_with("raw/noise/_delta_log/00000000000000000001.json")),
    );
    let commit = position_of(
        &log,
        |e| matches!(e, Event::Commit(c) if c.contains(&(TOPIC.to_owned(), 0, 20))),
    );
    assert!(
        acked < raw && raw < table && table < commit,
        "DLQ, then the file, then the table's commit, then Kafka's: {log:?}"
    );
    let mut files = futures::executor::block_on(rig.store.paths("lake/raw"));
    files.retain(|p| p.ends_with(".parquet"));
    assert_eq!(
        files,
        ["lake/raw/noise/date=2026-05-28/hour=20/tpm.raw.noise__p0__00000000000000000000-00000000000000000019.parquet"],
        "one file holding offsets 0 to 19"
    );
    let lake = rig.pipeline.lock().expect("pipeline").lake.clone();
    let held = rig._runtime.block_on(lake.raw_positions(
        "noise",
        "g",
        TOPIC,
        &[0],
    ))
    .expect("the table reads");
    assert_eq!(held[&0].0, Some(20), "the table holds the position with the file");
}

#[test]
fn a_revoke_during_a_flush_waits_for_it_and_commits_before_letting_go() {
    let rig = Rig::new();
    rig.handle_all(rig.messages(10, &[]));
    rig.store.close_gate();
    lock(&rig.pipeline).seal(Roll::All);
    std::thread::scope(|s| {
        s.spawn(|| {
            rig.store.wait_for_held_write();
            // The flush's file is being written: nothing of the partition may be committed.
            assert!(rig.group.commits().is_empty(), "{:?}", events(&rig.log));
            rig.store.open();
        });
        lock(&rig.pipeline)
            .revoke(&rig.group, &[(TOPIC.to_owned(), 0)])
            .expect("the revoke flushes and commits");
    });
    assert_eq!(rig.group.commits(), vec![(TOPIC.to_owned(), 0, 10)]);
    let log = events(&rig.log);
    let raw = position_of(&log, |e| matches!(e, Event::Put { path } if path.contains("/raw/")));
    let commit = position_of(&log, |e| matches!(e, Event::Commit(_)));
    assert!(raw < commit, "{log:?}");
    assert_eq!(lock(&rig.pipeline).assigned(), 0, "the partition is let go");
}

#[test]
fn a_fatal_lake_error_stops_the_worker_with_nothing_committed() {
    let rig = Rig::new();
    rig.set_end(10);
    rig.store.refuse.store(true, Ordering::SeqCst);
    let stop = AtomicBool::new(false);
    let err = rig
        .run(&source(&rig, rig.messages(10, &[3]), None), &stop)
        .expect_err("a lake that refuses writes stops the worker");
    assert!(matches!(err, Error::Lake(_)), "{err}");
    assert_eq!(err.disposition(), Disposition::Fatal);
    assert!(rig.group.commits().is_empty(), "{:?}", events(&rig.log));
    // Stopping afterwards (leaving the group) commits nothing either.
    let again = lock(&rig.pipeline).drain(&rig.group);
    assert!(matches!(again, Err(Error::Stopped)));
    assert!(rig.group.commits().is_empty(), "{:?}", events(&rig.log));
}

#[test]
fn the_loop_stops_when_caught_up_and_not_before() {
    // The partition's end is beyond what can be read: not caught up; the loop goes on until
    // the stop flag (raised after 50 empty polls), then drains and commits what it read.
    let rig = Rig::new();
    rig.set_end(30);
    let stop = AtomicBool::new(false);
    let polling = source(&rig, rig.messages(20, &[]), Some((50, &stop)));
    let summary = rig.run(&polling, &stop).expect("stopped by the flag");
    assert_eq!(
        *polling.idle_polls.lock().expect("idle"),
        50,
        "not stopped as caught up"
    );
    assert_eq!(summary.committed.get(&(TOPIC.to_owned(), 0)), Some(&20));
    // Read to its end: the loop stops by itself at the first empty polls.
    let rig = Rig::new();
    rig.set_end(20);
    let stop = AtomicBool::new(false);
    let polling = source(&rig, rig.messages(20, &[]), Some((50, &stop)));
    let summary = rig.run(&polling, &stop).expect("caught up");
    assert!(!stop.load(Ordering::SeqCst), "stopped as caught up, before the flag");
    assert_eq!(summary.consumed, 20);
    assert_eq!(summary.committed.get(&(TOPIC.to_owned(), 0)), Some(&20));
}

#[test]
fn a_commit_refused_for_now_leaves_the_flush_durable_and_a_fatal_one_stops_the_worker() {
    use rdkafka::types::RDKafkaErrorCode;
    // A rebalance in progress: the files are durable, the offsets wait, the worker goes on.
    let rig = Rig::new();
    rig.set_end(10);
    *rig.group.refuse_commits.lock().expect("refuse") = Some(RDKafkaErrorCode::RebalanceInProgress);
    let stop = AtomicBool::new(false);
    let summary = rig
        .run(&source(&rig, rig.messages(10, &[]), None), &stop)
        .expect("a transient commit failure does not stop the worker");
    assert_eq!(summary.consumed, 10);
    assert!(summary.committed.is_empty());
    let files = futures::executor::block_on(rig.store.paths("lake/raw"));
    assert_eq!(files.iter().filter(|p| p.ends_with(".parquet")).count(), 1, "{files:?}");
    // Not authorized: retrying cannot help; the worker stops.
    let rig = Rig::new();
    rig.set_end(10);
    *rig.group.refuse_commits.lock().expect("refuse") = Some(RDKafkaErrorCode::GroupAuthorizationFailed);
    let err = rig
        .run(&source(&rig, rig.messages(10, &[]), None), &stop)
        .expect_err("a fatal commit failure stops the worker");
    assert_eq!(err.disposition(), Disposition::Fatal, "{err}");
}

#[test]
fn a_late_reading_is_reported_by_the_windows_and_acknowledged_before_the_flush_is_durable() {
    let rig = Rig::build(true);
    const MIN: i64 = 60_000;
    // Readings every 10 s for 20 minutes from 20:01:40, then one from the first minute, whose
    // 15-minute window (noise keeps 15 minutes and the hour) has closed by then: the watermark
    // is the newest reading less one minute of lateness.
    let start = EPOCH_MS - 25 * MIN;
    let mut times: Vec<i64> = (0..120).map(|i| start + i * 10_000).collect();
    times.push(start + 5_000);
    rig.set_end(times.len() as i64);
    let stop = AtomicBool::new(false);
    let summary = rig
        .run(&source(&rig, rig.readings_at(&times, 55.0), None), &stop)
        .expect("the run succeeds");
    assert_eq!((summary.consumed, summary.valid, summary.late), (121, 121, 1));
    assert!(summary.windows_closed > 0, "windows closed at the end of input");
    assert_eq!(summary.committed.get(&(TOPIC.to_owned(), 0)), Some(&121));
    let log = events(&rig.log);
    let dlq_sends = log
        .iter()
        .filter(|e| matches!(e, Event::Sent { topic } if topic == DLQ))
        .count();
    assert_eq!(dlq_sends, 1, "the late reading, once: {log:?}");
    let acked = position_of(&log, |e| matches!(e, Event::Acked { topic } if topic == DLQ));
    let raw = position_of(&log, |e| matches!(e, Event::Put { path } if path.contains("/raw/")));
    let aggregates = position_of(
        &log,
        |e| matches!(e, Event::Put { path } if path.contains("/aggregates/")),
    );
    let state = position_of(&log, |e| matches!(e, Event::Put { path } if path.contains("/_state/")));
    let commit = position_of(
        &log,
        |e| matches!(e, Event::Commit(c) if c.contains(&(TOPIC.to_owned(), 0, 121))),
    );
    assert!(
        acked < raw && raw < aggregates && aggregates < state && state < commit,
        "the late reject, the raw file, the closed windows, the window state, then the commit: {log:?}"
    );
}

/// A live source: each message takes `gap` of the fake clock, and before the last one it
/// waits (up to 10 s of real time) for an alert to have been published.
struct Live<'a> {
    inner: FakeSource<'a>,
    clock: &'a FakeClock,
    log: &'a fakes::Log,
    gap: Duration,
    alert_before_last: Mutex<Option<bool>>,
}

impl Live<'_> {
    fn alert_sent(&self) -> bool {
        events(self.log)
            .iter()
            .any(|e| matches!(e, Event::Sent { topic } if topic == &WindowConfig::default().alerts_topic))
    }
}

impl Source for Live<'_> {
    fn poll(&self, timeout: Duration, handle: &mut dyn FnMut(&Record<'_>)) -> Polled {
        let left = self.inner.values.lock().expect("values").len();
        if left == 1 {
            let mut seen = self.alert_before_last.lock().expect("seen");
            if seen.is_none() {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !self.alert_sent() && std::time::Instant::now() < deadline {
                    std::thread::park_timeout(Duration::from_millis(10));
                }
                *seen = Some(self.alert_sent());
            }
        }
        let polled = self.inner.poll(timeout, handle);
        self.clock.advance(if matches!(polled, Polled::Idle) {
            timeout
        } else {
            self.gap
        });
        polled
    }

    fn group(&self) -> &dyn crate::seams::Group {
        self.inner.group()
    }
}

#[test]
fn windows_close_on_time_while_messages_trickle_in() {
    let rig = Rig::build(true);
    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    // Loud readings every 30 s from 21:00 (UTC) the day before, for 70 minutes: the night
    // hour 21:00-22:00 raises night_noise once the watermark passes 22:00, 62 readings before
    // the last. Each message takes 50 ms, far fewer than the 1,024 messages of a size check
    // arrive: only the timer can close the hour before the input ends.
    let start = EPOCH_MS - EPOCH_MS.rem_euclid(24 * HOUR) - 3 * HOUR;
    let times: Vec<i64> = (0..140).map(|i| start + i * 30_000).collect();
    rig.set_end(times.len() as i64);
    let source = Live {
        inner: FakeSource {
            group: &rig.group,
            topic: TOPIC.into(),
            values: Mutex::new(rig.readings_at(&times, 70.0)),
        },
        clock: &rig.clock,
        log: &rig.log,
        gap: Duration::from_millis(50),
        alert_before_last: Mutex::new(None),
    };
    let stop = AtomicBool::new(false);
    let summary = rig.run(&source, &stop).expect("the run succeeds");
    assert_eq!((summary.consumed, summary.valid, summary.late), (140, 140, 0));
    assert_eq!(
        *source.alert_before_last.lock().expect("seen"),
        Some(true),
        "night_noise published while readings were still arriving: {:?}",
        events(&rig.log)
    );
}

#[test]
fn readings_of_one_sensor_on_two_partitions_are_counted_for_the_operator() {
    let rig = Rig::build(true);
    lock(&rig.pipeline)
        .assign(&rig.group, &[(TOPIC.to_owned(), 1)])
        .expect("assign");
    // Sensor n-1 on partitions 0 and 1, as an unkeyed producer sends it: four readings each.
    let times: Vec<i64> = (0..4).map(|i| EPOCH_MS - 60_000 + i * 1000).collect();
    {
        let mut p = lock(&rig.pipeline);
        for (offset, value) in rig.readings_at(&times, 55.0) {
            p.handle(&Record {
                topic: TOPIC,
                partition: 1,
                offset,
                key: None,
                value: Some(&value),
            });
        }
    }
    rig.set_end(4);
    rig.group.ends.lock().expect("ends").insert((TOPIC.to_owned(), 1), 4);
    let stop = AtomicBool::new(false);
    let summary = rig
        .run(&source(&rig, rig.readings_at(&times, 55.0), None), &stop)
        .expect("the run succeeds");
    assert_eq!(summary.valid, 8);
    // Whichever partition the windows saw first, the other's four readings are split.
    let text = lock(&rig.pipeline).metrics.render();
    assert!(
        text.contains("rade_sensor_split_readings_total{kind=\"noise\"} 4"),
        "{}",
        text.lines()
            .filter(|l| l.contains("split"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
