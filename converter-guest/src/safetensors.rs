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

const CHUNK: usize = 1 << 20;

/// Memory/IO trade-offs of the writer. Tests shrink them to drive every
/// path with small fixtures.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Non-contiguous views of storages up to this size are gathered in
    /// memory; larger ones are scattered.
    pub gather_in_memory: u64,
    /// Output bytes built per pass when scattering.
    pub scatter_block: usize,
    /// Source bytes read per window when scattering.
    pub scatter_window: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            gather_in_memory: 64 << 20,
            scatter_block: 16 << 20,
            scatter_window: 16 << 20,
        }
    }
}

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
    write_tuned(src, parsed, plan, sink, Tuning::default())
}

/// [`write`] with explicit [`Tuning`].
pub fn write_tuned(
    src: &dyn Source,
    parsed: &Parsed,
    plan: &Plan,
    sink: &mut dyn Sink,
    tuning: Tuning,
) -> Result<u64> {
    let head = header(plan);
    sink.write(&head)?;
    let mut total = head.len() as u64;
    let mut w = Writer {
        src,
        parsed,
        verified: HashSet::new(),
        buf: Vec::with_capacity(CHUNK),
        sink,
        tuning,
    };
    for e in &plan.tensors {
        total += w.tensor(e)?;
    }
    w.flush()?;
    verify_records(src, parsed, &w.verified)?;
    Ok(total)
}

/// Checks the CRC-32 of every storage record not in `verified` (those
/// already checked while streaming).
pub fn verify_records(src: &dyn Source, parsed: &Parsed, verified: &HashSet<usize>) -> Result<()> {
    for (i, d) in parsed.data.iter().enumerate() {
        if let Some(crc) = d.crc32 {
            if !verified.contains(&i) {
                let decl = &parsed.machine.storages.decls[i];
                let name = format!("data/{}", decl.key);
                zip::check_record_crc(src, &name, d.offset, decl.nbytes, crc)?;
            }
        }
    }
    Ok(())
}

struct Writer<'a> {
    src: &'a dyn Source,
    parsed: &'a Parsed,
    /// Storages whose CRC has been checked.
    verified: HashSet<usize>,
    buf: Vec<u8>,
    sink: &'a mut dyn Sink,
    tuning: Tuning,
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
            let mut hasher = whole.then(crc32fast::Hasher::new);
            self.stream(start, len, itemsize, hasher.as_mut())?;
            if let Some(h) = hasher {
                self.check_crc(decl_index, h.finalize())?;
            }
            return Ok(len);
        }
        self.gather(t, base, decl_index)?;
        Ok(len)
    }

    /// Copies `len` contiguous source bytes at `start` to the output through
    /// a bounded buffer, byteswapping if needed and feeding `crc` the raw
    /// bytes.
    fn stream(
        &mut self,
        start: u64,
        len: u64,
        itemsize: u64,
        mut crc: Option<&mut crc32fast::Hasher>,
    ) -> Result<()> {
        let mut chunk = vec![0u8; CHUNK.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(chunk.len() as u64) as usize;
            self.src.read_exact_at(start + done, &mut chunk[..n])?;
            if let Some(h) = crc.as_mut() {
                h.update(&chunk[..n]);
            }
            self.swap(&mut chunk[..n], itemsize as usize);
            self.emit(&chunk[..n])?;
            done += n as u64;
        }
        Ok(())
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
        if decl_nbytes > self.tuning.gather_in_memory {
            return self.scatter(t, base, outer, run_bytes);
        }
        // Small storages are read once (and CRC-checked) and gathered from
        // memory.
        let bytes = self.src.read_vec(record, decl_nbytes)?;
        self.check_crc(decl, crc32fast::hash(&bytes))?;
        let mut odo = Odometer::new(t, outer);
        let mut run = vec![0u8; run_bytes];
        loop {
            let o = (base + odo.elem * itemsize - record) as usize;
            run.copy_from_slice(&bytes[o..o + run_bytes]);
            self.swap(&mut run, itemsize as usize);
            self.emit(&run)?;
            if !odo.advance() {
                return Ok(());
            }
        }
    }

    /// Gathers a strided view of a storage too large to hold: the output is
    /// built in blocks, each filled by one sequential pass of windows over
    /// the source span the view touches. Memory stays bounded and reads are
    /// sequential whatever the strides (a transpose reads its storage once
    /// per output block instead of once per element).
    fn scatter(
        &mut self,
        t: &crate::pickle::TensorDesc,
        base: u64,
        outer: usize,
        run_bytes: usize,
    ) -> Result<()> {
        let itemsize = t.dtype.size();
        let last: u64 = t
            .shape
            .iter()
            .zip(&t.stride)
            .map(|(&size, &stride)| (size - 1) * stride)
            .sum();
        let lo = base + t.offset * itemsize;
        let hi = base + (t.offset + last + 1) * itemsize;
        if run_bytes >= self.tuning.scatter_block {
            // Long contiguous runs: stream each one.
            let mut odo = Odometer::new(t, outer);
            loop {
                self.stream(base + odo.elem * itemsize, run_bytes as u64, itemsize, None)?;
                if !odo.advance() {
                    return Ok(());
                }
            }
        }
        let total_runs: u64 = t.shape[..outer].iter().product();
        let runs_per_block = (self.tuning.scatter_block / run_bytes).max(1) as u64;
        let mut block_start = Odometer::new(t, outer);
        let mut done = 0u64;
        while done < total_runs {
            let n = runs_per_block.min(total_runs - done);
            let mut out = vec![0u8; n as usize * run_bytes];
            let mut wstart = lo;
            while wstart < hi {
                let wlen = self.tuning.scatter_window.min(hi - wstart);
                let window = self.src.read_vec(wstart, wlen)?;
                let wend = wstart + wlen;
                let mut odo = block_start.clone();
                for r in 0..n as usize {
                    let src = base + odo.elem * itemsize;
                    let (a, b) = (src.max(wstart), (src + run_bytes as u64).min(wend));
                    if a < b {
                        let dst = r * run_bytes + (a - src) as usize;
                        out[dst..dst + (b - a) as usize]
                            .copy_from_slice(&window[(a - wstart) as usize..(b - wstart) as usize]);
                    }
                    odo.advance();
                }
                wstart = wend;
            }
            self.swap(&mut out, itemsize as usize);
            self.emit(&out)?;
            for _ in 0..n {
                block_start.advance();
            }
            done += n;
        }
        Ok(())
    }
}

