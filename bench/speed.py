#!/usr/bin/env python3
"""decant against the copy-and-hash floor and against the Python peer, from one run.

    python3 bench/speed.py [--repeat 5] [--gib 1] [--shards 8] [--mib-per-shard 128]
                           [--peer-python PATH] [--decant PATH] [--no-build]
                           [--workdir DIR] [--only tiny,big,dir]

Issue 12's acceptance numbers come from this script. It builds the release
binary (unless --no-build) and generates its inputs with the stdlib-only
generators beside it (no torch needed for decant's side):

  tiny  fixtures/convert/example/pytorch_model.bin (a real torch.save file)
  big   a --gib GiB torch-zip checkpoint, 64 fp16/fp32 tensors
        (bench/make_checkpoint.py)
  dir   --shards shards of --mib-per-shard MiB plus an index
        (bench/make_model_dir.py), converted with --jobs 1 and --jobs 2

and measures, as medians of --repeat *paired* runs (each pair runs the two
sides back to back, alternating which goes first, so drift hits both; a
ratio is the median of the ratios within pairs):

  decant   `decant convert SRC -o OUT` (and `decant inspect SRC` for tiny)
  floor    `cp SRC COPY` + `openssl dgst -sha256` of SRC and of COPY, in
           sequence: the bytes decant must read, write and hash, moved by
           the fastest tools there are
  peer     `torch.load(SRC, weights_only=True)` + safetensors `save_file`
           (with --peer-python, a Python that has torch and safetensors;
           skipped without it), the conversion people run today

Each timed run is a fresh child process; peak memory is its maximum
resident size (see bench/timing.py), and
"cores busy" its CPU time (user + system, all threads) over its wall time:
on this 2-core machine 2.0 is every core busy for the whole run.
`sync` runs before every timed run so no run pays for another's writeback,
and the page cache is warm (sources are read once first), so the numbers
are CPU and memory-bandwidth bound, as on a CI machine converting a model it
just downloaded.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__
sys.path.insert(0, os.path.join(ROOT, "bench"))
import make_model_dir  # noqa: E402
from timing import child_usage as timed, peak_label  # noqa: E402

TINY = os.path.join(ROOT, "fixtures", "convert", "example", "pytorch_model.bin")

PEER = r"""
import sys, torch
from safetensors.torch import save_file
src, out = sys.argv[1], sys.argv[2]
sd = torch.load(src, map_location="cpu", weights_only=True)
if isinstance(sd, dict) and "state_dict" in sd:
    sd = sd["state_dict"]
tensors, seen = {}, {}
for name, t in sd.items():
    if not isinstance(t, torch.Tensor):
        continue
    key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
    if key in seen:
        continue
    seen[key] = name
    tensors[name] = t.contiguous()
