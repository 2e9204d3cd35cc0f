//! The torch zip format (torch >= 1.6): `<root>/data.pkl`, `<root>/data/<key>`,
//! `<root>/version`, `<root>/byteorder`, ...
//!
//! The central directory is authoritative, and the archive must be
//! unambiguous: one root, no duplicate names, local headers that agree with
//! the central directory, no bytes before or after the archive, stored (not
//! compressed) records whose CRC-32 matches. torch itself tolerates several of
//! these; scanners and loaders disagreeing on them is how malicious archives
//! slip through (see docs/SEMANTICS.md).

use super::{Parsed, StorageData};
use crate::error::{corrupt, unsupported, Result};
use crate::pickle::{Machine, PidStyle};
use crate::source::{Cursor, Source};
use std::collections::{BTreeMap, HashMap};

/// Highest `version` record torch 2.15 reads.
const MAX_VERSION: u64 = 10;
/// Largest data.pkl decant reads: pickles hold structure, not tensor data.
const MAX_PICKLE: u64 = 1 << 30;

struct Record {
    data_start: u64,
    size: u64,
    crc32: u32,
}

pub fn parse(src: &dyn Source) -> Result<Parsed> {
    let mut archive = ::zip::ZipArchive::new(Cursor::new(src))
        .map_err(|e| corrupt(format!("invalid zip archive: {e}")))?;
    if archive.offset() != 0 {
        return Err(corrupt(format!(
            "{} bytes precede the zip archive",
            archive.offset()
        )));
    }
    let eocd = check_no_trailing_bytes(src)?;
    let directory = central_directory(src, eocd)?;
    // Named first: a TorchScript archive also breaks rules below
    // (compressed code records), which would hide what it is.
    if directory.names.iter().any(|n| {
        n.splitn(2, |&c| c == b'/')
            .nth(1)
            .is_some_and(|rest| rest == b"constants.pkl" || rest.starts_with(b"code/"))
    }) {
        return Err(unsupported(
            "TorchScript archive (torch.jit.save), not a torch.save checkpoint",
            "load it with torch.jit.load and save its state_dict() with torch.save",
        ));
    }
    if directory.names.len() != archive.len() {
        return Err(corrupt(format!(
            "the central directory lists {} entries but only {} distinct names",
            directory.names.len(),
            archive.len()
        )));
    }
    let mut tiles = Vec::with_capacity(archive.len());

    let mut root: Option<String> = None;
    let mut records: BTreeMap<String, Record> = BTreeMap::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let name = String::from_utf8(entry.name_raw().to_vec())
            .map_err(|_| corrupt(format!("zip entry {i} has a name that is not UTF-8")))?;
        let shown = crate::error::printable(&name);
        let Some((r, rest)) = name.split_once('/') else {
            return Err(corrupt(format!(
                "zip entry {shown} is not inside a root folder"
            )));
        };
        if r.len() > MAX_ROOT {
            return Err(corrupt(format!(
                "zip archive root of {} bytes (torch reads at most {MAX_ROOT})",
                r.len()
            )));
        }
        match &root {
            None => root = Some(r.to_string()),
            Some(existing) if existing != r => {
                return Err(corrupt(format!(
                    "zip archive has two roots: {} and {}",
                    crate::error::printable(existing),
                    crate::error::printable(r)
                )))
            }
            _ => {}
        }
        if entry.encrypted() {
            return Err(unsupported(
                format!("encrypted zip entry {shown}"),
                "torch never encrypts checkpoints; the archive was altered",
            ));
        }
        if entry.compression() != ::zip::CompressionMethod::Stored {
            return Err(unsupported(
                format!("compressed zip entry {shown} ({})", entry.compression()),
                "torch.save stores records uncompressed; re-save the checkpoint with torch.save",
            ));
        }
        if entry.size() != entry.compressed_size() {
            return Err(corrupt(format!("zip entry {shown} has inconsistent sizes")));
        }
        let data_start = entry
            .data_start()
            .ok_or_else(|| corrupt(format!("zip entry {shown} has no data offset")))?;
        // The crate's name, offset and sizes must be the ones torch reads.
        let raw = directory.entries.get(entry.name_raw()).ok_or_else(|| {
            corrupt(format!(
                "zip entry {shown}: the zip library reads a name the central directory does not hold"
            ))
        })?;
        if raw.header_start != entry.header_start()
            || raw.size != entry.size()
            || raw.compressed_size != entry.compressed_size()
        {
            return Err(corrupt(format!(
                "zip entry {shown}: the zip library reads another offset or size than the central directory says"
            )));
        }
        let cd_flags = raw.flags;
        check_local_header(
            src,
            entry.header_start(),
            &Expected {
                name: entry.name_raw(),
                flags: cd_flags,
                crc32: entry.crc32(),
                size: entry.size(),
            },
            &shown,
        )?;
        tiles.push(Tile {
            header_start: entry.header_start(),
            data_end: data_start
                .checked_add(entry.compressed_size())
                .ok_or_else(|| {
                    corrupt(format!(
                        "zip entry {shown} claims a size past the end of any file"
                    ))
                })?,
            descriptor: cd_flags & FLAG_DESCRIPTOR != 0,
            crc32: entry.crc32(),
            size: entry.size(),
            name: shown.clone(),
        });
        records.insert(
            rest.to_string(),
            Record {
                data_start,
                size: entry.size(),
                crc32: entry.crc32(),
            },
        );
    }
    let root = root.ok_or_else(|| corrupt("zip archive is empty"))?;
    check_tiling(src, tiles, directory.start)?;

    for name in records.keys() {
        let known = matches!(
            name.as_str(),
            "data.pkl"
                | "version"
                | ".data/version"
                | "byteorder"
                | ".format_version"
                | ".storage_alignment"
                | ".data/serialization_id"
        ) || name
            .strip_prefix("data/")
            .is_some_and(|k| !k.is_empty() && !k.contains('/'));
        if !known {
            return Err(corrupt(format!(
                "unexpected record {}/{} in the archive",
                crate::error::printable(&root),
                crate::error::printable(name)
            )));
        }
    }

    let small = |name: &str, max: u64| -> Result<Option<Vec<u8>>> {
        let Some(r) = records.get(name) else {
            return Ok(None);
        };
        if r.size > max {
            return Err(corrupt(format!("record {name} is {} bytes", r.size)));
        }
        let bytes = src.read_vec(r.data_start, r.size)?;
        check_crc(name, &bytes, r.crc32)?;
        Ok(Some(bytes))
    };

    // torch reads `.data/version` in preference to `version`.
    let version = small(".data/version", 64)?
        .or(small("version", 64)?)
        .ok_or_else(|| corrupt("the archive has no version record"))?;
    let version_ok = std::str::from_utf8(&version)
        .ok()
        .map(|v| v.strip_suffix('\n').unwrap_or(v))
        .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|v| (1..=MAX_VERSION).contains(&v));
    if !version_ok {
        return Err(unsupported(
            format!(
                "archive version \"{}\" (torch reads 1 to {MAX_VERSION})",
                crate::error::printable(&String::from_utf8_lossy(&version))
            ),
            "the archive was written by an unknown tool or altered",
        ));
    }

    // torch reads these two on every load: `int()` of the alignment, and
    // the serialization id as a Python str.
    if let Some(a) = small(".storage_alignment", 64)? {
        if !crate::pickle::python_int_literal(&a) {
            return Err(corrupt(format!(
                ".storage_alignment record \"{}\" is not an integer to Python's int() (torch fails on it)",
                crate::error::printable(&String::from_utf8_lossy(&a))
            )));
        }
    }
    if let Some(id) = small(".data/serialization_id", 4096)? {
        if std::str::from_utf8(&id).is_err() {
            return Err(corrupt(
                ".data/serialization_id is not UTF-8 (torch fails on it)",
            ));
        }
    }

    let big_endian = match small("byteorder", 64)?.as_deref() {
        None | Some(b"little") => false,
        Some(b"big") => true,
        Some(other) => {
            return Err(corrupt(format!(
                "byteorder record says \"{}\", not little or big",
                crate::error::printable(&String::from_utf8_lossy(other))
            )))
        }
    };

    let pkl = records
        .get("data.pkl")
        .ok_or_else(|| corrupt("the archive has no data.pkl"))?;
    if pkl.size > MAX_PICKLE {
        return Err(crate::error::limit(format!(
            "data.pkl is {} bytes (at most {MAX_PICKLE})",
            pkl.size
        )));
    }
    let pkl_bytes = src.read_vec(pkl.data_start, pkl.size)?;
    check_crc("data.pkl", &pkl_bytes, pkl.crc32)?;
    let mut machine = Machine::new(PidStyle::Zip);
    let loaded = machine.load(&pkl_bytes, 0, pkl_bytes.len() as u64, "data.pkl")?;
    if loaded.end != pkl_bytes.len() as u64 {
        return Err(corrupt(format!(
            "{} bytes follow the STOP opcode of data.pkl",
            pkl_bytes.len() as u64 - loaded.end
        )));
    }

    let mut data = Vec::with_capacity(machine.storages.decls.len());
    let mut used = std::collections::HashSet::new();
    for decl in &machine.storages.decls {
        let name = format!("data/{}", decl.key);
        let r = records.get(&name).ok_or_else(|| {
            corrupt(format!(
                "storage {} has no record {}/{name}",
                crate::error::printable(&decl.key),
                crate::error::printable(&root)
            ))
        })?;
        if r.size != decl.nbytes {
            return Err(corrupt(format!(
                "record {name} holds {} bytes but its storage declares {}",
                r.size, decl.nbytes
            )));
        }
        used.insert(name);
        data.push(StorageData {
            offset: r.data_start,
            crc32: Some(r.crc32),
        });
    }
    // torch.save writes exactly the storages its pickle references; a
    // record nothing uses is a place to hide a payload for another reader.
    if let Some((name, _)) = records
        .iter()
        .find(|(n, _)| n.starts_with("data/") && !used.contains(*n))
    {
        return Err(corrupt(format!(
            "record {}/{} is not used by any tensor",
            crate::error::printable(&root),
            crate::error::printable(name)
        )));
    }

    Ok(Parsed {
        format: "zip",
        protocol: loaded.protocol,
        big_endian,
        root: loaded.value,
        machine,
        data,
    })
}

