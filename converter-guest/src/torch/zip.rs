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
    const EOCD: usize = EndRecord::LEN;
    let len = src.len();
    let tail_len = len.min((EOCD + u16::MAX as usize) as u64);
    let tail_start = len - tail_len;
    let tail = src.read_vec(tail_start, tail_len)?;
    if tail.len() < EOCD {
        return Err(corrupt("no end-of-central-directory record"));
    }
    // Scan backwards for an EOCD whose comment runs exactly to the end.
    for i in (0..=tail.len().saturating_sub(EOCD)).rev() {
        if let Some(record) = tail.get(i..).and_then(EndRecord::read) {
            let comment = record.comment_len as usize;
            let end = i + EOCD + comment;
            if end == tail.len() {
                return Ok(tail_start + i as u64);
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
        // Only the last piece is shorter than the buffer.
        buf.truncate((size - done).min(buf.len() as u64) as usize);
        let at = offset.checked_add(done).ok_or_else(|| {
            corrupt(format!(
                "record {name} at byte {offset} runs past the end of any file"
            ))
        })?;
        src.read_exact_at(at, &mut buf)?;
        hasher.update(&buf);
        done += buf.len() as u64;
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

/// Reads the little-endian fields of a zip structure in order. Every read
/// checks the bounds and returns `None` past the end: the walker never
/// indexes into attacker-sized bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes read so far.
    fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let taken = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(taken)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// The 4-byte signature a record starts with, or `None`.
    fn signature(&mut self, expected: &[u8; 4]) -> Option<()> {
        (self.take(4)? == expected).then_some(())
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

/// The end-of-central-directory record, without its comment.
struct EndRecord {
    disk: u16,
    cd_disk: u16,
    entries_here: u16,
    entries: u16,
    cd_size: u32,
    cd_start: u32,
    comment_len: u16,
}

impl EndRecord {
    const LEN: usize = 22;

    /// `None` unless `bytes` start with a whole record.
    fn read(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        r.signature(b"PK\x05\x06")?;
        Some(EndRecord {
            disk: r.u16()?,
            cd_disk: r.u16()?,
            entries_here: r.u16()?,
            entries: r.u16()?,
            cd_size: r.u32()?,
            cd_start: r.u32()?,
            comment_len: r.u16()?,
        })
    }
}

/// The ZIP64 end-of-central-directory locator.
struct Zip64Locator {
    /// Disk holding the ZIP64 end record.
    end_disk: u32,
    /// Offset of the ZIP64 end record.
    end_at: u64,
    disks: u32,
}

impl Zip64Locator {
    const LEN: u64 = 20;

    fn read(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        r.signature(b"PK\x06\x07")?;
        Some(Zip64Locator {
            end_disk: r.u32()?,
            end_at: r.u64()?,
            disks: r.u32()?,
        })
    }
}

/// The ZIP64 end-of-central-directory record (its fixed fields).
struct Zip64End {
    /// The size of the rest of the record.
    record_size: u64,
    disk: u32,
    cd_disk: u32,
    entries_here: u64,
    entries: u64,
    cd_size: u64,
    cd_start: u64,
}

impl Zip64End {
    const LEN: u64 = 56;

    fn read(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        r.signature(b"PK\x06\x06")?;
        let record_size = r.u64()?;
        r.skip(4)?; // versions made by and needed
        Some(Zip64End {
            record_size,
            disk: r.u32()?,
            cd_disk: r.u32()?,
            entries_here: r.u64()?,
            entries: r.u64()?,
            cd_size: r.u64()?,
            cd_start: r.u64()?,
        })
    }
}

/// The fixed part of a central directory record (46 bytes; the name, extra
/// field and comment follow).
struct DirectoryHeader {
    flags: u16,
    compressed_size: u32,
    size: u32,
    name_len: u16,
    extra_len: u16,
    comment_len: u16,
    disk_start: u16,
    external_attributes: u32,
    header_start: u32,
}

impl DirectoryHeader {
    fn read(r: &mut Reader) -> Option<Self> {
        r.signature(b"PK\x01\x02")?;
        r.skip(4)?; // versions made by and needed
        let flags = r.u16()?;
        r.skip(2 + 4 + 4)?; // method, time and date, CRC-32
        let compressed_size = r.u32()?;
        let size = r.u32()?;
        let (name_len, extra_len, comment_len) = (r.u16()?, r.u16()?, r.u16()?);
        let disk_start = r.u16()?;
        r.skip(2)?; // internal attributes
        Some(DirectoryHeader {
            flags,
            compressed_size,
            size,
            name_len,
            extra_len,
            comment_len,
            disk_start,
            external_attributes: r.u32()?,
            header_start: r.u32()?,
        })
    }
}

/// A local file header (30 bytes; the name and extra field follow).
struct LocalHeader {
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u32,
    size: u32,
    name_len: u16,
    extra_len: u16,
}

impl LocalHeader {
    const LEN: u64 = 30;

    fn read(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        r.signature(b"PK\x03\x04")?;
        r.skip(2)?; // version needed
        let (flags, method) = (r.u16()?, r.u16()?);
        r.skip(4)?; // time and date
        Some(LocalHeader {
            flags,
            method,
            crc32: r.u32()?,
            compressed_size: r.u32()?,
            size: r.u32()?,
            name_len: r.u16()?,
            extra_len: r.u16()?,
        })
    }
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
    // check_no_trailing_bytes found the record here.
    let e = EndRecord::read(&src.read_vec(eocd, EndRecord::LEN as u64)?)
        .ok_or_else(|| corrupt("no end-of-central-directory record"))?;
    if e.disk != 0 || e.cd_disk != 0 || e.entries_here != e.entries {
        return Err(unsupported(
            "multi-disk zip archive",
            "torch writes single-file archives; the archive was altered",
        ));
    }
    let (mut count, mut size, mut start) = (e.entries as u64, e.cd_size as u64, e.cd_start as u64);
    let mut cd_end = eocd;
    // torch's writer always adds ZIP64 end records; when a locator precedes
    // the EOCD, the ZIP64 record is authoritative.
    let locator = match eocd.checked_sub(Zip64Locator::LEN) {
        Some(at) => Zip64Locator::read(&src.read_vec(at, Zip64Locator::LEN)?).map(|l| (at, l)),
        None => None,
    };
    let overflowed = count == 0xffff || size == 0xffff_ffff || start == 0xffff_ffff;
    match locator {
        Some((locator_at, loc)) => {
            let z = loc.end_at;
            let r = Zip64End::read(&src.read_vec(z, Zip64End::LEN)?)
                .filter(|_| z.checked_add(Zip64End::LEN) == Some(locator_at))
                .ok_or_else(|| {
                    corrupt("ZIP64 end-of-central-directory record missing or misplaced")
                })?;
            // The record's own size field: 44 for the fixed fields, as torch
            // writes it; anything else describes a different record.
            if r.record_size != 44 {
                return Err(corrupt(format!(
                    "the ZIP64 end record claims a size of {} bytes, not 44",
                    r.record_size
                )));
            }
            // One disk, as torch writes it (miniz refuses other counts).
            let one_disk = loc.end_disk == 0
                && loc.disks == 1
                && r.disk == 0
                && r.cd_disk == 0
                && r.entries_here == r.entries;
            if !one_disk {
                return Err(unsupported(
                    "multi-disk zip archive (ZIP64 end records)",
                    "torch writes single-file archives; the archive was altered",
                ));
            }
            let (c64, s64, o64) = (r.entries, r.cd_size, r.cd_start);
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
    let mut r = Reader::new(&cd);
    while !r.is_empty() {
        // Within the directory, whose end was checked above.
        let at = start.saturating_add(r.pos() as u64);
        let header = DirectoryHeader::read(&mut r)
            .ok_or_else(|| corrupt(format!("bad central directory record at byte {at}")))?;
        let (name, extra) = (|| {
            let name = r.take(header.name_len.into())?;
            let extra = r.take(header.extra_len.into())?;
            r.skip(header.comment_len.into())?;
            Some((name, extra))
        })()
        .ok_or_else(|| corrupt("central directory record runs past the directory"))?;
        let shown = crate::error::printable(&String::from_utf8_lossy(name));
        let raw = raw_entry(&header, name, extra, &shown)?;
        if entries.insert(name.to_vec(), raw).is_some() {
            return Err(corrupt(format!("duplicate zip entry {shown}")));
        }
        names.push(name.to_vec());
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

/// Reads one central directory record (its header, name and extra field)
/// the way torch's reader does, refusing what it would read differently
/// from the `zip` crate or not at all.
fn raw_entry(header: &DirectoryHeader, name: &[u8], extra: &[u8], shown: &str) -> Result<RawEntry> {
    let flags = header.flags;
    if flags & FLAG_ENCRYPTED_DIRECTORY != 0 {
        return Err(unsupported(
            format!("zip entry {shown} is flagged as having an encrypted central directory"),
            "torch never writes such entries; the archive was altered",
        ));
    }
    if name.ends_with(b"/") || header.external_attributes & DOS_DIRECTORY != 0 {
        return Err(corrupt(format!(
            "zip entry {shown} is marked as a directory (torch would read no data from it)"
        )));
    }
    if header.disk_start != 0 {
        return Err(unsupported(
            format!("zip entry {shown} starts on another disk"),
            "torch writes single-file archives; the archive was altered",
        ));
    }
    let mut size = header.size as u64;
    let mut compressed_size = header.compressed_size as u64;
    let mut header_start = header.header_start as u64;
    let mut fields = Reader::new(extra);
    while !fields.is_empty() {
        let field = (|| {
            let id = fields.u16()?;
            let len = fields.u16()?;
            Some((id, fields.take(len.into())?))
        })()
        .ok_or_else(|| corrupt(format!("zip entry {shown} has a malformed extra field")))?;
        match field {
            // ZIP64: one u64 for each 32-bit field that is 0xFFFFFFFF, in
            // this order, and nothing else (what miniz reads).
            (0x0001, body) => {
                let mut values = Reader::new(body);
                let mut wide = |v: &mut u64| -> Result<()> {
                    if *v == 0xffff_ffff {
                        *v = values.u64().ok_or_else(|| {
                            corrupt(format!("zip entry {shown}: ZIP64 extra field too short"))
                        })?;
                    }
                    Ok(())
                };
                wide(&mut size)?;
                wide(&mut compressed_size)?;
                wide(&mut header_start)?;
                // Left over: a partial value, or values for fields that are
                // not 0xFFFFFFFF.
                if !values.is_empty() {
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
    let h = LocalHeader::read(&src.read_vec(at, LocalHeader::LEN)?)
        .ok_or_else(|| corrupt(format!("zip entry {shown} has no local header")))?;
    // The header was read, so these offsets lie within the file.
    let past_end = || {
        corrupt(format!(
            "zip entry {shown} claims a size past the end of any file"
        ))
    };
    let name_at = at.checked_add(LocalHeader::LEN).ok_or_else(past_end)?;
    let name = src.read_vec(name_at, h.name_len.into())?;
    if name != cd_name {
        return Err(corrupt(format!(
            "zip entry {shown}: local header names {}",
            crate::error::printable(&String::from_utf8_lossy(&name))
        )));
    }
    let bad = FLAG_ENCRYPTED | FLAG_PATCHED | FLAG_STRONG_ENCRYPTION;
    let lfh_flags = h.flags;
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
    if h.method != 0 {
        return Err(disagree("compression method"));
    }
    // With a data descriptor the local CRC and sizes may be zero (the
    // descriptor, checked by the tiling rule, carries them); otherwise they
    // must equal the directory's, ZIP64 extra field included.
    let (crc, csize, usize) = (h.crc32, h.compressed_size, h.size);
    let deferred = cd_flags & FLAG_DESCRIPTOR != 0 && crc == 0 && csize == 0 && usize == 0;
    if deferred {
        return Ok(());
    }
    if crc != cd.crc32 {
        return Err(disagree("CRC-32"));
    }
    let (csize, usize) = if csize == 0xffff_ffff || usize == 0xffff_ffff {
        let extra_at = name_at
            .checked_add(name.len() as u64)
            .ok_or_else(past_end)?;
        let extra = src.read_vec(extra_at, h.extra_len.into())?;
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
    let mut fields = Reader::new(extra);
    // A field header needs 4 bytes; fewer left over are ignored.
    while fields.remaining() >= 4 {
        let (id, len) = (fields.u16()?, fields.u16()?);
        let body = fields.take(len.into())?;
        if id == 0x0001 {
            let mut values = Reader::new(body);
            let (usize, csize) = (values.u64()?, values.u64()?);
            return Some((csize, usize));
        }
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
                    d.strip_prefix(b"PK\x07\x08")
                } else {
                    Some(d.as_slice())
                };
                // crc32, then compressed and uncompressed sizes (32- or 64-bit);
                // records are stored, so both sizes equal the entry's size.
                body.and_then(|b| {
                    let mut r = Reader::new(b);
                    let crc = r.u32()?;
                    let (csize, usize) = if b.len() == 12 {
                        (r.u32()?.into(), r.u32()?.into())
                    } else {
                        (r.u64()?, r.u64()?)
                    };
                    Some(crc == t.crc32 && csize == t.size && usize == t.size)
                })
                .unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_returns_none_past_the_end_instead_of_indexing() {
        let mut r = Reader::new(b"\x01\x02\x03\x04\x05");
        assert_eq!(r.u16(), Some(0x0201));
        assert_eq!(r.u32(), None, "3 bytes left");
        assert_eq!(r.pos(), 2, "a failed read consumes nothing");
        assert_eq!(
            r.take(usize::MAX),
            None,
            "a length that overflows the position"
        );
        assert_eq!(r.take(3), Some(&b"\x03\x04\x05"[..]));
        assert!(r.is_empty());
        assert_eq!(r.u64(), None);
        assert_eq!(r.skip(0), Some(()));
    }

    #[test]
    fn records_cut_short_read_as_none() {
        // Every fixed-size zip record, one byte short of whole.
        let mut eocd = b"PK\x05\x06".to_vec();
        eocd.resize(EndRecord::LEN, 0);
        assert!(EndRecord::read(&eocd).is_some());
        assert!(EndRecord::read(&eocd[..EndRecord::LEN - 1]).is_none());
        assert!(
            EndRecord::read(&[0; EndRecord::LEN]).is_none(),
            "no signature"
        );
        let mut cd = b"PK\x01\x02".to_vec();
        cd.resize(46, 0);
        assert!(DirectoryHeader::read(&mut Reader::new(&cd)).is_some());
        assert!(DirectoryHeader::read(&mut Reader::new(&cd[..45])).is_none());
        let mut lfh = b"PK\x03\x04".to_vec();
        lfh.resize(30, 0);
        assert!(LocalHeader::read(&lfh).is_some());
        assert!(LocalHeader::read(&lfh[..29]).is_none());
        let mut end64 = b"PK\x06\x06".to_vec();
        end64.resize(56, 0);
        assert!(Zip64End::read(&end64).is_some());
        assert!(Zip64End::read(&end64[..55]).is_none());
        let mut loc = b"PK\x06\x07".to_vec();
        loc.resize(20, 0);
        assert!(Zip64Locator::read(&loc).is_some());
        assert!(Zip64Locator::read(&loc[..19]).is_none());
    }

    #[test]
    fn zip64_sizes_of_a_truncated_field_are_none() {
        // Header says 16 bytes of body, 15 present.
        let mut extra = vec![0x01, 0x00, 16, 0];
        extra.extend_from_slice(&[0; 15]);
        assert_eq!(zip64_sizes(&extra), None);
        extra.push(0);
        assert_eq!(zip64_sizes(&extra), Some((0, 0)));
        // A field length of 0xFFFF past the end.
        assert_eq!(zip64_sizes(&[0x01, 0x00, 0xff, 0xff, 0]), None);
    }
}
