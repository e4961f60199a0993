/// Errors of the lake; all are about storage, none about the data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the lake {location}: {message}")]
    Open { location: String, message: String },
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

impl Error {
    /// What the worker does about it: a store that is away or throttling (after object_store's
    /// own retries) is transient; a refused write, a lake that cannot be opened or a corrupt file is fatal.
    /// Nothing here is the record's fault.
    pub fn disposition(&self) -> rade_schema::Disposition {
        use rade_schema::Disposition;
        match self {
            Error::Store { source, .. } => classify(source),
            Error::Busy(_) => Disposition::Transient,
            Error::Open { .. } | Error::Parquet { .. } | Error::Query(_) | Error::Task(_) => Disposition::Fatal,
        }
    }
}

/// The one place where object_store's errors are classified.
pub fn classify(e: &object_store::Error) -> rade_schema::Disposition {
    use object_store::client::{HttpError, HttpErrorKind};
    use rade_schema::Disposition;
    match e {
        object_store::Error::Generic { source, .. } => {
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(e) = next {
                if let Some(http) = e.downcast_ref::<HttpError>() {
                    return match http.kind() {
                        HttpErrorKind::Connect
                        | HttpErrorKind::Request
                        | HttpErrorKind::Timeout
                        | HttpErrorKind::Interrupted => Disposition::Transient,
                        _ => Disposition::Fatal,
                    };
                }
                next = e.source();
            }
            Disposition::Fatal
        }
        _ => Disposition::Fatal,
    }
}