fn check_crc(name: &str, bytes: &[u8], expected: u32) -> Result<()> {
    let actual = crc32fast::hash(bytes);
    if actual != expected {
        return Err(corrupt(format!(
            "CRC-32 mismatch in record {name}: stored {expected:08x}, computed {actual:08x}"
        )));
    }
    Ok(())
}

/// The end-of-central-directory record (plus its comment) must end the file:
/// bytes after it are a second payload some other reader might see. Returns
/// the record's offset.
fn check_no_trailing_bytes(src: &dyn Source) -> Result<u64> {
    const EOCD: usize = 22;
    let len = src.len();
    let tail_len = len.min((EOCD + u16::MAX as usize) as u64);
    let tail = src.read_vec(len - tail_len, tail_len)?;
    if tail.len() < EOCD {
        return Err(corrupt("no end-of-central-directory record"));
    }
    // Scan backwards for an EOCD whose comment runs exactly to the end.
    for i in (0..=tail.len().saturating_sub(EOCD)).rev() {
        if tail[i..].starts_with(b"PK\x05\x06") {
            let comment = u16::from_le_bytes([tail[i + 20], tail[i + 21]]) as usize;
            let end = i + EOCD + comment;
            if end == tail.len() {
                return Ok(len - tail_len + i as u64);
            }
            if end > tail.len() {
                return Err(corrupt(format!(
                    "the end-of-central-directory comment claims {comment} bytes, past the end of the file"
                )));
            }
            return Err(corrupt(format!(
                "{} bytes follow the end of the zip archive",
                tail.len() - end
            )));
        }
    }
    Err(corrupt("no end-of-central-directory record"))
}

