//! Sealing a flush and its durability chain: the DLQ acknowledges the flush's rejects, the
//! alert topic its alerts, then the raw files are written and committed to their Delta tables
//! with the positions they cover, then the files of closed windows and alerts, then the window
//! state; only then does `commit.rs` commit its offsets to Kafka.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use rade_lake::{DerivedFile, DerivedTable, Lake, OpenFile, RawFile, TableFile, TableId, Written, app_id, crash_point};
use rade_telemetry::Table;
use rdkafka::error::KafkaError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dlq_sender::{DlqSender, Pending};
use crate::partition::PartitionState;
use crate::pipeline::Pipeline;
use crate::windows::{Cmd, SealReply, WinHandle};
use crate::{Error, Result};

/// Without windows, an hour's file rolls once the partition's newest event is this far past
/// the hour (the windows' default lateness).
const DEFAULT_LATENESS_MS: i64 = 60_000;

const MS_PER_HOUR: i64 = 3_600_000;

/// A flush on its way to durability: the offsets to commit once its task succeeds.
pub(crate) struct InFlight {
    pub(crate) task: JoinHandle<Result<FlushOutcome>>,
    /// (topic, partition, offset to commit, position whose rejects this flush acknowledges).
    pub(crate) offsets: Vec<(Arc<str>, i32, i64, i64)>,
    pub(crate) sealed_at: Instant,
    pub(crate) newest_event_ms: Option<i64>,
}

/// What a durable flush did.
pub(crate) struct FlushOutcome {
    /// Arrow bytes of the raw files created, and their Parquet bytes.
    pub(crate) raw_arrow_bytes: u64,
    pub(crate) raw_parquet_bytes: u64,
    pub(crate) dlq_acked: u64,
    /// Per DLQ partition, the offset after this flush's rejects.
    pub(crate) dlq_ends: BTreeMap<i32, i64>,
    pub(crate) alerts_acked: u64,
    pub(crate) windows_closed: u64,
    /// Late readings the windows counted.
    pub(crate) late: u64,
    pub(crate) written: Vec<(Table, Written)>,
}

/// Which open files a seal rolls whatever their size, age and hour.
#[derive(Clone, Copy)]
pub(crate) enum Roll<'a> {
    /// Only those that are due.
    Due,
    /// Every one (stop, end of input).
    All,
    /// Every one of these partitions (being revoked).
    Partitions(&'a HashSet<(String, i32)>),
}

/// A partition's position a flush commits to its raw table: (topic, kind, partition, next
/// offset, the position the table is expected to hold before this commit).
pub(crate) type TablePosition = (Arc<str>, String, i32, i64, Option<i64>);

/// A table's part of a flush's commit: the positions it moves, and the ones it expects.
type TableTxns = (Vec<(String, i64)>, HashMap<String, Option<i64>>);

/// One flush's durability chain, run as a task of the runtime.
struct Flush {
    raw: Vec<(RawFile, RecordBatch)>,
    /// The consumer group: the positions' app ids.
    group: Arc<str>,
    positions: Vec<TablePosition>,
    dlq: Vec<Pending>,
    dlq_out: DlqSender,
    window_reply: Option<oneshot::Receiver<SealReply>>,
    lake: Lake,
    /// Resolves when every earlier flush has its rejects acknowledged.
    earlier_acked: Option<oneshot::Receiver<()>>,
    acked_tx: oneshot::Sender<()>,
    /// Resolves when every earlier flush is durable.
    earlier_durable: Option<oneshot::Receiver<()>>,
    durable_tx: oneshot::Sender<()>,
}

