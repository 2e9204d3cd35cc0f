//! The pickle VM's object model.
//!
//! Objects live in an arena and refer to each other by index. That keeps
//! Python's sharing semantics (the memo hands out the same object twice, lists
//! and dicts mutate in place) without reference counting: no cycle can leak,
//! and dropping the arena never recurses, however deep an attacker nests.

use super::globals::Global;
use crate::dtype::DType;
use crate::error::{limit, Result};
use std::collections::HashMap;

/// Index of an object in the [`Heap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjId(pub u32);

/// A pickle value: scalars inline, everything else by reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Obj(ObjId),
}

/// A storage as declared by a persistent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageDecl {
    /// Record key (`data/<key>` in a zip, the legacy storage key).
    pub key: String,
    /// Element type of the storage class (`U8` for untyped storages).
    pub dtype: DType,
    /// `torch.storage.UntypedStorage` (a byte buffer viewed by
    /// `_rebuild_tensor_v3`'s dtype) rather than a typed storage class.
    pub untyped: bool,
    /// Total size in bytes.
    pub nbytes: u64,
}

/// A storage value: a whole declared storage, or (legacy format) a byte
/// range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StorageRef {
    /// Index into the VM's storage declarations.
    pub decl: usize,
    pub byte_offset: u64,
    pub nbytes: u64,
}

/// A tensor: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorDesc {
    pub storage: StorageRef,
    pub dtype: DType,
    /// In elements, from the start of `storage`.
    pub offset: u64,
    pub shape: Vec<u64>,
    /// In elements.
    pub stride: Vec<u64>,
}

impl TensorDesc {
    /// Number of elements, or `None` if it overflows (never for a tensor
    /// the VM built: `rebuild_tensor` refuses those).
    pub fn checked_numel(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |n, &size| n.checked_mul(size))
    }

    /// Bytes of the elements laid out contiguously, or `None` if that
    /// overflows (as for [`TensorDesc::checked_numel`]).
    pub fn nbytes(&self) -> Option<u64> {
        self.checked_numel()?.checked_mul(self.dtype.size())
    }

    /// Number of elements, saturating at `u64::MAX` (which no tensor the VM
    /// built reaches); arithmetic uses [`TensorDesc::nbytes`].
    pub fn numel(&self) -> u64 {
        self.checked_numel().unwrap_or(u64::MAX)
    }

    /// Whether the elements lie in the storage in row-major order without gaps.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1u64;
        for (&size, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if size != 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(size);
        }
        true
    }
}

/// Hashable identity of a dict key, following Python's equality for the
/// types state dicts use (`1 == True`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    None,
    Int(i64),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Ident(ObjId),
}

/// An insertion-ordered dict with Python's replace-in-place semantics.
#[derive(Debug, Default)]
pub struct Dict {
    pub entries: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
    /// A `collections.OrderedDict` rather than a plain `dict`: torch's
    /// weights-only loader lets BUILD set attributes on the former only.
    pub ordered: bool,
}

impl Dict {
    /// An empty `collections.OrderedDict`.
    pub fn ordered() -> Self {
        Dict {
            ordered: true,
            ..Dict::default()
        }
    }

    pub fn insert(&mut self, key: Key, k: Value, v: Value) {
        // `index` holds positions in `entries`, which only grows.
        if let Some(entry) = self.index.get(&key).and_then(|&i| self.entries.get_mut(i)) {
            entry.1 = v;
            return;
        }
        self.index.insert(key, self.entries.len());
        self.entries.push((k, v));
    }
}

/// A heap object.
#[derive(Debug)]
pub enum Obj {
    Str(String),
    Bytes(Vec<u8>),
    /// An integer beyond i64, as little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    Set(Vec<Value>),
    /// A `frozenset` (the FROZENSET opcode): hashable, unlike a set.
    FrozenSet(Vec<Value>),
    /// A `bytearray` (BYTEARRAY8, `builtins.bytearray`): unhashable,
    /// unlike bytes.
    ByteArray(Vec<u8>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorDesc),
    /// An inert value of an allowlisted type decant does not model
    /// (`torch.device`); the string is its type name.
    Opaque(&'static str),
}

/// The object arena.
#[derive(Debug, Default)]
pub struct Heap {
    objs: Vec<Obj>,
}

impl Heap {
    /// Adds an object; refused once ids would no longer fit in 32 bits
    /// (a wrapped id would name an earlier object).
    pub fn alloc(&mut self, obj: Obj) -> Result<Value> {
        let id = u32::try_from(self.objs.len())
            .map_err(|_| limit(format!("the pickle builds more than {} objects", u32::MAX)))?;
        self.objs.push(obj);
        Ok(Value::Obj(ObjId(id)))
    }

