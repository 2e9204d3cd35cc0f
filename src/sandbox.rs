//! The wasmtime sandbox the converter runs in.
//!
//! The guest gets exactly five host functions (see the `decant-abi` crate):
//! it can read the source, append to one output (its own bytes, or a range
//! of the source the host copies unchanged), and report once. It has no
//! WASI, so no clock, randomness, environment or files. Around it:
//!
//! - the module's imports are checked against the ABI before instantiation;
//! - memory is capped by a [`ResourceLimiter`], CPU by fuel (deterministic)
//!   and by an epoch deadline (wall clock);
//! - every pointer and length the guest passes is bounds-checked, and host
//!   work per call is bounded, since epochs cannot interrupt host code;
//! - engine features are only what a Rust `wasm32-unknown-unknown` build
//!   needs (no SIMD, threads, memory64, GC), NaNs are canonicalised, so a
//!   conversion is a pure function of (guest, policy, source).

use crate::error::{Error, Kind, Result};
use crate::policy::Policy;
use crate::sink::OutputSink;
use decant_abi as abi;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{
    Caller, Config, Engine, Extern, Linker, Module, ResourceLimiter, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline,
};

/// How often the epoch ticks; the deadline is checked against a real clock
/// on every tick, so a late tick cannot stretch it.
const TICK: Duration = Duration::from_millis(10);
/// Most table elements a guest may have (GHSA-p8xm-42r7-89xg).
const MAX_TABLE_ELEMENTS: usize = 10_000;

/// A guest failure detected by the host; traps the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A pointer or length outside guest memory, or over the per-call cap.
    BadPointer(&'static str),
    /// Output past the policy's `max_output_bytes`.
    OutputLimit(u64),
    /// Linear memory growth past the policy's `memory_bytes`.
    MemoryLimit(u64),
    /// A `copy_source` of bytes past the source's end.
    OutsideSource { offset: u64, len: u32 },
    /// Output from an entry point that must not write.
    UnexpectedOutput,
    /// `finish` called twice.
    BadFinish(&'static str),
    /// A report larger than the ABI's fixed cap.
    ReportLimit(u32),
    /// The wall-clock deadline passed during a host call.
    Deadline,
    /// The fuel ran out paying for host I/O.
    OutOfFuel,
    /// Reading the source failed.
    Read(String),
    /// Writing the output failed.
    Write(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::BadPointer(call) => write!(f, "guest passed an invalid buffer to {call}"),
            Fault::OutputLimit(n) => write!(f, "output exceeds the limit of {n} bytes"),
            Fault::MemoryLimit(n) => write!(f, "guest memory would exceed the limit of {n} bytes"),
            Fault::OutsideSource { offset, len } => write!(
                f,
                "guest asked to copy {len} bytes at {offset}, past the end of the source"
            ),
            Fault::UnexpectedOutput => write!(f, "guest wrote output while inspecting"),
            Fault::BadFinish(why) => write!(f, "guest finish call rejected: {why}"),
            Fault::ReportLimit(n) => write!(f, "a report of {n} bytes"),
            Fault::Deadline => write!(f, "deadline passed"),
            Fault::OutOfFuel => write!(f, "fuel exhausted"),
            Fault::Read(e) => write!(f, "reading the source failed: {e}"),
            Fault::Write(e) => write!(f, "writing the output failed: {e}"),
        }
    }
}

impl std::error::Error for Fault {}

/// What the guest is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Convert,
    Inspect,
    /// Say what a file is (`decant audit`); writes nothing.
    Audit,
}

/// A compiled converter, ready to run once per input.
pub struct Sandbox {
    engine: Engine,
    pre: wasmtime::InstancePre<Host>,
    policy: Policy,
    _ticker: Ticker,
}

struct Host {
    source: File,
    source_len: u64,
    output: Option<OutputSink>,
    max_output: u64,
    outcome: Option<Vec<u8>>,
    deadline: Instant,
    limiter: Limiter,
}

/// wasmtime's `StoreLimits`, built from the policy, with memory growth
/// intercepted first so a hit can be reported as the policy's memory limit
/// (StoreLimits' own failure is an anonymous error).
struct Limiter {
    memory_bytes: u64,
    inner: StoreLimits,
}

