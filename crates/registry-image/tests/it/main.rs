//! The integration tests of the crate, one test binary: a module per subject.

// A test fails by panicking, with the error it met.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod blobs;
mod fuzz;
mod gc;
mod images;
mod oci;
mod query_plans;
mod registries;
mod repositories;
mod stores;
mod transport;
