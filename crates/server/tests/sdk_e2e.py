"""Drives a running yc-images with the official Yandex Cloud Python SDK's generated stubs and
its OperationWaiter, over a plaintext gRPC channel: every RPC of the compute ImageService and
OperationService, DiskService and SnapshotService (images made from seeded disks and
snapshots), the registry ImageService's reads and errors, every RPC of the RegistryService,
and endpoint discovery.

Usage: sdk_e2e.py ADDRESS IMAGE_URI. The server is seeded with the disks and snapshots of
folder b1gsdkfolder that the Rust test writes (see `serve.rs`). Exits non-zero, saying what differed, on any mismatch.
"""

import sys

import grpc
import sdk_checks
from google.protobuf import field_mask_pb2
from sdk_checks import check, expect_code
from yandex.cloud.compute.v1 import hardware_generation_pb2, image_pb2, image_service_pb2, image_service_pb2_grpc
from yandex.cloud.compute.v1 import disk_pb2, disk_service_pb2, disk_service_pb2_grpc
from yandex.cloud.compute.v1 import snapshot_pb2, snapshot_service_pb2, snapshot_service_pb2_grpc
from yandex.cloud.containerregistry.v1 import image_service_pb2 as cr_service_pb2
from yandex.cloud.containerregistry.v1 import image_service_pb2_grpc as cr_service_grpc
from yandex.cloud.containerregistry.v1 import registry_pb2, registry_service_pb2, registry_service_pb2_grpc
from yandex.cloud.containerregistry.v1 import repository_service_pb2, repository_service_pb2_grpc
from yandex.cloud.endpoint import api_endpoint_service_pb2, api_endpoint_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2, operation_service_pb2_grpc

address, uri = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel(address)
images = image_service_pb2_grpc.ImageServiceStub(channel)
operations = operation_service_pb2_grpc.OperationServiceStub(channel)
registry = cr_service_grpc.ImageServiceStub(channel)
registries = registry_service_pb2_grpc.RegistryServiceStub(channel)
repositories = repository_service_pb2_grpc.RepositoryServiceStub(channel)
endpoints = api_endpoint_service_pb2_grpc.ApiEndpointServiceStub(channel)
disks = disk_service_pb2_grpc.DiskServiceStub(channel)
snapshots = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
metadata = [("authorization", "Bearer test-token")]


def wait(operation):
    """The SDK's own waiter, polling OperationService.Get."""
    return sdk_checks.wait(operations, operation)


folder = "b1gsdkfolder"
create = images.Create(
    image_service_pb2.CreateImageRequest(folder_id=folder, name="sdk-image", family="sdk", uri=uri),
    metadata=metadata,
)
meta = image_service_pb2.CreateImageMetadata()
check(create.metadata.Unpack(meta), "Create metadata is CreateImageMetadata")
done = wait(create)
created = image_pb2.Image()
check(done.response.Unpack(created), "Create response is an Image")
check(created.status == image_pb2.Image.READY and created.id == meta.image_id, "the image is READY")

# Create from an image: the source's OS and hardware generation unless the request gives its
# own, which override them.
hw = hardware_generation_pb2
gen2 = hw.HardwareGeneration(generation2_features=hw.Generation2HardwareFeatures())
legacy = hw.HardwareGeneration(legacy_features=hw.LegacyHardwareFeatures(pci_topology=hw.PCI_TOPOLOGY_V2))
windows = image_pb2.Os(type=image_pb2.Os.Type.WINDOWS)
linux = image_pb2.Os(type=image_pb2.Os.Type.LINUX)
source = image_pb2.Image()
wait(
    images.Create(
        image_service_pb2.CreateImageRequest(
            folder_id=folder, name="sdk-source", uri=uri, os=windows, hardware_generation=gen2
        )
    )
).response.Unpack(source)
check(source.os == windows and source.hardware_generation == gen2, f"the source as given: {source}")
inherits = image_pb2.Image()
wait(
    images.Create(image_service_pb2.CreateImageRequest(folder_id=folder, name="sdk-inherits", image_id=source.id))
).response.Unpack(inherits)
check(
    inherits.os == windows and inherits.hardware_generation == gen2,
    f"a copy inherits the source's OS and hardware generation: {inherits}",
)
overrides = image_pb2.Image()
wait(
    images.Create(
        image_service_pb2.CreateImageRequest(
            folder_id=folder, name="sdk-overrides", image_id=source.id, os=linux, hardware_generation=legacy
        )
    )
).response.Unpack(overrides)
check(
    overrides.os == linux and overrides.hardware_generation == legacy,
    f"the request's OS and hardware generation override the source's: {overrides}",
)
for made in (source, inherits, overrides):
    wait(images.Delete(image_service_pb2.DeleteImageRequest(image_id=made.id)))

