//! One message: decode and validate, then buffer the row for the lake (and the windows) or
//! send the reject to the DLQ.

use std::time::Instant;

use rade_kafka::DlqRecord;
use rade_lake::Pushed;
use tracing::warn;

use crate::pipeline::{KindTally, Pipeline};
use crate::seams::Record;
use crate::windows::IfLate;

/// Records between two reads of the wall clock in the hot loop.
const CLOCK_EVERY: u64 = 64;
/// One decode in this many is timed for `rade_decode_seconds` (scaled up).
const DECODE_SAMPLE: u64 = 16;

impl Pipeline {
    pub(crate) fn handle(&mut self, m: &Record<'_>) {
        let Pipeline {
            partitions,
            dlq_out,
            pending_dlq,
            summary,
            tally,
            first_pending_at,
            fatal,
            clock,
            ..
        } = self;
        let Some(state) = partitions.get_mut(m.topic).and_then(|t| t.get_mut(&m.partition)) else {
            warn!(
                topic = m.topic,
                partition = m.partition,
                "message from a partition that is not assigned"
            );
            return;
        };
        first_pending_at.get_or_insert_with(|| clock.now());
        let offset = m.offset;
        summary.consumed += 1;
        if summary.consumed % 100_000 == 0 {
            tracing::debug!(consumed = summary.consumed, "progress");
        }
        let kind = &state.decoder.kind().kind;
        if !tally.kinds.contains_key(kind) {
            tally.kinds.insert(kind.clone(), KindTally::default());
        }
        let Some(t) = tally.kinds.get_mut(kind) else {
            return;
        };
        t.consumed += 1;
        // Records before the restored window state's offset are in it already: they go to
        // the lake when no file holds them, not to the windows again.
        let windows_hold = offset < state.skip_before;
        // The wall clock is read once every CLOCK_EVERY records (a few ms stale at most), and
        // one decode in DECODE_SAMPLE is timed: clock reads cost as much as a decode.
        if tally.records % CLOCK_EVERY == 0 {
            tally.now_ms = clock.now_ms();
        }
        tally.records += 1;
        let now_ms = tally.now_ms;
        let decoded = if tally.records % DECODE_SAMPLE == 0 {
            // A measurement of CPU time, not a decision: the machine's clock.
            let started = Instant::now();
            let decoded = state.decoder.decode(m.value, now_ms);
            tally.decode_time += started.elapsed() * DECODE_SAMPLE as u32;
            decoded
        } else {
            state.decoder.decode(m.value, now_ms)
        };
        let reject = match decoded {
            Ok(row) => {
                tally.newest_event_ms = tally.newest_event_ms.max(row.observed_at_ms);
                let pushed = state.push_row(&row, offset, now_ms, || clock.now());
                match pushed {
                    Pushed::Buffered => {
                        summary.valid += 1;
                        t.valid += 1;
                    }
                    Pushed::AlreadyDurable => {
                        summary.replay_skipped += 1;
                        t.valid += 1;
                        tally.replay_skipped += 1;
                    }
                }
                // Replayed rows still feed the windows: the restored state does not hold them.
                // Whether a reading is late is for the windows to say (the window thread);
                // what to do then is known here.
                if state.windows && !windows_hold {
                    let if_late = if pushed == Pushed::AlreadyDurable {
                        // Counted and reported before the file holding the row was written.
                        IfLate::Ignore
                    } else if state.dlq_holds(offset) {
                        // Reported by a run that stopped before committing it.
                        IfLate::Count
                    } else {
                        IfLate::Report
                    };
                    if let Some(v) = m.value {
                        state.fold.push(m.key, v, offset, if_late);
                    }
                }
                return;
            }
            Err(reject) => {
                *summary.rejected.entry(reject.reason).or_default() += 1;
                *t.rejected.entry(reject.reason).or_default() += 1;
                if !state.push_reject(offset) {
                    summary.replay_skipped += 1;
                    tally.replay_skipped += 1;
                    return;
                }
                reject
            }
        };
        let record = DlqRecord {
            key: m.key,
            value: m.value,
            topic: m.topic,
            partition: m.partition,
            offset,
        };
        match dlq_out.send(&record, &reject, &state.topic) {
            Ok(pending) => pending_dlq.push(pending),
            Err(e) => {
                fatal.get_or_insert(e);
            }
        }
    }
}

/// An event time in RFC 3339, for reject details.
pub(crate) fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
