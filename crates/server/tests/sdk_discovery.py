"""The official Yandex Cloud Python SDK given only yc-images' address, its CA certificate and an
IAM token, as a program would create it for the real cloud: it discovers every API through
ApiEndpointService, connects to what it found in its normal secure mode, lists, updates and
waits for the operation with its own helper.

Usage: sdk_discovery.py ADDRESS CA_FILE IAM_TOKEN FOLDER IMAGE_ID. Exits non-zero, saying
what differed, on any mismatch.
"""

import sys

import yandexcloud
from google.protobuf import field_mask_pb2
from yandex.cloud.compute.v1 import image_pb2, image_service_pb2, image_service_pb2_grpc

address, ca_file, token, folder, image_id = sys.argv[1:6]
with open(ca_file, "rb") as ca:
    sdk = yandexcloud.SDK(endpoint=address, root_certificates=ca.read(), iam_token=token)


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


images = sdk.client(image_service_pb2_grpc.ImageServiceStub)
listed = images.List(image_service_pb2.ListImagesRequest(folder_id=folder))
check([i.id for i in listed.images] == [image_id], f"List finds {image_id}: {listed}")

operation = images.Update(
    image_service_pb2.UpdateImageRequest(
        image_id=image_id,
        description="found by discovery",
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
    )
)
result = sdk.wait_operation_and_get_result(
    operation,
    response_type=image_pb2.Image,
    meta_type=image_service_pb2.UpdateImageMetadata,
)
check(result.response.description == "found by discovery", f"Update's result: {result.response}")
check(result.meta.image_id == image_id, f"Update's metadata: {result.meta}")
print("the official Python SDK found yc-images by discovery over TLS")
