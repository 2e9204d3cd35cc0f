//! `decant audit`, the guest side: what one file of a model bundle is,
//! judged by its bytes alone.
//!
//! Parsing a model file is the dangerous part of auditing one, so it runs
//! here, in the sandbox: the host only lists files and hands the guest one
//! file's bytes through [`Source`]. The answer is a
//! [`FileScan`]: facts (format, pickle globals, header contents), which the
//! host turns into findings. Nothing here fails: a file that is damaged or
//! of no known format is an answer too.
//!
//! - `detect`: the format, by signature.
//! - `pickle`: the static pickle scanner (one stream).
//! - `zip`: a zip archive's members, as every kind of reader finds them.
//! - `safetensors`, `gguf`: the header checks.
//! - `listing`: the caps on the answer and its size.
//!
//! This file decides which bytes are pickle streams: for a pickle at byte 0,
//! streams back to back while the next byte starts one (a legacy torch file
//! holds exactly five, then raw storage bytes, which are never scanned); in
//! a zip, every `*.pkl` / `*.pickle` member, with any streams following the
//! first inside it.

mod detect;
mod gguf;
mod listing;
mod pickle;
mod safetensors;
mod zip;

// The VM's own stream reader and text-literal decoders: the scanner must
// decode exactly as the VM does.
use crate::pickle::input;
use crate::pickle::text;

use crate::pickle::{Machine, Obj, PidStyle};
use crate::source::Source;
use decant_abi::{FileScan, PickleStream, ScanFormat, MAX_GLOBAL_NAME};
use detect::Detected;
use listing::Listing;
use pickle::{Scanned, Scanner};

/// `torch.serialization.MAGIC_NUMBER` as LONG1 bytes (`torch/legacy.rs`
/// keeps its copy private).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy magic pickle is 15 bytes as torch writes it (protocol 2) and
/// a few dozen in any other protocol; a longer first stream is not it.
const MAX_MAGIC_PICKLE: u64 = 1024;
/// A legacy torch file's pickles: magic, protocol, sys_info, the object,
/// the storage keys.
const LEGACY_PICKLES: u64 = 5;
/// The most bytes of legacy pickles read with the VM to find where the
/// storages end (a few tens of thousands of tensors).
const MAX_LEGACY_PICKLES_READ: u64 = 4 << 20;

/// Describes `src` by its content.
pub fn audit(src: &dyn Source) -> FileScan {
    let mut scan = match detect::detect(src) {
        Detected::Zip => zip_file(src),
        Detected::Gguf => {
            let (gguf, damaged) = gguf::scan(src);
            let scan = FileScan {
                gguf,
                damaged,
                ..file(ScanFormat::Gguf)
            };
            or_polyglot_pickle(src, scan, "GGUF")
        }
        Detected::Safetensors(n) => {
            let (header, damaged) = safetensors::scan(src, n);
            let scan = FileScan {
                safetensors: Some(header),
                damaged,
                ..file(ScanFormat::Safetensors)
            };
            or_polyglot_pickle(src, scan, "safetensors")
        }
        Detected::Pickle => {
            let (sc, first) = first_stream(src);
            if is_pickle(src, &first) {
                pickle_file(src, sc, first, None)
            } else {
                or_prefixed_zip(src)
            }
        }
        Detected::Other => or_prefixed_zip(src),
    };
    listing::fit(&mut scan);
    scan
}

/// A file that starts with no known signature may still be a zip behind a
/// prefix (a self-extractor, a 7z or other header): zip readers, torch's
/// included, find an archive by its end record and take the prefix in
/// their stride. So a file whose last bytes hold an end record is read as
/// a zip.
fn or_prefixed_zip(src: &dyn Source) -> FileScan {
    // The end record is 22 bytes plus a comment of at most 65,535.
    const TAIL: u64 = 22 + 65_535;
    let len = src.len();
    let start = len.saturating_sub(TAIL);
    let Ok(tail) = src.read_vec(start, len - start) else {
        return file(ScanFormat::Other);
    };
    if tail.windows(4).any(|w| w == b"PK\x05\x06") {
        let scan = zip_file(src);
        if scan.format != ScanFormat::Other {
            return scan;
        }
    }
    file(ScanFormat::Other)
}

