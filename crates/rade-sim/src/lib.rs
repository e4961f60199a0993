//! Realistic SMART TPM sensor traffic, valid and chosen invalid, for tests, demos and benches.
//!
//! [`Simulator`] holds a fleet of a few thousand sensors placed over the Toulon territory
//! ([`Fleet`]), computes readings that follow daily cycles with noise, encodes them in a
//! chosen wire format with apache-avro (an encoder independent of rade's decoder), and makes
//! invalid messages of every DLQ reason on request. [`produce`] sends them to Kafka.

pub use fleet::{Fleet, Sensor};
pub use produce::{ProduceStats, Progress, produce};
pub use sim::{Expect, FormatChoice, SIMULATED_REASONS, SimRecord, Simulator};

mod fleet;
mod produce;
mod readings;
mod sim;
