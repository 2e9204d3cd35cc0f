//! `converter_guest::audit` (`decant audit`'s file scan) through its public
//! entry point: formats told apart by content, the static pickle scanner on
//! hand-built pickles, the safetensors and GGUF header checks, and every
//! committed fixture.
// The whole crate, helpers included, is test code: clippy.toml's allowances
// for tests (unwrap, expect, panic, indexing) apply to it.
#![cfg(test)]

mod common;

use common::*;
use converter_guest::audit;
use decant_abi::{FileScan, PickleStream, ScanFormat, MAX_LISTED_GLOBALS, MAX_OUTCOME_BYTES};
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn scan(bytes: &[u8]) -> FileScan {
    let s = audit(&bytes.to_vec());
    // What the wasm glue sends the host must fit and parse back.
    let json = serde_json::to_vec(&s).unwrap();
    assert!(json.len() <= MAX_OUTCOME_BYTES as usize);
    assert_eq!(serde_json::from_slice::<FileScan>(&json).unwrap(), s);
    s
}

fn streams(s: &FileScan) -> &[PickleStream] {
    &s.pickle.as_ref().expect("a pickle scan").streams
}

/// Every listed global of every stream, as `(name, allowlisted)`.
fn globals(s: &FileScan) -> Vec<(String, bool)> {
    streams(s)
        .iter()
        .flat_map(|st| st.globals.iter().map(|g| (g.name.clone(), g.allowlisted)))
        .collect()
}

fn only_stream(s: &FileScan) -> &PickleStream {
    let st = streams(s);
    assert_eq!(st.len(), 1, "{st:?}");
    &st[0]
}

/// A GGUF file of `version` (2 or 3, little-endian): the pairs, then
/// `tensors` zeroed 24-byte tensor infos.
fn gguf(version: u32, pairs: &[(&str, u32, Vec<u8>)], tensors: u64) -> Vec<u8> {
    let mut f = b"GGUF".to_vec();
    f.extend_from_slice(&version.to_le_bytes());
    f.extend_from_slice(&tensors.to_le_bytes());
    f.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    for (k, t, v) in pairs {
        f.extend_from_slice(&(k.len() as u64).to_le_bytes());
        f.extend_from_slice(k.as_bytes());
        f.extend_from_slice(&t.to_le_bytes());
        f.extend_from_slice(v);
    }
    f.resize(f.len() + 24 * tensors as usize, 0);
    f
}

fn gguf_string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

const TEMPLATE: &str = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}";

fn llama_gguf(version: u32) -> Vec<u8> {
    let mut tokens = 8u32.to_le_bytes().to_vec(); // array of strings
    tokens.extend_from_slice(&2u64.to_le_bytes());
    tokens.extend_from_slice(&gguf_string("<s>"));
    tokens.extend_from_slice(&gguf_string("</s>"));
    gguf(
        version,
        &[
            ("general.architecture", 8, gguf_string("llama")),
            ("general.name", 8, gguf_string("Tiny Llama")),
            ("general.file_type", 4, 15u32.to_le_bytes().to_vec()),
            ("llama.context_length", 10, 4096u64.to_le_bytes().to_vec()),
            ("tokenizer.ggml.tokens", 9, tokens),
            ("tokenizer.chat_template", 8, gguf_string(TEMPLATE)),
        ],
        2,
    )
}

// ---------------------------------------------------------------------------
// Formats, by content
// ---------------------------------------------------------------------------

#[test]
fn each_format_is_told_by_its_content() {
    assert_eq!(scan(&reference_zip().build()).format, ScanFormat::TorchZip);
    let mut z = Zip::default();
    z.push(
        "model/estimator.pkl",
        &Pkl::new().proto(2).none().stop().bytes(),
    );
    assert_eq!(scan(&z.build()).format, ScanFormat::ZipWithPickles);
    let mut z = Zip::default();
    z.push("notes/readme.txt", b"hello");
    assert_eq!(scan(&z.build()).format, ScanFormat::Other);
    assert_eq!(scan(&reference_legacy()).format, ScanFormat::Pickle);
    assert_eq!(
        scan(&safetensors(
            r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
            &[7]
        ))
        .format,
        ScanFormat::Safetensors
    );
    // `G` (BINFLOAT) is a pickle opcode: the GGUF magic wins.
    assert_eq!(scan(&llama_gguf(3)).format, ScanFormat::Gguf);
    for other in [
        &b""[..],
        b"{\"architectures\": []}",
        b"\x89PNG\r\n\x1a\n",
        b"MIT License\n\nCopyright",
    ] {
        let s = scan(other);
        assert_eq!(s.format, ScanFormat::Other, "{other:?}");
        assert_eq!((s.pickle, s.damaged), (None, None));
    }
}

#[test]
fn a_pickle_is_a_pickle_whatever_it_is_called() {
    // Only bytes reach the scan, so a pickle shipped as `model.safetensors`
    // is reported as what it is.
    let p = Pkl::new()
        .proto(2)
        .global("posix", "system")
        .mark()
        .str("id")
        .tuple()
        .reduce()
        .stop()
        .bytes();
    let s = scan(&p);
    assert_eq!(s.format, ScanFormat::Pickle);
    assert_eq!(globals(&s), vec![("posix.system".to_string(), false)]);
}