/// Checks the CRC of records no tensor streamed.
pub fn check_record_crc(
    src: &dyn Source,
    name: &str,
    offset: u64,
    size: u64,
    expected: u32,
) -> Result<()> {
    let mut hasher = crc32fast::Hasher::new();
    // Sized to the record: inspect checks every record, most are small.
    let mut buf = vec![0u8; size.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(buf.len() as u64) as usize;
        src.read_exact_at(offset + done, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    let actual = hasher.finalize();
    if actual != expected {
        return Err(corrupt(format!(
            "CRC-32 mismatch in record {name}: stored {expected:08x}, computed {actual:08x}"
        )));
    }
    Ok(())
}

const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_DESCRIPTOR: u16 = 0x0008;
const FLAG_PATCHED: u16 = 0x0020;
const FLAG_STRONG_ENCRYPTION: u16 = 0x0040;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// The central directory as decant reads it, independently of the `zip`
/// crate (which keeps one entry per name and would hide a duplicate).
struct Directory {
    names: Vec<Vec<u8>>,
    entries: HashMap<Vec<u8>, RawEntry>,
    /// Offset of the first central directory record.
    start: u64,
}

/// A central directory record as torch's reader (miniz) takes it: the
/// 32-bit fields, replaced by the ZIP64 extra field only where they are
/// 0xFFFFFFFF. The `zip` crate reads some records otherwise (it renames an
/// entry after a Unicode Path extra field, and lets a ZIP64 field override
/// offsets that are not 0xFFFFFFFF), so what it says is checked against this.
struct RawEntry {
    flags: u16,
    size: u64,
    compressed_size: u64,
    header_start: u64,
}

/// Longest archive root torch reads: `PyTorchStreamReader` copies the root
/// into a 512-byte buffer, so a longer one is cut and the archive refused.
const MAX_ROOT: usize = 510;
/// Extra fields other tools add that no reader applies to names, offsets or
/// sizes: extended timestamp, Info-ZIP Unix uid/gid, NTFS times.
const INERT_EXTRA_FIELDS: [u16; 3] = [0x5455, 0x7875, 0x000a];
const FLAG_ENCRYPTED_DIRECTORY: u16 = 0x2000;
/// MS-DOS directory attribute in the external attributes: miniz treats such
/// an entry as a directory and extracts nothing from it, whatever it stores.
const DOS_DIRECTORY: u32 = 0x10;

fn central_directory(src: &dyn Source, eocd: u64) -> Result<Directory> {
    let e = src.read_vec(eocd, 22)?;
    if u16_at(&e, 4) != 0 || u16_at(&e, 6) != 0 || u16_at(&e, 8) != u16_at(&e, 10) {
        return Err(unsupported(
            "multi-disk zip archive",
            "torch writes single-file archives; the archive was altered",
        ));
    }
    let (mut count, mut size, mut start) = (
        u16_at(&e, 10) as u64,
        u32_at(&e, 12) as u64,
        u32_at(&e, 16) as u64,
    );
    let mut cd_end = eocd;
    // torch's writer always adds ZIP64 end records; when a locator precedes
    // the EOCD, the ZIP64 record is authoritative.
    let locator = match eocd.checked_sub(20) {
        Some(o) => Some(src.read_vec(o, 20)?).filter(|l| l.starts_with(b"PK\x06\x07")),
        None => None,
    };
    let overflowed = count == 0xffff || size == 0xffff_ffff || start == 0xffff_ffff;
    match locator {
        Some(loc) => {
            let z = u64_at(&loc, 8);
            let r = src.read_vec(z, 56)?;
            if !r.starts_with(b"PK\x06\x06") || z.checked_add(56) != Some(eocd - 20) {
                return Err(corrupt(
                    "ZIP64 end-of-central-directory record missing or misplaced",
                ));
            }
            // The record's own size field: 44 for the fixed fields, as torch
            // writes it; anything else describes a different record.
            if u64_at(&r, 4) != 44 {
                return Err(corrupt(format!(
                    "the ZIP64 end record claims a size of {} bytes, not 44",
                    u64_at(&r, 4)
                )));
            }
            // One disk, as torch writes it (miniz refuses other counts).
            let one_disk = u32_at(&loc, 4) == 0
                && u32_at(&loc, 16) == 1
                && u32_at(&r, 16) == 0
                && u32_at(&r, 20) == 0
                && u64_at(&r, 24) == u64_at(&r, 32);
            if !one_disk {
                return Err(unsupported(
                    "multi-disk zip archive (ZIP64 end records)",
                    "torch writes single-file archives; the archive was altered",
                ));
            }
            let (c64, s64, o64) = (u64_at(&r, 32), u64_at(&r, 40), u64_at(&r, 48));
            let agrees = |classic: u64, wide: u64, max: u64| classic == max || classic == wide;
            if !(agrees(count, c64, 0xffff)
                && agrees(size, s64, 0xffff_ffff)
                && agrees(start, o64, 0xffff_ffff))
            {
                return Err(corrupt("the ZIP64 and classic end records disagree"));
            }
            (count, size, start) = (c64, s64, o64);
            cd_end = z;
        }
        None if overflowed => {
            return Err(corrupt("ZIP64 end-of-central-directory locator missing"));
        }
        None => {}
    }
    if start.checked_add(size) != Some(cd_end) {
        return Err(corrupt(
            "the central directory does not end where its end record begins",
        ));
    }
    let cd = src.read_vec(start, size)?;
    let mut names = Vec::new();
    let mut entries = HashMap::new();
    let mut i = 0usize;
    while i < cd.len() {
        if cd.len() - i < 46 || !cd[i..].starts_with(b"PK\x01\x02") {
            return Err(corrupt(format!(
                "bad central directory record at byte {}",
                start + i as u64
            )));
        }
        let (n, x, c) = (
            u16_at(&cd, i + 28) as usize,
            u16_at(&cd, i + 30) as usize,
            u16_at(&cd, i + 32) as usize,
        );
        let name_start = i + 46;
        let next = name_start + n + x + c;
        if next > cd.len() {
            return Err(corrupt("central directory record runs past the directory"));
        }
        let name = cd[name_start..name_start + n].to_vec();
        let shown = crate::error::printable(&String::from_utf8_lossy(&name));
        let raw = raw_entry(&cd[i..next], n, x, &shown)?;
        if entries.insert(name.clone(), raw).is_some() {
            return Err(corrupt(format!("duplicate zip entry {shown}")));
        }
        names.push(name);
        i = next;
    }
    // torch finds records with miniz's case-insensitive lookup, so names
    // equal up to ASCII case are one record to torch and two to decant.
    let mut folded = HashMap::new();
    for name in &names {
        if let Some(other) = folded.insert(name.to_ascii_lowercase(), name) {
            return Err(corrupt(format!(
                "zip entries {} and {} differ only in letter case (torch's record lookup ignores case)",
                crate::error::printable(&String::from_utf8_lossy(other)),
                crate::error::printable(&String::from_utf8_lossy(name))
            )));
        }
    }
    if names.len() as u64 != count {
        return Err(corrupt(format!(
            "the end record counts {count} entries, the directory holds {}",
            names.len()
        )));
    }
    Ok(Directory {
        names,
        entries,
        start,
    })
}

/// Reads one central directory record (`rec`: header, name, extra,
/// comment) the way torch's reader does, refusing what it would read
/// differently from the `zip` crate or not at all.
fn raw_entry(rec: &[u8], name_len: usize, extra_len: usize, shown: &str) -> Result<RawEntry> {
    let flags = u16_at(rec, 8);
    if flags & FLAG_ENCRYPTED_DIRECTORY != 0 {
        return Err(unsupported(
            format!("zip entry {shown} is flagged as having an encrypted central directory"),
            "torch never writes such entries; the archive was altered",
        ));
    }
    let name = &rec[46..46 + name_len];
    if name.ends_with(b"/") || u32_at(rec, 38) & DOS_DIRECTORY != 0 {
        return Err(corrupt(format!(
            "zip entry {shown} is marked as a directory (torch would read no data from it)"
        )));
    }
    if u16_at(rec, 34) != 0 {
        return Err(unsupported(
            format!("zip entry {shown} starts on another disk"),
            "torch writes single-file archives; the archive was altered",
        ));
    }
    let mut size = u32_at(rec, 24) as u64;
    let mut compressed_size = u32_at(rec, 20) as u64;
    let mut header_start = u32_at(rec, 42) as u64;
    let extra = &rec[46 + name_len..46 + name_len + extra_len];
    let mut j = 0;
    while j < extra.len() {
        let field = extra
            .get(j..j + 4)
            .and_then(|h| {
                let len = u16_at(h, 2) as usize;
                extra
                    .get(j + 4..j + 4 + len)
                    .map(|body| (u16_at(h, 0), body))
            })
            .ok_or_else(|| corrupt(format!("zip entry {shown} has a malformed extra field")))?;
        match field {
            // ZIP64: one u64 for each 32-bit field that is 0xFFFFFFFF, in
            // this order, and nothing else (what miniz reads).
            (0x0001, body) => {
                let mut values = body.chunks_exact(8).map(|c| u64_at(c, 0));
                let mut wide = |v: &mut u64| -> Result<()> {
                    if *v == 0xffff_ffff {
                        *v = values.next().ok_or_else(|| {
                            corrupt(format!("zip entry {shown}: ZIP64 extra field too short"))
                        })?;
                    }
                    Ok(())
                };
                wide(&mut size)?;
                wide(&mut compressed_size)?;
                wide(&mut header_start)?;
                if !body.len().is_multiple_of(8) || values.next().is_some() {
                    return Err(corrupt(format!(
                        "zip entry {shown}: the ZIP64 extra field holds values for fields that are not 0xFFFFFFFF"
                    )));
                }
            }
            (id, _) if INERT_EXTRA_FIELDS.contains(&id) => {}
            (id, _) => {
                return Err(corrupt(format!(
                    "zip entry {shown} carries an extra field 0x{id:04x} in the central directory (readers apply such fields differently)"
                )))
            }
        }
        j += 4 + field.1.len();
    }
    Ok(RawEntry {
        flags,
        size,
        compressed_size,
        header_start,
    })
}

/// The local header must name the same file as the central directory and
/// carry no flag the central directory lacks.
fn check_local_header(src: &dyn Source, at: u64, cd: &Expected, shown: &str) -> Result<()> {
    let (cd_name, cd_flags) = (cd.name, cd.flags);
    let h = src.read_vec(at, 30)?;
    if !h.starts_with(b"PK\x03\x04") {
        return Err(corrupt(format!("zip entry {shown} has no local header")));
    }
    let name = src.read_vec(at + 30, u16_at(&h, 26) as u64)?;
    if name != cd_name {
        return Err(corrupt(format!(
            "zip entry {shown}: local header names {}",
            crate::error::printable(&String::from_utf8_lossy(&name))
        )));
    }
    let bad = FLAG_ENCRYPTED | FLAG_PATCHED | FLAG_STRONG_ENCRYPTION;
    let lfh_flags = u16_at(&h, 6);
    if (lfh_flags | cd_flags) & bad != 0 {
        return Err(unsupported(
            format!("zip entry {shown} is flagged encrypted or patched"),
            "torch never writes such entries; the archive was altered",
        ));
    }
    if lfh_flags != cd_flags {
        return Err(corrupt(format!(
            "zip entry {shown}: local header flags {lfh_flags:#06x} differ from the central directory's {cd_flags:#06x}"
        )));
    }
    let disagree = |what: &str| {
        corrupt(format!(
            "zip entry {shown}: local header {what} differs from the central directory's"
        ))
    };
    if u16_at(&h, 8) != 0 {
        return Err(disagree("compression method"));
    }
    // With a data descriptor the local CRC and sizes may be zero (the
    // descriptor, checked by the tiling rule, carries them); otherwise they
    // must equal the directory's, ZIP64 extra field included.
    let (crc, csize, usize) = (u32_at(&h, 14), u32_at(&h, 18), u32_at(&h, 22));
    let deferred = cd_flags & FLAG_DESCRIPTOR != 0 && crc == 0 && csize == 0 && usize == 0;
    if deferred {
        return Ok(());
    }
    if crc != cd.crc32 {
        return Err(disagree("CRC-32"));
    }
    let (csize, usize) = if csize == 0xffff_ffff || usize == 0xffff_ffff {
        let extra = src.read_vec(at + 30 + name.len() as u64, u16_at(&h, 28) as u64)?;
        zip64_sizes(&extra).ok_or_else(|| disagree("ZIP64 sizes"))?
    } else {
        (csize as u64, usize as u64)
    };
    if csize != cd.size || usize != cd.size {
        return Err(disagree("size"));
    }
    Ok(())
}

/// What the central directory says about an entry.
struct Expected<'a> {
    name: &'a [u8],
    flags: u16,
    crc32: u32,
    size: u64,
}

/// The (compressed, uncompressed) sizes from a local header's ZIP64 extra
/// field, which then holds both.
fn zip64_sizes(extra: &[u8]) -> Option<(u64, u64)> {
    let mut i = 0;
    while i + 4 <= extra.len() {
        let (id, len) = (u16_at(extra, i), u16_at(extra, i + 2) as usize);
        let body = extra.get(i + 4..i + 4 + len)?;
        if id == 0x0001 {
            if body.len() < 16 {
                return None;
            }
            return Some((u64_at(body, 8), u64_at(body, 0)));
        }
        i += 4 + len;
    }
    None
}

/// One entry's local span.
struct Tile {
    header_start: u64,
    data_end: u64,
    descriptor: bool,
    crc32: u32,
    size: u64,
    name: String,
}

/// Local entries must cover the file from byte 0 to the central directory
/// exactly, each followed only by its own data descriptor: no overlaps, no
/// gaps, nowhere to hide a record the directory does not list.
fn check_tiling(src: &dyn Source, mut tiles: Vec<Tile>, cd_start: u64) -> Result<()> {
    tiles.sort_by_key(|t| t.header_start);
    let mut expected = 0u64;
    for (i, t) in tiles.iter().enumerate() {
        if t.header_start != expected {
            return Err(corrupt(format!(
                "zip entry {} starts at byte {} where byte {expected} was expected (overlap, gap or hidden data)",
                t.name, t.header_start
            )));
        }
        let next = tiles.get(i + 1).map_or(cd_start, |n| n.header_start);
        let gap = next
            .checked_sub(t.data_end)
            .ok_or_else(|| corrupt(format!("zip entry {} overlaps the next record", t.name)))?;
        let ok = match (t.descriptor, gap) {
            (false, 0) => true,
            (true, 12 | 16 | 20 | 24) => {
                let d = src.read_vec(t.data_end, gap)?;
                let body = if gap == 16 || gap == 24 {
                    d.starts_with(b"PK\x07\x08").then(|| &d[4..])
                } else {
                    Some(&d[..])
                };
                // crc32, then compressed and uncompressed sizes (32- or 64-bit);
                // records are stored, so both sizes equal the entry's size.
                body.is_some_and(|b| {
                    let (csize, usize) = if b.len() == 12 {
                        (u32_at(b, 4) as u64, u32_at(b, 8) as u64)
                    } else {
                        (u64_at(b, 4), u64_at(b, 12))
                    };
                    u32_at(b, 0) == t.crc32 && csize == t.size && usize == t.size
                })
            }
            _ => false,
        };
        if !ok {
            return Err(corrupt(format!(
                "zip entry {} is followed by {gap} bytes that are not its data descriptor",
                t.name
            )));
        }
        expected = next;
    }
    if expected != cd_start {
        return Err(corrupt(
            "bytes between the last entry and the central directory",
        ));
    }
    Ok(())
}
