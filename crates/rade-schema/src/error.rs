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