#[test]
fn a_file_that_is_both_safetensors_and_a_pickle_is_reported_as_a_pickle() {
    // Byte 0 'c' (GLOBAL) and byte 1 '\n' make the length field 2659; its
    // name line runs through the header to a newline that starts the data,
    // and the data goes on as a pickle calling os.system. Every safetensors
    // rule holds too.
    let n = 0x0a63usize;
    let tail = b"\ncos\nsystem\n(S'id'\ntR.";
    let json = format!(
        r#"{{"x":{{"dtype":"U8","shape":[{}],"data_offsets":[0,{}]}}}}"#,
        tail.len(),
        tail.len()
    );
    let mut f = (n as u64).to_le_bytes().to_vec();
    f.extend_from_slice(json.as_bytes());
    f.resize(8 + n, b' ');
    f.extend_from_slice(tail);
    assert_eq!(&f[..2], b"c\n");
    let s = scan(&f);
    assert_eq!(s.format, ScanFormat::Pickle);
    assert!(s
        .damaged
        .as_deref()
        .unwrap()
        .contains("also a valid safetensors file"));
    assert!(globals(&s).contains(&("os.system".to_string(), false)));
}

#[test]
fn text_starting_with_an_opcode_byte_is_no_pickle() {
    // 'M' BININT2 eats "IT", then ' ' is no opcode: nothing is imported.
    let s = scan(b"MIT License\n\nCopyright (c) 2024");
    assert_eq!(s.format, ScanFormat::Other);
    // A truncated binary pickle is one, damaged.
    let s = scan(&[0x80, 2, b'}', b'q']);
    assert_eq!(s.format, ScanFormat::Pickle);
    assert!(only_stream(&s).damaged.is_some());
}

// ---------------------------------------------------------------------------
// The static pickle scanner
// ---------------------------------------------------------------------------

#[test]
fn global_and_reduce_are_named_and_counted() {
    let p = Pkl::new()
        .proto(2)
        .global("os", "system")
        .mark()
        .str("echo hi")
        .tuple()
        .reduce()
        .stop()
        .bytes();
    let s = scan(&p);
    let st = only_stream(&s);
    assert_eq!(st.location, "byte 0");
    assert_eq!(st.protocol, 2);
    assert_eq!(
        (st.calls, st.unresolved, st.outside_total, st.globals_total),
        (1, 0, 1, 1)
    );
    assert_eq!(st.damaged, None);
}

#[test]
fn inst_in_a_protocol_0_text_pickle_is_named() {
    // (S'echo hi'\nios\nsystem\n. : INST calls os.system with the marked args.
    let s = scan(b"(S'echo hi'\nios\nsystem\n.");
    let st = only_stream(&s);
    assert_eq!(st.protocol, 0, "text opcodes only");
    assert_eq!(st.calls, 1);
    assert_eq!(globals(&s), vec![("os.system".to_string(), false)]);
}

#[test]
fn a_protocol_0_state_dict_with_memo_is_read_to_its_stop() {
    let p = b"ccollections\nOrderedDict\np0\n((lp1\ntRp2\nS'w'\np3\ng2\nsV\\u00e9\np4\nI1\ns.";
    let s = scan(p);
    let st = only_stream(&s);
    assert_eq!((st.protocol, st.damaged.as_deref()), (0, None));
    assert_eq!(
        globals(&s),
        vec![("collections.OrderedDict".to_string(), true)]
    );
}

#[test]
fn python2_names_are_shown_as_written_and_judged_as_the_vm_judges_them() {
    // The VM maps __builtin__ to builtins (as torch does), so __builtin__.set
    // is on the allowlist and __builtin__.eval is not.
    let p = b"c__builtin__\nset\n)Rc__builtin__\neval\n(S'1'\ntR.";
    assert_eq!(
        globals(&scan(p)),
        vec![
            ("__builtin__.eval".to_string(), false),
            ("__builtin__.set".to_string(), true),
        ]
    );
}

#[test]
fn stack_global_resolves_pushed_strings() {
    let mut p = vec![0x80, 4];
    for s in ["posix", "system"] {
        p.extend_from_slice(&[0x8c, s.len() as u8]);
        p.extend_from_slice(s.as_bytes());
    }
    p.extend_from_slice(&[0x93, b'.']);
    let s = scan(&p);
    assert_eq!(only_stream(&s).protocol, 4);
    assert_eq!(globals(&s), vec![("posix.system".to_string(), false)]);
}

