//! Assignment and revocation. On assignment a partition learns what the lake already holds
//! (so that a replay writes nothing twice), which rejects the DLQ already holds, and its
//! windows' saved state; on revocation everything read from it is made durable and committed
//! before another member may read it again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rade_lake::{RawFile, ReplayIndex};
use rade_schema::Decoder;
use rade_window::PartitionWindows;
use tracing::{info, warn};

use crate::dlq_tail::{CommitMeta, TailPlan};
use crate::flush::Roll;
use crate::partition::PartitionState;
use crate::pipeline::Pipeline;
use crate::seams::Group;
use crate::windows::Cmd;
use crate::{Error, Result};

impl Pipeline {
    /// Takes on newly assigned partitions (a cooperative rebalance adds to what is kept).
    pub(crate) fn assign(&mut self, group: &dyn Group, partitions: &[(String, i32)]) -> Result<()> {
        let committed = group
            .committed(partitions)
            .map_err(|e| Error::kafka("reading committed offsets", e))?;
        info!(
            partitions = partitions.len(),
            "partitions assigned; reading what the lake already holds"
        );
        // What each raw table holds for these partitions, from its snapshot: their positions
        // and the files of them it names (no listing of the lake).
        let mut by_topic: HashMap<String, Vec<i32>> = HashMap::new();
        for position in &committed {
            by_topic.entry(position.topic.clone()).or_default().push(position.partition);
        }
        let mut held: HashMap<(String, i32), (Option<i64>, Vec<RawFile>)> = HashMap::new();
        for (topic, parts) in &by_topic {
            let Some(decoder) = self.decoders.get(topic) else {
                continue;
            };
            let positions = self.runtime.block_on(self.lake.raw_positions(
                &decoder.kind().kind,
                &self.group,
                topic,
                parts,
            ))?;
            for (partition, p) in positions {
                held.insert((topic.clone(), partition), p);
            }
        }
        for position in &committed {
            let topic = position.topic.clone();
            let Some(decoder) = self.decoders.get(&topic).cloned() else {
                return Err(rade_kafka::Error::UnknownTopic {
                    topic,
                    prefix: String::new(),
                }
                .into());
            };
            let start = position.offset;
            let (table_position, files) = held
                .remove(&(topic.clone(), position.partition))
                .unwrap_or_default();
            tracing::debug!(topic = %topic, partition = position.partition, committed = ?start, table_position = ?table_position, table_files = files.len(), "partition assigned");
            let (windows, skip_before) = self.restore_windows(group, &topic, position.partition, &decoder, start)?;
            // Rejects are in the DLQ below the offset the last commit's metadata gives, and
            // below the restored window state's.
            let acked = CommitMeta::parse(&position.metadata).acked.unwrap_or(i64::MIN);
            let replay = ReplayIndex::new(&files, start.unwrap_or(0), skip_before.max(acked))
                .with_table_position(table_position);
            let key: Arc<str> = topic.as_str().into();
            let has_windows = windows.is_some();
            if let Some(w) = windows {
                self.send_to_windows(Cmd::Assign {
                    key: (key.clone(), position.partition),
                    windows: Box::new(w),
                    decoder: decoder.clone(),
                    now_ms: self.clock.now_ms(),
                });
            }
            let mut state = PartitionState::new(
                key,
                position.partition,
                decoder,
                start,
                replay,
                has_windows,
                skip_before,
            );
            state.table_position = table_position;
            self.partitions
                .entry(topic)
                .or_default()
                .insert(position.partition, state);
        }
        self.find_dlq_rejects(group, &committed)?;
        self.metrics.assigned_partitions(self.assigned());
        Ok(())
    }

