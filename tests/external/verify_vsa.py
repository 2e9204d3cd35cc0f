#!/usr/bin/env python3
"""Checks a decant verification summary (SLSA VSA v1) as a consumer would.

    verify_vsa.py VSA PUBKEY ARTIFACT [RESOURCE_URI]

Follows the "How to verify" steps of the VSA spec (SLSA v1.2): the DSSE
envelope's Ed25519 signature verifies with PUBKEY (securesystemslib,
pinned in .ci/run); the subject matches ARTIFACT (a file: its sha256 is a
subject; a directory: its files are exactly the subjects, the attestation
read from inside it left out, as decant verify leaves it out); the
predicateType is the VSA's; the verifier is decant's; resourceUri is
RESOURCE_URI (default: ARTIFACT's file: URI); verificationResult is
PASSED; verifiedLevels holds a decant level. Exit 0 on success.
"""
import hashlib
import json
import os
import sys
import urllib.parse

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

PREDICATE = "https://slsa.dev/verification_summary/v1"
VERIFIER = "https://decant.dev/verifier/v1"
LEVELS = {"DECANT_CONVERSION_VERIFIED", "DECANT_BUNDLE_VERIFIED"}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_uri(path):
    uri = "file://" + urllib.parse.quote(os.path.realpath(path), safe="/-._~+=@")
    return uri + "/" if os.path.isdir(path) else uri


def main(vsa, pubkey, artifact, resource_uri=None):
    with open(pubkey, "rb") as f:
        key = SSlibKey.from_crypto(load_pem_public_key(f.read()))
    with open(vsa, "rb") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if len(lines) != 1:
        sys.exit(f"expected one envelope line, found {len(lines)}")
    env = Envelope.from_dict(json.loads(lines[0]))
    env.verify([key], 1)  # 1. the signature (raises VerificationError)
    if env.payload_type != "application/vnd.in-toto+json":
        sys.exit(f"unexpected payloadType {env.payload_type}")
    st = json.loads(env.payload)
    p = st["predicate"]
    subjects = {s["name"]: s["digest"]["sha256"] for s in st["subject"]}
    if os.path.isdir(artifact):  # 2. the subject
        read = {urllib.parse.unquote(a["uri"][len("file://"):]) for a in p["inputAttestations"]}
        files = {}
        for root, _, names in os.walk(artifact):
            for n in names:
                full = os.path.join(root, n)
                if os.path.realpath(full) not in read:
                    files[os.path.relpath(full, artifact)] = sha256(full)
        if files != subjects:
            diff = sorted(set(files.items()) ^ set(subjects.items()))
            sys.exit(f"the subjects are not the directory's files: {diff}")
    elif sha256(artifact) not in subjects.values():
        sys.exit(f"artifact sha256 {sha256(artifact)} is not a subject ({subjects})")
    if st["predicateType"] != PREDICATE:  # 3.
        sys.exit(f"predicateType {st['predicateType']} is not {PREDICATE}")
    if p["verifier"]["id"] != VERIFIER:  # 4.
        sys.exit(f"verifier {p['verifier']['id']} is not {VERIFIER}")
    want = resource_uri or file_uri(artifact)
    if p["resourceUri"] != want:  # 5.
        sys.exit(f"resourceUri {p['resourceUri']} is not {want}")
    if p["verificationResult"] != "PASSED":  # 6.
        sys.exit(f"verificationResult is {p['verificationResult']}")
    if not LEVELS & set(p["verifiedLevels"]):  # 7.
        sys.exit(f"verifiedLevels {p['verifiedLevels']} holds no decant level")
    print(f"securesystemslib: VSA signature verified with keyid {key.keyid}; "
          f"{p['verificationResult']} {','.join(p['verifiedLevels'])} "
          f"for {len(subjects)} subject(s) at {p['resourceUri']}")


if __name__ == "__main__":
    main(*sys.argv[1:])