#[test]
fn stack_global_resolves_operands_fetched_from_the_memo() {
    // BINPUT then POP, later BINGET: nothing string-like sits right before
    // STACK_GLOBAL.
    let p = Pkl::new()
        .proto(4)
        .str("os")
        .put(0)
        .op(b'0')
        .str("system")
        .put(1)
        .op(b'0')
        .str("torch._utils")
        .str("_rebuild_tensor_v2")
        .op(b'0')
        .op(b'0')
        .get(0)
        .get(1)
        .op(0x93)
        .stop()
        .bytes();
    assert_eq!(globals(&scan(&p)), vec![("os.system".to_string(), false)]);
    // MEMOIZE numbers entries implicitly.
    let mut p = vec![0x80, 5];
    for s in ["posix", "system"] {
        p.extend_from_slice(&[0x8c, s.len() as u8]);
        p.extend_from_slice(s.as_bytes());
        p.extend_from_slice(&[0x94, b'0']);
    }
    p.extend_from_slice(&[b'h', 0, b'h', 1, 0x93, b'.']);
    assert_eq!(
        globals(&scan(&p)),
        vec![("posix.system".to_string(), false)]
    );
}

#[test]
fn a_computed_stack_global_operand_is_counted_unresolved() {
    // STACK_GLOBAL('builtins', 'str.join')('', ['o','s']) as the module of a
    // second STACK_GLOBAL: the first is named, the second cannot be without
    // running the call.
    let mut p = vec![0x80, 4];
    for s in ["builtins", "str.join"] {
        p.extend_from_slice(&[0x8c, s.len() as u8]);
        p.extend_from_slice(s.as_bytes());
    }
    p.push(0x93);
    p.extend_from_slice(&[
        0x8c, 0, b']', b'(', 0x8c, 1, b'o', 0x8c, 1, b's', b'e', 0x86, b'R',
    ]);
    p.extend_from_slice(&[0x8c, 6]);
    p.extend_from_slice(b"system");
    p.extend_from_slice(&[0x93, b'.']);
    let s = scan(&p);
    let st = only_stream(&s);
    assert_eq!((st.unresolved, st.calls, st.globals_total), (1, 1, 1));
    assert_eq!(globals(&s), vec![("builtins:str.join".to_string(), false)]);
}

#[test]
fn a_flood_of_allowlisted_globals_cannot_hide_posix_system() {
    let allowed = [
        ("torch._utils", "_rebuild_tensor_v2"),
        ("collections", "OrderedDict"),
        ("torch", "FloatStorage"),
        ("torch", "HalfStorage"),
        ("torch", "float32"),
        ("torch", "Size"),
        ("builtins", "set"),
        ("_codecs", "encode"),
    ];
    let mut p = Pkl::new().proto(2);
    for i in 0..2000 {
        let (m, n) = allowed[i % allowed.len()];
        p = p.global(m, n).op(b'0');
    }
    let p = p.global("posix", "system").stop().bytes();
    let s = scan(&p);
    let st = only_stream(&s);
    assert_eq!(st.outside_total, 1);
    assert_eq!(st.globals_total, allowed.len() as u64 + 1);
    assert_eq!(
        st.globals[0].name, "posix.system",
        "outside the allowlist comes first"
    );
    assert!(!st.globals[0].allowlisted);
    assert!(st.globals[1..].iter().all(|g| g.allowlisted));
    assert_eq!(
        st.globals[1].name, "torch._utils._rebuild_tensor_v2",
        "then first-seen order"
    );
}

#[test]
fn more_outside_globals_than_listed_are_all_counted() {
    let mut p = Pkl::new().proto(2);
    for i in 0..(MAX_LISTED_GLOBALS + 5) {
        p = p.global(&format!("m{i}"), "f").op(b'0');
    }
    let s = scan(&p.stop().bytes());
    let st = only_stream(&s);
    assert_eq!(st.globals.len(), MAX_LISTED_GLOBALS);
    assert_eq!(st.outside_total, MAX_LISTED_GLOBALS as u64 + 5);
    assert_eq!(st.globals[0].name, "m0.f");
}

#[test]
fn a_truncated_stream_is_damaged_and_keeps_what_it_named() {
    let mut p = Pkl::new().proto(2).global("os", "system").bytes();
    p.push(b'X');
    p.extend_from_slice(&1000u32.to_le_bytes());
    p.extend_from_slice(b"echo");
    let s = scan(&p);
    assert_eq!(s.format, ScanFormat::Pickle);
    let st = only_stream(&s);
    assert!(
        st.damaged
            .as_deref()
            .unwrap()
            .contains("runs past the end of the file"),
        "{st:?}"
    );
    assert_eq!(globals(&s), vec![("os.system".to_string(), false)]);
    // An undefined opcode.
    let s = scan(&[0x80, 2, 0xff, b'.']);
    assert!(only_stream(&s)
        .damaged
        .as_deref()
        .unwrap()
        .contains("unknown pickle opcode 0xff at byte 2"));
}