impl Limiter {
    fn new(memory_bytes: u64) -> Self {
        Limiter {
            memory_bytes,
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes as usize)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(1)
                .memories(1)
                .tables(1)
                .trap_on_grow_failure(true)
                .build(),
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            return Err(wasmtime::Error::new(Fault::MemoryLimit(self.memory_bytes)));
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Increments the engine's epoch until the engine is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn start_ticker(engine: &Engine) -> Ticker {
    let weak = engine.weak();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    });
    Ticker { stop }
}

/// The engine configuration; every setting is deliberate. The one
/// definition for the engine that runs the converter and the one that
/// compiles it ahead of time ([`precompile`]): wasmtime refuses a compiled
/// module whose settings differ from the engine loading it.
fn config(policy: &Policy) -> Config {
    let mut c = Config::new();
    c.consume_fuel(true);
    c.epoch_interruption(true);
    // A code-generation setting: it is baked into the compiled converter,
    // so the runtime-only engine needs (and has) no switch for it.
    #[cfg(feature = "jit")]
    c.cranelift_nan_canonicalization(true);
    c.wasm_simd(false);
    c.wasm_relaxed_simd(false);
    c.wasm_multi_memory(false);
    c.wasm_memory64(false);
    c.wasm_custom_page_sizes(false);
    c.wasm_wide_arithmetic(false);
    c.wasm_stack_switching(false);
    c.wasm_tail_call(false);
    // Threads and the component model are not compiled in at all (crate
    // features), so they need no switch here.
    c.max_wasm_stack(policy.limits.max_wasm_stack_bytes as usize);
    c
}

/// The converter compiled ahead of time for `target` (a target triple),
/// for a baseline CPU of that architecture (no host feature detection), so
/// the artifact is the same wherever it is built. `decant-precompile`
/// writes it to `converter-guest/dist/`; CI rebuilds and compares it.
#[cfg(feature = "jit")]
pub fn precompile(wasm: &[u8], target: &str) -> Result<Vec<u8>> {
    let policy = Policy::default_policy()?;
    let mut c = config(&policy);
    c.target(target)
        .map_err(|e| Error::internal(format!("cannot compile for {target}: {e}")))?;
    let engine =
        Engine::new(&c).map_err(|e| Error::internal(format!("cannot configure wasmtime: {e}")))?;
    engine
        .precompile_module(wasm)
        .map_err(|e| guest_error(format!("the converter module does not compile: {e}")))
}

/// Loads the converter compiled ahead of time ([`crate::guest::COMPILED`]).
#[allow(unsafe_code)]
fn load_compiled_converter(engine: &Engine) -> Result<Module> {
    // SAFETY: `Module::deserialize` runs the bytes as machine code, so they
    // must be what wasmtime's own `precompile_module` wrote. These are:
    // `guest::COMPILED` is compiled into this binary with `include_bytes!`
    // from `converter-guest/dist/`, never read from input; that file is
    // written by `decant-precompile` from `guest::WASM` with this exact
    // wasmtime (pinned `=48.0.8`) and [`config`]; CI rebuilds it and fails
    // if a byte differs, and a test compiles `guest::WASM` again and
    // requires the same bytes. wasmtime still checks the header (version,
    // target, settings) and refuses a mismatch with an error.
    unsafe { Module::deserialize(engine, crate::guest::COMPILED) }
        .map_err(|e| guest_error(format!("the compiled converter cannot be loaded: {e}")))
}

fn guest_error(message: impl Into<String>) -> Error {
    Error::new(
        Kind::Internal,
        message,
        "the converter guest misbehaved; this is a bug in decant (see SECURITY.md)",
    )
}

impl Sandbox {
    /// The embedded converter under `policy`: loaded precompiled, no
    /// compiler involved.
    pub fn new(policy: Policy) -> Result<Self> {
        let engine = Engine::new(&config(&policy))
            .map_err(|e| Error::internal(format!("cannot configure wasmtime: {e}")))?;
        let module = load_compiled_converter(&engine)?;
        Self::with_module(engine, module, policy)
    }