# Disks and snapshots, seeded; images made from them take their sizes, licenses and hardware
# generation (unless the request gives its own), and no OS (LINUX unless the request gives one).
disk = disks.Get(disk_service_pb2.GetDiskRequest(disk_id="fhmsdkdisk0000000000"))
check(
    disk.status == disk_pb2.Disk.READY and disk.size == 8 << 30 and disk.hardware_generation == gen2
    and list(disk.product_ids) == ["f2esdklicense0000000"],
    f"the seeded disk: {disk}",
)
listed_disks = disks.List(disk_service_pb2.ListDisksRequest(folder_id=folder, filter='status = "READY"', order_by="name desc"))
check([d.id for d in listed_disks.disks] == ["fhmsdkdisk0000000000"], f"DiskService.List: {listed_disks}")
snapshot = snapshots.Get(snapshot_service_pb2.GetSnapshotRequest(snapshot_id="fd8sdksnapshot000000"))
check(snapshot.status == snapshot_pb2.Snapshot.READY and snapshot.disk_size == 8 << 30, f"the seeded snapshot: {snapshot}")
listed_snapshots = snapshots.List(snapshot_service_pb2.ListSnapshotsRequest(folder_id=folder, page_size=1))
check(len(listed_snapshots.snapshots) == 1, f"SnapshotService.List: {listed_snapshots}")

from_disk = image_pb2.Image()
wait(images.Create(image_service_pb2.CreateImageRequest(folder_id=folder, name="sdk-from-disk", disk_id=disk.id))).response.Unpack(from_disk)
check(
    from_disk.status == image_pb2.Image.READY and from_disk.size == disk.size and from_disk.min_disk_size == disk.size
    and list(from_disk.product_ids) == list(disk.product_ids) and from_disk.hardware_generation == gen2
    and from_disk.os == linux,
    f"an image from a disk: {from_disk}",
)
from_snapshot = image_pb2.Image()
wait(
    images.Create(
        image_service_pb2.CreateImageRequest(
            folder_id=folder, name="sdk-from-snapshot", snapshot_id=snapshot.id, os=windows, hardware_generation=gen2
        )
    )
).response.Unpack(from_snapshot)
check(
    from_snapshot.size == snapshot.disk_size and from_snapshot.storage_size == snapshot.storage_size
    and from_snapshot.hardware_generation == gen2 and from_snapshot.os == windows,
    f"an image from a snapshot, the request's OS and hardware generation kept: {from_snapshot}",
)
inherits_snapshot = image_pb2.Image()
wait(images.Create(image_service_pb2.CreateImageRequest(folder_id=folder, name="sdk-snapshot-hw", snapshot_id=snapshot.id))).response.Unpack(inherits_snapshot)
check(inherits_snapshot.hardware_generation == legacy, f"the snapshot's hardware generation: {inherits_snapshot}")
expect_code(
    lambda: images.Create(image_service_pb2.CreateImageRequest(folder_id=folder, name="sdk-creating", disk_id="fhmsdkcreating000000")),
    grpc.StatusCode.FAILED_PRECONDITION,
    "Create from a disk that is not READY",
)
expect_code(
    lambda: images.Create(image_service_pb2.CreateImageRequest(folder_id=folder, name="sdk-none", snapshot_id="fd8nosuchsnapshot000")),
    grpc.StatusCode.NOT_FOUND,
    "Create from an unknown snapshot",
)
expect_code(
    lambda: images.Create(
        image_service_pb2.CreateImageRequest(folder_id=folder, name="sdk-small", disk_id=disk.id, min_disk_size=4 << 20)
    ),
    grpc.StatusCode.INVALID_ARGUMENT,
    "Create from a disk with a smaller min_disk_size",
)
for made in (from_disk, from_snapshot, inherits_snapshot):
    wait(images.Delete(image_service_pb2.DeleteImageRequest(image_id=made.id)))

got = images.Get(image_service_pb2.GetImageRequest(image_id=created.id), metadata=metadata)
check(got == created, "Get returns the created image")
latest = images.GetLatestByFamily(image_service_pb2.GetImageLatestByFamilyRequest(folder_id=folder, family="sdk"))
check(latest.id == created.id, "GetLatestByFamily")
listed = images.List(image_service_pb2.ListImagesRequest(folder_id=folder, filter='name = "sdk-image"', order_by="createdAt desc"))
check([i.id for i in listed.images] == [created.id], "List with filter and order")

update = images.Update(
    image_service_pb2.UpdateImageRequest(
        image_id=created.id,
        update_mask=field_mask_pb2.FieldMask(paths=["description", "labels"]),
        description="from the python sdk",
        labels={"sdk": "python"},
    )
)
updated = image_pb2.Image()
wait(update).response.Unpack(updated)
check(updated.description == "from the python sdk" and dict(updated.labels) == {"sdk": "python"}, "Update by mask")

ops = images.ListOperations(image_service_pb2.ListImageOperationsRequest(image_id=created.id))
check([o.description for o in ops.operations] == ["Update image", "Create image"], "ListOperations newest first")
fetched = operations.Get(operation_service_pb2.GetOperationRequest(operation_id=update.id))
check(fetched.done and fetched.id == update.id, "OperationService.Get")
cancelled = operations.Cancel(operation_service_pb2.CancelOperationRequest(operation_id=update.id))
check(cancelled == fetched, "Cancel of a finished operation returns it unchanged")
expect_code(lambda: operations.Get(operation_service_pb2.GetOperationRequest(operation_id="fd8nosuchop")), grpc.StatusCode.NOT_FOUND, "Get of an unknown operation")