fn file(format: ScanFormat) -> FileScan {
    FileScan {
        format,
        pickle: None,
        safetensors: None,
        gguf: None,
        damaged: None,
    }
}

/// `s` cut to at most [`MAX_GLOBAL_NAME`] bytes on a character boundary,
/// with `...` appended when anything was cut (or `cut` says the text was
/// shortened already).
fn shorten(mut s: String, cut: bool) -> String {
    if s.len() <= MAX_GLOBAL_NAME && !cut {
        return s;
    }
    let mut end = MAX_GLOBAL_NAME.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("...");
    s
}

fn first_stream(src: &dyn Source) -> (Scanner<'_>, Scanned) {
    let mut sc = Scanner::new(src, 0, src.len(), String::new());
    let first = sc.scan(None, "byte 0".into());
    (sc, first)
}

/// Whether a file starting with an opcode byte is a pickle rather than,
/// say, a licence text starting with `M` (BININT2): its first stream
/// reaches STOP, or names a global an unpickler could import (or one it
/// cannot name), or the file starts with a PROTO header of a real protocol.
/// Text failing that test imports nothing under `pickle.load`.
fn is_pickle(src: &dyn Source, first: &Scanned) -> bool {
    let (h, n) = detect::head::<2>(src);
    let proto_header = n == 2 && h.first() == Some(&0x80) && h.get(1).is_some_and(|&p| p <= 5);
    first.stopped || first.importable || first.unresolved > 0 || proto_header
}

/// A safetensors or GGUF file that starts with an opcode byte (a quarter of
/// all length fields do) is scanned as a pickle too: if its bytes are also a
/// complete pickle that names a global, torch.load and pickle.load run that
/// pickle whatever the file claims to be, so it is reported as one. A
/// damaged header whose bytes name an importable global is one as well.
fn or_polyglot_pickle(src: &dyn Source, scan: FileScan, what: &str) -> FileScan {
    let (h, n) = detect::head::<1>(src);
    if n == 0 || !h.first().is_some_and(|&b| crate::pickle::is_opcode(b)) {
        return scan;
    }
    let (sc, first) = first_stream(src);
    let valid = scan.damaged.is_none();
    let names = first.globals_total > 0 || first.unresolved > 0;
    if !((first.stopped && names) || (!valid && first.importable)) {
        return scan;
    }
    let note = valid.then(|| {
        format!("the file is also a valid {what} file: one file that readers take for two formats (a polyglot)")
    });
    pickle_file(src, sc, first, note)
}

/// Whether the stream `[0, end)` is torch's legacy magic number.
fn is_legacy_magic(src: &dyn Source, end: u64) -> bool {
    if end > MAX_MAGIC_PICKLE {
        return false;
    }
    let mut m = Machine::new(PidStyle::Legacy);
    m.persistent_ids = false;
    match m.load(src, 0, end, "") {
        Ok(l) => matches!(m.heap.obj(l.value), Some(Obj::BigInt(b)) if *b == LEGACY_MAGIC),
        Err(_) => false,
    }
}

/// A scanned stream as listed: if it is damaged, with what reading it
/// on could find (`Scanner::read_damaged`).
fn finish(sc: &mut Scanner, mut s: Scanned) -> PickleStream {
    sc.read_damaged(&mut s);
    s.into_stream()
}

