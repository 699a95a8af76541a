"""What the SDK test scripts share: a failed check exits non-zero saying what differed, an
expected gRPC error is checked by code, and operations are awaited with the SDK's own
OperationWaiter (polling OperationService.Get with the caller's metadata)."""

import sys
import time

import grpc
from yandexcloud._operation_waiter import OperationWaiter


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def expect_code(call, code, what):
    try:
        call()
    except grpc.RpcError as e:
        check(e.code() == code, f"{what}: {e.code()} is {code}")
        return e
    check(False, f"{what}: an error")


def wait(operations, operation, metadata=None):
    """The SDK's waiter on `operations` (an OperationService stub), as the operation's
    starter when `metadata` carries its token; the finished operation."""

    class AsCaller:
        def Get(self, request):
            return operations.Get(request, metadata=metadata)

    waiter = OperationWaiter(operation.id, AsCaller() if metadata else operations, timeout=60)
    for _ in waiter:
        time.sleep(0.05)
    done = waiter.operation
    check(done is not None and done.done, f"operation {operation.id} finished")
    return done
