//! The lake: the durable end of rade's data path, and the owner of its files.
//!
//! [`Lake`] is the entry type: opened at a [`LakeLocation`] (a local directory, `s3://`, or
//! memory for tests) with the S3 retry settings of [`LakeOptions`], it writes raw files
//! create-only under the Hive layout of DESIGN.md, the files of closed windows and alerts,
//! the window state, and the values too large for the DLQ. The worker buffers a partition's
//! rows in [`HourFiles`] (one open file per event hour, rolled into [`RawFile`]s), which a
//! [`ReplayIndex`] of what the lake already holds keeps from writing a row twice after a
//! crash. [`query_session`] reads the lake with DataFusion; [`Lake::compact`] merges small
//! files. object_store errors are classified once, in [`classify`].

pub use compact::{CompactOptions, CompactReport, visible_store};
pub use crash::crash_point;
pub use error::{Error, Result, classify};
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
