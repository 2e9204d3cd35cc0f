"""The torch side of the differential harness: what decant's output must be.

`reference(path)` returns a JSON-able dict:
  {"status": "loaded", "mode": "plain"|"extended", "tensors": {name: {dtype, shape, sha256}},
   "aliases": {removed: kept}, "dropped": [...], "ignored": [...]}
  {"status": "refused", "mode": ..., "error": "Type: first line"}
  {"status": "design", "mode": ..., "reason": "not_dict:list" | "key_type:bool" | "dtype:complex64" | ...}
  {"status": "too_big", ...}   (the output would pass the runner's cap)

Rules (README.md): torch.load(weights_only=True); on "Unsupported operand"
(opcodes of protocols 0/1/3/4/5 the weights-only unpickler lacks) an
*extended* load through the full C unpickler whose find_class resolves only
what the weights-only loader resolves. Never an unrestricted unpickler.
"""

import hashlib
import pickle
import types
import warnings

import torch
import torch._weights_only_unpickler as _wo
from torch._utils import IMPORT_MAPPING, NAME_MAPPING

OUTPUT_CAP = 64 << 20   # the runner's cap (bytes of tensor data)

SAFETENSORS_DTYPE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.float8_e4m3fnuz: "F8_E4M3FNUZ", torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
    torch.float8_e8m0fnu: "F8_E8M0",
}


# ---------------------------------------------------------------------------
# The extended (restricted full-unpickler) pickle module
# ---------------------------------------------------------------------------

def _restricted_find_class(module, name):
    """Exactly what torch._weights_only_unpickler resolves for GLOBAL module name
    (no user allowlist): _read_global_instruction's mappings, the blocklist,
    then the joined-string lookup in _get_allowed_globals()."""
    if type(module) is not str or type(name) is not str:
        raise pickle.UnpicklingError("restricted: module and name must be str")
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    full_path = f"{module}.{name}"
    if module in _wo._blocklisted_modules:
        raise pickle.UnpicklingError(
            f"Trying to load unsupported GLOBAL {full_path} whose module {module} is blocked.")
    allowed = _wo._get_allowed_globals()
    if full_path in allowed:
        return allowed[full_path]
    raise pickle.UnpicklingError(
        f"Unsupported global: GLOBAL {full_path} was not an allowed global by default.")


class _RestrictedUnpickler(pickle.Unpickler):
    """C unpickler (all protocols) with the weights-only global rules.

    torch's UnpicklerWrapper subclasses this and overrides find_class (it
    returns StorageType(name) for any module when 'Storage' is in the name):
    an instance attribute beats that class method, so every GLOBAL /
    STACK_GLOBAL / INST / OBJ resolution goes through the restricted lookup.
    persistent_load gets the weights-only BINPERSID checks (tuple or int,
    pid[0] == "storage") in front of torch's own loader."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.find_class = _restricted_find_class

    @property
    def persistent_load(self):
        return self._restricted_pl

    @persistent_load.setter
    def persistent_load(self, func):
        def checked(pid):
            if type(pid) is not tuple and type(pid) is not int:
                raise pickle.UnpicklingError(
                    f"persistent_load id must be tuple or int, but got {type(pid)}")
            if type(pid) is tuple and len(pid) > 0 and \
                    torch.serialization._maybe_decode_ascii(pid[0]) != "storage":
                raise pickle.UnpicklingError(
                    f"Only persistent_load of storage is allowed, but got {type(pid[0])}")
            return func(pid)
        self._restricted_pl = checked
        pickle.Unpickler.persistent_load.__set__(self, checked)


def _restricted_load(file, **kwargs):
    return _RestrictedUnpickler(file, **kwargs).load()


EXTENDED = types.ModuleType("decant_diff_restricted_pickle")
EXTENDED.Unpickler = _RestrictedUnpickler
EXTENDED.load = _restricted_load
EXTENDED.UnpicklingError = pickle.UnpicklingError
EXTENDED.__version__ = "1"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def condense(e):
    """'Type: first meaningful line' of an exception, unwrapping torch's
    'Weights only load failed ...' envelope to the unpickler's own message."""
    msg = str(e)
    if msg.startswith("Weights only load failed"):
        body = msg.split("\n\nCheck the documentation of torch.load")[0]
        marker = "WeightsUnpickler error: "
        if marker in body:
            body = body.split(marker, 1)[1]
        elif "\n\n" in body:
            body = body.rsplit("\n\n", 1)[1]
        else:
            body = body[len("Weights only load failed."):]
        msg = body
    for line in msg.splitlines():
        line = line.strip()
        if line:
            msg = line
            break
    else:
        msg = ""
    return f"{type(e).__name__}: {msg[:300]}"


# ---------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------

class Design(Exception):
    """torch loads it, but decant refuses by design."""


def key_text(k):
    if type(k) is str:
        return k
    if type(k) is int:
        return str(k)
    raise Design(f"key_type:{type(k).__name__}")