    /// Compiles `wasm` (a guest of the caller's, such as a test's) under
    /// `policy`.
    #[cfg(feature = "jit")]
    pub fn from_wasm(wasm: &[u8], policy: Policy) -> Result<Self> {
        let engine = Engine::new(&config(&policy))
            .map_err(|e| Error::internal(format!("cannot configure wasmtime: {e}")))?;
        let module = Module::new(&engine, wasm)
            .map_err(|e| guest_error(format!("the converter module does not compile: {e}")))?;
        Self::with_module(engine, module, policy)
    }

    /// Refuses a module that imports anything beyond the `decant` ABI, and
    /// links it.
    fn with_module(engine: Engine, module: Module, policy: Policy) -> Result<Self> {
        check_imports(&module)?;
        let mut linker: Linker<Host> = Linker::new(&engine);
        define_imports(&mut linker)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| guest_error(format!("the converter module cannot be linked: {e}")))?;
        let ticker = start_ticker(&engine);
        Ok(Sandbox {
            engine,
            pre,
            policy,
            _ticker: ticker,
        })
    }

    /// The module this sandbox runs (for tests that inspect what the
    /// binary actually loads).
    pub fn module(&self) -> &Module {
        self.pre.module()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs one entry point on one source in a fresh store. Returns the
    /// guest's outcome and, for `convert`, the output sink.
    pub fn run(
        &self,
        entry: Entry,
        source: File,
        output: Option<OutputSink>,
    ) -> Result<(abi::Outcome, Option<OutputSink>)> {
        let (status, payload, output) = self.run_entry(entry, source, output)?;
        let outcome: abi::Outcome = serde_json::from_slice(&payload)
            .map_err(|e| guest_error(format!("the converter guest sent an invalid report: {e}")))?;
        let expected = match outcome {
            abi::Outcome::Done(_) => abi::status::OK,
            abi::Outcome::Refused(_) => abi::status::REFUSED,
        };
        if status != expected {
            return Err(guest_error(format!(
                "the converter guest returned status {status} with a contradicting report"
            )));
        }
        Ok((outcome, output))
    }

    /// Runs `audit` on one file: what its bytes are, scanned in the
    /// sandbox under the same limits as a conversion.
    pub fn scan(&self, source: File) -> Result<abi::FileScan> {
        let (status, payload, _) = self.run_entry(Entry::Audit, source, None)?;
        if status != abi::status::OK {
            return Err(guest_error(format!(
                "the converter guest returned status {status} from audit"
            )));
        }
        serde_json::from_slice(&payload)
            .map_err(|e| guest_error(format!("the converter guest sent an invalid scan: {e}")))
    }

    /// Runs one entry point; returns its status, its `finish` payload and
    /// the output sink.
    fn run_entry(
        &self,
        entry: Entry,
        source: File,
        output: Option<OutputSink>,
    ) -> Result<(i32, Vec<u8>, Option<OutputSink>)> {
        let source_len = source
            .metadata()
            .map_err(|e| Error::io("cannot stat the source", &e))?
            .len();
        let limits = &self.policy.limits;
        let timeout = Duration::from_secs(limits.timeout_seconds);
        let deadline = Instant::now() + timeout;
        let host = Host {
            source,
            source_len,
            output,
            max_output: limits.max_output_bytes,
            outcome: None,
            deadline,
            limiter: Limiter::new(limits.memory_bytes),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        let fuel = self.policy.fuel_for(source_len);
        store
            .set_fuel(fuel)
            .map_err(|e| Error::internal(format!("cannot set fuel: {e}")))?;
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        store.set_epoch_deadline(1);

        let name = match entry {
            Entry::Convert => abi::EXPORT_CONVERT,
            Entry::Inspect => abi::EXPORT_INSPECT,
            Entry::Audit => abi::EXPORT_AUDIT,
        };
        // Wasm runs on its own thread with a native stack well beyond the
        // wasm stack limit: exhausting the thread stack would abort the
        // process instead of trapping.
        let stack = limits.max_wasm_stack_bytes as usize + (16 << 20);
        let result = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("decant-guest".into())
                .stack_size(stack)
                .spawn_scoped(s, || -> wasmtime::Result<i32> {
                    let instance = self.pre.instantiate(&mut store)?;
                    let f = instance.get_typed_func::<(), i32>(&mut store, name)?;
                    f.call(&mut store, ())
                })
                .map(|h| h.join())
        });
        let status = match result {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => return Err(Error::internal("the sandbox thread panicked")),
            Err(e) => return Err(Error::io("cannot start the sandbox thread", &e)),
        };
        let status = status.map_err(|e| self.classify(e, fuel))?;
        let host = store.into_data();
        let payload = host
            .outcome
            .ok_or_else(|| guest_error("the converter guest returned without reporting"))?;
        Ok((status, payload, host.output))
    }

    /// Turns a failed call into a user-facing error naming the limit.
    fn classify(&self, err: wasmtime::Error, fuel: u64) -> Error {
        let limits = &self.policy.limits;
        let limit = |what: String, hint: &str| Error::new(Kind::Limit, what, hint);
        if let Some(fault) = err.downcast_ref::<Fault>() {
            return match fault {
                Fault::OutputLimit(n) => limit(
                    format!("refused: output would exceed the policy's max_output_bytes ({n})"),
                    "raise max_output_bytes in a custom --policy if the checkpoint is genuinely this large",
                ),
                Fault::MemoryLimit(n) => limit(
                    format!("refused: the converter hit the sandbox memory limit ({n} bytes)"),
                    "a legitimate checkpoint rarely needs this; raise memory_bytes in a custom --policy only for a trusted file",
                ),
                Fault::ReportLimit(n) => limit(
                    format!(
                        "refused: the converter's report is {n} bytes, more than the fixed limit of {} (decant_abi::MAX_OUTCOME_BYTES; no policy raises it)",
                        abi::MAX_OUTCOME_BYTES
                    ),
                    "the checkpoint has too many or too long entry names to report; it cannot be converted as one file",
                ),
                Fault::Deadline => self.deadline_error(),
                Fault::OutOfFuel => self.fuel_error(fuel),
                Fault::Read(_) => Error::new(Kind::Io, fault.to_string(), "convert a readable file nothing else is writing"),
                Fault::Write(e) => crate::sink::write_failed(e),
                other => guest_error(format!("the converter guest was stopped: {other}")),
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => self.fuel_error(fuel),
            Some(Trap::Interrupt) => self.deadline_error(),
            Some(Trap::StackOverflow) => limit(
                format!(
                    "refused: the converter hit the wasm stack limit ({} bytes)",
                    limits.max_wasm_stack_bytes
                ),
                "the input nests too deeply to convert",
            ),
            Some(trap) => guest_error(format!("the converter guest trapped: {trap}")),
            None => guest_error(format!("the converter guest failed: {err:#}")),
        }
    }

    fn fuel_error(&self, fuel: u64) -> Error {
        Error::new(
            Kind::Limit,
            format!("refused: the converter used its whole CPU budget ({fuel} fuel)"),
            "raise fuel_base or fuel_per_source_byte in a custom --policy only for a trusted file",
        )
    }

    fn deadline_error(&self) -> Error {
        Error::new(
            Kind::Limit,
            format!(
                "refused: the conversion passed the policy's {} s deadline",
                self.policy.limits.timeout_seconds
            ),
            "raise timeout_seconds in a custom --policy for very large checkpoints",
        )
    }
}

