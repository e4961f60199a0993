//! The state the poll loop and the rebalance callbacks share, behind one lock: the assigned
//! partitions, the flushes in flight and the decisions' counters. Its behaviour is split by
//! responsibility: `ingest.rs` (one message), `flush.rs` (sealing and the durability chain),
//! `commit.rs` (offsets once durable), `rebalance.rs` (assignment and revocation).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rade_lake::Lake;
use rade_schema::{Decoder, RejectReason};
use rade_telemetry::Metrics;
use tokio::runtime::Handle;

use crate::Error;
use crate::dlq_sender::{DlqSender, Pending};
use crate::flush::InFlight;
use crate::partition::PartitionState;
use crate::seams::Clock;
use crate::windows::WinHandle;
use crate::worker::{Summary, Windowing, WorkerConfig};

/// Everything the poll loop and the rebalance callbacks share.
pub(crate) struct Pipeline {
    pub(crate) partitions: HashMap<String, HashMap<i32, PartitionState>>,
    pub(crate) decoders: HashMap<String, Decoder>,
    pub(crate) dlq_out: DlqSender,
    /// Per DLQ partition, an offset at or after which every reject this worker sends from now
    /// on lands: the end of the DLQ when the worker started, moved by each flush's
    /// acknowledgements. Commits record it, so that the next owner of a partition knows from
    /// where to look for rejects sent after the commit.
    pub(crate) dlq_floor: BTreeMap<i32, i64>,
    pub(crate) pending_dlq: Vec<Pending>,
    /// The window thread, when windows are on.
    pub(crate) win: Option<WinHandle>,
    /// Resolves when every flush sealed so far has its rejects acknowledged.
    pub(crate) dlq_chain: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Resolves when every flush sealed so far is wholly durable (files and window state).
    pub(crate) durable_chain: Option<tokio::sync::oneshot::Receiver<()>>,
    pub(crate) windowing: Option<Windowing>,
    /// Set by a fatal error: nothing is committed any more, not even by the revoke that
    /// leaving the group triggers; what is not committed is replayed by the next owner.
    pub(crate) failed: bool,
    pub(crate) in_flight: VecDeque<InFlight>,
    pub(crate) lake: Lake,
    /// The consumer group (the app ids of the tables' positions).
    pub(crate) group: Arc<str>,
    pub(crate) metrics: Metrics,
    pub(crate) runtime: Handle,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: WorkerConfig,
    pub(crate) first_pending_at: Option<Instant>,
    pub(crate) last_seal: Instant,
    /// Parquet bytes per Arrow byte of the raw files written lately, to roll on size.
    pub(crate) parquet_ratio: f64,
    pub(crate) summary: Summary,
    pub(crate) tally: Tally,
    pub(crate) fatal: Option<Error>,
}

/// Parquet bytes per Arrow byte assumed before the first file is written (zstd on sensor
/// readings measures 0.1 to 0.2).
pub(crate) const INITIAL_PARQUET_RATIO: f64 = 0.2;

/// Time allowed to the cluster for each metadata, offset or watermark request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a pipeline is built from.
pub(crate) struct Parts {
    pub(crate) decoders: HashMap<String, Decoder>,
    pub(crate) dlq_out: DlqSender,
    pub(crate) win: Option<WinHandle>,
    pub(crate) windowing: Option<Windowing>,
    pub(crate) lake: Lake,
    pub(crate) group: Arc<str>,
    pub(crate) metrics: Metrics,
    pub(crate) runtime: Handle,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: WorkerConfig,
}

impl Pipeline {
    pub(crate) fn new(parts: Parts) -> Self {
        let last_seal = parts.clock.now();
        Pipeline {
            partitions: HashMap::new(),
            decoders: parts.decoders,
            dlq_out: parts.dlq_out,
            dlq_floor: BTreeMap::new(),
            pending_dlq: Vec::new(),
            win: parts.win,
            dlq_chain: None,
            durable_chain: None,
            windowing: parts.windowing,
            failed: false,
            in_flight: VecDeque::new(),
            lake: parts.lake,
            group: parts.group,
            metrics: parts.metrics,
            runtime: parts.runtime,
            clock: parts.clock,
            config: parts.config,
            first_pending_at: None,
            last_seal,
            parquet_ratio: INITIAL_PARQUET_RATIO,
            summary: Summary::default(),
            tally: Tally::default(),
            fatal: None,
        }
    }

    pub(crate) fn assigned(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|t| t.values())
            .map(PartitionState::buffered_bytes)
            .sum()
    }

    pub(crate) fn state_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        self.partitions.get_mut(topic).and_then(|t| t.get_mut(&partition))
    }
}

/// The pipeline's lock; a panic elsewhere does not make the state unusable for the stop path.
pub(crate) fn lock(p: &Mutex<Pipeline>) -> MutexGuard<'_, Pipeline> {
    p.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts gathered in the hot loop and published to the metrics once per check.
#[derive(Default)]
pub(crate) struct Tally {
    /// Records handled, for sampling.
    pub(crate) records: u64,
    /// The wall clock, refreshed every `CLOCK_EVERY` records.
    pub(crate) now_ms: i64,
    pub(crate) kinds: HashMap<String, KindTally>,
    /// Newest event time seen since the worker started.
    pub(crate) newest_event_ms: i64,
    pub(crate) replay_skipped: u64,
    pub(crate) decode_time: Duration,
}

#[derive(Default)]
pub(crate) struct KindTally {
    pub(crate) consumed: u64,
    pub(crate) valid: u64,
    pub(crate) rejected: BTreeMap<RejectReason, u64>,
}

impl Tally {
    /// `windows`: the watermark lag comes from the windows' watermark, not the newest event.
    pub(crate) fn publish(&mut self, metrics: &Metrics, windows: bool, now_ms: i64) {
        for (kind, t) in self.kinds.iter_mut() {
            if t.consumed > 0 {
                metrics.records_decoded(kind, t.consumed, t.valid);
            }
            for (reason, n) in std::mem::take(&mut t.rejected) {
                metrics.rejected(kind, reason.as_str(), n);
            }
            t.consumed = 0;
            t.valid = 0;
        }
        metrics.replay_skipped(std::mem::take(&mut self.replay_skipped));
        if !windows && self.newest_event_ms > 0 {
            metrics.watermark_lag((now_ms - self.newest_event_ms) as f64 / 1000.0);
        }
        if !self.decode_time.is_zero() {
            metrics.decode_time(std::mem::take(&mut self.decode_time).as_secs_f64());
        }
    }
}
