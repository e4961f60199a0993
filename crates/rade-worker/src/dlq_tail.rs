//! Which rejects the DLQ already holds, so that a restarted worker does not send them again.
//!
//! A flush commits, in the metadata of each partition's offset, the offset below which the
//! partition's rejects are acknowledged by the DLQ (`rade.dlq.acked`) and, for each DLQ
//! partition, a position at or after which every reject of the partition sent after that
//! commit lies (`rade.dlq.tail`). A worker killed after the DLQ acknowledged rejects and
//! before the next commit leaves them beyond that position: the worker assigned the partition
//! next reads the DLQ from there to its end, and skips the rejects it finds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::seams::Position;
use crate::{Error, Result};
use rade_kafka::headers;
use rade_kafka::{KafkaConfig, client_config};

const ACKED: &str = "rade.dlq.acked=";
const TAIL: &str = "rade.dlq.tail=";

/// The broker refuses commit metadata longer than `offset.metadata.max.bytes` (4096 by default).
const MAX_METADATA: usize = 4000;

/// The rejects of one source partition found in the DLQ: source offset → (DLQ partition, offset).
pub(crate) type Held = BTreeMap<i64, (i32, i64)>;

/// The DLQ part of a partition's commit metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CommitMeta {
    /// Every reject of the partition before this offset is in the DLQ.
    pub(crate) acked: Option<i64>,
    /// Per DLQ partition, where the rejects sent after the commit start; `None` when the
    /// commit did not record it (an older rade, or a partition never committed).
    pub(crate) tail: Option<BTreeMap<i32, i64>>,
}

impl CommitMeta {
    /// Reads `rade.dlq.acked=<offset> rade.dlq.tail=<dlq partition>:<offset>,...`; what it does
    /// not understand is left out.
    pub(crate) fn parse(text: &str) -> Self {
        let mut meta = CommitMeta::default();
        for word in text.split_whitespace() {
            if let Some(v) = word.strip_prefix(ACKED) {
                meta.acked = v.parse().ok();
            } else if let Some(v) = word.strip_prefix(TAIL) {
                meta.tail = v
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (d, o) = p.split_once(':')?;
                        Some((d.parse().ok()?, o.parse().ok()?))
                    })
                    .collect();
            }
        }
        meta
    }

    /// The metadata text; without the tail when it would not fit the broker's limit.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if let Some(a) = self.acked {
            out.push_str(&format!("{ACKED}{a}"));
        }
        if let Some(tail) = &self.tail {
            let parts: Vec<String> = tail.iter().map(|(d, o)| format!("{d}:{o}")).collect();
            let text = format!(" {TAIL}{}", parts.join(","));
            if out.len() + text.len() <= MAX_METADATA {
                out.push_str(&text);
            }
        }
        out
    }
}

/// The tail to commit for a partition: the worker's own floor, lowered to the rejects found in
/// the DLQ at assignment that are still ahead of the commit.
pub(crate) fn tail_for(floor: &BTreeMap<i32, i64>, held: &Held) -> BTreeMap<i32, i64> {
    let mut tail = floor.clone();
    for &(d, o) in held.values() {
        let t = tail.entry(d).or_insert(o);
        *t = (*t).min(o);
    }
    tail
}

/// What the commits of newly assigned partitions say about where their rejects are.
#[derive(Debug, Default)]
pub(crate) struct TailPlan {
    /// Per DLQ partition, where to start reading.
    pub(crate) starts: BTreeMap<i32, i64>,
    /// The partitions whose commit says where to look.
    pub(crate) wanted: HashSet<(String, i32)>,
    /// The partitions whose commit does not: (topic, partition, committed offset, acked).
    unanchored: Vec<(String, i32, Option<i64>, Option<i64>)>,
}

impl TailPlan {
    /// `dlq_partitions`: the DLQ's partitions now; one a commit does not name is newer than
    /// the commit and is read from its beginning.
    pub(crate) fn new(committed: &[Position], dlq_partitions: &BTreeMap<i32, i64>) -> Self {
        let mut plan = TailPlan::default();
        for elem in committed {
            let meta = CommitMeta::parse(&elem.metadata);
            let Some(tail) = &meta.tail else {
                plan.unanchored
                    .push((elem.topic.clone(), elem.partition, elem.offset, meta.acked));
                continue;
            };
            plan.wanted.insert((elem.topic.clone(), elem.partition));
            for &d in dlq_partitions.keys() {
                let from = tail.get(&d).copied().unwrap_or(0);
                plan.starts.entry(d).and_modify(|s| *s = (*s).min(from)).or_insert(from);
            }
        }
        plan
    }

    /// The commit that records `floor` as the DLQ tail of the partitions whose commit does not
    /// say it, at their committed offset (or `beginning` of the partition when none).
    pub(crate) fn anchors(
        &self,
        floor: &BTreeMap<i32, i64>,
        beginning: impl Fn(&str, i32) -> Result<i64>,
    ) -> Result<Vec<Position>> {
        let mut anchors = Vec::new();
        for (topic, partition, offset, acked) in &self.unanchored {
            let offset = match offset {
                Some(o) => *o,
                None => beginning(topic, *partition)?,
            };
            let meta = CommitMeta {
                acked: *acked,
                tail: Some(floor.clone()),
            };
            anchors.push(Position {
                topic: topic.clone(),
                partition: *partition,
                offset: Some(offset),
                metadata: meta.render(),
            });
        }
        Ok(anchors)
    }
}

/// The end of every partition of the DLQ topic now.
pub(crate) fn dlq_ends<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    dlq: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>> {
    let metadata = client
        .fetch_metadata(Some(dlq), timeout)
        .map_err(|e| Error::kafka("reading the DLQ topic's metadata", e))?;
    let mut ends = BTreeMap::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (_, high) = client
                .fetch_watermarks(dlq, p.id(), timeout)
                .map_err(|e| Error::kafka("reading the end of a DLQ partition", e))?;
            ends.insert(p.id(), high);
        }
    }
    Ok(ends)
}

