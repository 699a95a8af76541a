//! An ergonomic face on the generated Compute image types: what a status means, the default
//! operating system, the hardware generation as a Rust enum. No copies of the generated
//! structs: helpers and conversions on them.

use yc_proto_types::yandex::cloud::compute::v1::hardware_generation::Features;
use yc_proto_types::yandex::cloud::compute::v1::{
    Generation2HardwareFeatures, HardwareGeneration, KmsKey, LegacyHardwareFeatures, Os,
    PciTopology, image, os,
};

/// What an image status means.
///
/// ```
/// use yc_compute_image::domain::StatusExt;
/// use yc_proto_types::yandex::cloud::compute::v1::image::Status;
///
/// assert!(Status::Ready.is_usable() && Status::Ready.is_final());
/// assert!(Status::Error.is_final() && !Status::Error.is_usable());
/// assert!(!Status::Creating.is_final() && !Status::Deleting.is_final());
/// ```
pub trait StatusExt {
    /// Whether disks can be made from an image in this status.
    fn is_usable(&self) -> bool;
    /// Whether the status no longer changes by itself.
    fn is_final(&self) -> bool;
}

impl StatusExt for image::Status {
    fn is_usable(&self) -> bool {
        *self == image::Status::Ready
    }

    fn is_final(&self) -> bool {
        matches!(self, image::Status::Ready | image::Status::Error)
    }
}

/// The operating system an image has when none is given: LINUX, keeping any NVIDIA driver.
///
/// ```
/// use yc_compute_image::domain::os_or_default;
/// use yc_proto_types::yandex::cloud::compute::v1::os;
///
/// assert_eq!(os_or_default(None).r#type, os::Type::Linux as i32);
/// ```
pub fn os_or_default(given: Option<Os>) -> Os {
    let mut os = given.unwrap_or_default();
    if os.r#type == os::Type::Unspecified as i32 {
        os.r#type = os::Type::Linux as i32;
    }
    os
}

/// The virtual hardware an image is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    /// Legacy hardware with a PCI topology.
    Legacy(PciTopology),
    /// Second-generation hardware.
    Generation2,
}

impl From<Hardware> for HardwareGeneration {
    /// ```
    /// use yc_compute_image::domain::Hardware;
    /// use yc_proto_types::yandex::cloud::compute::v1::{HardwareGeneration, PciTopology};
    ///
    /// let wire = HardwareGeneration::from(Hardware::Legacy(PciTopology::V2));
    /// assert_eq!(Hardware::try_from(&wire), Ok(Hardware::Legacy(PciTopology::V2)));
    /// ```
    fn from(hardware: Hardware) -> Self {
        let features = match hardware {
            Hardware::Legacy(topology) => Features::LegacyFeatures(LegacyHardwareFeatures {
                pci_topology: topology as i32,
            }),
            Hardware::Generation2 => Features::Generation2Features(Generation2HardwareFeatures {}),
        };
        HardwareGeneration {
            features: Some(features),
        }
    }
}

impl TryFrom<&HardwareGeneration> for Hardware {
    /// The generation carries no features, or a PCI topology this schema does not know.
    type Error = String;

    fn try_from(wire: &HardwareGeneration) -> Result<Self, Self::Error> {
        match &wire.features {
            Some(Features::Generation2Features(_)) => Ok(Hardware::Generation2),
            Some(Features::LegacyFeatures(legacy)) => PciTopology::try_from(legacy.pci_topology)
                .map(Hardware::Legacy)
                .map_err(|_| format!("unknown PCI topology {}", legacy.pci_topology)),
            None => Err("the hardware generation has no features".into()),
        }
    }
}

/// A KMS key reference.
pub fn kms_key(key_id: impl Into<String>, version_id: impl Into<String>) -> KmsKey {
    KmsKey {
        key_id: key_id.into(),
        version_id: version_id.into(),
    }
}
