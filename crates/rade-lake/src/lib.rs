//! The lake: the durable end of rade's data path, and the owner of its files.
//!
//! [`Lake`] is the entry type: opened at a [`LakeLocation`] (a local directory, `s3://`, or
//! memory for tests) with the S3 retry settings of [`LakeOptions`]. Its tables are Delta Lake
//! tables (`delta.rs`): rade writes raw files under the Hive layout of DESIGN.md and the files
//! of closed windows and alerts, and [`Lake::commit`] makes them visible in one Delta commit
//! with the Kafka positions they cover (`txn`). It also keeps the window state and the values
//! too large for the DLQ. The worker buffers a partition's rows in [`HourFiles`] (one open
//! file per event hour, rolled into [`RawFile`]s), which a [`ReplayIndex`] of what the table
//! already holds keeps from writing a row twice after a crash. [`query_session`] reads the
//! tables with delta-rs's DataFusion provider; `maintain.rs` compacts and vacuums them.
//! object_store errors are classified once, in [`classify`].

pub use maintain::{CompactOptions, CompactReport, HistoryEntry, VacuumReport};
pub use crash::crash_point;
pub use delta::{AsOf, LiveFile, TableFile, TableId, app_id, stats_json};
pub use error::{Error, Result, classify};
pub use geo::{GEOMETRY_COLUMN, raw_file_schema};
pub use layout::{DerivedFile, DerivedTable, RawFile, day_of, dlq_object_path, hour_of, state_path};
pub use location::{LakeLocation, LocationError};
pub use query::query_session;
pub use replay::ReplayIndex;
pub use rolling::{HourFiles, OpenFile, Pushed, Sealed};
pub use store::{Lake, LakeOptions, Written};

mod crash;
mod delta;
mod error;
mod geo;
mod layout;
mod location;
mod maintain;
mod query;
mod replay;
mod retry;
mod rolling;
mod store;