/// Reads each DLQ partition from `starts` to its end now and returns the rejects of the
/// `wanted` source partitions found there. A DLQ partition missing from `starts` is read from
/// its beginning.
pub(crate) fn read_tail(
    kafka: &KafkaConfig,
    starts: &BTreeMap<i32, i64>,
    wanted: &HashSet<(String, i32)>,
    timeout: Duration,
) -> Result<HashMap<(String, i32), Held>> {
    let mut found: HashMap<(String, i32), Held> = HashMap::new();
    let consumer: BaseConsumer = kafka.create(
        client_config(kafka)
            .set("group.id", format!("{}-dlq-reader", kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false"),
        "creating the DLQ reader",
    )?;
    let ends = dlq_ends(consumer.client(), &kafka.dlq_topic, timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for (&d, &end) in &ends {
        let start = starts.get(&d).copied().unwrap_or(0);
        if start < end {
            tpl.add_partition_offset(&kafka.dlq_topic, d, Offset::Offset(start))
                .map_err(|e| Error::kafka("assigning the DLQ reader", e))?;
            remaining.insert(d, end);
        }
    }
    if remaining.is_empty() {
        return Ok(found);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka("assigning the DLQ reader", e))?;
    let deadline = Instant::now() + timeout;
    let mut read = 0u64;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(rade_kafka::Error::DlqTail {
                dlq: kafka.dlq_topic.clone(),
                message: format!("not read to its end within {} s", timeout.as_secs()),
            }
            .into());
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.map_err(|e| Error::kafka("reading the DLQ", e))?;
        read += 1;
        if let Some((topic, partition, offset)) = source_of(&m)
            && wanted.contains(&(topic.clone(), partition))
        {
            found
                .entry((topic, partition))
                .or_default()
                .insert(offset, (m.partition(), m.offset()));
        }
        if remaining.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
            remaining.remove(&m.partition());
        }
    }
    tracing::info!(dlq = %kafka.dlq_topic, read, found = found.values().map(BTreeMap::len).sum::<usize>(),
        "DLQ read from the positions of the last commits");
    Ok(found)
}

/// The source position a DLQ record names in its headers.
fn source_of<M: Message>(m: &M) -> Option<(String, i32, i64)> {
    let h = m.headers()?;
    let get = |name: &str| {
        h.iter()
            .find(|x| x.key == name)
            .and_then(|x| std::str::from_utf8(x.value?).ok())
    };
    Some((
        get(headers::SOURCE_TOPIC)?.to_owned(),
        get(headers::SOURCE_PARTITION)?.parse().ok()?,
        get(headers::SOURCE_OFFSET)?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_reads_the_older_form() {
        let meta = CommitMeta {
            acked: Some(42),
            tail: Some(BTreeMap::from([(0, 7), (3, 1200)])),
        };
        assert_eq!(meta.render(), "rade.dlq.acked=42 rade.dlq.tail=0:7,3:1200");
        assert_eq!(CommitMeta::parse(&meta.render()), meta);
        // What rade wrote before the tail existed.
        assert_eq!(
            CommitMeta::parse("rade.dlq.acked=9"),
            CommitMeta {
                acked: Some(9),
                tail: None
            }
        );
        assert_eq!(CommitMeta::parse(""), CommitMeta::default());
    }

    #[test]
    fn a_tail_too_long_for_the_broker_is_left_out() {
        let meta = CommitMeta {
            acked: Some(1),
            tail: Some((0..1000).map(|d| (d, i64::MAX)).collect()),
        };
        assert_eq!(meta.render(), "rade.dlq.acked=1");
    }

    #[test]
    fn a_plan_reads_from_the_lowest_tail_and_anchors_the_rest() {
        let meta = |m: CommitMeta| m.render();
        let position = |partition, offset, metadata| Position {
            topic: "t".into(),
            partition,
            offset,
            metadata,
        };
        let committed = vec![
            position(
                0,
                Some(10),
                meta(CommitMeta {
                    acked: Some(12),
                    tail: Some(BTreeMap::from([(0, 5), (1, 9)])),
                }),
            ),
            position(
                1,
                Some(20),
                meta(CommitMeta {
                    acked: Some(25),
                    tail: None,
                }),
            ),
            position(2, None, String::new()),
        ];
        let dlq = BTreeMap::from([(0, 50), (1, 60), (2, 70)]);
        let plan = TailPlan::new(&committed, &dlq);
        assert_eq!(plan.starts, BTreeMap::from([(0, 5), (1, 9), (2, 0)]));
        assert_eq!(plan.wanted, HashSet::from([("t".to_owned(), 0)]));
        let anchors = plan.anchors(&dlq, |_, _| Ok(3)).expect("anchors");
        let got: Vec<_> = anchors
            .iter()
            .map(|e| (e.partition, e.offset, CommitMeta::parse(&e.metadata)))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    Some(20),
                    CommitMeta {
                        acked: Some(25),
                        tail: Some(dlq.clone())
                    }
                ),
                (
                    2,
                    Some(3),
                    CommitMeta {
                        acked: None,
                        tail: Some(dlq.clone())
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_tail_goes_back_to_rejects_found_ahead_of_the_commit() {
        let floor = BTreeMap::from([(0, 100), (1, 50)]);
        let held = Held::from([(10, (0, 80)), (11, (1, 60)), (12, (2, 5))]);
        assert_eq!(tail_for(&floor, &held), BTreeMap::from([(0, 80), (1, 50), (2, 5)]));
    }
}
