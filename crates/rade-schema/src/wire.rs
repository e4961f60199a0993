use crate::catalog::KindSchema;

/// How a raw message value is framed; detected per message, so producers may mix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// 0x00, a 4-byte big-endian schema id, then the Avro binary body.
    Confluent,
    /// 0xC3 0x01, the 8-byte little-endian CRC-64-AVRO fingerprint, then the Avro binary body.
    SingleObject,
    /// A JSON object with the schema's field names.
    Json,
}

impl WireFormat {
    /// Confluent wire-format magic byte.
    pub const CONFLUENT_MAGIC: u8 = 0x00;
    /// Avro single-object encoding marker.
    pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

    /// The format of a value by its first bytes, or `None` when none matches.
    pub fn detect(value: &[u8]) -> Option<WireFormat> {
        match value {
            [0x00, ..] => Some(WireFormat::Confluent),
            [0xC3, 0x01, ..] => Some(WireFormat::SingleObject),
            _ => {
                let first = value.iter().find(|b| !b.is_ascii_whitespace())?;
                (*first == b'{').then_some(WireFormat::Json)
            }
        }
    }

    /// An Avro binary `body` of `schema`, framed in this format: the magic bytes and the schema
    /// id (Confluent) or fingerprint (single-object) first. JSON has no frame: the body as is.
    pub fn frame(self, schema: &KindSchema, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 10);
        match self {
            WireFormat::Confluent => {
                out.push(WireFormat::CONFLUENT_MAGIC);
                out.extend_from_slice(&schema.id.to_be_bytes());
            }
            WireFormat::SingleObject => {
                out.extend_from_slice(&WireFormat::SINGLE_OBJECT_MAGIC);
                out.extend_from_slice(&schema.fingerprint.to_le_bytes());
            }
            WireFormat::Json => {}
        }
        out.extend_from_slice(body);
        out
    }

    /// Name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::Confluent => "confluent",
            WireFormat::SingleObject => "single-object",
            WireFormat::Json => "json",
        }
    }
}

impl std::str::FromStr for WireFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "confluent" => Ok(WireFormat::Confluent),
            "single-object" => Ok(WireFormat::SingleObject),
            "json" => Ok(WireFormat::Json),
            other => Err(format!(
                "unknown wire format `{other}` (expected confluent, single-object or json)"
            )),
        }
    }
}