#[test]
fn streams_back_to_back_are_each_scanned() {
    let mut f = Pkl::new().proto(2).empty_dict().stop().bytes();
    f.extend(
        Pkl::new()
            .proto(2)
            .global("posix", "system")
            .mark()
            .str("id")
            .tuple()
            .reduce()
            .stop()
            .bytes(),
    );
    let s = scan(&f);
    let st = streams(&s);
    assert_eq!(st.len(), 2);
    assert_eq!(st[1].location, "byte 4");
    assert_eq!(st[1].globals[0].name, "posix.system");
    // The scan stops at the first stream that does not parse, which is
    // listed, damaged.
    let mut f = Pkl::new().proto(2).none().stop().bytes();
    f.extend_from_slice(&[0x80, 2, 0xff]);
    f.extend(Pkl::new().proto(2).none().stop().bytes());
    let s = scan(&f);
    let p = s.pickle.unwrap();
    assert_eq!(p.streams_total, 2);
    assert!(p.streams[1].damaged.is_some());
    // Bytes after a STOP that are no opcode end the sequence quietly.
    let mut f = Pkl::new().proto(2).none().stop().bytes();
    f.extend_from_slice(b"\n\n\t\t");
    let s = scan(&f);
    assert_eq!(s.pickle.unwrap().streams_total, 1);
}

#[test]
fn a_legacy_file_is_five_pickles_and_its_storage_bytes_are_not_scanned() {
    // A storage of 40 elements: its int64 count starts with 0x28, the MARK
    // opcode, which must not be read as a sixth pickle.
    let data: Vec<f32> = (0..40).map(|i| i as f32).collect();
    let main = dict_pickle(vec![(
        "w",
        Pkl::new().tensor_v2(
            Pkl::new().legacy_storage("FloatStorage", "0", 40),
            0,
            &[40],
            &[1],
        ),
    )]);
    let f = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            main,
            legacy_keys(&["0"]),
        ],
        &[(40, f32s(&data))],
    );
    let s = scan(&f);
    let p = s.pickle.as_ref().unwrap();
    assert_eq!(p.streams_total, 5);
    assert!(p.streams.iter().all(|st| st.damaged.is_none()), "{p:?}");
    assert!(globals(&s).iter().all(|(_, allowlisted)| *allowlisted));
}

// ---------------------------------------------------------------------------
// Zip members
// ---------------------------------------------------------------------------

#[test]
fn every_pickle_member_of_a_zip_is_scanned_by_its_name() {
    let mut z = Zip::default();
    z.push(
        "est/model.PKL",
        &Pkl::new().proto(2).global("os", "system").stop().bytes(),
    );
    z.push(
        "est/state.pickle",
        &Pkl::new().proto(2).empty_dict().stop().bytes(),
    );
    z.push("est/notes.txt", b"cos\nsystem\n.");
    let s = scan(&z.build());
    assert_eq!(s.format, ScanFormat::ZipWithPickles);
    let st = streams(&s);
    let locations: Vec<&str> = st.iter().map(|s| s.location.as_str()).collect();
    assert_eq!(locations, ["est/model.PKL", "est/state.pickle"]);
    assert_eq!(st[0].globals[0].name, "os.system");
}

/// Found by a sweep over PyPI packages: silero-vad's TorchScript archive
/// deflates its `code/**/*.debug_pkl` pickles, and audit scanned only
/// stored members under names other than `.pkl`, so a deflated `os.system`
/// pickle under such a name was reported as an unrecognised file.
#[test]
fn a_deflated_pickle_under_another_name_is_inflated_and_scanned() {
    let mut z = Zip::default();
    z.push(
        "m/code/x.py.debug_pkl",
        &Pkl::new().proto(2).global("os", "system").stop().bytes(),
    );
    z.entry("m/code/x.py.debug_pkl").method = 8;
    // Deflated bytes that are not a pickle stay unreported.
    z.push("m/notes.txt", b"not a pickle at all, just text");
    z.entry("m/notes.txt").method = 8;
    let s = scan(&z.build());
    assert_eq!(s.format, ScanFormat::ZipWithPickles);
    let st = only_stream(&s);
    assert_eq!(
        st.location,
        "m/code/x.py.debug_pkl (a pickle under another name, deflate-compressed)"
    );
    assert_eq!(st.globals[0].name, "os.system");
    assert!(!st.globals[0].allowlisted);
}

/// What shares that cause: a zip stored deflated inside the zip was not
/// opened either.
#[test]
fn a_deflated_zip_inside_a_zip_is_opened() {
    let mut inner = Zip::default();
    inner.push(
        "x/model.pkl",
        &Pkl::new().proto(2).global("os", "system").stop().bytes(),
    );
    let mut z = Zip::default();
    z.push("bundle/weights.zip", &inner.build());
    z.entry("bundle/weights.zip").method = 8;
    let s = scan(&z.build());
    assert_eq!(s.format, ScanFormat::ZipWithPickles);
    let st = only_stream(&s);
    assert_eq!(
        st.location,
        "bundle/weights.zip (a deflate-compressed zip inside the zip): x/model.pkl"
    );
    assert_eq!(st.globals[0].name, "os.system");
}

#[test]
fn a_deflated_pickle_member_is_inflated_and_scanned() {
    let mut z = reference_zip();
    z.entry("data.pkl").method = 8;
    let s = scan(&z.build());
    assert_eq!(s.format, ScanFormat::TorchZip);
    let st = only_stream(&s);
    assert_eq!(st.location, "archive/data.pkl (deflate-compressed)");
    assert_eq!(st.damaged, None, "{st:?}");
    assert!(
        !st.globals.is_empty() && st.globals.iter().all(|g| g.allowlisted),
        "{st:?}"
    );
}

