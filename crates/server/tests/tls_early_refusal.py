"""Uploads without credentials over TLS and HTTP/1.1, as oras-py sends them first: the server
refuses them before reading the body, and the client must still get the 401 with its
challenge, never a broken connection. Usage: tls_early_refusal.py BASE_URL CA_FILE REPOSITORY
"""

import hashlib
import sys

import requests


def main() -> None:
    base, ca, repository = sys.argv[1:4]
    session = requests.Session()
    answered = 0
    for size, attempts in ((20_000, 20), (300_000, 20), (4_000_000, 5)):
        body = bytes(range(256)) * (size // 256)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        for attempt in range(attempts):
            for method, path in (
                ("POST", f"/v2/{repository}/blobs/uploads/?digest={digest}"),
                ("PUT", f"/v2/{repository}/blobs/uploads/uplnosuchupload00000?digest={digest}"),
                ("PATCH", f"/v2/{repository}/blobs/uploads/uplnosuchupload00000"),
            ):
                response = session.request(
                    method, base + path, data=body, verify=ca, timeout=10,
                    headers={"Content-Type": "application/octet-stream"},
                )
                assert response.status_code == 401, (method, size, attempt, response.status_code, response.text)
                assert "Basic" in response.headers.get("WWW-Authenticate", ""), response.headers
                assert response.json()["errors"][0]["code"] == "UNAUTHORIZED", response.text
                answered += 1
    print(f"early refusals answered: {answered}")


if __name__ == "__main__":
    main()
