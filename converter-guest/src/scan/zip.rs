//! The members of a zip archive, as every kind of reader finds them.
//!
//! torch and most tools find members through the central directory; a
//! streaming reader walks the local headers from byte 0. A crafted archive
//! makes the two disagree (a duplicate name, which the `zip` crate keeps
//! once; a local entry the directory does not list; a directory that cannot
//! be read at all, junk before the archive that holds an entry of its own
//! while the directory's offsets are adjusted past it), and a scan that
//! trusted one view would miss what the other reader loads. So both views are taken, and every member either one
//! names `*.pkl` / `*.pickle` is scanned. `crate::torch::zip` judges whether
//! torch accepts the archive (the audit's refusal); here nothing is refused.

use crate::source::{Cursor, Source};

/// One member as one view sees it.
#[derive(Debug, Clone)]
pub(super) struct Member {
    pub name: Vec<u8>,
    pub header_start: u64,
    /// Where its bytes start, and how many are stored.
    pub data: Option<(u64, u64)>,
    /// `None` when stored (uncompressed), else the method's name.
    pub compression: Option<String>,
    pub encrypted: bool,
    /// Found through the central directory (else only by its local header).
    pub listed: bool,
    /// Why its bytes cannot be located.
    pub error: Option<String>,
}

impl Member {
    /// `*.pkl` or `*.pickle`, in any letter case.
    pub fn is_pickle(&self) -> bool {
        let lower = self.name.to_ascii_lowercase();
        lower.ends_with(b".pkl") || lower.ends_with(b".pickle")
    }

    /// `<root>/data.pkl`, in any letter case (torch's reader looks records
    /// up ignoring case): the layout torch.save writes.
    pub fn is_torch_data_pkl(&self) -> bool {
        let lower = self.name.to_ascii_lowercase();
        lower
            .strip_suffix(b"/data.pkl")
            .is_some_and(|root| !root.is_empty() && !root.contains(&b'/'))
    }
}

/// An archive's members: the central directory's, then local entries it
/// does not account for.
#[derive(Debug, Default)]
pub(super) struct Members {
    pub list: Vec<Member>,
    /// Why the central directory could not be read, if it could not.
    pub directory_error: Option<String>,
}

