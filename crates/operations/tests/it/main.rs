//! The integration tests of the crate, one test binary: a module per subject.

mod runner;
mod store_contract;
mod transport;
