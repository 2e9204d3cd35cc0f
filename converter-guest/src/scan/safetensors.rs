//! A safetensors file's header, checked the way decant's host checks the
//! files it writes (`src/validate.rs`): the `safetensors` crate's rules plus
//! the host's own.
//!
//! A safetensors file carries no code, but a header that readers take
//! differently is how one file shows different weights to different tools,
//! so anything short of exact is reported: the JSON must be one object;
//! `__metadata__`, if present, a map of strings to strings; every other key
//! a tensor `{dtype, shape, data_offsets}` of a dtype the format defines,
//! whose shape times element size is the span of its offsets; the offsets,
//! in order, tile the data from 0 to the end of the file; no key appears
//! twice (JSON parsers keep the first or the last); the header is padded
//! with spaces only.
//!
//! The header is parsed from the source as a stream, never held whole: it
//! may be 100 MB, and the converter has a memory limit. Duplicate keys are
//! found by 128-bit digests rather than by keeping the names.

use super::detect::MAX_SAFETENSORS_HEADER;
use crate::source::{Cursor, Source};
use decant_abi::SafetensorsScan;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read, Seek, SeekFrom};

/// The safetensors crate's dtypes (0.8.0), with their sizes in bits.
/// Deserialised the way the crate deserialises them, so a spelling it
/// accepts is accepted here.
#[derive(Debug, Clone, Copy, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum Dtype {
    BOOL,
    F4,
    F6_E2M3,
    F6_E3M2,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    F8_E8M0,
    F8_E4M3FNUZ,
    F8_E5M2FNUZ,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    C64,
    F64,
    I64,
    U64,
}

impl Dtype {
    fn bits(self) -> u64 {
        use Dtype::*;
        match self {
            F4 => 4,
            F6_E2M3 | F6_E3M2 => 6,
            BOOL | U8 | I8 | F8_E5M2 | F8_E4M3 | F8_E8M0 | F8_E4M3FNUZ | F8_E5M2FNUZ => 8,
            I16 | U16 | F16 | BF16 => 16,
            I32 | U32 | F32 => 32,
            C64 | F64 | I64 | U64 => 64,
        }
    }
}

/// A tensor entry, as the crate's `TensorInfo` reads it (unknown fields are
/// ignored there too; a repeated field is an error).
#[derive(Deserialize)]
struct Info {
    dtype: Dtype,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// What the header declares.
#[derive(Default)]
struct Header {
    tensors: u64,
    /// `(start, end)` of every tensor.
    spans: Vec<(u64, u64)>,
}

fn digest(key: &str) -> [u8; 16] {
    let d = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    out
}

/// Whether any digest repeats.
fn has_duplicates(mut keys: Vec<[u8; 16]>) -> bool {
    keys.sort_unstable();
    keys.windows(2).any(|w| w.first() == w.last())
}

struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Header;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut h = Header::default();
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            keys.push(digest(&key));
            if key == "__metadata__" {
                map.next_value_seed(Metadata)?;
                continue;
            }
            let info: Info = map.next_value()?;
            let shown = crate::error::printable(&key);
            let (start, end) = info.data_offsets;
            if end < start {
                return Err(de::Error::custom(format!(
                    "tensor {shown}: data_offsets end before they start"
                )));
            }
            let bits = info
                .shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d))
                .and_then(|n| n.checked_mul(info.dtype.bits()))
                .ok_or_else(|| de::Error::custom(format!("tensor {shown}: size overflows")))?;
            if bits % 8 != 0 {
                return Err(de::Error::custom(format!(
                    "tensor {shown}: its elements do not fill whole bytes"
                )));
            }
            if bits / 8 != end - start {
                return Err(de::Error::custom(format!(
                    "tensor {shown}: shape and dtype make {} bytes, data_offsets span {}",
                    bits / 8,
                    end - start
                )));
            }
            h.spans.push((start, end));
            h.tensors += 1;
        }
        if has_duplicates(keys) {
            return Err(de::Error::custom("a key appears twice"));
        }
        Ok(h)
    }
}

/// `__metadata__`: an object of strings, no key twice.
struct Metadata;

impl<'de> DeserializeSeed<'de> for Metadata {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Metadata {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("__metadata__ as an object of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            keys.push(digest(&key));
            map.next_value::<String>()?;
        }
        if has_duplicates(keys) {
            return Err(de::Error::custom("a __metadata__ key appears twice"));
        }
        Ok(())
    }
}