#[test]
fn bytes_after_the_stop_of_data_pkl_are_scanned_as_another_stream() {
    let mut pkl = state_dict_pkl();
    pkl.extend(Pkl::new().proto(2).global("os", "system").stop().bytes());
    let s = scan(&zip_of(pkl));
    let st = streams(&s);
    assert_eq!(st.len(), 2);
    assert!(
        st[1].location.starts_with("archive/data.pkl, byte "),
        "{}",
        st[1].location
    );
    assert_eq!(st[1].globals[0].name, "os.system");
}

fn zip_of(pkl: Vec<u8>) -> Vec<u8> {
    torch_zip(pkl, &[("0", data0())]).build()
}

// ---------------------------------------------------------------------------
// safetensors and GGUF
// ---------------------------------------------------------------------------

#[test]
fn a_reference_safetensors_file_is_clean_and_a_changed_offset_is_damage() {
    let f = fixture("convert/zip_p2.safetensors");
    let s = scan(&f);
    assert_eq!(s.format, ScanFormat::Safetensors);
    assert_eq!(s.damaged, None);
    let h = s.safetensors.unwrap();
    assert_eq!(h.tensors, 9);
    assert_eq!(
        h.header_bytes,
        u64::from_le_bytes(f[..8].try_into().unwrap())
    );
    // Same length header, one offset moved.
    let text = String::from_utf8_lossy(&f).into_owned();
    let at = text
        .find("\"data_offsets\":[0,")
        .expect("a tensor at offset 0");
    let mut bad = f.clone();
    bad[at + "\"data_offsets\":[".len()] = b'1';
    let s = scan(&bad);
    assert_eq!(s.format, ScanFormat::Safetensors);
    assert!(s.damaged.is_some());
}

#[test]
fn every_reference_safetensors_file_is_clean() {
    let dir = format!("{}/../fixtures/convert", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "safetensors") {
            let s = scan(&std::fs::read(&path).unwrap());
            assert_eq!(
                (s.format, &s.damaged),
                (ScanFormat::Safetensors, &None),
                "{path:?}"
            );
            n += 1;
        }
    }
    assert!(n >= 10);
}

#[test]
fn gguf_v2_and_v3_headers_give_their_metadata() {
    let digest: String = Sha256::digest(TEMPLATE.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for version in [2, 3] {
        let s = scan(&llama_gguf(version));
        assert_eq!((s.format, &s.damaged), (ScanFormat::Gguf, &None));
        let g = s.gguf.unwrap();
        assert_eq!(
            (g.version, g.tensor_count, g.metadata_count),
            (version, 2, 6)
        );
        assert_eq!(g.architecture.as_deref(), Some("llama"));
        assert_eq!(g.name.as_deref(), Some("Tiny Llama"));
        assert_eq!(g.file_type, Some(15));
        let t = g.chat_template.unwrap();
        assert_eq!(
            (t.bytes, t.sha256.as_str()),
            (TEMPLATE.len() as u64, digest.as_str())
        );
    }
}

#[test]
fn a_truncated_gguf_is_damaged_with_what_was_read() {
    let f = llama_gguf(3);
    let cut = f.len() - 2 * 24 - TEMPLATE.len() / 2;
    let s = scan(&f[..cut]);
    assert_eq!(s.format, ScanFormat::Gguf);
    assert!(
        s.damaged.as_deref().unwrap().contains("runs past the end"),
        "{:?}",
        s.damaged
    );
    let g = s.gguf.unwrap();
    assert_eq!(g.architecture.as_deref(), Some("llama"));
    assert_eq!(g.chat_template, None);
    // Cut inside the header itself.
    let s = scan(&f[..12]);
    assert!(s.damaged.is_some());
    assert_eq!(s.gguf, None);
}

#[test]
fn a_long_gguf_name_is_cut() {
    let long = "n".repeat(5000);
    let s = scan(&gguf(3, &[("general.name", 8, gguf_string(&long))], 0));
    let name = s.gguf.unwrap().name.unwrap();
    assert!(name.len() <= 259 && name.ends_with("..."), "{}", name.len());
}

// ---------------------------------------------------------------------------
// The committed fixtures
// ---------------------------------------------------------------------------

#[test]
fn every_convertible_fixture_scans_clean_with_only_allowlisted_globals() {
    let dir = format!("{}/../fixtures/convert", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| ["pt", "pth", "bin", "ckpt"].iter().any(|e| x == *e))
        })
        .collect();
    files.push(format!("{dir}/example/pytorch_model.bin").into());
    assert!(files.len() >= 20);
    for path in files {
        let s = scan(&std::fs::read(&path).unwrap());
        assert!(
            matches!(s.format, ScanFormat::TorchZip | ScanFormat::Pickle),
            "{path:?}: {:?}",
            s.format
        );
        assert_eq!(s.damaged, None, "{path:?}");
        let p = s.pickle.as_ref().unwrap();
        assert!(
            p.streams
                .iter()
                .all(|st| st.damaged.is_none() && st.unresolved == 0),
            "{path:?}"
        );
        let g = globals(&s);
        assert!(
            !g.is_empty() && g.iter().all(|(_, a)| *a),
            "{path:?}: {g:?}"
        );
    }
}