delete = images.Delete(image_service_pb2.DeleteImageRequest(image_id=created.id))
check(wait(delete).HasField("response"), "Delete finishes with a response")
expect_code(lambda: images.Get(image_service_pb2.GetImageRequest(image_id=created.id)), grpc.StatusCode.NOT_FOUND, "Get after Delete")
error = expect_code(lambda: images.Get(image_service_pb2.GetImageRequest(image_id="x" * 51)), grpc.StatusCode.INVALID_ARGUMENT, "Get with a long id")
check(error.details() == "Request validation error: image_id: length must be at most 50", "the validation message")

empty = registry.List(cr_service_pb2.ListImagesRequest(folder_id=folder))
check(len(empty.images) == 0 and empty.next_page_token == "", "registry List of an empty folder")
expect_code(lambda: registry.Get(cr_service_pb2.GetImageRequest(image_id="crpnosuchimage")), grpc.StatusCode.NOT_FOUND, "registry Get")
expect_code(lambda: registry.Delete(cr_service_pb2.DeleteImageRequest(image_id="crpnosuchimage")), grpc.StatusCode.NOT_FOUND, "registry Delete")
expect_code(lambda: registry.List(cr_service_pb2.ListImagesRequest()), grpc.StatusCode.INVALID_ARGUMENT, "registry List without a scope")

# The RegistryService: a registry's whole life, as the SDK's stubs and waiter see it.
create = registries.Create(
    registry_service_pb2.CreateRegistryRequest(folder_id=folder, name="sdk-registry", labels={"team": "sdk"}),
    metadata=metadata,
)
meta = registry_service_pb2.CreateRegistryMetadata()
check(create.metadata.Unpack(meta), "Create metadata is CreateRegistryMetadata")
made = registry_pb2.Registry()
check(wait(create).response.Unpack(made), "Create response is a Registry")
check(made.id == meta.registry_id and made.id.startswith("crp"), "the registry's id")
check(made.status == registry_pb2.Registry.Status.ACTIVE, "a created registry is ACTIVE")
check(made.folder_id == folder and made.name == "sdk-registry" and made.labels["team"] == "sdk", "what Create gave")
got = registries.Get(registry_service_pb2.GetRegistryRequest(registry_id=made.id))
check(got == made, "Get answers what Create made")
listed = registries.List(registry_service_pb2.ListRegistriesRequest(folder_id=folder, filter='name = "sdk-registry"'))
check([r.id for r in listed.registries] == [made.id], "List with a name filter")
expect_code(
    lambda: registries.Create(registry_service_pb2.CreateRegistryRequest(folder_id=folder, name="sdk-registry")),
    grpc.StatusCode.ALREADY_EXISTS,
    "a second registry of the same name",
)
error = expect_code(
    lambda: registries.Create(registry_service_pb2.CreateRegistryRequest(folder_id=folder, name="Bad_Name")),
    grpc.StatusCode.INVALID_ARGUMENT,
    "a name the rules refuse",
)
check(error.details().startswith("Request validation error: name:"), f"the validation message: {error.details()}")
no_repositories = repositories.List(repository_service_pb2.ListRepositoriesRequest(registry_id=made.id))
check(len(no_repositories.repositories) == 0, "a new registry has no repositories")
expect_code(
    lambda: repositories.GetByName(repository_service_pb2.GetRepositoryByNameRequest(repository_name=made.id + "/app")),
    grpc.StatusCode.NOT_FOUND,
    "a repository without images",
)
update = registries.Update(
    registry_service_pb2.UpdateRegistryRequest(
        registry_id=made.id, update_mask=field_mask_pb2.FieldMask(paths=["labels"]), labels={"env": "test"}
    )
)
updated = registry_pb2.Registry()
check(wait(update).response.Unpack(updated), "Update response is a Registry")
check(dict(updated.labels) == {"env": "test"} and updated.name == "sdk-registry", "Update changes the masked field only")
done = wait(registries.Delete(registry_service_pb2.DeleteRegistryRequest(registry_id=made.id)))
check(done.HasField("response") and not done.HasField("error"), "Delete finishes")
expect_code(lambda: registries.Get(registry_service_pb2.GetRegistryRequest(registry_id=made.id)), grpc.StatusCode.NOT_FOUND, "Get after Delete")
expect_code(
    lambda: registry.List(cr_service_pb2.ListImagesRequest(registry_id=made.id)),
    grpc.StatusCode.NOT_FOUND,
    "images of a deleted registry",
)

found = endpoints.List(api_endpoint_service_pb2.ListApiEndpointsRequest())
check({e.id: e.address for e in found.endpoints}.get("compute") == address, "endpoint discovery names this server")
print("the official Python SDK agrees with yc-images")
