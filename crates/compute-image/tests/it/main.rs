//! The integration tests of the crate, one test binary: a module per subject.

// A test fails by panicking, with the error it met.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod lifecycle;
mod query_plans;
mod races;
mod sources;
mod stores;
mod transport;
mod validation;
