use std::path::PathBuf;

/// What stops windows or rules from starting; every variant names the file, rule or key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("window `{label}`: {message}")]
    Window { label: String, message: String },
    #[error("{}: cannot read the rules: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    RuleFile { path: PathBuf, message: String },
    #[error("{}: rule `{rule}`: {message}", path.display())]
    Rule {
        path: PathBuf,
        rule: String,
        message: String,
    },
    #[error("{}: derived column `{column}` of `{kind}`: {message}", path.display())]
    Derived {
        path: PathBuf,
        kind: String,
        column: String,
        message: String,
    },
    #[error("kind `{kind}`: {message}")]
    Kind { kind: String, message: String },
    #[error("window state snapshot: {0}")]
    Snapshot(String),
    #[error("partition {topic}/{partition} is not assigned to the windows")]
    Unassigned { topic: String, partition: i32 },
    #[error("evaluating `{what}`: {message}")]
    Eval { what: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What the worker does about it: every error of windows and rules is fatal (a bad window,
    /// rule or state stops startup or the worker; nothing here is a record's fault).
    pub fn disposition(&self) -> rade_schema::Disposition {
        rade_schema::Disposition::Fatal
    }
}
