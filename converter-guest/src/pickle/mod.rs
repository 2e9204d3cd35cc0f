//! A restricted pickle virtual machine for protocols 0 to 5.
//!
//! It implements every opcode a checkpoint can contain, but it can only ever
//! build data: strings, numbers, containers, and the few torch objects on the
//! allowlist ([`globals`]). A GLOBAL outside the allowlist refuses the file
//! with the name and its position; there is no fallback and nothing to
//! execute. The stream is parsed strictly: one PROTO at the start, frames that
//! contain whole opcodes, a memo that must be written before it is read.

mod compat;
pub mod globals;
pub(crate) mod input;
pub(crate) mod text;
pub mod value;

/// `int()` of a record's bytes, for the zip reader's `.storage_alignment`.
pub use text::python_int_literal;

use crate::dtype::DType;
use crate::error::{corrupt, global as refuse_global, limit, unsupported, Result};
use crate::source::Source;
use globals::Global;
use input::Input;
use std::collections::{BTreeSet, HashMap};
pub use value::{Dict, Heap, Key, Obj, ObjId, StorageDecl, StorageRef, TensorDesc, Value};

/// How persistent ids are shaped in this container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidStyle {
    /// `('storage', cls, key, location, numel)`
    Zip,
    /// `('storage', cls, key, location, numel, view_metadata)`
    Legacy,
}

/// Most tensor dimensions accepted (torch's own limit is 64 too).
const MAX_DIMS: usize = 64;
/// How far a memo index may run ahead of the entries written so far.
const MEMO_SLACK: u64 = 256;
/// Longest text line a protocol-0 opcode may have.
const MAX_LINE: u64 = 1 << 20;

/// Attributes of `collections.OrderedDict` (`dir(OrderedDict)`, CPython
/// 3.11). BUILD state naming one of them would shadow it on the instance.
const ORDERED_DICT_ATTRIBUTES: &[&str] = &[
    "__class__",
    "__class_getitem__",
    "__contains__",
    "__delattr__",
    "__delitem__",
    "__dict__",
    "__dir__",
    "__doc__",
    "__eq__",
    "__format__",
    "__ge__",
    "__getattribute__",
    "__getitem__",
    "__getstate__",
    "__gt__",
    "__hash__",
    "__init__",
    "__init_subclass__",
    "__ior__",
    "__iter__",
    "__le__",
    "__len__",
    "__lt__",
    "__ne__",
    "__new__",
    "__or__",
    "__reduce__",
    "__reduce_ex__",
    "__repr__",
    "__reversed__",
    "__ror__",
    "__setattr__",
    "__setitem__",
    "__sizeof__",
    "__str__",
    "__subclasshook__",
    "clear",
    "copy",
    "fromkeys",
    "get",
    "items",
    "keys",
    "move_to_end",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "values",
];

/// Data descriptors of `torch.nn.Parameter` and its bases (torch 2.15.0:
/// the names in `dir(Parameter)` whose class attribute has `__set__` or
/// `__delete__`). torch applies a rebuilt tensor's saved state with
/// `setattr`; for these names that runs a setter (`data` replaces the
/// tensor, `real` overwrites its values and those of every tensor sharing
/// its storage) or fails. Any other name only lands in the tensor's
/// `__dict__` and leaves the values alone.
const TENSOR_DATA_DESCRIPTORS: &[&str] = &[
    "H",
    "T",
    "__class__",
    "__cuda_array_interface__",
    "__dict__",
    "__weakref__",
    "_backward_hooks",
    "_base",
    "_cdata",
    "_grad",
    "_grad_fn",
    "_has_grad_dtype_override",
    "_has_symbolic_sizes_strides",
    "_post_accumulate_grad_hooks",
    "_python_dispatch",
    "_version",
    "data",
    "device",
    "dtype",
    "grad",
    "grad_dtype",
    "grad_fn",
    "imag",
    "is_cpu",
    "is_cuda",
    "is_ipu",
    "is_leaf",
    "is_maia",
    "is_meta",
    "is_mkldnn",
    "is_mps",
    "is_mtia",
    "is_nested",
    "is_quantized",
    "is_sparse",
    "is_sparse_csr",
    "is_vulkan",
    "is_xla",
    "is_xpu",
    "itemsize",
    "layout",
    "mH",
    "mT",
    "name",
    "nbytes",
    "ndim",
    "output_nr",
    "real",
    "requires_grad",
    "retains_grad",
    "shape",
    "volatile",
];

/// Whether `setattr(tensor, name, v)` only stores a Python attribute: not a
/// data descriptor, and not a dunder name, which other code looks up on the
/// instance as a protocol (numpy reads an instance's `__array_interface__`
/// before the tensor's own data).
fn is_inert_tensor_attribute(name: &str) -> bool {
    let dunder = name.starts_with("__") && name.ends_with("__");
    !dunder && !TENSOR_DATA_DESCRIPTORS.contains(&name)
}

/// The highest pickle protocol CPython reads.
pub(crate) const HIGHEST_PROTOCOL: u8 = 5;

/// The opcodes of protocol 0, the text protocol.
pub(crate) const PROTOCOL_0: &[u8] = b"(.012FILNPRSVabcdgilpst";

/// Whether `byte` is a pickle opcode, i.e. a file starting with it may be a
/// pickle stream of some protocol (0 and 1 have no PROTO header).
pub fn is_opcode(byte: u8) -> bool {
    PROTOCOL_0.contains(&byte)
        || b"GJKMQTUXBCehjoqru])}".contains(&byte)
        || (0x80..=0x98).contains(&byte)
}

/// Storage declarations shared by every pickle of one checkpoint.
#[derive(Debug, Default)]
pub struct Storages {
    pub decls: Vec<StorageDecl>,
    by_key: HashMap<String, usize>,
    /// Legacy storage views by view key.
    views: HashMap<String, StorageRef>,
}

/// The VM state for one checkpoint. Several pickles (the legacy format has
/// five) can be run one after another; objects and storages accumulate.
pub struct Machine {
    pub heap: Heap,
    pub storages: Storages,
    /// Every global the checkpoint resolved, as `module.name`.
    pub globals: BTreeSet<String>,
    pid_style: PidStyle,
    /// Whether storage references (BINPERSID) may appear in the pickle run
    /// next: torch reads the legacy format's magic, protocol, sys_info and
    /// key-list pickles without a persistent_load, so a reference there
    /// fails its load.
    pub persistent_ids: bool,
}

/// The result of running one pickle.
pub struct Loaded {
    pub value: Value,
    /// PROTO number; without one, 1 if binary opcodes were used, else 0.
    pub protocol: u8,
    /// Offset just past STOP.
    pub end: u64,
}

impl Machine {
    pub fn new(pid_style: PidStyle) -> Self {
        Machine {
            heap: Heap::default(),
            storages: Storages::default(),
            globals: BTreeSet::new(),
            pid_style,
            persistent_ids: true,
        }
    }

    /// Runs the pickle that starts at `start` and may extend to `end`; `label`
    /// names it in messages (`data.pkl`), or is empty for absolute offsets.
    pub fn load(&mut self, src: &dyn Source, start: u64, end: u64, label: &str) -> Result<Loaded> {
        let mut run = Run {
            m: self,
            input: Input::new(src, start, end),
            label,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            frame_end: None,
            protocol: 0,
            binary_seen: false,
        };
        let value = run.run()?;
        // Without PROTO the stream is protocol 0 (text) or 1 (binary opcodes).
        let protocol = match run.protocol {
            0 if run.binary_seen => 1,
            p => p,
        };
        Ok(Loaded {
            value,
            protocol,
            end: run.input.pos(),
        })
    }
}

