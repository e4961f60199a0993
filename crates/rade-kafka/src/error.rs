use rade_schema::Disposition;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Errors of the Kafka clients; [`Error::disposition`] says what the worker does about each.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach Kafka at {bootstrap} within {timeout_s} s: {source}")]
    Unreachable {
        bootstrap: String,
        timeout_s: u64,
        source: KafkaError,
    },
    #[error("Kafka client error while {doing}: {source}")]
    Kafka { doing: String, source: KafkaError },
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
        source: Box<KafkaError>,
    },
    /// The DLQ could not be read back from the last commits' positions.
    #[error("cannot read the DLQ topic {dlq}: {message}")]
    DlqTail { dlq: String, message: String },
    #[error("{topic} did not acknowledge {what}: {source}")]
    Publish {
        topic: String,
        what: &'static str,
        source: Box<KafkaError>,
    },
}

impl Error {
    /// A client error while doing something, in the words of the log.
    pub fn kafka(doing: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            doing: doing.into(),
            source,
        }
    }

    /// What to do about it. A DLQ that refused a reject after its retries, an alert topic that
    /// refused an alert and a configuration error are fatal; a client error is classified by
    /// its code ([`classify`]).
    pub fn disposition(&self) -> Disposition {
        match self {
            Error::Kafka { source, .. } => classify(source),
            Error::Unreachable { .. } => Disposition::Transient,
            Error::Client { .. } | Error::UnknownTopic { .. } => Disposition::Fatal,
            // Already retried by the sender; what is left is for the next owner to replay.
            Error::Dlq { .. } | Error::DlqTail { .. } | Error::Publish { .. } => Disposition::Fatal,
        }
    }
}

/// The one place where librdkafka's errors are classified: a broker, leader or coordinator
/// away and timeouts are transient; a message the broker refuses for its content or size is a
/// bad record; everything else (authorization, configuration, unknown topics) is fatal.
pub fn classify(e: &KafkaError) -> Disposition {
    use RDKafkaErrorCode as C;
    if matches!(e, KafkaError::Canceled) {
        // The client is shutting down under the call.
        return Disposition::Transient;
    }
    match e.rdkafka_error_code() {
        Some(
            C::QueueFull
            | C::MessageTimedOut
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::Resolve
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::PreferredLeaderNotAvailable
            | C::BrokerNotAvailable
            | C::NetworkException
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::KafkaStorageError
            | C::ThrottlingQuotaExceeded
            | C::RebalanceInProgress
            | C::IllegalGeneration
            | C::UnknownMemberId,
        ) => Disposition::Transient,
        Some(C::MessageSizeTooLarge | C::InvalidMessage | C::InvalidRecord | C::BadMessage) => Disposition::BadRecord,
        _ => Disposition::Fatal,
    }
}

/// Result of the Kafka clients.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_classified_by_their_code() {
        let produce = |c| KafkaError::MessageProduction(c);
        assert_eq!(classify(&produce(RDKafkaErrorCode::QueueFull)), Disposition::Transient);
        assert_eq!(
            classify(&produce(RDKafkaErrorCode::MessageTimedOut)),
            Disposition::Transient
        );
        assert_eq!(
            classify(&produce(RDKafkaErrorCode::MessageSizeTooLarge)),
            Disposition::BadRecord
        );
        assert_eq!(
            classify(&produce(RDKafkaErrorCode::TopicAuthorizationFailed)),
            Disposition::Fatal
        );
        let commit = KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress);
        assert_eq!(classify(&commit), Disposition::Transient);
        assert_eq!(classify(&KafkaError::Canceled), Disposition::Transient);
        let unknown = KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert_eq!(Error::kafka("committing", unknown).disposition(), Disposition::Fatal);
    }
}
