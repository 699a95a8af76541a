//! The integration tests of the crate, one test binary: a module per subject.

mod support;

mod lifecycle;
mod query_plans;
mod races;
mod stores;
mod transport;
mod validation;