struct Run<'m, 's> {
    m: &'m mut Machine,
    input: Input<'s>,
    label: &'m str,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    frame_end: Option<u64>,
    protocol: u8,
    /// Whether an opcode outside protocol 0's text set was seen.
    binary_seen: bool,
}

/// Opcode bytes (CPython `Lib/pickle.py`), for the VM and the audit scan.
pub(crate) mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

impl Run<'_, '_> {
    fn at(&self, pos: u64) -> String {
        if self.label.is_empty() {
            format!("byte {pos}")
        } else {
            format!("byte {} of {}", pos - self.input.start(), self.label)
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            if self.frame_end == Some(self.input.pos()) {
                self.frame_end = None;
            }
            let pos = self.input.pos();
            let code = self.input.u8().map_err(|_| {
                corrupt(format!(
                    "pickle ends at {} without a STOP opcode",
                    self.at(pos)
                ))
            })?;
            self.binary_seen |= !PROTOCOL_0.contains(&code);
            let stop = self.step(code, pos)?;
            if let Some(fe) = self.frame_end {
                if self.input.pos() > fe {
                    return Err(corrupt(format!(
                        "opcode 0x{code:02x} at {} runs past the end of its frame",
                        self.at(pos)
                    )));
                }
            }
            if stop {
                if self.frame_end.is_some_and(|fe| fe != self.input.pos()) {
                    return Err(corrupt(format!(
                        "STOP at {} inside an unfinished frame",
                        self.at(pos)
                    )));
                }
                if !self.marks.is_empty() {
                    return Err(corrupt(format!(
                        "STOP at {} with an open MARK",
                        self.at(pos)
                    )));
                }
                let top = self.pop(pos)?;
                if !self.stack.is_empty() {
                    return Err(corrupt(format!(
                        "STOP at {} leaves {} extra values on the stack",
                        self.at(pos),
                        self.stack.len()
                    )));
                }
                return Ok(top);
            }
        }
    }

    fn pop(&mut self, pos: u64) -> Result<Value> {
        let v = self.top(pos)?;
        self.stack.pop();
        Ok(v)
    }

