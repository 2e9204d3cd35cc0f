//! What a file is, by its first bytes: never by its name.
//!
//! A loader picks its reader by content (torch.load tries zip, then pickle),
//! and a file's name is whatever its author chose, so a pickle named
//! `model.safetensors` is a pickle here. The signatures are checked from the
//! most specific to the least: the zip and GGUF magics, then the
//! safetensors prefix (its length field must fit the file and the header
//! start with `{`), and last a pickle opcode at byte 0, which about a
//! quarter of all byte values are (so a safetensors or GGUF file often
//! starts with one; `super` re-checks those for a pickle hidden in them).

use crate::source::Source;

/// safetensors' cap on the header length (the host's too).
pub(super) const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// A format's signature at the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Detected {
    /// `PK\x03\x04`.
    Zip,
    /// `GGUF`.
    Gguf,
    /// A safetensors length prefix: the header is this many bytes.
    Safetensors(u64),
    /// A pickle opcode at byte 0.
    Pickle,
    Other,
}

/// Up to `N` bytes from the start of `src`, and how many there were.
pub(super) fn head<const N: usize>(src: &dyn Source) -> ([u8; N], usize) {
    let mut buf = [0u8; N];
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        let got = src.read_at(n as u64, rest);
        if got == 0 || got > rest.len() {
            break;
        }
        n += got;
    }
    (buf, n)
}

pub(super) fn detect(src: &dyn Source) -> Detected {
    let (h, n) = head::<9>(src);
    let h = h.get(..n).unwrap_or(&[]);
    if h.starts_with(b"PK\x03\x04") {
        return Detected::Zip;
    }
    if h.starts_with(b"GGUF") {
        return Detected::Gguf;
    }
    if let (Some(len), Some(b'{')) = (h.get(..8), h.get(8)) {
        let len: [u8; 8] = len.try_into().unwrap_or([0xff; 8]);
        let header = u64::from_le_bytes(len);
        let fits = header.checked_add(8).is_some_and(|end| end <= src.len());
        if header <= MAX_SAFETENSORS_HEADER && fits {
            return Detected::Safetensors(header);
        }
    }
    match h.first() {
        Some(&b) if crate::pickle::is_opcode(b) => Detected::Pickle,
        _ => Detected::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_told_apart_by_content() {
        assert_eq!(detect(&b"PK\x03\x04rest".to_vec()), Detected::Zip);
        assert_eq!(detect(&b"GGUF\x03\0\0\0".to_vec()), Detected::Gguf);
        let mut st = 2u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}");
        assert_eq!(detect(&st), Detected::Safetensors(2));
        assert_eq!(detect(&b"\x80\x02N.".to_vec()), Detected::Pickle);
        assert_eq!(detect(&Vec::new()), Detected::Other);
        assert_eq!(detect(&b"{\"a\": 1}".to_vec()), Detected::Other);
    }

    #[test]
    fn a_safetensors_length_that_does_not_fit_is_no_safetensors() {
        // Length 3 but only 2 header bytes; byte 0 (3) is no opcode.
        let mut st = 3u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}");
        assert_eq!(detect(&st), Detected::Other);
        // Over the format's cap.
        let mut big = (MAX_SAFETENSORS_HEADER + 1).to_le_bytes().to_vec();
        big.push(b'{');
        assert_eq!(detect(&big), Detected::Other);
    }
}
