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

    fn truncated(&self, n: u64) -> crate::error::Refusal {
        corrupt(format!(
            "pickle truncated: {n} bytes needed at byte {}, only {} left (end of file or record)",
            self.pos,
            self.end - self.pos
        ))
    }

    /// Makes `n` bytes at `pos` available in the window (n <= WINDOW).
    fn fill(&mut self, n: usize) -> Result<&[u8]> {
        if (self.end - self.pos) < n as u64 {
            return Err(self.truncated(n as u64));
        }
        let in_window = self.pos >= self.buf_start
            && self.pos + n as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_window {
            let len = WINDOW.min((self.end - self.pos) as usize).max(n);
            self.buf.resize(len, 0);
            self.buf_start = self.pos;
            let mut buf = std::mem::take(&mut self.buf);
            let r = self.src.read_exact_at(self.pos, &mut buf);
            self.buf = buf;
            r?;
        }
        let off = (self.pos - self.buf_start) as usize;
        Ok(&self.buf[off..off + n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b: [u8; N] = self.fill(N)?.try_into().expect("fill returns N bytes");
        self.pos += N as u64;
        Ok(b)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
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
        if self.end - self.pos < n {
            return Err(self.truncated(n));
        }
        let v = if n as usize <= WINDOW {
            self.fill(n as usize)?.to_vec()
        } else {
            self.src.read_vec(self.pos, n)?
        };
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