def tensor_bytes(t):
    t = t.detach()
    try:
        if t.is_conj():
            t = t.resolve_conj()
        if t.is_neg():
            t = t.resolve_neg()
    except Exception as e:  # noqa: BLE001 - e.g. neg bit on a float8 tensor
        raise Design(f"unmaterializable:{type(e).__name__}") from None
    if t.numel() == 0:
        return b""
    # Bitwise copy in C order through a same-size integer view (works for
    # every dtype and stride, incl. bool bytes other than 0/1, NaN payloads).
    bits = t.view(_INT_OF_SIZE[t.element_size()])
    flat = torch.empty(t.numel(), dtype=bits.dtype)
    flat.view(t.shape).copy_(bits)
    return flat.view(torch.uint8).numpy().tobytes()


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def describe(obj, mode):
    if not isinstance(obj, dict):
        raise Design(f"not_dict:{type(obj).__name__}")
    ignored = []
    sel = obj
    if any(type(k) is str and k == "state_dict" for k in obj):
        sel = obj["state_dict"]
        if not isinstance(sel, dict):
            raise Design(f"state_dict_not_dict:{type(sel).__name__}")
        for k in obj:
            if type(k) is str and k == "state_dict":
                continue
            ignored.append(key_text(k))
    tensors = []       # (name, tensor)
    dropped = []
    names = set()
    seen = set()

    def walk(d, prefix, depth):
        if id(d) in seen:
            raise Design("cycle")
        if depth > 200:
            raise Design("too_deep")
        seen.add(id(d))
        for k, v in d.items():
            kt = key_text(k)
            name = kt if prefix is None else prefix + "." + kt
            if isinstance(v, torch.Tensor):
                if name in names:
                    raise Design("duplicate_name")
                names.add(name)
                tensors.append((name, v))
            elif isinstance(v, dict):
                walk(v, name, depth + 1)
            else:
                if name in names:
                    raise Design("duplicate_name")
                names.add(name)
                dropped.append(name)
        seen.discard(id(d))

    walk(sel, None, 0)
    total = 0
    if "__metadata__" in names:
        raise Design("name:__metadata__")
    for name, t in tensors:
        if t.layout != torch.strided:
            raise Design(f"layout:{t.layout}")
        if t.is_quantized:
            raise Design("quantized")
        if t.is_nested:
            raise Design("nested")
        if t.device.type != "cpu":
            raise Design(f"device:{t.device.type}")
        if t.dtype not in SAFETENSORS_DTYPE:
            raise Design(f"dtype:{str(t.dtype).replace('torch.', '')}")
        total += t.numel() * t.element_size()
    if total > OUTPUT_CAP:
        return {"status": "too_big", "mode": mode, "bytes": total}
    # aliases
    groups = {}
    for name, t in tensors:
        # torch reports a null data_ptr() for every empty tensor: tensors
        # without elements never alias (docs/SEMANTICS.md).
        if t.untyped_storage().nbytes() > 0 and t.numel() > 0:
            key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)
            groups.setdefault(key, []).append(name)
    aliases = {}
    for members in groups.values():
        if len(members) > 1:
            kept = members[0]  # the first in the state dict's order
            for m in members:
                if m != kept:
                    aliases[m] = kept
    out = {}
    for name, t in tensors:
        if name in aliases:
            continue
        out[name] = {"dtype": SAFETENSORS_DTYPE[t.dtype], "shape": list(t.shape),
                     "sha256": hashlib.sha256(tensor_bytes(t)).hexdigest()}
        if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
            # docs/SEMANTICS.md, deliberate difference 2: in a big-endian
            # archive torch leaves these (untyped storages) unswapped and
            # decant writes the saved values, i.e. torch's bytes swapped.
            swapped = bytearray(tensor_bytes(t))
            k = t.element_size()
            for i in range(0, len(swapped), k):
                swapped[i:i + k] = swapped[i:i + k][::-1]
            out[name]["sha256_swapped"] = hashlib.sha256(bytes(swapped)).hexdigest()
    return {"status": "loaded", "mode": mode, "tensors": out, "aliases": aliases,
            "dropped": dropped, "ignored": ignored}


def _fingerprint():
    """Identity of the process state a load could corrupt: the allowlisted
    objects (classes, StorageType holders, functions) and their attributes.
    The extended loader's BUILD is the full unpickler's (setattr on any
    object, classes included), so a mutated file could change them; the
    weights-only unpickler's BUILD/setattr reach instances only. Taken right
    before and after each extended load (torch.save in the generator caches
    __slotnames__ on classes, which is harmless)."""
    fp = []
    for k, v in _wo._get_allowed_globals().items():
        d = getattr(v, "__dict__", None)
        if d is None:
            fp.append((k, id(v)))
        elif len(d) > 200:   # the 40 legacy tensor types share one big namespace
            fp.append((k, id(v), len(d)))
        else:
            fp.append((k, id(v), tuple((a, id(b)) for a, b in list(d.items()))))
    return hash(tuple(fp))


def reference(path):
    warnings.simplefilter("ignore")
    # torch keeps sparse tensors to validate in thread-local state; a load that
    # failed midway leaves them there for the next load to trip over.
    torch.serialization._serialization_tls.sparse_tensors_to_validate = []
    mode = "plain"
    plain_error = None
    state_changed = False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - everything torch raises is a refusal
        plain_error = condense(e)
        if "Unsupported operand" not in str(e):
            return {"status": "refused", "mode": mode, "error": plain_error}
        mode = "extended"
        before = _fingerprint()
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=EXTENDED)
        except Exception as e2:  # noqa: BLE001
            r = {"status": "refused", "mode": mode, "error": condense(e2), "plain_error": plain_error}
            if _fingerprint() != before:
                r["state_changed"] = True
            return r
        if _fingerprint() != before:
            state_changed = True
    try:
        r = describe(obj, mode)
    except Design as d:
        r = {"status": "design", "mode": mode, "reason": str(d)}
    except Exception as e:  # noqa: BLE001 - reading the loaded values failed (harness problem)
        r = {"status": "ref_error", "mode": mode, "error": condense(e)}
    if plain_error:
        r["plain_error"] = plain_error
    if state_changed:
        r["state_changed"] = True
    return r
