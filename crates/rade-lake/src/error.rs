use object_store::client::{HttpError, HttpErrorKind};
use rade_schema::Disposition;

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
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
    /// Another member committed this partition's position since this worker read it: the
    /// partition has moved, and this worker's files of it must not become visible.
    #[error("table {table}: fenced, {app_id} {why} (the partition has a new owner)")]
    Fenced { table: String, app_id: String, why: String },
    #[error("Parquet encoding task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Result of the lake crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What the worker does about it: a store that is away or throttling (after object_store's
    /// own retries) is transient, and so is a lease another run holds; a refused write, a lake
    /// that cannot be opened or a corrupt file is fatal. Nothing here is the record's fault.
    pub fn disposition(&self) -> Disposition {
        match self {
            Error::Store { source, .. } => classify(source),
            Error::Busy(_) => Disposition::Transient,
            // delta-rs has retried its requests and conflicting commits already.
            Error::Table { .. } | Error::Fenced { .. } => Disposition::Fatal,
            Error::Open { .. } | Error::Parquet { .. } | Error::Query(_) | Error::Task(_) => Disposition::Fatal,
        }
    }
}

/// The one place where object_store's errors are classified, once its own retries are spent.
///
/// Transient: a connection that failed, dropped or timed out, and a 5xx, 429 or 408 answer
/// (object_store retried them `max_retries` times within `retry_timeout`: the store is away
/// or throttling for longer, which a later flush may outlast). Fatal: everything the store
/// refused on purpose (a create that found the object, not found, a precondition, bad or
/// missing credentials, another 4xx), a local file system error, and whatever is not known.
pub fn classify(e: &object_store::Error) -> Disposition {
    match e {
        object_store::Error::Generic { .. } => match cause(e) {
            Cause::Http(
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted,
            ) => Disposition::Transient,
            Cause::Status(status) if status >= 500 || status == 429 || status == 408 => Disposition::Transient,
            Cause::Http(_) | Cause::Status(_) | Cause::Other => Disposition::Fatal,
        },
        // NotFound, AlreadyExists, Precondition, NotModified, PermissionDenied, Unauthenticated,
        // InvalidPath, NotSupported, NotImplemented, UnknownConfigurationKey, JoinError, and
        // variants a later object_store adds (the enum is non-exhaustive).
        _ => Disposition::Fatal,
    }
}

/// What failed underneath an object_store error, from one walk of its source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The request did not get an answer.
    Http(HttpErrorKind),
    /// The store answered with this status, which object_store's specific variants do not
    /// name (5xx, 429, 408, most 4xx).
    Status(u16),
    /// Neither (a local file system error, a configuration or signing problem).
    Other,
}

/// The cause of `e`: the first [`HttpError`] or answer status in its source chain.
pub(crate) fn cause(e: &object_store::Error) -> Cause {
    let object_store::Error::Generic { source, .. } = e else {
        return Cause::Other;
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(e) = next {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return Cause::Http(http.kind());
        }
        if let Some(status) = status_in(&e.to_string()) {
            return Cause::Status(status);
        }
        next = e.source();
    }
    Cause::Other
}

/// The status in the text of object_store's `RetryError`. object_store 0.13 keeps that type
/// and its `status()` in a private module, so its text is the only place the status of an
/// answer without a variant of its own shows; the unit test against a real HTTP answer
/// (`tests::a_store_that_answers_5xx_is_transient`) catches a change of that text.
fn status_in(text: &str) -> Option<u16> {
    const MARK: &str = "Server returned non-2xx status code: ";
    let at = text.find(MARK)? + MARK.len();
    text.get(at..at + 3)?.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    pub(crate) fn generic(kind: HttpErrorKind) -> object_store::Error {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(kind, io)),
        }
    }

    #[test]
    fn connection_failures_are_transient_and_bad_answers_fatal() {
        for kind in [
            HttpErrorKind::Connect,
            HttpErrorKind::Request,
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
        ] {
            assert_eq!(classify(&generic(kind)), Disposition::Transient, "{kind:?}");
        }
        for kind in [HttpErrorKind::Decode, HttpErrorKind::Unknown] {
            assert_eq!(classify(&generic(kind)), Disposition::Fatal, "{kind:?}");
        }
        let source = || -> Box<dyn std::error::Error + Send + Sync> { "refused".into() };
        for refused in [
            object_store::Error::AlreadyExists {
                path: "p".into(),
                source: source(),
            },
            object_store::Error::NotFound {
                path: "p".into(),
                source: source(),
            },
            object_store::Error::Precondition {
                path: "p".into(),
                source: source(),
            },
            object_store::Error::PermissionDenied {
                path: "p".into(),
                source: source(),
            },
            object_store::Error::Unauthenticated {
                path: "p".into(),
                source: source(),
            },
            // A local disk error: no HTTP underneath.
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(std::io::Error::other("No space left on device")),
            },
        ] {
            assert_eq!(classify(&refused), Disposition::Fatal, "{refused}");
        }
        // The lake's own errors say it too.
        let store = Error::Store {
            path: "p".into(),
            source: generic(HttpErrorKind::Timeout),
        };
        assert_eq!(store.disposition(), Disposition::Transient);
        assert_eq!(Error::Busy("leased".into()).disposition(), Disposition::Transient);
    }

    #[test]
    fn the_status_is_read_from_object_stores_text() {
        assert_eq!(
            status_in(
                "Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code: 503 Service Unavailable: <Error/>"
            ),
            Some(503)
        );
        assert_eq!(status_in("Server returned error response: <Error/>"), None);
    }

    /// An S3 store, without retries, on a local server that answers every request with `status`.
    async fn answering(status: &'static str) -> (Arc<dyn ObjectStore>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (s3_at(&format!("http://{addr}")), server)
    }

    fn s3_at(endpoint: &str) -> Arc<dyn ObjectStore> {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .expect("an S3 client");
        Arc::new(s3)
    }

    #[tokio::test]
    async fn a_store_that_answers_5xx_is_transient() {
        for (status, expected) in [
            ("503 Service Unavailable", Disposition::Transient),
            ("500 Internal Server Error", Disposition::Transient),
            ("429 Too Many Requests", Disposition::Transient),
            ("400 Bad Request", Disposition::Fatal),
            ("403 Forbidden", Disposition::Fatal),
            ("404 Not Found", Disposition::Fatal),
        ] {
            let (store, server) = answering(status).await;
            let e = store
                .put(&Path::from("k"), PutPayload::from_static(b"x"))
                .await
                .expect_err(status);
            assert_eq!(classify(&e), expected, "{status}: {e}");
            server.abort();
        }
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_reached_is_transient() {
        // A port nothing listens on any more.
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let e = s3_at(&format!("http://{addr}"))
            .put(&Path::from("k"), PutPayload::from_static(b"x"))
            .await
            .expect_err("refused");
        assert_eq!(cause(&e), Cause::Http(HttpErrorKind::Connect), "{e}");
        assert_eq!(classify(&e), Disposition::Transient);
    }
}