#[test]
fn every_hostile_fixture_scans_and_a_refused_global_is_listed_outside_the_allowlist() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture("hostile/manifest.json")).unwrap();
    let entries = manifest.as_object().unwrap();
    assert!(entries.len() > 200);
    let mut checked = 0;
    for (name, e) in entries {
        let file = e["file"].as_str().unwrap();
        let s = scan(&fixture(&format!("hostile/{file}")));
        let Some(expect) = e["expect"].as_str().and_then(|x| x.strip_prefix("global ")) else {
            continue;
        };
        let global = expect.split(" at byte").next().unwrap();
        // The refusal shows names through `printable` (`\r` as `\\r`).
        let listed: Vec<(String, bool)> = globals(&s)
            .into_iter()
            .map(|(n, a)| (converter_guest::error::printable(&n), a))
            .collect();
        assert!(
            listed.contains(&(global.to_string(), false)),
            "{name}: {global} not listed outside the allowlist: {listed:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 80);
}

#[test]
fn payloads_the_refusal_does_not_name_are_still_listed() {
    // Refused for their container, but what a lenient reader loads is named.
    for (file, global) in [
        // The second raw pickle, which a stream-by-stream loader runs.
        ("g_raw_benign_then_malicious.pkl", "posix.system"),
        // The duplicate data.pkl the zip crate does not keep: found by its
        // local header.
        ("c_duplicate_data_pkl.pt", "os.system"),
        // A local entry the central directory does not list, its size
        // deferred to a data descriptor.
        ("c_hidden_local_entry.pt", "os.system"),
        ("c_junk_before_offsets_adjusted.pt", "os.system"),
        ("c_case_variant_only.pt", "os.system"),
        ("c_two_roots.pt", "os.system"),
        ("c_torchscript_constants.pt", "os.system"),
        ("s_bytes_after_stop.pt", "os.system"),
        ("s_two_pickles_data_pkl.pt", "os.system"),
        ("s_binget_unwritten.pt", "os.system"),
        ("s_frame_in_frame.pt", "os.system"),
        ("s_frame_longer_than_pickle.pt", "os.system"),
        ("s_proto_not_first.pt", "os.system"),
        ("s_stop_inside_frame.pt", "os.system"),
        ("t_legacy_bad_magic.pt", "os.system"),
    ] {
        let s = scan(&fixture(&format!("hostile/{file}")));
        assert!(
            globals(&s).contains(&(global.to_string(), false)),
            "{file}: {global} not listed: {:?}",
            globals(&s)
        );
    }
}

#[test]
fn a_deflated_data_pkl_is_inflated_and_scanned() {
    // torch inflates it and runs os.system; byte-pattern scanners see no
    // opcodes.
    let s = scan(&fixture("hostile/c_deflate_data_pkl.pt"));
    assert_eq!(s.format, ScanFormat::TorchZip);
    let st = streams(&s);
    let data = st
        .iter()
        .find(|st| st.location == "archive/data.pkl (deflate-compressed)")
        .unwrap_or_else(|| panic!("{st:?}"));
    assert!(
        data.globals
            .iter()
            .any(|g| g.name == "os.system" && !g.allowlisted),
        "{data:?}"
    );
}

/// Issue 13's acceptance, at the guest: on every pickle fixture of the
/// hostile corpus, every global of the ground truth
/// (fixtures/hostile/manifest.json `globals`) is listed outside the
/// allowlist, whichever reader would load it (damaged streams, frames read
/// two ways, unlisted zip entries, bytes after a legacy file's storages).
#[test]
fn every_ground_truth_global_of_the_hostile_corpus_is_listed() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture("hostile/manifest.json")).unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (name, e) in manifest.as_object().unwrap() {
        let Some(expected) = e.get("globals").and_then(|g| g.as_array()) else {
            continue;
        };
        if e.get("hidden_globals") == Some(&serde_json::Value::Bool(true)) {
            continue;
        }
        let s = scan(&fixture(&format!(
            "hostile/{}",
            e["file"].as_str().unwrap()
        )));
        let listed: Vec<String> = s
            .pickle
            .iter()
            .flat_map(|p| &p.streams)
            .flat_map(|st| &st.globals)
            .filter(|g| !g.allowlisted)
            .map(|g| g.name.replacen(':', ".", 1))
            .collect();
        for g in expected {
            let g = g.as_str().unwrap();
            if !listed.iter().any(|l| l == g) {
                missing.push(format!("{name}: {g} (listed {listed:?})"));
            }
        }
        checked += 1;
    }
    assert!(missing.is_empty(), "{missing:#?}");
    assert!(checked >= 60, "{checked}");
}