    /// The value on top of the stack, above the last MARK.
    fn top(&self, pos: u64) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&v) if self.stack.len() > floor => Ok(v),
            _ => Err(corrupt(format!("stack underflow at {}", self.at(pos)))),
        }
    }

    /// Pops everything above the last MARK, and the mark.
    fn pop_mark(&mut self, pos: u64) -> Result<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            return Err(corrupt(format!(
                "no MARK for the opcode at {}",
                self.at(pos)
            )));
        };
        Ok(self.stack.split_off(m))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn alloc(&mut self, o: Obj) -> Result<Value> {
        self.m.heap.alloc(o)
    }

    fn memo_get(&self, key: u64, pos: u64) -> Result<Value> {
        self.memo.get(&key).copied().ok_or_else(|| {
            corrupt(format!(
                "memo entry {key} read at {} before it was written",
                self.at(pos)
            ))
        })
    }

    fn memo_put(&mut self, key: u64, pos: u64) -> Result<()> {
        // Picklers number memo entries 0, 1, 2, ... (Python 2's cPickle from
        // 1). CPython's unpickler keeps the memo as an array, so an index far
        // beyond it costs memory for every index below, and fails with
        // MemoryError or OverflowError depending on the machine.
        if key > self.memo.len() as u64 + MEMO_SLACK && !self.memo.contains_key(&key) {
            return Err(unsupported(
                format!(
                    "memo index {key} at {} is far beyond the {} entries written so far",
                    self.at(pos),
                    self.memo.len()
                ),
                "picklers number memo entries in order; whether CPython can load this depends on its memory",
            ));
        }
        let v = self.top(pos)?;
        self.memo.insert(key, v);
        Ok(())
    }

    /// Executes one opcode; returns true at STOP.
    fn step(&mut self, code: u8, pos: u64) -> Result<bool> {
        match code {
            op::PROTO => {
                let p = self.input.u8()?;
                if pos != self.input.start() {
                    return Err(corrupt(format!(
                        "PROTO at {} is not the first opcode",
                        self.at(pos)
                    )));
                }
                if p > HIGHEST_PROTOCOL {
                    return Err(unsupported(
                        format!("pickle protocol {p} (at {})", self.at(pos)),
                        "decant reads pickle protocols 0 to 5",
                    ));
                }
                self.protocol = p;
            }
            op::FRAME => {
                let len = self.input.u64()?;
                if self.frame_end.is_some() {
                    return Err(corrupt(format!(
                        "FRAME at {} starts inside another frame",
                        self.at(pos)
                    )));
                }
                let start = self.input.pos();
                match start.checked_add(len) {
                    Some(end) if end <= self.input.end() => self.frame_end = Some(end),
                    _ => {
                        return Err(corrupt(format!(
                            "FRAME at {} claims {len} bytes, more than the pickle holds",
                            self.at(pos)
                        )))
                    }
                }
            }
            op::STOP => return Ok(true),
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                // POP of a bare mark is how CPython discards an empty MARK.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop(pos)?;
                }
            }
            op::POP_MARK => {
                self.pop_mark(pos)?;
            }
            op::DUP => {
                let v = self.top(pos)?;
                self.push(v);
            }
            op::NONE => self.push(Value::None),
            op::NEWTRUE => self.push(Value::Bool(true)),
            op::NEWFALSE => self.push(Value::Bool(false)),
            op::BININT => {
                let v = self.input.u32()? as i32;
                self.push(Value::Int(v as i64));
            }
            op::BININT1 => {
                let v = self.input.u8()?;
                self.push(Value::Int(v as i64));
            }
            op::BININT2 => {
                let v = self.input.u16()?;
                self.push(Value::Int(v as i64));
            }
            op::LONG1 => {
                let n = self.input.u8()? as u64;
                let bytes = self.input.bytes(n)?;
                let v = self.long_from_le(bytes)?;
                self.push(v);
            }
            op::LONG4 => {
                let n = self.input.u32()? as i32;
                if n < 0 {
                    return Err(corrupt(format!("negative LONG4 length at {}", self.at(pos))));
                }
                let bytes = self.input.bytes(n as u64)?;
                let v = self.long_from_le(bytes)?;
                self.push(v);
            }
            // Text numbers: only the spellings Python's picklers write are
            // read. CPython's C unpickler parses others its own way (`I010`
            // is octal 8, `I+1` is True, `L0x1fL` is 31), so any other form
            // is refused rather than read differently from torch.
            op::INT => {
                let line = self.line(pos)?;
                let v = match line.as_slice() {
                    b"00" => Value::Bool(false),
                    b"01" => Value::Bool(true),
                    digits if text::is_canonical_decimal(digits) => self.decimal(digits, pos)?,
                    _ => return Err(self.noncanonical("INT", &line, pos)),
                };
                self.push(v);
            }
            op::LONG => {
                let line = self.line(pos)?;
                let digits = match line.strip_suffix(b"L") {
                    Some(d) if text::is_canonical_decimal(d) => d,
                    _ => return Err(self.noncanonical("LONG", &line, pos)),
                };
                let v = self.decimal(digits, pos)?;
                self.push(v);
            }
            op::FLOAT => {
                let line = self.line(pos)?;
                let f = text::canonical_float(&line)
                    .ok_or_else(|| self.noncanonical("FLOAT", &line, pos))?;
                self.push(Value::Float(f));
            }
            op::BINFLOAT => {
                let bits = self.input.u64_be()?;
                self.push(Value::Float(f64::from_bits(bits)));
            }
            op::STRING => {
                let line = self.line(pos)?;
                let bytes = text::python_string_literal(&line)
                    .ok_or_else(|| corrupt(format!("bad STRING literal at {}", self.at(pos))))?;
                let v = self.py2_string(bytes, pos)?;
                self.push(v);
            }
            op::BINSTRING => {
                let n = self.input.u32()? as i32;
                if n < 0 {
                    return Err(corrupt(format!("negative BINSTRING length at {}", self.at(pos))));
                }
                let bytes = self.input.bytes(n as u64)?;
                let v = self.py2_string(bytes, pos)?;
                self.push(v);
            }
            op::SHORT_BINSTRING => {
                let n = self.input.u8()? as u64;
                let bytes = self.input.bytes(n)?;
                let v = self.py2_string(bytes, pos)?;
                self.push(v);
            }
            op::UNICODE => {
                let line = self.line(pos)?;
                let s = text::raw_unicode_escape(&line)
                    .ok_or_else(|| corrupt(format!("bad UNICODE literal at {}", self.at(pos))))?;
                let v = self.alloc(Obj::Str(s))?;
                self.push(v);
            }
            op::BINUNICODE | op::SHORT_BINUNICODE | op::BINUNICODE8 => {
                let n = match code {
                    op::SHORT_BINUNICODE => self.input.u8()? as u64,
                    op::BINUNICODE => self.input.u32()? as u64,
                    _ => self.input.u64()?,
                };
                let bytes = self.input.bytes(n)?;
                let s = String::from_utf8(bytes)
                    .map_err(|_| corrupt(format!("string at {} is not UTF-8", self.at(pos))))?;
                let v = self.alloc(Obj::Str(s))?;
                self.push(v);
            }
            op::BINBYTES | op::SHORT_BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = match code {
                    op::SHORT_BINBYTES => self.input.u8()? as u64,
                    op::BINBYTES => self.input.u32()? as u64,
                    _ => self.input.u64()?,
                };
                let bytes = self.input.bytes(n)?;
                let v = self.alloc(if code == op::BYTEARRAY8 {
                    Obj::ByteArray(bytes)
                } else {
                    Obj::Bytes(bytes)
                })?;
                self.push(v);
            }
            op::NEXT_BUFFER | op::READONLY_BUFFER => {
                return Err(unsupported(
                    format!("out-of-band pickle buffer at {}", self.at(pos)),
                    "torch.save never writes out-of-band buffers; re-save the checkpoint with torch.save",
                ))
            }
            op::EMPTY_TUPLE => {
                let v = self.alloc(Obj::Tuple(Vec::new()))?;
                self.push(v);
            }
            op::TUPLE => {
                let items = self.pop_mark(pos)?;
                let v = self.alloc(Obj::Tuple(items))?;
                self.push(v);
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (code - op::TUPLE1 + 1) as usize;
                let mut items = vec![Value::None; n];
                for slot in items.iter_mut().rev() {
                    *slot = self.pop(pos)?;
                }
                let v = self.alloc(Obj::Tuple(items))?;
                self.push(v);
            }
            op::EMPTY_LIST => {
                let v = self.alloc(Obj::List(Vec::new()))?;
                self.push(v);
            }
            op::LIST => {
                let items = self.pop_mark(pos)?;
                let v = self.alloc(Obj::List(items))?;
                self.push(v);
            }
            op::APPEND => {
                let item = self.pop(pos)?;
                let target = self.top(pos)?;
                self.extend_list(target, vec![item], pos)?;
            }
            op::APPENDS => {
                let items = self.pop_mark(pos)?;
                let target = self.top(pos)?;
                self.extend_list(target, items, pos)?;
            }
            op::EMPTY_DICT => {
                let v = self.alloc(Obj::Dict(Dict::default()))?;
                self.push(v);
            }
            op::DICT => {
                let items = self.pop_mark(pos)?;
                let v = self.alloc(Obj::Dict(Dict::default()))?;
                self.set_items(v, items, pos)?;
                self.push(v);
            }
            op::SETITEM => {
                let value = self.pop(pos)?;
                let key = self.pop(pos)?;
                let target = self.top(pos)?;
                self.set_items(target, vec![key, value], pos)?;
            }
            op::SETITEMS => {
                let items = self.pop_mark(pos)?;
                let target = self.top(pos)?;
                self.set_items(target, items, pos)?;
            }
            op::EMPTY_SET => {
                let v = self.alloc(Obj::Set(Vec::new()))?;
                self.push(v);
            }
            op::ADDITEMS => {
                let items = self.pop_mark(pos)?;
                let target = self.top(pos)?;
                if !matches!(self.m.heap.obj(target), Some(Obj::Set(_))) {
                    return Err(self.bad_target("ADDITEMS", target, pos));
                }
                self.check_hashable(&items, "set element", pos)?;
                if let Value::Obj(id) = target {
                    if let Some(Obj::Set(s)) = self.m.heap.get_mut(id) {
                        s.extend(items)
                    }
                }
            }
            op::FROZENSET => {
                let items = self.pop_mark(pos)?;
                self.check_hashable(&items, "frozenset element", pos)?;
                let v = self.alloc(Obj::FrozenSet(items))?;
                self.push(v);
            }
            op::GET => {
                let key = self.line_number(pos)?;
                let v = self.memo_get(key, pos)?;
                self.push(v);
            }
            op::BINGET => {
                let key = self.input.u8()? as u64;
                let v = self.memo_get(key, pos)?;
                self.push(v);
            }
            op::LONG_BINGET => {
                let key = self.input.u32()? as u64;
                let v = self.memo_get(key, pos)?;
                self.push(v);
            }
            op::PUT => {
                let key = self.line_number(pos)?;
                self.memo_put(key, pos)?;
            }
            op::BINPUT => {
                let key = self.input.u8()? as u64;
                self.memo_put(key, pos)?;
            }
            op::LONG_BINPUT => {
                let key = self.input.u32()? as u64;
                self.memo_put(key, pos)?;
            }
            op::MEMOIZE => {
                let key = self.memo.len() as u64;
                self.memo_put(key, pos)?;
            }
            op::GLOBAL => {
                let module = self.line(pos)?;
                let name = self.line(pos)?;
                let g = self.global(&module, &name, pos)?;
                self.push(g);
            }
            op::STACK_GLOBAL => {
                let name = self.pop(pos)?;
                let module = self.pop(pos)?;
                let (Some(module), Some(name)) = (self.m.heap.str(module), self.m.heap.str(name))
                else {
                    return Err(corrupt(format!(
                        "STACK_GLOBAL at {} needs two strings",
                        self.at(pos)
                    )));
                };
                let (module, name) = (module.as_bytes().to_vec(), name.as_bytes().to_vec());
                let g = self.global(&module, &name, pos)?;
                self.push(g);
            }
            op::INST => {
                let module = self.line(pos)?;
                let name = self.line(pos)?;
                let cls = self.global(&module, &name, pos)?;
                let args = self.pop_mark(pos)?;
                let args = self.alloc(Obj::Tuple(args))?;
                let v = self.call(cls, args, pos)?;
                self.push(v);
            }
            op::OBJ => {
                let mut items = self.pop_mark(pos)?;
                if items.is_empty() {
                    return Err(corrupt(format!("OBJ at {} without a class", self.at(pos))));
                }
                let cls = items.remove(0);
                let args = self.alloc(Obj::Tuple(items))?;
                let v = self.call(cls, args, pos)?;
                self.push(v);
            }
            op::REDUCE => {
                let args = self.pop(pos)?;
                let func = self.pop(pos)?;
                let v = self.call(func, args, pos)?;
                self.push(v);
            }
            op::NEWOBJ => {
                let args = self.pop(pos)?;
                let cls = self.pop(pos)?;
                let v = self.new_object(cls, args, pos)?;
                self.push(v);
            }
            op::NEWOBJ_EX => {
                let kwargs = self.pop(pos)?;
                let args = self.pop(pos)?;
                let cls = self.pop(pos)?;
                let empty_kwargs = matches!(self.m.heap.obj(kwargs), Some(Obj::Dict(d)) if d.entries.is_empty());
                if !empty_kwargs {
                    return Err(unsupported(
                        format!("NEWOBJ_EX with keyword arguments at {}", self.at(pos)),
                        "no allowlisted type takes keyword arguments",
                    ));
                }
                let v = self.new_object(cls, args, pos)?;
                self.push(v);
            }
            op::BUILD => {
                let state = self.pop(pos)?;
                let target = self.top(pos)?;
                self.build(target, state, pos)?;
            }
            op::BINPERSID => {
                let pid = self.pop(pos)?;
                let v = self.persistent_load(pid, pos)?;
                self.push(v);
            }
            op::PERSID => {
                return Err(unsupported(
                    format!("text persistent id (PERSID) at {}", self.at(pos)),
                    "torch cannot load protocol-0 checkpoints either; re-save with the default protocol",
                ))
            }
            op::EXT1 | op::EXT2 | op::EXT4 => {
                return Err(unsupported(
                    format!("copyreg extension code at {}", self.at(pos)),
                    "extension codes name globals indirectly; torch.save never writes them",
                ))
            }
            other => {
                return Err(corrupt(format!(
                    "unknown pickle opcode 0x{other:02x} at {}",
                    self.at(pos)
                )))
            }
        }
        Ok(false)
    }

    fn line(&mut self, pos: u64) -> Result<Vec<u8>> {
        self.input.line(MAX_LINE).map_err(|e| {
            if e.message.contains("end of") {
                corrupt(format!("unterminated text argument at {}", self.at(pos)))
            } else {
                e
            }
        })
    }

    fn noncanonical(&self, opcode: &str, line: &[u8], pos: u64) -> crate::error::Refusal {
        unsupported(
            format!(
                "{opcode} argument \"{}\" at {} is not spelled as Python writes it",
                crate::error::printable(&String::from_utf8_lossy(line)),
                self.at(pos)
            ),
            "CPython's unpickler reads such spellings its own way (octal, hex, booleans); re-save the checkpoint with torch.save",
        )
    }

    fn line_number(&mut self, pos: u64) -> Result<u64> {
        let line = self.line(pos)?;
        std::str::from_utf8(&line)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| corrupt(format!("bad memo index at {}", self.at(pos))))
    }

    fn decimal(&mut self, digits: &[u8], pos: u64) -> Result<Value> {
        match text::decimal_to_le(digits) {
            Some(bytes) => self.long_from_le(bytes),
            None => Err(corrupt(format!("bad integer literal at {}", self.at(pos)))),
        }
    }

    /// A Python int from little-endian two's complement bytes. Redundant
    /// sign bytes are dropped first, so a small value spelled in nine bytes
    /// is the same int (and the same dict key) as it is to Python.
    fn long_from_le(&mut self, mut bytes: Vec<u8>) -> Result<Value> {
        text::trim_sign_bytes(&mut bytes);
        if bytes.len() <= 8 {
            let mut v: i64 = 0;
            for (i, b) in bytes.iter().enumerate() {
                v |= (*b as i64) << (8 * i);
            }
            if let Some(&last) = bytes.last() {
                let bits = 8 * bytes.len();
                if last & 0x80 != 0 && bits < 64 {
                    v -= 1i64 << bits;
                }
            }
            Ok(Value::Int(v))
        } else {
            self.alloc(Obj::BigInt(bytes))
        }
    }

    /// Python 2 `str` (STRING, BINSTRING, SHORT_BINSTRING): torch.load
    /// unpickles with `encoding="utf-8"`, so it is text, and a string that
    /// is not UTF-8 fails the whole load (`UnicodeDecodeError`).
    fn py2_string(&mut self, bytes: Vec<u8>, pos: u64) -> Result<Value> {
        match String::from_utf8(bytes) {
            Ok(s) => self.alloc(Obj::Str(s)),
            Err(_) => Err(corrupt(format!(
                "Python 2 string at {} is not UTF-8 (torch decodes it as UTF-8 and fails)",
                self.at(pos)
            ))),
        }
    }

    fn bad_target(&self, opcode: &str, target: Value, pos: u64) -> crate::error::Refusal {
        corrupt(format!(
            "{opcode} at {} applied to a {} (only built-in containers are allowed)",
            self.at(pos),
            self.m.heap.type_name(target)
        ))
    }

    fn extend_list(&mut self, target: Value, items: Vec<Value>, pos: u64) -> Result<()> {
        if let Value::Obj(id) = target {
            if let Some(Obj::List(l)) = self.m.heap.get_mut(id) {
                l.extend(items);
                return Ok(());
            }
        }
        Err(self.bad_target("APPEND", target, pos))
    }

    fn set_items(&mut self, target: Value, items: Vec<Value>, pos: u64) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(corrupt(format!(
                "SETITEMS at {} with an odd number of values",
                self.at(pos)
            )));
        }
        let pairs = || {
            items.chunks_exact(2).filter_map(|kv| match *kv {
                [k, v] => Some((k, v)),
                _ => None,
            })
        };
        let mut keys = Vec::with_capacity(items.len() / 2);
        for (k, _) in pairs() {
            self.check_hashable(&[k], "dict key", pos)?;
            keys.push(self.m.heap.key(k));
        }
        if let Value::Obj(id) = target {
            if let Some(Obj::Dict(d)) = self.m.heap.get_mut(id) {
                for (key, (k, v)) in keys.into_iter().zip(pairs()) {
                    d.insert(key, k, v);
                }
                return Ok(());
            }
        }
        Err(self.bad_target("SETITEM", target, pos))
    }

    /// Python fails to put an unhashable value in a dict or set; so does
    /// torch's load, so decant refuses the file too.
    fn check_hashable(&self, values: &[Value], what: &str, pos: u64) -> Result<()> {
        for &v in values {
            if let Some(t) = self.m.heap.unhashable(v) {
                return Err(corrupt(format!(
                    "{what} at {} is unhashable ({t}): Python fails to load this pickle",
                    self.at(pos)
                )));
            }
        }
        Ok(())
    }

    fn global(&mut self, module: &[u8], name: &[u8], pos: u64) -> Result<Value> {
        let valid = |s: &[u8]| {
            !s.is_empty()
                && s.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
        };
        // A dotted name (`torch` + `_utils._rebuild_tensor_v2`) is shown as
        // module:name so it is not mistaken for the allowlisted global.
        let sep = if name.contains(&b'.') { ":" } else { "." };
        let display = format!(
            "{}{sep}{}",
            String::from_utf8_lossy(module),
            String::from_utf8_lossy(name)
        );
        // Covers `\r\n` line endings, empty names and non-identifiers,
        // which torch rejects or which only a crafted file contains. Valid
        // names are ASCII, so UTF-8.
        let (true, true, Ok(module), Ok(name)) = (
            valid(module),
            valid(name),
            std::str::from_utf8(module),
            std::str::from_utf8(name),
        ) else {
            return Err(refuse_global(&display, &self.at(pos)));
        };
        match globals::resolve(module, name, &self.at(pos))? {
            Some(g) => {
                self.m.globals.insert(display);
                self.alloc(Obj::Global(g))
            }
            None => {
                let mut refusal = refuse_global(&display, &self.at(pos));
                // CPython maps Python 2 names in protocol 0-2 streams: say
                // what a plain unpickler would actually import.
                if self.protocol < 3 {
                    if let Some((m, n)) = compat::python3_name(module, name) {
                        refusal.message.push_str(&format!(
                            " (Python 3 loads it as {})",
                            crate::error::printable(&format!("{m}.{n}"))
                        ));
                    }
                }
                Err(refusal)
            }
        }
    }

    /// BUILD, as torch's weights-only loader applies it: `OrderedDict`
    /// instance state goes to `inst.__dict__` (that is how
    /// `model.state_dict()` attaches `_metadata`, which is not converted).
    /// Every other target is refused: torch re-points a tensor with
    /// `set_(*state)` and refuses plain dicts, and decant converts neither.
    fn build(&mut self, target: Value, state: Value, pos: u64) -> Result<()> {
        match self.m.heap.obj(target) {
            Some(Obj::Dict(d)) if d.ordered => {
                let Some(Obj::Dict(state)) = self.m.heap.obj(state) else {
                    return Err(unsupported(
                        format!(
                            "BUILD at {} gives an OrderedDict a {} as state",
                            self.at(pos),
                            self.m.heap.type_name(state)
                        ),
                        "torch.save writes OrderedDict state as a dict of attributes",
                    ));
                };
                // An attribute named like an OrderedDict method (`keys`,
                // `items`) shadows it for code that reads the dict, so the
                // entries would depend on who reads them.
                for &(k, _) in &state.entries {
                    match self.m.heap.str(k) {
                        Some(name) if !ORDERED_DICT_ATTRIBUTES.contains(&name) => {}
                        _ => {
                            return Err(unsupported(
                                format!(
                                    "BUILD at {} sets OrderedDict attribute {}",
                                    self.at(pos),
                                    self.describe_key(k)
                                ),
                                "only attributes such as _metadata that no reader mistakes for entries are accepted",
                            ))
                        }
                    }
                }
                Ok(())
            }
            _ => Err(unsupported(
                format!(
                    "BUILD at {} sets state on a {}",
                    self.at(pos),
                    self.type_name_of(target)
                ),
                "only plain state dicts are converted; save model.state_dict(), not the model",
            )),
        }
    }

    /// A type name that tells `dict` from `collections.OrderedDict`.
    fn type_name_of(&self, v: Value) -> &'static str {
        match self.m.heap.obj(v) {
            Some(Obj::Dict(d)) if d.ordered => "collections.OrderedDict",
            _ => self.m.heap.type_name(v),
        }
    }

    fn describe_key(&self, k: Value) -> String {
        match self.m.heap.str(k) {
            Some(s) => format!("\"{}\"", crate::error::printable(s)),
            None => format!("with a {} name", self.m.heap.type_name(k)),
        }
    }

    /// NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args)`. For the containers
    /// decant models, `__new__` ignores its arguments (`__init__` would use
    /// them, and is not called), so arguments are refused rather than read
    /// one way or the other.
    fn new_object(&mut self, cls: Value, args: Value, pos: u64) -> Result<Value> {
        let no_args = self.m.heap.tuple(args).is_some_and(<[Value]>::is_empty);
        let ignoring_new = |g: &Global| match g {
            Global::OrderedDict => Some("collections.OrderedDict"),
            Global::Set => Some("set"),
            Global::Bytearray => Some("bytearray"),
            _ => None,
        };
        match self.m.heap.obj(cls) {
            Some(Obj::Global(g)) if !no_args && ignoring_new(g).is_some() => Err(unsupported(
                format!(
                    "NEWOBJ at {} passes arguments that {}.__new__ ignores",
                    self.at(pos),
                    ignoring_new(g).unwrap_or_default()
                ),
                "torch.save never writes this; the file was crafted",
            )),
            // Classes whose `__new__` builds what a call would.
            Some(Obj::Global(
                Global::OrderedDict
                | Global::Set
                | Global::Bytearray
                | Global::ParameterClass
                | Global::TorchSize
                | Global::TorchDevice,
            )) => self.call(cls, args, pos),
            // torch calls `cls.__new__(cls, *args)`, which fails for the
            // rebuild functions, dtypes and storage classes.
            _ => Err(unsupported(
                format!(
                    "NEWOBJ at {} on a {}, which torch cannot instantiate this way",
                    self.at(pos),
                    self.type_name_of(cls)
                ),
                "torch.save never writes this; the file was crafted",
            )),
        }
    }

    fn args<'a>(&'a self, args: Value, what: &str, pos: u64) -> Result<&'a [Value]> {
        self.m.heap.tuple(args).ok_or_else(|| {
            corrupt(format!(
                "{what} at {} called with a {} instead of an argument tuple",
                self.at(pos),
                self.m.heap.type_name(args)
            ))
        })
    }

    /// Checks that `args` has one of the counts in `ok` and returns its
    /// first `N` (at most the smallest count in `ok`).
    fn arity<const N: usize>(
        &self,
        what: &str,
        args: &[Value],
        ok: &[usize],
        pos: u64,
    ) -> Result<[Value; N]> {
        let first = args.get(..N).and_then(|a| <[Value; N]>::try_from(a).ok());
        match first {
            Some(first) if ok.contains(&args.len()) => Ok(first),
            _ => Err(corrupt(format!(
                "{what} at {} called with {} arguments",
                self.at(pos),
                args.len()
            ))),
        }
    }

    /// REDUCE / NEWOBJ / OBJ / INST: call an allowlisted global.
    fn call(&mut self, func: Value, args: Value, pos: u64) -> Result<Value> {
        let Some(Obj::Global(g)) = self.m.heap.obj(func) else {
            return Err(corrupt(format!(
                "call at {} of a {}, which is not callable",
                self.at(pos),
                self.m.heap.type_name(func)
            )));
        };
        let g = *g;
        let a = self.args(args, "call", pos)?.to_vec();
        match g {
            Global::RebuildTensor => {
                let view = self.arity("_rebuild_tensor", &a, &[4], pos)?;
                self.rebuild_tensor(view, None, pos)
            }
            Global::RebuildTensorV2 => {
                let [storage, offset, shape, stride, requires_grad] =
                    self.arity("_rebuild_tensor_v2", &a, &[6, 7], pos)?;
                self.check_tensor_metadata(a.get(6).copied(), pos)?;
                let t = self.rebuild_tensor([storage, offset, shape, stride], None, pos)?;
                self.check_requires_grad(t, requires_grad, "_rebuild_tensor_v2", pos)?;
                Ok(t)
            }
            Global::RebuildTensorV3 => {
                let [storage, offset, shape, stride, requires_grad, _hooks, dtype] =
                    self.arity("_rebuild_tensor_v3", &a, &[7, 8], pos)?;
                self.check_tensor_metadata(a.get(7).copied(), pos)?;
                let dtype = match self.m.heap.obj(dtype) {
                    Some(Obj::Global(Global::Dtype(d))) => *d,
                    Some(Obj::Global(Global::OtherDtype(what))) => {
                        return Err(globals::refuse_dtype(what, "torch", what, &self.at(pos)))
                    }
                    _ => {
                        return Err(corrupt(format!(
                            "_rebuild_tensor_v3 at {} without a dtype",
                            self.at(pos)
                        )))
                    }
                };
                let t = self.rebuild_tensor([storage, offset, shape, stride], Some(dtype), pos)?;
                self.check_requires_grad(t, requires_grad, "_rebuild_tensor_v3", pos)?;
                // torch creates the tensor with requires_grad and then calls
                // set_ on it, which fails for a leaf that requires grad.
                if requires_grad == Value::Bool(true) {
                    return Err(corrupt(format!(
                        "_rebuild_tensor_v3 at {}: requires_grad=True (torch refuses to load it: set_ on a leaf that requires grad)",
                        self.at(pos)
                    )));
                }
                Ok(t)
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let (n, what) = if g == Global::RebuildParameter {
                    (3, "_rebuild_parameter")
                } else {
                    (4, "_rebuild_parameter_with_state")
                };
                let [tensor, requires_grad, _hooks] = self.arity(what, &a, &[n], pos)?;
                self.expect_tensor(tensor, what, pos)?;
                self.check_requires_grad(tensor, requires_grad, what, pos)?;
                if let Some(&state) = a.get(3) {
                    self.check_tensor_state(state, what, pos)?;
                }
                Ok(tensor)
            }
            Global::RebuildFromTypeV2 => {
                let [func, cls, args, state] =
                    self.arity("_rebuild_from_type_v2", &a, &[4], pos)?;
                if !matches!(
                    self.m.heap.obj(cls),
                    Some(Obj::Global(Global::TensorClass | Global::ParameterClass))
                ) {
                    return Err(unsupported(
                        format!("tensor subclass at {}", self.at(pos)),
                        "only torch.Tensor and nn.Parameter are converted",
                    ));
                }
                match self.m.heap.obj(func) {
                    Some(Obj::Global(
                        Global::RebuildTensor | Global::RebuildTensorV2 | Global::RebuildTensorV3,
                    )) => {}
                    _ => {
                        return Err(corrupt(format!(
                        "_rebuild_from_type_v2 at {} with a function that is not a tensor rebuild",
                        self.at(pos)
                    )))
                    }
                }
                // torch applies the state with setattr after rebuilding.
                self.check_tensor_state(state, "_rebuild_from_type_v2", pos)?;
                let t = self.call(func, args, pos)?;
                Ok(t)
            }
            Global::OrderedDict => {
                self.arity::<0>("OrderedDict", &a, &[0, 1], pos)?;
                let d = self.alloc(Obj::Dict(Dict::ordered()))?;
                if let Some(&items) = a.first() {
                    let pairs = self.ordered_dict_items(items, pos)?;
                    self.set_items(d, pairs, pos)?;
                }
                Ok(d)
            }
            Global::TorchSize => {
                self.arity::<0>("torch.Size", &a, &[0, 1], pos)?;
                let dims = match a.first() {
                    None => Vec::new(),
                    Some(&t) => self.int_tuple(t, "torch.Size", pos)?,
                };
                let items = dims.into_iter().map(|d| Value::Int(d as i64)).collect();
                self.alloc(Obj::Tuple(items))
            }
            Global::TorchDevice => {
                self.check_device(&a, pos)?;
                self.alloc(Obj::Opaque("torch.device"))
            }
            Global::CodecsEncode => {
                let [s, enc] = self.arity("_codecs.encode", &a, &[2], pos)?;
                let (Some(s), Some(enc)) = (self.m.heap.str(s), self.m.heap.str(enc)) else {
                    return Err(corrupt(format!(
                        "_codecs.encode at {} needs two strings",
                        self.at(pos)
                    )));
                };
                if enc != "latin1" && enc != "latin-1" {
                    return Err(unsupported(
                        format!("_codecs.encode to {} at {}", crate::error::printable(enc), self.at(pos)),
                        "protocol 2 encodes bytes as latin1; other codecs are not needed by checkpoints",
                    ));
                }
                let bytes: Option<Vec<u8>> =
                    s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                let bytes = bytes.ok_or_else(|| {
                    corrupt(format!(
                        "_codecs.encode at {}: not latin1 text",
                        self.at(pos)
                    ))
                })?;
                self.alloc(Obj::Bytes(bytes))
            }
            Global::Set => {
                self.arity::<0>("set", &a, &[0, 1], pos)?;
                let items = match a.first() {
                    None => Vec::new(),
                    Some(&v) => match self.m.heap.obj(v) {
                        Some(Obj::List(l) | Obj::Tuple(l) | Obj::Set(l) | Obj::FrozenSet(l)) => {
                            l.clone()
                        }
                        _ => {
                            return Err(corrupt(format!(
                                "set at {} built from a non-sequence",
                                self.at(pos)
                            )))
                        }
                    },
                };
                self.check_hashable(&items, "set element", pos)?;
                self.alloc(Obj::Set(items))
            }
            Global::Bytearray => {
                self.arity::<0>("bytearray", &a, &[0, 1], pos)?;
                let bytes = match a.first().map(|&v| self.m.heap.obj(v)) {
                    None => Vec::new(),
                    Some(Some(Obj::Bytes(b) | Obj::ByteArray(b))) => b.clone(),
                    _ => {
                        return Err(corrupt(format!(
                            "bytearray at {} built from a non-bytes value",
                            self.at(pos)
                        )))
                    }
                };
                self.alloc(Obj::ByteArray(bytes))
            }
            Global::ParameterClass => {
                // `Parameter(data, requires_grad=True)`; without data it
                // would be an empty tensor torch.save never writes.
                let [data] = self.arity("torch.nn.parameter.Parameter", &a, &[1, 2], pos)?;
                self.expect_tensor(data, "torch.nn.parameter.Parameter", pos)?;
                let requires_grad = a.get(1).copied().unwrap_or(Value::Bool(true));
                self.check_requires_grad(data, requires_grad, "torch.nn.parameter.Parameter", pos)?;
                Ok(data)
            }
            Global::TensorClass
            | Global::StorageClass { .. }
            | Global::Dtype(_)
            | Global::OtherDtype(_) => Err(unsupported(
                format!(
                    "call of a torch {} at {}",
                    g.value_type_name(),
                    self.at(pos)
                ),
                "torch.save never constructs these by calling them; the file was crafted",
            )),
        }
    }

    /// `_rebuild_tensor_v2`'s optional metadata carries the neg/conj bits;
    /// a set bit would change the values, so only an empty dict is accepted.
    fn check_tensor_metadata(&self, metadata: Option<Value>, pos: u64) -> Result<()> {
        match metadata {
            None | Some(Value::None) => Ok(()),
            Some(v) => match self.m.heap.obj(v) {
                Some(Obj::Dict(d)) if d.entries.is_empty() => Ok(()),
                _ => Err(unsupported(
                    format!("tensor metadata (neg/conj bit) at {}", self.at(pos)),
                    "resolve the view in PyTorch (tensor.resolve_neg()) before saving",
                )),
            },
        }
    }

    /// torch sets `requires_grad` from this argument: anything but a bool
    /// fails ("requires_grad must be a bool"), and so does `True` on a tensor
    /// that is not floating point. decant refuses what torch cannot load.
    fn check_requires_grad(&self, tensor: Value, flag: Value, what: &str, pos: u64) -> Result<()> {
        let Value::Bool(requires_grad) = flag else {
            return Err(corrupt(format!(
                "{what} at {}: requires_grad is a {}, not a bool (torch refuses to load it)",
                self.at(pos),
                self.m.heap.type_name(flag)
            )));
        };
        if let Some(Obj::Tensor(t)) = self.m.heap.obj(tensor) {
            if requires_grad && !t.dtype.is_floating_point() {
                return Err(corrupt(format!(
                    "{what} at {}: requires_grad on a {} tensor (torch refuses to load it: only floating point tensors can require gradients)",
                    self.at(pos),
                    t.dtype.safetensors_name()
                )));
            }
        }
        Ok(())
    }

    /// The state `_rebuild_parameter_with_state` and `_rebuild_from_type_v2`
    /// apply with `setattr` (torch's `_utils._set_obj_state`): `None`, a dict,
    /// or a `(dict, slots)` pair of dicts or `None`s. Attribute names that
    /// are tensor data descriptors would change or replace the tensor (or
    /// fail), so they are refused; any other name is an inert Python
    /// attribute (transformers' `_is_hf_initialized`, say).
    fn check_tensor_state(&self, state: Value, what: &str, pos: u64) -> Result<()> {
        let parts: Vec<Value> = match self.m.heap.obj(state) {
            _ if state == Value::None => return Ok(()),
            Some(Obj::Dict(_)) => vec![state],
            Some(Obj::Tuple(t)) if t.len() == 2 => t.clone(),
            _ => {
                return Err(unsupported(
                    format!(
                        "{what} at {}: tensor state is a {}, not a dict of attributes",
                        self.at(pos),
                        self.type_name_of(state)
                    ),
                    "torch.save writes a tensor's Python attributes as a dict",
                ))
            }
        };
        for part in parts {
            if part == Value::None {
                continue;
            }
            let Some(Obj::Dict(d)) = self.m.heap.obj(part) else {
                return Err(unsupported(
                    format!(
                        "{what} at {}: tensor state holds a {} where a dict of attributes belongs",
                        self.at(pos),
                        self.type_name_of(part)
                    ),
                    "torch.save writes a tensor's Python attributes as a dict",
                ));
            };
            for &(k, _) in &d.entries {
                match self.m.heap.str(k) {
                    Some(name) if is_inert_tensor_attribute(name) => {}
                    _ => {
                        return Err(unsupported(
                            format!(
                                "{what} at {}: tensor state sets attribute {}, which torch applies with setattr",
                                self.at(pos),
                                self.describe_key(k)
                            ),
                            "such state replaces or rewrites the tensor after it is loaded (or fails); re-save the plain tensor",
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// `torch.device(...)` is dropped as a value, but torch fails the load
    /// on an invalid device, so only forms torch 2.15 accepts are read:
    /// `"type"` or `"type:N"`, or `("type", N)`, for common device types,
    /// with an index torch keeps (it stores it in 8 bits: `cuda:128` becomes
    /// `cuda:-128`).
    fn check_device(&self, a: &[Value], pos: u64) -> Result<()> {
        const TYPES: &[&str] = &["cpu", "cuda", "meta", "mps", "xpu", "hpu", "xla", "mtia"];
        let index_ok = |i: &str| {
            text::is_canonical_decimal(i.as_bytes())
                && !i.starts_with('-')
                && i.parse::<u8>().is_ok_and(|n| n < 128)
        };
        let ok = match a {
            [spec] => self
                .m
                .heap
                .str(*spec)
                .is_some_and(|s| match s.split_once(':') {
                    None => TYPES.contains(&s),
                    Some((t, i)) => TYPES.contains(&t) && index_ok(i),
                }),
            [spec, Value::Int(i)] => self
                .m
                .heap
                .str(*spec)
                .is_some_and(|s| TYPES.contains(&s) && (0..128).contains(i)),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(unsupported(
                format!("torch.device at {} with arguments decant does not read", self.at(pos)),
                "torch.save writes devices as torch.device(\"cuda:0\"); other forms may fail torch's load",
            ))
        }
    }

    /// `OrderedDict(x)`: a dict's entries, or a list or tuple of 2-item
    /// lists or tuples (how Python 2-era torch pickled state dicts), as
    /// alternating keys and values.
    fn ordered_dict_items(&self, items: Value, pos: u64) -> Result<Vec<Value>> {
        let bad = || {
            unsupported(
                format!(
                    "OrderedDict at {} built from a {}",
                    self.at(pos),
                    self.type_name_of(items)
                ),
                "decant reads OrderedDicts built from a list of (key, value) pairs or from a dict",
            )
        };
        match self.m.heap.obj(items) {
            Some(Obj::Dict(d)) => Ok(d.entries.iter().flat_map(|&(k, v)| [k, v]).collect()),
            Some(Obj::List(pairs) | Obj::Tuple(pairs)) => {
                let mut out = Vec::with_capacity(2 * pairs.len());
                for &pair in pairs {
                    match self.m.heap.obj(pair) {
                        Some(Obj::List(kv) | Obj::Tuple(kv)) if kv.len() == 2 => {
                            out.extend_from_slice(kv)
                        }
                        _ => return Err(bad()),
                    }
                }
                Ok(out)
            }
            _ => Err(bad()),
        }
    }

    fn expect_tensor(&self, v: Value, what: &str, pos: u64) -> Result<()> {
        match self.m.heap.obj(v) {
            Some(Obj::Tensor(_)) => Ok(()),
            _ => Err(corrupt(format!(
                "{what} at {} wraps a {}, not a tensor",
                self.at(pos),
                self.m.heap.type_name(v)
            ))),
        }
    }

    fn int(&self, v: Value, what: &str, pos: u64) -> Result<u64> {
        match v {
            Value::Int(i) if i >= 0 => Ok(i as u64),
            _ => Err(corrupt(format!(
                "{what} at {}: expected a non-negative integer, found {}",
                self.at(pos),
                self.m.heap.type_name(v)
            ))),
        }
    }

    fn int_tuple(&self, v: Value, what: &str, pos: u64) -> Result<Vec<u64>> {
        let items = self
            .m
            .heap
            .tuple(v)
            .ok_or_else(|| corrupt(format!("{what} at {}: expected a tuple", self.at(pos))))?;
        if items.len() > MAX_DIMS {
            return Err(limit(format!(
                "{what} at {} has {} dimensions (at most {MAX_DIMS})",
                self.at(pos),
                items.len()
            )));
        }
        items.iter().map(|&i| self.int(i, what, pos)).collect()
    }

    /// Builds a tensor and checks that the view lies inside its storage.
    /// `(storage, storage_offset, size, stride)`, the arguments every
    /// tensor rebuild function starts with.
    fn rebuild_tensor(
        &mut self,
        [storage, offset, shape, stride]: [Value; 4],
        dtype: Option<DType>,
        pos: u64,
    ) -> Result<Value> {
        let storage = match self.m.heap.obj(storage) {
            Some(Obj::Storage(s)) => *s,
            _ => {
                return Err(corrupt(format!(
                    "tensor at {} has a {} where its storage belongs",
                    self.at(pos),
                    self.m.heap.type_name(storage)
                )))
            }
        };
        let offset = self.int(offset, "tensor storage offset", pos)?;
        let shape = self.int_tuple(shape, "tensor shape", pos)?;
        let stride = self.int_tuple(stride, "tensor stride", pos)?;
        if shape.len() != stride.len() {
            return Err(corrupt(format!(
                "tensor at {} has {} sizes but {} strides",
                self.at(pos),
                shape.len(),
                stride.len()
            )));
        }
        // Every storage value refers to a declaration made before it.
        let decl = self.m.storages.decls.get(storage.decl).ok_or_else(|| {
            corrupt(format!(
                "tensor at {} refers to an undeclared storage",
                self.at(pos)
            ))
        })?;
        let dtype = dtype.unwrap_or(decl.dtype);
        let itemsize = dtype.size();
        let overflow = || {
            corrupt(format!(
                "tensor at {}: size arithmetic overflows",
                self.at(pos)
            ))
        };
        let mut numel: u64 = 1;
        let mut last: u64 = 0;
        for (&size, &st) in shape.iter().zip(&stride) {
            numel = numel.checked_mul(size).ok_or_else(overflow)?;
            if size > 0 {
                last = (size - 1)
                    .checked_mul(st)
                    .and_then(|x| x.checked_add(last))
                    .ok_or_else(overflow)?;
            }
        }
        // Bytes the view needs from the start of its storage.
        let needed = if numel == 0 {
            offset.checked_mul(itemsize).ok_or_else(overflow)?
        } else {
            offset
                .checked_add(last)
                .and_then(|x| x.checked_add(1))
                .and_then(|x| x.checked_mul(itemsize))
                .ok_or_else(overflow)?
        };
        numel.checked_mul(itemsize).ok_or_else(overflow)?;
        if needed > storage.nbytes {
            return Err(corrupt(format!(
                "tensor at {} reaches byte {needed} of storage {} which has {} bytes",
                self.at(pos),
                crate::error::printable(&decl.key),
                storage.nbytes
            )));
        }
        self.alloc(Obj::Tensor(TensorDesc {
            storage,
            dtype,
            offset,
            shape,
            stride,
        }))
    }

    fn persistent_load(&mut self, pid: Value, pos: u64) -> Result<Value> {
        if !self.m.persistent_ids {
            return Err(corrupt(format!(
                "storage reference at {} outside the checkpoint's main pickle (torch reads this pickle without storage references and fails)",
                self.at(pos)
            )));
        }
        let Some(items) = self.m.heap.tuple(pid).map(<[Value]>::to_vec) else {
            return Err(corrupt(format!(
                "persistent id at {} is a {}, not a tuple",
                self.at(pos),
                self.m.heap.type_name(pid)
            )));
        };
        let tag = items.first().and_then(|&v| self.m.heap.str(v));
        match tag {
            Some("storage") => {}
            Some("module") => {
                return Err(unsupported(
                    format!(
                        "pickled module source at {} (a whole-model save)",
                        self.at(pos)
                    ),
                    "save model.state_dict() instead of the model object",
                ))
            }
            _ => {
                return Err(corrupt(format!(
                    "persistent id at {} is not a storage reference",
                    self.at(pos)
                )))
            }
        }
        let (cls, key, location, numel, view) = match (self.m.pid_style, items.as_slice()) {
            (PidStyle::Zip, &[_, cls, key, location, numel]) => (cls, key, location, numel, None),
            (PidStyle::Legacy, &[_, cls, key, location, numel, view]) => {
                (cls, key, location, numel, Some(view))
            }
            (style, _) => {
                let expected = match style {
                    PidStyle::Zip => 5,
                    PidStyle::Legacy => 6,
                };
                return Err(corrupt(format!(
                    "storage reference at {} has {} fields, expected {expected}",
                    self.at(pos),
                    items.len()
                )));
            }
        };
        let (dtype, untyped) = match self.m.heap.obj(cls) {
            Some(Obj::Global(Global::StorageClass { dtype, untyped })) => (*dtype, *untyped),
            _ => {
                return Err(corrupt(format!(
                    "storage reference at {} names no storage class",
                    self.at(pos)
                )))
            }
        };
        if untyped && self.m.pid_style == PidStyle::Legacy {
            // torch's legacy loader reads `storage_type.dtype`, which the
            // untyped storage class lacks: torch 2.15 cannot load such files.
            return Err(unsupported(
                format!(
                    "legacy-format storage of type torch.storage.UntypedStorage at {}",
                    self.at(pos)
                ),
                "torch cannot load legacy-format files with untyped storages either; re-save in the zip format",
            ));
        }
        let key = self.storage_key(key, pos)?;
        if self.m.heap.str(location).is_none() {
            return Err(corrupt(format!(
                "storage reference at {} has no location string",
                self.at(pos)
            )));
        }
        let numel = self.int(numel, "storage size", pos)?;
        let nbytes = if untyped {
            numel
        } else {
            numel
                .checked_mul(dtype.size())
                .ok_or_else(|| corrupt(format!("storage size at {} overflows", self.at(pos))))?
        };
        let decl = StorageDecl {
            key: key.clone(),
            dtype,
            untyped,
            nbytes,
        };
        // torch's legacy loader keeps root storages and views in one dict
        // (`deserialized_objects`): a root key that is also a view key means
        // the view to torch (and the other way round).
        if self.m.storages.views.contains_key(&key) {
            return Err(self.shared_legacy_key(&key, pos));
        }
        let index = match self.m.storages.by_key.get(&key) {
            Some(&i) => {
                if self.m.storages.decls.get(i) != Some(&decl) {
                    return Err(corrupt(format!(
                        "storage {} is declared again at {} with another type or size",
                        crate::error::printable(&key),
                        self.at(pos)
                    )));
                }
                i
            }
            None => {
                let i = self.m.storages.decls.len();
                self.m.storages.decls.push(decl);
                self.m.storages.by_key.insert(key, i);
                i
            }
        };
        let whole = StorageRef {
            decl: index,
            byte_offset: 0,
            nbytes,
        };
        let storage = match view {
            Some(view) if view != Value::None => self.legacy_view(whole, dtype, view, pos)?,
            _ => whole,
        };
        self.alloc(Obj::Storage(storage))
    }

    /// Legacy `view_metadata = (view_key, offset, size)`, in elements.
    fn legacy_view(
        &mut self,
        root: StorageRef,
        dtype: DType,
        meta: Value,
        pos: u64,
    ) -> Result<StorageRef> {
        let Some(&[key, offset, size]) = self.m.heap.tuple(meta) else {
            return Err(corrupt(format!(
                "bad storage view metadata at {}",
                self.at(pos)
            )));
        };
        let key = self.storage_key(key, pos)?;
        if self.m.storages.by_key.contains_key(&key) {
            return Err(self.shared_legacy_key(&key, pos));
        }
        let offset = self.int(offset, "storage view offset", pos)?;
        let size = self.int(size, "storage view size", pos)?;
        let byte_offset = offset.checked_mul(dtype.size());
        let nbytes = size.checked_mul(dtype.size());
        let view = match (byte_offset, nbytes) {
            (Some(o), Some(n)) if o.checked_add(n).is_some_and(|end| end <= root.nbytes) => {
                StorageRef {
                    decl: root.decl,
                    byte_offset: o,
                    nbytes: n,
                }
            }
            _ => {
                return Err(corrupt(format!(
                    "storage view at {} reaches past its storage",
                    self.at(pos)
                )))
            }
        };
        match self.m.storages.views.get(&key) {
            Some(existing) if *existing != view => Err(corrupt(format!(
                "storage view {} is declared again at {} differently",
                crate::error::printable(&key),
                self.at(pos)
            ))),
            _ => {
                self.m.storages.views.insert(key, view);
                Ok(view)
            }
        }
    }

    fn shared_legacy_key(&self, key: &str, pos: u64) -> crate::error::Refusal {
        corrupt(format!(
            "legacy storage key {} at {} names both a storage and a view of one (torch keeps both in one namespace and reads the file differently)",
            crate::error::printable(key),
            self.at(pos)
        ))
    }

    /// Storage keys become record names (`data/<key>`), so only plain names
    /// are accepted: no separators, no `..`.
    fn storage_key(&self, v: Value, pos: u64) -> Result<String> {
        let key =
            self.m.heap.str(v).ok_or_else(|| {
                corrupt(format!("storage key at {} is not a string", self.at(pos)))
            })?;
        let plain = !key.is_empty()
            && key.len() <= 64
            && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !plain {
            return Err(corrupt(format!(
                "storage key \"{}\" at {} is not a plain name",
                crate::error::printable(key),
                self.at(pos)
            )));
        }
        Ok(key.to_string())
    }
}

#[cfg(test)]
mod tests;
