//! Random access to the source checkpoint.
//!
//! In the sandbox the source lives on the host and is reached only through
//! `read_source`; in native tests and fuzzing it is a byte slice. Both sit
//! behind [`Source`], so every reader in the guest is tested natively against
//! the exact code that runs in wasm.

use crate::error::{corrupt, limit, Refusal, Result};
use std::io;

/// Read-only random access to the source bytes.
pub trait Source {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Copies up to `buf.len()` bytes at `offset`; returns how many (0 at end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize;

    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The refusal for a read that found the end of the file at `offset`.
    fn unexpected_end(&self, offset: u64) -> Refusal {
        corrupt(format!(
            "unexpected end of file at byte {offset} (file is {} bytes)",
            self.len()
        ))
    }

    /// Refuses the input as truncated unless `len` bytes at `offset` lie
    /// inside it: the refusal [`Source::read_exact_at`] would give reading
    /// them piece by piece.
    fn require(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(self.unexpected_end(offset.max(self.len()))),
        }
    }

    /// Fills `buf` from `offset` or refuses the input as truncated.
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> Result<()> {
        let eof = |offset: u64| self.unexpected_end(offset);
        while !buf.is_empty() {
            let n = self.read_at(offset, buf);
            // A source claiming more than it was asked for ends here too.
            match std::mem::take(&mut buf).get_mut(n..) {
                Some(rest) if n > 0 => {
                    offset = offset.checked_add(n as u64).ok_or_else(|| eof(offset))?;
                    buf = rest;
                }
                _ => return Err(eof(offset)),
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` into a new vector, checking the range
    /// against the source length first so a lying length never allocates.
    fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        offset
            .checked_add(len)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "a {len}-byte read at byte {offset} runs past the end of the file ({} bytes)",
                    self.len()
                ))
            })?;
        // On wasm32 a source can hold more bytes than memory can address.
        let n = usize::try_from(len).map_err(|_| {
            limit(format!(
                "a {len}-byte read at byte {offset} does not fit in the converter's memory"
            ))
        })?;
        let mut v = vec![0u8; n];
        self.read_exact_at(offset, &mut v)?;
        Ok(v)
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let Ok(start) = usize::try_from(offset) else {
            return 0;
        };
        let Some(rest) = self.get(start..) else {
            return 0;
        };
        let n = rest.len().min(buf.len());
        match (buf.get_mut(..n), rest.get(..n)) {
            (Some(to), Some(from)) => {
                to.copy_from_slice(from);
                n
            }
            _ => 0,
        }
    }
}

impl Source for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        self.as_slice().read_at(offset, buf)
    }
}

/// A byte slice as a sized [`Source`] (`[u8]` is unsized, so it cannot be
/// a `&dyn Source`) whose reads are clamped to the host's `MAX_IO_CHUNK`,
/// as the wasm glue's host reads are: native harnesses (fuzz targets, the
/// differential runner) see the guest read in the same pieces.
pub struct Chunked<'a>(pub &'a [u8]);

impl Source for Chunked<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let n = buf.len().min(decant_abi::MAX_IO_CHUNK as usize);
        buf.get_mut(..n)
            .map_or(0, |buf| self.0.read_at(offset, buf))
    }
}

/// `Read + Seek` over a [`Source`], for the `zip` crate.
pub struct Cursor<'a, S: Source + ?Sized> {
    src: &'a S,
    pos: u64,
}

impl<'a, S: Source + ?Sized> Cursor<'a, S> {
    pub fn new(src: &'a S) -> Self {
        Cursor { src, pos: 0 }
    }
}

impl<S: Source + ?Sized> io::Read for Cursor<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(self.pos, buf);
        self.pos = self.pos.saturating_add(n as u64);
        Ok(n)
    }
}

impl<S: Source + ?Sized> io::Seek for Cursor<'_, S> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let new = match pos {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.src.len().checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek out of range",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source as long as `u64::MAX` that fills every read with `n` bytes
    /// (`claim` may say more than the buffer holds, as a buggy host could).
    struct Endless {
        claim: Option<usize>,
    }

    impl Source for Endless {
        fn len(&self) -> u64 {
            u64::MAX
        }
        fn read_at(&self, _offset: u64, buf: &mut [u8]) -> usize {
            buf.fill(7);
            self.claim.unwrap_or(buf.len())
        }
    }

    #[test]
    fn read_exact_at_offset_overflow_is_refused() {
        // The first 4 bytes end at u64::MAX + 2: the offset must not wrap
        // (or trap) before the next read.
        let src = Endless { claim: Some(2) };
        let mut buf = [0u8; 4];
        let e = src.read_exact_at(u64::MAX - 1, &mut buf).unwrap_err();
        assert!(
            e.message
                .starts_with("unexpected end of file at byte 18446744073709551614"),
            "{}",
            e.message
        );
        let e = src.read_vec(u64::MAX - 1, 4).unwrap_err();
        assert!(
            e.message.contains("runs past the end of the file"),
            "{}",
            e.message
        );
    }

    #[test]
    fn source_claiming_more_than_asked_is_read_as_ending() {
        let src = Endless { claim: Some(100) };
        let mut buf = [0u8; 4];
        let e = src.read_exact_at(0, &mut buf).unwrap_err();
        assert!(
            e.message.starts_with("unexpected end of file at byte 0"),
            "{}",
            e.message
        );
        assert!(Endless { claim: None }.read_exact_at(0, &mut buf).is_ok());
    }

    #[test]
    fn slice_reads_past_the_end_return_nothing() {
        let bytes: &[u8] = b"abc";
        let mut buf = [0u8; 8];
        assert_eq!(bytes.read_at(u64::MAX, &mut buf), 0);
        assert_eq!(bytes.read_at(3, &mut buf), 0);
        assert_eq!(bytes.read_at(1, &mut buf), 2);
        assert_eq!(&buf[..2], b"bc");
        assert_eq!(Chunked(bytes).read_at(0, &mut buf), 3);
    }
}