impl Flush {
    async fn run(self) -> Result<FlushOutcome> {
        let window_part = match self.window_reply {
            Some(rx) => rx.await.map_err(|_| Error::WindowThreadStopped)?,
            None => SealReply::default(),
        };
        if let Some(e) = window_part.fatal {
            return Err(e);
        }
        // Files are written only once this flush's rejects and every earlier flush's are
        // acknowledged, so any file of a partition proves to a later replay that the rejects
        // up to its last offset are in the DLQ.
        if let Some(earlier) = self.earlier_acked {
            earlier.await.map_err(|_| Error::EarlierFlushFailed)?;
        }
        let mut rejects = self.dlq;
        rejects.extend(window_part.late_rejects);
        let acked = self.dlq_out.acknowledged(rejects).await?;
        if acked.count > 0 {
            // The rejects are in the DLQ, nothing of the flush is committed yet.
            crash_point("after-dlq");
        }
        let _ = self.acked_tx.send(());
        let mut alerts_acked = 0;
        for out in window_part.outgoing {
            let fail = |source| rade_kafka::Error::Publish {
                topic: out.topic.clone(),
                what: out.what,
                source: Box::new(source),
            };
            match out.delivery.await {
                Ok(_) => alerts_acked += u64::from(out.what == "an alert"),
                Err(KafkaError::Canceled) => return Err(fail(KafkaError::Canceled).into()),
                Err(e) => return Err(fail(e).into()),
            }
        }
        // Raw files in parallel; files of closed windows and alerts only once every earlier
        // flush is durable, one at a time, alerts first: a crash leaves at most one flush's
        // derived files beyond the saved state, and its alerts are there whenever any of its
        // aggregates are.
        let lake = self.lake;
        let written: Vec<(Table, Written, u64, TableFile)> = futures::stream::iter(self.raw)
            .map(|(file, batch)| {
                let lake = lake.clone();
                async move {
                    let arrow = batch.get_array_memory_size() as u64;
                    let (written, table_file) = lake.write_raw(&file, vec![batch]).await?;
                    crash_point("after-raw-file");
                    Ok::<_, Error>((Table::Raw, written, arrow, table_file))
                }
            })
            .buffer_unordered(2)
            .try_collect()
            .await?;
        // Parquet bytes per Arrow byte of the raw files created: the ratio rolling uses.
        let (mut raw_arrow_bytes, mut raw_parquet_bytes) = (0, 0);
        for (_, Written::Created { bytes }, arrow, _) in &written {
            raw_arrow_bytes += arrow;
            raw_parquet_bytes += bytes;
        }
        let mut raw_files: BTreeMap<TableId, Vec<TableFile>> = BTreeMap::new();
        let mut written: Vec<(Table, Written)> = written
            .into_iter()
            .map(|(table, w, _, file)| {
                raw_files.entry(file.table.clone()).or_default().push(file);
                (table, w)
            })
            .collect();
        // Commits follow the order of the flushes: a table's positions only move forward, and
        // a restored window state never runs ahead of what the tables hold.
        if let Some(earlier) = self.earlier_durable {
            earlier.await.map_err(|_| Error::EarlierFlushFailed)?;
        }
        // One commit per raw table: its files and the positions of its partitions.
        let mut positions: BTreeMap<TableId, TableTxns> = BTreeMap::new();
        for (topic, kind, partition, next, expected) in &self.positions {
            let app = app_id(&self.group, topic, *partition);
            let entry = positions.entry(TableId::Raw(kind.clone())).or_default();
            entry.0.push((app.clone(), *next));
            entry.1.insert(app, *expected);
        }
        for table in raw_files.keys() {
            positions.entry(table.clone()).or_default();
        }
        for (table, (txns, fence)) in positions {
            let files = raw_files.remove(&table).unwrap_or_default();
            lake.commit(&table, &files, &[], &txns, &fence).await?;
            if !files.is_empty() {
                crash_point("after-raw-commit");
            }
        }
        let mut derived = window_part.derived;
        derived.sort_by_key(|(f, _)| !matches!(f.table, DerivedTable::Alerts));
        let mut derived_files: BTreeMap<TableId, (Vec<TableFile>, BTreeMap<String, i64>)> = BTreeMap::new();
        for (file, batches) in derived {
            let (w, table_file) = lake.write_derived(&file, batches).await?;
            written.push((table_of(&file), w));
            let entry = derived_files.entry(table_file.table.clone()).or_default();
            entry.0.push(table_file);
            // The windows' position of the partition: a restart with no saved state knows from
            // it that a first flush of this group got this far.
            let app = windows_app_id(&self.group, &file.topic, file.partition);
            let v = entry.1.entry(app).or_insert(file.next_offset);
            *v = (*v).max(file.next_offset);
        }
        // Alerts first: whenever a flush's aggregates are visible, so are its alerts.
        for table in [TableId::Alerts, TableId::Aggregates] {
            if let Some((files, positions)) = derived_files.remove(&table) {
                let txns: Vec<(String, i64)> = positions.into_iter().collect();
                lake.commit(&table, &files, &[], &txns, &HashMap::new()).await?;
                crash_point("after-derived-commit");
            }
        }
        // The crash points count only flushes that write something.
        let writes = !written.is_empty() || !window_part.snapshots.is_empty();
        if writes {
            crash_point("after-files");
        }
        for (topic, partition, bytes) in window_part.snapshots {
            lake.put_state(&topic, partition, bytes).await?;
        }
        if writes {
            crash_point("after-state");
        }
        let _ = self.durable_tx.send(());
        Ok(FlushOutcome {
            raw_arrow_bytes,
            raw_parquet_bytes,
            dlq_acked: acked.count,
            dlq_ends: acked.ends,
            alerts_acked,
            windows_closed: window_part.windows_closed,
            late: window_part.late,
            written,
        })
    }
}

