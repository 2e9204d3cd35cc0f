//! From the unpickled object to the list of tensors to write: DESIGN.md's
//! selection, flattening, non-tensor and alias rules.
//!
//! - A top-level `state_dict` entry, if present, is all that is converted; the
//!   other top-level keys are reported as ignored.
//! - Nested dicts flatten with `.`; integer keys become decimal strings.
//! - Non-tensor values are dropped and reported.
//! - Exact aliases (same storage, offset, shape, stride, dtype) keep the
//!   alphabetically first name; the others are recorded as
//!   `__metadata__[removed] = kept`. Other views of a shared storage are
//!   written as their own contiguous tensors.

use super::Parsed;
use crate::dtype::DType;
use crate::error::{corrupt, limit, printable, unsupported, Result};
use crate::pickle::{Heap, Obj, TensorDesc, Value};
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
            if !matches!(heap.obj(v), Some(Obj::Dict(_))) {
                return Err(unsupported(
                    format!(
                        "the state_dict entry is a {}, not a dict",
                        heap.type_name(v)
                    ),
                    "decant converts the tensors of the state_dict entry when there is one",
                ));
            }
            for &(k, _) in &top.entries {
                if heap.str(k) != Some("state_dict") {
                    out.ignored.push(key_text(heap, k)?);
                }
            }
            out.ignored.sort();
            v
        }
        None => parsed.root,
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
    let mut groups: BTreeMap<AliasKey, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let t = &e.tensor;
        // Nothing to share without elements (and torch reports a null
        // data pointer for every empty tensor, whatever its storage).
        if t.storage.nbytes == 0 || t.numel() == 0 {
            continue;
        }
        let key = AliasKey {
            decl: t.storage.decl,
            byte_start: t.storage.byte_offset + t.offset * t.dtype.size(),
            shape: t.shape.clone(),
            stride: t.stride.clone(),
            dtype: t.dtype,
        };
        groups.entry(key).or_default().push(i);
    }
    let mut removed = vec![false; entries.len()];
    for members in groups.values().filter(|m| m.len() > 1) {
        let kept = *members
            .iter()
            .min_by(|&&a, &&b| entries[a].name.cmp(&entries[b].name))
            .expect("non-empty group");
        for &i in members.iter().filter(|&&i| i != kept) {
            if entries[i].name == "format" {
                return Err(unsupported(
                    "a tied weight named \"format\" would overwrite safetensors' format metadata",
                    "rename the entry before saving",
                ));
            }
            removed[i] = true;
            out.aliases
                .insert(entries[i].name.clone(), entries[kept].name.clone());
        }
    }
    let mut tensors: Vec<Entry> = entries
        .into_iter()
        .zip(removed)
        .filter(|(_, r)| !r)
        .map(|(e, _)| e)
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
    tensors.iter().try_fold(0u64, |total, e| {
        total
            .checked_add(e.tensor.numel() * e.tensor.dtype.size())
            .ok_or_else(|| limit("the tensors add up to more than 2^64 bytes of output"))
    })?;
    out.tensors = tensors;
    Ok(out)
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
        let decl = &parsed.machine.storages.decls[e.tensor.storage.decl];
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
    dict: Value,
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
    let Some(Obj::Dict(d)) = heap.obj(dict) else {
        unreachable!("flatten is only called on dicts");
    };
    for &(k, v) in &d.entries {
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
            }),
            Some(Obj::Dict(_)) => flatten(heap, v, Some(&name), depth + 1, entries, dropped)?,
            _ => dropped.push(Dropped {
                name,
                kind: heap.type_name(v).to_string(),
            }),
        }
    }
    Ok(())
}
