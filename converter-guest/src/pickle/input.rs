//! Buffered, bounds-checked reading of a pickle stream from a [`Source`].
//!
//! A pickle is read in place (a zip record, or the head of a legacy file), so
//! the reader keeps a window instead of loading the stream, and every length
//! is checked against the stream's end before anything is allocated.

use crate::error::{corrupt, Result};
use crate::source::Source;

const WINDOW: usize = 64 * 1024;

pub struct Input<'s> {
    src: &'s dyn Source,
    start: u64,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'s> Input<'s> {
    pub fn new(src: &'s dyn Source, start: u64, end: u64) -> Self {
        Input {
            src,
            start,
            end: end.min(src.len()),
            pos: start,
            buf: Vec::new(),
            buf_start: start,
        }
    }

    pub fn start(&self) -> u64 {
        self.start
    }
    pub fn end(&self) -> u64 {
        self.end
    }
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Moves to `pos`, kept within the stream. The VM never seeks; the
    /// audit's second reading of a stream does, to jump where CPython's
    /// file-object unpickler jumps (to the end of a frame).
    pub fn seek(&mut self, pos: u64) {
        self.pos = pos.min(self.end).max(self.start);
    }

    /// Bytes left before the end (none for a stream started past its end).
    fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.pos)
    }

    fn truncated(&self, n: u64) -> crate::error::Refusal {
        corrupt(format!(
            "pickle truncated: {n} bytes needed at byte {}, only {} left (end of file or record)",
            self.pos,
            self.remaining()
        ))
    }

    /// The `n` bytes at `pos`, if the window holds them.
    fn window(&self, n: usize) -> Option<&[u8]> {
        let off = usize::try_from(self.pos.checked_sub(self.buf_start)?).ok()?;
        self.buf.get(off..off.checked_add(n)?)
    }

    /// Makes `n` bytes at `pos` available in the window (n <= WINDOW).
    fn fill(&mut self, n: usize) -> Result<&[u8]> {
        if self.remaining() < n as u64 {
            return Err(self.truncated(n as u64));
        }
        if self.window(n).is_none() {
            let len = (self.remaining().min(WINDOW as u64) as usize).max(n);
            self.buf.resize(len, 0);
            self.buf_start = self.pos;
            let mut buf = std::mem::take(&mut self.buf);
            let r = self.src.read_exact_at(self.pos, &mut buf);
            self.buf = buf;
            r?;
        }
        // The window now starts at `pos` and holds at least `n` bytes.
        self.window(n).ok_or_else(|| self.truncated(n as u64))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b: Option<[u8; N]> = self.fill(N)?.try_into().ok();
        let b = b.ok_or_else(|| self.truncated(N as u64))?;
        // `fill` checked that N bytes remain.
        self.pos += N as u64;
        Ok(b)
    }

    pub fn u8(&mut self) -> Result<u8> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn u64_be(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// `n` bytes, after checking that the stream has them.
    pub fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if self.remaining() < n {
            return Err(self.truncated(n));
        }
        // `n as usize` would wrap a length over 4 GiB on wasm32 to a small
        // one; such a length goes to `read_vec`, which refuses it there.
        let v = match usize::try_from(n) {
            Ok(small) if small <= WINDOW => self.fill(small)?.to_vec(),
            _ => self.src.read_vec(self.pos, n)?,
        };
        // At most `remaining()`, checked above.
        self.pos += n;
        Ok(v)
    }

    /// A `\n`-terminated line, without the `\n`.
    pub fn line(&mut self, max: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            if out.len() as u64 > max {
                return Err(corrupt(format!("text argument longer than {max} bytes")));
            }
            let c = self
                .u8()
                .map_err(|_| corrupt("text argument runs to the end of the stream"))?;
            if c == b'\n' {
                return Ok(out);
            }
            out.push(c);
        }
    }
}
