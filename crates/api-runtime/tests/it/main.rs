//! The integration tests of the crate, one test binary: a module per subject.

mod fuzz;
mod query;
