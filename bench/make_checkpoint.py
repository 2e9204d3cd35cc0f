#!/usr/bin/env python3
"""Write a large torch-zip-format checkpoint without torch (stdlib only).

Usage:
    python3 bench/make_checkpoint.py OUT.pt --gib 2
    python3 bench/make_checkpoint.py OUT.pt --mib 8
    python3 bench/make_checkpoint.py OUT.pt --mib 8 --tensors 16 --cols 256

The archive is laid out the way torch.save (torch 2.15, default settings)
lays it out when saving to a file object:

    archive/data.pkl              protocol 2 pickle of an OrderedDict
    archive/.format_version       "1"
    archive/.storage_alignment    "64"
    archive/byteorder             "little"
    archive/data/0 .. data/N-1    raw little-endian float32 storages
    archive/version               "3\\n"
    archive/.data/serialization_id  40 decimal digits

Every record is STORED, its data starts at a multiple of 64 bytes (an extra
field with id "FB" padded with "Z", like torch's PyTorchStreamWriter), and
ZIP64 extensions are used where sizes or offsets need them.

Each state-dict value is pickled as torch does it:
    GLOBAL 'torch._utils _rebuild_tensor_v2'
    (BINPERSID ('storage', GLOBAL 'torch FloatStorage', key, 'cpu', numel),
     storage_offset, size, stride, requires_grad, OrderedDict()) REDUCE
without importing torch: stand-in functions/classes live in fake `torch` /
`torch._utils` modules, placed in sys.modules only while pickling, so the
stdlib pickler emits exactly those GLOBALs.

Tensor data is deterministic: a 1 MiB block of float32 values in [-1, 1)
from random.Random(0), repeated, each tensor starting at a different phase.
The file is written in chunks, so memory use stays small at any size.
The CRC-32 of every record is correct (zipfile computes it while writing).
"""

import argparse
import array
import collections
import contextlib
import io
import os
import pickle
import random
import struct
import sys
import types
import zipfile

ALIGN = 64
BLOCK_BYTES = 1 << 20
ROOT = "archive"


# --------------------------------------------------------------------------
# Stand-ins that make the stdlib pickler write torch's GLOBALs.
# --------------------------------------------------------------------------

def _make_fake_torch():
    """Build fake `torch` and `torch._utils` modules holding the stand-ins.

    pickle.save_global() imports obj.__module__ and checks that
    getattr(module, obj.__qualname__) is obj, so while pickling the stand-ins
    must be reachable there: fake_torch_modules() puts these modules into
    sys.modules for the duration of the dump only (and puts back whatever was
    there, e.g. the real torch when a verification script imported it).
    """
    torch_mod = types.ModuleType("torch")
    utils_mod = types.ModuleType("torch._utils")
    torch_mod._utils = utils_mod

    def _rebuild_tensor_v2(*args):  # never called: only pickled by reference
        raise RuntimeError("stand-in")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    _rebuild_tensor_v2.__name__ = "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2

    float_storage = type("FloatStorage", (), {"__module__": "torch"})
    float_storage.__qualname__ = "FloatStorage"
    torch_mod.FloatStorage = float_storage
    return {"torch": torch_mod, "torch._utils": utils_mod}, _rebuild_tensor_v2, float_storage


FAKE_MODULES, REBUILD_TENSOR_V2, FLOAT_STORAGE = _make_fake_torch()


@contextlib.contextmanager
def fake_torch_modules():
    saved = {name: sys.modules.get(name) for name in FAKE_MODULES}
    sys.modules.update(FAKE_MODULES)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


class Storage:
    """A float32 storage: pickled only through its persistent id."""

    def __init__(self, key, numel):
        self.key = key
        self.numel = numel


class Tensor:
    """A contiguous float32 tensor over a whole Storage."""

    def __init__(self, storage, shape):
        self.storage = storage
        self.shape = tuple(shape)

    def stride(self):
        strides = []
        acc = 1
        for dim in reversed(self.shape):
            strides.append(acc)
            acc *= dim
        return tuple(reversed(strides))

    def __reduce_ex__(self, protocol):
        # Same argument tuple torch._tensor._reduce_ex_internal builds:
        # (storage, storage_offset, tuple(size), stride, requires_grad,
        #  backward_hooks=OrderedDict())
        args = (self.storage, 0, self.shape, self.stride(), False,
                collections.OrderedDict())
        return (REBUILD_TENSOR_V2, args)


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FLOAT_STORAGE, obj.key, "cpu", obj.numel)
        return None


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------

