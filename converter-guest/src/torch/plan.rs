//! From the unpickled object to the list of tensors to write: the README's
//! selection, flattening, non-tensor and alias rules ("What a conversion means").
//!
//! - A top-level `state_dict` entry, if present, is all that is converted; the
//!   other top-level keys are reported as ignored.
//! - Nested dicts flatten with `.`; integer keys become decimal strings.
//! - Non-tensor values are dropped and reported.
//! - Exact aliases (same storage, offset, shape, stride, dtype) keep the
//!   name that comes first in the checkpoint's own order (the state dict's
//!   insertion order, flattened depth-first); the others are recorded as
//!   `__metadata__[removed] = kept`. Other views of a shared storage are
//!   written as their own contiguous tensors.
//!
//!   Why first, not alphabetically first: a module's state dict lists the
//!   input embedding before the output head it is tied to
//!   (`transformer.wte.weight` before `lm_head.weight`, `shared.weight`
//!   before `encoder.embed_tokens.weight`), and the name listed first is
//!   the one transformers keeps (`_tied_weights_keys` names the later ones)
//!   and needs to load: transformers 4.x given only `lm_head.weight` leaves
//!   the embedding unloaded without an error.

use super::Parsed;
use crate::dtype::DType;
use crate::error::{corrupt, limit, printable, unsupported, Result};
use crate::pickle::{Dict, Heap, Obj, TensorDesc, Value};
use decant_abi::{Dropped, MAX_LISTED_DROPPED};
use std::collections::{BTreeMap, BTreeSet};

/// Deepest dict nesting flattened (also stops reference cycles).
const MAX_DEPTH: usize = 64;
/// Most flattened entries (tensors and dropped values) in one checkpoint.
const MAX_ENTRIES: usize = 1_000_000;

/// A tensor to write.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub tensor: TensorDesc,
    /// Where its bytes lie in the output's data section: the header's
    /// `data_offsets`, computed (with checked arithmetic) once the order
    /// is known.
    pub data_offsets: (u64, u64),
}

/// What will be written, in file order.
#[derive(Debug, Default)]
pub struct Plan {
    /// In safetensors order: dtype (descending), then name.
    pub tensors: Vec<Entry>,
    /// removed -> kept.
    pub aliases: BTreeMap<String, String>,
    pub dropped: Vec<Dropped>,
    pub dropped_total: u64,
    pub ignored: Vec<String>,
}

