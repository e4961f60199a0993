use rade_schema::Disposition;

/// Errors of the worker: each stops it without committing more, unless
/// [`Error::disposition`] says it is transient.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] rade_kafka::Error),
    #[error("windows: {0}")]
    Windows(#[from] rade_window::Error),
    #[error("lake write failed: {0}")]
    Lake(#[from] rade_lake::Error),
    #[error("cannot start the window thread: {0}")]
    Spawn(std::io::Error),
    /// The window thread ended before the ingest thread let it go (it panicked).
    #[error("the window thread stopped")]
    WindowThreadStopped,
    /// A flush task panicked or was cancelled.
    #[error("a flush task failed: {0}")]
    FlushTask(#[from] tokio::task::JoinError),
    /// A flush waited on an earlier one that failed: the earlier error says why.
    #[error("an earlier flush failed")]
    EarlierFlushFailed,
    /// A fatal error happened before: nothing more is committed.
    #[error("an earlier error stopped the worker; nothing more is committed")]
    Stopped,
}

impl Error {
    /// What the worker does about it, from the library error it wraps.
    pub fn disposition(&self) -> Disposition {
        match self {
            Error::Kafka(e) => e.disposition(),
            Error::Windows(e) => e.disposition(),
            Error::Lake(e) => e.disposition(),
            Error::Spawn(_)
            | Error::WindowThreadStopped
            | Error::FlushTask(_)
            | Error::EarlierFlushFailed
            | Error::Stopped => Disposition::Fatal,
        }
    }

    pub(crate) fn kafka(doing: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka(rade_kafka::Error::kafka(doing, source))
    }
}

/// Result of the worker.
pub type Result<T, E = Error> = std::result::Result<T, E>;
