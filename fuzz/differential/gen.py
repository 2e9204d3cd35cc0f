"""Case generator for the differential harness (see README.md).

`generate_case(seed, idx, outdir)` deterministically writes one checkpoint and
returns `(path, constructs)`: the constructs are short tags naming what the
file contains, used to group gaps and divergences.

Three sources:
  save  torch.save of a random state dict (zip or legacy, protocols 1..5)
  asm   a pickle assembled opcode by opcode (constructs torch.save never
        writes but torch's weights-only loader accepts or special-cases),
        wrapped in a zip built with `zipfile` or in a legacy stream
  *+mut either of the above mutated at the opcode / record level

Nothing here unpickles anything. torch is imported only for torch.save.
"""

import collections
import io
import math
import os
import pickle
import pickletools
import random
import struct
import zipfile
import zlib

OD = collections.OrderedDict

# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

# torch dtype name -> (itemsize, typed storage class or None (v3 only), safetensors name or None)
DTYPES = {
    "float64": (8, "DoubleStorage", "F64"),
    "float32": (4, "FloatStorage", "F32"),
    "float16": (2, "HalfStorage", "F16"),
    "bfloat16": (2, "BFloat16Storage", "BF16"),
    "int64": (8, "LongStorage", "I64"),
    "int32": (4, "IntStorage", "I32"),
    "int16": (2, "ShortStorage", "I16"),
    "int8": (1, "CharStorage", "I8"),
    "uint8": (1, "ByteStorage", "U8"),
    "bool": (1, "BoolStorage", "BOOL"),
    "uint16": (2, None, "U16"),
    "uint32": (4, None, "U32"),
    "uint64": (8, None, "U64"),
    "float8_e4m3fn": (1, None, "F8_E4M3"),
    "float8_e5m2": (1, None, "F8_E5M2"),
    "float8_e4m3fnuz": (1, None, "F8_E4M3FNUZ"),
    "float8_e5m2fnuz": (1, None, "F8_E5M2FNUZ"),
    "float8_e8m0fnu": (1, None, "F8_E8M0"),
    # no safetensors equivalent (design refusals)
    "complex64": (8, "ComplexFloatStorage", None),
    "complex128": (16, "ComplexDoubleStorage", None),
    "complex32": (4, None, None),
    "bits8": (1, None, None),
    "float4_e2m1fn_x2": (1, None, None),
}
ST_DTYPES = [d for d, v in DTYPES.items() if v[2]]
V2_DTYPES = [d for d in ST_DTYPES if DTYPES[d][1]]
V3_DTYPES = [d for d in ST_DTYPES if not DTYPES[d][1]]
ODD_DTYPES = [d for d, v in DTYPES.items() if not v[2]]
STORAGE_TO_DTYPE = {v[1]: d for d, v in DTYPES.items() if v[1]}
FLOAT_DTYPES = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
                "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "complex64",
                "complex128", "complex32"}


DTYPE_ALIASES = {"float32": "float", "float64": "double", "float16": "half", "int64": "long",
                 "int32": "int", "int16": "short", "complex64": "cfloat"}


def itemsize(d):
    return DTYPES[d][0]


# Globals a mutation may swap in: allowlisted ones and near misses.
GLOBAL_POOL = [
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "_utils._rebuild_tensor_v2"), ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"), ("torch._utils", "_rebuild_wrapper_subclass"),
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"), ("torch._utils", "_rebuild_nested_tensor"),
    ("torch._utils", "_rebuild_sparse_tensor"),
    ("collections", "OrderedDict"), ("collections", "Counter"), ("collections", "defaultdict"),
    ("builtins", "dict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "complex"), ("builtins", "list"), ("__builtin__", "set"), ("__builtin__", "long"),
    ("_codecs", "encode"), ("torch", "Size"), ("torch", "device"), ("torch", "Tensor"),
    ("torch._tensor", "Tensor"), ("torch.nn.parameter", "Parameter"), ("torch.nn", "Parameter"),
    ("torch", "FloatTensor"), ("torch", "LongTensor"), ("torch.serialization", "_get_layout"),
    ("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage"), ("torch.storage", "TypedStorage"),
    ("torch.storage", "FloatStorage"), ("torch.cuda", "FloatStorage"), ("torch.cuda", "HalfStorage"),
    ("torch", "QInt8Storage"), ("torch", "ComplexFloatStorage"), ("os", "FloatStorage"),
    ("torch", "float"), ("torch", "float32"), ("torch", "half"), ("torch", "long"), ("torch", "int"),
    ("torch", "uint4"), ("torch", "int4"), ("torch", "bits16"), ("torch", "bcomplex32"),
    ("torch", "per_tensor_affine"), ("torch", "quint8"),
] + [("torch", d) for d in DTYPES] + [("torch", v[1]) for v in DTYPES.values() if v[1]]

# tensor state names that are dunders (torch setattr()s them like any other) and near misses
DUNDER_STATE = ["__array_interface__", "__torch_function__", "__foo__", "__array__", "__foo", "_foo_"]

MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
PROTOCOL_1001 = b"\x80\x02M\xe9\x03."

# ---------------------------------------------------------------------------
# Pickle assembler
# ---------------------------------------------------------------------------


def enc_long1(v):
    data = pickle.encode_long(v)
    return b"\x8a" + bytes([len(data)]) + data


def enc_int(v, proto=2):
    if proto == 0:
        return (b"I%d\n" % v) if -2**31 <= v < 2**31 else (b"L%dL\n" % v)
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -2**31 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    if proto >= 2:
        return enc_long1(v)
    return b"L%dL\n" % v


