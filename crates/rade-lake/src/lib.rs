//! The Parquet lake on object storage, the durable end of the data path.
//!
//! [`Lake`] opens a [`LakeLocation`] (a local directory, `s3://`, or memory), writes raw files with
//! create-only semantics under the Hive layout of DESIGN.md, and lists what a partition
//! already wrote so that a replay after a crash skips rows that are durable ([`RawFile`]
//! names are deterministic from the Kafka offsets they cover).

pub use compact::{CompactOptions, CompactReport, visible_store};
pub use crash::crash_point;
pub use error::{Error, Result};
pub use geo::{GEOMETRY_COLUMN, raw_file_schema};
pub use layout::{DerivedFile, DerivedTable, RawFile, day_of, dlq_object_path, hour_of, state_path};
pub use location::{LakeLocation, LocationError};
pub use query::query_session;
pub use replay::ReplayIndex;
pub use rolling::{HourFiles, OpenFile, Pushed, Sealed};
pub use store::{Lake, LakeOptions, Written};

mod compact;
mod crash;
mod error;
mod geo;
mod layout;
mod location;
mod query;
mod replay;
mod retry;
mod rolling;
mod store;
