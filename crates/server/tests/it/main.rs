//! The integration tests of the crate, one test binary: a module per subject.

mod support;

mod access;
mod bad_input;
mod cli;
mod hostile;
mod integrity;
mod registry_push;
mod serve;