/// A file of pickle streams from byte 0, `first` already scanned.
fn pickle_file(
    src: &dyn Source,
    mut sc: Scanner,
    first: Scanned,
    note: Option<String>,
) -> FileScan {
    // A legacy torch file: five pickles, then raw storage bytes.
    let legacy = first.stopped && is_legacy_magic(src, first.end);
    let limit = if legacy { LEGACY_PICKLES } else { u64::MAX };
    let mut list = Listing::default();
    let ok = first.stopped;
    list.push(finish(&mut sc, first));
    let ok = more_streams(&mut sc, &mut list, ok, limit, |at| format!("byte {at}"));
    if legacy && ok && list.total() == LEGACY_PICKLES {
        after_legacy_storages(src, sc.offset(), &mut list);
    }
    FileScan {
        pickle: Some(list.into_scan()),
        damaged: note,
        ..file(ScanFormat::Pickle)
    }
}

/// Scans streams back to back after one that reached its STOP (`ok`),
/// while the next byte starts another, until `limit` streams in all;
/// whether the last one reached its STOP and the sequence ended there.
/// Bytes after a STOP that start no pickle are read on as a
/// resynchronising reader would (a pickle behind a junk byte is loaded by
/// a reader that skips it), and listed as a damaged stream if that names a
/// global: whitespace after a STOP is no finding.
fn more_streams(
    sc: &mut Scanner,
    list: &mut Listing,
    mut ok: bool,
    limit: u64,
    location: impl Fn(u64) -> String,
) -> bool {
    while ok && list.total() < limit {
        let at = sc.offset();
        if sc.at_end() {
            break;
        }
        let Some(code) = sc.next_opcode() else {
            let mut s = sc.unread(
                at,
                location(at),
                format!(
                    "{} bytes that start no pickle follow a STOP, and a reader resynchronising in them finds globals",
                    sc.len().saturating_sub(at)
                ),
            );
            sc.read_damaged(&mut s);
            if s.names_globals() {
                list.push(s.into_stream());
            }
            return false;
        };
        let s = sc.scan(Some(code), location(at));
        ok = s.stopped;
        list.push(finish(sc, s));
    }
    ok
}

/// What follows a legacy file's five pickles: the storages, then nothing
/// torch reads. Bytes after the last storage (decant refuses them) are
/// scanned as pickles, since another reader of the file may load them
/// (see [`trailing`]). Where the storages end is known only by reading
/// the pickles as the converter does
/// ([`crate::torch::legacy::storages_end`]); when that fails (a global
/// outside the allowlist, a storage the converter does not take), every
/// byte after the pickles is read as a resynchronising reader would
/// instead, and the file is reported as not fully scanned. The VM holds
/// what it reads, so pickles over [`MAX_LEGACY_PICKLES_READ`] bytes are
/// not read that way: a sandbox limit hit there would lose the whole scan.
fn after_legacy_storages(src: &dyn Source, pickles_end: u64, list: &mut Listing) {
    let len = src.len();
    let end = if pickles_end <= MAX_LEGACY_PICKLES_READ {
        crate::torch::legacy::storages_end(src).map_err(|r| r.message)
    } else {
        Err(format!(
            "its pickles are {pickles_end} bytes, more than audit reads with the converter's VM"
        ))
    };
    match end {
        Ok(end) if end < len => trailing(src, end, list, |at| {
            format!("byte {at}, after the last legacy storage")
        }),
        Ok(_) => {}
        Err(why) if pickles_end < len => {
            let mut sc = Scanner::new(src, pickles_end, len, String::new());
            let mut s = sc.unread(
                0,
                format!("byte {pickles_end}, the legacy storages"),
                format!(
                    "where the legacy storages end is not known ({}), so their bytes were read from each byte a resynchronising reader could start at",
                    crate::error::printable(&why)
                ),
            );
            sc.read_damaged(&mut s);
            list.push(s.into_stream());
        }
        Err(_) => {}
    }
}

/// Bytes from `at` to the end of `src` that no container accounts for,
/// read as a sequence of pickles (see [`more_streams`]); `location` names
/// a file offset.
fn trailing(src: &dyn Source, at: u64, list: &mut Listing, location: impl Fn(u64) -> String) {
    let mut sc = Scanner::new(src, at, src.len(), String::new());
    more_streams(&mut sc, list, true, u64::MAX, |offset| {
        location(at + offset)
    });
}

