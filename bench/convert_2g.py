#!/usr/bin/env python3
"""Convert a generated 2 GiB checkpoint and compare with the I/O floor.

    python3 bench/convert_2g.py [--gib 2] [--workdir DIR] [--decant PATH]

Generates a torch-zip checkpoint with bench/make_checkpoint.py (stdlib only,
no torch needed), then measures, in the same run and on the same files:

  floor  = cp SRC COPY + openssl dgst -sha256 SRC + openssl dgst -sha256 COPY
           (reading, writing and hashing the same bytes decant must move)
  decant = decant convert SRC -o OUT (release build), wall time and peak
           resident memory (bench/timing.py)

Acceptance (issue 2): peak RSS < 256 MiB and wall time < 2 x floor. Each
measurement is the best of --repeat runs, with the page cache warm.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__
sys.path.insert(0, os.path.join(ROOT, "bench"))
import timing  # noqa: E402


def settle():
    """Flush dirty pages left by the previous step, so no run pays for another's writeback."""
    subprocess.run(["sync"], check=True)


def timed(cmd, **kw):
    settle()
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def decant_run(decant, src, out):
    """Wall time and peak RSS (bytes) of one conversion, in a fresh child."""
    if os.path.exists(out):
        os.remove(out)
    return timing.child([decant, "convert", src, "-o", out])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--workdir", default=None, help="where to put the 2 GiB files (default: a temp dir)")
    ap.add_argument("--decant", default=os.path.join(ROOT, "target", "release", "decant"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-build", action="store_true", help="use --decant as it is")
    args = ap.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    work = args.workdir or tempfile.mkdtemp(prefix="decant-bench-")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "big.pt")
    copy = os.path.join(work, "copy.pt")
    out = os.path.join(work, "big.safetensors")
    try:
        if not os.path.exists(src):
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_checkpoint.py"), src,
                            "--gib", str(args.gib)], check=True)
        size = os.path.getsize(src)
        # Warm the page cache so both sides read from memory.
        timed(["openssl", "dgst", "-sha256", src])

        floors, runs = [], []
        for _ in range(args.repeat):
            if os.path.exists(copy):
                os.remove(copy)
            f = timed(["cp", src, copy])
            f += timed(["openssl", "dgst", "-sha256", src])
            f += timed(["openssl", "dgst", "-sha256", copy])
            floors.append(f)
            runs.append(decant_run(args.decant, src, out))
        floor = min(floors)
        wall = min(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        out_size = os.path.getsize(out)
        print(f"source: {size / 2**30:.2f} GiB ({size} bytes); output {out_size} bytes")
        print(f"floor (cp + 2 x openssl sha256), best of {args.repeat}: {floor:.2f} s")
        print(f"decant convert, best of {args.repeat}: {wall:.2f} s = {wall / floor:.2f} x floor "
              f"(all runs: {', '.join(f'{r[0]:.2f}' for r in runs)})")
        print(f"decant peak RSS (max over runs): {rss / 2**20:.1f} MiB")
        ok = rss < 256 * 2**20 and wall < 2 * floor
        print("PASS" if ok else "FAIL", "(targets: RSS < 256 MiB, wall < 2 x floor)")
        return 0 if ok else 1
    finally:
        for p in (copy, out):
            if os.path.exists(p):
                os.remove(p)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