pub fn plan(parsed: &Parsed) -> Result<Plan> {
    let heap = &parsed.machine.heap;
    let Some(Obj::Dict(top)) = heap.obj(parsed.root) else {
        return Err(unsupported(
            format!(
                "the checkpoint holds a {}, not a dict of tensors",
                heap.type_name(parsed.root)
            ),
            "save a dict (e.g. {\"weight\": tensor} or model.state_dict()) so every tensor has a name",
        ));
    };
    let mut out = Plan::default();
    let state_dict = top
        .entries
        .iter()
        .find(|(k, _)| heap.str(*k) == Some("state_dict"));
    let selected = match state_dict {
        Some(&(_, v)) => {
            let Some(Obj::Dict(selected)) = heap.obj(v) else {
                return Err(unsupported(
                    format!(
                        "the state_dict entry is a {}, not a dict",
                        heap.type_name(v)
                    ),
                    "decant converts the tensors of the state_dict entry when there is one",
                ));
            };
            for &(k, _) in &top.entries {
                if heap.str(k) != Some("state_dict") {
                    out.ignored.push(key_text(heap, k)?);
                }
            }
            out.ignored.sort();
            selected
        }
        None => top,
    };

    let mut entries: Vec<Entry> = Vec::new();
    let mut dropped: Vec<Dropped> = Vec::new();
    flatten(heap, selected, None, 0, &mut entries, &mut dropped)?;
    if parsed.big_endian {
        check_byteswap_units(parsed, &entries)?;
    }

    let mut names = BTreeSet::new();
    for name in entries
        .iter()
        .map(|e| &e.name)
        .chain(dropped.iter().map(|d| &d.name))
    {
        if !names.insert(name.as_str()) {
            return Err(corrupt(format!(
                "two entries flatten to the same name {}",
                printable(name)
            )));
        }
    }
    if names.contains("__metadata__") {
        return Err(unsupported(
            "an entry is named __metadata__, which safetensors reserves",
            "rename the entry before saving",
        ));
    }
    dropped.sort_by(|a, b| a.name.cmp(&b.name));
    out.dropped_total = dropped.len() as u64;
    dropped.truncate(MAX_LISTED_DROPPED);
    out.dropped = dropped;

    // Exact aliases: identical views of the same bytes.
    let mut groups: BTreeMap<AliasKey, Vec<&str>> = BTreeMap::new();
    for e in &entries {
        let t = &e.tensor;
        // Nothing to share without elements (and torch reports a null
        // data pointer for every empty tensor, whatever its storage).
        if t.storage.nbytes == 0 || t.numel() == 0 {
            continue;
        }
        // Within the storage (rebuild_tensor checked), so within u64.
        let byte_start = t
            .offset
            .checked_mul(t.dtype.size())
            .and_then(|b| b.checked_add(t.storage.byte_offset))
            .ok_or_else(|| overflows(&e.name))?;
        let key = AliasKey {
            decl: t.storage.decl,
            byte_start,
            shape: t.shape.clone(),
            stride: t.stride.clone(),
            dtype: t.dtype,
        };
        groups.entry(key).or_default().push(&e.name);
    }
    // Names are distinct (checked above), and each group lists them in the
    // checkpoint's order: each keeps its first.
    for members in groups.values() {
        let Some(&kept) = members.first() else {
            continue;
        };
        for &name in members.iter().filter(|&&name| name != kept) {
            if name == "format" {
                return Err(unsupported(
                    "a tied weight named \"format\" would overwrite safetensors' format metadata",
                    "rename the entry before saving",
                ));
            }
            out.aliases.insert(name.to_string(), kept.to_string());
        }
    }
    let mut tensors: Vec<Entry> = entries
        .into_iter()
        .filter(|e| !out.aliases.contains_key(&e.name))
        .collect();
    tensors.sort_by(|a, b| {
        b.tensor
            .dtype
            .safetensors_rank()
            .cmp(&a.tensor.dtype.safetensors_rank())
            .then_with(|| a.name.cmp(&b.name))
    });
    // Each tensor's byte size was checked when it was built; the sum is
    // the output size and must fit too.
    let mut offset = 0u64;
    for e in &mut tensors {
        let n = e.tensor.nbytes().ok_or_else(|| overflows(&e.name))?;
        let end = offset
            .checked_add(n)
            .ok_or_else(|| limit("the tensors add up to more than 2^64 bytes of output"))?;
        e.data_offsets = (offset, end);
        offset = end;
    }
    out.tensors = tensors;
    Ok(out)
}

// What a plan the VM did not build can hold (every view the VM builds was
// checked against its storage, and its storage declared first); the plan
// and the writer refuse it instead of trapping.

/// A tensor whose sizes or offsets overflow u64.
pub(crate) fn overflows(name: &str) -> crate::error::Refusal {
    corrupt(format!(
        "tensor {}: size arithmetic overflows",
        printable(name)
    ))
}

/// A tensor whose storage was never declared.
pub(crate) fn undeclared(name: &str) -> crate::error::Refusal {
    corrupt(format!(
        "tensor {} refers to an undeclared storage",
        printable(name)
    ))
}

/// A tensor whose view reaches past its storage.
pub(crate) fn outside_storage(name: &str) -> crate::error::Refusal {
    corrupt(format!(
        "tensor {} reaches past its storage",
        printable(name)
    ))
}

