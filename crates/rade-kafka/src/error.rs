/// Errors of the Kafka stage; all of them stop the worker without committing more.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach Kafka at {bootstrap} within {timeout_s} s: {source}")]
    Unreachable {
        bootstrap: String,
        timeout_s: u64,
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka client error while {doing}: {source}")]
    Kafka {
        doing: String,
        source: rdkafka::error::KafkaError,
    },
    /// Creating a client failed; the text has its secrets redacted.
    #[error("Kafka client error while {doing}: {message}")]
    Client { doing: String, message: String },
    #[error("topic {topic} has no kind in the catalog (expected {prefix}<kind>)")]
    UnknownTopic { topic: String, prefix: String },
    #[error(
        "the DLQ topic {dlq} did not acknowledge the reject of {topic}/{partition}@{offset} after {attempts} attempt(s): {source}"
    )]
    Dlq {
        dlq: String,
        attempts: u32,
        topic: String,
        partition: i32,
        offset: i64,
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The DLQ could not be read back from the last commits' positions.
    #[error("cannot read the DLQ topic {dlq}: {message}")]
    DlqTail { dlq: String, message: String },
    #[error("{topic} did not acknowledge {what}: {source}")]
    Publish {
        topic: String,
        what: &'static str,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("windows: {0}")]
    Windows(#[from] rade_window::Error),
    #[error("lake write failed: {0}")]
    Lake(#[from] rade_lake::Error),
    #[error("the worker thread failed: {0}")]
    Thread(String),
}

impl Error {
    pub(crate) fn kafka(doing: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            doing: doing.into(),
            source,
        }
    }
}

/// Result of the Kafka stage.
pub type Result<T, E = Error> = std::result::Result<T, E>;