/// A byte range of another source, as a source of its own (a zip stored
/// inside a zip).
struct Window<'a> {
    src: &'a dyn Source,
    start: u64,
    len: u64,
}

impl Source for Window<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = buf
            .len()
            .min((self.len - offset).min(usize::MAX as u64) as usize);
        match (buf.get_mut(..n), self.start.checked_add(offset)) {
            (Some(b), Some(at)) => self.src.read_at(at, b),
            _ => 0,
        }
    }
}

/// How deep zips inside zips are opened.
const MAX_ZIP_NESTING: u32 = 3;

/// The first bytes of a stored, readable member's data.
fn member_head(src: &dyn Source, m: &zip::Member) -> Option<[u8; 4]> {
    if m.error.is_some() || m.encrypted || m.compression.is_some() {
        return None;
    }
    let (start, size) = m.data?;
    if size < 4 {
        return None;
    }
    let mut h = [0u8; 4];
    src.read_exact_at(start, &mut h).ok()?;
    Some(h)
}

/// Where the zip's end record (and its comment) ends, if the end record
/// can be found: bytes after it are no part of the archive.
fn zip_end(src: &dyn Source) -> Option<u64> {
    const TAIL: u64 = 22 + 65_535;
    let len = src.len();
    let start = len.saturating_sub(TAIL);
    let tail = src.read_vec(start, len - start).ok()?;
    let at = tail.windows(4).rposition(|w| w == b"PK\x05\x06")?;
    let comment: [u8; 2] = tail.get(at + 20..at + 22)?.try_into().ok()?;
    let comment = u64::from(u16::from_le_bytes(comment));
    Some(start + at as u64 + 22 + comment)
}

fn zip_file(src: &dyn Source) -> FileScan {
    zip_file_at(src, 0)
}

fn zip_file_at(src: &dyn Source, depth: u32) -> FileScan {
    let members = zip::members(src);
    let torch_layout = members.list.iter().any(zip::Member::is_torch_data_pkl);
    let mut pickles: Vec<&zip::Member> = members.list.iter().filter(|m| m.is_pickle()).collect();
    // File order (stable: the directory's view of an entry first).
    pickles.sort_by_key(|m| m.data.map_or(m.header_start, |(start, _)| start));
    let format = if torch_layout {
        ScanFormat::TorchZip
    } else if !pickles.is_empty() {
        ScanFormat::ZipWithPickles
    } else {
        ScanFormat::Other
    };
    let damaged = members.directory_error.as_ref().map(|e| {
        if members.list.is_empty() {
            format!("a zip archive whose central directory cannot be read ({e})")
        } else {
            format!("the zip central directory cannot be read ({e}); members were found by their local headers")
        }
    });
    let mut list = Listing::default();
    for m in pickles {
        scan_member(src, m, &mut list);
    }
    // What a lenient reader could still load: members under other names
    // holding a pickle (a PROTO opcode first; kept only when one parses
    // to its STOP and names a global, so tensor bytes that happen to
    // start like one are not reported), zips stored inside the zip, and
    // bytes after the archive's end.
    for m in &members.list {
        if m.compression.as_deref() == Some("Deflated") && !m.is_pickle() {
            // torch's reader (miniz) and Python's zipfile inflate such a
            // member as readily as a stored one.
            deflated_member(src, m, depth, &mut list);
            continue;
        }
        let Some(head) = member_head(src, m) else {
            continue;
        };
        let Some((start, size)) = m.data else {
            continue;
        };
        let zip_inside = head == *b"PK\x03\x04" && depth < MAX_ZIP_NESTING;
        if (!m.is_pickle() && starts_like_pickle(&head)) || zip_inside {
            read_other_member(src, (start, size), m, &head, false, depth, &mut list);
        }
    }
    if let Some(end) = zip_end(src).filter(|&e| e < src.len()) {
        trailing(src, end, &mut list, |at| {
            format!("byte {at}, after the end of the zip")
        });
    }
    let format = if format == ScanFormat::Other && list.total() > 0 {
        ScanFormat::ZipWithPickles
    } else {
        format
    };
    if format == ScanFormat::Other {
        return FileScan {
            damaged,
            ..file(format)
        };
    }
    FileScan {
        pickle: Some(list.into_scan()),
        damaged,
        ..file(format)
    }
}

