//! The safetensors writer: the header exactly as the `safetensors` crate
//! (0.8.0) serialises it, then every tensor's bytes, streamed from the source
//! and made contiguous on the way.
//!
//! The crate writes `__metadata__` first (its keys in `HashMap` order; decant
//! sorts them, so the header is deterministic), then tensors by descending
//! dtype and ascending name, each as `{"dtype","shape","data_offsets"}`, and
//! pads the header with spaces to a multiple of 8 bytes.

use crate::error::{corrupt, Result};
use crate::source::Source;
use crate::torch::plan::{Entry, Plan};
use crate::torch::{zip, Parsed};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Where output bytes go.
pub trait Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Non-contiguous views of storages up to this size are gathered in memory.
const GATHER_IN_MEMORY: u64 = 64 << 20;
const CHUNK: usize = 1 << 20;

#[derive(Serialize)]
struct Info<'a> {
    dtype: &'a str,
    shape: &'a [u64],
    data_offsets: (u64, u64),
}

struct Header<'a> {
    metadata: &'a BTreeMap<String, String>,
    tensors: Vec<(&'a str, Info<'a>)>,
}

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.tensors.len() + 1))?;
        map.serialize_entry("__metadata__", self.metadata)?;
        for (name, info) in &self.tensors {
            map.serialize_entry(name, info)?;
        }
        map.end()
    }
}

/// The complete header block: 8-byte length, JSON, space padding.
pub fn header(plan: &Plan) -> Vec<u8> {
    let mut metadata = plan.aliases.clone();
    metadata.insert("format".into(), "pt".into());
    let mut offset = 0u64;
    let tensors = plan
        .tensors
        .iter()
        .map(|e| {
            let n = e.tensor.numel() * e.tensor.dtype.size();
            let info = Info {
                dtype: e.tensor.dtype.safetensors_name(),
                shape: &e.tensor.shape,
                data_offsets: (offset, offset + n),
            };
            offset += n;
            (e.name.as_str(), info)
        })
        .collect();
    let mut json = serde_json::to_vec(&Header {
        metadata: &metadata,
        tensors,
    })
    .expect("serialising strings and integers cannot fail");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out
}

/// Writes the whole file; returns its length. Verifies the CRC of every zip
/// record, streamed or not, before returning.
pub fn write(src: &dyn Source, parsed: &Parsed, plan: &Plan, sink: &mut dyn Sink) -> Result<u64> {
    let head = header(plan);
    sink.write(&head)?;
    let mut total = head.len() as u64;
    let mut w = Writer {
        src,
        parsed,
        verified: HashSet::new(),
        buf: Vec::with_capacity(CHUNK),
        sink,
    };
    for e in &plan.tensors {
        total += w.tensor(e)?;
    }
    w.flush()?;
    for (i, d) in parsed.data.iter().enumerate() {
        if let Some(crc) = d.crc32 {
            if !w.verified.contains(&i) {
                let decl = &parsed.machine.storages.decls[i];
                zip::check_record_crc(
                    src,
                    &format!("data/{}", decl.key),
                    d.offset,
                    decl.nbytes,
                    crc,
                )?;
            }
        }
    }
    for (name, offset, size, crc) in &parsed.other_records {
        zip::check_record_crc(src, name, *offset, *size, *crc)?;
    }
    Ok(total)
}

struct Writer<'a> {
    src: &'a dyn Source,
    parsed: &'a Parsed,
    /// Storages whose CRC has been checked.
    verified: HashSet<usize>,
    buf: Vec<u8>,
    sink: &'a mut dyn Sink,
}

