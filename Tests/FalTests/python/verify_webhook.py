#!/usr/bin/env python3
"""Verifies a fal webhook signature outside Swift, with the `cryptography` package.

Usage: verify_webhook.py CASE.json
CASE.json: {"body_b64": "<raw body, base64>", "headers": {"X-Fal-Webhook-...": "..."}, "jwks": {...}}
Exit 0 and print OK when any JWKS key verifies; exit 1 and print the reason otherwise.
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def main() -> int:
    with open(sys.argv[1]) as f:
        case = json.load(f)
    body = base64.b64decode(case["body_b64"])
    headers = {k.lower(): v for k, v in case["headers"].items()}
    message = "\n".join([
        headers["x-fal-webhook-request-id"],
        headers["x-fal-webhook-user-id"],
        headers["x-fal-webhook-timestamp"],
        hashlib.sha256(body).hexdigest(),
    ]).encode("utf-8")
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for key in case["jwks"]["keys"]:
        if key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            continue
        try:
            Ed25519PublicKey.from_public_bytes(b64url(key["x"])).verify(signature, message)
            print("OK")
            return 0
        except InvalidSignature:
            continue
    print("BAD: no key verifies the signature")
    return 1


if __name__ == "__main__":
    sys.exit(main())
