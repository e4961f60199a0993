use rade_schema::Reject;
use rdkafka::message::{Header, OwnedHeaders};

/// A rejected message on its way to the DLQ: the original key and value, untouched.
#[derive(Debug)]
pub struct DlqRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The DLQ headers of DESIGN.md: reason, detail, source position and schema id when known.
pub fn dlq_headers(record: &DlqRecord<'_>, reject: &Reject) -> OwnedHeaders {
    let partition = record.partition.to_string();
    let offset = record.offset.to_string();
    let mut h = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: "rade.reason",
            value: Some(reject.reason.as_str()),
        })
        .insert(Header {
            key: "rade.detail",
            value: Some(reject.detail.as_str()),
        })
        .insert(Header {
            key: "rade.source.topic",
            value: Some(record.topic),
        })
        .insert(Header {
            key: "rade.source.partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "rade.source.offset",
            value: Some(offset.as_str()),
        });
    if let Some(id) = reject.schema_id {
        h = h.insert(Header {
            key: "rade.schema.id",
            value: Some(id.to_string().as_str()),
        });
    }
    h
}
