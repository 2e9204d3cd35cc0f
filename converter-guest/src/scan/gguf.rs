//! A GGUF file's header: version, counts, and the metadata an auditor needs,
//! above all the embedded chat template (Jinja that a runtime renders on
//! every prompt, and a known place to hide instructions or template
//! injection).
//!
//! The layout is ggml's `docs/gguf.md` (ggml-org/ggml), cross-checked with
//! its reader (`src/gguf.cpp`) and with the version 1 writer (llama.cpp's
//! `gguf.py` of August 2023):
//!
//! - `GGUF`, then a u32 version: 1, 2 or 3. Version 1 writes the tensor and
//!   metadata counts, string lengths and array lengths as u32; versions 2
//!   and 3 as u64. Version 3 adds big-endian files, in which every number is
//!   big-endian (the version field reads as `0x03000000` little-endian; ggml
//!   recognises a foreign byte order the same way).
//! - per metadata pair: the key (a string, at most 65535 bytes), a u32 value
//!   type, the value. Types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32,
//!   7 bool (1 byte), 8 string (length, then UTF-8 bytes), 9 array (element
//!   type u32, element count, the elements; arrays may nest), 10 u64,
//!   11 i64, 12 f64.
//! - then the tensor infos, at least 24 bytes each in versions 2 and 3
//!   (name length u64, dimension count u32, type u32, offset u64) and 20 in
//!   version 1 (u32 name length); they are not parsed, only bounded.
//!
//! Values are skipped by their lengths without being read into memory (a
//! string or array may claim more than the file holds; that is truncation).
//! A key given twice is damage: ggml refuses such a file, and other readers
//! keep one or the other (which chat template is the real one?).

use crate::source::Source;
use decant_abi::{GgufScan, TextRef, MAX_GLOBAL_NAME};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

const TYPE_U8: u32 = 0;
const TYPE_I8: u32 = 1;
const TYPE_U16: u32 = 2;
const TYPE_I16: u32 = 3;
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_U64: u32 = 10;
const TYPE_I64: u32 = 11;
const TYPE_F64: u32 = 12;

/// The longest key the spec allows.
const MAX_KEY: u64 = 65535;
/// Bytes hashed per read.
const CHUNK: u64 = 64 * 1024;

/// Size of a fixed-size value type.
fn fixed_size(t: u32) -> Option<u64> {
    match t {
        TYPE_U8 | TYPE_I8 | TYPE_BOOL => Some(1),
        TYPE_U16 | TYPE_I16 => Some(2),
        TYPE_U32 | TYPE_I32 | TYPE_F32 => Some(4),
        TYPE_U64 | TYPE_I64 | TYPE_F64 => Some(8),
        _ => None,
    }
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

struct Reader<'s> {
    src: &'s dyn Source,
    pos: u64,
    big_endian: bool,
    /// Version 1: counts and lengths are u32.
    narrow: bool,
}

impl Reader<'_> {
    fn truncated(&self, what: &str) -> String {
        format!(
            "GGUF {what} at byte {} runs past the end of the file ({} bytes)",
            self.pos,
            self.src.len()
        )
    }

    fn left(&self) -> u64 {
        self.src.len().saturating_sub(self.pos)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.src
            .read_exact_at(self.pos, &mut b)
            .map_err(|_| self.truncated(what))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.array::<4>(what)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.array::<8>(what)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// A count or length: u32 in version 1, else u64.
    fn count(&mut self, what: &str) -> Result<u64, String> {
        if self.narrow {
            self.u32(what).map(u64::from)
        } else {
            self.u64(what)
        }
    }

    /// The header's tensor and metadata counts.
    fn counts(&mut self) -> Result<(u64, u64), String> {
        Ok((self.count("tensor count")?, self.count("metadata count")?))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.left() {
            return Err(self.truncated(what));
        }
        self.pos += n;
        Ok(())
    }

    /// A string value's length, checked against the file.
    fn string_len(&mut self, what: &str) -> Result<u64, String> {
        let at = self.pos;
        let n = self.count(what)?;
        if n > self.left() {
            self.pos = at;
            return Err(self.truncated(what));
        }
        Ok(n)
    }

    /// A string value for display: its first bytes, cut as global names are.
    fn short_string(&mut self, what: &str) -> Result<String, String> {
        let n = self.string_len(what)?;
        let keep = n.min(MAX_GLOBAL_NAME as u64);
        let head = self
            .src
            .read_vec(self.pos, keep)
            .map_err(|_| self.truncated(what))?;
        self.pos += n;
        Ok(super::shorten(
            String::from_utf8_lossy(&head).into_owned(),
            n > keep,
        ))
    }

    /// A string value by length and digest, read a chunk at a time.
    fn text_ref(&mut self, what: &str) -> Result<TextRef, String> {
        let n = self.string_len(what)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; n.min(CHUNK) as usize];
        let mut done = 0u64;
        while done < n {
            let k = (n - done).min(CHUNK);
            let chunk = buf.get_mut(..k as usize).unwrap_or_default();
            self.src
                .read_exact_at(self.pos + done, chunk)
                .map_err(|_| self.truncated(what))?;
            hasher.update(&*chunk);
            done += k;
        }
        self.pos += n;
        Ok(TextRef {
            bytes: n,
            sha256: hex(&hasher.finalize()),
        })
    }

    /// Passes over a value of type `t`, nested arrays included, with an
    /// explicit stack (no recursion an attacker could deepen).
    fn skip_value(&mut self, t: u32, key: &str) -> Result<(), String> {
        // Arrays whose elements are still to skip: (element type, count).
        let mut open: Vec<(u32, u64)> = Vec::new();
        let mut t = t;
        loop {
            match t {
                TYPE_STRING => {
                    let n = self.count(key)?;
                    self.skip(n, key)?;
                }
                TYPE_ARRAY => {
                    let element = self.u32(key)?;
                    let n = self.count(key)?;
                    match fixed_size(element) {
                        Some(size) => {
                            let bytes = n.checked_mul(size).ok_or_else(|| self.truncated(key))?;
                            self.skip(bytes, key)?;
                        }
                        None if element == TYPE_STRING || element == TYPE_ARRAY => {
                            open.push((element, n))
                        }
                        None => return Err(self.bad_type(element, key)),
                    }
                }
                other => match fixed_size(other) {
                    Some(size) => self.skip(size, key)?,
                    None => return Err(self.bad_type(other, key)),
                },
            }
            // The next element of the innermost unfinished array.
            loop {
                match open.last_mut() {
                    None => return Ok(()),
                    Some((element, n)) if *n > 0 => {
                        *n -= 1;
                        t = *element;
                        break;
                    }
                    Some(_) => {
                        open.pop();
                    }
                }
            }
        }
    }

    fn bad_type(&self, t: u32, key: &str) -> String {
        format!(
            "GGUF value of {key} has type {t} before byte {} (the format defines 0 to 12)",
            self.pos
        )
    }
}

