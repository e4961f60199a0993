//! librdkafka's statistics (every `statistics.interval.ms`) into rade's metrics.

use rade_telemetry::Metrics;

/// Publishes whether a broker is up (for `/readyz`) and the lag of each partition this
/// consumer wants (`rade_consumer_lag`).
pub fn publish_consumer_stats(stats: &rdkafka::Statistics, metrics: &Metrics) {
    metrics
        .health()
        .set_broker_up(stats.brokers.values().any(|b| b.state == "UP"));
    for (topic, t) in &stats.topics {
        for (partition, s) in &t.partitions {
            // Partition -1 is librdkafka's internal queue; lag is -1 until known.
            if *partition >= 0 && s.desired && s.consumer_lag >= 0 {
                metrics.consumer_lag(topic, *partition, s.consumer_lag);
            }
        }
    }
}
