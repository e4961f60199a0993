//! Metrics and logs of rade: every metric name and label set is defined here, once.
//!
//! [`Metrics`] owns one Prometheus registry; the pipeline records events through its small
//! typed methods (counted once per batch in hot loops), so a typo cannot create a metric.
//! [`init_tracing`] sets up structured logs, as text or JSON; [`serve`] exposes `/metrics`,
//! `/healthz` and `/readyz` from [`Metrics`] and its [`Health`].

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use health::Health;
pub use server::serve;

mod health;
mod server;

/// The lake tables, a fixed label set.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Raw,
    Aggregates,
    Alerts,
}

impl Table {
    fn as_str(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Aggregates => "aggregates",
            Table::Alerts => "alerts",
        }
    }
}

/// The metrics of one worker process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    consumed: IntCounterVec,
    valid: IntCounterVec,
    rejected: IntCounterVec,
    dlq_produced: IntCounter,
    replay_skipped: IntCounter,
    lake_files: IntCounterVec,
    lake_bytes: IntCounterVec,
    commit_seconds: Histogram,
    decode_seconds: Histogram,
    consumer_lag: IntGaugeVec,
    assigned_partitions: IntGauge,
    watermark_lag: Gauge,
    end_to_end_seconds: Histogram,
    windows_closed: IntCounterVec,
    alerts: IntCounterVec,
    late: IntCounterVec,
    split_readings: IntCounterVec,
    fenced: IntCounterVec,
    health: Arc<Health>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every rade metric registered.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("rade".into()), None).expect("a valid static prefix");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric registers once");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric registers once");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h =
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("a valid static metric");
            registry
                .register(Box::new(h.clone()))
                .expect("each metric registers once");
            h
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid static metric");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric registers once");
            g
        };
        let assigned_partitions =
            IntGauge::new("assigned_partitions", "Raw topic partitions assigned to this worker.").expect("valid");
        registry
            .register(Box::new(assigned_partitions.clone()))
            .expect("each metric registers once");
        let watermark_lag = Gauge::new(
            "watermark_lag_seconds",
            "Wall clock minus the highest event time seen on this worker's partitions.",
        )
        .expect("valid");
        registry
            .register(Box::new(watermark_lag.clone()))
            .expect("each metric registers once");
        Metrics {
            consumer_lag: gauge_vec(
                "consumer_lag",
                "Messages between the read position and the end of the partition (librdkafka statistics).",
                &["topic", "partition"],
            ),
            assigned_partitions,
            watermark_lag,
            end_to_end_seconds: histogram(
                "end_to_end_latency_seconds",
                "Event time of the newest row of a lake file to the file being durable and committed.",
                prometheus::exponential_buckets(0.25, 2.0, 16).expect("valid buckets"),
            ),
            health: Arc::new(Health::default()),
            windows_closed: counter_vec(
                "windows_closed_total",
                "Sensor windows closed by the watermark and aggregated, by kind and window.",
                &["kind", "window"],
            ),
            alerts: counter_vec(
                "alerts_total",
                "Alert state changes emitted, by rule and state (RAISED, RESOLVED).",
                &["rule", "state"],
            ),
            late: counter_vec(
                "records_late_total",
                "Valid records behind the watermark: kept in the raw lake, reported in the DLQ, left out of closed windows.",
                &["kind"],
            ),
            split_readings: counter_vec(
                "sensor_split_readings_total",
                "Readings of a sensor this worker also saw on another raw partition of its kind: its windows are split across partitions (producers not keyed by sensor id, or a raw topic given more partitions).",
                &["kind"],
            ),
            fenced: counter_vec(
                "lake_commits_fenced_total",
                "Commits refused because another member has committed the partition since this worker read its position (the worker lost it, e.g. paused past its session timeout): nothing of the commit is visible, and the worker stops.",
                &["table"],
            ),
            consumed: counter_vec("records_consumed_total", "Records read from raw topics.", &["kind"]),
            valid: counter_vec("records_valid_total", "Records that passed validation.", &["kind"]),
            rejected: counter_vec(
                "records_rejected_total",
                "Records sent to the DLQ, by reason.",
                &["kind", "reason"],
            ),
            dlq_produced: counter("dlq_produced_total", "DLQ messages acknowledged by the broker."),
            replay_skipped: counter(
                "records_replay_skipped_total",
                "Records read again after a restart that the lake already held.",
            ),
            lake_files: counter_vec(
                "lake_files_written_total",
                "Parquet files created in the lake.",
                &["table"],
            ),
            lake_bytes: counter_vec(
                "lake_bytes_written_total",
                "Parquet bytes created in the lake.",
                &["table"],
            ),
            commit_seconds: histogram(
                "commit_latency_seconds",
                "Time from sealing a flush to its offsets being committed.",
                prometheus::exponential_buckets(0.005, 2.0, 14).expect("valid buckets"),
            ),
            decode_seconds: histogram(
                "decode_seconds",
                "Time spent decoding and validating, per batch of messages.",
                prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets"),
            ),
            registry,
        }
    }

    /// Records windows of one kind and window shape closed.
    pub fn windows_closed(&self, kind: &str, window: &str, n: u64) {
        self.windows_closed.with_label_values(&[kind, window]).inc_by(n);
    }

    /// Records an alert state change; `rule` comes from the rule files, a small fixed set.
    pub fn alert(&self, rule: &str, state: &'static str) {
        self.alerts.with_label_values(&[rule, state]).inc();
    }

    /// Records a commit to `table` refused by fencing.
    pub fn fenced(&self, table: &str) {
        self.fenced.with_label_values(&[table]).inc();
    }

    /// Records readings of sensors seen on more than one raw partition of their kind.
    pub fn split_readings(&self, kind: &str, n: u64) {
        self.split_readings.with_label_values(&[kind]).inc_by(n);
    }

    /// Records late records of one kind.
    pub fn late(&self, kind: &str, n: u64) {
        self.late.with_label_values(&[kind]).inc_by(n);
    }

    /// Records decoded messages of one kind: `consumed` read, `valid` of them accepted.
    pub fn records_decoded(&self, kind: &str, consumed: u64, valid: u64) {
        self.consumed.with_label_values(&[kind]).inc_by(consumed);
        self.valid.with_label_values(&[kind]).inc_by(valid);
    }

    /// Records the time spent decoding and validating one batch of messages.
    pub fn decode_time(&self, seconds: f64) {
        self.decode_seconds.observe(seconds);
    }

    /// Records rejects of one reason (`reason` is from the DLQ contract's fixed set).
    pub fn rejected(&self, kind: &str, reason: &'static str, n: u64) {
        self.rejected.with_label_values(&[kind, reason]).inc_by(n);
    }

    /// Records DLQ messages the broker acknowledged.
    pub fn dlq_produced(&self, n: u64) {
        self.dlq_produced.inc_by(n);
    }

    /// Records replayed records skipped because the lake had them.
    pub fn replay_skipped(&self, n: u64) {
        self.replay_skipped.inc_by(n);
    }

    /// Records a lake file created.
    pub fn lake_file(&self, table: Table, bytes: u64) {
        self.lake_files.with_label_values(&[table.as_str()]).inc();
        self.lake_bytes.with_label_values(&[table.as_str()]).inc_by(bytes);
    }

    /// Records the latency of one offset commit.
    pub fn committed(&self, seconds: f64) {
        self.commit_seconds.observe(seconds);
    }

    /// Sets the lag of an assigned partition, from librdkafka statistics.
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// Forgets the lag of a partition this worker no longer holds.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let _ = self.consumer_lag.remove_label_values(&[topic, &partition.to_string()]);
    }

    /// Sets the number of assigned partitions; also what `/readyz` looks at.
    pub fn assigned_partitions(&self, n: usize) {
        self.assigned_partitions.set(n as i64);
        self.health.set_assigned(n);
    }

    /// Sets how far the newest event time seen is behind the wall clock.
    pub fn watermark_lag(&self, seconds: f64) {
        self.watermark_lag.set(seconds);
    }

    /// Records the time from an event to its row being durable and committed.
    pub fn end_to_end(&self, seconds: f64) {
        self.end_to_end_seconds.observe(seconds);
    }

    /// What `/healthz` and `/readyz` report.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The registry, for the `/metrics` endpoint.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Sets up logging to stderr: `RUST_LOG` filters (default info), JSON when asked.
pub fn init_tracing(json: bool) {
    init_tracing_with(json, QUIET_LIBRARIES);
}

/// The default filter: rade at info; librdkafka and delta-rs at warn (their errors reach rade
/// as results, which it reports itself); the Delta kernel not at all (it logs, at info and
/// error, every snapshot it builds and every table it finds missing).
pub const QUIET_LIBRARIES: &str = "info,rdkafka=warn,deltalake_core=warn,buoyant_kernel=off,buoyant_kernel_engine=off";

/// Like [`init_tracing`] with another default filter (the demo keeps its own output clean).
pub fn init_tracing_with(json: bool, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal, never in files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_rade_prefix() {
        let m = Metrics::new();
        m.records_decoded("noise", 10, 8);
        m.rejected("noise", "out_of_range", 2);
        m.lake_file(Table::Raw, 1234);
        let text = m.render();
        assert!(
            text.contains("rade_records_consumed_total{kind=\"noise\"} 10"),
            "{text}"
        );
        assert!(text.contains("rade_records_rejected_total{kind=\"noise\",reason=\"out_of_range\"} 2"));
        assert!(text.contains("rade_lake_bytes_written_total{table=\"raw\"} 1234"));
    }
}
