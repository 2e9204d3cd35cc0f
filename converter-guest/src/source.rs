//! Random access to the source checkpoint.
//!
//! In the sandbox the source lives on the host and is reached only through
//! `read_source`; in native tests and fuzzing it is a byte slice. Both sit
//! behind [`Source`], so every reader in the guest is tested natively against
//! the exact code that runs in wasm.

use crate::error::{corrupt, Result};
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

    /// Fills `buf` from `offset` or refuses the input as truncated.
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(offset, buf);
            if n == 0 {
                return Err(corrupt(format!(
                    "unexpected end of file at byte {offset} (file is {} bytes)",
                    self.len()
                )));
            }
            offset += n as u64;
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` into a new vector, checking the range
    /// against the source length first so a lying length never allocates.
    fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "a {len}-byte read at byte {offset} runs past the end of the file ({} bytes)",
                    self.len()
                ))
            })?;
        let mut v = vec![0u8; (end - offset) as usize];
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
        buf[..n].copy_from_slice(&rest[..n]);
        n
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
        self.0.read_at(offset, &mut buf[..n])
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
        self.pos += n as u64;
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