    /// The object with this id (every id the heap hands out has one).
    pub fn get(&self, id: ObjId) -> Option<&Obj> {
        self.objs.get(usize::try_from(id.0).ok()?)
    }

    pub fn get_mut(&mut self, id: ObjId) -> Option<&mut Obj> {
        self.objs.get_mut(usize::try_from(id.0).ok()?)
    }

    /// The object behind a value, if it is one.
    pub fn obj(&self, v: Value) -> Option<&Obj> {
        match v {
            Value::Obj(id) => self.get(id),
            _ => None,
        }
    }

    pub fn str(&self, v: Value) -> Option<&str> {
        match self.obj(v) {
            Some(Obj::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn tuple(&self, v: Value) -> Option<&[Value]> {
        match self.obj(v) {
            Some(Obj::Tuple(t)) => Some(t),
            _ => None,
        }
    }

    /// The dict-key identity of a value.
    pub fn key(&self, v: Value) -> Key {
        match v {
            Value::None => Key::None,
            Value::Bool(b) => Key::Int(b as i64),
            Value::Int(i) => Key::Int(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Key::Int(f as i64),
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Obj(id) => match self.get(id) {
                Some(Obj::Str(s)) => Key::Str(s.clone()),
                Some(Obj::Bytes(b)) => Key::Bytes(b.clone()),
                _ => Key::Ident(id),
            },
        }
    }

    /// Whether Python could use `v` as a dict key or set element: lists,
    /// dicts, sets and bytearrays cannot, nor tuples holding one (Python
    /// raises `TypeError: unhashable type`). Returns the offending type.
    pub fn unhashable(&self, v: Value) -> Option<&'static str> {
        // Scalars and strings first, without allocating: keys and set
        // elements are checked one by one, often by the thousand.
        let members = match self.obj(v) {
            Some(Obj::List(_) | Obj::Dict(_) | Obj::Set(_) | Obj::ByteArray(_)) => {
                return Some(self.type_name(v))
            }
            Some(Obj::Tuple(items) | Obj::FrozenSet(items)) => items,
            _ => return None,
        };
        // Each object once: tuples can share members (a memo bomb of
        // nested tuples must not take exponential time).
        let mut seen = std::collections::HashSet::new();
        let mut pending = members.to_vec();
        while let Some(v) = pending.pop() {
            let Value::Obj(id) = v else { continue };
            match self.get(id) {
                Some(Obj::List(_) | Obj::Dict(_) | Obj::Set(_) | Obj::ByteArray(_)) => {
                    return Some(self.type_name(v))
                }
                Some(Obj::Tuple(items) | Obj::FrozenSet(items)) if seen.insert(id) => {
                    pending.extend_from_slice(items)
                }
                _ => {}
            }
        }
        None
    }

    /// A short Python-ish type name, for reports and messages.
    pub fn type_name(&self, v: Value) -> &'static str {
        match v {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Obj(id) => match self.get(id) {
                // Not an id this heap handed out.
                None => "object",
                Some(obj) => Self::obj_type_name(obj),
            },
        }
    }

    fn obj_type_name(obj: &Obj) -> &'static str {
        match obj {
            Obj::Str(_) => "str",
            Obj::Bytes(_) => "bytes",
            Obj::BigInt(_) => "int",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Set(_) => "set",
            Obj::FrozenSet(_) => "frozenset",
            Obj::ByteArray(_) => "bytearray",
            Obj::Global(g) => g.value_type_name(),
            Obj::Storage(_) => "torch.storage",
            Obj::Tensor(_) => "tensor",
            Obj::Opaque(t) => t,
        }
    }
}