/// In a big-endian archive torch swaps each storage in units of its
/// class's element size, then views it with the tensor's dtype. A tensor
/// whose dtype has another size than its typed storage's elements would
/// come out of torch with bytes swapped in the wrong units; decant swaps by
/// the tensor's dtype, so the two readings differ and the file is refused.
/// Untyped storages holding uint16/32/64 (how torch.save writes those
/// dtypes) are the documented exception: torch never swaps them, which
/// loses what was saved, and decant swaps them by the tensor's dtype
/// (docs/SEMANTICS.md); any other multi-byte dtype on an untyped storage is
/// crafted and refused.
fn check_byteswap_units(parsed: &Parsed, entries: &[Entry]) -> Result<()> {
    use crate::dtype::DType;
    for e in entries {
        let Some(decl) = parsed.machine.storages.decls.get(e.tensor.storage.decl) else {
            return Err(undeclared(&e.name));
        };
        let size = e.tensor.dtype.size();
        // torch.save writes untyped storages only for the dtypes without a
        // storage class; a float32 or int64 on one is crafted, and torch
        // would leave it unswapped: two readings.
        let saved_untyped = matches!(e.tensor.dtype, DType::U16 | DType::U32 | DType::U64);
        if decl.untyped && size > 1 && !saved_untyped {
            return Err(unsupported(
                format!(
                    "tensor {} is a big-endian {} on an untyped storage, which torch would not byteswap",
                    printable(&e.name),
                    e.tensor.dtype.safetensors_name()
                ),
                "torch.save writes such tensors with a typed storage; re-save the checkpoint with torch.save on a little-endian machine",
            ));
        }
        if !decl.untyped && decl.dtype.size() != size {
            return Err(unsupported(
                format!(
                    "tensor {} views a big-endian {}-byte storage as {}: torch swaps the bytes in units of the storage's elements, not the tensor's",
                    printable(&e.name),
                    decl.dtype.size(),
                    e.tensor.dtype.safetensors_name()
                ),
                "re-save the checkpoint with torch.save on a little-endian machine",
            ));
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AliasKey {
    decl: usize,
    byte_start: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
    dtype: DType,
}

fn key_text(heap: &Heap, k: Value) -> Result<String> {
    match k {
        Value::Int(i) => Ok(i.to_string()),
        _ => match heap.obj(k) {
            Some(Obj::Str(s)) if s.chars().any(decant_abi::is_deceptive_char) => Err(unsupported(
                format!(
                    "the entry name \"{}\" contains control or bidirectional-formatting characters",
                    printable(s)
                ),
                "such names display as something else in terminals and listings; rename the entry before saving",
            )),
            Some(Obj::Str(s)) => Ok(s.clone()),
            Some(Obj::BigInt(_)) => Err(unsupported(
                "a dict key is an integer too large to name a tensor",
                "use string keys",
            )),
            _ => Err(unsupported(
                format!(
                    "a dict key is a {}, not a string or integer",
                    heap.type_name(k)
                ),
                "tensor names must be strings (integer keys become decimal strings)",
            )),
        },
    }
}

/// `prefix` is the dotted name of `dict`, `None` at the top: a nested dict
/// under the key `""` names its entries `.x`, as joining with `.` does.
fn flatten(
    heap: &Heap,
    dict: &Dict,
    prefix: Option<&str>,
    depth: usize,
    entries: &mut Vec<Entry>,
    dropped: &mut Vec<Dropped>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(limit(format!(
            "dicts nested deeper than {MAX_DEPTH} levels (or a dict that contains itself) under {}",
            printable(prefix.unwrap_or_default())
        )));
    }
    for &(k, v) in &dict.entries {
        if entries.len() + dropped.len() >= MAX_ENTRIES {
            return Err(limit(format!(
                "more than {MAX_ENTRIES} entries after flattening nested dicts"
            )));
        }
        let key = key_text(heap, k)?;
        let name = match prefix {
            None => key,
            Some(prefix) => format!("{prefix}.{key}"),
        };
        match heap.obj(v) {
            Some(Obj::Tensor(t)) => entries.push(Entry {
                name,
                tensor: t.clone(),
                data_offsets: (0, 0),
            }),
            Some(Obj::Dict(inner)) => {
                flatten(heap, inner, Some(&name), depth + 1, entries, dropped)?
            }
            _ => dropped.push(Dropped {
                name,
                kind: heap.type_name(v).to_string(),
            }),
        }
    }
    Ok(())
}