/// The module must import exactly a subset of the ABI, all from `decant`,
/// and export its memory and entry points. (`instantiate_pre` would refuse
/// unknown imports too; checking here gives the user a precise message.)
pub fn check_imports(module: &Module) -> Result<()> {
    for import in module.imports() {
        let known = import.module() == abi::IMPORT_MODULE && abi::IMPORTS.contains(&import.name());
        if !known {
            return Err(guest_error(format!(
                "the converter module imports {}::{}, which the sandbox does not provide",
                crate::error::one_line(import.module()),
                crate::error::one_line(import.name())
            )));
        }
    }
    for export in [abi::EXPORT_MEMORY, abi::EXPORT_CONVERT, abi::EXPORT_INSPECT] {
        if module.get_export(export).is_none() {
            return Err(guest_error(format!(
                "the converter module does not export {export}"
            )));
        }
    }
    Ok(())
}

/// Bounds-checks a guest buffer.
fn span(
    len_total: usize,
    ptr: i32,
    len: i32,
    call: &'static str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let bad = || wasmtime::Error::new(Fault::BadPointer(call));
    let (ptr, len) = (
        u32::try_from(ptr).map_err(|_| bad())?,
        u32::try_from(len).map_err(|_| bad())?,
    );
    if len > abi::MAX_IO_CHUNK.max(abi::MAX_OUTCOME_BYTES) {
        return Err(bad());
    }
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or_else(bad)?;
    if end > len_total {
        return Err(bad());
    }
    Ok(start..end)
}

