use std::fmt;

/// Why a message goes to the dead-letter topic: the `rade.reason` header, a small fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    Malformed,
    UnknownSchema,
    SchemaMismatch,
    OutOfRange,
    MissingField,
    BadTimestamp,
    Late,
    TooLarge,
}

impl RejectReason {
    /// Every reason, in the order of the DLQ contract.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::Malformed,
        RejectReason::UnknownSchema,
        RejectReason::SchemaMismatch,
        RejectReason::OutOfRange,
        RejectReason::MissingField,
        RejectReason::BadTimestamp,
        RejectReason::Late,
        RejectReason::TooLarge,
    ];

    /// The value of the `rade.reason` header.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::UnknownSchema => "unknown_schema",
            RejectReason::SchemaMismatch => "schema_mismatch",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::Late => "late",
            RejectReason::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that cannot enter the lake: the reason, a human detail, and the schema id when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
    pub schema_id: Option<u32>,
}

impl Reject {
    pub(crate) fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Reject {
            reason,
            detail: detail.into(),
            schema_id: None,
        }
    }

    pub(crate) fn with_schema(mut self, id: u32) -> Self {
        self.schema_id = Some(id);
        self
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}
