//! The guest side of the `decant` ABI (see the `decant-abi` crate): imports,
//! exports, and the only `unsafe` in the guest.

use crate::error::Result;
use crate::safetensors::Sink;
use crate::source::Source;
use decant_abi::{status, Outcome, MAX_IO_CHUNK};

#[link(wasm_import_module = "decant")]
extern "C" {
    fn source_len() -> i64;
    fn read_source(offset: i64, ptr: *mut u8, len: i32) -> i32;
    fn write_output(ptr: *const u8, len: i32) -> i32;
    fn copy_source(offset: i64, len: i32, crc: i32) -> i32;
    fn finish(ptr: *const u8, len: i32) -> i32;
}

struct HostSource {
    len: u64,
}

impl Source for HostSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        if offset >= self.len || buf.is_empty() {
            return 0;
        }
        // `offset < len`, which came from an i64.
        let Ok(offset) = i64::try_from(offset) else {
            return 0;
        };
        let n = buf.len().min(MAX_IO_CHUNK as usize);
        // SAFETY: `buf` is a live, writable slice of at least `n` bytes; the
        // host writes at most `n` bytes into it and returns how many.
        let got = unsafe { read_source(offset, buf.as_mut_ptr(), n as i32) };
        got.clamp(0, n as i32) as usize
    }
}

struct HostSink;

impl Sink for HostSink {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(MAX_IO_CHUNK as usize) {
            // SAFETY: `chunk` is a live slice; the host only reads it. On any
            // failure (e.g. the output limit) the host traps instead of
            // returning.
            unsafe { write_output(chunk.as_ptr(), chunk.len() as i32) };
        }
        Ok(())
    }

    fn copy_source(&mut self, src: &dyn Source, offset: u64, len: u64, crc: u32) -> Result<u32> {
        // The range lies inside the source (the caller checked), whose length
        // came from an i64, so every offset below fits one.
        src.require(offset, len)?;
        let mut crc = crc;
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(u64::from(MAX_IO_CHUNK));
            let at = i64::try_from(offset + done).map_err(|_| src.unexpected_end(offset))?;
            // SAFETY: a host call on plain integers; no guest memory is
            // involved. A range outside the source traps instead of
            // returning.
            let after = unsafe { copy_source(at, n as i32, crc as i32) };
            crc = after as u32;
            done += n;
        }
        Ok(crc)
    }
}

fn host_source() -> HostSource {
    // SAFETY: a host call with no arguments.
    let len = unsafe { source_len() };
    HostSource {
        len: u64::try_from(len).unwrap_or(0),
    }
}

fn report(outcome: &Outcome) -> i32 {
    // The outcome is strings, integers and string-keyed maps, which
    // serde_json writes into a Vec without fail. Were that ever wrong (or
    // the JSON past what an i32 can say), no `finish` is sent and the host
    // reports that the guest returned without reporting: an internal error,
    // as a trap here would be.
    if let Ok(json) = serde_json::to_vec(outcome) {
        if let Ok(len) = i32::try_from(json.len()) {
            // SAFETY: `json` is a live slice of `len` bytes the host only
            // reads.
            unsafe { finish(json.as_ptr(), len) };
        }
    }
    match outcome {
        Outcome::Done(_) => status::OK,
        Outcome::Refused(_) => status::REFUSED,
    }
}

#[no_mangle]
pub extern "C" fn convert() -> i32 {
    let src = host_source();
    report(&crate::convert(&src, &mut HostSink))
}

#[no_mangle]
pub extern "C" fn inspect() -> i32 {
    let src = host_source();
    report(&crate::inspect(&src))
}

/// `decant audit`: one file's [`decant_abi::FileScan`], whatever the file
/// holds, so always [`status::OK`].
#[no_mangle]
pub extern "C" fn audit() -> i32 {
    let src = host_source();
    let scan = crate::audit(&src);
    // As in `report`: strings, integers and booleans serialise without
    // fail, and `scan` keeps the JSON under the host's MAX_OUTCOME_BYTES.
    // Were either ever wrong, no `finish` is sent and the host reports the
    // guest returned without reporting.
    if let Ok(json) = serde_json::to_vec(&scan) {
        if let Ok(len) = i32::try_from(json.len()) {
            // SAFETY: `json` is a live slice of `len` bytes the host only
            // reads.
            unsafe { finish(json.as_ptr(), len) };
        }
    }
    status::OK
}