fn memory(caller: &mut Caller<'_, Host>, call: &'static str) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export(abi::EXPORT_MEMORY) {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::new(Fault::BadPointer(call))),
    }
}

/// Host calls are not metered by wasmtime, so the bytes they move are
/// charged to the guest's fuel: total I/O is then bounded by the same
/// deterministic budget as computation (a 1 KB file cannot write gigabytes).
const FUEL_PER_IO_BYTE: u64 = 1;

fn charge_io(caller: &mut Caller<'_, Host>, bytes: i32) -> wasmtime::Result<()> {
    let cost = (bytes.max(0) as u64).saturating_mul(FUEL_PER_IO_BYTE);
    let fuel = caller.get_fuel()?;
    if fuel < cost {
        caller.set_fuel(0)?;
        return Err(wasmtime::Error::new(Fault::OutOfFuel));
    }
    caller.set_fuel(fuel - cost)
}

/// Fills `dst` from the source at `offset`; returns how many bytes there
/// were (fewer only at the end of the source).
fn read_source_at(source: &File, dst: &mut [u8], offset: u64) -> wasmtime::Result<usize> {
    let mut done = 0;
    while let Some(rest @ [_, ..]) = dst.get_mut(done..) {
        match source.read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(wasmtime::Error::new(Fault::Read(e.to_string()))),
        }
    }
    Ok(done)
}

impl Host {
    /// A buffer for `n` more output bytes, once they are known to be
    /// allowed: this entry point writes output, and the total stays within
    /// the policy's limit.
    fn output_buffer(&mut self, n: usize) -> wasmtime::Result<Vec<u8>> {
        let max = self.max_output;
        let Some(out) = self.output.as_mut() else {
            return Err(wasmtime::Error::new(Fault::UnexpectedOutput));
        };
        if out.handed_over.saturating_add(n as u64) > max {
            return Err(wasmtime::Error::new(Fault::OutputLimit(max)));
        }
        out.buffer().map_err(output_failed)
    }

    /// Queues `buf` (from [`Host::output_buffer`]) for the output.
    fn hand_over(&mut self, buf: Vec<u8>) -> wasmtime::Result<()> {
        match self.output.as_mut() {
            Some(out) => out.hand_over(buf).map_err(output_failed),
            None => Err(wasmtime::Error::new(Fault::UnexpectedOutput)),
        }
    }
}

fn output_failed(e: std::io::Error) -> wasmtime::Error {
    wasmtime::Error::new(Fault::Write(e.to_string()))
}

fn check_deadline(host: &Host) -> wasmtime::Result<()> {
    if Instant::now() >= host.deadline {
        return Err(wasmtime::Error::new(Fault::Deadline));
    }
    Ok(())
}

