//! Builders shared by the container tests: a tiny pickle assembler, a minimal
//! zip writer that can be told to lie, a legacy-format writer, and the
//! expected safetensors bytes.
#![allow(dead_code)]

use converter_guest::{convert, inspect};
use decant_abi::{Outcome, Refusal, RefusalKind, Report};

// ---------------------------------------------------------------------------
// Pickle assembly
// ---------------------------------------------------------------------------

/// Appends pickle opcodes; every method pushes exactly what its name says.
#[derive(Debug, Clone, Default)]
pub struct Pkl(pub Vec<u8>);

impl Pkl {
    pub fn new() -> Self {
        Pkl(Vec::new())
    }
    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn op(self, b: u8) -> Self {
        self.raw(&[b])
    }
    pub fn then(self, other: Pkl) -> Self {
        self.raw(&other.0)
    }
    pub fn proto(self, p: u8) -> Self {
        self.raw(&[0x80, p])
    }
    pub fn mark(self) -> Self {
        self.op(b'(')
    }
    pub fn tuple(self) -> Self {
        self.op(b't')
    }
    pub fn empty_tuple(self) -> Self {
        self.op(b')')
    }
    pub fn empty_dict(self) -> Self {
        self.op(b'}')
    }
    pub fn empty_list(self) -> Self {
        self.op(b']')
    }
    pub fn appends(self) -> Self {
        self.op(b'e')
    }
    pub fn setitems(self) -> Self {
        self.op(b'u')
    }
    pub fn reduce(self) -> Self {
        self.op(b'R')
    }
    pub fn none(self) -> Self {
        self.op(b'N')
    }
    pub fn newfalse(self) -> Self {
        self.op(0x89)
    }
    pub fn stop(self) -> Self {
        self.op(b'.')
    }
    pub fn put(self, i: u8) -> Self {
        self.raw(&[b'q', i])
    }
    pub fn get(self, i: u8) -> Self {
        self.raw(&[b'h', i])
    }
    /// BINUNICODE.
    pub fn str(self, s: &str) -> Self {
        self.op(b'X')
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    /// The smallest integer opcode CPython would use.
    pub fn int(self, i: i64) -> Self {
        if (0..256).contains(&i) {
            self.raw(&[b'K', i as u8])
        } else if (0..65536).contains(&i) {
            self.op(b'M').raw(&(i as u16).to_le_bytes())
        } else if i32::try_from(i).is_ok() {
            self.op(b'J').raw(&(i as i32).to_le_bytes())
        } else {
            self.raw(&[0x8a, 8]).raw(&i.to_le_bytes())
        }
    }
    /// BINFLOAT (big-endian).
    pub fn float(self, f: f64) -> Self {
        self.op(b'G').raw(&f.to_bits().to_be_bytes())
    }
    /// `MARK ints... TUPLE`.
    pub fn ints(self, xs: &[i64]) -> Self {
        xs.iter().fold(self.mark(), |a, &x| a.int(x)).tuple()
    }
    /// Protocol-0/2 GLOBAL.
    pub fn global(self, module: &str, name: &str) -> Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    /// `collections.OrderedDict()`.
    pub fn ordered_dict(self) -> Self {
        self.global("collections", "OrderedDict")
            .empty_tuple()
            .reduce()
    }
    /// A zip-style persistent id `('storage', torch.<cls>, key, 'cpu', numel)`.
    pub fn zip_storage(self, cls: &str, key: &str, numel: i64) -> Self {
        self.mark()
            .str("storage")
            .global("torch", cls)
            .str(key)
            .str("cpu")
            .int(numel)
            .tuple()
            .op(b'Q')
    }
    /// A legacy persistent id with `view_metadata = None`.
    pub fn legacy_storage(self, cls: &str, key: &str, numel: i64) -> Self {
        self.mark()
            .str("storage")
            .global("torch", cls)
            .str(key)
            .str("cpu")
            .int(numel)
            .none()
            .tuple()
            .op(b'Q')
    }
    /// `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`.
    pub fn tensor_v2(self, storage: Pkl, offset: i64, shape: &[i64], stride: &[i64]) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .mark()
            .then(storage)
            .int(offset)
            .ints(shape)
            .ints(stride)
            .newfalse()
            .ordered_dict()
            .tuple()
            .reduce()
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A zip-format F32 tensor over storage `key` of `numel` elements.
pub fn f32_tensor(key: &str, numel: i64, offset: i64, shape: &[i64], stride: &[i64]) -> Pkl {
    Pkl::new().tensor_v2(
        Pkl::new().zip_storage("FloatStorage", key, numel),
        offset,
        shape,
        stride,
    )
}

/// `{name: value, ...}` as an OrderedDict built by REDUCE + SETITEMS, the
/// values being fragments that push one value each; no PROTO, no STOP.
pub fn dict_body(items: Vec<(&str, Pkl)>) -> Pkl {
    items
        .into_iter()
        .fold(Pkl::new().ordered_dict().mark(), |a, (k, v)| {
            a.str(k).then(v)
        })
        .setitems()
}

/// A whole protocol-2 pickle of `{name: value, ...}`.
pub fn dict_pickle(items: Vec<(&str, Pkl)>) -> Vec<u8> {
    Pkl::new().proto(2).then(dict_body(items)).stop().bytes()
}

/// The reference state dict: `{"w": 2x2 F32 tensor over data/0 (4 elements)}`.
pub fn state_dict_pkl() -> Vec<u8> {
    dict_pickle(vec![("w", f32_tensor("0", 4, 0, &[2, 2], &[2, 1]))])
}

/// f32 values as little-endian bytes.
pub fn f32s(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The 16 bytes of data/0 in the reference archive: 1.0, 2.0, 3.0, 4.0.
pub fn data0() -> Vec<u8> {
    f32s(&[1.0, 2.0, 3.0, 4.0])
}

/// Rewrites a protocol-2 pickle (`80 02 ...`) as protocol 4 with one FRAME
/// around everything after PROTO, as CPython frames a small pickle.
pub fn framed_p4(p2: &[u8]) -> Vec<u8> {
    assert_eq!(&p2[..2], &[0x80, 2]);
    let body = &p2[2..];
    let mut out = vec![0x80, 4, 0x95];
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------
// Zip writing
// ---------------------------------------------------------------------------

pub const FLAG_DESCRIPTOR: u16 = 0x0008;
pub const FLAG_UTF8: u16 = 0x0800;

/// One archive entry and the ways it may lie.
#[derive(Debug, Clone)]
pub struct ZEntry {
    pub name: String,
    pub data: Vec<u8>,
    /// 0 = STORED, 8 = DEFLATE (written as one stored deflate block).
    pub method: u16,
    /// General-purpose flags in the central directory (0x0008 is added when
    /// `descriptor` is set).
    pub flags: u16,
    /// Flags in the local header, when they should differ.
    pub lfh_flags: Option<u16>,
    /// Name in the local header, when it should differ.
    pub lfh_name: Option<String>,
    /// CRC-32 written everywhere instead of the real one.
    pub crc: Option<u32>,
    /// Sizes and CRC in a trailing data descriptor, zero in the local header.
    pub descriptor: bool,
    /// Compression method in the local header, when it should differ.
    pub lfh_method: Option<u16>,
    /// CRC-32 in the local header, when it should differ.
    pub lfh_crc: Option<u32>,
    /// (compressed, uncompressed) sizes in the local header, when they should differ.
    pub lfh_sizes: Option<(u32, u32)>,
    /// Sizes claimed in the central directory through a ZIP64 extra field
    /// (the 32-bit fields then read 0xffffffff).
    pub cd_zip64_size: Option<u64>,
}

impl ZEntry {
    pub fn new(name: &str, data: &[u8]) -> Self {
        ZEntry {
            name: name.into(),
            data: data.to_vec(),
            method: 0,
            flags: FLAG_UTF8,
            lfh_flags: None,
            lfh_name: None,
            crc: None,
            descriptor: true,
            lfh_method: None,
            lfh_crc: None,
            lfh_sizes: None,
            cd_zip64_size: None,
        }
    }
}

/// An archive: entries in local-header order (the central directory lists
/// them in the same order), with optional junk before and after.
#[derive(Debug, Clone, Default)]
pub struct Zip {
    pub entries: Vec<ZEntry>,
    /// Bytes before the first local header.
    pub prefix: Vec<u8>,
    /// Whether the offsets in the archive count the prefix (a self-consistent
    /// file with a gap) or not (`cat junk archive.zip`).
    pub prefix_in_offsets: bool,
    /// Bytes after the end-of-central-directory record.
    pub suffix: Vec<u8>,
}

impl Zip {
    /// The entry called `<root>/<name>`.
    pub fn entry(&mut self, name: &str) -> &mut ZEntry {
        self.entries
            .iter_mut()
            .find(|e| e.name == name || e.name.ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("no entry {name}"))
    }

    pub fn remove(&mut self, name: &str) {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.name == name || e.name.ends_with(&format!("/{name}"))));
        assert_eq!(self.entries.len() + 1, before, "remove {name}");
    }

    pub fn push(&mut self, name: &str, data: &[u8]) -> &mut ZEntry {
        self.entries.push(ZEntry::new(name, data));
        self.entries.last_mut().expect("just pushed")
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = self.prefix.clone();
        let base = if self.prefix_in_offsets {
            0
        } else {
            self.prefix.len()
        };
        let mut central = Vec::new();
        for e in &self.entries {
            let offset = (out.len() - base) as u32;
            let crc = e.crc.unwrap_or_else(|| crc32fast::hash(&e.data));
            let stored = if e.method == 8 {
                deflate_stored(&e.data)
            } else {
                e.data.clone()
            };
            let flags = e.flags | if e.descriptor { FLAG_DESCRIPTOR } else { 0 };
            let lfh_flags = e.lfh_flags.unwrap_or(flags);
            let lfh_name = e.lfh_name.as_deref().unwrap_or(&e.name);
            let (mut lcrc, mut lcsize, mut lusize) = if e.descriptor {
                (0, 0, 0)
            } else {
                (crc, stored.len() as u32, e.data.len() as u32)
            };
            lcrc = e.lfh_crc.unwrap_or(lcrc);
            if let Some((c, u)) = e.lfh_sizes {
                (lcsize, lusize) = (c, u);
            }
            out.extend_from_slice(b"PK\x03\x04");
            put16(&mut out, 20);
            put16(&mut out, lfh_flags);
            put16(&mut out, e.lfh_method.unwrap_or(e.method));
            put16(&mut out, 0); // time
            put16(&mut out, 0x21); // date: 1980-01-01
            put32(&mut out, lcrc);
            put32(&mut out, lcsize);
            put32(&mut out, lusize);
            put16(&mut out, lfh_name.len() as u16);
            put16(&mut out, 0);
            out.extend_from_slice(lfh_name.as_bytes());
            out.extend_from_slice(&stored);
            if e.descriptor {
                out.extend_from_slice(b"PK\x07\x08");
                put32(&mut out, crc);
                put32(&mut out, stored.len() as u32);
                put32(&mut out, e.data.len() as u32);
            }
            central.extend_from_slice(b"PK\x01\x02");
            put16(&mut central, 20);
            put16(&mut central, 20);
            put16(&mut central, flags);
            put16(&mut central, e.method);
            put16(&mut central, 0);
            put16(&mut central, 0x21);
            put32(&mut central, crc);
            let mut extra = Vec::new();
            match e.cd_zip64_size {
                Some(size) => {
                    put32(&mut central, u32::MAX);
                    put32(&mut central, u32::MAX);
                    put16(&mut extra, 1);
                    put16(&mut extra, 16);
                    extra.extend_from_slice(&size.to_le_bytes());
                    extra.extend_from_slice(&size.to_le_bytes());
                }
                None => {
                    put32(&mut central, stored.len() as u32);
                    put32(&mut central, e.data.len() as u32);
                }
            }
            put16(&mut central, e.name.len() as u16);
            put16(&mut central, extra.len() as u16);
            put16(&mut central, 0); // comment
            put16(&mut central, 0); // disk
            put16(&mut central, 0); // internal attributes
            put32(&mut central, 0); // external attributes
            put32(&mut central, offset);
            central.extend_from_slice(e.name.as_bytes());
            central.extend_from_slice(&extra);
        }
        let cd_offset = (out.len() - base) as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06");
        put16(&mut out, 0);
        put16(&mut out, 0);
        put16(&mut out, self.entries.len() as u16);
        put16(&mut out, self.entries.len() as u16);
        put32(&mut out, central.len() as u32);
        put32(&mut out, cd_offset);
        put16(&mut out, 0); // comment length
        out.extend_from_slice(&self.suffix);
        out
    }
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// A valid DEFLATE stream made of stored blocks.
pub fn deflate_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunks: Vec<&[u8]> = data.chunks(65535).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        out.push(u8::from(i + 1 == n));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// A torch-style archive (root `archive`): data.pkl, byteorder, the data
/// records, version — torch 2.x's order, with data descriptors.
pub fn torch_zip(pkl: Vec<u8>, data: &[(&str, Vec<u8>)]) -> Zip {
    let mut z = Zip::default();
    z.push("archive/data.pkl", &pkl);
    z.push("archive/byteorder", b"little");
    for (key, bytes) in data {
        z.push(&format!("archive/data/{key}"), bytes);
    }
    z.push("archive/version", b"3\n");
    z
}

/// The reference archive: [`state_dict_pkl`] with data/0 = [`data0`].
pub fn reference_zip() -> Zip {
    torch_zip(state_dict_pkl(), &[("0", data0())])
}

// ---------------------------------------------------------------------------
// Legacy format
// ---------------------------------------------------------------------------

/// `torch.serialization.MAGIC_NUMBER` as a protocol-2 pickle.
pub fn legacy_magic() -> Vec<u8> {
    let mut v = vec![0x80, 2, 0x8a, 10];
    v.extend_from_slice(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    v.push(b'.');
    v
}

/// `1001` as a protocol-2 pickle.
pub fn legacy_protocol() -> Vec<u8> {
    vec![0x80, 2, b'M', 0xe9, 0x03, b'.']
}

/// torch's sys_info dict as a protocol-2 pickle.
pub fn legacy_sys_info() -> Vec<u8> {
    Pkl::new()
        .proto(2)
        .empty_dict()
        .mark()
        .str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(0x88)
        .str("type_sizes")
        .empty_dict()
        .mark()
        .str("short")
        .int(2)
        .str("int")
        .int(4)
        .str("long")
        .int(4)
        .setitems()
        .setitems()
        .stop()
        .bytes()
}

/// The storage key list as a protocol-2 pickle.
pub fn legacy_keys(keys: &[&str]) -> Vec<u8> {
    keys.iter()
        .fold(Pkl::new().proto(2).empty_list().mark(), |a, k| a.str(k))
        .appends()
        .stop()
        .bytes()
}

/// The legacy main object: `{"w": 2x2 F32 tensor over storage "0"}`.
pub fn legacy_main() -> Vec<u8> {
    dict_pickle(vec![(
        "w",
        Pkl::new().tensor_v2(
            Pkl::new().legacy_storage("FloatStorage", "0", 4),
            0,
            &[2, 2],
            &[2, 1],
        ),
    )])
}

/// The five pickles, then each storage as `(count, bytes)`.
pub fn legacy_file(pickles: [Vec<u8>; 5], storages: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let mut out: Vec<u8> = pickles.concat();
    for (count, bytes) in storages {
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The reference legacy checkpoint.
pub fn reference_legacy() -> Vec<u8> {
    legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&["0"]),
        ],
        &[(4, data0())],
    )
}

// ---------------------------------------------------------------------------
// safetensors and outcomes
// ---------------------------------------------------------------------------

/// A safetensors file: u64 LE header length, the JSON padded with spaces to
/// a multiple of 8, the data.
pub fn safetensors(json: &str, data: &[u8]) -> Vec<u8> {
    let mut header = json.as_bytes().to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// Converts `src`; returns the outcome and whatever was written.
pub fn run(src: &[u8]) -> (Outcome, Vec<u8>) {
    let src = src.to_vec();
    let mut out = Vec::new();
    let outcome = convert(&src, &mut out);
    (outcome, out)
}

/// Converts `src`, which must succeed; returns the report and the output.
pub fn converts(src: &[u8]) -> (Report, Vec<u8>) {
    match run(src) {
        (Outcome::Done(r), out) => {
            assert_eq!(r.output_bytes, out.len() as u64, "output_bytes");
            (r, out)
        }
        (Outcome::Refused(r), _) => panic!("refused: {r:?}"),
    }
}

/// Inspects `src`, which must succeed.
pub fn inspects(src: &[u8]) -> Report {
    match inspect(&src.to_vec()) {
        Outcome::Done(r) => r,
        Outcome::Refused(r) => panic!("refused: {r:?}"),
    }
}

/// Converts `src`, which must be refused with `kind` and a message
/// containing `needle`.
pub fn refused(src: &[u8], kind: RefusalKind, needle: &str) -> Refusal {
    match run(src) {
        (Outcome::Refused(r), _) => {
            assert_eq!(r.kind, kind, "kind of {r:?}");
            assert!(
                r.message.contains(needle),
                "message {:?} lacks {needle:?}",
                r.message
            );
            assert!(!r.hint.is_empty());
            r
        }
        (Outcome::Done(r), _) => {
            panic!("converted, expected a refusal containing {needle:?}: {r:?}")
        }
    }
}
