//! The legacy format (torch 0.1.10 to 1.5, or `_use_new_zipfile_serialization
//! =False`): five pickles (magic number, protocol 1001, sys_info, the object,
//! the sorted storage keys), then each storage as an int64 element count and
//! its raw little-endian bytes, in key-list order, to the end of the file.

use super::{Parsed, StorageData};
use crate::error::{corrupt, format, unsupported, RefusalKind, Result};
use crate::pickle::{Machine, Obj, PidStyle, Value};
use crate::source::Source;
use std::collections::HashMap;

/// `torch.serialization.MAGIC_NUMBER`, as LONG1 bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

pub fn parse(src: &dyn Source) -> Result<Parsed> {
    let (parsed, storages_end) = read(src)?;
    let end = src.len();
    if storages_end != end {
        return Err(corrupt(format!(
            "{} bytes follow the last legacy storage",
            end.saturating_sub(storages_end)
        )));
    }
    Ok(parsed)
}

/// Where the last storage ends, as [`parse`] reads the file: `decant
/// audit` scans the bytes after it, which torch never reads but another
/// reader of the file may.
pub fn storages_end(src: &dyn Source) -> Result<u64> {
    read(src).map(|(_, end)| end)
}

/// The file read, and where its last storage ends.
fn read(src: &dyn Source) -> Result<(Parsed, u64)> {
    let end = src.len();
    let mut m = Machine::new(PidStyle::Legacy);
    m.persistent_ids = false;

    let magic = m.load(src, 0, end, "").map_err(|refusal| {
        // Without a PROTO header (protocols 0 and 1) any file whose first
        // byte happens to be an opcode lands here. A global is named as it
        // is (that is a pickle, and a dangerous one); anything else that
        // breaks the very first pickle means it was no pickle at all.
        let mut head = [0u8; 1];
        src.read_at(0, &mut head);
        if head[0] == 0x80 || refusal.kind == RefusalKind::Global {
            refusal
        } else {
            format(format!(
                "not a torch checkpoint: neither a zip archive nor a pickle stream ({})",
                refusal.message
            ))
        }
    })?;
    let is_magic = matches!(m.heap.obj(magic.value), Some(Obj::BigInt(b)) if *b == MAGIC);
    if !is_magic {
        return Err(format(
            "a pickle, but not a torch checkpoint: the legacy magic number is missing",
        ));
    }
    let proto = m.load(src, magic.end, end, "")?;
    if proto.value != Value::Int(PROTOCOL_VERSION) {
        return Err(unsupported(
            "legacy checkpoint with an unknown protocol version",
            "torch's legacy format is protocol 1001; the file was altered or is from an unknown writer",
        ));
    }
    let sys_info = m.load(src, proto.end, end, "")?;
    if !matches!(m.heap.obj(sys_info.value), Some(Obj::Dict(_))) {
        return Err(corrupt("legacy sys_info is not a dict"));
    }
    m.persistent_ids = true;
    let main = m.load(src, sys_info.end, end, "")?;
    m.persistent_ids = false;
    let keys = m.load(src, main.end, end, "")?;
    let key_list: Vec<String> = match m.heap.obj(keys.value) {
        Some(Obj::List(items)) => items
            .iter()
            .map(|&v| m.heap.str(v).map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("legacy storage key list holds a non-string"))?,
        _ => return Err(corrupt("legacy storage key list is not a list")),
    };

    // The key list must name exactly the declared storages, once each.
    let decls = &m.storages.decls;
    let by_key: HashMap<&str, usize> = decls
        .iter()
        .enumerate()
        .map(|(i, d)| (d.key.as_str(), i))
        .collect();
    let mut offsets: Vec<Option<u64>> = vec![None; decls.len()];
    let mut pos = keys.end;
    for key in &key_list {
        let shown = crate::error::printable(key);
        let (slot, d) = by_key
            .get(key.as_str())
            .and_then(|&i| offsets.get_mut(i).zip(decls.get(i)))
            .ok_or_else(|| corrupt(format!("legacy key list names undeclared storage {shown}")))?;
        if slot.is_some() {
            return Err(corrupt(format!(
                "legacy key list names storage {shown} twice"
            )));
        }
        let mut count = [0u8; 8];
        src.read_exact_at(pos, &mut count)?;
        let count = i64::from_le_bytes(count);
        let expected = d.nbytes / d.dtype.size();
        if count < 0 || count as u64 != expected {
            return Err(corrupt(format!(
                "legacy storage {shown} records {count} elements but its reference declares {expected}"
            )));
        }
        let past_end = || {
            corrupt(format!(
                "legacy storage {shown} runs past the end of the file"
            ))
        };
        // The count was read, so `pos + 8` is within the file.
        let start = pos.checked_add(8).ok_or_else(past_end)?;
        *slot = Some(start);
        pos = start
            .checked_add(d.nbytes)
            .filter(|&e| e <= end)
            .ok_or_else(past_end)?;
    }
    let data = offsets
        .iter()
        .zip(decls)
        .map(|(&offset, d)| {
            let offset = offset.ok_or_else(|| {
                corrupt(format!(
                    "legacy storage {} is referenced but missing from the key list",
                    crate::error::printable(&d.key)
                ))
            })?;
            Ok(StorageData {
                offset,
                crc32: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        Parsed {
            format: "legacy",
            protocol: main.protocol,
            big_endian: false,
            root: main.value,
            data,
            machine: m,
        },
        pos,
    ))
}
