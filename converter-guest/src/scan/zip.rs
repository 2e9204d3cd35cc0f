//! The members of a zip archive, as every kind of reader finds them.
//!
//! torch and most tools find members through the central directory; a
//! streaming reader walks the local headers from byte 0. A crafted archive
//! makes the two disagree (a duplicate name, which the `zip` crate keeps
//! once; a local entry the directory does not list; a directory that cannot
//! be read at all), and a scan that trusted one view would miss what the
//! other reader loads. So both views are taken, and every member either one
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
/// without one the walk cannot know where the entry ends and stops there.
fn local_entries(src: &dyn Source, directory: &[Member]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let len = src.len();
    while let Ok(h) = src.read_vec(pos, 30) {
        if !h.starts_with(b"PK\x03\x04") {
            break;
        }
        let flags = u16_at(&h, 6);
        let method = u16_at(&h, 8);
        let csize = u32_at(&h, 18);
        let name_len = u64::from(u16_at(&h, 26));
        let extra_len = u64::from(u16_at(&h, 28));
        let Ok(name) = src.read_vec(pos + 30, name_len) else {
            break;
        };
        let Ok(extra) = src.read_vec(pos + 30 + name_len, extra_len) else {
            break;
        };
        let data_start = pos + 30 + name_len + extra_len;
        let descriptor = flags & FLAG_DESCRIPTOR != 0;
        let size = if csize == 0xffff_ffff {
            zip64_compressed_size(&extra)
        } else if descriptor && csize == 0 {
            directory
                .iter()
                .find(|d| d.header_start == pos)
                .and_then(|d| d.data.map(|(_, n)| n))
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
            out.push(member);
            break;
        };
        out.push(member);
        pos = if descriptor {
            match descriptor_end(src, end) {
                Some(next) => next,
                None => break,
            }
        } else {
            end
        };
    }
    out
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
