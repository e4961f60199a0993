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
    #[error("{0}")]
    Busy(String),
    #[error("Parquet encoding task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Result of the lake crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