impl Writer<'_> {
    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        if self.buf.len() + bytes.len() > CHUNK {
            self.flush()?;
        }
        if bytes.len() >= CHUNK {
            return self.sink.write(bytes);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.sink.write(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn swap(&self, bytes: &mut [u8], itemsize: usize) {
        if self.parsed.big_endian && itemsize > 1 {
            for el in bytes.chunks_exact_mut(itemsize) {
                el.reverse();
            }
        }
    }

    /// Writes one tensor's bytes, contiguous and little-endian; returns the
    /// byte count.
    fn tensor(&mut self, e: &Entry) -> Result<u64> {
        let t = &e.tensor;
        let itemsize = t.dtype.size();
        let len = t.numel() * itemsize;
        if len == 0 {
            return Ok(0);
        }
        let decl_index = t.storage.decl;
        let decl_nbytes = self.parsed.machine.storages.decls[decl_index].nbytes;
        let record = self.parsed.data[decl_index].offset;
        let base = record + t.storage.byte_offset;
        if t.is_contiguous() {
            let start = base + t.offset * itemsize;
            // A tensor covering its whole record verifies the CRC on the way.
            let whole = start == record && len == decl_nbytes;
            let mut hasher = crc32fast::Hasher::new();
            let mut chunk = vec![0u8; CHUNK.min(len as usize)];
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(chunk.len() as u64) as usize;
                self.src.read_exact_at(start + done, &mut chunk[..n])?;
                if whole {
                    hasher.update(&chunk[..n]);
                }
                self.swap(&mut chunk[..n], itemsize as usize);
                self.emit(&chunk[..n])?;
                done += n as u64;
            }
            if whole {
                self.check_crc(decl_index, hasher.finalize())?;
            }
            return Ok(len);
        }
        self.gather(t, base, decl_index)?;
        Ok(len)
    }

    fn check_crc(&mut self, decl: usize, actual: u32) -> Result<()> {
        if let Some(expected) = self.parsed.data[decl].crc32 {
            if actual != expected {
                return Err(corrupt(format!(
                    "CRC-32 mismatch in record data/{}: stored {expected:08x}, computed {actual:08x}",
                    self.parsed.machine.storages.decls[decl].key
                )));
            }
            self.verified.insert(decl);
        }
        Ok(())
    }

    /// Materialises a strided view: copies runs of the innermost contiguous
    /// dimensions in row-major order.
    fn gather(&mut self, t: &crate::pickle::TensorDesc, base: u64, decl: usize) -> Result<()> {
        let itemsize = t.dtype.size();
        // Trailing dimensions that are contiguous form one run.
        let mut run_elems = 1u64;
        let mut outer = t.shape.len();
        while outer > 0 {
            let d = outer - 1;
            if t.shape[d] != 1 && t.stride[d] != run_elems {
                break;
            }
            run_elems *= t.shape[d];
            outer -= 1;
        }
        let run_bytes = (run_elems * itemsize) as usize;
        let record = self.parsed.data[decl].offset;
        let decl_nbytes = self.parsed.machine.storages.decls[decl].nbytes;
        // Small storages are read once (and CRC-checked); large ones are read
        // run by run through a window.
        let whole: Option<Vec<u8>> = if decl_nbytes <= GATHER_IN_MEMORY {
            let bytes = self.src.read_vec(record, decl_nbytes)?;
            self.check_crc(decl, crc32fast::hash(&bytes))?;
            Some(bytes)
        } else {
            None
        };
        let mut window = Window::default();
        let mut idx = vec![0u64; outer];
        let mut run = vec![0u8; run_bytes];
        loop {
            let mut elem = t.offset;
            for d in 0..outer {
                elem += idx[d] * t.stride[d];
            }
            let at = base + elem * itemsize;
            match &whole {
                Some(bytes) => {
                    let o = (at - record) as usize;
                    run.copy_from_slice(&bytes[o..o + run_bytes]);
                }
                None => window.read(self.src, at, &mut run)?,
            }
            self.swap(&mut run, itemsize as usize);
            self.emit(&run)?;
            // Advance the odometer over the outer dimensions.
            let mut d = outer;
            loop {
                if d == 0 {
                    return Ok(());
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
}

/// A read cache for gathering from storages too large to load.
#[derive(Default)]
struct Window {
    start: u64,
    bytes: Vec<u8>,
}

impl Window {
    fn read(&mut self, src: &dyn Source, at: u64, out: &mut [u8]) -> Result<()> {
        let end = at + out.len() as u64;
        if at < self.start || end > self.start + self.bytes.len() as u64 {
            if out.len() >= CHUNK {
                return src.read_exact_at(at, out);
            }
            let len = (CHUNK as u64)
                .min(src.len().saturating_sub(at))
                .max(out.len() as u64);
            self.bytes = src.read_vec(at, len)?;
            self.start = at;
        }
        let o = (at - self.start) as usize;
        out.copy_from_slice(&self.bytes[o..o + out.len()]);
        Ok(())
    }
}
