//! The pickle VM's object model.
//!
//! Objects live in an arena and refer to each other by index. That keeps
//! Python's sharing semantics (the memo hands out the same object twice, lists
//! and dicts mutate in place) without reference counting: no cycle can leak,
//! and dropping the arena never recurses, however deep an attacker nests.

use super::globals::Global;
use crate::dtype::DType;
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
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        // Checked when the tensor was built.
        self.shape.iter().product()
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
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = v,
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push((k, v));
            }
        }
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
    pub fn alloc(&mut self, obj: Obj) -> Value {
        let id = ObjId(self.objs.len() as u32);
        self.objs.push(obj);
        Value::Obj(id)
    }

    pub fn get(&self, id: ObjId) -> &Obj {
        &self.objs[id.0 as usize]
    }

    pub fn get_mut(&mut self, id: ObjId) -> &mut Obj {
        &mut self.objs[id.0 as usize]
    }

    /// The object behind a value, if it is one.
    pub fn obj(&self, v: Value) -> Option<&Obj> {
        match v {
            Value::Obj(id) => Some(self.get(id)),
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
                Obj::Str(s) => Key::Str(s.clone()),
                Obj::Bytes(b) => Key::Bytes(b.clone()),
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
                Obj::List(_) | Obj::Dict(_) | Obj::Set(_) | Obj::ByteArray(_) => {
                    return Some(self.type_name(v))
                }
                Obj::Tuple(items) | Obj::FrozenSet(items) if seen.insert(id) => {
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
            },
        }
    }
}