    /// Finds the rejects of newly assigned partitions that the DLQ holds beyond their last
    /// commit (a worker stopped after the DLQ acknowledged them and before committing), so
    /// that they are not sent again. A partition whose commit does not say where to look
    /// (never committed, or by an older rade) is committed at once with the DLQ's end.
    fn find_dlq_rejects(&mut self, group: &dyn Group, committed: &[crate::seams::Position]) -> Result<()> {
        if self.dlq_floor.is_empty() {
            // Before this worker sends anything: every reject it sends lands at or after these.
            self.dlq_floor = group.dlq_ends()?;
        }
        let plan = TailPlan::new(committed, &self.dlq_floor);
        let anchors = plan.anchors(&self.dlq_floor, |topic, partition| {
            // Never committed: the partition's beginning, where `earliest` starts anyway.
            group
                .watermarks(topic, partition)
                .map(|(low, _)| low)
                .map_err(|e| Error::kafka("reading the beginning of a partition", e))
        })?;
        if !anchors.is_empty()
            && let Err(e) = group.commit(&anchors)
        {
            warn!(error = %e, "the DLQ position of newly assigned partitions not committed; a crash before their first commit may send rejects twice");
        }
        if plan.wanted.is_empty() {
            return Ok(());
        }
        match group.read_dlq(&plan.starts, &plan.wanted) {
            Ok(found) => {
                for ((topic, partition), held) in found {
                    if let Some(state) = self.state_mut(&topic, partition) {
                        info!(
                            topic,
                            partition,
                            rejects = held.len(),
                            "rejects already in the DLQ are not sent again"
                        );
                        state.dlq_held = held;
                    }
                }
            }
            Err(e) => warn!(error = %e, "rejects sent before the last stop may be sent to the DLQ again"),
        }
        Ok(())
    }

    /// The windows of a newly assigned partition, from the state its last owner saved. When
    /// that state is ahead of the committed offset (a crash between saving it and committing),
    /// the records in between are skipped: they are in the state and in the lake.
    fn restore_windows(
        &self,
        group: &dyn Group,
        topic: &str,
        partition: i32,
        decoder: &Decoder,
        committed: Option<i64>,
    ) -> Result<(Option<PartitionWindows>, i64)> {
        let Some(windowing) = self.windowing.as_ref() else {
            return Ok((None, i64::MIN));
        };
        let now_ms = self.clock.now_ms();
        let kind = &decoder.kind().kind;
        let forget_ms = windowing.config.forget_after.as_millis().min(i64::MAX as u128) as i64;
        let fresh = || {
            PartitionWindows::new(
                topic.into(),
                partition,
                kind,
                windowing.specs.clone(),
                &windowing.rules,
                now_ms,
            )
            .map(|w| w.with_forget_after(forget_ms))
        };
        let mut windows = fresh()?;
        let saved = self.runtime.block_on(self.lake.get_state(topic, partition))?;
        let no_state = saved.is_none();
        let mut at = -1;
        if let Some(bytes) = saved {
            match windows.restore(&bytes) {
                Ok(offset) => {
                    let committed = committed.unwrap_or(0);
                    if offset < committed {
                        warn!(
                            topic,
                            partition,
                            state_at = offset,
                            committed,
                            "window state older than the committed offset: records in between are missing from the open windows"
                        );
                    }
                    info!(
                        topic,
                        partition,
                        state_at = offset,
                        sensors = windows.sensors(),
                        open_windows = windows.open_windows(),
                        "window state restored"
                    );
                    at = offset;
                    // A state beyond the end of the partition belongs to another life of the
                    // topic (deleted and created again): trusting it would skip records.
                    let (_, high) = group
                        .watermarks(topic, partition)
                        .map_err(|e| Error::kafka("reading the end of a partition", e))?;
                    if offset > high {
                        warn!(
                            topic,
                            partition,
                            state_at = offset,
                            end = high,
                            "window state is beyond the end of the partition; windows start empty"
                        );
                        windows = fresh()?;
                        at = -1;
                    }
                }
                Err(e) => {
                    warn!(topic, partition, error = %e, "window state not restored; windows start empty");
                    windows = fresh()?;
                }
            }
        }
        // Files of closed windows and alerts committed after the saved state (a crash between
        // the two) are removed from their tables: the replay from the saved state
        // closes the same windows again and writes them once. Their alerts may reach the topic
        // a second time, with the same alert_id; the lake keeps them once. Without a saved
        // state nothing is deleted: files already in the lake are never trusted less than that.
        // With no state at all, files of this group's windows of the partition can only come
        // from a first flush that crashed before saving it: every one of them goes.
        let first_flush_crashed = no_state && {
            let app = crate::flush::windows_app_id(&self.group, topic, partition);
            let mut committed = false;
            for table in [rade_lake::TableId::Alerts, rade_lake::TableId::Aggregates] {
                committed |= self.runtime.block_on(self.lake.table_position(&table, &app))?.is_some();
            }
            committed
        };
        if at >= 0 || first_flush_crashed {
            let (after_offset, after_watermark) = if at >= 0 {
                (at, windows.closed_at().max(0))
            } else {
                (i64::MIN, i64::MIN)
            };
            let beyond = self.runtime.block_on(self.lake.derived_after(
                topic,
                partition,
                after_offset,
                after_watermark,
            ))?;
            let mut by_table: HashMap<rade_lake::TableId, Vec<rade_lake::LiveFile>> = HashMap::new();
            for (table, file) in beyond {
                by_table.entry(table).or_default().push(file);
            }
            let files: usize = by_table.values().map(Vec::len).sum();
            for (table, removed) in by_table {
                self.runtime
                    .block_on(self.lake.commit(&table, &[], &removed, &[], &HashMap::new()))?;
            }
            if files > 0 {
                info!(
                    topic,
                    partition,
                    files,
                    "files of windows closed after the saved state removed from their tables; they are closed again"
                );
            }
        }
        Ok((Some(windows), if at < 0 { i64::MIN } else { at }))
    }