/// The most bytes a compressed member is inflated to for scanning (a
/// pickle this large is not a config; the sandbox's memory cap is 256 MiB).
const MAX_INFLATED: usize = 64 << 20;

/// A deflate-compressed member's bytes, inflated up to [`MAX_INFLATED`].
fn inflate(src: &dyn Source, (start, size): (u64, u64)) -> Result<Vec<u8>, String> {
    if size > MAX_INFLATED as u64 {
        return Err(format!(
            "the member is compressed and {size} bytes long, more than audit inflates, so it was not scanned"
        ));
    }
    let compressed = src.read_vec(start, size).map_err(|e| {
        format!(
            "the member could not be read, so it was not scanned: {}",
            e.message
        )
    })?;
    miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, MAX_INFLATED).map_err(|e| {
        format!("the member's deflate stream is damaged or inflates past {MAX_INFLATED} bytes ({e:?}), so it was not scanned")
    })
}

/// Compressed bytes read to see whether a deflated member starts like a
/// pickle: enough for its first inflated bytes, whatever its size.
const SNIFF_COMPRESSED: u64 = 4096;

/// A member under another name than a pickle's whose first bytes
/// (`head`) are a PROTO opcode or a zip's, read from `body` (its `start`
/// and `len`: offsets in the file for a stored member, so messages name
/// bytes of the file) the way a lenient reader would: the pickle scanned
/// (kept only when it parses to its STOP and names a global, so tensor
/// bytes that happen to start like one are not reported), the zip opened.
fn read_other_member(
    body: &dyn Source,
    (start, len): (u64, u64),
    m: &zip::Member,
    head: &[u8],
    deflated: bool,
    depth: u32,
    list: &mut Listing,
) {
    let name = shorten(String::from_utf8_lossy(&m.name).into_owned(), false);
    if starts_like_pickle(head) {
        let how = if deflated { ", deflate-compressed" } else { "" };
        let mut sc = Scanner::new(body, start, start.saturating_add(len), name.clone());
        let s = sc.scan(None, format!("{name} (a pickle under another name{how})"));
        if s.stopped && s.names_globals() {
            list.push(finish(&mut sc, s));
        }
    } else if let Some(p) = zip_file_at(
        &Window {
            src: body,
            start,
            len,
        },
        depth + 1,
    )
    .pickle
    {
        let how = if deflated {
            "a deflate-compressed zip"
        } else {
            "a zip"
        };
        for mut st in p.streams {
            st.location = format!("{name} ({how} inside the zip): {}", st.location);
            list.push(st);
        }
    }
}

/// A PROTO opcode of protocol 2 to 5 first: how a pickle under another
/// name is told from other bytes.
fn starts_like_pickle(head: &[u8]) -> bool {
    head.first() == Some(&0x80) && head.get(1).is_some_and(|p| (2..=5).contains(p))
}

