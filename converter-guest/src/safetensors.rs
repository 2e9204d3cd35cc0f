//! The safetensors writer: the header exactly as the `safetensors` crate
//! (0.8.0) serialises it, then every tensor's bytes, streamed from the source
//! and made contiguous on the way.
//!
//! The crate writes `__metadata__` first (its keys in `HashMap` order; decant
//! sorts them, so the header is deterministic), then tensors by descending
//! dtype and ascending name, each as `{"dtype","shape","data_offsets"}`, and
//! pads the header with spaces to a multiple of 8 bytes.

use crate::error::{corrupt, limit, Result};
use crate::source::Source;
use crate::torch::plan::{self, Entry, Plan};
use crate::torch::{zip, Parsed};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Where output bytes go.
pub trait Sink {
    /// Appends `bytes`.
    fn write(&mut self, bytes: &[u8]) -> Result<()>;

    /// Appends the `len` source bytes at `offset` unchanged, which the
    /// caller has checked lie inside the source ([`Source::require`]), and
    /// returns the CRC-32 `crc` continued over them (`crc` as
    /// `crc32fast::Hasher::finalize` gives it). In the sandbox the host
    /// moves them (`copy_source`), so they never pass through guest memory;
    /// this default, for native harnesses, reads them through `src`.
    fn copy_source(&mut self, src: &dyn Source, offset: u64, len: u64, crc: u32) -> Result<u32> {
        let mut hasher = crc32fast::Hasher::new_with_initial(crc);
        let mut chunk = vec![0u8; len.min(CHUNK as u64) as usize];
        let mut done = 0u64;
        while done < len {
            chunk.truncate((len - done).min(chunk.len() as u64) as usize);
            let at = offset
                .checked_add(done)
                .ok_or_else(|| src.unexpected_end(offset))?;
            src.read_exact_at(at, &mut chunk)?;
            hasher.update(&chunk);
            self.write(&chunk)?;
            done += chunk.len() as u64;
        }
        Ok(hasher.finalize())
    }
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
    let tensors = plan
        .tensors
        .iter()
        .map(|e| {
            let info = Info {
                dtype: e.tensor.dtype.safetensors_name(),
                shape: &e.tensor.shape,
                data_offsets: e.data_offsets,
            };
            (e.name.as_str(), info)
        })
        .collect();
    // serde_json fails only on a writer's I/O error, a map key that is not
    // a string or a Serialize impl that fails; a Vec, string keys, strings
    // and integers have none of these. A Result here would only move the
    // impossible case to every caller (the fuzz harness calls this too).
    #[allow(clippy::expect_used)]
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
        let n = w.tensor(e)?;
        total = total
            .checked_add(n)
            .ok_or_else(|| limit("the tensors add up to more than 2^64 bytes of output"))?;
    }
    w.flush()?;
    verify_records(src, parsed, &w.verified)?;
    Ok(total)
}

