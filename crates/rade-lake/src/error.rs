/// Errors of the lake; all are about storage, none about the data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid lake URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error("object store error on {path}: {source}")]
    Store { path: String, source: object_store::Error },
    #[error("cannot encode Parquet for {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("query: {0}")]
    Query(String),
    #[error("Parquet encoding task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Storage errors may pass (network, throttling); the caller retries them and commits nothing meanwhile.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Store { source, .. } if !matches!(source,
            object_store::Error::NotFound { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::UnknownConfigurationKey { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }))
    }
}

/// Result of the lake crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