def enc_str(s, proto=2, short_ok=True):
    data = s.encode("utf-8", "surrogatepass")
    if proto == 0:
        return b"V" + s.encode("raw-unicode-escape") + b"\n"
    if proto >= 4 and short_ok and len(data) < 256:
        return bytes([0x8C, len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


class P:
    """Opcode writer. Every value method pushes exactly one value."""

    def __init__(self, proto, rng):
        self.proto = proto
        self.rng = rng
        self.b = bytearray()
        self.memo = set()
        self.gcache = {}
        self.scache = {}

    def raw(self, x):
        self.b += x
        return self

    def bytes(self):
        return bytes(self.b)

    # memo
    def put(self, idx=None):
        if idx is None:
            idx = len(self.memo)
            while idx in self.memo:
                idx += 1
            if self.proto >= 4 and self.rng.random() < 0.85 and idx == len(self.memo):
                self.memo.add(idx)
                self.raw(b"\x94")
                return idx
        self.memo.add(idx)
        if self.proto == 0:
            self.raw(b"p%d\n" % idx)
        elif idx < 256 and self.rng.random() < 0.95:
            self.raw(b"q" + bytes([idx]))
        else:
            self.raw(b"r" + struct.pack("<I", idx))
        return idx

    def get(self, idx):
        if self.proto == 0:
            return self.raw(b"g%d\n" % idx)
        if idx < 256 and self.rng.random() < 0.95:
            return self.raw(b"h" + bytes([idx]))
        return self.raw(b"j" + struct.pack("<I", idx))

    # structure
    def proto_op(self):
        if self.proto >= 2:
            self.raw(bytes([0x80, self.proto]))

    def mark(self):
        return self.raw(b"(")

    def stop(self):
        return self.raw(b".")

    def tuple_n(self, n_items_emitted_fn):
        """Emit a tuple whose items are pushed by n_items_emitted_fn(); uses
        TUPLE1/2/3 for protocol >= 2 when the count is known small."""
        self.mark()
        n = n_items_emitted_fn()
        self.raw(b"t")
        return n

    def empty_tuple(self):
        return self.raw(b")") if self.proto >= 1 else self.raw(b"(t")

    def empty_dict(self):
        return self.raw(b"}") if self.proto >= 1 else self.raw(b"(d")

    def empty_list(self):
        return self.raw(b"]") if self.proto >= 1 else self.raw(b"(l")

    def reduce(self):
        return self.raw(b"R")

    def build(self):
        return self.raw(b"b")

    def setitems(self):
        return self.raw(b"u")

    def setitem(self):
        return self.raw(b"s")

    def appends(self):
        return self.raw(b"e")

    def binpersid(self):
        return self.raw(b"Q")

    # scalars
    def none(self):
        return self.raw(b"N")

    def bool(self, v):
        if self.proto >= 2:
            return self.raw(b"\x88" if v else b"\x89")
        return self.raw(b"I01\n" if v else b"I00\n")

    def int(self, v):
        return self.raw(enc_int(v, self.proto))

    def float(self, f):
        if self.proto == 0:
            return self.raw(b"F" + repr(f).encode() + b"\n")
        return self.raw(b"G" + struct.pack(">d", f))

    def str(self, s, memo=False):
        if memo and s in self.scache and self.rng.random() < 0.9:
            return self.get(self.scache[s])
        self.raw(enc_str(s, self.proto))
        if memo or self.rng.random() < 0.3:
            self.scache[s] = self.put()
        return self

    def short_binstring(self, b):
        if isinstance(b, str):
            b = b.encode()
        return self.raw(b"U" + bytes([len(b)]) + b)

    def blob(self, b):
        if self.proto >= 3:
            if len(b) < 256:
                return self.raw(b"C" + bytes([len(b)]) + b)
            return self.raw(b"B" + struct.pack("<I", len(b)) + b)
        self.glob("_codecs", "encode")
        self.mark().str(b.decode("latin1")).str("latin1").raw(b"t")
        return self.reduce()

    def glob(self, module, name):
        key = (module, name)
        if key in self.gcache and self.rng.random() < 0.9:
            return self.get(self.gcache[key])
        if self.proto >= 4 and self.rng.random() < 0.9:
            self.raw(enc_str(module, 4)).put()
            self.raw(enc_str(name, 4)).put()
            self.raw(b"\x93")
        else:
            self.raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")
        self.gcache[key] = self.put()
        return self

    def call(self, module, name, args_fn):
        self.glob(module, name)
        self.mark()
        args_fn()
        self.raw(b"t")
        return self.reduce()

    def ordered_dict(self):
        self.glob("collections", "OrderedDict")
        self.empty_tuple()
        return self.reduce()


def framed(pkl):
    """Wrap everything after PROTO in one FRAME (protocol >= 4)."""
    assert pkl[0] == 0x80
    body = pkl[2:]
    return pkl[:2] + b"\x95" + struct.pack("<Q", len(body)) + body


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------


def build_zip(entries):
    """entries: list of (full name, bytes). STORED, fixed dates."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_STORED
            zf.writestr(zi, data)
    return buf.getvalue()


def read_zip(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def sys_info_pickle(little=True):
    return pickle.dumps({"protocol_version": 1001, "little_endian": little,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)


def build_legacy(main, keylist_pickle, blobs, sys_info=None, magic=MAGIC, proto1001=PROTOCOL_1001):
    out = bytearray(magic + proto1001 + (sys_info or sys_info_pickle()) + main + keylist_pickle)
    for count, data in blobs:
        out += struct.pack("<q", count) + data
    return bytes(out)


class _ListOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("no globals here")


# ---------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------


def extent(shape, stride):
    if any(s == 0 for s in shape):
        return 0
    return 1 + sum((s - 1) * st for s, st in zip(shape, stride))


def contiguous_stride(shape):
    st = []
    acc = 1
    for s in reversed(shape):
        st.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(st))


def rand_shape(rng, big=False):
    r = rng.choices([0, 1, 2, 3, 4], [10, 35, 35, 15, 5])[0]
    hi = 6 if not big else 40
    shape = []
    for _ in range(r):
        shape.append(0 if rng.random() < 0.04 else rng.randint(1, hi))
    return tuple(shape)


def rand_geometry(rng, tags, shape=None):
    """-> (shape, stride, kind) for a view into some storage."""
    shape = rand_shape(rng) if shape is None else shape
    kind = rng.choices(["contig", "perm", "step", "expand", "overlap"], [50, 15, 10, 12, 13])[0]
    st = list(contiguous_stride(shape))
    if kind == "perm" and len(shape) >= 2:
        # a permuted layout: strides of a contiguous tensor of permuted shape
        order = list(range(len(shape)))
        rng.shuffle(order)
        pshape = [shape[i] for i in order]
        pst = contiguous_stride(pshape)
        st = [0] * len(shape)
        for j, i in enumerate(order):
            st[i] = pst[j]
    elif kind == "step" and shape:
        k = rng.randint(2, 3)
        st = [s * k for s in st]
    elif kind == "expand" and shape:
        for i in range(len(shape)):
            if rng.random() < 0.6:
                st[i] = 0
    elif kind == "overlap" and shape:
        st = [rng.randint(0, 2) for _ in shape]
    else:
        kind = "contig"
    tags.add("view:" + kind)
    return tuple(shape), tuple(st), kind


# ---------------------------------------------------------------------------
# Source (b): assembled pickles
# ---------------------------------------------------------------------------


class Storage:
    def __init__(self, key, cls, dtype, numel, data, untyped):
        self.key = key          # python value as pickled
        self.cls = cls          # (module, name)
        self.dtype = dtype      # dtype of the pid (uint8 for untyped)
        self.numel = numel      # in pid units
        self.data = data
        self.untyped = untyped
        self.memo = None        # memo index of the BINPERSID result if memoized


class Asm:
    def __init__(self, rng, tags, fmt, proto):
        self.rng = rng
        self.tags = tags
        self.fmt = fmt
        self.proto = proto
        self.p = P(proto, rng)
        self.storages = []      # in declaration order
        self.records = OD()     # zip record name (without root) -> bytes
        self.legacy_roots = OD()  # root key -> Storage
        self.legacy_views = []    # (view_key, root Storage, offset, size)
        self.nkeys = 0
        self.names = []
        self.key_style = rng.choice(["seq", "seq", "seq", "addr"])
        # torch 2.15 cannot load v3 dtypes (UntypedStorage pids) from legacy files
        self.legacy_v3 = rng.random() < 0.1

    # -- data -----------------------------------------------------------
    def rand_data(self, dtype, nelem):
        n = nelem * itemsize(dtype)
        raw = self.rng.randbytes(n)
        if dtype == "bool" and self.rng.random() < 0.9:
            raw = bytes(b & 1 for b in raw)
        elif dtype == "bool":
            self.tags.add("bool_nonbinary")
        return raw

    def new_key(self):
        i = self.nkeys
        self.nkeys += 1
        if self.fmt == "legacy" and self.key_style == "addr":
            return str(94047543798432 + i * 48 + self.rng.randint(0, 7) * 4096)
        return str(i)

    # -- storages --------------------------------------------------------
    def new_storage(self, dtype, nelem, untyped):
        rng = self.rng
        key = self.new_key()
        if self.fmt == "legacy" and self.legacy_views and rng.random() < 0.1:
            key = str(rng.choice(self.legacy_views)[0])
            self.tags.add("legacy:rootkey_eq_view")
        if self.fmt == "zip":
            r = rng.random()
            if r < 0.05:
                key = int(key)
                self.tags.add("skey:int")
            elif r < 0.08:
                key = "k" + "".join(rng.choice("aAbB") for _ in range(3)) + key
                self.tags.add("skey:mixed_case")
        if untyped:
            cls = rng.choices([("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage")], [97, 3])[0]
            if cls[0] == "torch":
                self.tags.add("storage:torch.UntypedStorage")
            numel = nelem * itemsize(dtype)
            st = Storage(key, cls, "uint8", numel, self.rand_data(dtype, nelem), True)
        else:
            name = DTYPES[dtype][1]
            mod = rng.choices(["torch", "torch.cuda", "torch.storage"], [92, 5, 3])[0]
            if mod != "torch":
                self.tags.add("storage:" + mod)
            st = Storage(key, (mod, name), dtype, nelem, self.rand_data(dtype, nelem), False)
        self.storages.append(st)
        if self.fmt == "zip":
            rec = f"data/{st.key}"
            if rec not in self.records:
                self.records[rec] = st.data
        else:
            self.legacy_roots[str(st.key)] = st
        return st

    def emit_pid(self, st, dtype_cls=None, numel=None, key=None, view=None):
        p = self.p
        if st.memo is not None and dtype_cls is None and key is None and view is None \
                and self.rng.random() < 0.3:
            self.tags.add("memo:storage_binget")
            p.get(st.memo)
            return
        p.mark()
        p.str("storage", memo=True)
        cls = dtype_cls or st.cls
        p.glob(*cls)
        k = st.key if key is None else key
        if isinstance(k, int):
            p.int(k)
        else:
            p.str(k)
        loc = self.rng.choices(["cpu", "cuda:0", "mps", "weird"], [90, 6, 2, 2])[0]
        if loc != "cpu":
            self.tags.add("loc:" + loc)
        p.str(loc, memo=True)
        p.int(st.numel if numel is None else numel)
        if self.fmt == "legacy":
            if view is None:
                p.none()
            else:
                p.mark().str(view[0]).int(view[1]).int(view[2]).raw(b"t")
        p.raw(b"t")
        p.binpersid()
        if self.rng.random() < 0.5:
            idx = p.put()
            if dtype_cls is None and numel is None and key is None and view is None:
                st.memo = idx

    # -- tensors ---------------------------------------------------------
    def pick_dtype(self):
        r = self.rng.random()
        v3 = 0.32 if self.fmt == "zip" or self.legacy_v3 else 0.0
        if r < 0.94 - v3:
            return self.rng.choice(V2_DTYPES)
        if r < 0.94:
            return self.rng.choice(V3_DTYPES)
        return self.rng.choice(ODD_DTYPES)

    def plain_tensor(self, dtype=None, allow_share=True):
        """Emit _rebuild_tensor[_v2|_v3](...) pushing one tensor."""
        rng, p, tags = self.rng, self.p, self.tags
        dtype = dtype or self.pick_dtype()
        tags.add("dtype:" + dtype)
        typed = DTYPES[dtype][1] is not None
        if typed:
            how = rng.choices(["v2", "v3", "v1"], [80, 12, 8])[0]
        else:
            how = "v3"
        untyped = how == "v3" and (not typed or (rng.random() < 0.8 and (self.fmt == "zip" or self.legacy_v3)))
        if how == "v3" and not untyped:
            tags.add("v3:typed_storage")
        tags.add("rebuild:" + how)
        shape, stride, kind = rand_geometry(rng, tags)
        need = extent(shape, stride)
        # storage: share an existing compatible one or make a new one
        st = None
        pid_kw = {}
        cands = [s for s in self.storages if (s.untyped == untyped) and
                 (untyped or s.dtype == dtype)]
        if allow_share and cands and rng.random() < 0.35:
            st = rng.choice(cands)
            tags.add("storage:shared")
            if self.fmt == "zip" and rng.random() < 0.08 and str(st.key).isdigit():
                # the same record named by an int and by a str key (torch caches by value)
                pid_kw = {"key": str(st.key) if isinstance(st.key, int) else int(st.key)}
                tags.add("skey:int_vs_str")
        elif allow_share and self.storages and rng.random() < 0.04:
            # same key, other class (reinterpretation or redeclaration)
            other = rng.choice(self.storages)
            st = other
            cls_dtype = dtype if typed and not untyped else None
            if cls_dtype and not other.untyped and DTYPES[cls_dtype][1] != other.cls[1]:
                nb = len(other.data)
                if nb % itemsize(cls_dtype) == 0 and rng.random() < 0.7:
                    pid_kw = {"dtype_cls": ("torch", DTYPES[cls_dtype][1]),
                              "numel": nb // itemsize(cls_dtype)}
                    tags.add("skey:reinterpret")
                else:
                    pid_kw = {"dtype_cls": ("torch", DTYPES[cls_dtype][1]),
                              "numel": rng.randint(1, 8)}
                    tags.add("skey:redeclared_size")
            else:
                st = None
        unit = itemsize(dtype)
        if st is not None:
            if "numel" in pid_kw:
                cap_elems = pid_kw["numel"]
            elif st.untyped:
                cap_elems = st.numel // unit
            else:
                cap_elems = st.numel
            if need > cap_elems:
                shape, stride = (), ()
                need = 1 if cap_elems >= 1 else 0
                if need == 0:
                    shape = (0,)
                    stride = (1,)
            offset = rng.randint(0, max(0, cap_elems - need)) if need else rng.randint(0, cap_elems)
        else:
            slack = rng.choice([0, 0, 0, 1, 3])
            offset = rng.choice([0, 0, 0, 1, 2]) if need else 0
            nelem = offset + need + slack
            if rng.random() < 0.03:
                nelem = 0
                offset = 0
                shape, stride = (0,), (1,)
                tags.add("storage:empty")
            if offset:
                tags.add("view:offset")
            if untyped and dtype in ("complex32",):
                pass
            st = self.new_storage(dtype, nelem, untyped)
        # metadata arg
        meta = None
        if how in ("v2", "v3") and rng.random() < 0.05:
            meta = rng.choice([{}, {}, {"neg": True}, {"neg": True}, {"neg": False}, {"conj": False}])
            tags.add("meta:" + ("neg" if meta.get("neg") else "empty" if not meta else "falsebits"))
        rg = False
        if rng.random() < (0.06 if dtype in FLOAT_DTYPES else 0.01):
            rg = True
            tags.add("requires_grad" + ("" if dtype in FLOAT_DTYPES else ":nonfloat"))
        fn = {"v1": "_rebuild_tensor", "v2": "_rebuild_tensor_v2", "v3": "_rebuild_tensor_v3"}[how]
        p.glob("torch._utils", fn)
        p.mark()
        view = None
        if self.fmt == "legacy" and rng.random() < 0.12 and st.numel > 0:
            # legacy storage view: (view_key, offset, size) in elements of the pid dtype
            voff = rng.randint(0, max(0, st.numel - 1))
            vsize = rng.randint(0, st.numel - voff)
            vkey = self.new_key()
            vr = rng.random()
            if vr < 0.1 and self.legacy_roots:
                vkey = rng.choice(list(self.legacy_roots))
                tags.add("legacy:viewkey_eq_root")
            view = (vkey, voff, vsize)
            self.legacy_views.append((vkey, st, voff, vsize))
            tags.add("legacy:view")
            # tensor geometry relative to the view
            vunit = vsize if not st.untyped else vsize // unit
            if need > vunit:
                shape, stride, need = (min(vunit, 1),), (1,), min(vunit, 1)
            offset = rng.randint(0, max(0, vunit - need)) if vunit else 0
        self.emit_pid(st, view=view, **pid_kw)
        p.int(offset)
        self.emit_int_tuple(shape)
        self.emit_int_tuple(stride)
        if how != "v1":
            p.bool(rg)
            self.emit_hooks()
            if how == "v3":
                alias = DTYPE_ALIASES.get(dtype)
                if alias and rng.random() < 0.05:
                    tags.add("dtype_alias:" + alias)
                    p.glob("torch", alias)
                else:
                    p.glob("torch", dtype)
            if meta is not None:
                self.emit_value_plain(meta)
        p.raw(b"t")
        p.reduce()
        return dtype

    def emit_hooks(self):
        r = self.rng.random()
        if r < 0.93:
            self.p.ordered_dict()
        elif r < 0.97:
            self.tags.add("hooks:dict")
            self.p.empty_dict()
        else:
            self.tags.add("hooks:none")
            self.p.none()

    def emit_int_tuple(self, t):
        p = self.p
        if self.rng.random() < 0.05 and t:
            self.tags.add("size:torch.Size")
            p.glob("torch", "Size")
            p.mark()
            self.emit_int_tuple_raw(t)
            p.raw(b"t").reduce()
            return
        self.emit_int_tuple_raw(t)

    def emit_int_tuple_raw(self, t):
        p = self.p
        if not t:
            p.empty_tuple()
            return
        if self.proto >= 2 and len(t) <= 3 and self.rng.random() < 0.7:
            for v in t:
                p.int(v)
            p.raw({1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(t)])
        else:
            p.mark()
            for v in t:
                p.int(v)
            p.raw(b"t")

    def emit_value_plain(self, v):
        """Plain python values (dict/list/tuple/str/int/float/bool/None)."""
        p = self.p
        if v is None:
            p.none()
        elif isinstance(v, bool):
            p.bool(v)
        elif isinstance(v, int):
            p.int(v)
        elif isinstance(v, float):
            p.float(v)
        elif isinstance(v, str):
            p.str(v)
        elif isinstance(v, bytes):
            p.blob(v)
        elif isinstance(v, tuple):
            p.mark()
            for x in v:
                self.emit_value_plain(x)
            p.raw(b"t")
        elif isinstance(v, list):
            p.empty_list()
            if v:
                p.mark()
                for x in v:
                    self.emit_value_plain(x)
                p.appends()
        elif isinstance(v, dict):
            p.empty_dict()
            if v:
                p.mark()
                for k, x in v.items():
                    self.emit_value_plain(k)
                    self.emit_value_plain(x)
                p.setitems()
        else:
            raise TypeError(v)

    def tensor(self):
        """A tensor value, possibly wrapped (Parameter, state, BUILD...)."""
        rng, p, tags = self.rng, self.p, self.tags
        w = rng.choices(["plain", "param", "param_state", "from_type_v2", "newobj_param",
                         "build_set", "tensor_class", "ptr_get"],
                        [62, 10, 6, 7, 4, 4, 3, 4])[0]
        if w == "ptr_get":
            mem = [m for m in self.tensor_memos]
            if mem:
                tags.add("tied:binget")
                p.get(rng.choice(mem))
                return
            w = "plain"
        if w == "plain":
            self.plain_tensor()
        elif w == "param":
            tags.add("wrap:_rebuild_parameter")
            p.glob("torch._utils", "_rebuild_parameter")
            p.mark()
            d = self.plain_tensor()
            rg = d in FLOAT_DTYPES and rng.random() < 0.5
            if rng.random() < 0.03:
                rg = True
            if rg:
                tags.add("param:requires_grad" + ("" if d in FLOAT_DTYPES else ":nonfloat"))
            p.bool(rg)
            self.emit_hooks()
            p.raw(b"t").reduce()
        elif w == "param_state":
            tags.add("wrap:_rebuild_parameter_with_state")
            p.glob("torch._utils", "_rebuild_parameter_with_state")
            p.mark()
            d = self.plain_tensor()
            p.bool(d in FLOAT_DTYPES and rng.random() < 0.5)
            self.emit_hooks()
            self.emit_state(d)
            p.raw(b"t").reduce()
        elif w == "from_type_v2":
            tags.add("wrap:_rebuild_from_type_v2")
            p.glob("torch._tensor", "_rebuild_from_type_v2")
            p.mark()
            p.glob("torch._utils", "_rebuild_tensor_v2")
            tcls = rng.choices([("torch", "Tensor"), ("torch.nn.parameter", "Parameter")], [85, 15])[0]
            if tcls[1] == "Parameter":
                tags.add("from_type_v2:Parameter")
            p.glob(*tcls)
            # args tuple of _rebuild_tensor_v2: emitted by plain_tensor minus the call
            d = self.v2_args_tuple()
            self.emit_state(d)
            p.raw(b"t").reduce()
        elif w == "newobj_param":
            tags.add("wrap:newobj_Parameter")
            p.glob("torch.nn.parameter", "Parameter")
            p.mark()
            d = self.plain_tensor()
            rg = d in FLOAT_DTYPES and rng.random() < 0.5
            p.bool(rg)
            p.raw(b"t")
            p.raw(b"\x81")  # NEWOBJ
            if rng.random() < 0.5:
                tags.add("build:Parameter")
                # Tensor.__setstate__: 3-tuple (requires_grad, _, hooks)
                p.mark()
                p.bool(rg and rng.random() < 0.7)
                p.none()
                self.emit_hooks()
                p.raw(b"t")
                p.build()
        elif w == "build_set":
            tags.add("build:Tensor_set_")
            d = self.plain_tensor()
            # BUILD with (storage, offset, size, stride) -> inst.set_(*state)
            cands = [s for s in self.storages if not s.untyped]
            if not cands:
                return
            st = rng.choice(cands)
            if rng.random() < 0.5:
                n = st.numel
                shape = (n,) if rng.random() < 0.7 else ()
                stride = (1,) if shape else ()
                off = 0 if shape else rng.randint(0, max(0, n - 1))
                if not shape and n == 0:
                    shape, stride = (0,), (1,)
            else:
                shape, stride = (1,), (1,)
                off = 0
            p.mark()
            self.emit_pid(st)
            p.int(off)
            self.emit_int_tuple_raw(shape)
            self.emit_int_tuple_raw(stride)
            p.raw(b"t")
            p.build()
            self.tags.add("build_set:" + ("samedtype" if st.dtype == d else "otherdtype"))
        elif w == "tensor_class":
            cls = rng.choice(["FloatTensor", "LongTensor", "DoubleTensor", "ByteTensor"])
            tags.add("tensor_class:" + cls)
            p.glob("torch", cls)
            p.mark()
            if rng.random() < 0.7:
                p.empty_list()
                p.mark()
                for _ in range(rng.randint(1, 4)):
                    if cls in ("FloatTensor", "DoubleTensor"):
                        p.float(rng.uniform(-4, 4))
                    else:
                        p.int(rng.randint(0, 100))
                p.appends()
            p.raw(b"t").reduce()
        if rng.random() < 0.2:
            if self.tensor_memos and rng.random() < 0.15:
                # BINPUT an index already used: later BINGETs see this tensor
                self.tags.add("memo:overwrite")
                p.put(rng.choice(self.tensor_memos))
            else:
                self.tensor_memos.append(p.put())

    def v2_args_tuple(self):
        """Push the args tuple of a _rebuild_tensor_v2 call; returns dtype."""
        # Reuse plain_tensor's body by emitting into a scratch writer is
        # complex; emit a simple typed tensor directly.
        rng, p = self.rng, self.p
        dtype = rng.choice(V2_DTYPES)
        self.tags.add("dtype:" + dtype)
        shape, stride, kind = rand_geometry(rng, self.tags)
        need = extent(shape, stride)
        st = self.new_storage(dtype, need, False)
        p.mark()
        self.emit_pid(st)
        p.int(0)
        self.emit_int_tuple(shape)
        self.emit_int_tuple(stride)
        p.bool(False)
        self.emit_hooks()
        p.raw(b"t")
        return dtype

    def emit_state(self, dtype):
        """State for _set_obj_state: dict or (dict, slots) with attributes."""
        rng, p, tags = self.rng, self.p, self.tags
        items = []
        for _ in range(rng.choices([0, 1, 2, 3], [15, 50, 25, 10])[0]):
            k = rng.choices(["foo", "requires_grad", "_backward_hooks", "data", "real", "imag",
                             "grad", "bar_tensor", "names", "dunder"], [30, 10, 8, 12, 10, 4, 3, 6, 2, 12])[0]
            if k == "dunder":
                # dunder names are looked up on the instance as protocols (numpy's
                # __array_interface__); near misses ("__foo", "_foo_") are plain
                k = rng.choices(DUNDER_STATE, [30, 20, 25, 8, 8, 9])[0]
                if k in items:
                    continue
                if rng.random() < 0.6 and "foo" not in items:
                    items.append("foo")   # next to a plain attribute
            items.append(k)
        tags.update("state:" + k for k in items)
        form = rng.choices(["dict", "tuple", "none_tuple", "empty", "bad_tuple"], [60, 20, 8, 8, 4])[0]
        tags.add("stateform:" + form)

        def emit_dict():
            p.empty_dict()
            if not items:
                return
            p.mark()
            for k in items:
                p.str(k)
                if k == "foo" or k in DUNDER_STATE:
                    if k == "__array_interface__" and rng.random() < 0.5:
                        self.emit_value_plain({"shape": [4], "typestr": "<f4", "version": 3})
                    else:
                        self.emit_value_plain(rng.choice([1, "x", None, [1, 2], 2.5]))
                elif k == "requires_grad":
                    p.bool(rng.random() < 0.5)
                elif k == "_backward_hooks":
                    self.emit_hooks()
                elif k in ("data", "bar_tensor", "grad"):
                    self.plain_tensor(dtype=dtype if rng.random() < 0.6 else None)
                elif k in ("real", "imag"):
                    if rng.random() < 0.5:
                        p.float(rng.choice([0.0, 1.5, -2.0]))
                    else:
                        self.plain_tensor(dtype=dtype)
                elif k == "names":
                    p.none()
            p.setitems()

        if form == "dict":
            emit_dict()
        elif form == "empty":
            p.empty_dict()
        elif form == "tuple":
            p.mark()
            p.empty_dict() if rng.random() < 0.5 else p.none()
            emit_dict()
            p.raw(b"t")
        elif form == "none_tuple":
            p.mark()
            emit_dict()
            p.none()
            p.raw(b"t")
        else:
            p.mark()
            emit_dict()
            p.none()
            p.none()
            p.raw(b"t")

    # -- non-tensor values ------------------------------------------------
    def nontensor(self):
        rng, p, tags = self.rng, self.p, self.tags
        kind = rng.choice(["none", "bool", "int", "bigint", "negint", "float", "str", "bytes", "list",
                           "tuple", "set_reduce", "set_op", "frozenset_reduce", "size", "device",
                           "dtype", "complex", "bytearray", "counter", "empty_dict", "list_tensor",
                           "codecs_rot13", "layout", "textnum"])
        tags.add("val:" + kind)
        if kind == "textnum":
            # a text INT / LONG / FLOAT opcode (protocol 0/1) in any protocol
            p.raw(text_number(rng, tags))
            return
        if kind == "none":
            p.none()
        elif kind == "bool":
            p.bool(rng.random() < 0.5)
        elif kind == "int":
            p.int(rng.randint(0, 70000))
        elif kind == "bigint":
            p.int(rng.choice([2**31, 2**63, 2**70, -2**65]))
        elif kind == "negint":
            p.int(-rng.randint(1, 10**6))
        elif kind == "float":
            p.float(rng.choice([0.5, -1e300, float("inf"), float("nan")]))
        elif kind == "str":
            p.str(rng.choice(["hello", "", "ünï", "a" * 300]))
        elif kind == "bytes":
            p.blob(rng.randbytes(rng.randint(0, 8)))
        elif kind == "list":
            self.emit_value_plain([1, "a", None])
        elif kind == "tuple":
            self.emit_value_plain((1, (2, 3), "x"))
        elif kind == "set_reduce":
            p.glob("__builtin__" if rng.random() < 0.2 else "builtins", "set")
            p.mark()
            self.emit_value_plain([1, 2, 3])
            p.raw(b"t").reduce()
        elif kind == "set_op":
            p.raw(b"\x8f")  # EMPTY_SET (protocol 4 opcode, accepted by torch)
            if self.proto >= 4 and rng.random() < 0.5:
                p.mark().int(1).int(2).raw(b"\x90")  # ADDITEMS
                tags.add("val:additems")
        elif kind == "frozenset_reduce":
            p.glob("builtins", "frozenset")
            p.mark()
            self.emit_value_plain([1, 2])
            p.raw(b"t").reduce()
        elif kind == "size":
            p.call("torch", "Size", lambda: self.emit_value_plain((2, 3)))
        elif kind == "device":
            p.call("torch", "device", lambda: p.str(rng.choice(["cpu", "cuda:0"])))
        elif kind == "dtype":
            p.glob("torch", rng.choice(["float32", "bfloat16", "int64", "uint16"]))
        elif kind == "complex":
            p.call("builtins", "complex", lambda: (p.float(1.0), p.float(-2.0)))
        elif kind == "bytearray":
            p.call("builtins", "bytearray", lambda: (p.str("ab\u00ff"), p.str("latin1")))
        elif kind == "counter":
            p.glob("collections", "Counter")
            p.empty_tuple()
            p.reduce()
            p.mark().str("a").int(2).str("b").int(3).setitems()
        elif kind == "empty_dict":
            p.empty_dict()
        elif kind == "list_tensor":
            p.empty_list()
            p.mark()
            self.plain_tensor()
            p.int(1)
            p.appends()
        elif kind == "codecs_rot13":
            p.call("_codecs", "encode", lambda: (p.str("abc"), p.str("rot13")))
        elif kind == "layout":
            p.call("torch.serialization", "_get_layout", lambda: p.str("torch.strided"))

    # -- keys ------------------------------------------------------------
    def key(self, i, prefix=""):
        rng, p, tags = self.rng, self.p, self.tags
        r = rng.random()
        base = rng.choice(["weight", "bias", "running_mean", "emb", "w", "b"])
        name = f"{prefix}layer{i}.{base}" if rng.random() < 0.7 else f"t{i}"
        if r < 0.88:
            if self.proto < 3 and rng.random() < 0.15:
                tags.add("key:short_binstring")
                p.short_binstring(name)
            else:
                p.str(name)
            self.names.append(name)
            return
        kind = rng.choice(["int", "int", "int", "int_big", "int_neg", "bool", "true_vs_1", "dup", "dup",
                           "float", "none", "tuple", "nonutf8", "empty", "metadata", "format", "dotted",
                           "dotted", "unicode", "unicode", "control", "state_dict"])
        tags.add("key:" + kind)
        if kind == "int":
            p.int(i)
        elif kind == "int_big":
            p.int(2**64 + i)
        elif kind == "int_neg":
            p.int(-1 - i)
        elif kind == "bool":
            p.bool(rng.random() < 0.5)
        elif kind == "true_vs_1":
            p.bool(True) if rng.random() < 0.5 else p.int(1)
        elif kind == "dup":
            if self.names:
                p.str(rng.choice(self.names))
            else:
                p.str(name)
        elif kind == "float":
            p.float(1.5)
        elif kind == "none":
            p.none()
        elif kind == "tuple":
            self.emit_value_plain(("a", 1))
        elif kind == "nonutf8":
            p.short_binstring(b"w\xff" + str(i).encode())
        elif kind == "empty":
            p.str("")
        elif kind == "metadata":
            p.str("__metadata__")
        elif kind == "format":
            p.str("format")
        elif kind == "dotted":
            p.str("a.b")
        elif kind == "unicode":
            p.str(f"ü{i}\u00e9")
        elif kind == "control":
            p.str(f"x\x1b[{i}m")
        elif kind == "state_dict":
            p.str("state_dict")

    # -- dicts -----------------------------------------------------------
    def dict_value(self, n, depth=0, prefix=""):
        """Push a dict with n entries."""
        rng, p, tags = self.rng, self.p, self.tags
        style = rng.choices(["od", "dict", "dict_setitem", "od_pairs", "od_build", "counter"],
                            [40, 25, 10, 8, 12, 5])[0]
        if self.proto < 2 and style == "od_pairs":
            style = "od"
        tags.add("container:" + style)
        if style == "od_pairs":
            p.glob("collections", "OrderedDict")
            p.mark()
            p.empty_list()
            p.mark()
            pair_style = rng.choice(["list", "tuple"])
            tags.add("od_pairs:" + pair_style)
            for i in range(n):
                if pair_style == "list":
                    p.empty_list()
                    p.mark()
                    self.key(i, prefix)
                    self.entry_value(depth, prefix)
                    p.appends()
                else:
                    self.key(i, prefix)
                    self.entry_value(depth, prefix)
                    p.raw(b"\x86")
            p.appends()
            p.raw(b"t")
            p.reduce()
            return
        if style in ("od", "od_build"):
            p.ordered_dict()
        elif style == "counter":
            p.glob("collections", "Counter")
            p.empty_tuple()
            p.reduce()
        else:
            p.empty_dict()
        if rng.random() < 0.5:
            p.put()
        if style == "dict_setitem":
            for i in range(n):
                self.key(i, prefix)
                self.entry_value(depth, prefix)
                p.setitem()
        elif n:
            batch = rng.choice([n, n, 1, 2])
            i = 0
            while i < n:
                p.mark()
                for j in range(i, min(n, i + batch)):
                    self.key(j, prefix)
                    self.entry_value(depth, prefix)
                p.setitems()
                i += batch
            if batch < n:
                tags.add("setitems:batched")
        if style == "od_build":
            # model.state_dict() style: BUILD with {"_metadata": OD(...)}
            p.empty_dict()
            p.mark()
            p.str("_metadata")
            p.ordered_dict()
            p.mark().str("").empty_dict().mark().str("version").int(1).setitems().setitems()
            if rng.random() < 0.1:
                tags.add("build:od_extra_attr")
                p.str("weight")
                self.plain_tensor()
            p.setitems()
            p.build()

    def entry_value(self, depth, prefix):
        r = self.rng.random()
        if r < 0.72:
            self.tensor()
        elif r < 0.90 or depth >= 2:
            self.nontensor()
        else:
            self.tags.add("nested")
            self.dict_value(self.rng.randint(0, 3), depth + 1)

    # -- whole file --------------------------------------------------------
    def build(self):
        rng, p, tags = self.rng, self.p, self.tags
        self.tensor_memos = []
        p.proto_op()
        top = rng.choices(["dict", "lightning", "not_dict", "tensor_top"], [82, 12, 3, 3])[0]
        n = rng.choices([1, 2, 3, 5, 8], [15, 25, 25, 25, 10])[0]
        if top == "dict":
            self.dict_value(n)
        elif top == "lightning":
            tags.add("top:lightning")
            p.empty_dict()
            p.mark()
            items = ["epoch", "state_dict", "global_step", "hyper_parameters"]
            rng.shuffle(items)
            for k in items:
                p.str(k)
                if k == "state_dict":
                    if rng.random() < 0.05:
                        tags.add("lightning:state_dict_not_dict")
                        self.emit_value_plain([1, 2])
                    else:
                        self.dict_value(n)
                elif k == "hyper_parameters":
                    p.empty_dict().mark().str("lr").float(0.1).setitems()
                else:
                    p.int(rng.randint(0, 1000))
            p.setitems()
        elif top == "not_dict":
            tags.add("top:list")
            p.empty_list()
            p.mark()
            self.tensor()
            p.appends()
        else:
            tags.add("top:tensor")
            self.plain_tensor()
        p.stop()
        pkl = p.bytes()
        if self.proto >= 4 and rng.random() < 0.8:
            pkl = framed(pkl)
            tags.add("frame")
        return pkl


def asm_container_zip(rng, tags, pkl, records):
    root = rng.choices(["archive", "pytorch_model", "model", "a", "modèle", "my model", "x.y", "Archive", "long"],
                       [50, 15, 10, 5, 5, 5, 5, 5, 4])[0]
    if root == "long":
        root = long_root(rng, tags)
    elif root != "archive":
        tags.add("root:" + ("nonascii" if not root.isascii() else "other"))
    entries = [("data.pkl", pkl)]
    bo = rng.choices(["little", None, "big"], [60, 25, 15])[0]
    tags.add("byteorder:" + str(bo))
    if bo is not None:
        entries.append(("byteorder", bo.encode()))
    for name, data in records.items():
        entries.append((name, data))
    v = rng.choices(["version", ".data/version", "both", "version_first"], [80, 7, 5, 8])[0]
    if v != "version":
        tags.add("version:" + v)
    if v in ("version", "both"):
        entries.append(("version", b"3\n"))
    if v == "version_first":
        entries.insert(0, ("version", b"3\n"))
    if v in (".data/version", "both"):
        entries.append((".data/version", b"3\n"))
    if rng.random() < 0.3:
        vals = {".format_version": b"1", ".storage_alignment": b"64",
                ".data/serialization_id": b"1234567890123456789012345678901234567890"}
        if rng.random() < 0.3:
            # an odd value in one of the records torch reads
            which = rng.choice(list(TORCH_RECORD_VALUES))
            label, vals[which] = rng.choice(TORCH_RECORD_VALUES[which])
            tags.add(f"rec:{which.lstrip('.')}:{label}")
        for n, d in vals.items():
            entries.append((n, d))
        tags.add("records:extras")
    # case variants of record names (torch looks records up ignoring ASCII case)
    if rng.random() < 0.05:
        i = rng.randrange(len(entries))
        n, d = entries[i]
        entries[i] = (n.upper(), d)
        tags.add("record:upper")
    return build_zip([(f"{root}/{n}", d) for n, d in entries])


def asm_container_legacy(rng, tags, asm, pkl):
    roots = asm.legacy_roots
    keys = sorted(roots)
    blob_for = {k: (st.numel, st.data) for k, st in roots.items()}
    # views: the key list may name them (then the root's bytes are read through the view)
    r = rng.random()
    if asm.legacy_views and r < 0.15:
        vkey, st, voff, vsize = rng.choice(asm.legacy_views)
        if vkey not in roots:
            unit = itemsize(st.dtype)
            blob_for[vkey] = (vsize, st.data[voff * unit:(voff + vsize) * unit].ljust(vsize * unit, b"\0"))
            keys.append(vkey)
            tags.add("legacy:keylist_view")
    r = rng.random()
    if keys and r < 0.05:
        keys.append(rng.choice(keys))
        tags.add("legacy:keylist_dup")
    elif keys and r < 0.08:
        keys.remove(rng.choice(keys))
        tags.add("legacy:keylist_missing")
    elif keys and r < 0.12:
        rng.shuffle(keys)
        tags.add("legacy:keylist_unsorted")
    elif r < 0.14:
        keys.append("999")
        blob_for["999"] = (1, b"\0" * 4)
        tags.add("legacy:keylist_unknown")
    keys_pkl = pickle.dumps(keys, protocol=2)
    blobs = [blob_for[k] for k in keys]
    return build_legacy(pkl, keys_pkl, blobs)


def gen_asm(rng, tags):
    fmt = "zip" if rng.random() < 0.72 else "legacy"
    proto = rng.choices([2, 4, 5, 3, 1], [78, 8, 4, 5, 5])[0]
    tags.add("fmt:" + fmt)
    tags.add(f"proto:{proto}")
    for _ in range(5):
        asm = Asm(rng, tags, fmt, proto)
        try:
            pkl = asm.build()
            break
        except ValueError:
            continue
    else:
        asm = Asm(rng, tags, fmt, 2)
        pkl = asm.build()
    if fmt == "zip":
        return asm_container_zip(rng, tags, pkl, asm.records), "zip"
    return asm_container_legacy(rng, tags, asm, pkl), "legacy"


# ---------------------------------------------------------------------------
# Source (a): torch.save of random state dicts
# ---------------------------------------------------------------------------


def gen_saved(rng, tags, path):
    import torch
    torch.manual_seed(rng.randrange(2**31))

    def tdt(name):
        return getattr(torch, name)

    def rand_tensor(dname, shape):
        dt = tdt(dname)
        n = math.prod(shape)
        if n == 0:
            return torch.empty(shape, dtype=dt)
        raw = bytearray(rng.randbytes(n * itemsize(dname)))
        if dname == "bool":
            raw = bytearray(b & 1 for b in raw)
        return torch.frombuffer(raw, dtype=torch.uint8).view(dt).reshape(shape).clone()

    legacy = rng.random() < 0.25
    v3_rate = 0.3 if not legacy or rng.random() < 0.1 else 0.0

    def pick_dtype():
        r = rng.random()
        if r < 0.95 - v3_rate:
            return rng.choice(V2_DTYPES)
        if r < 0.95:
            return rng.choice(V3_DTYPES)
        return rng.choice(["complex64", "complex128"])

    made = []

    def tensor_value():
        r = rng.random()
        if made and r < 0.25:
            base = rng.choice(made)
            kind = rng.choice(["t", "slice", "step", "expand", "as_strided", "select", "same", "view_same",
                               "flatten", "unsqueeze"])
            try:
                if kind == "t" and base.dim() == 2:
                    v = base.t()
                elif kind == "slice" and base.dim() >= 1 and base.shape[0] > 1:
                    v = base[1:]
                elif kind == "step" and base.dim() >= 1 and base.shape[0] > 2:
                    v = base[::2]
                elif kind == "expand" and base.dim() >= 1:
                    v = base.unsqueeze(0).expand(rng.randint(1, 3), *base.shape)
                elif kind == "as_strided" and base.numel() >= 3:
                    v = torch.as_strided(base.reshape(-1) if base.is_contiguous() else base.contiguous(),
                                         (2, 2), (1, 1), rng.randint(0, base.numel() - 3))
                elif kind == "select" and base.dim() >= 1 and base.shape[0] >= 1:
                    v = base[0]
                elif kind == "same":
                    v = base
                elif kind == "view_same" and base.is_contiguous():
                    v = base.view(base.shape)
                elif kind == "flatten" and base.is_contiguous():
                    v = base.view(-1)
                elif kind == "unsqueeze":
                    v = base.unsqueeze(0)
                else:
                    v = base
                    kind = "same"
            except Exception:
                v = base
                kind = "same"
            tags.add("view:" + kind)
            return v
        if r < 0.30 and made:
            # orphan slice: base not saved
            tags.add("view:orphan")
            dname = pick_dtype()
            base = rand_tensor(dname, (rng.randint(4, 10),))
            return base[2:4]
        dname = pick_dtype()
        tags.add("dtype:" + dname)
        shape = rand_shape(rng)
        t = rand_tensor(dname, shape)
        made.append(t)
        r2 = rng.random()
        if r2 < 0.10 and t.is_floating_point():
            p = torch.nn.Parameter(t, requires_grad=rng.random() < 0.5)
            tags.add("param")
            if rng.random() < 0.3:
                p.my_attr = rng.choice([1, "x", None])
                tags.add("param:attr")
            return p
        if r2 < 0.14:
            attr = rng.choices(["extra", "__foo__", "__array_interface__", "__torch_function__"], [70, 10, 10, 10])[0]
            setattr(t, attr, "meta")
            tags.add("tensor:attr" if attr == "extra" else "tensor:attr:" + attr)
            if attr != "extra" and rng.random() < 0.5:
                t.extra = 1
        return t

    def nontensor_value():
        k = rng.choice(["none", "bool", "int", "bigint", "float", "str", "bytes", "list", "tuple", "set",
                        "frozenset", "size", "device", "dtype", "complex", "bytearray", "counter", "list_tensor",
                        "empty_dict"])
        tags.add("val:" + k)
        return {
            "none": lambda: None, "bool": lambda: rng.random() < 0.5, "int": lambda: rng.randint(-5, 10**6),
            "bigint": lambda: 2**70 + 3, "float": lambda: rng.choice([0.1, float("nan"), -float("inf")]),
            "str": lambda: rng.choice(["abc", "ünï", ""]), "bytes": lambda: rng.randbytes(5),
            "list": lambda: [1, "a", 2.5], "tuple": lambda: (1, (2,)), "set": lambda: {1, 2},
            "frozenset": lambda: frozenset({3}), "size": lambda: torch.Size([2, 3]),
            "device": lambda: torch.device("cpu"), "dtype": lambda: torch.bfloat16,
            "complex": lambda: complex(1, 2), "bytearray": lambda: bytearray(b"xy"),
            "counter": lambda: collections.Counter({"a": 1}),
            "list_tensor": lambda: [rand_tensor("float32", (2,))], "empty_dict": lambda: {},
        }[k]()

    def key_for(i):
        r = rng.random()
        if r < 0.08:
            tags.add("key:int")
            return i
        return rng.choice(["layer", "enc", "dec", "head"]) + f"{i}." + rng.choice(["weight", "bias", "scale"])

    def random_dict(n, depth=0):
        d = OD() if rng.random() < 0.7 else {}
        for i in range(n):
            k = key_for(i)
            r = rng.random()
            if r < 0.72:
                d[k] = tensor_value()
            elif r < 0.9 or depth >= 2:
                d[k] = nontensor_value()
            else:
                tags.add("nested")
                d[k] = random_dict(rng.randint(0, 3), depth + 1)
        return d

    r = rng.random()
    if r < 0.12:
        tags.add("top:module_state_dict")
        a, b = rng.randint(1, 6), rng.randint(1, 6)
        m = torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.LayerNorm(b), torch.nn.BatchNorm1d(b),
                                torch.nn.Embedding(rng.randint(1, 5), b))
        if rng.random() < 0.3:
            m = m.to(rng.choice([torch.float16, torch.bfloat16, torch.float64]))
        obj = m.state_dict()
        if rng.random() < 0.3:
            obj["extra.step"] = 7
    else:
        obj = random_dict(rng.choices([1, 2, 4, 6, 10], [10, 25, 30, 25, 10])[0])
    if rng.random() < 0.12:
        tags.add("top:lightning")
        obj = {"epoch": 3, "global_step": 100, "state_dict": obj,
               "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
               "hyper_parameters": {"lr": 0.1}}
    if rng.random() < 0.02:
        tags.add("val:quantized")
        obj["q"] = torch.quantize_per_tensor(torch.rand(3), 0.1, 0, torch.qint8)
    if rng.random() < 0.02:
        tags.add("val:sparse")
        obj["sp"] = torch.rand(3, 3).to_sparse()
    proto = rng.choices([2, 1, 3, 4, 5], [60, 8, 10, 14, 8])[0]
    tags.add("fmt:" + ("legacy" if legacy else "zip"))
    tags.add(f"proto:{proto}")
    if rng.random() < 0.3:
        tags.add("root:archive")
        with open(path, "wb") as f:
            torch.save(obj, f, pickle_protocol=proto, _use_new_zipfile_serialization=not legacy)
    else:
        torch.save(obj, path, pickle_protocol=proto, _use_new_zipfile_serialization=not legacy)
    with open(path, "rb") as f:
        return f.read(), ("legacy" if legacy else "zip")


# ---------------------------------------------------------------------------
# Source (c): mutations
# ---------------------------------------------------------------------------

MEMO_OPS = {"BINPUT", "LONG_BINPUT", "MEMOIZE", "PUT"}
INT_OPS = {"BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG", "LONG4"}
STR_OPS = {"BINUNICODE", "SHORT_BINUNICODE", "SHORT_BINSTRING", "BINUNICODE8", "UNICODE", "STRING",
           "BINSTRING"}


class Ops:
    def __init__(self, pkl):
        self.ops = []
        for op, arg, pos in pickletools.genops(pkl):
            self.ops.append([op, arg, pos, None])
            if op.name == "STOP":
                break
        for i, o in enumerate(self.ops):
            o[3] = self.ops[i + 1][2] if i + 1 < len(self.ops) else o[2] + 1
        self.pkl = pkl
        self.trailer = pkl[self.ops[-1][3]:]
        self.chunks = [pkl[o[2]:o[3]] for o in self.ops]
        self.names = [o[0].name for o in self.ops]

    def deframe(self):
        had = False
        keep = []
        for i, n in enumerate(self.names):
            if n == "FRAME":
                had = True
                continue
            keep.append(i)
        self.ops = [self.ops[i] for i in keep]
        self.chunks = [self.chunks[i] for i in keep]
        self.names = [self.names[i] for i in keep]
        return had

    def assemble(self, reframe):
        body = b"".join(self.chunks)
        if reframe and self.names and self.names[0] == "PROTO":
            body = framed(body)
        return body + self.trailer

    def regions(self):
        """Item spans per MARK region (and the top level).

        Returns a list of (open_index, close_index, [(start, end_inclusive), ...]):
        open_index is the MARK (or -1 for the top), close_index the op that
        consumes the region (or the STOP)."""
        levels = [[-1, []]]   # [open idx, [(op idx, depth)]]
        depth = [0]
        out = []
        for i, o in enumerate(self.ops):
            op = o[0]
            name = op.name
            if name == "MARK":
                levels[-1][1].append((i, depth[-1] + 0.5))
                levels.append([i, []])
                depth.append(0)
                continue
            before, after = op.stack_before, op.stack_after
            if pickletools.markobject in before:
                pre = before.index(pickletools.markobject)
                lvl = levels.pop()
                depth.pop()
                out.append((lvl[0], i, self._items(lvl[1], lvl[0])))
                if not levels:
                    return out
                depth[-1] += len(after) - pre
                levels[-1][1].append((i, depth[-1]))
            elif name == "POP" and depth[-1] == 0 and len(levels) > 1:
                lvl = levels.pop()
                depth.pop()
                levels[-1][1].append((i, depth[-1]))
            elif name == "STOP":
                out.append((-1, i, self._items(levels[0][1], -1)))
                break
            else:
                depth[-1] += len(after) - len(before)
                levels[-1][1].append((i, depth[-1]))
        return out

    @staticmethod
    def _items(seq, open_idx):
        if not seq:
            return []
        ds = [d for _, d in seq]
        suf = [0.0] * (len(ds) + 1)
        suf[len(ds)] = float("inf")
        for j in range(len(ds) - 1, -1, -1):
            suf[j] = min(ds[j], suf[j + 1])
        final = ds[-1]
        if final != int(final):
            return []
        ends = {}
        for j, d in enumerate(ds):
            if d == int(d) and d >= 1 and suf[j + 1] >= d:
                ends[int(d)] = j
        items = []
        prev = open_idx
        for c in range(1, int(final) + 1):
            if c not in ends:
                return []
            e = seq[ends[c]][0]
            items.append((prev + 1, e))
            prev = e
        return items


def mutate_pickle(rng, pkl, tags, is_legacy):
    """One opcode-level mutation. Returns new bytes or None."""
    try:
        ops = Ops(pkl)
    except Exception:
        return None
    had_frame = ops.deframe()
    reframe = had_frame and rng.random() < 0.85
    if had_frame and not reframe:
        tags.add("mut:deframed")
    names = ops.names
    proto = ops.ops[0][1] if names and names[0] == "PROTO" else 1
    kind = rng.choices(["int", "global", "str", "bool", "pair", "tuple_item", "replace_value", "truncate",
                        "dtype_swap", "memo_binget", "byte", "memo_far", "memo_reuse", "textnum"],
                       [24, 14, 12, 6, 16, 8, 7, 2, 7, 3, 1, 5, 4, 8])[0]
    idxs = list(range(len(names)))
    if kind in ("memo_far", "memo_reuse"):
        if not mutate_memo(rng, ops, kind, tags):
            return None
        return ops.assemble(reframe)
    if kind == "textnum":
        if not mutate_textnum(rng, ops, tags):
            return None
        return ops.assemble(reframe)

    def pick(pred):
        c = [i for i in idxs if pred(i)]
        return rng.choice(c) if c else None

    if kind == "int":
        i = pick(lambda i: names[i] in INT_OPS)
        if i is None:
            return None
        v = ops.ops[i][1]
        if not isinstance(v, int):
            return None
        nv = rng.choice([v + 1, v - 1, v + 1, v - 1, 0, 1, -1, v * 2, v // 2, v + rng.randint(2, 9),
                         2**31 - 1, 2**32, 2**63 - 1, -2**63, 2**64, 255, 256, 65536, rng.randint(0, 20)])
        text = names[i] in ("INT", "LONG")
        ops.chunks[i] = enc_int(nv, 0 if text else 2)
        tags.add("mut:int")
    elif kind == "global":
        i = pick(lambda i: names[i] in ("GLOBAL", "STACK_GLOBAL"))
        if i is None:
            return None
        m, n = rng.choice(GLOBAL_POOL)
        g = b"c" + m.encode() + b"\n" + n.encode() + b"\n"
        ops.chunks[i] = g if names[i] == "GLOBAL" else b"00" + g
        tags.add(f"mut:global:{m}.{n}")
    elif kind == "dtype_swap":
        # change a dtype or storage class global for another of the same family
        i = pick(lambda i: names[i] == "GLOBAL" and ops.ops[i][1].split(" ")[0] in ("torch", "torch.cuda")
                 and (ops.ops[i][1].split(" ")[1] in DTYPES or ops.ops[i][1].endswith("Storage")))
        if i is None:
            return None
        m, n = ops.ops[i][1].split(" ")
        if n.endswith("Storage"):
            n2 = rng.choice([v[1] for v in DTYPES.values() if v[1]])
        else:
            n2 = rng.choice(list(DTYPES))
        ops.chunks[i] = b"c" + m.encode() + b"\n" + n2.encode() + b"\n"
        tags.add("mut:dtype_swap")
    elif kind == "str":
        i = pick(lambda i: names[i] in STR_OPS)
        if i is None:
            return None
        s = ops.ops[i][1]
        if isinstance(s, bytes):
            s = s.decode("latin1")
        others = [ops.ops[j][1] for j in idxs if names[j] in STR_OPS and isinstance(ops.ops[j][1], str)]
        choice = rng.choice(["case", "append", "trunc", "empty", "other", "metadata", "format", "state_dict",
                             "nonascii", "control", "dotted", "long", "nonutf8", "surrogate", "zero", "upper"])
        if choice == "case":
            ns = s.swapcase()
        elif choice == "append":
            ns = s + rng.choice(["x", ".", "0", " "])
        elif choice == "trunc":
            ns = s[:-1]
        elif choice == "empty":
            ns = ""
        elif choice == "other" and others:
            ns = rng.choice(others)
        elif choice == "metadata":
            ns = "__metadata__"
        elif choice == "format":
            ns = "format"
        elif choice == "state_dict":
            ns = "state_dict"
        elif choice == "nonascii":
            ns = s + "é"
        elif choice == "control":
            ns = s + "\n"
        elif choice == "dotted":
            ns = s + ".a"
        elif choice == "long":
            ns = s * (300 // max(1, len(s)) + 1)
        elif choice == "surrogate":
            ns = s + "\ud800"
        elif choice == "zero":
            ns = "0"
        elif choice == "upper":
            ns = s.upper()
        else:
            ns = None
        if choice == "nonutf8":
            enc = s.encode("utf-8", "surrogatepass")[:250]
            ops.chunks[i] = b"U" + bytes([len(enc) + 1]) + enc + b"\xff"
        elif ns is None:
            return None
        elif names[i] == "SHORT_BINSTRING":
            data = ns.encode("utf-8", "surrogatepass")
            if len(data) > 255:
                data = data[:255]
            ops.chunks[i] = b"U" + bytes([len(data)]) + data
        elif names[i] in ("UNICODE", "STRING", "BINSTRING"):
            ops.chunks[i] = enc_str(ns, 0) if names[i] == "UNICODE" else \
                b"X" + struct.pack("<I", len(ns.encode("utf-8", "surrogatepass"))) + ns.encode("utf-8", "surrogatepass")
        else:
            ops.chunks[i] = enc_str(ns, proto if names[i] == "SHORT_BINUNICODE" else 2,
                                    short_ok=names[i] == "SHORT_BINUNICODE")
        tags.add("mut:str:" + choice)
    elif kind == "bool":
        i = pick(lambda i: names[i] in ("NEWTRUE", "NEWFALSE"))
        if i is None:
            return None
        ops.chunks[i] = b"\x89" if names[i] == "NEWTRUE" else b"\x88"
        tags.add("mut:bool_flip")
    elif kind in ("pair", "tuple_item", "replace_value", "memo_binget"):
        try:
            regs = ops.regions()
        except Exception:
            return None
        if kind == "pair":
            cands = [r for r in regs if r[1] < len(names) and names[r[1]] == "SETITEMS" and len(r[2]) >= 2
                     and len(r[2]) % 2 == 0]
            if not cands:
                return None
            o, c, items = rng.choice(cands)
            pairs = [(items[k][0], items[k + 1][1]) for k in range(0, len(items), 2)]
            action = rng.choice(["dup", "drop", "swap_values", "key_int", "key_bool", "key_dup", "move",
                                 "key_float", "key_short_binstring"])
            tags.add("mut:pair:" + action)
            sp = rng.choice(pairs)
            span = lambda a, b: b"".join(ops.chunks[a:b + 1])
            if action == "dup":
                ops.chunks[c] = span(*sp) + ops.chunks[c]
            elif action == "drop":
                for j in range(sp[0], sp[1] + 1):
                    ops.chunks[j] = b""
            elif action == "move":
                seg = span(*sp)
                for j in range(sp[0], sp[1] + 1):
                    ops.chunks[j] = b""
                ops.chunks[c] = seg + ops.chunks[c]
            elif action == "swap_values" and len(pairs) >= 2:
                k1, k2 = rng.sample(range(len(pairs)), 2)
                v1 = items[2 * k1 + 1]
                v2 = items[2 * k2 + 1]
                s1, s2 = span(*v1), span(*v2)
                for j in range(v1[0], v1[1] + 1):
                    ops.chunks[j] = b""
                for j in range(v2[0], v2[1] + 1):
                    ops.chunks[j] = b""
                ops.chunks[v1[0]] = s2
                ops.chunks[v2[0]] = s1
            elif action.startswith("key_"):
                k = rng.randrange(len(pairs))
                ks, ke = items[2 * k]
                if action == "key_int":
                    new = enc_int(rng.choice([0, 1, k, 7, -1, 2**40]))
                elif action == "key_bool":
                    new = rng.choice([b"\x88", b"\x89"])
                elif action == "key_float":
                    new = b"G" + struct.pack(">d", 1.0)
                elif action == "key_short_binstring":
                    new = b"U\x03abc"
                else:
                    other = items[2 * rng.randrange(len(pairs))]
                    new = span(*other)
                for j in range(ks, ke + 1):
                    ops.chunks[j] = b""
                ops.chunks[ks] = new
            else:
                return None
        elif kind == "tuple_item":
            cands = [r for r in regs if r[1] < len(names) and names[r[1]] == "TUPLE" and r[2]]
            if not cands:
                return None
            o, c, items = rng.choice(cands)
            action = rng.choice(["drop", "dup", "append_meta_neg", "append_none", "append_dict"])
            tags.add("mut:tuple:" + action)
            it = rng.choice(items)
            if action == "drop":
                for j in range(it[0], it[1] + 1):
                    ops.chunks[j] = b""
            elif action == "dup":
                ops.chunks[c] = b"".join(ops.chunks[it[0]:it[1] + 1]) + ops.chunks[c]
            elif action == "append_meta_neg":
                ops.chunks[c] = b"}(X\x03\x00\x00\x00neg\x88u" + ops.chunks[c]
            elif action == "append_none":
                ops.chunks[c] = b"N" + ops.chunks[c]
            else:
                ops.chunks[c] = b"}" + ops.chunks[c]
        elif kind == "replace_value":
            cands = [r for r in regs if r[1] < len(names) and names[r[1]] == "SETITEMS" and len(r[2]) >= 2
                     and len(r[2]) % 2 == 0]
            if not cands:
                return None
            o, c, items = rng.choice(cands)
            k = rng.randrange(len(items) // 2)
            vs, ve = items[2 * k + 1]
            new = rng.choice([b"N", b"K\x07", b"}", b"]", b")", b"\x88", b"G" + struct.pack(">d", 0.5)])
            for j in range(vs, ve + 1):
                ops.chunks[j] = b""
            ops.chunks[vs] = new
            tags.add("mut:replace_value")
        else:  # memo_binget: replace a value by a BINGET of an earlier memo entry
            puts = [i for i in idxs if names[i] in ("BINPUT", "LONG_BINPUT")]
            gets = [i for i in idxs if names[i] in ("BINGET", "LONG_BINGET")]
            if not puts or not gets:
                return None
            g = rng.choice(gets)
            earlier = [ops.ops[i][1] for i in puts if i < g]
            if not earlier:
                return None
            ops.chunks[g] = b"h" + bytes([rng.choice(earlier) & 0xFF])
            tags.add("mut:memo_binget")
    elif kind == "truncate":
        cut = rng.randrange(1, len(ops.chunks))
        ops.chunks = ops.chunks[:cut]
        ops.trailer = b""
        reframe = False
        tags.add("mut:truncate")
    elif kind == "byte":
        body = bytearray(ops.assemble(False))
        j = rng.randrange(len(body))
        body[j] = rng.randrange(256)
        tags.add("mut:byte")
        return bytes(body)
    return ops.assemble(reframe)


def find_record(entries, suffix):
    for i, (n, _) in enumerate(entries):
        if n.lower().endswith(suffix):
            return i
    return None


def mutate_zip(rng, data, tags):
    try:
        entries = read_zip(data)
    except Exception:
        return None
    if not entries:
        return None
    root = entries[0][0].split("/")[0]
    kind = rng.choices(["pickle", "case_flip", "case_dup", "byteorder", "version", "record_size",
                        "record_drop", "record_extra", "root", "reorder", "storage_key_case", "skey_rename",
                        "torch_records", "root_long"],
                       [66, 4, 3, 5, 4, 4, 2, 2, 2, 2, 3, 5, 8, 2])[0]
    if kind == "pickle":
        i = find_record(entries, "/data.pkl")
        if i is None:
            return None
        new = mutate_pickle(rng, entries[i][1], tags, False)
        if new is None:
            return None
        entries[i] = (entries[i][0], new)
    elif kind == "case_flip":
        i = rng.randrange(len(entries))
        n, d = entries[i]
        head, _, tail = n.partition("/")
        entries[i] = (head + "/" + (tail.upper() if tail != tail.upper() else tail.lower()), d)
        tags.add("mut:record_case_flip")
    elif kind == "case_dup":
        i = rng.randrange(len(entries))
        n, d = entries[i]
        head, _, tail = n.partition("/")
        d2 = rng.randbytes(len(d)) if "data/" in tail.lower() else d
        entries.insert(rng.randrange(len(entries) + 1), (head + "/" + tail.upper(), d2))
        tags.add("mut:record_case_dup")
    elif kind == "byteorder":
        i = find_record(entries, "/byteorder")
        choice = rng.choice(["big", "little", "drop", "BIG", "junk"])
        if i is None:
            if choice == "drop":
                return None
            entries.insert(1, (root + "/byteorder", choice.encode()))
        elif choice == "drop":
            del entries[i]
        else:
            entries[i] = (entries[i][0], choice.encode())
        tags.add("mut:byteorder:" + choice)
    elif kind == "version":
        i = find_record(entries, "/version")
        choice = rng.choice(["drop", "dotdata", "2", "10", "11", "0", "3", "dotdata_99"])
        if choice == "drop" and i is not None:
            del entries[i]
        elif choice == "dotdata":
            entries.append((root + "/.data/version", b"3\n"))
        elif choice == "dotdata_99":
            entries.append((root + "/.data/version", b"99\n"))
        elif i is not None:
            entries[i] = (entries[i][0], choice.encode() + b"\n")
        tags.add("mut:version:" + choice)
    elif kind == "record_size":
        cands = [i for i, (n, d) in enumerate(entries) if "/data/" in n.lower()]
        if not cands:
            return None
        i = rng.choice(cands)
        n, d = entries[i]
        if rng.random() < 0.5 and d:
            d = d[:-rng.choice([1, 2, 4, 8])] if len(d) > 8 else b""
            tags.add("mut:record_short")
        else:
            d = d + rng.randbytes(rng.choice([1, 2, 4, 8]))
            tags.add("mut:record_long")
        entries[i] = (n, d)
    elif kind == "record_drop":
        cands = [i for i, (n, d) in enumerate(entries) if "/data/" in n.lower()]
        if not cands:
            return None
        del entries[rng.choice(cands)]
        tags.add("mut:record_drop")
    elif kind == "record_extra":
        entries.append((root + "/data/" + rng.choice(["99", "extra", "0x"]), rng.randbytes(4)))
        tags.add("mut:record_extra")
    elif kind == "root":
        new = rng.choice(["archive", "ARCHIVE", root.upper(), "other"])
        if rng.random() < 0.5:
            entries = [(new + n[len(root):], d) for n, d in entries]
            tags.add("mut:root_rename")
        else:
            i = rng.randrange(1, len(entries)) if len(entries) > 1 else 0
            entries[i] = (new + entries[i][0][len(root):], entries[i][1])
            tags.add("mut:root_mixed")
    elif kind == "reorder":
        rng.shuffle(entries)
        tags.add("mut:record_reorder")
    elif kind == "torch_records":
        # .storage_alignment / .data/serialization_id / .format_version: set or added
        which = rng.choice(list(TORCH_RECORD_VALUES))
        label, value = rng.choice(TORCH_RECORD_VALUES[which])
        i = find_record(entries, "/" + which)
        if i is None:
            entries.insert(rng.randrange(len(entries) + 1), (root + "/" + which, value))
        else:
            entries[i] = (entries[i][0], value)
        tags.add(f"rec:{which.lstrip('.')}:{label}")
    elif kind == "root_long":
        new = long_root(rng, tags, [n[len(root):] for n, _ in entries])
        entries = [(new + n[len(root):], d) for n, d in entries]
    elif kind == "skey_rename":
        # rename a storage key in data.pkl (every occurrence), and usually its record too
        i = find_record(entries, "/data.pkl")
        if i is None:
            return None
        keys = {n.split("/data/", 1)[1] for n, _ in entries if "/data/" in n}
        try:
            ops = Ops(entries[i][1])
        except Exception:
            return None
        had_frame = ops.deframe()
        hits = [j for j, n in enumerate(ops.names) if n in STR_OPS and ops.ops[j][1] in keys]
        if not hits:
            return None
        old = ops.ops[rng.choice(hits)][1]
        new = rng.choice([old.upper() + "A", old + "x", "abc", "000", "data", "a.b", "-1", " 1", "\uff11",
                          "a/b", "..", "", rng.choice(sorted(keys)), "K" * 80, "é"])
        proto = ops.ops[0][1] if ops.names[0] == "PROTO" else 2
        for j, n in enumerate(ops.names):
            if n in STR_OPS and ops.ops[j][1] == old:
                ops.chunks[j] = enc_str(new, proto if n == "SHORT_BINUNICODE" else 2,
                                        short_ok=n == "SHORT_BINUNICODE")
        entries[i] = (entries[i][0], ops.assemble(had_frame))
        if rng.random() < 0.75:
            entries = [(n[:-len(old)] + new if n.endswith("/data/" + old) else n, d) for n, d in entries]
            tags.add("mut:skey_rename+record")
        else:
            tags.add("mut:skey_rename")
    elif kind == "storage_key_case":
        cands = [i for i, (n, d) in enumerate(entries) if "/data/" in n.lower()
                 and n.split("/")[-1] != n.split("/")[-1].upper()]
        if not cands:
            return None
        i = rng.choice(cands)
        entries[i] = (entries[i][0].rsplit("/", 1)[0] + "/" + entries[i][0].rsplit("/", 1)[1].upper(),
                      entries[i][1])
        tags.add("mut:storage_key_case")
    return build_zip(entries)


def mutate_legacy(rng, data, tags):
    parts = []
    pos = 0
    try:
        for _ in range(5):
            end = None
            for op, arg, p in pickletools.genops(data[pos:]):
                if op.name == "STOP":
                    end = pos + p + 1
                    break
            parts.append(data[pos:end])
            pos = end
        keys = _ListOnly(io.BytesIO(parts[4])).load()
    except Exception:
        return None
    rest = data[pos:]
    kind = rng.choices(["main", "keys", "count", "trailing", "truncate", "sysinfo", "magic", "persid_side",
                        "tar"], [78, 8, 5, 3, 2, 2, 2, 7, 5])[0]
    if kind == "persid_side":
        which = rng.choice([2, 2, 4, 4, 0])
        new = side_pickle_with_persid(rng, parts[which], keys, tags, {0: "magic", 2: "sys_info", 4: "keys"}[which])
        if new is None:
            return None
        parts[which] = new
    elif kind == "tar":
        new = tar_header_sys_info(rng, parts[0] + parts[1], tags)
        if new is None:
            return None
        parts[2] = new
    elif kind == "main":
        new = mutate_pickle(rng, parts[3], tags, True)
        if new is None:
            return None
        parts[3] = new
    elif kind == "keys":
        if not isinstance(keys, list) or not keys:
            return None
        action = rng.choice(["dup", "drop", "reverse", "add"])
        k2 = list(keys)
        if action == "dup":
            k2.append(rng.choice(k2))
        elif action == "drop":
            k2.remove(rng.choice(k2))
        elif action == "reverse":
            k2.reverse()
        else:
            k2.insert(rng.randrange(len(k2) + 1), "12345")
        parts[4] = pickle.dumps(k2, protocol=2)
        tags.add("mut:legacy_keys:" + action)
    elif kind == "count":
        if len(rest) < 8:
            return None
        (c,) = struct.unpack("<q", rest[:8])
        rest = struct.pack("<q", rng.choice([c + 1, c - 1, 0, 2**62])) + rest[8:]
        tags.add("mut:legacy_count")
    elif kind == "trailing":
        rest = rest + rng.randbytes(rng.randint(1, 8))
        tags.add("mut:legacy_trailing")
    elif kind == "truncate":
        if not rest:
            return None
        rest = rest[:-rng.randint(1, len(rest))]
        tags.add("mut:legacy_truncate")
    elif kind == "sysinfo":
        parts[2] = sys_info_pickle(little=False)
        tags.add("mut:legacy_sysinfo_big")
    else:
        parts[1] = b"\x80\x02M\xea\x03."
        tags.add("mut:legacy_protocol_1002")
    return b"".join(parts) + rest


def mutate_file(rng, data, fmt, tags):
    n = rng.choices([1, 2, 3], [70, 20, 10])[0]
    done = 0
    for _ in range(n * 4):
        if done >= n:
            break
        new = mutate_zip(rng, data, tags) if fmt == "zip" else mutate_legacy(rng, data, tags)
        if new is not None:
            data = new
            done += 1
    return data, done


# ---------------------------------------------------------------------------
# Constructs from the adversarial review: zip central directory, the records
# torch reads, legacy side pickles, memo indices, text numbers
# ---------------------------------------------------------------------------

# record -> [(label, value)]; torch: int(.storage_alignment), .data/serialization_id
# decoded as UTF-8 at the end of the load, .format_version compared as bytes
TORCH_RECORD_VALUES = {
    ".storage_alignment": [("64", b"64"), ("0064", b"0064"), ("sp64", b" 64"), ("abc", b"abc"), ("empty", b""),
                           ("6_4", b"6_4"), ("-1", b"-1"), ("64nl", b"64\n"), ("0", b"0")],
    ".data/serialization_id": [("nonutf8", b"\xff"), ("nonutf8_tail", b"1234567890\xc3("), ("empty", b""),
                               ("ascii", b"abc"), ("surrogate", b"\xed\xa0\x80")],
    ".format_version": [("1", b"1"), ("2", b"2"), ("0", b"0"), ("99", b"99"), ("empty", b""), ("abc", b"abc"),
                        ("01", b"01"), ("sp1", b" 1"), ("-1", b"-1"), ("nonutf8", b"\xff")],
}

# torch copies the first record name into a 512-byte buffer to find the root
ZIP_NAME_LIMIT = 510
TORCH_RECORDS = ["/data.pkl", "/byteorder", "/version", "/data/0", "/.data/version", "/.format_version",
                 "/.storage_alignment", "/.data/serialization_id"]


def long_root(rng, tags, suffixes=TORCH_RECORDS):
    """An archive root of 490-530 bytes: around torch's limit for the names under it."""
    n = rng.randint(490, 530)
    root = rng.choice(["r" * n, ("long_archive_root_" * 40)[:n], "é" * (n // 2) + "r" * (n % 2)])
    # torch 2.15 refuses a root over 510 bytes ("file in archive is not in a
    # subdirectory"); names under a shorter root may be longer
    rb = len(root.encode())
    tags.add("root:long:root_" + ("over" if rb > ZIP_NAME_LIMIT else "within") + "_510")
    if any(len((root + s).encode()) > ZIP_NAME_LIMIT for s in suffixes):
        tags.add("root:long:names_over_510")
    return root


# -- memo -------------------------------------------------------------------

PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
# far memo indices and whether CPython's array memo (the extended reference)
# would try to allocate more than a machine has for them
MEMO_FAR = [(1000, False), (2**20, False), (0xFFFFFFFF, True), (10**12, True), (300, False)]


def enc_put(idx, text, rng):
    if text or idx > 0xFFFFFFFF:
        return b"p%d\n" % idx
    if idx < 256 and rng.random() < 0.8:
        return b"q" + bytes([idx])
    return b"r" + struct.pack("<I", idx)


def enc_get(idx, text):
    if text or idx > 0xFFFFFFFF:
        return b"g%d\n" % idx
    if idx < 256:
        return b"h" + bytes([idx])
    return b"j" + struct.pack("<I", idx)


def memo_rewrite(rng, ops, at, forced, force_text):
    """Make the put at op `at` store into memo index `forced`; later puts and
    gets are re-encoded so every get still reads what it read before (except
    reads of an index the forced put overwrote). MEMOIZE numbers like
    CPython: the count of distinct indices written so far."""
    orig_def, new_def = set(), set()
    m, owner = {}, {}      # original index -> new index (live); new -> original
    for t, n in enumerate(ops.names):
        if n in PUT_OPS:
            o = ops.ops[t][1] if n != "MEMOIZE" else len(orig_def)
            orig_def.add(o)
            natural = len(new_def) if n == "MEMOIZE" else o
            if t == at:
                target = forced
            else:
                target = natural
                if target in owner and owner[target] != o:
                    target = 0
                    while target in new_def:
                        target += 1
            if o in m and owner.get(m[o]) == o:
                del owner[m[o]]
            if target in owner:
                m.pop(owner[target], None)
            m[o] = target
            owner[target] = o
            new_def.add(target)
            if t == at or target != natural:
                ops.chunks[t] = enc_put(target, n == "PUT" or (t == at and force_text), rng)
        elif n in GET_OPS:
            o = ops.ops[t][1]
            tg = m.get(o)
            if tg is not None and tg != o:
                ops.chunks[t] = enc_get(tg, n == "GET")


def mutate_memo(rng, ops, kind, tags):
    names = ops.names
    puts = [t for t, n in enumerate(names) if n in PUT_OPS]
    if not puts:
        return False
    at = rng.choice(puts)
    if kind == "memo_far":
        idx, huge = rng.choice(MEMO_FAR)
        text = idx > 0xFFFFFFFF or names[at] == "PUT" or rng.random() < 0.1
        memo_rewrite(rng, ops, at, idx, text)
        tags.add(f"memo:far:{idx:#x}" if idx == 0xFFFFFFFF else f"memo:far:{idx}")
        tags.add("memo:far_" + ("text_put" if text else "long_binput"))
        if huge:
            tags.add(HUGE_ALLOC_TAG)
        return True
    # reuse: store into an index written earlier (an overwrite)
    seen = []
    ndef = set()
    for t, n in enumerate(names[:at]):
        if n in PUT_OPS:
            o = ops.ops[t][1] if n != "MEMOIZE" else len(ndef)
            ndef.add(o)
            seen.append(o)
    own = ops.ops[at][1] if names[at] != "MEMOIZE" else len(ndef)
    cands = sorted(set(seen) - {own})
    if not cands:
        return False
    memo_rewrite(rng, ops, at, rng.choice(cands), names[at] == "PUT")
    tags.add("memo:reuse")
    return True


# the generator flags files on which the extended reference (CPython's array
# memo) asks for more memory than the machine has; the worker makes sure an
# RLIMIT_AS is in effect for them
HUGE_ALLOC_TAG = "alloc:huge"


# -- text numbers (protocol 0/1 opcodes) -------------------------------------

TEXT_FLOATS = ["1e400", "-1e400", "1.7976931348623159e308", "1.7976931348623157e308", "1e-400", "-1e-400",
               "4.9e-324", "2.5e-324", "inf", "nan", "-0.0", "1.5"]
TEXT_NONCANON = ["I010", "I+1", "I0x10", "L0x1fL", "I1_0", "I-0", "I 1", "L010L", "L+1L", "I00", "I01",
                 "F0x1p3", "F1_0.5", "F1.", "F.5", "F1E3", "F+1.5", "F 1.5", "Finfinity", "FNaN", "F1e5"]


def text_number(rng, tags):
    form = rng.choice(["digits", "float", "noncanon", "noncanon"])
    if form == "digits":
        n = rng.choice([4299, 4300, 4301])
        op = rng.choice("IL")
        sign = rng.choice(["", "", "-"])
        digits = str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=n - 1))
        tags.add(f"text:{op}_digits:{n}" + (":neg" if sign else ""))
        return (op + sign + digits + ("L" if op == "L" else "")).encode() + b"\n"
    if form == "float":
        f = rng.choice(TEXT_FLOATS)
        tags.add("text:F" + f)
        return b"F" + f.encode() + b"\n"
    v = rng.choice(TEXT_NONCANON)
    tags.add("text:" + v.replace(" ", "sp"))
    return v.encode() + b"\n"


def text_spelling_of(rng, v, tags):
    """A text INT/LONG spelling of the int v (canonical or not)."""
    forms = ["I", "L", "I+", "Ihex", "Lhex", "I0", "I_"]
    f = rng.choice(forms)
    if f == "I":
        b = b"I%d" % v
    elif f == "L":
        b = b"L%dL" % v
    elif f == "I+":
        b = b"I+%d" % v if v >= 0 else b"I%d" % v
    elif f == "Ihex":
        b = b"I%s" % hex(v).encode()
    elif f == "Lhex":
        b = b"L%sL" % hex(v).encode()
    elif f == "I0":
        b = b"I0%d" % v if v >= 0 else b"I-0%d" % -v
    else:
        t = b"%d" % abs(v)
        b = b"I" + (b"-" if v < 0 else b"") + (t[:1] + b"_" + t[1:] if len(t) > 1 else t)
    tags.add("text:inplace_int:" + f)
    return b + b"\n"


def mutate_textnum(rng, ops, tags):
    names = ops.names
    how = rng.choices(["insert", "inplace_int", "inplace_float"], [60, 30, 10])[0]
    if how == "inplace_int":
        c = [t for t, n in enumerate(names) if n in INT_OPS and isinstance(ops.ops[t][1], int)
             and not isinstance(ops.ops[t][1], bool)]
        if not c:
            return False
        t = rng.choice(c)
        ops.chunks[t] = text_spelling_of(rng, ops.ops[t][1], tags)
        return True
    if how == "inplace_float":
        c = [t for t, n in enumerate(names) if n == "BINFLOAT"]
        if not c:
            return False
        t = rng.choice(c)
        f = ops.ops[t][1]
        form = rng.choice(["repr", "hex", "under", "17g"])
        s = {"repr": repr(f), "hex": f.hex(), "17g": "%.17g" % f,
             "under": repr(f).replace(".", "_0.", 1) if repr(f)[:1].isdigit() else repr(f)}[form]
        ops.chunks[t] = b"F" + s.encode() + b"\n"
        tags.add("text:inplace_float:" + form)
        return True
    # insert a (key, text number) pair: a dropped entry of some dict
    key = enc_str("txt%d" % rng.randrange(1000), 2)
    val = text_number(rng, tags)
    c = [t for t, n in enumerate(names) if n == "SETITEMS"]
    if c:
        t = rng.choice(c)
        ops.chunks[t] = key + val + ops.chunks[t]
        return True
    c = [t for t, n in enumerate(names) if n == "EMPTY_DICT"]
    if not c:
        return False
    t = rng.choice(c)
    ops.chunks[t] = ops.chunks[t] + key + val + b"s"
    return True


# -- legacy side pickles -------------------------------------------------------

def persid_bytes(rng, keys):
    key = str(rng.choice(keys)) if keys and isinstance(keys, list) and rng.random() < 0.8 else "10"
    return (b"(" + enc_str("storage", 2) + b"ctorch\nFloatStorage\n" + enc_str(key, 2) + enc_str("cpu", 2) +
            b"K\x04Nt" + b"Q")


def side_pickle_with_persid(rng, pkl, keys, tags, which):
    """A storage reference (BINPERSID) inside the magic, sys_info or key-list
    pickle: torch reads those without a persistent_load."""
    pid = persid_bytes(rng, keys)
    try:
        ops = Ops(pkl)
    except Exception:
        return None
    names = ops.names
    how = rng.choice(["pop", "value"])
    if how == "value":
        c = [t for t, n in enumerate(names) if n in ("SETITEMS", "APPENDS")]
        if not c:
            how = "pop"
        else:
            t = c[-1]
            item = (enc_str("x", 2) + pid) if names[t] == "SETITEMS" else pid
            ops.chunks[t] = item + ops.chunks[t]
    if how == "pop":
        at = 1 if names and names[0] == "PROTO" else 0
        ops.chunks[at] = pid + b"0" + ops.chunks[at]
    tags.add(f"legacy:persid_in:{which}:{how}")
    return ops.assemble(False)


def tar_header_sys_info(rng, head, tags):
    """A sys_info pickle that makes the file's first 512 bytes a tar header
    (valid checksum) or almost one (checksum off by one)."""
    si = b"\x80\x02}(" + enc_str("little_endian", 2) + b"\x88" + enc_str("pad", 2)
    prefix_len = len(head) + len(si) + 5
    if prefix_len > 100:
        return None
    pad_len = 512 - prefix_len + 16
    pad = bytearray(pad_len)

    def put(off, data):
        pad[off - prefix_len:off - prefix_len + len(data)] = data
    for off, ln in [(100, 8), (108, 8), (116, 8), (124, 12), (136, 12)]:
        put(off, b"0" * (ln - 1) + b"\0")
    put(156, rng.choice([b"0", b"0", b"5", b"\0"]))
    put(148, b" " * 8)
    blob = bytearray(head + si + b"X" + struct.pack("<I", pad_len) + bytes(pad) + b"u.")
    bad = rng.random() < 0.3
    blob[148:156] = b"%06o\0 " % (sum(blob[:512]) + (1 if bad else 0))
    tags.add("legacy:tar_header:" + ("badsum" if bad else "valid") + ":type" + repr(chr(blob[156]))[1:-1])
    return bytes(blob[len(head):])


# -- zip central directory and end records ------------------------------------

class RawZip:
    """The central directory and end records of an archive, patched and
    rewritten in place (everything before the central directory is kept)."""

    def __init__(self, data):
        d = bytes(data)
        e = len(d) - 22
        if e < 0 or d[e:e + 4] != b"PK\x05\x06":
            e = d.rfind(b"PK\x05\x06")
            if e < 0:
                raise ValueError("no end record")
        self.eocd = e
        n, cd_size, cd_off = struct.unpack_from("<HII", d, e + 10)
        self.loc = self.z64 = None
        if e >= 20 and d[e - 20:e - 16] == b"PK\x06\x07":
            loc = e - 20
            (z,) = struct.unpack_from("<Q", d, loc + 8)
            if d[z:z + 4] == b"PK\x06\x06":
                self.loc, self.z64 = loc, z
                n, cd_size, cd_off = struct.unpack_from("<QQQ", d, z + 32)
        self.recs = []
        i = cd_off
        for _ in range(n):
            if d[i:i + 4] != b"PK\x01\x02":
                raise ValueError("bad central directory")
            nl, xl, cl = struct.unpack_from("<HHH", d, i + 28)
            self.recs.append([bytearray(d[i:i + 46]), d[i + 46:i + 46 + nl], d[i + 46 + nl:i + 46 + nl + xl],
                              d[i + 46 + nl + xl:i + 46 + nl + xl + cl]])
            i += 46 + nl + xl + cl
        self.cd_off, self.cd_end = cd_off, i
        if self.z64 is not None and self.z64 < self.cd_end:
            raise ValueError("zip64 end record inside the central directory")
        self.data = bytearray(d)

    def field(self, r, off, fmt):
        return struct.unpack_from(fmt, self.recs[r][0], off)[0]

    def set_field(self, r, off, fmt, v):
        struct.pack_into(fmt, self.recs[r][0], off, v)

    def lfh(self, r):
        return self.field(r, 42, "<I")

    def build(self):
        cd = bytearray()
        for fixed, name, extra, comment in self.recs:
            struct.pack_into("<HHH", fixed, 28, len(name), len(extra), len(comment))
            cd += fixed + name + extra + comment
        mid = bytearray(self.data[self.cd_end:self.eocd])
        tail = bytearray(self.data[self.eocd:])
        delta = len(cd) - (self.cd_end - self.cd_off)
        if self.z64 is not None:
            struct.pack_into("<Q", mid, self.z64 - self.cd_end + 40, len(cd))
            struct.pack_into("<Q", mid, self.loc - self.cd_end + 8, self.z64 + delta)
        if struct.unpack_from("<I", tail, 12)[0] != 0xFFFFFFFF:
            struct.pack_into("<I", tail, 12, len(cd))
        return bytes(self.data[:self.cd_off] + cd + mid + tail)


def upath_field(raw_name, new_name, crc_ok=True):
    crc = zlib.crc32(raw_name if crc_ok else raw_name + b"x") & 0xFFFFFFFF
    body = b"\x01" + struct.pack("<I", crc) + new_name
    return struct.pack("<HH", 0x7075, len(body)) + body


def patch_zip_raw(rng, data, tags):
    """One central-directory or end-record patch on a random entry."""
    try:
        z = RawZip(data)
    except Exception:
        return None
    if not z.recs:
        return None
    kinds = ["dir_attr", "dir_slash", "flag_2000", "disk_start", "upath", "upath_swap", "zip64_extra",
             "unknown_extra", "eocd"]
    weights = [10, 5, 8, 8, 10, 8, 14, 8, 3]
    if z.z64 is not None:
        kinds.append("zip64_end")
        weights.append(30)
    kind = rng.choices(kinds, weights)[0]
    nrec = len(z.recs)
    data_recs = [r for r in range(nrec) if b"/data/" in z.recs[r][1]]
    r = rng.choice(data_recs) if data_recs and rng.random() < 0.6 else rng.randrange(nrec)
    name = z.recs[r][1]
    if kind == "dir_attr":
        v = z.field(r, 38, "<I")
        z.set_field(r, 38, "<I", rng.choice([v | 0x10, 0x10]))
        if rng.random() < 0.3:
            z.recs[r][1] = name + b"/"
            tags.add("zipcd:dir_attr+slash")
        else:
            tags.add("zipcd:dir_attr")
    elif kind == "dir_slash":
        z.recs[r][1] = name + b"/"
        tags.add("zipcd:name_slash")
    elif kind == "flag_2000":
        z.set_field(r, 8, "<H", z.field(r, 8, "<H") | 0x2000)
        tags.add("zipcd:flag_2000")
    elif kind == "disk_start":
        d = rng.choice([1, 2])
        z.set_field(r, 34, "<H", d)
        tags.add(f"zipcd:disk_start:{d}")
    elif kind == "upath":
        others = [z.recs[j][1] for j in range(nrec) if j != r]
        how = rng.choice(["other", "other", "variant", "same"])
        if how == "other" and others:
            new = rng.choice(others)
        elif how == "same":
            new = name
        else:
            how = "variant"
            new = name[:-1] + (b"9" if name[-1:] != b"9" else b"8")
        crc_ok = rng.random() < 0.85
        z.recs[r][2] = z.recs[r][2] + upath_field(name, new, crc_ok)
        lfh_too = rng.random() < 0.5 and len(new) == len(name) and new != name
        if lfh_too:
            off = z.lfh(r)
            if z.data[off:off + 4] == b"PK\x03\x04" and struct.unpack_from("<H", z.data, off + 26)[0] == len(name):
                z.data[off + 30:off + 30 + len(name)] = new
            else:
                lfh_too = False
        tags.add(f"zipcd:upath_rename:{how}" + ("" if crc_ok else ":badcrc") + (":lfh" if lfh_too else ""))
    elif kind == "upath_swap":
        pool = data_recs if len(data_recs) >= 2 else list(range(nrec))
        if len(pool) < 2:
            return None
        a, b = rng.sample(pool, 2)
        na, nb = z.recs[a][1], z.recs[b][1]
        z.recs[a][2] = z.recs[a][2] + upath_field(na, nb)
        z.recs[b][2] = z.recs[b][2] + upath_field(nb, na)
        lfh_too = len(na) == len(nb) and rng.random() < 0.7
        if lfh_too:
            for j, new in ((a, nb), (b, na)):
                off = z.lfh(j)
                if z.data[off:off + 4] == b"PK\x03\x04" and struct.unpack_from("<H", z.data, off + 26)[0] == len(new):
                    z.data[off + 30:off + 30 + len(new)] = new
        tags.add("zipcd:upath_swap" + (":lfh" if lfh_too else ""))
    elif kind == "zip64_extra":
        size = rng.choice([8, 16, 24])
        usize, csize, off = z.field(r, 24, "<I"), z.field(r, 20, "<I"), z.lfh(r)
        others = [j for j in range(nrec) if j != r]
        how = rng.choice(["own", "other", "swap32", "bigger"]) if others else rng.choice(["own", "bigger"])
        if how == "other":
            o = rng.choice(others)
            vals = [z.field(o, 24, "<I"), z.field(o, 20, "<I"), z.lfh(o)]
        elif how == "swap32":
            # the 32-bit fields point at another entry, the ZIP64 ones at this one
            o = rng.choice(others)
            vals = [usize, csize, off]
            z.set_field(r, 24, "<I", z.field(o, 24, "<I"))
            z.set_field(r, 20, "<I", z.field(o, 20, "<I"))
            z.set_field(r, 42, "<I", z.lfh(o))
            size = 24
        elif how == "bigger":
            vals = [usize + 4, csize + 4, off]
        else:
            vals = [usize, csize, off]
        z.recs[r][2] = z.recs[r][2] + struct.pack("<HH", 1, size) + struct.pack("<3Q", *vals)[:size]
        tags.add(f"zipcd:zip64_extra:{size}:{how}")
    elif kind == "unknown_extra":
        how = rng.choice(["cafe", "cafe", "ut_timestamp", "truncated"])
        if how == "cafe":
            body = rng.randbytes(rng.choice([0, 1, 4, 8]))
            ex = struct.pack("<HH", 0xCAFE, len(body)) + body
        elif how == "ut_timestamp":
            ex = struct.pack("<HHBI", 0x5455, 5, 1, 315532800)
        else:
            ex = struct.pack("<HH", 0xCAFE, 12) + b"\0" * 4
        z.recs[r][2] = z.recs[r][2] + ex
        tags.add("zipcd:extra:" + how)
    elif kind == "eocd":
        e = z.eocd
        how = rng.choice(["disk", "cd_disk", "entries_on_disk"])
        if how == "disk":
            struct.pack_into("<H", z.data, e + 4, 1)
        elif how == "cd_disk":
            struct.pack_into("<H", z.data, e + 6, 1)
        else:
            n = struct.unpack_from("<H", z.data, e + 10)[0]
            struct.pack_into("<H", z.data, e + 8, max(0, n - 1) if n else 1)
        tags.add("zipeocd:" + how)
    else:
        how = rng.choice(["locator_disks_0", "locator_disks_2", "locator_z64_disk_1", "z64_disk_1",
                          "z64_cd_disk_1", "z64_entries_on_disk"])
        if how.startswith("locator_disks"):
            struct.pack_into("<I", z.data, z.loc + 16, int(how[-1]))
        elif how == "locator_z64_disk_1":
            struct.pack_into("<I", z.data, z.loc + 4, 1)
        elif how == "z64_disk_1":
            struct.pack_into("<I", z.data, z.z64 + 16, 1)
        elif how == "z64_cd_disk_1":
            struct.pack_into("<I", z.data, z.z64 + 20, 1)
        else:
            (n,) = struct.unpack_from("<Q", z.data, z.z64 + 32)
            struct.pack_into("<Q", z.data, z.z64 + 24, rng.choice([n - 1, n + 1]) if n else 1)
        tags.add("zip64end:" + how)
    return z.build()


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

ZIP_RAW_RATE = 0.12

EXTS = [".pt", ".pt", ".pt", ".bin", ".ckpt", ".pth"]


def generate_case(seed, idx, outdir):
    rng = random.Random(f"decant-diff:{seed}:{idx}")
    tags = set()
    src = rng.choices(["save", "asm", "save+mut", "asm+mut"], [30, 35, 15, 20])[0]
    stem = rng.choices(["pytorch_model", "model", "ckpt", "weights", "x"], [40, 20, 20, 10, 10])[0]
    path = os.path.join(outdir, f"c{idx:07d}_{stem}{rng.choice(EXTS)}")
    if src.startswith("save"):
        data, fmt = gen_saved(rng, tags, path)
    else:
        data, fmt = gen_asm(rng, tags)
    if src.endswith("+mut"):
        data, n = mutate_file(rng, data, fmt, tags)
        if n == 0:
            src = src[:-4]
    if fmt == "zip" and rng.random() < ZIP_RAW_RATE:
        # last: these patch the bytes (torch.save's ZIP64 end records included)
        new = patch_zip_raw(rng, data, tags)
        if new is not None:
            data = new
            tags.add("zipraw")
    tags.add("src:" + src)
    with open(path, "wb") as f:
        f.write(data)
    return path, sorted(tags)
