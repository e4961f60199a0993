//! Event-time windows, watermarks, incremental aggregation and alert rules: the stage after
//! validation. The crate owns window semantics, that is when a reading is late and when a
//! window closes; its entry type is [`WindowSet`], which the worker, the golden tests and the
//! window benchmark drive alike: [`WindowSet::fold`] per valid reading,
//! [`WindowSet::tick`] while input is idle, [`WindowSet::take_output`] for the closed windows
//! and alerts, [`WindowSet::snapshot`] and [`WindowSet::assign`] across restarts.
//!
//! Every valid record is folded into the partial aggregates of the windows it belongs to
//! ([`PartitionWindows`], one per Kafka partition): one hash probe per record finds the
//! sensor, whose open windows of each shape ([`WindowSpec`]) keep count, min, max, sum, first
//! and last per measurement. Memory grows with sensors × open windows, never with records.
//! When the combined watermark passes a window's end, the window closes into an Arrow batch;
//! DataFusion then computes the derived columns declared in `rules/` and evaluates the rules'
//! SQL conditions over it ([`RuleSet`]), and each rule's state per sensor turns a condition
//! that starts or stops holding into exactly one RAISED or RESOLVED [`Alert`].

pub use alert::{Alert, AlertState, alert_id, alerts_batch};
pub use error::{Error, Result};
pub use layout::KindLayout;
pub use operator::{ClosedWindows, Observed, PartitionWindows, combined_watermark};
pub use rules::{EMBEDDED_RULES_DIR, KindRules, RuleSet, Severity};
pub use set::{Folded, PartitionKey, PartitionOutput, WindowSet};
pub use spec::{AlertFormat, WindowConfig, WindowSpec};

mod alert;
mod eager;
mod error;
mod layout;
mod operator;
mod rules;
mod set;
mod spec;
mod template;
