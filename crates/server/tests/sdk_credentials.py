"""The official Yandex Cloud Python SDK signing in as a program does with the real cloud: with a
service account's authorized key file (it signs a PS256 JWT and exchanges it through
IamTokenService.Create, found by discovery), and with an OAuth token. Each lists, and the
service account creates a registry and waits for it; the operation says who created it.

Usage: sdk_credentials.py ADDRESS CA_FILE KEY_FILE SERVICE_ACCOUNT OAUTH_TOKEN USER FOLDER.
Exits non-zero, saying what differed, on any mismatch.
"""

import json
import sys

import yandexcloud
from yandex.cloud.containerregistry.v1 import (
    registry_pb2,
    registry_service_pb2,
    registry_service_pb2_grpc,
)

address, ca_file, key_file, service_account, oauth, user, folder = sys.argv[1:8]
with open(ca_file, "rb") as ca:
    root = ca.read()
with open(key_file) as f:
    key = json.load(f)


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


sdk = yandexcloud.SDK(endpoint=address, root_certificates=root, service_account_key=key)
registries = sdk.client(registry_service_pb2_grpc.RegistryServiceStub)
before = registries.List(registry_service_pb2.ListRegistriesRequest(folder_id=folder))
operation = registries.Create(
    registry_service_pb2.CreateRegistryRequest(folder_id=folder, name="made-with-a-key")
)
check(operation.created_by == service_account, f"created_by is the service account: {operation}")
result = sdk.wait_operation_and_get_result(
    operation,
    response_type=registry_pb2.Registry,
    meta_type=registry_service_pb2.CreateRegistryMetadata,
)
check(result.response.name == "made-with-a-key", f"Create's result: {result.response}")
after = registries.List(registry_service_pb2.ListRegistriesRequest(folder_id=folder))
check(
    len(after.registries) == len(before.registries) + 1,
    f"one more registry: {before} then {after}",
)

as_user = yandexcloud.SDK(endpoint=address, root_certificates=root, token=oauth)
listed = as_user.client(registry_service_pb2_grpc.RegistryServiceStub).List(
    registry_service_pb2.ListRegistriesRequest(folder_id=folder)
)
check(
    "made-with-a-key" in [r.name for r in listed.registries],
    f"the user with an OAuth token lists the registry: {listed}",
)
try:
    as_user.client(registry_service_pb2_grpc.RegistryServiceStub).Create(
        registry_service_pb2.CreateRegistryRequest(folder_id=folder, name="viewer-may-not")
    )
    check(False, "a viewer's Create is refused")
except Exception as e:  # grpc.RpcError
    check("PERMISSION_DENIED" in str(e), f"a viewer's Create is refused: {e}")
print("the official Python SDK signed in with a key file and with an OAuth token")
