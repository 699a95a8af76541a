"""Encodes and decodes fixtures with the official Yandex Cloud Python SDK.

Reads JSON lines {"name", "type", "hex", "json"} on stdin. For each fixture it writes one JSON
line with what the SDK makes of it:
  "sdk_hex":  SerializeToString(deterministic=True) of json_format.Parse(json)
  "sdk_json": json_format.MessageToDict of the message parsed from hex
or "error" when the SDK rejects either form.
"""

import importlib
import json
import pkgutil
import sys

from google.protobuf import descriptor_pool, json_format, message_factory

# Importing the generated modules registers their types in the default pool.
PACKAGES = [
    "yandex.cloud.compute.v1",
    "yandex.cloud.containerregistry.v1",
    "yandex.cloud.operation",
    "yandex.cloud.endpoint",
]
MODULES = [
    "yandex.cloud.iam.v1.iam_token_service_pb2",
    "yandex.cloud.access.access_pb2",
    "google.rpc.status_pb2",
    "google.rpc.error_details_pb2",
    "google.protobuf.empty_pb2",
    "google.protobuf.field_mask_pb2",
    "google.protobuf.timestamp_pb2",
    "google.protobuf.any_pb2",
]


def load_schema():
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.endswith("_pb2"):
                importlib.import_module(f"{name}.{module.name}")
    for name in MODULES:
        importlib.import_module(name)


def message_class(full_name):
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


def repack_any_deterministically(message):
    """json_format.Parse packs an Any with a plain SerializeToString, whose map order is not
    fixed; repack every Any in `message` with the deterministic serialization."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = value.values() if field.message_type.fields_by_name["value"].message_type else []
        elif field.is_repeated:
            items = value
        else:
            items = [value]
        for item in items:
            if item.DESCRIPTOR.full_name == "google.protobuf.Any":
                inner = message_class(item.TypeName())()
                item.Unpack(inner)
                repack_any_deterministically(inner)
                item.value = inner.SerializeToString(deterministic=True)
            else:
                repack_any_deterministically(item)


def check(fixture):
    cls = message_class(fixture["type"])
    out = {"name": fixture["name"]}
    try:
        parsed = json_format.Parse(json.dumps(fixture["json"]), cls())
        repack_any_deterministically(parsed)
        out["sdk_hex"] = parsed.SerializeToString(deterministic=True).hex()
        decoded = cls()
        decoded.ParseFromString(bytes.fromhex(fixture["hex"]))
        out["sdk_json"] = json_format.MessageToDict(decoded)
    except Exception as e:  # the SDK's verdict is the result, whatever its kind
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def main():
    load_schema()
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(check(json.loads(line)), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
