/// What the pipeline does about an error: every library error of rade says which of these it
/// calls for, so that the places that decide (DLQ, retry, stop) match on this, not on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// The record is at fault: it goes to the DLQ with a reason and the worker goes on.
    BadRecord,
    /// The outside world is, for now (a broker away, a throttled store): try again later; the
    /// worker keeps what it has and commits nothing past it meanwhile.
    Transient,
    /// Retrying cannot help (bad configuration, a refused write, a broken invariant): the worker
    /// stops, commits nothing more, and the next owner replays what was not durable.
    Fatal,
}

impl Disposition {
    /// The lower-case name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::BadRecord => "bad_record",
            Disposition::Transient => "transient",
            Disposition::Fatal => "fatal",
        }
    }
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
