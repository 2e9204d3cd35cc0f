#!/usr/bin/env python3
"""Makes tampered copies for CI's negative checks.

    tamper.py dsse IN OUT   a DSSE envelope whose payload names another
                            subject digest, signature kept (a forged VSA)
    tamper.py bom IN OUT    a BOM with a hash algorithm CycloneDX does not
                            allow ("sha256"): schema-invalid
"""
import base64
import json
import sys


def main(mode, src, dst):
    with open(src) as f:
        text = f.read()
    if mode == "dsse":
        env = json.loads(text.splitlines()[0])
        st = json.loads(base64.b64decode(env["payload"]))
        digest = st["subject"][0]["digest"]["sha256"]
        st["subject"][0]["digest"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
        env["payload"] = base64.b64encode(json.dumps(st, separators=(",", ":"), sort_keys=True).encode()).decode()
        out = json.dumps(env) + "\n"
    elif mode == "bom":
        bom = json.loads(text)
        bom["components"][0]["hashes"][0]["alg"] = "sha256"
        out = json.dumps(bom, indent=2)
    else:
        sys.exit(f"unknown mode {mode}")
    with open(dst, "w") as f:
        f.write(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
