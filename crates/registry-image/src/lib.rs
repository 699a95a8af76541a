//! The Yandex Cloud Container Registry image domain.
//!
//! - [`oci`]: image manifests and OCI image layouts, with every digest and size verified.

pub mod oci;