save_file(tensors, out, metadata={"format": "pt"})
"""


def clean(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def floor(src, copy):
    """cp + two sha256 passes, as three children; summed wall and CPU, max RSS."""
    clean(copy)
    total, rss, cpu = 0.0, 0, 0.0
    for cmd in (["cp", src, copy], ["openssl", "dgst", "-sha256", src],
                ["openssl", "dgst", "-sha256", copy]):
        w, r, c = timed(cmd)
        total += w
        rss = max(rss, r)
        cpu += c
    clean(copy)
    return total, rss, cpu


def warm(path):
    paths = [path] if os.path.isfile(path) else [os.path.join(path, n) for n in sorted(os.listdir(path))]
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def paired(repeat, sides):
    """Runs each side `repeat` times, pairs alternating in order; returns
    {name: (median wall, max rss, all walls, median cores busy)}, where
    cores busy is CPU time over wall time."""
    walls = {name: [] for name, _ in sides}
    busy = {name: [] for name, _ in sides}
    rss = {name: 0 for name, _ in sides}
    for r in range(repeat):
        order = sides if r % 2 == 0 else list(reversed(sides))
        for name, run in order:
            w, m, c = run()
            walls[name].append(w)
            busy[name].append(c / w)
            rss[name] = max(rss[name], m)
    return {name: (statistics.median(walls[name]), rss[name], walls[name], statistics.median(busy[name]))
            for name, _ in sides}


def paired_ratio(results, name, other):
    """Median over pairs of name's wall time over other's in the same pair:
    steadier than a ratio of medians when the machine drifts."""
    return statistics.median(a / b for a, b in zip(results[name][2], results[other][2]))


def report(title, results, against):
    print(f"\n== {title}")
    for name, (wall, rss, walls, busy) in results.items():
        ratios = "; ".join(f"{paired_ratio(results, name, o):.3f} x {o}" for o in against
                           if o in results and o != name)
        print(f"  {name:<16} median {wall:8.3f} s  {peak_label()} {rss / 2**20:8.1f} MiB  cores busy {busy:4.2f}"
              f"{'  = ' + ratios if ratios and name.startswith('decant') else ''}"
              f"   (runs: {', '.join(f'{w:.3f}' for w in walls)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--mib-per-shard", type=float, default=128.0)
    ap.add_argument("--peer-python", default=None,
                    help="a python with torch and safetensors (the peer is skipped without it)")
    ap.add_argument("--decant", default=os.path.join(ROOT, "target", "release", "decant"))
    ap.add_argument("--no-build", action="store_true", help="use --decant as it is")
    ap.add_argument("--workdir", default=None, help="for the generated inputs (default: a temp dir)")
    ap.add_argument("--only", default="tiny,big,dir")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    only = set(args.only.split(","))

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    work = args.workdir or tempfile.mkdtemp(prefix="decant-speed-")
    os.makedirs(work, exist_ok=True)
    peer_script = os.path.join(work, "peer.py")
    with open(peer_script, "w") as f:
        f.write(PEER)
    d = args.decant
    print(f"decant {subprocess.run([d, '--version'], capture_output=True, text=True).stdout.strip()}; "
          f"{os.cpu_count()} cores; medians of {args.repeat} paired runs")
    try:
        cases = []
        if "tiny" in only:
            cases.append(("tiny", TINY))
        if "big" in only:
            big = os.path.join(work, "big.pt")
            if not os.path.exists(big):
                subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_checkpoint.py"),
                                big, "--gib", str(args.gib)], check=True)
            cases.append((f"{args.gib:g} GiB", big))
        for title, src in cases:
            out, copy, pout = (os.path.join(work, n) for n in ("out.safetensors", "copy.bin", "peer.safetensors"))
            warm(src)
            sides = [
                ("decant convert", lambda: (clean(out), timed([d, "convert", src, "-o", out]))[1]),
                ("floor", lambda: floor(src, copy)),
            ]
            if title == "tiny":
                sides.append(("decant inspect", lambda: timed([d, "inspect", src])))
            if args.peer_python:
                sides.append(("peer", lambda: (clean(pout), timed([args.peer_python, peer_script, src, pout]))[1]))
            results = paired(args.repeat, sides)
            report(f"{title}: {os.path.getsize(src)} bytes", results, ["floor", "peer"])
            if title == "tiny" and "peer" in results:
                print(f"  decant inspect = {paired_ratio(results, 'decant inspect', 'peer'):.3f} x peer")
            clean(out)
            clean(pout)
        if "dir" in only:
            src = os.path.join(work, "model")
            out = os.path.join(work, "out")
            if not os.path.exists(os.path.join(src, "pytorch_model.bin.index.json")):
                make_model_dir.write_model_dir(src, args.shards, args.mib_per_shard)
            warm(src)
            size = sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src))
            results = paired(args.repeat, [
                (f"decant --jobs {j}", (lambda j=j: (clean(out), timed([d, "convert", src, "-o", out,
                                                                          "--jobs", str(j)]))[1]))
                for j in (1, 2)])
            report(f"directory: {args.shards} shards, {size} bytes", results, [])
            print(f"  --jobs 2 is {1 / paired_ratio(results, 'decant --jobs 2', 'decant --jobs 1'):.2f} x as fast as --jobs 1")
            clean(out)
        return 0
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
