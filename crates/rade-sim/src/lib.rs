//! Realistic SMART TPM sensor traffic, valid and chosen invalid, for tests, demos and benches.
//!
//! [`Simulator`] holds a fleet of a few thousand sensors placed over the Toulon territory
//! ([`Fleet`]), computes readings that follow daily cycles with noise, encodes them in a
//! chosen wire format with apache-avro (an encoder independent of rade's decoder), and makes
//! invalid messages of every DLQ reason on request. [`Traffic`] plays what the fleet sends over
//! a span of event time, each device on its kind's schedule from the catalog, with a
//! [`Scenario`] of the territory over it if asked. [`produce`] sends them to Kafka.

pub use fleet::{Fleet, Sensor};
pub use produce::{Pace, ProduceStats, Progress, produce, produce_paced};
pub use scenario::{ExpectedAlert, Scenario};
pub use sim::{Expect, FormatChoice, SIMULATED_REASONS, SimRecord, Simulator};
pub use traffic::{Traffic, TrafficPlan};

mod fleet;
mod produce;
mod readings;
mod scenario;
mod sim;
mod traffic;
