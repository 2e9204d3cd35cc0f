#!/usr/bin/env python3
"""Write a large sharded Hugging Face style model directory without torch (stdlib only).

Usage:
    python3 bench/make_model_dir.py OUTDIR --shards 8 --mib-per-shard 128
    python3 bench/make_model_dir.py OUTDIR --shards 2 --mib-per-shard 4 --tensors-per-shard 8

OUTDIR gets:
    pytorch_model-0000K-of-0000N.bin   K = 1..N, torch-zip checkpoints laid out
                                       exactly like bench/make_checkpoint.py's
                                       (archive/data.pkl, 64-byte aligned STORED
                                       records, float32 storages data/0..)
    pytorch_model.bin.index.json       {"metadata": {"total_size": ...},
                                        "weight_map": {name: shard file}}
                                       as transformers writes it (indent 2,
                                       sorted keys, trailing newline)
    config.json                        a small model config

Each shard holds --tensors-per-shard (rows, --cols) float32 tensors, four per
layer (layers.L.attn.qkv.weight, attn.out.weight, mlp.up.weight,
mlp.down.weight) with layer numbers running on across shards, sized so the
shard holds about --mib-per-shard MiB of tensor data.  Shard 1 also starts with
embed.norm.weight/bias and the last shard ends with head.bias and head.scale,
like make_checkpoint's plan.  No tensor is shared between shards, so
total_size is simply the sum of all tensor bytes.  Tensor data comes from
make_checkpoint's deterministic block, each tensor (numbered across the whole
model) at its own phase; the whole directory is reproducible byte for byte.
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # no bench/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_checkpoint as mc  # noqa: E402

PARTS = ("attn.qkv.weight", "attn.out.weight", "mlp.up.weight", "mlp.down.weight")


def shard_name(k, n):
    return f"pytorch_model-{k:05d}-of-{n:05d}.bin"


def plan_shards(n_shards, bytes_per_shard, per_shard, cols):
    """Return [[(name, shape)] per shard]."""
    head = [("embed.norm.weight", (cols,)), ("embed.norm.bias", (cols,))]
    tail = [("head.bias", (16,)), ("head.scale", ())]
    plans = []
    for k in range(n_shards):
        extra = (head if k == 0 else []) + (tail if k == n_shards - 1 else [])
        extra_bytes = sum(4 * mc._numel(s) for _, s in extra)
        rows = max(1, (bytes_per_shard - extra_bytes) // (per_shard * 4 * cols))
        big = []
        for j in range(per_shard):
            i = k * per_shard + j
            layer, part = divmod(i, len(PARTS))
            big.append((f"layers.{layer}.{PARTS[part]}", (rows, cols)))
        plans.append((head if k == 0 else []) + big + (tail if k == n_shards - 1 else []))
    return plans


def write_shard(path, plan, first_index, block, sid):
    """One torch-zip archive, record for record as make_checkpoint.write_checkpoint."""
    z = mc.AlignedZip(path)
    try:
        z.write_bytes(f"{mc.ROOT}/data.pkl", mc.build_pickle(plan))
        z.write_bytes(f"{mc.ROOT}/.format_version", b"1")
        z.write_bytes(f"{mc.ROOT}/.storage_alignment", b"64")
        z.write_bytes(f"{mc.ROOT}/byteorder", b"little")
        for key, (_, shape) in enumerate(plan):
            nbytes = 4 * mc._numel(shape)
            z.write_chunks(f"{mc.ROOT}/data/{key}", nbytes,
                           mc.iter_tensor_bytes(block, first_index + key, nbytes))
        z.write_bytes(f"{mc.ROOT}/version", b"3\n")
        z.write_bytes(f"{mc.ROOT}/.data/serialization_id", ("%040d" % sid)[-40:].encode())
    finally:
        z.close()


def write_model_dir(outdir, n_shards=8, mib_per_shard=128.0, per_shard=16, cols=1024,
                    quiet=False):
    os.makedirs(outdir, exist_ok=True)
    plans = plan_shards(n_shards, int(mib_per_shard * (1 << 20)), per_shard, cols)
    block = mc.make_block()
    weight_map, total, index = {}, 0, 0
    for k, plan in enumerate(plans, start=1):
        name = shard_name(k, n_shards)
        sid = (k * 1000003 + n_shards) * 1000003 + int(mib_per_shard * (1 << 20)) + cols
        write_shard(os.path.join(outdir, name), plan, index, block, sid)
        index += len(plan)
        for tname, shape in plan:
            assert tname not in weight_map, tname
            weight_map[tname] = name
            total += 4 * mc._numel(shape)
        if not quiet:
            print(f"wrote {name}: {len(plan)} tensors, "
                  f"{os.path.getsize(os.path.join(outdir, name))} bytes")
    idx = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(outdir, "pytorch_model.bin.index.json"), "w") as f:
        f.write(json.dumps(idx, indent=2, sort_keys=True) + "\n")
    layers = (n_shards * per_shard + len(PARTS) - 1) // len(PARTS)
    config = {"architectures": ["BenchModel"], "hidden_size": cols, "model_type": "bench",
              "num_hidden_layers": layers, "torch_dtype": "float32"}
    with open(os.path.join(outdir, "config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if not quiet:
        print(f"{outdir}: {n_shards} shards, {len(weight_map)} tensors, "
              f"total_size {total} ({total / 2**20:.1f} MiB)")
    return idx


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", help="directory to create (files in it are overwritten)")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--mib-per-shard", type=float, default=128.0,
                    help="tensor data per shard in MiB (default 128)")
    ap.add_argument("--tensors-per-shard", type=int, default=16,
                    help="large (rows, cols) float32 tensors per shard (default 16)")
    ap.add_argument("--cols", type=int, default=1024)
    args = ap.parse_args(argv)
    if min(args.shards, args.tensors_per_shard, args.cols) < 1 or args.mib_per_shard <= 0:
        ap.error("sizes must be positive")
    if args.shards > 99999:
        ap.error("at most 99999 shards")
    write_model_dir(args.outdir, args.shards, args.mib_per_shard, args.tensors_per_shard,
                    args.cols)


if __name__ == "__main__":
    main()