/// Checks the header of `n` bytes after the length field.
fn check(src: &dyn Source, n: u64) -> (u64, Result<(), String>) {
    let mut cursor = Cursor::new(src);
    if cursor.seek(SeekFrom::Start(8)).is_err() {
        return (0, Err("the header cannot be read".into()));
    }
    let reader = BufReader::with_capacity(64 * 1024, cursor.take(n));
    let mut de = serde_json::Deserializer::from_reader(reader);
    let header = match de.deserialize_map(Top).and_then(|h| de.end().map(|()| h)) {
        Ok(h) => h,
        Err(e) => return (0, Err(format!("safetensors header: {e}"))),
    };
    let tensors = header.tensors;
    if let Err(why) = padding(src, n) {
        return (tensors, Err(why));
    }
    let mut spans = header.spans;
    spans.sort_unstable();
    let mut covered = 0u64;
    for (start, end) in spans {
        if start != covered {
            return (
                tensors,
                Err(format!(
                    "safetensors data offsets leave a gap or overlap at data byte {covered}"
                )),
            );
        }
        covered = end;
    }
    let data = src.len().saturating_sub(8 + n);
    if covered != data {
        return (
            tensors,
            Err(format!(
                "safetensors tensors cover {covered} data bytes but the file has {data}"
            )),
        );
    }
    (tensors, Ok(()))
}

/// The whitespace after the JSON (the parser checked it is whitespace)
/// must be spaces only, as the host requires.
fn padding(src: &dyn Source, n: u64) -> Result<(), String> {
    let mut end = 8 + n;
    let mut buf = vec![0u8; 4096];
    while end > 8 {
        let k = (end - 8).min(buf.len() as u64);
        let Some(chunk) = buf.get_mut(..k as usize) else {
            break;
        };
        src.read_exact_at(end - k, chunk)
            .map_err(|_| "the header cannot be read".to_string())?;
        for &b in chunk.iter().rev() {
            match b {
                b' ' => {}
                b'\n' | b'\r' | b'\t' => {
                    return Err("safetensors header padding is not spaces".into())
                }
                _ => return Ok(()),
            }
        }
        end -= k;
    }
    Ok(())
}

/// The scan of a file whose first 8 bytes are a header length `n` that fits
/// (see `detect`), and the reason it is damaged, if it is.
pub(super) fn scan(src: &dyn Source, n: u64) -> (SafetensorsScan, Option<String>) {
    let (tensors, result) = if n > MAX_SAFETENSORS_HEADER {
        (
            0,
            Err(format!(
                "safetensors header of {n} bytes (the format allows {MAX_SAFETENSORS_HEADER})"
            )),
        )
    } else {
        check(src, n)
    };
    (
        SafetensorsScan {
            tensors,
            header_bytes: n,
        },
        result.err(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str, data: usize) -> Vec<u8> {
        let mut h = json.as_bytes().to_vec();
        h.resize(h.len().next_multiple_of(8), b' ');
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.resize(out.len() + data, 0);
        out
    }

    fn damaged(f: &[u8]) -> Option<String> {
        let n = u64::from_le_bytes(f[..8].try_into().unwrap());
        scan(&f.to_vec(), n).1
    }

    #[test]
    fn a_well_formed_header_is_clean() {
        let f = file(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F4","shape":[2],"data_offsets":[8,9]}}"#,
            9,
        );
        let n = u64::from_le_bytes(f[..8].try_into().unwrap());
        let (s, d) = scan(&f, n);
        assert_eq!(d, None);
        assert_eq!(s.tensors, 2);
        assert_eq!(s.header_bytes, n);
    }

    #[test]
    fn each_host_rule_is_enforced() {
        let ok = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert_eq!(damaged(&file(ok, 4)), None);
        for (json, data, why) in [
            (ok, 5, "cover"),
            (ok, 3, "cover"),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
                "gap",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                4,
                "span",
            ),
            (
                r#"{"a":{"dtype":"X32","shape":[1],"data_offsets":[0,4]}}"#,
                4,
                "variant",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
                "twice",
            ),
            (r#"{"__metadata__":{"k":"v","k":"w"}}"#, 0, "twice"),
            (r#"{"__metadata__":{"k":1}}"#, 0, "string"),
            (r#"{"__metadata__":null}"#, 0, "object"),
            (
                r#"{"a":{"dtype":"F4","shape":[1],"data_offsets":[0,0]}}"#,
                0,
                "whole bytes",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
                0,
                "end before",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}}"#,
                4,
                "overflows",
            ),
            (r#"[]"#, 0, "object"),
        ] {
            let d = damaged(&file(json, data)).unwrap_or_else(|| panic!("accepted {json}"));
            assert!(d.contains(why), "{json}: {d}");
        }
    }

    #[test]
    fn padding_must_be_spaces() {
        let mut f = file(r#"{}"#, 0);
        f[10] = b'\n';
        assert!(damaged(&f).unwrap().contains("padding"));
        let mut f = file(r#"{}"#, 0);
        f[15] = 0;
        assert!(damaged(&f).is_some());
    }
}
