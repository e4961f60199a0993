use rade_schema::Reject;
use rdkafka::message::{Header, OwnedHeaders};

use crate::headers;

/// A rejected message on its way to the DLQ: the original key and value, untouched.
#[derive(Debug)]
pub struct DlqRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The DLQ headers of DESIGN.md: reason, detail, source position, the reject's stable id and
/// the schema id when known.
pub fn dlq_headers(record: &DlqRecord<'_>, reject: &Reject) -> OwnedHeaders {
    let partition = record.partition.to_string();
    let offset = record.offset.to_string();
    let id = headers::dlq_id(record.topic, record.partition, record.offset);
    let mut h = with_headers(
        OwnedHeaders::new_with_capacity(8),
        &[
            (headers::REASON, reject.reason.as_str()),
            (headers::DETAIL, reject.detail.as_str()),
            (headers::SOURCE_TOPIC, record.topic),
            (headers::SOURCE_PARTITION, partition.as_str()),
            (headers::SOURCE_OFFSET, offset.as_str()),
            (headers::DLQ_ID, id.as_str()),
        ],
    );
    if let Some(id) = reject.schema_id {
        h = h.insert(Header {
            key: headers::SCHEMA_ID,
            value: Some(id.to_string().as_str()),
        });
    }
    h
}

/// `h` with these text headers added, in order.
pub fn with_headers(mut h: OwnedHeaders, pairs: &[(&str, &str)]) -> OwnedHeaders {
    for &(key, value) in pairs {
        h = h.insert(Header {
            key,
            value: Some(value),
        });
    }
    h
}
