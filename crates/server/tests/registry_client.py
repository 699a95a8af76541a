"""A registry's whole workflow with unmodified clients against a running yc-images: the
official Python SDK creates a registry, python-dxf (a registry client from PyPI) pushes a
single-platform and a multi-platform image into it and pulls them back byte for byte, lists
the catalog and the tags; the SDK lists the repositories and images, deletes them and waits;
the blobs are then collected (the server runs with no grace period), and the registry goes.

Usage: registry_client.py ADDRESS. Exits non-zero, saying what differed, on any mismatch.
"""

import hashlib
import json
import sys
import time

import grpc
import requests
from dxf import DXF, DXFBase
from yandexcloud._operation_waiter import OperationWaiter
from yandex.cloud.containerregistry.v1 import image_service_pb2, image_service_pb2_grpc
from yandex.cloud.containerregistry.v1 import registry_pb2, registry_service_pb2, registry_service_pb2_grpc
from yandex.cloud.containerregistry.v1 import repository_service_pb2, repository_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2_grpc

address = sys.argv[1]
channel = grpc.insecure_channel(address)
registries = registry_service_pb2_grpc.RegistryServiceStub(channel)
repositories = repository_service_pb2_grpc.RepositoryServiceStub(channel)
images = image_service_pb2_grpc.ImageServiceStub(channel)
operations = operation_service_pb2_grpc.OperationServiceStub(channel)


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def wait(operation):
    waiter = OperationWaiter(operation.id, operations, timeout=60)
    for _ in waiter:
        time.sleep(0.05)
    done = waiter.operation
    check(done is not None and done.done and not done.HasField("error"), f"operation {operation.id} succeeded")
    return done


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# The SDK creates the registry.
made = registry_pb2.Registry()
wait(registries.Create(registry_service_pb2.CreateRegistryRequest(folder_id="b1gclients", name="clients"))).response.Unpack(made)
check(made.status == registry_pb2.Registry.Status.ACTIVE, "the registry is ACTIVE")


def image(dxf, seed, architecture):
    """Pushes an image's config and layer with python-dxf; returns its manifest's JSON."""
    config = json.dumps({"architecture": architecture, "os": "linux", "config": {"Labels": {"seed": seed}}}).encode()
    layer = (f"{architecture} layer of {seed} ".encode()) * 50_000
    blobs = {}
    for data in (config, layer):
        digest = dxf.push_blob(data=iter([data]), digest=digest_of(data))
        check(digest == digest_of(data), "push_blob answers the digest")
        blobs[digest] = data
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(layer), "size": len(layer)}],
    })
    return manifest, blobs


def pulled(dxf, digest):
    return b"".join(dxf.pull_blob(digest))


# A single-platform image, tagged; pulled back byte for byte.
app = DXF(address, f"{made.id}/app", insecure=True)
single, single_blobs = image(app, "single", "amd64")
app.set_manifest("v1", single)
check(app.get_manifest("v1") == single, "the manifest comes back as pushed")
for digest, data in single_blobs.items():
    check(pulled(app, digest) == data, f"blob {digest} comes back as pushed")

# A multi-platform image: each platform's manifest by digest, then the index, tagged.
multi = DXF(address, f"{made.id}/multi", insecure=True)
platforms = []
multi_blobs = {}
for architecture in ("amd64", "arm64"):
    manifest, blobs = image(multi, "multi", architecture)
    multi_blobs.update(blobs)
    multi.set_manifest(digest_of(manifest.encode()), manifest)
    platforms.append({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest_of(manifest.encode()),
        "size": len(manifest.encode()),
        "platform": {"architecture": architecture, "os": "linux"},
    })
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": platforms})
multi.set_manifest("v1", index)
got = multi.get_manifest("v1")
check(set(got) == {"linux/amd64", "linux/arm64"}, f"python-dxf reads the index's platforms: {sorted(got)}")
for entry in platforms:
    platform = entry["platform"]["os"] + "/" + entry["platform"]["architecture"]
    check(digest_of(got[platform].encode()) == entry["digest"], f"the {platform} manifest comes back as pushed")
raw = requests.get(f"http://{address}/v2/{made.id}/multi/manifests/v1", timeout=30)
check(raw.content == index.encode(), "the index comes back as pushed")
for digest, data in multi_blobs.items():
    check(pulled(multi, digest) == data, f"blob {digest} comes back as pushed")

# The catalog and the tags.
repos = DXFBase(address, insecure=True).list_repos()
check(repos == [f"{made.id}/app", f"{made.id}/multi"], f"the catalog: {repos}")
check(app.list_aliases() == ["v1"], "the tags of app")

# The SDK sees the repositories and images, and deletes them.
listed = repositories.List(repository_service_pb2.ListRepositoriesRequest(registry_id=made.id))
check([r.name for r in listed.repositories] == [f"{made.id}/app", f"{made.id}/multi"], "ListRepositories")
found = images.List(image_service_pb2.ListImagesRequest(registry_id=made.id)).images
check(len(found) == 4, f"one single-platform image, two platforms and the index: {len(found)}")
index_image = [i for i in found if i.digest == digest_of(index.encode())]
check(len(index_image) == 1 and list(index_image[0].tags) == ["v1"], "the index is one tagged image")
for found_image in found:
    wait(images.Delete(image_service_pb2.DeleteImageRequest(image_id=found_image.id)))
check(len(repositories.List(repository_service_pb2.ListRepositoriesRequest(registry_id=made.id)).repositories) == 0, "no repositories without images")

# The server collects every second with no grace period: the blobs go.
layer_digest = [d for d, data in single_blobs.items() if len(data) > 1000][0]
deadline = time.time() + 30
while time.time() < deadline:
    if requests.head(f"http://{address}/v2/{made.id}/app/blobs/{layer_digest}", timeout=30).status_code == 404:
        break
    time.sleep(0.2)
check(requests.head(f"http://{address}/v2/{made.id}/app/blobs/{layer_digest}", timeout=30).status_code == 404, "the deleted image's layer is collected")

# An empty registry is deleted.
wait(registries.Delete(registry_service_pb2.DeleteRegistryRequest(registry_id=made.id)))
print("python-dxf and the official Python SDK agree with yc-images")
