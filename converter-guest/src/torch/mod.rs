//! torch checkpoint containers: detection, and the model both readers produce.
//!
//! A [`Parsed`] checkpoint is the unpickled object graph plus, for every
//! declared storage, where its bytes lie in the source. Nothing is copied
//! yet: the writer streams tensor bytes straight from those locations.

pub mod legacy;
pub mod plan;
pub mod zip;

use crate::error::{format, unsupported, Result};
use crate::pickle::{Machine, Value};
use crate::source::Source;

/// Where one storage's bytes lie in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageData {
    /// Absolute offset of the first byte.
    pub offset: u64,
    /// zip CRC-32 of the record, to check while or after reading it.
    pub crc32: Option<u32>,
}

/// A checkpoint, read and unpickled, with its data not yet touched.
pub struct Parsed {
    pub format: &'static str,
    pub protocol: u8,
    /// Whether stored elements are big-endian (zip `byteorder` = `big`).
    pub big_endian: bool,
    pub machine: Machine,
    pub root: Value,
    /// Indexed like `machine.storages.decls`.
    pub data: Vec<StorageData>,
}

/// Detects the container and reads it.
pub fn parse(src: &dyn Source) -> Result<Parsed> {
    let mut head = [0u8; 4];
    let n = src.read_at(0, &mut head);
    if n == 4 && head == *b"PK\x03\x04" {
        zip::parse(src)
    } else if is_tar(src) {
        Err(unsupported(
            "a tar archive: torch's legacy .tar checkpoint format (torch < 0.1.10)",
            "torch's weights-only loader refuses this format too; load it in a trusted environment and re-save with torch.save",
        ))
    } else if n >= 1 && crate::pickle::is_opcode(head[0]) {
        // A pickle stream of any protocol: the legacy format, or a bare
        // pickle whose globals the VM names before anything else happens.
        legacy::parse(src)
    } else if n == 0 {
        Err(format("the file is empty"))
    } else {
        Err(format(
            "not a torch checkpoint: neither a zip archive nor a pickle stream",
        ))
    }
}

/// Whether torch's `_legacy_load` would take the file for a tar archive: it
/// tries `tarfile.open` before anything else, which accepts a first 512-byte
/// block whose checksum field matches the block (CPython `tarfile.nti` and
/// `calc_chksums`). The octal field is parsed permissively (sign, `0o`,
/// underscores), so every block Python accepts is caught.
fn is_tar(src: &dyn Source) -> bool {
    let mut block = [0u8; 512];
    if src.read_exact_at(0, &mut block).is_err() {
        return false;
    }
    let field = &block[148..156];
    let claimed: Option<i128> = if let [sign @ (0o200 | 0o377), ref base256 @ ..] = *field {
        // Seven base-256 digits: below 2^56.
        let n = base256.iter().fold(0i128, |n, &b| (n << 8) + b as i128);
        Some(if sign == 0o377 { n - (1i128 << 56) } else { n })
    } else {
        let text = field.split(|&b| b == 0).next().unwrap_or(&[]);
        std::str::from_utf8(text).ok().and_then(|t| {
            let t = t.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c));
            let (neg, t) = match t.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let t = t
                .strip_prefix("0o")
                .or_else(|| t.strip_prefix("0O"))
                .unwrap_or(t);
            let digits: String = t.chars().filter(|&c| c != '_').collect();
            if digits.is_empty() {
                return Some(0);
            }
            i128::from_str_radix(&digits, 8)
                .ok()
                .map(|v| if neg { -v } else { v })
        })
    };
    let Some(claimed) = claimed else {
        return false;
    };
    let rest = block[..148].iter().chain(&block[156..]);
    let unsigned: i128 = 256 + rest.clone().map(|&b| b as i128).sum::<i128>();
    let signed: i128 = 256 + rest.map(|&b| b as i8 as i128).sum::<i128>();
    claimed == unsigned || claimed == signed
}