pub(super) fn members(src: &dyn Source) -> Members {
    let mut out = Members::default();
    match ::zip::ZipArchive::new(Cursor::new(src)) {
        Ok(mut archive) => {
            for i in 0..archive.len() {
                let name = archive
                    .name_for_index(i)
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_default();
                let member = match archive.by_index_raw(i) {
                    Ok(f) => Member {
                        name: f.name_raw().to_vec(),
                        header_start: f.header_start(),
                        data: f.data_start().map(|d| (d, f.compressed_size())),
                        compression: (f.compression() != ::zip::CompressionMethod::Stored)
                            .then(|| f.compression().to_string()),
                        encrypted: f.encrypted(),
                        listed: true,
                        error: None,
                    },
                    Err(e) => Member {
                        name,
                        header_start: 0,
                        data: None,
                        compression: None,
                        encrypted: false,
                        listed: true,
                        error: Some(e.to_string()),
                    },
                };
                out.list.push(member);
            }
        }
        Err(e) => out.directory_error = Some(e.to_string()),
    }
    let local = local_entries(src, &out.list);
    for m in local {
        let known = out
            .list
            .iter()
            .any(|d| d.header_start == m.header_start && d.data == m.data && d.name == m.name);
        if !known {
            out.list.push(m);
        }
    }
    let hidden = gap_entries(src, &out.list);
    out.list.extend(hidden);
    out
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

/// The compressed size in a local header's ZIP64 extra field (which then
/// holds the uncompressed size, then the compressed one).
fn zip64_compressed_size(extra: &[u8]) -> Option<u64> {
    let mut at = 0usize;
    while at + 4 <= extra.len() {
        let id = u16_at(extra, at);
        let len = usize::from(u16_at(extra, at + 2));
        let body = extra.get(at + 4..at + 4 + len)?;
        if id == 0x0001 {
            return u64_at(body, 8);
        }
        at += 4 + len;
    }
    None
}

const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_DESCRIPTOR: u16 = 0x0008;

/// Walks the local headers from byte 0, as a streaming reader does, until
/// something other than a local header follows an entry. A size deferred to
/// a data descriptor is taken from the directory entry at the same offset;
/// for an entry the directory does not list, from the first data
/// descriptor after its data whose size matches, as streaming readers find
/// it; failing that, the entry is taken to run to the end of the file (a
/// stored pickle ends at its STOP, wherever that is) and the walk stops.
/// [`gap_entries`] finds the local headers the walk does not reach.
fn local_entries(src: &dyn Source, directory: &[Member]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut pos = Some(0u64);
    while let Some((member, next)) = pos.and_then(|p| local_entry(src, p, directory)) {
        out.push(member);
        pos = next;
    }
    out
}

/// The local entry whose header is at `pos`, if one is, and where the
/// header after it would be (`None` when a streaming reader cannot tell).
fn local_entry(src: &dyn Source, pos: u64, directory: &[Member]) -> Option<(Member, Option<u64>)> {
    let len = src.len();
    let h = src.read_vec(pos, 30).ok()?;
    if !h.starts_with(b"PK\x03\x04") {
        return None;
    }
    let flags = u16_at(&h, 6);
    let method = u16_at(&h, 8);
    let csize = u32_at(&h, 18);
    let name_len = u64::from(u16_at(&h, 26));
    let extra_len = u64::from(u16_at(&h, 28));
    let name = src.read_vec(pos + 30, name_len).ok()?;
    let extra = src.read_vec(pos + 30 + name_len, extra_len).ok()?;
    let data_start = pos + 30 + name_len + extra_len;
    let descriptor = flags & FLAG_DESCRIPTOR != 0;
    let size = if csize == 0xffff_ffff {
        zip64_compressed_size(&extra)
    } else if descriptor && csize == 0 {
        directory
            .iter()
            .find(|d| d.header_start == pos)
            .and_then(|d| d.data.map(|(_, n)| n))
            .or_else(|| {
                Some(descriptor_after(src, data_start).unwrap_or(len.saturating_sub(data_start)))
            })
    } else {
        Some(u64::from(csize))
    };
    let mut member = Member {
        name,
        header_start: pos,
        data: size.map(|n| (data_start, n)),
        compression: (method != 0).then(|| format!("method {method}")),
        encrypted: flags & FLAG_ENCRYPTED != 0,
        listed: false,
        error: None,
    };
    let Some(end) = size
        .and_then(|n| data_start.checked_add(n))
        .filter(|&e| e <= len)
    else {
        member.error = Some(
            "its local header gives no size that fits the file (a streaming reader cannot tell where it ends)"
                .into(),
        );
        return Some((member, None));
    };
    let next = if descriptor {
        descriptor_end(src, end)
    } else {
        Some(end)
    };
    Some((member, next))
}

/// How many local entries the search of the gaps adds.
const MAX_GAP_ENTRIES: usize = 256;

/// Local headers in the bytes no known entry's header and data cover
/// (junk before the archive, between entries, before the central
/// directory): a reader that finds entries by their signature, or an
/// archive whose offsets skip a prefix, reaches them, the walk from byte 0
/// does not when junk comes first. Only the gaps are read, so the tensor
/// data of a large archive is not; an entry found is skipped over, so a
/// zip stored in it is no entry of this one.
fn gap_entries(src: &dyn Source, known: &[Member]) -> Vec<Member> {
    const WINDOW: u64 = 1 << 20;
    let len = src.len();
    let mut covered: Vec<(u64, u64)> = known
        .iter()
        .filter_map(|m| {
            let (start, n) = m.data?;
            Some((m.header_start, start.saturating_add(n)))
        })
        .collect();
    covered.sort_unstable();
    // The gaps between the merged covered ranges.
    let mut gaps = Vec::new();
    let mut at = 0u64;
    for (start, end) in covered {
        if start > at {
            gaps.push((at, start));
        }
        at = at.max(end);
    }
    if at < len {
        gaps.push((at, len));
    }
    let mut out = Vec::new();
    for (from, to) in gaps {
        let mut at = from;
        while at < to && out.len() < MAX_GAP_ENTRIES {
            // 3 bytes of overlap: a signature across windows.
            let Ok(buf) = src.read_vec(at, (to - at).min(WINDOW + 3)) else {
                break;
            };
            let hit = buf
                .windows(4)
                .position(|w| w == b"PK\x03\x04")
                .map(|i| at + i as u64);
            let Some(header) = hit else {
                at += (buf.len() as u64).saturating_sub(3).max(1);
                continue;
            };
            let known_header = known.iter().any(|m| m.header_start == header);
            match local_entry(src, header, known).filter(|_| !known_header) {
                Some((m, _)) => {
                    at = m
                        .data
                        .map_or(header + 4, |(s, n)| s.saturating_add(n))
                        .max(header + 4);
                    out.push(m);
                }
                None => at = header + 4,
            }
        }
    }
    out
}

/// The size of the data starting at `start` that a data descriptor after
/// it records: the first `PK\x07\x08` whose 32- or 64-bit compressed size
/// is its distance from `start`. Linear: each byte is looked at once.
fn descriptor_after(src: &dyn Source, start: u64) -> Option<u64> {
    const WINDOW: u64 = 1 << 20;
    // A pickle member is small; past this, the entry is taken to run to
    // the end of the file.
    const MAX_SEARCH: u64 = 64 << 20;
    let len = src.len().min(start.saturating_add(MAX_SEARCH));
    let mut at = start;
    while at < len {
        // 24 bytes of overlap: a descriptor with 64-bit sizes.
        let buf = src.read_vec(at, (len - at).min(WINDOW + 24)).ok()?;
        let scanned = (buf.len() as u64).min(WINDOW) as usize;
        if scanned == 0 {
            return None;
        }
        for i in 0..scanned {
            if buf.get(i..i + 4) != Some(b"PK\x07\x08") {
                continue;
            }
            let size = at + i as u64 - start;
            let small = buf
                .get(i + 8..i + 12)
                .map(|_| u64::from(u32_at(&buf, i + 8)));
            if small == Some(size) || u64_at(&buf, i + 8) == Some(size) {
                return Some(size);
            }
        }
        at += scanned as u64;
    }
    None
}

/// Where the data descriptor after an entry's data ends: an optional
/// signature, the CRC-32, then 32- or 64-bit sizes; whichever is followed by
/// another zip record.
fn descriptor_end(src: &dyn Source, at: u64) -> Option<u64> {
    let sig = src.read_vec(at, 4).ok()?;
    let body = if sig == b"PK\x07\x08" { at + 4 } else { at };
    [12u64, 20].into_iter().map(|n| body + n).find(|&next| {
        src.read_vec(next, 4)
            .is_ok_and(|s| s.starts_with(b"PK\x03\x04") || s.starts_with(b"PK\x01\x02"))
    })
}