// ---------------------------------------------------------------------------
// Damaged streams and containers: what a reader that does not stop where
// Python does could still load
// ---------------------------------------------------------------------------

/// `posix.system` called with `id`: the payload of the tests below.
fn payload() -> Vec<u8> {
    Pkl::new()
        .proto(2)
        .global("posix", "system")
        .mark()
        .str("id")
        .tuple()
        .reduce()
        .stop()
        .bytes()
}

/// Every listed global outside the allowlist, as `(name, possible)`.
fn possible(s: &FileScan) -> Vec<(String, bool)> {
    streams(s)
        .iter()
        .flat_map(|st| &st.globals)
        .filter(|g| !g.allowlisted)
        .map(|g| (g.name.clone(), g.possible))
        .collect()
}

/// A stream the linear reading stops in (an unknown opcode) is read on
/// from the next byte, as a resynchronising reader would: what it names
/// is listed as possibly referenced, outside the allowlist only and only
/// if it is a name an unpickler could import (not the tail of a name,
/// `ollections`, nor text read as a GLOBAL line), and the stream stays
/// damaged, its calls and hidden names those of the exact reading.
#[test]
fn a_stream_is_read_on_past_an_unknown_opcode_and_its_names_marked_possible() {
    let mut p = vec![0x80, 2, 0xff];
    p.extend_from_slice(b"ct.)R(X\x06\x00weight\nx\n0");
    p.extend(
        Pkl::new()
            .global("collections", "OrderedDict")
            .raw(b"0")
            .bytes(),
    );
    p.extend(&payload()[2..]);
    let s = scan(&p);
    let st = only_stream(&s);
    assert!(st
        .damaged
        .as_deref()
        .unwrap()
        .starts_with("unknown pickle opcode 0xff at byte 2"));
    assert_eq!(possible(&s), vec![("posix.system".to_string(), true)]);
    assert_eq!((st.outside_total, st.globals_total), (1, 1));
    assert_eq!((st.calls, st.unresolved), (0, 0));
    assert_eq!(st.protocol, 2);
}

/// A payload a damaged stream holds as a literal (here a bytes literal
/// before the damage) is read too: a frame of the wrong length or a
/// resynchronisation elsewhere makes those bytes opcodes for some reader.
#[test]
fn a_payload_inside_a_literal_of_a_damaged_stream_is_found() {
    let inner = payload();
    let mut p = vec![0x80, 3, b'B'];
    p.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    p.extend_from_slice(&inner);
    p.push(0xfe);
    let s = scan(&p);
    assert_eq!(possible(&s), vec![("posix.system".to_string(), true)]);
    // The same literal in a well-formed stream is data: not listed.
    let mut p = vec![0x80, 3, b'B'];
    p.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    p.extend_from_slice(&inner);
    p.push(b'.');
    assert!(possible(&scan(&p)).is_empty());
}

/// A GLOBAL whose module line straddles its FRAME's end: `pickle.loads`
/// reads `torch.os` `system`, CPython reading a file object (torch.load's
/// zip path) reads `os` `system` from after the frame. Both readings are
/// exact, and both names are listed.
#[test]
fn a_frame_straddle_is_read_as_both_cpython_readers_read_it() {
    let mut p = vec![0x80, 4, 0x95];
    p.extend_from_slice(&7u64.to_le_bytes());
    p.extend_from_slice(b"ctorch.os\nsystem\n(X\x02\x00\x00\x00idtR0}.");
    let s = scan(&p);
    let st = only_stream(&s);
    assert!(st
        .damaged
        .as_deref()
        .unwrap()
        .contains("runs past the end of its frame"));
    assert_eq!(
        possible(&s),
        vec![
            ("torch.os.system".to_string(), false),
            ("os.system".to_string(), false)
        ]
    );
    // A BINBYTES length read across the frame's end: the file-object
    // reader drops the frame's rest and reads the length after it, so the
    // bytes the linear reader took for data are opcodes.
    let call = b"0cos\nsystem\n(X\x02\x00\x00\x00idtR";
    let mut region = vec![0u8, 0];
    region.extend_from_slice(call);
    let n = region.len() as u16 + 2;
    region.extend_from_slice(b"NN");
    let mut p = vec![0x80, 4, 0x95];
    p.extend_from_slice(&3u64.to_le_bytes());
    p.push(b'B');
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&region);
    p.extend_from_slice(b"0}.");
    let s = scan(&p);
    assert!(
        possible(&s).contains(&("os.system".to_string(), false)),
        "{:?}",
        possible(&s)
    );
}

/// A local entry the central directory does not list, whose size is
/// deferred to a data descriptor: found, as a streaming reader finds it,
/// by the descriptor whose size matches; its pickle is scanned.
#[test]
fn an_unlisted_local_entry_with_a_data_descriptor_is_scanned() {
    let mut hidden = Zip::default();
    hidden.push("archive/data.pkl", &payload());
    let hidden = hidden.build();
    let cd = hidden.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    let mut z = torch_zip(state_dict_pkl(), &[("0", data0())]);
    z.prefix = hidden[..cd].to_vec();
    z.prefix_in_offsets = true;
    let s = scan(&z.build());
    let st = streams(&s);
    let unlisted = st
        .iter()
        .find(|st| st.location.contains("the central directory does not list"))
        .unwrap_or_else(|| panic!("{st:?}"));
    assert!(unlisted
        .location
        .starts_with("archive/data.pkl (a local entry at byte 0"));
    assert_eq!(unlisted.globals[0].name, "posix.system");
    assert!(!unlisted.globals[0].possible);
}