/// Walks the outer (non-contiguous) dimensions of a view in row-major order,
/// tracking the element offset of each contiguous run.
#[derive(Clone)]
struct Odometer<'a> {
    shape: &'a [u64],
    stride: &'a [u64],
    idx: Vec<u64>,
    /// Element offset (from the storage start) of the current run.
    elem: u64,
}

impl<'a> Odometer<'a> {
    fn new(t: &'a crate::pickle::TensorDesc, outer: usize) -> Self {
        Odometer {
            shape: &t.shape[..outer],
            stride: &t.stride[..outer],
            idx: vec![0; outer],
            elem: t.offset,
        }
    }

    /// Moves to the next run; false after the last one.
    fn advance(&mut self) -> bool {
        let mut d = self.idx.len();
        loop {
            if d == 0 {
                return false;
            }
            d -= 1;
            self.idx[d] += 1;
            self.elem += self.stride[d];
            if self.idx[d] < self.shape[d] {
                return true;
            }
            self.elem -= self.shape[d] * self.stride[d];
            self.idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The scatter path (storages too large to gather in memory) must give
    /// the same bytes as torch for every kind of view; tiny blocks and
    /// windows force runs to straddle windows and blocks.
    #[test]
    fn scatter_path_matches_references_for_every_view() {
        for name in [
            "views",
            "views_legacy",
            "tied",
            "big_endian",
            "scalars_empty",
            "dtypes",
        ] {
            let src = fixture(&format!("convert/{name}.pt"));
            let expected = fixture(&format!("convert/{name}.safetensors"));
            for (block, window) in [(1, 1), (7, 5), (64, 48), (4096, 4096)] {
                let parsed = crate::torch::parse(&src).unwrap();
                let plan = crate::torch::plan::plan(&parsed).unwrap();
                let mut out = Vec::new();
                let tuning = Tuning {
                    gather_in_memory: 0,
                    scatter_block: block,
                    scatter_window: window,
                };
                write_tuned(&src, &parsed, &plan, &mut out, tuning).unwrap();
                assert!(
                    out == expected,
                    "{name} with block {block}, window {window}"
                );
            }
        }
    }
}
