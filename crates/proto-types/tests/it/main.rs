//! The integration tests of the crate, one test binary: a module per subject.

// A test fails by panicking, with the error it met.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

mod access;
mod compute;
mod descriptors;
mod disks;
mod encoded;
mod endpoint;
mod json_inputs;
mod operation;
mod registry;
mod rpc;
mod sdk_conformance;
mod validation;