/// A legacy file's bytes after its last storage (torch never reads them)
/// are scanned as pickles; when where the storages end is not known (the
/// converter refuses the main pickle), the bytes after the five pickles
/// are read as a resynchronising reader would, and the stream says so.
#[test]
fn bytes_after_a_legacy_files_storages_are_scanned() {
    let mut f = reference_legacy();
    f.extend(payload());
    let s = scan(&f);
    let st = streams(&s);
    assert_eq!(st.len(), 6);
    let last = st.last().unwrap();
    assert!(
        last.location.ends_with("after the last legacy storage"),
        "{}",
        last.location
    );
    assert_eq!(possible(&s), vec![("posix.system".to_string(), false)]);

    // A main pickle naming builtins.eval: the storages cannot be located.
    let main = dict_pickle(vec![(
        "x",
        Pkl::new()
            .global("builtins", "eval")
            .mark()
            .str("1")
            .tuple()
            .reduce(),
    )]);
    let mut f = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            main,
            legacy_keys(&[]),
        ],
        &[],
    );
    f.extend_from_slice(&[0, 0, 0]);
    f.extend(payload());
    let s = scan(&f);
    let last = streams(&s).last().unwrap();
    assert!(
        last.damaged
            .as_deref()
            .unwrap()
            .starts_with("where the legacy storages end is not known"),
        "{last:?}"
    );
    assert_eq!(last.globals[0].name, "posix.system");
    assert!(last.globals[0].possible);
}

/// Bytes after a zip's end that start no pickle are read on: a pickle
/// behind junk is found (possibly referenced); junk that names nothing
/// adds no stream.
#[test]
fn junk_then_a_pickle_after_a_zip_is_found() {
    let mut z = torch_zip(state_dict_pkl(), &[("0", data0())]);
    z.suffix = b"\x00\x00".to_vec();
    z.suffix.extend(payload());
    let s = scan(&z.build());
    let last = streams(&s).last().unwrap();
    assert!(
        last.location.ends_with("after the end of the zip"),
        "{last:?}"
    );
    assert_eq!(last.globals[0].name, "posix.system");
    assert!(last.globals[0].possible);
    let mut z = torch_zip(state_dict_pkl(), &[("0", data0())]);
    z.suffix = b"\x00\x00 trailing text\n".to_vec();
    let s = scan(&z.build());
    assert_eq!(streams(&s).len(), 1);
}

/// A local entry in junk before the archive (offsets adjusted past the
/// junk), which the walk from byte 0 does not reach since the junk comes
/// first: found by its signature in the bytes no listed entry covers. A
/// zip stored inside a listed entry is not mistaken for one.
#[test]
fn a_local_entry_behind_junk_is_found_by_its_signature() {
    let mut hidden = Zip::default();
    hidden.push("archive/data.pkl", &payload());
    let hidden = hidden.build();
    let cd = hidden.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    let mut z = torch_zip(state_dict_pkl(), &[("0", data0())]);
    z.prefix = b"MZ junk".to_vec();
    z.prefix.extend_from_slice(&hidden[..cd]);
    z.prefix_in_offsets = true;
    let s = scan(&z.build());
    let st = streams(&s);
    let unlisted = st
        .iter()
        .find(|st| st.location.contains("the central directory does not list"))
        .unwrap_or_else(|| panic!("{st:?}"));
    assert!(unlisted
        .location
        .starts_with("archive/data.pkl (a local entry at byte 7"));
    assert_eq!(unlisted.globals[0].name, "posix.system");
    // A whole zip stored as a record: its local headers are data.
    let inner = hidden.clone();
    let z = torch_zip(state_dict_pkl(), &[("0", data0()), ("1", inner)]);
    let s = scan(&z.build());
    assert!(
        streams(&s)
            .iter()
            .all(|st| !st.location.contains("does not list")),
        "{:?}",
        streams(&s)
    );
}

/// A pickle behind a byte that starts no pickle, after a STOP: a reader
/// that skips the byte loads it, so it is read on and its names listed as
/// possibly referenced.
#[test]
fn a_pickle_behind_a_junk_byte_after_a_stop_is_found() {
    let mut f = Pkl::new().proto(2).none().stop().bytes();
    f.push(0);
    f.extend(payload());
    let s = scan(&f);
    let st = streams(&s);
    assert_eq!(st.len(), 2, "{st:?}");
    assert_eq!(st[1].location, "byte 4");
    assert!(st[1]
        .damaged
        .as_deref()
        .unwrap()
        .contains("start no pickle"));
    assert_eq!(possible(&s), vec![("posix.system".to_string(), true)]);
}