/// The scan of a file starting with `GGUF`, and the reason it is damaged,
/// if it is. `None` when even the header cannot be read.
pub(super) fn scan(src: &dyn Source) -> (Option<GgufScan>, Option<String>) {
    let mut r = Reader {
        src,
        pos: 4,
        big_endian: false,
        narrow: false,
    };
    let raw = match r.array::<4>("version") {
        Ok(b) => b,
        Err(why) => return (None, Some(why)),
    };
    let version = match (u32::from_le_bytes(raw), u32::from_be_bytes(raw)) {
        (v @ 1..=3, _) => v,
        (_, v @ 2..=3) => {
            r.big_endian = true;
            v
        }
        (v, _) => {
            return (
                None,
                Some(format!("GGUF version {v}: readers know versions 1 to 3")),
            )
        }
    };
    r.narrow = version == 1;
    let (tensor_count, metadata_count) = match r.counts() {
        Ok(c) => c,
        Err(why) => return (None, Some(why)),
    };
    let mut out = GgufScan {
        version,
        tensor_count,
        metadata_count,
        architecture: None,
        name: None,
        file_type: None,
        chat_template: None,
    };
    let damaged = metadata(&mut r, &mut out).err();
    (Some(out), damaged)
}

fn metadata(r: &mut Reader, out: &mut GgufScan) -> Result<(), String> {
    let mut keys = BTreeSet::new();
    // Each pair reads at least one byte (or fails), so this loop is bounded
    // by the file, whatever the count claims.
    for i in 0..out.metadata_count {
        let at = r.pos;
        let n = r.count("metadata key length")?;
        if n > MAX_KEY {
            return Err(format!(
                "GGUF metadata key {i} at byte {at} is {n} bytes long (the format allows {MAX_KEY})"
            ));
        }
        let key = r
            .src
            .read_vec(r.pos, n)
            .map_err(|_| r.truncated("metadata key"))?;
        r.pos += n;
        let shown = crate::error::printable(&String::from_utf8_lossy(&key));
        if keys.contains(&key) {
            return Err(format!(
                "GGUF metadata key {shown} appears twice (readers keep one or the other, or refuse the file)"
            ));
        }
        let t = r.u32(&shown)?;
        match (key.as_slice(), t) {
            (b"general.architecture", TYPE_STRING) => {
                out.architecture = Some(r.short_string(&shown)?)
            }
            (b"general.name", TYPE_STRING) => out.name = Some(r.short_string(&shown)?),
            (b"general.file_type", TYPE_U32) => out.file_type = Some(r.u32(&shown)?),
            (b"tokenizer.chat_template", TYPE_STRING) => {
                out.chat_template = Some(r.text_ref(&shown)?)
            }
            _ => r.skip_value(t, &shown)?,
        }
        keys.insert(key);
    }
    // The tensor infos follow; each takes at least this many bytes.
    let min_info: u64 = if r.narrow { 20 } else { 24 };
    let left = r.left();
    if out
        .tensor_count
        .checked_mul(min_info)
        .is_none_or(|need| need > left)
    {
        return Err(format!(
            "GGUF header declares {} tensors, but only {left} bytes follow the metadata (each tensor's description takes at least {min_info})",
            out.tensor_count
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }

    /// A v3 file: the given pairs, then `tensors` zeroed tensor infos.
    fn gguf(pairs: &[(&str, u32, Vec<u8>)], tensors: u64) -> Vec<u8> {
        let mut f = b"GGUF".to_vec();
        f.extend_from_slice(&3u32.to_le_bytes());
        f.extend_from_slice(&tensors.to_le_bytes());
        f.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
        for (k, t, v) in pairs {
            f.extend_from_slice(&(k.len() as u64).to_le_bytes());
            f.extend_from_slice(k.as_bytes());
            f.extend_from_slice(&t.to_le_bytes());
            f.extend_from_slice(v);
        }
        f.resize(f.len() + 24 * tensors as usize, 0);
        f
    }

    #[test]
    fn nested_arrays_are_skipped_without_recursion() {
        // An array of 100,000 arrays, each nesting one level deeper is not
        // expressible flatly; instead: depth via an array of arrays of
        // arrays ... 10,000 levels, each with one element.
        let mut v = Vec::new();
        for _ in 0..10_000 {
            v.extend_from_slice(&TYPE_ARRAY.to_le_bytes());
            v.extend_from_slice(&1u64.to_le_bytes());
        }
        v.extend_from_slice(&TYPE_U8.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
        v.push(7);
        // The outer value's type is ARRAY; its header is the first pair of
        // fields above.
        let f = gguf(&[("deep", TYPE_ARRAY, v)], 0);
        let (s, d) = scan(&f.to_vec());
        assert_eq!(d, None);
        assert_eq!(s.unwrap().metadata_count, 1);
    }

    #[test]
    fn a_count_the_file_cannot_hold_is_truncation() {
        let mut v = TYPE_STRING.to_le_bytes().to_vec();
        v.extend_from_slice(&u64::MAX.to_le_bytes());
        let f = gguf(&[("a", TYPE_ARRAY, v)], 0);
        let (_, d) = scan(&f);
        assert!(d.unwrap().contains("runs past the end"));
        let mut f = gguf(&[], 0);
        f[8..16].copy_from_slice(&1_000_000u64.to_le_bytes());
        f.resize(40, 0);
        let (s, d) = scan(&f);
        assert_eq!(s.unwrap().tensor_count, 1_000_000);
        assert!(d.unwrap().contains("declares 1000000 tensors"));
    }

    #[test]
    fn a_repeated_key_and_an_unknown_type_are_damage() {
        let u32v = 7u32.to_le_bytes().to_vec();
        let f = gguf(
            &[
                ("general.file_type", TYPE_U32, u32v.clone()),
                ("general.file_type", TYPE_U32, u32v),
            ],
            0,
        );
        assert!(scan(&f).1.unwrap().contains("appears twice"));
        let f = gguf(&[("x", 13, vec![0; 8])], 0);
        assert!(scan(&f).1.unwrap().contains("type 13"));
    }

    #[test]
    fn versions_outside_1_to_3_are_not_read() {
        let mut f = b"GGUF".to_vec();
        f.extend_from_slice(&4u32.to_le_bytes());
        f.resize(64, 0);
        let (s, d) = scan(&f);
        assert!(s.is_none());
        assert!(d.unwrap().contains("version 4"));
    }

    #[test]
    fn a_big_endian_v3_file_is_read_big_endian() {
        let mut f = b"GGUF".to_vec();
        f.extend_from_slice(&3u32.to_be_bytes());
        f.extend_from_slice(&0u64.to_be_bytes());
        f.extend_from_slice(&1u64.to_be_bytes());
        let key = b"general.file_type";
        f.extend_from_slice(&(key.len() as u64).to_be_bytes());
        f.extend_from_slice(key);
        f.extend_from_slice(&TYPE_U32.to_be_bytes());
        f.extend_from_slice(&15u32.to_be_bytes());
        let (s, d) = scan(&f);
        assert_eq!(d, None);
        let s = s.unwrap();
        assert_eq!((s.version, s.file_type), (3, Some(15)));
    }

    #[test]
    fn version_1_uses_32_bit_counts_and_lengths() {
        let mut f = b"GGUF".to_vec();
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        let key = b"general.architecture";
        f.extend_from_slice(&(key.len() as u32).to_le_bytes());
        f.extend_from_slice(key);
        f.extend_from_slice(&TYPE_STRING.to_le_bytes());
        f.extend_from_slice(&5u32.to_le_bytes());
        f.extend_from_slice(b"llama");
        let (s, d) = scan(&f);
        assert_eq!(d, None);
        let s = s.unwrap();
        assert_eq!((s.version, s.architecture.as_deref()), (1, Some("llama")));
    }
}
