//! The header names of rade's DLQ records (DESIGN.md, "Topics"), in one place.

/// Why the record was rejected: one of `rade_schema::RejectReason`'s names.
pub const REASON: &str = "rade.reason";
/// A human sentence on what is wrong.
pub const DETAIL: &str = "rade.detail";
/// Where the original message was read.
pub const SOURCE_TOPIC: &str = "rade.source.topic";
pub const SOURCE_PARTITION: &str = "rade.source.partition";
pub const SOURCE_OFFSET: &str = "rade.source.offset";
/// The schema id of the message, when it is known.
pub const SCHEMA_ID: &str = "rade.schema.id";
/// A stable id of the reject, from its source position ([`dlq_id`]): consumers deduplicate on it.
pub const DLQ_ID: &str = "rade.dlq.id";
/// Claim check: the URL of the object in the lake that holds the original value, when the
/// value did not fit the DLQ topic (the record's value is then empty).
pub const OBJECT: &str = "rade.dlq.object";
/// Claim check: the size of the original value in bytes.
pub const OBJECT_SIZE: &str = "rade.dlq.object.size";
/// Claim check: the SHA-256 of the original value, lowercase hex.
pub const OBJECT_SHA256: &str = "rade.dlq.object.sha256";

/// The value of [`DLQ_ID`]: `<topic>/<partition>/<offset>`, the lake's lineage key of the same
/// position (`_topic`, `_partition`, `_offset`).
pub fn dlq_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// On `tpm.alerts`: the alert's stable id (`alert_id`), for consumers to deduplicate on.
pub const ALERT_ID: &str = "rade.alert.id";
