//! The restricted pickle VM, opcode by opcode, against hand-assembled and
//! CPython-written pickles.

use super::*;
use crate::error::{Refusal, RefusalKind};
use std::time::Instant;

// ---------------------------------------------------------------------------
// Assembly
// ---------------------------------------------------------------------------

/// A pickle under construction. `call` and `persid` remember where the last
/// REDUCE / BINPERSID written by the helpers is, for position assertions.
#[derive(Debug, Clone, Default)]
struct Asm {
    b: Vec<u8>,
    call: u64,
    persid: u64,
}

impl Asm {
    fn new() -> Self {
        Asm::default()
    }
    fn pos(&self) -> u64 {
        self.b.len() as u64
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.b.extend_from_slice(bytes);
        self
    }
    fn op(self, code: u8) -> Self {
        self.raw(&[code])
    }
    fn then(self, other: Asm) -> Self {
        self.raw(&other.b)
    }
    /// An opcode with a `\n`-terminated text argument.
    fn line(self, code: u8, text: &[u8]) -> Self {
        self.op(code).raw(text).op(b'\n')
    }
    fn proto(self, p: u8) -> Self {
        self.raw(&[op::PROTO, p])
    }
    fn mark(self) -> Self {
        self.op(op::MARK)
    }
    fn tuple(self) -> Self {
        self.op(op::TUPLE)
    }
    fn stop(self) -> Self {
        self.op(op::STOP)
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.line(op::GLOBAL, module.as_bytes())
            .raw(name.as_bytes())
            .op(b'\n')
    }
    /// BINUNICODE.
    fn str(self, s: &str) -> Self {
        self.op(op::BINUNICODE)
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    fn int(self, i: i64) -> Self {
        if (0..256).contains(&i) {
            self.raw(&[op::BININT1, i as u8])
        } else if i32::try_from(i).is_ok() {
            self.op(op::BININT).raw(&(i as i32).to_le_bytes())
        } else {
            self.raw(&[op::LONG1, 8]).raw(&i.to_le_bytes())
        }
    }
    /// `MARK ints... TUPLE`.
    fn ints(self, xs: &[i64]) -> Self {
        xs.iter().fold(self.mark(), |a, &x| a.int(x)).tuple()
    }
    fn ordered_dict(self) -> Self {
        self.global("collections", "OrderedDict")
            .op(op::EMPTY_TUPLE)
            .op(op::REDUCE)
    }
    /// `MARK fields TUPLE BINPERSID`.
    fn pid(self, fields: impl FnOnce(Self) -> Self) -> Self {
        let mut a = fields(self.mark()).tuple();
        a.persid = a.pos();
        a.op(op::BINPERSID)
    }
    /// A zip-style storage reference.
    fn storage(self, cls: &str, key: &str, numel: i64) -> Self {
        self.pid(|a| {
            a.str("storage")
                .global("torch", cls)
                .str(key)
                .str("cpu")
                .int(numel)
        })
    }
    /// `module.name(args...)` via MARK ... TUPLE REDUCE.
    fn call(self, module: &str, name: &str, args: impl FnOnce(Self) -> Self) -> Self {
        let mut a = args(self.global(module, name).mark()).tuple();
        a.call = a.pos();
        a.op(op::REDUCE)
    }
    /// `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`.
    fn tensor(
        self,
        storage: impl FnOnce(Self) -> Self,
        offset: i64,
        shape: &[i64],
        stride: &[i64],
    ) -> Self {
        self.call("torch._utils", "_rebuild_tensor_v2", |a| {
            storage(a)
                .int(offset)
                .ints(shape)
                .ints(stride)
                .op(op::NEWFALSE)
                .ordered_dict()
        })
    }
    /// An F32 tensor over storage "0" of `numel` elements.
    fn f32_tensor(self, numel: i64, offset: i64, shape: &[i64], stride: &[i64]) -> Self {
        self.tensor(
            |a| a.storage("FloatStorage", "0", numel),
            offset,
            shape,
            stride,
        )
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

fn load_with(style: PidStyle, bytes: &[u8]) -> (Machine, Result<Loaded>) {
    let src = bytes.to_vec();
    let mut m = Machine::new(style);
    let r = m.load(&src, 0, src.len() as u64, "data.pkl");
    (m, r)
}

/// Loads a pickle that must be accepted.
fn accept_with(style: PidStyle, bytes: &[u8]) -> (Machine, Value) {
    match load_with(style, bytes) {
        (m, Ok(l)) => {
            assert_eq!(l.end, bytes.len() as u64, "STOP is the last byte");
            (m, l.value)
        }
        (_, Err(r)) => panic!("refused: {r:?}"),
    }
}

fn accept(bytes: &[u8]) -> (Machine, Value) {
    accept_with(PidStyle::Zip, bytes)
}

/// `repr`-like rendering of the loaded value.
fn loads(bytes: &[u8]) -> String {
    let (m, v) = accept(bytes);
    repr(&m.heap, v)
}

fn refuse_with(style: PidStyle, bytes: &[u8], kind: RefusalKind, needle: &str) -> Refusal {
    match load_with(style, bytes) {
        (_, Err(r)) => {
            assert_eq!(r.kind, kind, "kind of {r:?}");
            assert!(
                r.message.contains(needle),
                "message {:?} lacks {needle:?}",
                r.message
            );
            r
        }
        (m, Ok(l)) => panic!(
            "accepted {}, expected a refusal containing {needle:?}",
            repr(&m.heap, l.value)
        ),
    }
}

fn refuse(bytes: &[u8], kind: RefusalKind, needle: &str) -> Refusal {
    refuse_with(PidStyle::Zip, bytes, kind, needle)
}

/// A compact, Python-flavoured rendering of a value; strings in Rust's
/// debug quoting, bytes and big ints as little-endian hex.
fn repr(h: &Heap, v: Value) -> String {
    fn hexs(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    fn seq(h: &Heap, items: &[Value]) -> String {
        items
            .iter()
            .map(|&i| repr(h, i))
            .collect::<Vec<_>>()
            .join(", ")
    }
    match v {
        Value::None => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Obj(id) => match h.get(id).expect("an id the heap handed out") {
            Obj::Str(s) => format!("{s:?}"),
            Obj::Bytes(b) => format!("b({})", hexs(b)),
            Obj::BigInt(b) => format!("big({})", hexs(b)),
            Obj::Tuple(t) if t.len() == 1 => format!("({},)", repr(h, t[0])),
            Obj::Tuple(t) => format!("({})", seq(h, t)),
            Obj::List(l) => format!("[{}]", seq(h, l)),
            Obj::Set(s) => format!("set([{}])", seq(h, s)),
            Obj::FrozenSet(s) => format!("frozenset([{}])", seq(h, s)),
            Obj::ByteArray(b) => format!("bytearray({})", hexs(b)),
            Obj::Dict(d) => format!(
                "{{{}}}",
                d.entries
                    .iter()
                    .map(|&(k, v)| format!("{}: {}", repr(h, k), repr(h, v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Obj::Global(g) => format!("{g:?}"),
            Obj::Storage(s) => format!("{s:?}"),
            Obj::Tensor(t) => format!(
                "tensor({:?}, storage={}, offset={}, shape={:?}, stride={:?})",
                t.dtype, t.storage.decl, t.offset, t.shape, t.stride
            ),
            Obj::Opaque(t) => format!("<{t}>"),
        },
    }
}

fn tensor_of(m: &Machine, v: Value) -> TensorDesc {
    match m.heap.obj(v) {
        Some(Obj::Tensor(t)) => t.clone(),
        _ => panic!("not a tensor: {}", repr(&m.heap, v)),
    }
}

use RefusalKind::{Corrupt, Global as GlobalRefused, Limit, Unsupported};

// ---------------------------------------------------------------------------
// Protocol 0 text opcodes
// ---------------------------------------------------------------------------

#[test]
fn protocol0_int_parses_decimals_and_i01_i00_booleans() {
    // Python 2 wrote booleans as INT 01/00; candle and co. mis-typed them.
    let p = Asm::new()
        .mark()
        .line(op::INT, b"42")
        .line(op::INT, b"-7")
        .line(op::INT, b"01")
        .line(op::INT, b"00")
        .line(op::INT, b"0")
        .line(op::INT, b"99999999999999999999")
        .op(op::LIST)
        .stop();
    assert_eq!(
        loads(&p.b),
        "[42, -7, True, False, 0, big(ffff0f632d5ec76b05)]"
    );
}

#[test]
fn protocol0_numbers_python_never_writes_are_refused() {
    // CPython's C unpickler reads `I010` as octal 8, `I0x10` as 16, `I+1`
    // and `I-0` as booleans, `L0x1fL` as 31: a naive decimal reader would
    // build other tensor offsets, shapes or keys than torch.load does.
    for (code, text) in [
        (op::INT, &b"010"[..]),
        (op::INT, b"0x10"),
        (op::INT, b"+1"),
        (op::INT, b"-0"),
        (op::INT, b" 5"),
        (op::INT, b"1_0"),
        (op::INT, b"12a"),
        (op::LONG, b"0x1fL"),
        (op::LONG, b"012L"),
        (op::LONG, b"-5"),
        (op::LONG, b"L"),
        (op::FLOAT, b"abc"),
        (op::FLOAT, b"0x1p3"),
        (op::FLOAT, b"1_0.5"),
        (op::FLOAT, b"Infinity"),
    ] {
        refuse(
            &Asm::new().line(code, text).stop().b,
            Unsupported,
            "is not spelled as Python writes it",
        );
    }
}

#[test]
fn protocol0_long_strips_trailing_l() {
    // LONG text is `123L` in Python 2 pickles; values match CPython's encode_long.
    let p = Asm::new()
        .mark()
        .line(op::LONG, b"123L")
        .line(op::LONG, b"0L")
        .line(op::LONG, b"99999999999999999999L")
        .line(op::LONG, b"-99999999999999999999L")
        .line(op::LONG, b"9223372036854775807L")
        .line(op::LONG, b"-9223372036854775808L")
        .op(op::LIST)
        .stop();
    assert_eq!(
        loads(&p.b),
        "[123, 0, big(ffff0f632d5ec76b05), big(0100f09cd2a13894fa), 9223372036854775807, -9223372036854775808]"
    );
}

#[test]
fn protocol0_float_parses_repr_text() {
    // FLOAT carries repr(float) text.
    let p = Asm::new()
        .mark()
        .line(op::FLOAT, b"2.5")
        .line(op::FLOAT, b"-0.001")
        .line(op::FLOAT, b"1e300")
        .line(op::FLOAT, b"inf")
        .op(op::LIST)
        .stop();
    assert_eq!(loads(&p.b), "[2.5, -0.001, 1e300, inf]");
}

#[test]
fn protocol0_string_decodes_python_escapes() {
    // STRING is a repr() literal: quotes, \x, octal and named escapes.
    let p = Asm::new()
        .mark()
        .line(op::STRING, br"'a\'b\x41\n\\'")
        .line(op::STRING, br#""it's""#)
        .line(op::STRING, br"'\101\tz'")
        .op(op::LIST)
        .stop();
    assert_eq!(loads(&p.b), r#"["a'bA\n\\", "it's", "A\tz"]"#);
    // torch.load decodes Python 2 strings as UTF-8 and fails on others;
    // decant used to keep them as bytes and convert the file.
    refuse(
        &Asm::new().line(op::STRING, br"'\xff\000'").stop().b,
        Corrupt,
        "Python 2 string at byte 0 of data.pkl is not UTF-8",
    );
    // `\x+4` is not a hex escape, though from_str_radix takes the sign.
    refuse(
        &Asm::new().line(op::STRING, br"'\x+4'").stop().b,
        Corrupt,
        "bad STRING literal at byte 0 of data.pkl",
    );
    refuse(
        &Asm::new().line(op::STRING, b"'abc").stop().b,
        Corrupt,
        "bad STRING literal at byte 0 of data.pkl",
    );
}

#[test]
fn protocol0_unicode_is_raw_unicode_escape() {
    // UNICODE bytes are Latin-1 except \uXXXX and \UXXXXXXXX.
    let p = Asm::new()
        .line(op::UNICODE, b"caf\xe9 \\u20ac \\U0001f600")
        .stop();
    assert_eq!(loads(&p.b), "\"café € 😀\"");
    refuse(
        &Asm::new().line(op::UNICODE, br"\u12").stop().b,
        Corrupt,
        "bad UNICODE literal at byte 0 of data.pkl",
    );
}

#[test]
fn protocol0_put_get_share_one_object() {
    // PUT/GET hand out the same object twice (Python identity), not a copy.
    let p = Asm::new()
        .mark()
        .line(op::STRING, b"'x'")
        .line(op::PUT, b"7")
        .line(op::GET, b"7")
        .tuple()
        .stop();
    let (m, v) = accept(&p.b);
    assert_eq!(repr(&m.heap, v), r#"("x", "x")"#);
    let t = m.heap.tuple(v).expect("tuple");
    assert_eq!(t[0], t[1]);
}

#[test]
fn protocol0_get_of_unwritten_slot_refused() {
    // The memo must be written before it is read (picklescan's keyerror-exploit).
    refuse(
        &Asm::new().line(op::GET, b"3").stop().b,
        Corrupt,
        "memo entry 3 read at byte 0 of data.pkl before it was written",
    );
    refuse(
        &Asm::new().op(op::NONE).line(op::PUT, b"x").stop().b,
        Corrupt,
        "bad memo index at byte 1 of data.pkl",
    );
}

#[test]
fn protocol0_dict_list_tuple_build_from_marks() {
    // candle decoded `d` as EMPTY_DICT and left the marked items on the stack.
    let p = Asm::new()
        .mark()
        .mark()
        .line(op::INT, b"1")
        .line(op::INT, b"2")
        .op(op::LIST)
        .mark()
        .line(op::INT, b"3")
        .tuple()
        .mark()
        .line(op::STRING, b"'k'")
        .line(op::INT, b"4")
        .line(op::STRING, b"'j'")
        .op(op::NONE)
        .op(op::DICT)
        .mark()
        .tuple()
        .tuple()
        .stop();
    assert_eq!(loads(&p.b), r#"([1, 2], (3,), {"k": 4, "j": None}, ())"#);
}

#[test]
fn protocol0_dict_with_odd_items_refused() {
    // `d` needs key/value pairs.
    refuse(
        &Asm::new().mark().op(op::NONE).op(op::DICT).stop().b,
        Corrupt,
        "SETITEMS at byte 2 of data.pkl with an odd number of values",
    );
}

#[test]
fn cpython_pickles_of_one_object_agree_across_protocols() {
    // pickle.dumps({'a': [1, 2.5, 'x', -3, True], 'b': (None, 'caf\xe9'), 'c': 2**70}, protocol=p).
    let expected =
        r#"{"a": [1, 2.5, "x", -3, True], "b": (None, "café"), "c": big(000000000000000040)}"#;
    let p0 = hex(
        "286470300a56610a70310a286c70320a49310a6146322e350a6156780a70330a61492d330a614930
         310a617356620a70340a284e56636166e90a70350a7470360a7356630a70370a4c31313830353931
         3632303731373431313330333432344c0a732e",
    );
    let p1 = hex(
        "7d71002858010000006171015d7102284b0147400400000000000058010000007871034afdffffff
         4930310a655801000000627104284e5805000000636166c3a9710574710658010000006371074c31
         3138303539313632303731373431313330333432344c0a752e",
    );
    let p4 = hex(
        "80049540000000000000007d94288c0161945d94284b014740040000000000008c0178944afdffff
         ff88658c0162944e8c05636166c3a99486948c0163948a09000000000000000040752e",
    );
    for (p, bytes) in [(0u8, p0), (1, p1), (4, p4)] {
        let (m, l) = match load_with(PidStyle::Zip, &bytes) {
            (m, Ok(l)) => (m, l),
            (_, Err(r)) => panic!("protocol {p}: {r:?}"),
        };
        assert_eq!(repr(&m.heap, l.value), expected, "protocol {p}");
        assert_eq!(l.protocol, p, "protocol {p}");
    }
}

// ---------------------------------------------------------------------------
// Binary numbers
// ---------------------------------------------------------------------------

#[test]
fn long1_follows_cpython_encode_long() {
    // candle forgot the sign extension and overflowed on n >= 32 bytes; values from pickle.encode_long.
    let mut p = Asm::new().op(op::EMPTY_LIST).mark();
    for bytes in [
        "",
        "ff",
        "00ff",
        "80",
        "7f",
        "ffffffffffffff7f",
        "0000000000000080",
        "ffffffffffffffff",
        "000000000000008000",
        "000000000000000001",
        "0100f09cd2a13894fa",
    ] {
        let b = hex(bytes);
        p = p.raw(&[op::LONG1, b.len() as u8]).raw(&b);
    }
    let p = p.op(op::APPENDS).stop();
    assert_eq!(
        loads(&p.b),
        "[0, -1, -256, -128, 127, 9223372036854775807, -9223372036854775808, -1, \
         big(000000000000008000), big(000000000000000001), big(0100f09cd2a13894fa)]"
    );
}

#[test]
fn long4_is_little_endian_twos_complement() {
    // LONG4 is LONG1 with a 4-byte length.
    let p = Asm::new().raw(&hex("8b 02000000 00ff")).stop();
    assert_eq!(loads(&p.b), "-256");
    refuse(
        &Asm::new().raw(&hex("8b ffffffff")).stop().b,
        Corrupt,
        "negative LONG4 length at byte 0 of data.pkl",
    );
}

#[test]
fn binint_family_signedness() {
    // BININT is signed 32-bit; BININT1/BININT2 are unsigned.
    let p = Asm::new()
        .mark()
        .raw(&hex("4a feffffff"))
        .raw(&hex("4b ff"))
        .raw(&hex("4d ffff"))
        .tuple()
        .stop();
    assert_eq!(loads(&p.b), "(-2, 255, 65535)");
}

#[test]
fn binfloat_is_big_endian() {
    // repugnant-pickle and early candle read BINFLOAT little-endian.
    let p = Asm::new()
        .mark()
        .raw(&hex("47 3ff8000000000000"))
        .raw(&hex("47 c000000000000000"))
        .tuple()
        .stop();
    assert_eq!(loads(&p.b), "(1.5, -2.0)");
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

#[test]
fn setitems_batches_beyond_1000_are_all_kept() {
    // repugnant-pickle read only the first SETITEMS batch; torch batches by 1000.
    let mut p = Asm::new().op(op::EMPTY_DICT).mark();
    for i in 0..1500 {
        p = p.int(i).int(i * 2);
    }
    p = p.op(op::SETITEMS).mark();
    for i in 1500..2100 {
        p = p.int(i).int(i * 2);
    }
    let p = p.op(op::SETITEMS).stop();
    let (m, v) = accept(&p.b);
    let Some(Obj::Dict(d)) = m.heap.obj(v) else {
        panic!("not a dict")
    };
    assert_eq!(d.entries.len(), 2100);
    assert_eq!(d.entries[1499], (Value::Int(1499), Value::Int(2998)));
    assert_eq!(d.entries[2099], (Value::Int(2099), Value::Int(4198)));
}

#[test]
fn dict_keys_follow_python_equality() {
    // {1: 2, True: 3, 1.0: 4} is {1: 4} in Python: the first key stays, the value is replaced.
    let p = Asm::new()
        .op(op::EMPTY_DICT)
        .mark()
        .int(1)
        .int(2)
        .op(op::NEWTRUE)
        .int(3)
        .raw(&hex("47 3ff0000000000000"))
        .int(4)
        .str("1")
        .int(5)
        .op(op::SETITEMS)
        .stop();
    assert_eq!(loads(&p.b), r#"{1: 4, "1": 5}"#);
}

#[test]
fn setitem_on_a_list_refused() {
    // SETITEM(S) only targets dicts (torch's CVE-2026-24747 fix).
    let p = Asm::new()
        .op(op::EMPTY_LIST)
        .int(1)
        .int(2)
        .op(op::SETITEM)
        .stop();
    refuse(
        &p.b,
        Corrupt,
        "SETITEM at byte 5 of data.pkl applied to a list",
    );
}

#[test]
fn append_on_a_dict_refused() {
    // APPEND(S) only targets lists.
    let p = Asm::new().op(op::EMPTY_DICT).int(1).op(op::APPEND).stop();
    refuse(
        &p.b,
        Corrupt,
        "APPEND at byte 3 of data.pkl applied to a dict",
    );
    let p = Asm::new()
        .op(op::EMPTY_TUPLE)
        .mark()
        .int(1)
        .op(op::APPENDS)
        .stop();
    refuse(
        &p.b,
        Corrupt,
        "APPEND at byte 4 of data.pkl applied to a tuple",
    );
}

#[test]
fn additems_on_a_list_refused() {
    // ADDITEMS only targets sets.
    let p = Asm::new()
        .op(op::EMPTY_LIST)
        .mark()
        .int(1)
        .op(op::ADDITEMS)
        .stop();
    refuse(
        &p.b,
        Corrupt,
        "ADDITEMS at byte 4 of data.pkl applied to a list",
    );
    // ADDITEMS on a set and FROZENSET build sets.
    let p = Asm::new()
        .op(op::EMPTY_SET)
        .mark()
        .int(1)
        .int(2)
        .op(op::ADDITEMS)
        .mark()
        .int(3)
        .op(op::FROZENSET)
        .op(op::TUPLE2)
        .stop();
    assert_eq!(loads(&p.b), "(set([1, 2]), frozenset([3]))");
}

#[test]
fn pop_dup_and_pop_mark() {
    // POP of a bare MARK discards the mark, as CPython does; POP_MARK drops the marked items.
    let p = Asm::new()
        .int(1)
        .op(op::DUP)
        .mark()
        .op(op::POP)
        .mark()
        .int(7)
        .int(8)
        .op(op::POP_MARK)
        .op(op::TUPLE2)
        .stop();
    assert_eq!(loads(&p.b), "(1, 1)");
}

#[test]
fn pop_below_mark_refused() {
    // Opcodes cannot reach under the current MARK.
    let p = Asm::new().int(1).mark().int(2).op(op::TUPLE2).stop();
    refuse(&p.b, Corrupt, "stack underflow at byte 5 of data.pkl");
}

// ---------------------------------------------------------------------------
// Memo
// ---------------------------------------------------------------------------

#[test]
fn binget_of_unwritten_slot_refused() {
    // A read before a write has no value (CPython raises KeyError mid-load).
    refuse(
        &Asm::new().raw(&[op::BINGET, 5]).stop().b,
        Corrupt,
        "memo entry 5 read at byte 0 of data.pkl before it was written",
    );
    refuse(
        &Asm::new()
            .op(op::NONE)
            .op(op::MEMOIZE)
            .op(op::POP)
            .raw(&hex("6a 00000100"))
            .stop()
            .b,
        Corrupt,
        "memo entry 65536 read at byte 3 of data.pkl before it was written",
    );
}

#[test]
fn memo_bomb_as_given_is_refused_quickly_for_its_leftover_stack() {
    // NEWFALSE BINPUT0, 20x (BINGET0 BINGET0 TUPLE2 BINPUT0), STOP: 144 bytes, 20 values left over.
    let mut p = vec![op::NEWFALSE, op::BINPUT, 0];
    for _ in 0..20 {
        p.extend_from_slice(&[op::BINGET, 0, op::BINGET, 0, op::TUPLE2, op::BINPUT, 0]);
    }
    p.push(op::STOP);
    assert_eq!(p.len(), 144);
    let start = Instant::now();
    refuse(
        &p,
        Corrupt,
        "STOP at byte 143 of data.pkl leaves 20 extra values on the stack",
    );
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn memo_bomb_loads_in_linear_time_as_shared_tuples() {
    // burn's memo deep-cloned: 2^20 leaves. The arena shares them: 21 objects.
    let mut p = vec![op::NEWFALSE, op::BINPUT, 0];
    for _ in 0..20 {
        p.extend_from_slice(&[
            op::POP,
            op::BINGET,
            0,
            op::BINGET,
            0,
            op::TUPLE2,
            op::BINPUT,
            0,
        ]);
    }
    p.push(op::STOP);
    let start = Instant::now();
    let (m, mut v) = accept(&p);
    assert!(start.elapsed().as_secs() < 5);
    for _ in 0..20 {
        let t = m.heap.tuple(v).expect("tuple");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0], t[1], "shared, not copied");
        v = t[0];
    }
    assert_eq!(v, Value::Bool(false));
}

// ---------------------------------------------------------------------------
// Globals
// ---------------------------------------------------------------------------

#[test]
fn stack_global_with_memoised_operands_refused_with_name_and_position() {
    // picklescan #22: operands placed through the memo and fetched later still name os.system.
    let p = hex("8004 8c02 6f73 94 8c06 73797374656d 94 30 30 6800 6801 93 2e");
    assert_eq!(p[22], op::STACK_GLOBAL);
    refuse(
        &p,
        GlobalRefused,
        "global os.system at byte 22 of data.pkl is not on the allowlist",
    );
}

#[test]
fn stack_global_allowlisted_resolves() {
    // Protocol 4 writes torch's globals with STACK_GLOBAL.
    let p = Asm::new()
        .proto(4)
        .raw(b"\x8c\x0bcollections\x8c\x0bOrderedDict")
        .op(op::STACK_GLOBAL)
        .op(op::EMPTY_TUPLE)
        .op(op::REDUCE)
        .stop();
    let (m, v) = accept(&p.b);
    assert_eq!(repr(&m.heap, v), "{}");
    assert!(m.globals.contains("collections.OrderedDict"));
}

#[test]
fn stack_global_with_non_string_operand_refused() {
    // An int in the memo used as a module name (picklescan's type-confusion-exploit).
    let p = Asm::new().int(5).str("system").op(op::STACK_GLOBAL).stop();
    refuse(
        &p.b,
        Corrupt,
        "STACK_GLOBAL at byte 13 of data.pkl needs two strings",
    );
}

#[test]
fn stack_global_dotted_name_refused() {
    // fickling resolved ('pathlib', 'os.system') by attribute walk (GHSA-5j3x-jp52-966f).
    let p = Asm::new()
        .str("pathlib")
        .str("os.system")
        .op(op::STACK_GLOBAL)
        .stop();
    refuse(
        &p.b,
        GlobalRefused,
        "global pathlib:os.system at byte 26 of data.pkl",
    );
}

#[test]
fn global_with_crlf_line_ending_refused() {
    // torch rejects `\r\n`; candle and burn accepted it.
    let p = Asm::new()
        .raw(b"ccollections\r\nOrderedDict\r\n")
        .op(op::EMPTY_TUPLE)
        .op(op::REDUCE)
        .stop();
    refuse(
        &p.b,
        GlobalRefused,
        r"global collections\r.OrderedDict\r at byte 0 of data.pkl",
    );
}

#[test]
fn global_dotted_torch_name_refused() {
    // torch joins module.name and so accepts ('torch', '_utils._rebuild_tensor_v2'); decant matches exactly.
    let p = Asm::new()
        .global("torch", "_utils._rebuild_tensor_v2")
        .stop();
    refuse(
        &p.b,
        GlobalRefused,
        "global torch:_utils._rebuild_tensor_v2 at byte 0 of data.pkl is not on the allowlist",
    );
}

#[test]
fn global_mark_mark_refused() {
    // burn's MARK sentinel was Class("mark","mark"): a GLOBAL could forge it.
    refuse(
        &Asm::new().global("mark", "mark").stop().b,
        GlobalRefused,
        "global mark.mark at byte 0 of data.pkl",
    );
}

#[test]
fn global_os_system_refused_after_proto() {
    // The classic payload: refused at its GLOBAL, before REDUCE could run it.
    let p = Asm::new()
        .proto(2)
        .global("os", "system")
        .str("id")
        .op(op::TUPLE1)
        .op(op::REDUCE)
        .stop();
    refuse(
        &p.b,
        GlobalRefused,
        "global os.system at byte 2 of data.pkl is not on the allowlist",
    );
}

#[test]
fn global_with_control_characters_is_escaped() {
    // An attacker-chosen name must not carry terminal escapes into the message.
    let p = Asm::new().raw(b"cos\x1b[2J\nsystem\n").stop();
    let r = refuse(&p.b, GlobalRefused, "at byte 0 of data.pkl");
    assert!(!r.message.contains('\x1b'), "{:?}", r.message);
}

#[test]
fn python2_builtin_set_accepted() {
    // torch maps __builtin__ to builtins; `__builtin__.set` loads there.
    let p = Asm::new()
        .global("__builtin__", "set")
        .mark()
        .op(op::EMPTY_LIST)
        .int(1)
        .op(op::APPEND)
        .int(2)
        .op(op::APPEND)
        .tuple()
        .op(op::REDUCE)
        .stop();
    let (m, v) = accept(&p.b);
    assert_eq!(repr(&m.heap, v), "set([1, 2])");
    assert!(m.globals.contains("__builtin__.set"), "{:?}", m.globals);
}

#[test]
fn python2_builtin_exec_refused() {
    // The py2 remap does not widen the allowlist.
    refuse(
        &Asm::new().global("__builtin__", "exec").stop().b,
        GlobalRefused,
        "global __builtin__.exec at byte 0",
    );
}

// ---------------------------------------------------------------------------
// Calls: REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, BUILD
// ---------------------------------------------------------------------------

#[test]
fn reduce_of_allowlisted_global_builds_it() {
    // OrderedDict() is how torch writes every state dict.
    let (m, v) = accept(&Asm::new().ordered_dict().stop().b);
    assert_eq!(repr(&m.heap, v), "{}");
}

#[test]
fn reduce_of_non_callable_refused() {
    // Only an allowlisted global can be called.
    refuse(
        &Asm::new()
            .int(1)
            .op(op::EMPTY_TUPLE)
            .op(op::REDUCE)
            .stop()
            .b,
        Corrupt,
        "call at byte 3 of data.pkl of a int, which is not callable",
    );
}

#[test]
fn reduce_with_non_tuple_arguments_refused() {
    // REDUCE's arguments must be a tuple.
    let p = Asm::new()
        .global("collections", "OrderedDict")
        .int(1)
        .op(op::REDUCE)
        .stop();
    refuse(
        &p.b,
        Corrupt,
        "call at byte 27 of data.pkl called with a int instead of an argument tuple",
    );
}

#[test]
fn ordered_dict_from_a_list_of_pairs_like_python2_torch() {
    // torch 0.3/0.4 under Python 2 (the lpips weights) pickled state dicts as
    // OrderedDict([[key, value], ...]); decant refused them as crafted.
    let p = Asm::new().call("collections", "OrderedDict", |a| {
        a.op(op::EMPTY_LIST)
            .mark()
            .mark()
            .str("b")
            .int(1)
            .op(op::LIST)
            .mark()
            .str("a")
            .int(2)
            .op(op::TUPLE)
            .mark()
            .str("b")
            .int(3)
            .op(op::LIST)
            .op(op::APPENDS)
    });
    // Python's dict semantics: the repeated key keeps its first position.
    assert_eq!(loads(&p.stop().b), r#"{"b": 3, "a": 2}"#);
}

#[test]
fn ordered_dict_from_anything_but_pairs_refused() {
    // OrderedDict(["ab"]) is {"a": "b"} to Python; decant reads only lists of
    // 2-item lists or tuples, and dicts.
    let p = Asm::new().call("collections", "OrderedDict", |a| {
        a.mark().str("ab").op(op::LIST)
    });
    let at = p.call;
    refuse(
        &p.stop().b,
        Unsupported,
        &format!("OrderedDict at byte {at} of data.pkl built from a list"),
    );
}

#[test]
fn newobj_ordered_dict_with_arguments_refused() {
    // NEWOBJ is OrderedDict.__new__(cls, *args), which ignores the pairs a
    // REDUCE would have inserted: one file, two readings.
    let p = Asm::new()
        .global("collections", "OrderedDict")
        .op(op::EMPTY_LIST)
        .op(op::TUPLE1)
        .op(op::NEWOBJ)
        .stop();
    refuse(
        &p.b,
        Unsupported,
        "passes arguments that collections.OrderedDict.__new__ ignores",
    );
}

#[test]
fn calling_a_storage_class_refused() {
    // torch.save never calls a storage class; only persistent ids create storages.
    let p = Asm::new()
        .global("torch", "FloatStorage")
        .op(op::EMPTY_TUPLE)
        .op(op::REDUCE)
        .stop();
    refuse(
        &p.b,
        Unsupported,
        "call of a torch type at byte 21 of data.pkl",
    );
}

#[test]
fn newobj_of_allowlisted_class_accepted() {
    // NEWOBJ cls() on an allowlisted class builds it.
    let p = Asm::new()
        .global("collections", "OrderedDict")
        .op(op::EMPTY_TUPLE)
        .op(op::NEWOBJ)
        .stop();
    assert_eq!(loads(&p.b), "{}");
}

#[test]
fn newobj_of_non_allowlisted_class_refused() {
    // The class is refused at its GLOBAL.
    let p = Asm::new()
        .proto(2)
        .global("argparse", "Namespace")
        .op(op::EMPTY_TUPLE)
        .op(op::NEWOBJ)
        .stop();
    refuse(&p.b, GlobalRefused, "global argparse.Namespace at byte 2");
}

#[test]
fn newobj_ex_without_kwargs_accepted_and_with_kwargs_refused() {
    // No allowlisted type takes keyword arguments.
    let base = Asm::new()
        .global("collections", "OrderedDict")
        .op(op::EMPTY_TUPLE);
    assert_eq!(
        loads(&base.clone().op(op::EMPTY_DICT).op(op::NEWOBJ_EX).stop().b),
        "{}"
    );
    let p = base
        .op(op::EMPTY_DICT)
        .mark()
        .str("a")
        .int(1)
        .op(op::SETITEMS)
        .op(op::NEWOBJ_EX)
        .stop();
    refuse(
        &p.b,
        Unsupported,
        "NEWOBJ_EX with keyword arguments at byte 37 of data.pkl",
    );
}

#[test]
fn obj_of_allowlisted_class_accepted() {
    // OBJ: MARK cls args... OBJ.
    let p = Asm::new()
        .mark()
        .global("collections", "OrderedDict")
        .op(op::OBJ)
        .stop();
    assert_eq!(loads(&p.b), "{}");
}

#[test]
fn obj_without_class_refused() {
    // An empty OBJ has nothing to call.
    refuse(
        &Asm::new().mark().op(op::OBJ).stop().b,
        Corrupt,
        "OBJ at byte 1 of data.pkl without a class",
    );
}

#[test]
fn obj_of_non_callable_refused() {
    // OBJ's first item must be an allowlisted global.
    refuse(
        &Asm::new().mark().str("os").op(op::OBJ).stop().b,
        Corrupt,
        "call at byte 8 of data.pkl of a str, which is not callable",
    );
}

#[test]
fn inst_of_allowlisted_class_accepted() {
    // INST module\nname\n after a MARK.
    let p = Asm::new()
        .mark()
        .line(op::INST, b"collections")
        .raw(b"OrderedDict\n")
        .stop();
    assert_eq!(loads(&p.b), "{}");
}

#[test]
fn inst_builtin_exec_refused() {
    // INST carries its global inline; `__builtin__ exec` is refused like GLOBAL.
    let p = Asm::new()
        .mark()
        .str("print(1)")
        .line(op::INST, b"__builtin__")
        .raw(b"exec\n")
        .stop();
    refuse(
        &p.b,
        GlobalRefused,
        "global __builtin__.exec at byte 14 of data.pkl is not on the allowlist",
    );
}

#[test]
fn build_on_dict_with_dict_state_accepted() {
    // model.state_dict() sets `_metadata` through BUILD; it is attributes, not entries.
    let p = Asm::new()
        .ordered_dict()
        .op(op::EMPTY_DICT)
        .mark()
        .str("_metadata")
        .ordered_dict()
        .op(op::SETITEMS)
        .op(op::BUILD)
        .stop();
    assert_eq!(loads(&p.b), "{}");
}

#[test]
fn build_on_dict_with_non_dict_state_refused() {
    // Only a dict of attributes is plausible for an OrderedDict.
    let p = Asm::new().ordered_dict().int(1).op(op::BUILD).stop();
    refuse(
        &p.b,
        Unsupported,
        "BUILD at byte 29 of data.pkl gives an OrderedDict a int as state",
    );
}

#[test]
fn build_on_a_plain_dict_refused() {
    // torch's weights-only loader builds OrderedDicts only ("Can only build
    // Tensor, Parameter, OrderedDict ..."); decant accepted any dict.
    let p = Asm::new()
        .op(op::EMPTY_DICT)
        .op(op::EMPTY_DICT)
        .op(op::BUILD)
        .stop();
    refuse(
        &p.b,
        Unsupported,
        "BUILD at byte 2 of data.pkl sets state on a dict",
    );
}

#[test]
fn build_shadowing_an_ordered_dict_method_refused() {
    // `__dict__.update({"keys": ...})` makes od.keys() return something
    // else for every reader that calls it.
    let p = Asm::new()
        .ordered_dict()
        .op(op::EMPTY_DICT)
        .str("keys")
        .global("builtins", "set")
        .op(op::SETITEM)
        .op(op::BUILD)
        .stop();
    refuse(&p.b, Unsupported, "sets OrderedDict attribute \"keys\"");
}

#[test]
fn build_on_non_dict_refused() {
    // BUILD is __setstate__: on anything but a dict it would be a whole-object save.
    let p = Asm::new()
        .op(op::EMPTY_LIST)
        .op(op::EMPTY_DICT)
        .op(op::BUILD)
        .stop();
    refuse(
        &p.b,
        Unsupported,
        "BUILD at byte 2 of data.pkl sets state on a list",
    );
}

#[test]
fn codecs_encode_latin1_makes_bytes() {
    // Protocol 2 pickles bytes as _codecs.encode(str, 'latin1').
    let p = Asm::new()
        .call("_codecs", "encode", |a| a.str("\u{ff}A").str("latin1"))
        .stop();
    assert_eq!(loads(&p.b), "b(ff41)");
    let p = Asm::new()
        .call("_codecs", "encode", |a| a.str("x").str("rot13"))
        .stop();
    refuse(&p.b, Unsupported, "_codecs.encode to rot13");
}

#[test]
fn torch_size_and_device_are_inert_values() {
    // torch.Size((2, 3)) is a tuple; torch.device('cpu') an opaque value.
    let p = Asm::new()
        .mark()
        .call("torch", "Size", |a| a.ints(&[2, 3]))
        .call("torch", "device", |a| a.str("cpu"))
        .tuple()
        .stop();
    assert_eq!(loads(&p.b), "((2, 3), <torch.device>)");
}

#[test]
fn unknown_opcode_and_indirect_globals_refused() {
    // EXT codes name globals through copyreg; buffers and PERSID text are never in torch files.
    refuse(
        &[0xff, op::STOP],
        Corrupt,
        "unknown pickle opcode 0xff at byte 0",
    );
    refuse(
        &[op::EXT1, 1, op::STOP],
        Unsupported,
        "copyreg extension code at byte 0",
    );
    refuse(
        &[op::NEXT_BUFFER, op::STOP],
        Unsupported,
        "out-of-band pickle buffer at byte 0",
    );
    refuse(
        &Asm::new().line(op::PERSID, b"0").stop().b,
        Unsupported,
        "text persistent id (PERSID) at byte 0",
    );
}

// ---------------------------------------------------------------------------
// FRAME, PROTO, STOP
// ---------------------------------------------------------------------------

fn frame(len: u64) -> Vec<u8> {
    let mut v = vec![op::FRAME];
    v.extend_from_slice(&len.to_le_bytes());
    v
}

#[test]
fn opcode_straddling_a_frame_end_refused() {
    // A frame holds whole opcodes; BININT1's argument outside it is a framing lie.
    let p = Asm::new()
        .proto(4)
        .raw(&frame(1))
        .raw(&[op::BININT1, 1, op::STOP]);
    refuse(
        &p.b,
        Corrupt,
        "opcode 0x4b at byte 11 of data.pkl runs past the end of its frame",
    );
}

#[test]
fn frame_inside_a_frame_refused() {
    // Frames do not nest.
    let p = Asm::new()
        .proto(4)
        .raw(&frame(11))
        .raw(&frame(1))
        .raw(&[op::NONE, op::STOP]);
    refuse(
        &p.b,
        Corrupt,
        "FRAME at byte 11 of data.pkl starts inside another frame",
    );
}

#[test]
fn frame_longer_than_the_stream_refused() {
    // A frame claiming more bytes than the pickle has is refused before reading on.
    let p = Asm::new()
        .proto(4)
        .raw(&frame(100))
        .raw(&[op::NONE, op::STOP]);
    refuse(
        &p.b,
        Corrupt,
        "FRAME at byte 2 of data.pkl claims 100 bytes, more than the pickle holds",
    );
    let p = Asm::new()
        .proto(4)
        .raw(&frame(u64::MAX))
        .raw(&[op::NONE, op::STOP]);
    refuse(&p.b, Corrupt, "claims 18446744073709551615 bytes");
}

#[test]
fn stop_inside_an_unfinished_frame_refused() {
    // Bytes left in the frame after STOP would be a hidden second pickle.
    let p = Asm::new()
        .proto(4)
        .raw(&frame(3))
        .raw(&[op::NONE, op::STOP, op::NONE]);
    refuse(
        &p.b,
        Corrupt,
        "STOP at byte 12 of data.pkl inside an unfinished frame",
    );
}

#[test]
fn hand_made_back_to_back_frames_accepted() {
    // Protocol 4 may split a pickle into consecutive frames.
    let p = Asm::new()
        .proto(4)
        .raw(&frame(3))
        .raw(&[op::EMPTY_LIST, op::MARK, op::NONE])
        .raw(&frame(4))
        .raw(&[op::BININT1, 7, op::APPENDS, op::STOP]);
    assert_eq!(loads(&p.b), "[None, 7]");
}

#[test]
fn cpython_multi_frame_pickle_accepted() {
    // pickle.dumps(['xyz', 'a'*70000, 'b'], protocol=4): frame, unframed large BINUNICODE, frame.
    let mut p = hex("8004 95 0900000000000000 5d 94 28 8c03 78797a 94");
    p.push(op::BINUNICODE);
    p.extend_from_slice(&70000u32.to_le_bytes());
    p.extend(std::iter::repeat_n(b'a', 70000));
    p.extend(hex("95 0700000000000000 94 8c01 62 94 65 2e"));
    // len(...) and zlib.crc32(...) of CPython's bytes.
    assert_eq!(p.len(), 70041);
    assert_eq!(crc32fast::hash(&p), 150071590);
    let (m, v) = accept(&p);
    let items = match m.heap.obj(v) {
        Some(Obj::List(l)) => l.clone(),
        _ => panic!("not a list"),
    };
    assert_eq!(items.len(), 3);
    assert_eq!(m.heap.str(items[0]), Some("xyz"));
    assert_eq!(m.heap.str(items[1]).map(str::len), Some(70000));
    assert_eq!(m.heap.str(items[2]), Some("b"));
}

#[test]
fn proto_not_first_refused() {
    // PROTO is only valid as the first opcode.
    let p = Asm::new()
        .op(op::NONE)
        .op(op::POP)
        .proto(2)
        .op(op::NONE)
        .stop();
    refuse(
        &p.b,
        Corrupt,
        "PROTO at byte 2 of data.pkl is not the first opcode",
    );
    let p = Asm::new().proto(2).proto(2).op(op::NONE).stop();
    refuse(
        &p.b,
        Corrupt,
        "PROTO at byte 2 of data.pkl is not the first opcode",
    );
}

#[test]
fn proto_6_refused() {
    // Protocols 0 to 5 exist; 6 is unknown.
    let r = refuse(
        &Asm::new().proto(6).op(op::NONE).stop().b,
        Unsupported,
        "pickle protocol 6 (at byte 0 of data.pkl)",
    );
    assert!(r.hint.contains("0 to 5"));
}

#[test]
fn proto_5_accepted_and_reported() {
    // Protocol 5 is accepted and reported as such.
    match load_with(PidStyle::Zip, &Asm::new().proto(5).op(op::NONE).stop().b) {
        (_, Ok(l)) => assert_eq!(l.protocol, 5),
        (_, Err(r)) => panic!("{r:?}"),
    }
}

#[test]
fn stop_with_open_mark_refused() {
    // A MARK never closed means the stream is malformed.
    refuse(
        &Asm::new().mark().op(op::NONE).stop().b,
        Corrupt,
        "STOP at byte 2 of data.pkl with an open MARK",
    );
}

#[test]
fn stop_with_extra_stack_items_refused() {
    // CPython ignores leftovers under the top; decant does not guess.
    refuse(
        &Asm::new().op(op::NONE).op(op::NONE).stop().b,
        Corrupt,
        "STOP at byte 2 of data.pkl leaves 1 extra values on the stack",
    );
}

#[test]
fn stop_on_empty_stack_refused() {
    // Nothing to return.
    refuse(
        &Asm::new().stop().b,
        Corrupt,
        "stack underflow at byte 0 of data.pkl",
    );
}

#[test]
fn missing_stop_refused() {
    // A pickle that runs out before STOP is truncated.
    refuse(
        &Asm::new().op(op::NONE).b,
        Corrupt,
        "pickle ends at byte 1 of data.pkl without a STOP opcode",
    );
    refuse(
        &Asm::new().line(op::INT, b"").b[..1],
        Corrupt,
        "unterminated text argument at byte 0 of data.pkl",
    );
}

#[test]
fn load_honours_start_offset_and_label() {
    // Legacy pickles run at absolute offsets with an empty label.
    let src = [b"junk".as_slice(), &Asm::new().int(1).int(2).stop().b].concat();
    let mut m = Machine::new(PidStyle::Legacy);
    match m.load(&src, 4, src.len() as u64, "") {
        Err(r) => assert!(
            r.message.contains("STOP at byte 8 leaves 1 extra values"),
            "{}",
            r.message
        ),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn load_starting_past_its_end_is_refused_not_underflowed() {
    // `end - pos` would underflow (a trap in the shipped guest).
    let src = Asm::new().int(1).stop().b;
    for (start, end) in [(4, 2), (u64::MAX, 3), (2, 0)] {
        let mut m = Machine::new(PidStyle::Legacy);
        let r = m.load(&src, start, end, "").err().expect("refused");
        assert!(
            r.message.contains("without a STOP opcode"),
            "{start}..{end}: {}",
            r.message
        );
    }
}

// ---------------------------------------------------------------------------
// Lying lengths
// ---------------------------------------------------------------------------

#[test]
fn lying_lengths_refused_without_allocating() {
    // A length near 2^64 must be checked against the stream before any allocation.
    let cases: [(&str, &str); 6] = [
        (
            "8d feffffffffffffff",
            "18446744073709551614 bytes needed at byte 9",
        ),
        (
            "8e ffffffffffffffff",
            "18446744073709551615 bytes needed at byte 9",
        ),
        (
            "96 ffffffffffffffff",
            "18446744073709551615 bytes needed at byte 9",
        ),
        ("8b ffffff7f", "2147483647 bytes needed at byte 5"),
        ("58 ffffffff", "4294967295 bytes needed at byte 5"),
        ("42 ffffffff", "4294967295 bytes needed at byte 5"),
    ];
    let start = Instant::now();
    for (head, needle) in cases {
        let p = [hex(head), vec![op::STOP]].concat();
        let r = refuse(&p, Corrupt, needle);
        assert!(r.message.starts_with("pickle truncated"), "{}", r.message);
    }
    refuse(
        &hex("54 ffffffff 2e"),
        Corrupt,
        "negative BINSTRING length at byte 0",
    );
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn invalid_utf8_in_binunicode_refused() {
    // Text opcodes must hold UTF-8.
    refuse(
        &hex("8c 02 ff fe 2e"),
        Corrupt,
        "string at byte 0 of data.pkl is not UTF-8",
    );
}

// ---------------------------------------------------------------------------
// Tensor rebuilds and persistent ids
// ---------------------------------------------------------------------------

#[test]
fn rebuild_tensor_v2_builds_a_view() {
    // The normal case: offset, shape, stride in elements over an F32 storage.
    let (m, v) = accept(
        &Asm::new()
            .proto(2)
            .f32_tensor(6, 1, &[2, 2], &[1, 2])
            .stop()
            .b,
    );
    let t = tensor_of(&m, v);
    assert_eq!(
        (t.dtype, t.offset, &t.shape[..], &t.stride[..]),
        (crate::dtype::DType::F32, 1, &[2u64, 2][..], &[1u64, 2][..])
    );
    assert_eq!(m.storages.decls[0].nbytes, 24);
    assert_eq!(m.storages.decls[0].key, "0");
}

#[test]
fn view_past_storage_end_refused() {
    // burn read zeros past the end; torch refuses such a view.
    let p = Asm::new().proto(2).f32_tensor(4, 0, &[2, 3], &[3, 1]);
    let at = p.call;
    refuse(
        &p.stop().b,
        Corrupt,
        &format!("tensor at byte {at} of data.pkl reaches byte 24 of storage 0 which has 16 bytes"),
    );
    let p = Asm::new().proto(2).f32_tensor(4, 1, &[4], &[1]).stop();
    refuse(
        &p.b,
        Corrupt,
        "reaches byte 20 of storage 0 which has 16 bytes",
    );
}

#[test]
fn empty_view_offset_past_storage_end_refused() {
    // An empty view still has to start inside (or at the end of) its storage.
    let p = Asm::new().proto(2).f32_tensor(4, 4, &[0], &[1]).stop();
    accept(&p.b);
    let p = Asm::new().proto(2).f32_tensor(4, 5, &[0], &[1]).stop();
    refuse(
        &p.b,
        Corrupt,
        "reaches byte 20 of storage 0 which has 16 bytes",
    );
}

#[test]
fn size_times_stride_overflow_refused() {
    // 2^40 x 2^40 elements overflow u64; checked arithmetic refuses instead of wrapping.
    let p = Asm::new()
        .proto(2)
        .f32_tensor(4, 0, &[1 << 40, 1 << 40], &[1 << 40, 1])
        .stop();
    refuse(&p.b, Corrupt, "size arithmetic overflows");
    // numel fits, but the last element's index does not.
    let p = Asm::new()
        .proto(2)
        .f32_tensor(4, 0, &[2, 2], &[i64::MAX, 1])
        .stop();
    refuse(&p.b, Corrupt, "size arithmetic overflows");
}

#[test]
fn shape_and_stride_length_mismatch_refused() {
    // Each dimension needs a stride.
    let p = Asm::new().proto(2).f32_tensor(4, 0, &[2, 2], &[1]);
    let at = p.call;
    refuse(
        &p.stop().b,
        Corrupt,
        &format!("tensor at byte {at} of data.pkl has 2 sizes but 1 strides"),
    );
}

#[test]
fn negative_offset_refused() {
    // Offsets, sizes and strides are non-negative element counts.
    let p = Asm::new().proto(2).f32_tensor(4, -1, &[1], &[1]);
    let at = p.call;
    refuse(
        &p.stop().b,
        Corrupt,
        &format!(
            "tensor storage offset at byte {at} of data.pkl: expected a non-negative integer, found int"
        ),
    );
    refuse(
        &Asm::new().f32_tensor(4, 0, &[-1], &[1]).stop().b,
        Corrupt,
        "tensor shape at byte",
    );
    refuse(
        &Asm::new().f32_tensor(4, 0, &[1], &[-1]).stop().b,
        Corrupt,
        "tensor stride at byte",
    );
}

#[test]
fn more_than_64_dimensions_refused() {
    // torch's own limit; bounds the per-tensor work.
    let shape = vec![1i64; 65];
    let p = Asm::new().f32_tensor(4, 0, &shape, &shape).stop();
    refuse(&p.b, Limit, "tensor shape at byte");
    refuse(&p.b, Limit, "has 65 dimensions (at most 64)");
}

#[test]
fn storage_key_with_path_separator_or_dotdot_refused() {
    // Keys become `data/<key>`: `../x` or `a/b` would name other records.
    for key in ["../x", "a/b", "..", "", "0\\1", "é"] {
        let p = Asm::new().tensor(|a| a.storage("FloatStorage", key, 4), 0, &[4], &[1]);
        let at = p.persid;
        let r = refuse(&p.stop().b, Corrupt, "is not a plain name");
        assert!(
            r.message.contains(&format!("at byte {at} of data.pkl")),
            "{key:?}: {}",
            r.message
        );
    }
    let p = Asm::new()
        .tensor(|a| a.storage("FloatStorage", "../x", 4), 0, &[4], &[1])
        .stop();
    refuse(&p.b, Corrupt, "storage key \"../x\" at byte");
}

#[test]
fn storage_key_longer_than_64_refused() {
    // Plain names are also short.
    let key = "1".repeat(65);
    let p = Asm::new()
        .tensor(|a| a.storage("FloatStorage", &key, 4), 0, &[4], &[1])
        .stop();
    refuse(&p.b, Corrupt, "is not a plain name");
}

#[test]
fn same_key_declared_twice_with_different_numel_refused() {
    // torch silently reuses the first declaration; two sizes for one record is ambiguous.
    let p = Asm::new().mark().f32_tensor(4, 0, &[4], &[1]).tensor(
        |a| a.storage("FloatStorage", "0", 5),
        0,
        &[4],
        &[1],
    );
    let at = p.persid;
    refuse(
        &p.tuple().stop().b,
        Corrupt,
        &format!("storage 0 is declared again at byte {at} of data.pkl with another type or size"),
    );
}

#[test]
fn same_key_declared_twice_identically_is_one_storage() {
    // Views of a shared storage repeat its pid; they must map to one declaration.
    let p = Asm::new()
        .mark()
        .f32_tensor(4, 0, &[4], &[1])
        .f32_tensor(4, 2, &[2], &[1])
        .tuple()
        .stop();
    let (m, v) = accept(&p.b);
    assert_eq!(m.storages.decls.len(), 1);
    let t = m.heap.tuple(v).expect("tuple").to_vec();
    assert_eq!(tensor_of(&m, t[0]).storage, tensor_of(&m, t[1]).storage);
}

#[test]
fn zip_pid_with_wrong_arity_refused() {
    // A zip pid has exactly 5 fields; the legacy 6-field form is not accepted here.
    let six = Asm::new().pid(|a| {
        a.str("storage")
            .global("torch", "FloatStorage")
            .str("0")
            .str("cpu")
            .int(4)
            .op(op::NONE)
    });
    let at = six.persid;
    refuse(
        &six.stop().b,
        Corrupt,
        &format!("storage reference at byte {at} of data.pkl has 6 fields, expected 5"),
    );
    let four = Asm::new()
        .pid(|a| {
            a.str("storage")
                .global("torch", "FloatStorage")
                .str("0")
                .str("cpu")
        })
        .stop();
    refuse(&four.b, Corrupt, "has 4 fields, expected 5");
}

#[test]
fn legacy_pid_with_wrong_arity_refused() {
    // A legacy pid has exactly 6 fields.
    let p = Asm::new().storage("FloatStorage", "0", 4).stop();
    refuse_with(PidStyle::Legacy, &p.b, Corrupt, "has 5 fields, expected 6");
}

#[test]
fn legacy_module_pid_refused() {
    // Whole-model saves pickle module source as ('module', cls, file, source).
    let p = Asm::new().pid(|a| {
        a.str("module")
            .global("collections", "OrderedDict")
            .str("model.py")
            .str("class M: pass")
    });
    let at = p.persid;
    refuse_with(
        PidStyle::Legacy,
        &p.stop().b,
        Unsupported,
        &format!("pickled module source at byte {at} of data.pkl (a whole-model save)"),
    );
}

#[test]
fn pid_that_is_not_a_storage_reference_refused() {
    // Anything but a ('storage', ...) tuple.
    refuse(
        &Asm::new().str("0").op(op::BINPERSID).stop().b,
        Corrupt,
        "persistent id at byte 6 of data.pkl is a str, not a tuple",
    );
    refuse(
        &Asm::new().pid(|a| a.str("other")).stop().b,
        Corrupt,
        "persistent id at byte 12 of data.pkl is not a storage reference",
    );
    let p = Asm::new()
        .pid(|a| {
            a.str("storage")
                .global("collections", "OrderedDict")
                .str("0")
                .str("cpu")
                .int(4)
        })
        .stop();
    refuse(&p.b, Corrupt, "names no storage class");
}

#[test]
fn tensor_over_a_non_storage_refused() {
    // The first rebuild argument must come from a persistent id.
    let p = Asm::new().tensor(|a| a.str("0"), 0, &[1], &[1]).stop();
    refuse(&p.b, Corrupt, "has a str where its storage belongs");
}

#[test]
fn rebuild_v2_with_non_empty_metadata_refused() {
    // The metadata dict carries neg/conj bits, which change the values.
    let seventh = |meta: fn(Asm) -> Asm| {
        Asm::new().call("torch._utils", "_rebuild_tensor_v2", |a| {
            meta(
                a.storage("FloatStorage", "0", 4)
                    .int(0)
                    .ints(&[4])
                    .ints(&[1])
                    .op(op::NEWFALSE)
                    .ordered_dict(),
            )
        })
    };
    let p = seventh(|a| {
        a.op(op::EMPTY_DICT)
            .mark()
            .str("_is_neg")
            .op(op::NEWTRUE)
            .op(op::SETITEMS)
    });
    let at = p.call;
    refuse(
        &p.stop().b,
        Unsupported,
        &format!("tensor metadata (neg/conj bit) at byte {at} of data.pkl"),
    );
    accept(&seventh(|a| a.op(op::EMPTY_DICT)).stop().b);
    accept(&seventh(|a| a.op(op::NONE)).stop().b);
    refuse(
        &seventh(|a| a.int(1)).stop().b,
        Unsupported,
        "tensor metadata (neg/conj bit)",
    );
}

#[test]
fn rebuild_v2_with_wrong_arity_refused() {
    // Five arguments is not a v2 call.
    let p = Asm::new()
        .call("torch._utils", "_rebuild_tensor_v2", |a| {
            a.storage("FloatStorage", "0", 4)
                .int(0)
                .ints(&[4])
                .ints(&[1])
                .op(op::NEWFALSE)
        })
        .stop();
    refuse(&p.b, Corrupt, "_rebuild_tensor_v2 at byte");
    refuse(&p.b, Corrupt, "called with 5 arguments");
}

#[test]
fn rebuild_v3_takes_its_dtype_from_the_argument() {
    // UntypedStorage counts bytes; _rebuild_tensor_v3's dtype gives the element type.
    let v3 = |dtype: &'static str| {
        Asm::new().call("torch._utils", "_rebuild_tensor_v3", move |a| {
            a.pid(|a| {
                a.str("storage")
                    .global("torch.storage", "UntypedStorage")
                    .str("0")
                    .str("cpu")
                    .int(8)
            })
            .int(0)
            .ints(&[4])
            .ints(&[1])
            .op(op::NEWFALSE)
            .ordered_dict()
            .global("torch", dtype)
        })
    };
    let (m, v) = accept(&v3("uint16").stop().b);
    let t = tensor_of(&m, v);
    assert_eq!(t.dtype, crate::dtype::DType::U16);
    assert_eq!(t.storage.nbytes, 8);
    // Four uint32 need 16 bytes of the 8-byte storage.
    refuse(
        &v3("uint32").stop().b,
        Corrupt,
        "reaches byte 16 of storage 0 which has 8 bytes",
    );
    refuse(&v3("complex32").stop().b, Unsupported, "complex32 tensor");
}

#[test]
fn rebuild_parameter_unwraps_its_tensor() {
    // nn.Parameter is its .data; anything else inside is refused.
    let p = Asm::new()
        .call("torch._utils", "_rebuild_parameter", |a| {
            a.f32_tensor(4, 0, &[4], &[1])
                .op(op::NEWTRUE)
                .ordered_dict()
        })
        .stop();
    let (m, v) = accept(&p.b);
    tensor_of(&m, v);
    let p = Asm::new()
        .call("torch._utils", "_rebuild_parameter", |a| {
            a.int(1).op(op::NEWTRUE).ordered_dict()
        })
        .stop();
    refuse(&p.b, Corrupt, "wraps a int, not a tensor");
}

#[test]
fn rebuild_from_type_v2_refuses_subclasses() {
    // Only torch.Tensor / nn.Parameter as the type; a subclass is refused.
    let with_type = |module: &'static str, name: &'static str| {
        Asm::new().call("torch._tensor", "_rebuild_from_type_v2", move |a| {
            a.global("torch._utils", "_rebuild_tensor_v2")
                .global(module, name)
                .mark()
                .storage("FloatStorage", "0", 4)
                .int(0)
                .ints(&[4])
                .ints(&[1])
                .op(op::NEWFALSE)
                .ordered_dict()
                .tuple()
                .op(op::EMPTY_DICT)
        })
    };
    let (m, v) = accept(&with_type("torch.nn.parameter", "Parameter").stop().b);
    tensor_of(&m, v);
    refuse(
        &with_type("torch", "FloatStorage").stop().b,
        Unsupported,
        "tensor subclass at byte",
    );
}

#[test]
fn unconvertible_tensor_kinds_refused_by_name() {
    // Quantized and sparse tensors are refused at their GLOBAL, naming what they are.
    refuse(
        &Asm::new()
            .global("torch._utils", "_rebuild_qtensor")
            .stop()
            .b,
        Unsupported,
        "quantized tensor (torch._utils._rebuild_qtensor at byte 0 of data.pkl)",
    );
    refuse(
        &Asm::new()
            .global("torch.serialization", "_get_layout")
            .stop()
            .b,
        Unsupported,
        "sparse tensor layout",
    );
    refuse(
        &Asm::new().storage("ComplexFloatStorage", "0", 1).stop().b,
        Unsupported,
        "complex64 tensor (torch.ComplexFloatStorage at byte",
    );
}

#[test]
fn legacy_view_metadata_past_storage_refused() {
    // Legacy (view_key, offset, size) must lie inside the root storage.
    let pid = |offset: i64, size: i64| {
        Asm::new().pid(move |a| {
            a.str("storage")
                .global("torch", "FloatStorage")
                .str("0")
                .str("cpu")
                .int(4)
                .mark()
                .str("v")
                .int(offset)
                .int(size)
                .tuple()
        })
    };
    let (m, v) = accept_with(PidStyle::Legacy, &pid(1, 3).stop().b);
    assert_eq!(
        m.heap
            .obj(v)
            .map(|o| matches!(o, Obj::Storage(s) if s.byte_offset == 4 && s.nbytes == 12)),
        Some(true)
    );
    refuse_with(
        PidStyle::Legacy,
        &pid(2, 3).stop().b,
        Corrupt,
        "storage view at byte",
    );
    let twice = Asm::new()
        .mark()
        .then(pid(0, 2))
        .then(pid(1, 2))
        .tuple()
        .stop();
    refuse_with(
        PidStyle::Legacy,
        &twice.b,
        Corrupt,
        "storage view v is declared again",
    );
}
