//! The integration tests of the crate, one test binary: a module per subject.

// A test fails by panicking, with the error it met.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod retries;
mod runner;
mod store_contract;
mod transport;
