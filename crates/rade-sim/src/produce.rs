use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use crate::sim::SimRecord;

/// Counts of a production run.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProduceStats {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

/// A progress report, about once a second on long runs.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub sent: u64,
    pub total: Option<u64>,
    pub elapsed: Duration,
}

#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone)]
struct CountingContext(Arc<Counting>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let c = if result.is_ok() {
            &self.0.delivered
        } else {
            &self.0.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// How fast records are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the broker takes them.
    Fast,
    /// At most this many per second.
    Rate(f64),
    /// Each when the wall clock reaches its event time (live traffic), at most `max_rate` per second.
    Live { max_rate: Option<f64> },
}

/// Sends `records` to `<topic_prefix><kind>`, keyed by sensor id, at most `rate` per second
/// when given; waits until every message is acknowledged or failed.
pub fn produce(
    config: &ClientConfig,
    topic_prefix: &str,
    records: impl Iterator<Item = SimRecord>,
    total: Option<u64>,
    rate: Option<f64>,
    progress: impl FnMut(Progress),
) -> Result<ProduceStats, KafkaError> {
    let pace = rate.map_or(Pace::Fast, Pace::Rate);
    produce_paced(config, topic_prefix, records, total, pace, progress)
}

/// Sends `records` to `<topic_prefix><kind>` at `pace`, keyed by sensor id with an idempotent
/// producer: the readings of a device reach its partition in the order they were made, once
/// each. Waits until every message is acknowledged or failed.
pub fn produce_paced(
    config: &ClientConfig,
    topic_prefix: &str,
    records: impl Iterator<Item = SimRecord>,
    total: Option<u64>,
    pace: Pace,
    mut progress: impl FnMut(Progress),
) -> Result<ProduceStats, KafkaError> {
    let counts = Arc::new(Counting::default());
    let mut config = config.clone();
    // Without idempotence a retried batch lands after the next one, and every engine then
    // drops a device's earlier readings as late.
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000");
    let producer: BaseProducer<CountingContext> = config.create_with_context(CountingContext(counts.clone()))?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut sent = 0u64;
    let mut topic = String::new();
    for r in records {
        let rate = match pace {
            Pace::Fast => None,
            Pace::Rate(r) => Some(r),
            Pace::Live { max_rate } => {
                // Wait for the reading's time, polling for delivery reports meanwhile.
                loop {
                    let ahead = r.observed_at_ms - chrono::Utc::now().timestamp_millis();
                    if ahead <= 0 {
                        break;
                    }
                    producer.poll(Duration::from_millis(ahead.min(1000) as u64));
                }
                max_rate
            }
        };
        if let Some(rate) = rate {
            // Pace against the start so that the mean rate holds whatever the bursts.
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                producer.poll(wait);
            }
        }
        topic.clear();
        topic.push_str(topic_prefix);
        topic.push_str(&r.kind);
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic).key(&r.key);
        if let Some(v) = &r.value {
            rec = rec.payload(v);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    rec = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
        sent += 1;
        if sent.is_multiple_of(1024) || matches!(pace, Pace::Live { .. }) {
            producer.poll(Duration::ZERO);
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                progress(Progress {
                    sent,
                    total,
                    elapsed: started.elapsed(),
                });
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    progress(Progress {
        sent,
        total,
        elapsed: started.elapsed(),
    });
    Ok(ProduceStats {
        sent,
        delivered: counts.delivered.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}
