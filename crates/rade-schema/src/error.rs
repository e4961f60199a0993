use std::path::PathBuf;

/// Errors of loading the schema catalog; each names the file and, where it applies, the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Result of the schema crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What to do about it: a catalog that does not load stops startup. A bad record is not an
    /// error of this crate but a [`crate::Reject`].
    pub fn disposition(&self) -> crate::Disposition {
        crate::Disposition::Fatal
    }
}