/// A deflated member under another name than a pickle's, read as a stored
/// one is ([`read_other_member`]) once inflated. Found by running audit on
/// silero-vad's TorchScript archive, whose `code/**/*.debug_pkl` members
/// are deflated pickles: audit had scanned only the stored ones, and a
/// deflated `os.system` pickle under such a name went unreported.
fn deflated_member(src: &dyn Source, m: &zip::Member, depth: u32, list: &mut Listing) {
    let Some((start, size)) = m.data.filter(|_| m.error.is_none()) else {
        return;
    };
    let Ok(compressed_head) = src.read_vec(start, size.min(SNIFF_COMPRESSED)) else {
        return;
    };
    let head = match miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed_head, 4) {
        Ok(bytes) => bytes,
        Err(e) => e.output,
    };
    // One inflated archive at a time: an inflated zip's own deflated
    // members are inflated too, and two levels of 64 MiB copies are what
    // the sandbox's memory comfortably holds.
    let zip_inside = head.starts_with(b"PK\x03\x04") && depth == 0;
    if !starts_like_pickle(&head) && !zip_inside {
        return;
    }
    match inflate(src, (start, size)) {
        Ok(bytes) => {
            let len = bytes.len() as u64;
            read_other_member(&bytes, (0, len), m, &head, true, depth, list)
        }
        // It starts like one, and cannot be read whole: unscanned.
        Err(why) => {
            let name = shorten(String::from_utf8_lossy(&m.name).into_owned(), false);
            let what = if zip_inside {
                "a deflate-compressed zip inside the zip"
            } else {
                "a pickle under another name, deflate-compressed"
            };
            list.push(unscanned(format!("{name} ({what})"), why));
        }
    }
}

/// A stream that could not be read, reported as such (audit rates it as
/// not fully scanned), with why.
fn unscanned(location: String, why: String) -> PickleStream {
    PickleStream {
        location,
        protocol: 0,
        globals: Vec::new(),
        outside_total: 0,
        globals_total: 0,
        unresolved: 0,
        calls: 0,
        damaged: Some(why),
    }
}

fn scan_member(src: &dyn Source, m: &zip::Member, list: &mut Listing) {
    let name = shorten(String::from_utf8_lossy(&m.name).into_owned(), false);
    let location = if m.listed {
        name.clone()
    } else {
        format!(
            "{name} (a local entry at byte {} that the central directory does not list)",
            m.header_start
        )
    };
    let unscanned = |why: String| unscanned(location.clone(), why);
    // The encryption flag is only a flag: torch (miniz) ignores it and reads
    // the bytes as they are (CVE-2025-1945), so they are scanned as such.
    let flagged = if m.encrypted {
        " (flagged encrypted, read as torch reads it)"
    } else {
        ""
    };
    let location = format!("{location}{flagged}");
    let why = m
        .error
        .as_ref()
        .map(|e| format!("the member could not be read, so it was not scanned: {e}"));
    let data = match (why, m.data) {
        (Some(why), _) => return list.push(unscanned(why)),
        (None, None) => {
            return list.push(unscanned(
                "the member's data cannot be located, so it was not scanned".into(),
            ))
        }
        (None, Some(data)) => data,
    };
    if let Some(method) = &m.compression {
        // Deflate (what zip writers use) is inflated, up to a bound; other
        // methods are reported unscanned.
        let inflated = (method == "Deflated")
            .then(|| inflate(src, data))
            .transpose();
        match inflated {
            Ok(Some(bytes)) => {
                let location = format!("{location} (deflate-compressed)");
                let mut sc = Scanner::new(&bytes, 0, bytes.len() as u64, name);
                let first = sc.scan(None, location.clone());
                let ok = first.stopped;
                list.push(finish(&mut sc, first));
                more_streams(&mut sc, list, ok, u64::MAX, |at| {
                    format!("{location}, byte {at} inflated")
                });
            }
            Ok(None) => list.push(unscanned(format!(
                "the member is compressed ({method}), which audit does not decompress, so it was not scanned"
            ))),
            Err(why) => list.push(unscanned(why)),
        }
        return;
    }
    let (start, size) = data;
    let mut sc = Scanner::new(src, start, start.saturating_add(size), name);
    let first = sc.scan(None, location.clone());
    let ok = first.stopped;
    list.push(finish(&mut sc, first));
    more_streams(&mut sc, list, ok, u64::MAX, |at| {
        format!("{location}, byte {at}")
    });
}
