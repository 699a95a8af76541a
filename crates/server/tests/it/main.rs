//! The integration tests of the crate, one test binary: a module per subject.

// A test fails by panicking, with the error it met.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod access;
mod bad_input;
mod cli;
mod credentials;
mod hostile;
mod integrity;
mod object_storage;
mod registry_push;
mod serve;