/// The app id of a partition's windows in `aggregates` and `alerts`.
pub(crate) fn windows_app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("{}:windows", app_id(group, topic, partition))
}

fn table_of(file: &DerivedFile) -> Table {
    match file.table {
        DerivedTable::Aggregates { .. } => Table::Aggregates,
        DerivedTable::Alerts => Table::Alerts,
    }
}

impl Pipeline {
    /// Seals every `flush_interval` (rolling the files that are due), or at once when a file
    /// reaches its size or the buffers the memory budget.
    pub(crate) fn maybe_seal(&mut self) {
        let now_ms = self.clock.now_ms();
        self.tally.publish(&self.metrics, self.windowing.is_some(), now_ms);
        self.advance_windows();
        // One pass over the open files: whether there are any, and the largest.
        let largest = self
            .partitions
            .values()
            .flat_map(|t| t.values())
            .filter_map(PartitionState::largest_open_file)
            .max();
        let now = self.clock.now();
        let time = now.saturating_duration_since(self.last_seal) >= self.config.flush_interval
            && (largest.is_some() || self.first_pending_at.is_some());
        let big = largest.is_some_and(|b| b >= self.roll_arrow_bytes())
            || self.buffered_bytes() >= self.config.flush_size.as_u64() as usize;
        if time || big {
            self.seal(Roll::Due);
        }
    }

    /// Arrow bytes at which an open file is expected to reach `roll_size` in Parquet.
    pub(crate) fn roll_arrow_bytes(&self) -> usize {
        (self.config.roll_size.as_u64() as f64 / self.parquet_ratio.max(0.01)) as usize
    }

    /// Rolls the files that are due (and those `roll` forces) into one flush task: DLQ
    /// acknowledgements first, then files, then the window state; the commit follows.
    ///
    /// A file is due when it reaches `roll_size`, when it has been open `roll_interval`, when
    /// the partition's watermark has left its hour (no on-time row can come for it), or when
    /// the buffers exceed `flush_size` and it is among the largest.
    pub(crate) fn seal(&mut self, roll: Roll<'_>) {
        let now = self.clock.now();
        self.first_pending_at = None;
        self.last_seal = now;
        let roll_arrow = self.roll_arrow_bytes();
        let roll_interval = self.config.roll_interval;
        let lateness = self
            .windowing
            .as_ref()
            .map(|w| w.config.lateness_ms())
            .unwrap_or(DEFAULT_LATENESS_MS);
        let squeezed = match roll {
            Roll::Due => self.squeezed(),
            _ => HashSet::new(),
        };
        let mut jobs = Vec::new();
        let mut offsets = Vec::new();
        let mut positions = Vec::new();
        let mut newest_event_ms = None;
        let windows_watermark = self.win.as_ref().and_then(WinHandle::watermark);
        for state in self.partitions.values_mut().flat_map(|t| t.values_mut()) {
            // The partition's watermark: the windows' when they are on, else its newest event
            // less the allowed lateness.
            let watermark = if state.windows {
                windows_watermark
            } else {
                state.max_event_ms.map(|e| e - lateness)
            };
            let topic = state.topic.clone();
            let partition = state.partition;
            let all = match roll {
                Roll::Due => false,
                Roll::All => true,
                Roll::Partitions(set) => set.contains(&(topic.to_string(), partition)),
            };
            let due = |hour: i64, file: &OpenFile| {
                all || file.bytes() >= roll_arrow
                    || now.saturating_duration_since(file.opened()) >= roll_interval
                    || watermark.is_some_and(|w| w >= (hour + 1) * MS_PER_HOUR)
                    || squeezed.contains(&(topic.clone(), partition, hour))
            };
            if let Some(sealed) = state.seal(due) {
                jobs.extend(sealed.files);
                let acked = state.position().unwrap_or(sealed.next_offset);
                offsets.push((state.topic.clone(), state.partition, sealed.next_offset, acked));
                // The table holds what the last flush sealed commits; this one moves it on.
                let expected = state.table_position.replace(sealed.next_offset);
                positions.push((
                    state.topic.clone(),
                    state.decoder.kind().kind.clone(),
                    state.partition,
                    sealed.next_offset,
                    expected,
                ));
                newest_event_ms = newest_event_ms.max(sealed.newest_event_ms);
            }
        }
        // The window thread's part of this flush: files of closed windows and alerts, and the
        // state of every partition whose windows changed, as of its position now.
        let window_reply = self.seal_windows();
        if offsets.is_empty() && window_reply.is_none() {
            return;
        }
        tracing::debug!(files = jobs.len(), partitions = offsets.len(), "flush sealed");
        let (acked_tx, acked_rx) = oneshot::channel();
        let (durable_tx, durable_rx) = oneshot::channel();
        let flush = Flush {
            raw: jobs,
            group: self.group.clone(),
            positions,
            dlq: std::mem::take(&mut self.pending_dlq),
            dlq_out: self.dlq_out.clone(),
            window_reply,
            lake: self.lake.clone(),
            earlier_acked: self.dlq_chain.replace(acked_rx),
            acked_tx,
            earlier_durable: self.durable_chain.replace(durable_rx),
            durable_tx,
        };
        let task = self.runtime.spawn(flush.run());
        self.in_flight.push_back(InFlight {
            task,
            offsets,
            sealed_at: now,
            newest_event_ms,
        });
    }