def plan_tensors(total_bytes, n_big, cols):
    """Return [(name, shape)] whose float32 storages sum to <= total_bytes."""
    hidden = cols
    small = [
        ("embed.norm.weight", (hidden,)),
        ("embed.norm.bias", (hidden,)),
        ("head.bias", (16,)),
        ("head.scale", ()),
    ]
    small_bytes = sum(4 * _numel(s) for _, s in small)
    row_bytes = 4 * cols
    rows = max(1, (total_bytes - small_bytes) // (n_big * row_bytes))
    plan = []
    per_layer = 4
    for i in range(n_big):
        layer, part = divmod(i, per_layer)
        part_name = ("attn.qkv.weight", "attn.out.weight",
                     "mlp.up.weight", "mlp.down.weight")[part]
        plan.append((f"layers.{layer}.{part_name}", (rows, cols)))
    # Put the small tensors first and last, as real state dicts mix them.
    return small[:2] + plan + small[2:]


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def make_block():
    rnd = random.Random(0)
    vals = array.array("f", (rnd.uniform(-1.0, 1.0) for _ in range(BLOCK_BYTES // 4)))
    if sys.byteorder != "little":
        vals.byteswap()
    raw = vals.tobytes()
    # Doubled so any phase can be sliced without wrap-around logic.
    return memoryview(raw + raw)


def tensor_phase(index):
    """Byte offset into the block at which tensor `index` starts (4-aligned)."""
    return (index * 4 * 1031) % BLOCK_BYTES


def iter_tensor_bytes(block, index, nbytes):
    """Yield chunks (memoryviews) making up tensor `index`'s data."""
    phase = tensor_phase(index)
    left = nbytes
    while left > 0:
        n = min(left, BLOCK_BYTES)
        yield block[phase:phase + n]
        left -= n


def expected_bytes(index, nbytes, block=None):
    """The bytes make_checkpoint writes for tensor `index` (for verification)."""
    block = block if block is not None else make_block()
    return b"".join(bytes(c) for c in iter_tensor_bytes(block, index, nbytes))


# --------------------------------------------------------------------------
# ZIP writing
# --------------------------------------------------------------------------

class AlignedZip:
    def __init__(self, path):
        self.fp = open(path, "wb")
        self.zf = zipfile.ZipFile(self.fp, "w", compression=zipfile.ZIP_STORED,
                                  allowZip64=True)

    def _zinfo(self, name, size):
        zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        zi.compress_type = zipfile.ZIP_STORED
        zi.file_size = size
        zi.external_attr = 0o600 << 16
        zip64 = size * 1.05 > zipfile.ZIP64_LIMIT
        offset = self.fp.tell()
        # Local header: 30 fixed bytes + name + extra (zip64 extra is 20 bytes
        # and is appended by zipfile after our own extra field).
        base = offset + 30 + len(name.encode("utf-8")) + (20 if zip64 else 0) + 4
        pad = (-base) % ALIGN
        zi.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        return zi, zip64

    def write_bytes(self, name, data):
        self.write_chunks(name, len(data), [data])

    def write_chunks(self, name, size, chunks):
        zi, zip64 = self._zinfo(name, size)
        with self.zf.open(zi, "w", force_zip64=zip64) as out:
            start = self.fp.tell()
            if start % ALIGN != 0:
                raise AssertionError(f"{name}: data at {start} is not {ALIGN}-aligned")
            written = 0
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
        if written != size:
            raise AssertionError(f"{name}: wrote {written} bytes, planned {size}")
        # torch puts the "FB" padding only in the local header; the central
        # directory entry (written at close) carries no extra field unless
        # zipfile needs its ZIP64 one.
        zi.extra = b""

    def close(self):
        self.zf.close()
        self.fp.close()


def build_pickle(plan):
    sd = collections.OrderedDict()
    for key, (name, shape) in enumerate(plan):
        storage = Storage(str(key), _numel(shape))
        sd[name] = Tensor(storage, shape)
    buf = io.BytesIO()
    with fake_torch_modules():
        TorchLikePickler(buf, protocol=2).dump(sd)
    return buf.getvalue()


def write_checkpoint(path, total_bytes, n_big=64, cols=1024, quiet=False):
    plan = plan_tensors(total_bytes, n_big, cols)
    block = make_block()
    z = AlignedZip(path)
    try:
        z.write_bytes(f"{ROOT}/data.pkl", build_pickle(plan))
        z.write_bytes(f"{ROOT}/.format_version", b"1")
        z.write_bytes(f"{ROOT}/.storage_alignment", b"64")
        z.write_bytes(f"{ROOT}/byteorder", b"little")
        for key, (name, shape) in enumerate(plan):
            nbytes = 4 * _numel(shape)
            z.write_chunks(f"{ROOT}/data/{key}", nbytes,
                           iter_tensor_bytes(block, key, nbytes))
        z.write_bytes(f"{ROOT}/version", b"3\n")
        # torch writes a random 40-digit id; ours is derived from the plan so
        # the output is reproducible.
        sid = "%040d" % (total_bytes * 1000003 + n_big * 1009 + cols)
        z.write_bytes(f"{ROOT}/.data/serialization_id", sid[-40:].encode())
    finally:
        z.close()
    if not quiet:
        data = sum(4 * _numel(s) for _, s in plan)
        print(f"wrote {path}: {len(plan)} tensors, {data} data bytes, "
              f"{os.path.getsize(path)} file bytes")
    return plan


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output checkpoint path, e.g. big.pt")
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--gib", type=float, help="total tensor data in GiB")
    size.add_argument("--mib", type=float, help="total tensor data in MiB")
    ap.add_argument("--tensors", type=int, default=64,
                    help="number of large (rows, cols) float32 tensors (default 64)")
    ap.add_argument("--cols", type=int, default=1024,
                    help="columns of each large tensor (default 1024)")
    args = ap.parse_args(argv)
    total = int(args.gib * (1 << 30)) if args.gib is not None else int(args.mib * (1 << 20))
    if args.tensors < 1 or args.cols < 1 or total < 1:
        ap.error("sizes must be positive")
    write_checkpoint(args.out, total, args.tensors, args.cols)


if __name__ == "__main__":
    main()
