#!/usr/bin/env python3
"""Validates a CycloneDX BOM against the CycloneDX 1.6 JSON schema.

    validate_cyclonedx.py BOM.json

cyclonedx-python-lib's strict JSON validator (pinned in .ci/run; draft 7
with format checks, every error reported). Exit 0 if valid, 1 if not.
"""
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator


def main(path):
    with open(path) as f:
        errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(f.read(), all_errors=True)
    if errors:
        for e in errors:
            print(f"{path}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"cyclonedx-python-lib: {path} is valid CycloneDX 1.6")


if __name__ == "__main__":
    main(*sys.argv[1:])
