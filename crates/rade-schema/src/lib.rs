//! Schemas of the TPM sensor kinds and the first stage of the data path.
//!
//! [`Catalog`] loads the Avro schemas of the sensor kinds from `schemas/` (with the ranges each
//! field declares and a stable schema id per version); a kind's latest version is its reader
//! schema, into which records of its older versions are resolved. [`Decoder`] turns one Kafka
//! message value, in any of the three wire formats (Confluent framing, Avro single-object,
//! JSON), into a validated [`Row`] of the reader schema or a [`Reject`] with its DLQ reason;
//! [`RowBatchBuilder`] appends rows into Arrow columns with the lake's lineage columns, ready
//! for the Parquet writer.

pub use builder::{LINEAGE_COLUMNS, Lineage, RowBatchBuilder};
pub use canonical::{crc64_avro, fingerprint, parsing_canonical_form};
pub use catalog::{Catalog, CatalogSource, FieldSpec, FieldType, KindSchema};
pub use decode::{DecodeLimits, Decoder, Row, Value};
pub use disposition::Disposition;
pub use error::{Error, Result};
pub use reject::{Reject, RejectReason};
pub use schedule::Schedule;
pub use wire::WireFormat;

mod builder;
mod canonical;
mod catalog;
mod decode;
mod disposition;
mod error;
mod reject;
mod resolve;
mod schedule;
mod wire;