    /// Lets partitions go: what was read from them is made durable and committed first. The
    /// partitions kept (a cooperative rebalance) keep their open files: a rebalance does not
    /// cut every file short.
    pub(crate) fn revoke(&mut self, group: &dyn Group, partitions: &[(String, i32)]) -> Result<()> {
        let revoked: HashSet<(String, i32)> = partitions.iter().cloned().collect();
        let result = self.drain_rolling(group, Roll::Partitions(&revoked));
        for (topic, partition) in partitions {
            if let Some(t) = self.partitions.get_mut(topic)
                && let Some(state) = t.remove(partition)
                && state.windows
            {
                self.send_to_windows(Cmd::Remove {
                    key: (state.topic.clone(), state.partition),
                });
            }
            self.metrics.forget_partition(topic, *partition);
        }
        self.metrics.assigned_partitions(self.assigned());
        info!(
            partitions = partitions.len(),
            "partitions revoked after flushing and committing"
        );
        result
    }

    /// Whether every assigned partition has been read to its high watermark and is flushed.
    pub(crate) fn caught_up(&mut self, group: &dyn Group) -> bool {
        if self.partitions.values().all(HashMap::is_empty) {
            return false;
        }
        // Input has paused: make what was read durable first (a no-op when nothing is pending).
        if let Err(e) = self.drain(group) {
            self.fatal.get_or_insert(e);
            return false;
        }
        let done = self.partitions.values().flat_map(|t| t.values()).all(|s| {
            let position = s.next_offset.or(s.start_offset).unwrap_or(0);
            match group.watermarks(&s.topic, s.partition) {
                Ok((low, high)) => position >= high || low == high,
                Err(_) => false,
            }
        });
        tracing::debug!(done, "end of input checked");
        if done && self.windowing.is_some() {
            // At the end of the input, a partition that never delivered a record stops
            // holding the watermark back: the others' windows close before the worker stops.
            let now_ms = self.clock.now_ms();
            self.send_to_windows(Cmd::EndOfInput { now_ms });
            if let Err(e) = self.drain(group) {
                self.fatal.get_or_insert(e);
                return false;
            }
        }
        done
    }
}
