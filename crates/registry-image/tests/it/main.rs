//! The integration tests of the crate, one test binary: a module per subject.

mod support;

mod blobs;
mod fuzz;
mod images;
mod oci;
mod query_plans;
mod stores;
mod transport;
