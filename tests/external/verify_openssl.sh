#!/usr/bin/env bash
# Checks a decant receipt's signature with the OpenSSL CLI alone:
#   verify_openssl.sh RECEIPT PUBKEY
# Rebuilds the DSSE PAE from the envelope and verifies pure Ed25519 over it.
set -euo pipefail
receipt=$1 pub=$2
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 - "$receipt" "$work" <<'PY'
import base64, json, sys
env = json.loads(open(sys.argv[1]).read().splitlines()[0])
body = base64.b64decode(env["payload"])
t = env["payloadType"].encode()
open(sys.argv[2] + "/pae", "wb").write(b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body))
open(sys.argv[2] + "/sig", "wb").write(base64.b64decode(env["signatures"][0]["sig"]))
PY
openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$work/pae" -sigfile "$work/sig"
