//! Event-time windows, watermarks, incremental aggregation and alert rules.
//!
//! Every valid record is folded into the partial aggregates of the windows it belongs to
//! ([`PartitionWindows::observe`]): one hash probe per record finds the sensor, whose open
//! windows of each shape ([`WindowSpec`]) keep count, min, max, sum, first and last per
//! measurement. Memory grows with sensors × open windows, never with records. When the
//! watermark ([`combined_watermark`]) passes a window's end, the window closes into an Arrow
//! batch; DataFusion then computes the derived columns declared in `rules/` and evaluates the
//! rules' SQL conditions over it ([`RuleSet`]), and each rule's state per sensor turns a
//! condition that starts or stops holding into exactly one RAISED or RESOLVED [`Alert`].

pub use alert::{Alert, AlertState, alert_id, alerts_batch};
pub use error::{Error, Result};
pub use layout::KindLayout;
pub use operator::{ClosedWindows, Observed, PartitionWindows, combined_watermark};
pub use rules::{EMBEDDED_RULES_DIR, KindRules, RuleSet, Severity};
pub use spec::{AlertFormat, WindowConfig, WindowSpec};

mod alert;
mod error;
mod layout;
mod operator;
mod rules;
mod spec;
mod template;
