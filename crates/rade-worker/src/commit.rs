//! Offsets are committed only for what is durable: a flush's offsets once its task has made
//! its rejects, files and window state durable, in the order the flushes were sealed. After
//! a fatal error nothing more is committed; the next owner replays what was not.

use rade_lake::Written;
use rade_schema::Disposition;
use rade_telemetry::Table;
use tracing::warn;

use crate::dlq_tail::{CommitMeta, tail_for};
use crate::flush::Roll;
use crate::pipeline::Pipeline;
use crate::seams::{Group, Position};
use crate::{Error, Result};

/// Raw files of this many Arrow bytes or more in a flush update the Parquet ratio.
const RATIO_MIN_ARROW_BYTES: u64 = 256 << 10;

impl Pipeline {
    /// Seals when a flush is due, then commits the flushes that are durable; with more than
    /// `max_in_flight` flushes writing, waits for the oldest (back-pressure).
    pub(crate) fn maybe_flush(&mut self, group: &dyn Group) -> Result<()> {
        self.maybe_seal();
        self.complete(group, false)?;
        while self.in_flight.len() > self.config.max_in_flight {
            self.complete_one(group)?;
        }
        Ok(())
    }

    /// Commits the finished flushes at the head of the queue; with `wait`, all of them.
    pub(crate) fn complete(&mut self, group: &dyn Group, wait: bool) -> Result<()> {
        while let Some(head) = self.in_flight.front() {
            if !wait && !head.task.is_finished() {
                break;
            }
            self.complete_one(group)?;
        }
        Ok(())
    }

    /// Waits for the oldest flush and commits its offsets.
    pub(crate) fn complete_one(&mut self, group: &dyn Group) -> Result<()> {
        if self.failed {
            return Err(Error::Stopped);
        }
        let Some(flight) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcome = self
            .runtime
            .block_on(flight.task)
            .map_err(Error::FlushTask)
            .and_then(|o| o);
        // A flush that failed stops every later commit: its records are replayed instead.
        self.failed |= outcome.is_err();
        if let Err(Error::Lake(rade_lake::Error::Fenced { table, app_id, .. })) = &outcome {
            self.metrics.fenced(table);
            tracing::error!(
                table,
                app_id,
                "fenced: another member has committed this partition since this worker read it (this worker lost it, e.g. paused past its session timeout); nothing of this flush is visible, and the worker stops without committing more: its new owner has the records"
            );
        }
        self.metrics
            .health()
            .set_lake_writable(!matches!(outcome, Err(Error::Lake(_))));
        let outcome = outcome?;
        // Small files carry proportionally more metadata: only sizable ones teach the ratio.
        if outcome.raw_arrow_bytes >= RATIO_MIN_ARROW_BYTES {
            let measured = outcome.raw_parquet_bytes as f64 / outcome.raw_arrow_bytes as f64;
            self.parquet_ratio = 0.5 * self.parquet_ratio + 0.5 * measured;
        }
        for (d, end) in &outcome.dlq_ends {
            let floor = self.dlq_floor.entry(*d).or_insert(*end);
            *floor = (*floor).max(*end);
        }
        self.summary.dlq_produced += outcome.dlq_acked;
        self.metrics.dlq_produced(outcome.dlq_acked);
        self.summary.alerts += outcome.alerts_acked;
        self.summary.windows_closed += outcome.windows_closed;
        self.summary.late += outcome.late;
        for (table, Written::Created { bytes }) in &outcome.written {
            if matches!(table, Table::Raw) {
                self.summary.files_written += 1;
                self.summary.bytes_written += bytes;
            }
            self.metrics.lake_file(*table, *bytes);
        }
        // The commit trails the position by the files still open; its metadata says up to
        // where the rejects are in the DLQ, and from where in the DLQ to look for those sent
        // after it, so that a replay does not send them again.
        let positions: Vec<Position> = flight
            .offsets
            .iter()
            .map(|(topic, partition, next, acked)| Position {
                topic: topic.to_string(),
                partition: *partition,
                offset: Some(*next),
                metadata: CommitMeta {
                    acked: Some(*acked),
                    tail: Some(self.dlq_tail_of(topic, *partition, *acked)),
                }
                .render(),
            })
            .collect();
        if !positions.is_empty() {
            match group.commit(&positions) {
                Ok(()) => {}
                // The group is between two generations (a member joins or leaves while this
                // one stops or commits), or its coordinator is away for now: the files are
                // durable, only the offsets wait. The next commit covers them, or the
                // partition's next owner replays from the last commit and finds the rows in
                // the lake.
                Err(e) if rade_kafka::classify(&e) == Disposition::Transient => {
                    warn!(error = %e, "offsets not committed for now (group rebalancing or coordinator away); the next commit or owner covers them");
                    return Ok(());
                }
                Err(e) => return Err(Error::kafka("committing offsets", e)),
            }
        }
        let now = self.clock.now();
        let seconds = now.saturating_duration_since(flight.sealed_at).as_secs_f64();
        self.metrics.committed(seconds);
        tracing::debug!(seconds, "flush durable and committed");
        if let Some(t) = flight.newest_event_ms {
            self.metrics
                .end_to_end((self.clock.now_ms() - t).max(0) as f64 / 1000.0);
        }
        for (topic, partition, next, _) in flight.offsets {
            self.summary.committed.insert((topic.to_string(), partition), next);
        }
        Ok(())
    }

    /// The DLQ tail to commit for a partition whose rejects before `acked` are in the DLQ.
    fn dlq_tail_of(&mut self, topic: &str, partition: i32, acked: i64) -> std::collections::BTreeMap<i32, i64> {
        let Pipeline {
            partitions, dlq_floor, ..
        } = self;
        match partitions.get_mut(topic).and_then(|t| t.get_mut(&partition)) {
            Some(state) => {
                // Rejects found before the acknowledged offset are covered by it from now on.
                state.dlq_held = state.dlq_held.split_off(&acked);
                tail_for(dlq_floor, &state.dlq_held)
            }
            None => dlq_floor.clone(),
        }
    }

    /// Seals and waits for every flush, committing each. After a fatal error, only waits
    /// for the flushes still writing and commits nothing: no file of this worker lands after
    /// its partitions have moved to another member, which would list the lake without it.
    pub(crate) fn drain(&mut self, group: &dyn Group) -> Result<()> {
        self.drain_rolling(group, Roll::All)
    }

    /// [`Pipeline::drain`], rolling the open files `roll` forces and those that are due.
    pub(crate) fn drain_rolling(&mut self, group: &dyn Group, roll: Roll<'_>) -> Result<()> {
        if self.failed {
            while let Some(flight) = self.in_flight.pop_front() {
                let _ = self.runtime.block_on(flight.task);
            }
            return Err(Error::Stopped);
        }
        let now_ms = self.clock.now_ms();
        self.tally.publish(&self.metrics, self.windowing.is_some(), now_ms);
        self.advance_windows();
        self.seal(roll);
        self.complete(group, true)
    }
}