fn define_imports(linker: &mut Linker<Host>) -> Result<()> {
    let m = abi::IMPORT_MODULE;
    let wrap_err =
        |e: wasmtime::Error| Error::internal(format!("cannot define host functions: {e}"));
    linker
        .func_wrap(
            m,
            abi::IMPORT_SOURCE_LEN,
            |caller: Caller<'_, Host>| -> i64 { caller.data().source_len as i64 },
        )
        .map_err(wrap_err)?;
    linker
        .func_wrap(
            m,
            abi::IMPORT_READ_SOURCE,
            |mut caller: Caller<'_, Host>,
             offset: i64,
             ptr: i32,
             len: i32|
             -> wasmtime::Result<i32> {
                const CALL: &str = "read_source";
                if len as u32 > abi::MAX_IO_CHUNK {
                    return Err(wasmtime::Error::new(Fault::BadPointer(CALL)));
                }
                charge_io(&mut caller, len)?;
                let mem = memory(&mut caller, CALL)?;
                let (data, host) = mem.data_and_store_mut(&mut caller);
                check_deadline(host)?;
                let range = span(data.len(), ptr, len, CALL)?;
                let offset = u64::try_from(offset)
                    .map_err(|_| wasmtime::Error::new(Fault::BadPointer(CALL)))?;
                if offset >= host.source_len {
                    return Ok(0);
                }
                let want = (host.source_len - offset).min(range.len() as u64) as usize;
                let dst = data
                    .get_mut(range.start..range.start + want)
                    .ok_or_else(|| wasmtime::Error::new(Fault::BadPointer(CALL)))?;
                let done = read_source_at(&host.source, dst, offset)?;
                Ok(done as i32)
            },
        )
        .map_err(wrap_err)?;
    linker
        .func_wrap(
            m,
            abi::IMPORT_WRITE_OUTPUT,
            |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
                const CALL: &str = "write_output";
                if len as u32 > abi::MAX_IO_CHUNK {
                    return Err(wasmtime::Error::new(Fault::BadPointer(CALL)));
                }
                charge_io(&mut caller, len)?;
                let mem = memory(&mut caller, CALL)?;
                let (data, host) = mem.data_and_store_mut(&mut caller);
                check_deadline(host)?;
                let range = span(data.len(), ptr, len, CALL)?;
                let bytes = data
                    .get(range)
                    .ok_or_else(|| wasmtime::Error::new(Fault::BadPointer(CALL)))?;
                let mut buf = host.output_buffer(bytes.len())?;
                buf.clear();
                buf.extend_from_slice(bytes);
                host.hand_over(buf)?;
                Ok(abi::status::OK)
            },
        )
        .map_err(wrap_err)?;
    linker
        .func_wrap(
            m,
            abi::IMPORT_COPY_SOURCE,
            |mut caller: Caller<'_, Host>,
             offset: i64,
             len: i32,
             crc: i32|
             -> wasmtime::Result<i32> {
                const CALL: &str = "copy_source";
                let bad = || wasmtime::Error::new(Fault::BadPointer(CALL));
                let len = u32::try_from(len)
                    .ok()
                    .filter(|&n| n <= abi::MAX_IO_CHUNK)
                    .ok_or_else(bad)?;
                // A read and a write of `len` bytes, as the guest's own
                // read_source + write_output would be charged.
                charge_io(&mut caller, len.saturating_mul(2) as i32)?;
                let host = caller.data_mut();
                check_deadline(host)?;
                // Only bytes inside the source: the guest checks the range
                // before asking, so one outside it is a misbehaving guest.
                let offset = u64::try_from(offset).map_err(|_| bad())?;
                let end = offset.checked_add(u64::from(len)).ok_or_else(bad)?;
                if end > host.source_len {
                    return Err(wasmtime::Error::new(Fault::OutsideSource { offset, len }));
                }
                let mut buf = host.output_buffer(len as usize)?;
                buf.resize(len as usize, 0);
                if read_source_at(&host.source, &mut buf, offset)? != buf.len() {
                    return Err(wasmtime::Error::new(Fault::Read(
                        "the source became shorter while it was converted".into(),
                    )));
                }
                let mut hasher = crc32fast::Hasher::new_with_initial(crc as u32);
                hasher.update(&buf);
                host.hand_over(buf)?;
                Ok(hasher.finalize() as i32)
            },
        )
        .map_err(wrap_err)?;
    linker
        .func_wrap(
            m,
            abi::IMPORT_FINISH,
            |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
                const CALL: &str = "finish";
                let mem = memory(&mut caller, CALL)?;
                let (data, host) = mem.data_and_store_mut(&mut caller);
                if len as u32 > abi::MAX_OUTCOME_BYTES {
                    return Err(wasmtime::Error::new(Fault::ReportLimit(len as u32)));
                }
                let range = span(data.len(), ptr, len, CALL)?;
                if host.outcome.is_some() {
                    return Err(wasmtime::Error::new(Fault::BadFinish("called twice")));
                }
                let bytes = data
                    .get(range)
                    .ok_or_else(|| wasmtime::Error::new(Fault::BadPointer(CALL)))?;
                host.outcome = Some(bytes.to_vec());
                Ok(abi::status::OK)
            },
        )
        .map_err(wrap_err)?;
    Ok(())
}