/// Checks the CRC-32 of every storage record not in `verified` (those
/// already checked while streaming).
pub fn verify_records(src: &dyn Source, parsed: &Parsed, verified: &HashSet<usize>) -> Result<()> {
    // `data` is indexed like the declarations.
    let records = parsed.data.iter().zip(&parsed.machine.storages.decls);
    for (i, (d, decl)) in records.enumerate() {
        if let Some(crc) = d.crc32 {
            if !verified.contains(&i) {
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

    /// Whether elements of `itemsize` bytes must be byteswapped on the way
    /// out (safetensors is little-endian).
    fn needs_swap(&self, itemsize: usize) -> bool {
        self.parsed.big_endian && itemsize > 1
    }

    fn swap(&self, bytes: &mut [u8], itemsize: usize) {
        if self.needs_swap(itemsize) {
            for el in bytes.chunks_exact_mut(itemsize) {
                el.reverse();
            }
        }
    }

    /// Writes one tensor's bytes, contiguous and little-endian; returns the
    /// byte count.
    ///
    /// Offsets here cannot overflow for a tensor the VM built (its view was
    /// checked against its storage, and the storage against the file); they
    /// are computed with checked arithmetic all the same, so a plan built
    /// some other way is refused instead of trapping.
    fn tensor(&mut self, e: &Entry) -> Result<u64> {
        let t = &e.tensor;
        let itemsize = t.dtype.size();
        let len = t.nbytes().ok_or_else(|| plan::overflows(&e.name))?;
        if len == 0 {
            return Ok(0);
        }
        let index = t.storage.decl;
        let parsed = self.parsed;
        let (Some(decl), Some(data)) = (
            parsed.machine.storages.decls.get(index),
            parsed.data.get(index),
        ) else {
            return Err(plan::undeclared(&e.name));
        };
        let record = data.offset;
        let base = record
            .checked_add(t.storage.byte_offset)
            .ok_or_else(|| plan::overflows(&e.name))?;
        if t.is_contiguous() {
            let start =
                element_at(base, t.offset, itemsize).ok_or_else(|| plan::overflows(&e.name))?;
            // A tensor covering its whole record verifies the CRC on the way.
            let whole = start == record && len == decl.nbytes;
            let crc = self.stream(start, len, itemsize, whole.then_some(0))?;
            if let Some(crc) = crc {
                self.check_crc(index, crc)?;
            }
            return Ok(len);
        }
        self.gather(e, base, index)?;
        Ok(len)
    }

    /// Copies `len` contiguous source bytes at `start` to the output; with
    /// `crc` (a running CRC-32, 0 to start) continues it over the raw bytes
    /// and returns it.
    ///
    /// Bytes that go out as they are (little-endian, or one-byte elements)
    /// are handed to [`Sink::copy_source`], which in the sandbox moves them
    /// host-side; bytes to byteswap pass through a bounded buffer here.
    fn stream(
        &mut self,
        start: u64,
        len: u64,
        itemsize: u64,
        crc: Option<u32>,
    ) -> Result<Option<u32>> {
        self.src.require(start, len)?;
        if !self.needs_swap(itemsize as usize) {
            // Bytes emitted before these must reach the output first.
            self.flush()?;
            let after = self
                .sink
                .copy_source(self.src, start, len, crc.unwrap_or(0))?;
            return Ok(crc.map(|_| after));
        }
        let mut hasher = crc.map(crc32fast::Hasher::new_with_initial);
        // `min` before the cast: a length of 4 GiB would be 0 as a wasm32
        // usize, and the loop would never advance.
        let mut chunk = vec![0u8; len.min(CHUNK as u64) as usize];
        let mut done = 0u64;
        while done < len {
            // Only the last piece is shorter than the buffer.
            chunk.truncate((len - done).min(chunk.len() as u64) as usize);
            let at = start.checked_add(done).ok_or_else(|| {
                corrupt(format!(
                    "a {len}-byte read at byte {start} runs past the end of any file"
                ))
            })?;
            self.src.read_exact_at(at, &mut chunk)?;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            self.swap(&mut chunk, itemsize as usize);
            self.emit(&chunk)?;
            done += chunk.len() as u64;
        }
        Ok(hasher.map(crc32fast::Hasher::finalize))
    }

    /// Records that storage `decl`'s record has the CRC `actual`, refusing
    /// the file if the record says otherwise.
    fn check_crc(&mut self, decl: usize, actual: u32) -> Result<()> {
        let parsed = self.parsed;
        let Some(expected) = parsed.data.get(decl).and_then(|d| d.crc32) else {
            return Ok(());
        };
        if actual != expected {
            let key = parsed
                .machine
                .storages
                .decls
                .get(decl)
                .map_or("", |d| d.key.as_str());
            return Err(corrupt(format!(
                "CRC-32 mismatch in record data/{key}: stored {expected:08x}, computed {actual:08x}"
            )));
        }
        self.verified.insert(decl);
        Ok(())
    }

    /// Materialises a strided view: copies runs of the innermost contiguous
    /// dimensions in row-major order.
    ///
    /// Every offset is checked once, for the view's last element; the
    /// offsets of the runs in between are below it, so the per-run
    /// arithmetic cannot overflow.
    fn gather(&mut self, e: &Entry, base: u64, decl: usize) -> Result<()> {
        let t = &e.tensor;
        let overflow = || plan::overflows(&e.name);
        let outside = || plan::outside_storage(&e.name);
        let itemsize = t.dtype.size();
        if t.shape.len() != t.stride.len() {
            return Err(overflow());
        }
        // Trailing dimensions that are contiguous form one run.
        let mut run_elems = 1u64;
        let mut outer = t.shape.len();
        for (&size, &stride) in t.shape.iter().zip(&t.stride).rev() {
            if size != 1 && stride != run_elems {
                break;
            }
            run_elems = run_elems.checked_mul(size).ok_or_else(overflow)?;
            outer -= 1;
        }
        let run_bytes = run_elems.checked_mul(itemsize).ok_or_else(overflow)?;
        // Bytes from the storage's start to past the view's last element
        // (the view has elements: every size is at least 1).
        let span = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |last, (&size, &stride)| {
                size.checked_sub(1)?.checked_mul(stride)?.checked_add(last)
            })
            .and_then(|last| last.checked_add(1)?.checked_mul(itemsize))
            .ok_or_else(overflow)?;
        let runs = t
            .shape
            .get(..outer)
            .zip(t.stride.get(..outer))
            .and_then(|(shape, stride)| Odometer::new(shape, stride, t.offset))
            .ok_or_else(overflow)?;
        let parsed = self.parsed;
        let (Some(d), Some(data)) = (
            parsed.machine.storages.decls.get(decl),
            parsed.data.get(decl),
        ) else {
            return Err(plan::undeclared(&e.name));
        };
        if d.nbytes > self.tuning.gather_in_memory {
            let end = base.checked_add(span).ok_or_else(overflow)?;
            return self.scatter(e, base, end, runs, run_bytes);
        }
        // Small storages are read once (and CRC-checked) and gathered from
        // memory.
        let bytes = self.src.read_vec(data.offset, d.nbytes)?;
        self.check_crc(decl, crc32fast::hash(&bytes))?;
        // The view lies inside `bytes`, so every offset below fits in a
        // usize too.
        let start = t.storage.byte_offset;
        start
            .checked_add(span)
            .filter(|&end| end <= bytes.len() as u64)
            .ok_or_else(outside)?;
        let run_len = run_bytes as usize;
        let mut run = vec![0u8; run_len];
        let mut odo = runs;
        loop {
            let o = (start + odo.elem * itemsize) as usize;
            let from = bytes.get(o..o + run_len).ok_or_else(outside)?;
            run.copy_from_slice(from);
            self.swap(&mut run, itemsize as usize);
            self.emit(&run)?;
            if !odo.advance() {
                return Ok(());
            }
        }
    }

    /// Gathers a strided view of a storage too large to hold: the output is
    /// built in blocks, each filled by one sequential pass of windows over
    /// the source span the view touches (`base` + its first element to
    /// `end`). Memory stays bounded and reads are sequential whatever the
    /// strides (a transpose reads its storage once per output block instead
    /// of once per element). `runs` walks the view's contiguous runs of
    /// `run_bytes` each; each lies below `end`, which fits in a u64.
    fn scatter(
        &mut self,
        e: &Entry,
        base: u64,
        end: u64,
        runs: Odometer,
        run_bytes: u64,
    ) -> Result<()> {
        let t = &e.tensor;
        let overflow = || plan::overflows(&e.name);
        let outside = || plan::outside_storage(&e.name);
        let itemsize = t.dtype.size();
        let (lo, hi) = (base + runs.elem * itemsize, end);
        if run_bytes >= self.tuning.scatter_block as u64 {
            // Long contiguous runs: stream each one.
            let mut odo = runs;
            loop {
                self.stream(base + odo.elem * itemsize, run_bytes, itemsize, None)?;
                if !odo.advance() {
                    return Ok(());
                }
            }
        }
        // Shorter than a block, so they fit in memory (and are not empty:
        // the view has elements).
        let run_len = usize::try_from(run_bytes)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(overflow)?;
        let total_runs = runs.count().ok_or_else(overflow)?;
        let runs_per_block = (self.tuning.scatter_block / run_len).max(1) as u64;
        let mut block_start = runs;
        let mut done = 0u64;
        while done < total_runs {
            let n = runs_per_block.min(total_runs - done);
            let out_len = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(run_len))
                .ok_or_else(overflow)?;
            let mut out = vec![0u8; out_len];
            let mut wstart = lo;
            while wstart < hi {
                let wlen = self.tuning.scatter_window.min(hi - wstart);
                let window = self.src.read_vec(wstart, wlen)?;
                let wend = wstart + wlen;
                let mut odo = block_start.clone();
                for run in out.chunks_exact_mut(run_len) {
                    let src = base + odo.elem * itemsize;
                    let (a, b) = (src.max(wstart), (src + run_bytes).min(wend));
                    if a < b {
                        // The part of this run inside the window (both are
                        // in memory, so their offsets fit in a usize).
                        let to = run.get_mut((a - src) as usize..(b - src) as usize);
                        let from = window.get((a - wstart) as usize..(b - wstart) as usize);
                        let (Some(to), Some(from)) = (to, from) else {
                            return Err(outside());
                        };
                        to.copy_from_slice(from);
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

/// The byte offset of element `index` of `itemsize` bytes from `base`, if
/// it fits in a u64.
fn element_at(base: u64, index: u64, itemsize: u64) -> Option<u64> {
    index.checked_mul(itemsize)?.checked_add(base)
}

/// Walks the outer (non-contiguous) dimensions of a view in row-major order,
/// tracking the element offset of each contiguous run.
#[derive(Clone)]
struct Odometer {
    /// Outermost first.
    dims: Vec<Dim>,
    /// Element offset (from the storage start) of the current run.
    elem: u64,
}

#[derive(Clone)]
struct Dim {
    index: u64,
    size: u64,
    stride: u64,
}

impl Odometer {
    /// Starts at the first run, element `offset`. `None` if a run's offset
    /// would not fit in a u64 (which also keeps `advance` from overflowing:
    /// every offset it computes is a run's).
    fn new(shape: &[u64], stride: &[u64], offset: u64) -> Option<Self> {
        if shape.len() != stride.len() {
            return None;
        }
        shape
            .iter()
            .zip(stride)
            .try_fold(offset, |last, (&size, &stride)| {
                size.checked_sub(1)?.checked_mul(stride)?.checked_add(last)
            })?;
        let dims = shape.iter().zip(stride);
        Some(Odometer {
            dims: dims
                .map(|(&size, &stride)| Dim {
                    index: 0,
                    size,
                    stride,
                })
                .collect(),
            elem: offset,
        })
    }

    /// How many runs there are, if that fits in a u64.
    fn count(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(d.size))
    }

    /// Moves to the next run; false after the last one (back at the
    /// first). `elem` only ever holds the offsets of runs, which `new`
    /// checked, so nothing here overflows. Called once per run: slice
    /// patterns, which unoptimised builds (the test and fuzz harnesses) run
    /// far faster than iterator chains.
    fn advance(&mut self) -> bool {
        let mut dims = self.dims.as_mut_slice();
        while let [outer @ .., dim] = dims {
            if dim.index + 1 < dim.size {
                dim.index += 1;
                self.elem += dim.stride;
                return true;
            }
            // Back to this dimension's first index, carrying to the next.
            self.elem -= dim.index * dim.stride;
            dim.index = 0;
            dims = outer;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::StorageRef;

    fn fixture(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// A checkpoint `{"w": tensor}` over one 64-byte storage at byte 0 of
    /// a 64-byte source, built around the VM: the VM refuses every such
    /// view, so this is how the plan's and the writer's own checks are
    /// reached.
    fn around_the_vm(storage: StorageRef, offset: u64, shape: &[u64], stride: &[u64]) -> Parsed {
        use crate::pickle::{Dict, Key, Machine, Obj, PidStyle, StorageDecl, TensorDesc};
        let mut machine = Machine::new(PidStyle::Zip);
        machine.storages.decls.push(StorageDecl {
            key: "0".into(),
            dtype: crate::dtype::DType::F32,
            untyped: false,
            nbytes: 64,
        });
        let heap = &mut machine.heap;
        let tensor = heap
            .alloc(Obj::Tensor(TensorDesc {
                storage,
                dtype: crate::dtype::DType::F32,
                offset,
                shape: shape.to_vec(),
                stride: stride.to_vec(),
            }))
            .unwrap();
        let name = heap.alloc(Obj::Str("w".into())).unwrap();
        let mut dict = Dict::default();
        dict.insert(Key::Str("w".into()), name, tensor);
        let root = heap.alloc(Obj::Dict(dict)).unwrap();
        Parsed {
            format: "zip",
            protocol: 2,
            big_endian: false,
            machine,
            root,
            data: vec![crate::torch::StorageData {
                offset: 0,
                crc32: None,
            }],
        }
    }

    fn whole_storage() -> StorageRef {
        StorageRef {
            decl: 0,
            byte_offset: 0,
            nbytes: 64,
        }
    }

    /// Plans and writes `parsed` from a 64-byte source; the refusal.
    fn refusal(parsed: &Parsed, tuning: Tuning) -> crate::error::Refusal {
        let src = vec![0u8; 64];
        let plan = match crate::torch::plan::plan(parsed) {
            Ok(plan) => plan,
            Err(refusal) => return refusal,
        };
        write_tuned(&src, parsed, &plan, &mut Vec::new(), tuning).unwrap_err()
    }

    #[test]
    fn plan_refuses_a_tensor_whose_element_count_overflows() {
        // 2^32 * 2^32 elements: numel() used to overflow (a trap in the
        // shipped guest) summing the output size.
        let parsed = around_the_vm(whole_storage(), 0, &[1 << 32, 1 << 32], &[0, 0]);
        let r = refusal(&parsed, Tuning::default());
        assert_eq!(r.message, "tensor w: size arithmetic overflows");
    }

    #[test]
    fn writer_refuses_a_storage_offset_that_overflows() {
        // The record offset plus the storage's byte offset passes 2^64.
        let storage = StorageRef {
            byte_offset: u64::MAX,
            ..whole_storage()
        };
        let mut parsed = around_the_vm(storage, 0, &[2], &[1]);
        parsed.data[0].offset = 1;
        let r = refusal(&parsed, Tuning::default());
        assert_eq!(r.message, "tensor w: size arithmetic overflows");
        // So does the record offset plus the view's first element,
        // contiguous or strided (scattered: gathering would read the whole
        // record first, and find it past the end of the file).
        for stride in [1, 3] {
            let mut parsed = around_the_vm(whole_storage(), 4, &[2], &[stride]);
            parsed.data[0].offset = u64::MAX - 10;
            let tuning = Tuning {
                gather_in_memory: 0,
                ..Tuning::default()
            };
            let r = refusal(&parsed, tuning);
            assert_eq!(
                r.message, "tensor w: size arithmetic overflows",
                "stride {stride}"
            );
        }
        // The plan's alias key (the view's first byte in its storage) too.
        let parsed = around_the_vm(whole_storage(), u64::MAX / 2, &[2], &[1]);
        let r = refusal(&parsed, Tuning::default());
        assert_eq!(r.message, "tensor w: size arithmetic overflows");
    }

    #[test]
    fn writer_refuses_a_strided_view_whose_span_overflows() {
        // One stride of 2^62 elements: the view's last element lies at
        // byte 2^64 + 4, gathered in memory or scattered.
        for gather_in_memory in [64, 0] {
            let parsed = around_the_vm(whole_storage(), 0, &[2, 2], &[1 << 62, 2]);
            let tuning = Tuning {
                gather_in_memory,
                ..Tuning::default()
            };
            let r = refusal(&parsed, tuning);
            assert_eq!(r.message, "tensor w: size arithmetic overflows");
        }
        // A view past its storage that fits in u64 is refused too, never
        // read out of bounds.
        let parsed = around_the_vm(whole_storage(), 0, &[2, 2], &[100, 2]);
        let r = refusal(&parsed, Tuning::default());
        assert_eq!(r.message, "tensor w reaches past its storage");
    }

    #[test]
    fn odometer_walks_runs_in_row_major_order_and_refuses_offsets_past_u64() {
        let mut odo = Odometer::new(&[2, 3], &[10, 1], 5).unwrap();
        let mut seen = vec![odo.elem];
        while odo.advance() {
            seen.push(odo.elem);
        }
        assert_eq!(seen, [5, 6, 7, 15, 16, 17]);
        assert_eq!(odo.elem, 5, "back at the first run");
        assert_eq!(odo.count(), Some(6));
        // A size-1 dimension's stride never moves the walk.
        assert!(Odometer::new(&[1, 2], &[u64::MAX, 1], u64::MAX - 1).is_some());
        assert!(Odometer::new(&[2], &[u64::MAX], 1).is_none());
        assert!(Odometer::new(&[2], &[1], u64::MAX).is_none());
        assert!(
            Odometer::new(&[2], &[1, 1], 0).is_none(),
            "mismatched lengths"
        );
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

    /// A sink standing in for the host: it does `copy_source` itself (as
    /// the host does, with no guest read) and records what it was asked.
    struct HostLike<'a> {
        src: &'a [u8],
        out: Vec<u8>,
        copies: Vec<(u64, u64)>,
    }

    impl Sink for HostLike<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<()> {
            self.out.extend_from_slice(bytes);
            Ok(())
        }
        fn copy_source(&mut self, _: &dyn Source, offset: u64, len: u64, crc: u32) -> Result<u32> {
            let bytes = &self.src[offset as usize..(offset + len) as usize];
            self.out.extend_from_slice(bytes);
            self.copies.push((offset, len));
            let mut h = crc32fast::Hasher::new_with_initial(crc);
            h.update(bytes);
            Ok(h.finalize())
        }
    }

    /// Issue 12: tensor bytes that go out unchanged are handed to the
    /// sink's `copy_source` (host-side in the sandbox) and give the same
    /// file; bytes to byteswap never are.
    #[test]
    fn unchanged_bytes_go_to_copy_source_and_swapped_bytes_do_not() {
        for (name, big_endian) in [
            ("zip_p2", false),
            ("legacy_p2", false),
            ("views", false),
            ("dtypes", false),
            ("tied", false),
            ("big_endian", true),
            ("big_endian_v3", true),
        ] {
            let src = fixture(&format!("convert/{name}.pt"));
            let expected = fixture(&format!("convert/{name}.safetensors"));
            let parsed = crate::torch::parse(&src).unwrap();
            assert_eq!(parsed.big_endian, big_endian, "{name}");
            let plan = crate::torch::plan::plan(&parsed).unwrap();
            let mut sink = HostLike {
                src: &src,
                out: Vec::new(),
                copies: Vec::new(),
            };
            write(&src, &parsed, &plan, &mut sink).unwrap();
            assert!(sink.out == expected, "{name}: output differs");
            let copied: u64 = sink.copies.iter().map(|c| c.1).sum();
            let contiguous_multibyte: u64 = plan
                .tensors
                .iter()
                .filter(|e| e.tensor.is_contiguous() && e.tensor.dtype.size() > 1)
                .map(|e| e.tensor.nbytes().unwrap())
                .sum();
            if big_endian {
                let one_byte: u64 = plan
                    .tensors
                    .iter()
                    .filter(|e| e.tensor.is_contiguous() && e.tensor.dtype.size() == 1)
                    .map(|e| e.tensor.nbytes().unwrap())
                    .sum();
                assert_eq!(
                    copied, one_byte,
                    "{name}: only one-byte elements need no swap"
                );
            } else {
                assert!(
                    copied >= contiguous_multibyte && contiguous_multibyte > 0,
                    "{name}: {copied} bytes copied, {contiguous_multibyte} in contiguous tensors"
                );
            }
        }
    }

    /// The default `copy_source` (native harnesses) continues a running
    /// CRC-32 across calls exactly as one pass would, which is what the
    /// host's must do too (`crc32fast` on both sides).
    #[test]
    fn copy_source_continues_the_crc_across_pieces() {
        let src: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut out = Vec::new();
        let mut crc = 0;
        for (at, len) in [(0u64, 1u64), (1, 4095), (4096, 0), (4096, 5904)] {
            crc = out.copy_source(&src, at, len, crc).unwrap();
        }
        assert_eq!(out, src);
        assert_eq!(crc, crc32fast::hash(&src));
    }
}