    /// Over the memory budget: the largest open files, which roll until half of it is free.
    fn squeezed(&self) -> HashSet<(Arc<str>, i32, i64)> {
        let mut squeezed = HashSet::new();
        let budget = self.config.flush_size.as_u64() as usize;
        let mut buffered = self.buffered_bytes();
        if buffered < budget {
            return squeezed;
        }
        let mut open: Vec<(usize, Arc<str>, i32, i64)> = self
            .partitions
            .values()
            .flat_map(|t| t.values())
            .flat_map(|s| {
                s.open_files()
                    .map(|(hour, file)| (file.bytes(), s.topic.clone(), s.partition, hour))
            })
            .collect();
        open.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (bytes, topic, partition, hour) in open {
            if buffered <= budget / 2 {
                break;
            }
            buffered -= bytes;
            squeezed.insert((topic, partition, hour));
        }
        squeezed
    }

    /// Asks the window thread for its part of a flush, when it did anything since the last.
    fn seal_windows(&mut self) -> Option<oneshot::Receiver<SealReply>> {
        let now_ms = self.clock.now_ms();
        self.send_folds(now_ms);
        if !self.win.as_ref().is_some_and(|w| w.active) {
            return None;
        }
        let positions: Vec<_> = self
            .partitions
            .values()
            .flat_map(|t| t.values())
            .filter(|s| s.windows)
            .filter_map(|s| s.position().map(|p| ((s.topic.clone(), s.partition), p)))
            .collect();
        let (reply, rx) = oneshot::channel();
        self.send_to_windows(Cmd::Seal {
            offsets: positions,
            reply,
        });
        if let Some(w) = self.win.as_mut() {
            w.active = false;
        }
        Some(rx)
    }

    /// Hands the window thread the readings buffered since the last check and the time: the
    /// windows that are due close there, and their alerts (and aggregates, when a topic is
    /// set) are published. Everything published is acknowledged before the flush holding it
    /// commits.
    pub(crate) fn advance_windows(&mut self) {
        if self.windowing.is_none() {
            return;
        }
        let now_ms = self.clock.now_ms();
        self.send_folds(now_ms);
        self.send_to_windows(Cmd::Tick { now_ms });
    }

    /// Hands the valid records buffered since the last check to the window thread.
    pub(crate) fn send_folds(&mut self, now_ms: i64) {
        let mut cmds = Vec::new();
        for state in self.partitions.values_mut().flat_map(|t| t.values_mut()) {
            if state.fold.is_empty() {
                continue;
            }
            cmds.push(Cmd::Fold {
                key: (state.topic.clone(), state.partition),
                batch: std::mem::take(&mut state.fold),
                now_ms,
            });
        }
        for cmd in cmds {
            self.send_to_windows(cmd);
        }
    }

    pub(crate) fn send_to_windows(&mut self, cmd: Cmd) {
        if let Some(win) = self.win.as_mut() {
            win.active = true;
            if win.tx.send(cmd).is_err() {
                self.fatal.get_or_insert(Error::WindowThreadStopped);
            }
        }
    }
}
