#!/usr/bin/env python3
"""Time converting a sharded model directory with --jobs 1 and --jobs 2.

    python3 bench/convert_dir.py [--shards 8] [--mib-per-shard 128] [--repeat 3]
                                 [--workdir DIR] [--decant PATH] [--no-build]

Builds the release binary (cargo build --release --locked, unless --no-build),
generates the model directory once with bench/make_model_dir.py (stdlib only,
no torch), then runs

    decant convert DIR -o OUT --jobs 1
    decant convert DIR -o OUT --jobs 2

--repeat times each, alternating the order (1,2 then 2,1, ...) so neither
always runs on a cache the other warmed.  OUT is removed before every run
(decant creates it) and `sync` runs right before each timed run, so no run
pays for another's writeback.  The page cache is warmed once by reading the
source shards.  Prints every wall time, the best per --jobs value, peak RSS,
and the speed-up best(--jobs 1) / best(--jobs 2).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__
sys.path.insert(0, os.path.join(ROOT, "bench"))
import make_model_dir  # noqa: E402
import timing  # noqa: E402


def expected_outputs(src, n_shards):
    """The converted shards, the new index, and every other file of the
    source directory (copied unchanged)."""
    copied = [n for n in os.listdir(src) if not n.endswith((".bin", ".bin.index.json"))]
    return sorted([f"model-{k:05d}-of-{n_shards:05d}.safetensors"
                   for k in range(1, n_shards + 1)] + ["model.safetensors.index.json"] + copied)


def warm(src):
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as f:
            while f.read(1 << 24):
                pass


def run(decant, src, out, jobs, n_shards):
    """Wall time and peak RSS (bytes) of one conversion, in a fresh child."""
    shutil.rmtree(out, ignore_errors=True)
    wall, rss = timing.child([decant, "convert", src, "-o", out, "--jobs", str(jobs)])
    got = sorted(n for n in os.listdir(out) if not n.endswith(".intoto.jsonl"))
    if got != expected_outputs(src, n_shards):
        sys.exit(f"{out}: unexpected outputs {got}")
    return wall, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--mib-per-shard", type=float, default=128.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None,
                    help="where to put the model dir and outputs (default: a temp dir, removed)")
    ap.add_argument("--decant", default=os.path.join(ROOT, "target", "release", "decant"))
    ap.add_argument("--no-build", action="store_true", help="use --decant as it is")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    work = args.workdir or tempfile.mkdtemp(prefix="decant-bench-dir-")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "model")
    out = os.path.join(work, "out")
    try:
        index = os.path.join(src, "pytorch_model.bin.index.json")
        if not os.path.exists(index):
            make_model_dir.write_model_dir(src, args.shards, args.mib_per_shard)
        size = sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src))
        warm(src)

        times = {1: [], 2: []}
        rss = {1: 0, 2: 0}
        for r in range(args.repeat):
            for jobs in ((1, 2) if r % 2 == 0 else (2, 1)):
                wall, peak = run(args.decant, src, out, jobs, args.shards)
                times[jobs].append(wall)
                rss[jobs] = max(rss[jobs], peak)
                print(f"run {r + 1} --jobs {jobs}: {wall:.2f} s", flush=True)
        best = {j: min(t) for j, t in times.items()}
        print(f"source: {args.shards} shards, {size / 2**20:.1f} MiB")
        for j in (1, 2):
            print(f"--jobs {j}: best of {args.repeat} {best[j]:.2f} s "
                  f"({size / 2**20 / best[j]:.0f} MiB/s); all: "
                  f"{', '.join(f'{t:.2f}' for t in times[j])}; peak RSS {rss[j] / 2**20:.1f} MiB")
        print(f"speed-up of --jobs 2 over --jobs 1 (best/best): {best[1] / best[2]:.2f}x")
        return 0
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
