#!/usr/bin/env python3
"""Checks a decant receipt with an independent DSSE verifier.

    verify_securesystemslib.py ARTIFACT RECEIPT PUBKEY

securesystemslib (PyPI, pinned in .ci/run) verifies the envelope's Ed25519
signature over the DSSE PAE with the SPKI public key, using its default
keyid (decant sets the same keyid, so no keyid argument is needed); then the
statement's subject must carry the artifact's sha256. Exit 0 on success.
"""
import hashlib
import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def main(artifact, receipt, pubkey):
    with open(pubkey, "rb") as f:
        key = SSlibKey.from_crypto(load_pem_public_key(f.read()))
    with open(receipt, "rb") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if len(lines) != 1:
        sys.exit(f"expected one envelope line, found {len(lines)}")
    env = Envelope.from_dict(json.loads(lines[0]))
    env.verify([key], 1)  # raises VerificationError
    if env.payload_type != "application/vnd.in-toto+json":
        sys.exit(f"unexpected payloadType {env.payload_type}")
    statement = json.loads(env.payload)
    with open(artifact, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    subjects = [s["digest"].get("sha256") for s in statement["subject"]]
    if digest not in subjects:
        sys.exit(f"artifact sha256 {digest} is not a subject ({subjects})")
    print(f"securesystemslib: signature verified with keyid {key.keyid}; subject {digest} matches")


if __name__ == "__main__":
    main(*sys.argv[1:])
