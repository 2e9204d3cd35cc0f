//! Host-side validation of what the guest wrote, before it is published.
//!
//! The guest is trusted to be correct but not to be honest: its output is
//! checked with the `safetensors` crate (header size, JSON, offsets that
//! cover the data exactly with no holes or overlaps), plus checks the crate
//! does not make: no duplicate keys (serde would keep the last), a header
//! padded only with spaces, and agreement with the guest's own report.

use crate::error::{Error, Kind, Result};
use decant_abi::Report;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// safetensors' own cap on the header.
const MAX_HEADER: u64 = 100_000_000;

/// What a valid output contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tensors: usize,
    pub header_len: u64,
}

fn invalid(why: impl Into<String>) -> Error {
    Error::new(
        Kind::Internal,
        format!(
            "the converter produced an invalid safetensors file: {}",
            why.into()
        ),
        "nothing was written; this is a bug in decant (see SECURITY.md)",
    )
}

/// Validates the safetensors file `f` (read by offset, so its position does
/// not matter), of `len` bytes.
pub fn safetensors_file(f: &File, len: u64) -> Result<Summary> {
    let mut n = [0u8; 8];
    f.read_exact_at(&mut n, 0)
        .map_err(|_| invalid("shorter than 8 bytes"))?;
    let n = u64::from_le_bytes(n);
    if n.checked_add(8).is_none_or(|end| end > len) {
        return Err(invalid(format!("header length {n} does not fit the file")));
    }
    if n > MAX_HEADER {
        return Err(Error::new(
            Kind::Limit,
            format!(
                "refused: the output's header would be {n} bytes, more than the {MAX_HEADER} safetensors readers accept (a limit of the format; no policy raises it)"
            ),
            "the checkpoint has too many tensors or too long names for one safetensors file; split it",
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact_at(&mut header, 8)
        .map_err(|e| Error::io("cannot read the output header", &e))?;
    header_bytes(&header, len)
}

/// Validates a header block (the JSON and its padding) for a file of `len`
/// bytes.
pub fn header_bytes(header: &[u8], len: u64) -> Result<Summary> {
    if header.first() != Some(&b'{') {
        return Err(invalid("header does not start with {"));
    }
    let json_end = header.iter().rposition(|&b| b == b'}').map_or(0, |i| i + 1);
    let (json, padding) = header.split_at(json_end.min(header.len()));
    if padding.iter().any(|&b| b != b' ') {
        return Err(invalid("header padding is not spaces"));
    }
    let text = std::str::from_utf8(json).map_err(|_| invalid("header is not UTF-8"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(UniqueKeys { nested: true })
        .map_err(|e| invalid(format!("header: {e}")))?;
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_str(text).map_err(|e| invalid(format!("header: {e}")))?;
    let data_len = metadata.data_len() as u64;
    if 8 + header.len() as u64 + data_len != len {
        return Err(invalid(format!(
            "tensors cover {data_len} data bytes but the file has {}",
            len - 8 - header.len() as u64
        )));
    }
    Ok(Summary {
        tensors: metadata.tensors().len(),
        header_len: header.len() as u64,
    })
}

/// Checks the output against the guest's report.
pub fn matches_report(summary: &Summary, report: &Report, len: u64) -> Result<()> {
    if summary.tensors as u64 != report.tensors || report.output_bytes != len {
        return Err(invalid(format!(
            "the report says {} tensors in {} bytes, the file has {} tensors in {len} bytes",
            report.tensors, report.output_bytes, summary.tensors
        )));
    }
    Ok(())
}

/// Rejects duplicate keys in the header object and in `__metadata__`.
struct UniqueKeys {
    nested: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            if self.nested && key == "__metadata__" {
                map.next_value_seed(UniqueKeys { nested: false })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10: a header over safetensors' 100,000,000-byte cap (possible
    /// under a generous policy) was "a bug in decant"; it is a limit.
    #[test]
    fn a_header_over_the_format_cap_is_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.safetensors");
        let n: u64 = MAX_HEADER + 8;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&n.to_le_bytes(), 0).unwrap();
        f.set_len(8 + n).unwrap();
        let e = safetensors_file(&f, 8 + n).unwrap_err();
        assert_eq!(e.kind, Kind::Limit, "{e:?}");
        assert!(e.message.contains("100000000"), "{}", e.message);
    }

    fn block(json: &str) -> Vec<u8> {
        let mut h = json.as_bytes().to_vec();
        h.resize(h.len().next_multiple_of(8), b' ');
        h
    }

    #[test]
    fn accepts_a_well_formed_header() {
        let h = block(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        );
        let s = header_bytes(&h, 8 + h.len() as u64 + 8).unwrap();
        assert_eq!(s.tensors, 1);
    }

    #[test]
    fn rejects_duplicate_tensor_names() {
        // serde_json keeps the last duplicate; a reader that keeps the first
        // would see other data (a polyglot header).
        let h = block(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        );
        assert!(header_bytes(&h, 8 + h.len() as u64 + 8).is_err());
    }

    #[test]
    fn rejects_holes_and_trailing_data() {
        let h = block(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#);
        assert!(header_bytes(&h, 8 + h.len() as u64 + 8).is_err());
        let h = block(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
        assert!(header_bytes(&h, 8 + h.len() as u64 + 5).is_err());
    }

    #[test]
    fn rejects_non_space_padding() {
        let mut h = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.to_vec();
        h.push(0);
        assert!(header_bytes(&h, 8 + h.len() as u64 + 4).is_err());
    }
}
