"""Access bindings on a compute image through the official Yandex Cloud Python SDK's stubs and
its OperationWaiter: the folder's editor binds a subject of another folder to the image, which
lets that subject read it and make an image of its own from it; removing the binding takes
that away again.

Usage: sdk_bindings.py ADDRESS EDITOR_TOKEN STRANGER_TOKEN STRANGER_ID STRANGER_FOLDER IMAGE_ID.
Exits non-zero, saying what differed, on any mismatch.
"""

import sys

import grpc
import sdk_checks
from sdk_checks import check, expect_code
from yandex.cloud.access import access_pb2
from yandex.cloud.compute.v1 import image_pb2, image_service_pb2, image_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2_grpc

address, editor_token, stranger_token, stranger_id, stranger_folder, image_id = sys.argv[1:7]
channel = grpc.insecure_channel(address)
images = image_service_pb2_grpc.ImageServiceStub(channel)
operations = operation_service_pb2_grpc.OperationServiceStub(channel)
editor = [("authorization", f"Bearer {editor_token}")]
stranger = [("authorization", f"Bearer {stranger_token}")]


def wait(operation, metadata):
    return sdk_checks.wait(operations, operation, metadata)


def get_as_stranger():
    return images.Get(image_service_pb2.GetImageRequest(image_id=image_id), metadata=stranger)


binding = access_pb2.AccessBinding(
    role_id="compute.images.user",
    subject=access_pb2.Subject(id=stranger_id, type="userAccount"),
)

expect_code(get_as_stranger, grpc.StatusCode.PERMISSION_DENIED, "Get before the binding")
expect_code(
    lambda: images.SetAccessBindings(
        access_pb2.SetAccessBindingsRequest(resource_id=image_id, access_bindings=[binding]),
        metadata=stranger,
    ),
    grpc.StatusCode.PERMISSION_DENIED,
    "the stranger binds itself",
)

started = images.SetAccessBindings(
    access_pb2.SetAccessBindingsRequest(resource_id=image_id, access_bindings=[binding]),
    metadata=editor,
)
meta = access_pb2.SetAccessBindingsMetadata()
check(started.metadata.Unpack(meta) and meta.resource_id == image_id, "SetAccessBindingsMetadata")
done = wait(started, editor)
result = access_pb2.AccessBindingsOperationResult()
check(done.response.Unpack(result), "Set's response is an AccessBindingsOperationResult")
check(
    [(d.action, d.access_binding) for d in result.effective_deltas] == [(access_pb2.ADD, binding)],
    f"Set's effective deltas: {result}",
)

listed = images.ListAccessBindings(
    access_pb2.ListAccessBindingsRequest(resource_id=image_id), metadata=stranger
)
check(list(listed.access_bindings) == [binding] and listed.next_page_token == "", f"listed: {listed}")

# The stranger reads the image and makes an image of its own folder from it.
check(get_as_stranger().id == image_id, "Get with the binding")
copy = images.Create(
    image_service_pb2.CreateImageRequest(folder_id=stranger_folder, name="copy", image_id=image_id),
    metadata=stranger,
)
copied = image_pb2.Image()
check(wait(copy, stranger).response.Unpack(copied), "Create from the bound image finishes")
check(copied.folder_id == stranger_folder and copied.status == image_pb2.Image.READY, f"copy: {copied}")

# Adding what is there changes nothing; removing the binding takes the access away.
again = wait(
    images.UpdateAccessBindings(
        access_pb2.UpdateAccessBindingsRequest(
            resource_id=image_id,
            access_binding_deltas=[access_pb2.AccessBindingDelta(action=access_pb2.ADD, access_binding=binding)],
        ),
        metadata=editor,
    ),
    editor,
)
result = access_pb2.AccessBindingsOperationResult()
check(again.response.Unpack(result) and len(result.effective_deltas) == 0, f"a second ADD: {result}")
removed = wait(
    images.UpdateAccessBindings(
        access_pb2.UpdateAccessBindingsRequest(
            resource_id=image_id,
            access_binding_deltas=[access_pb2.AccessBindingDelta(action=access_pb2.REMOVE, access_binding=binding)],
        ),
        metadata=editor,
    ),
    editor,
)
result = access_pb2.AccessBindingsOperationResult()
check(removed.response.Unpack(result) and len(result.effective_deltas) == 1, f"REMOVE: {result}")
expect_code(get_as_stranger, grpc.StatusCode.PERMISSION_DENIED, "Get after the binding is removed")

# Bad input names the field.
error = expect_code(
    lambda: images.SetAccessBindings(
        access_pb2.SetAccessBindingsRequest(
            resource_id=image_id,
            access_bindings=[access_pb2.AccessBinding(role_id="owner", subject=binding.subject)],
        ),
        metadata=editor,
    ),
    grpc.StatusCode.INVALID_ARGUMENT,
    "an unknown role",
)
check("access_bindings[0].role_id" in error.details(), f"the error names the field: {error.details()}")
print("the official Python SDK binds a subject to an image")
