//! The torch containers through the public `convert`/`inspect` entry points:
//! archives and legacy streams built byte by byte, then broken one rule at a
//! time.
// The whole crate, helpers included, is test code: clippy.toml's allowances
// for tests (unwrap, expect, panic, indexing) apply to it.
#![cfg(test)]

mod common;
#[path = "replay/torch.rs"]
mod torch_replay;

use common::*;
use decant_abi::{Outcome, RefusalKind::*};
use std::collections::BTreeMap;

/// The safetensors header of the reference archive's output.
const W_HEADER: &str =
    r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A zip checkpoint holding `pkl` and the given records.
fn zip_of(pkl: Vec<u8>, data: &[(&str, Vec<u8>)]) -> Vec<u8> {
    torch_zip(pkl, data).build()
}

/// Converts a one-storage F32 checkpoint `{items}` over data/0 = `storage`.
fn convert_views(items: Vec<(&str, Pkl)>, storage: &[f32]) -> (decant_abi::Report, Vec<u8>) {
    converts(&zip_of(dict_pickle(items), &[("0", f32s(storage))]))
}

// ---------------------------------------------------------------------------
// The builder's archive and the real fixture
// ---------------------------------------------------------------------------

#[test]
fn reference_archive_converts_to_hand_computed_safetensors() {
    // Guards the builders themselves and the writer's exact header bytes.
    let (report, out) = converts(&reference_zip().build());
    assert_eq!(W_HEADER.len(), 88, "no padding needed");
    assert_eq!(&out[..8], &88u64.to_le_bytes());
    assert_eq!(out, safetensors(W_HEADER, &data0()));
    assert_eq!(report.format, "zip");
    assert_eq!(report.pickle_protocol, 2);
    assert_eq!(report.byteorder, "little");
    assert_eq!(report.tensors, 1);
    assert_eq!(
        report.globals,
        [
            "collections.OrderedDict",
            "torch.FloatStorage",
            "torch._utils._rebuild_tensor_v2"
        ]
    );
    assert!(report.dropped.is_empty() && report.aliases.is_empty());
}

#[test]
fn header_is_padded_with_spaces_to_eight_bytes() {
    // safetensors pads the JSON to a multiple of 8; a 2-letter name makes 89 bytes -> 96.
    let pkl = dict_pickle(vec![("ab", f32_tensor("0", 4, 0, &[2, 2], &[2, 1]))]);
    let (_, out) = converts(&zip_of(pkl, &[("0", data0())]));
    let json = r#"{"__metadata__":{"format":"pt"},"ab":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    assert_eq!(json.len(), 89);
    assert_eq!(&out[..8], &96u64.to_le_bytes());
    assert_eq!(&out[8 + 89..8 + 96], b"       ");
    assert_eq!(out, safetensors(json, &data0()));
}

#[test]
fn archive_without_data_descriptors_converts() {
    // Records with sizes in the local header (no 0x0008 flag) are as valid as torch's.
    let mut z = reference_zip();
    for e in &mut z.entries {
        e.descriptor = false;
    }
    let (_, out) = converts(&z.build());
    assert_eq!(out, safetensors(W_HEADER, &data0()));
}

#[test]
fn any_root_name_is_accepted() {
    // torch names the root after the file (`pytorch_model/...`); decant takes any single root.
    let mut z = reference_zip();
    for e in &mut z.entries {
        e.name = e.name.replacen("archive/", "pytorch_model/", 1);
    }
    let (_, out) = converts(&z.build());
    assert_eq!(out, safetensors(W_HEADER, &data0()));
}

#[test]
fn missing_byteorder_means_little_endian() {
    // torch defaults to little when `byteorder` is absent (older writers omit it).
    let mut z = reference_zip();
    z.remove("byteorder");
    let (report, out) = converts(&z.build());
    assert_eq!(report.byteorder, "little");
    assert_eq!(out, safetensors(W_HEADER, &data0()));
}

#[test]
fn inspect_lists_tensors_and_writes_nothing() {
    // inspect describes the same plan as convert, with output_bytes 0.
    let r = inspects(&reference_zip().build());
    assert_eq!(r.output_bytes, 0);
    assert_eq!(r.tensor_list.len(), 1);
    let t = &r.tensor_list[0];
    assert_eq!(
        (t.name.as_str(), t.dtype.as_str(), &t.shape[..], t.strided),
        ("w", "F32", &[2u64, 2][..], false)
    );
}

#[test]
fn torch_fixture_zip_p2_converts_byte_identically() {
    // A real torch.save archive (ZIP64 end records, 64-byte alignment) must give the reference bytes.
    let (report, out) = converts(&fixture("convert/zip_p2.pt"));
    assert_eq!(out, fixture("convert/zip_p2.safetensors"));
    assert_eq!(report.format, "zip");
    assert_eq!(report.pickle_protocol, 2);
}

// ---------------------------------------------------------------------------
// Zip strictness
// ---------------------------------------------------------------------------

#[test]
fn crc_mismatch_in_data_record_refused() {
    // torch never checks CRCs (CVE-2025-10156): decant must, or tampered weights convert.
    let mut z = reference_zip();
    z.entry("data/0").crc = Some(0xdead_beef);
    refused(
        &z.build(),
        Corrupt,
        "CRC-32 mismatch in record data/0: stored deadbeef",
    );
}

#[test]
fn crc_mismatch_in_strided_data_record_refused() {
    // The gather path (non-contiguous view) checks the record's CRC too.
    let pkl = dict_pickle(vec![("t", f32_tensor("0", 4, 0, &[2, 2], &[1, 2]))]);
    let mut z = torch_zip(pkl, &[("0", data0())]);
    z.entry("data/0").crc = Some(1);
    refused(&z.build(), Corrupt, "CRC-32 mismatch in record data/0");
}

#[test]
fn crc_mismatch_in_partially_used_record_refused() {
    // A view covering only part of its record still gets the record's CRC checked.
    let pkl = dict_pickle(vec![("t", f32_tensor("0", 4, 1, &[2], &[1]))]);
    let mut z = torch_zip(pkl, &[("0", data0())]);
    z.entry("data/0").crc = Some(1);
    refused(&z.build(), Corrupt, "CRC-32 mismatch in record data/0");
}

#[test]
fn crc_mismatch_in_data_pkl_refused() {
    // The pickle is what decides what runs; a modified one must not be read.
    let mut z = reference_zip();
    z.entry("data.pkl").crc = Some(0);
    refused(
        &z.build(),
        Corrupt,
        "CRC-32 mismatch in record data.pkl: stored 00000000",
    );
}

#[test]
fn unreferenced_data_record_is_refused() {
    // torch.save writes exactly the storages its pickle uses; an extra
    // record (fixtures/hostile c_nested_zip_unreferenced_data hid a
    // malicious archive there) is refused, with or without a good CRC.
    let mut z = reference_zip();
    z.push("archive/data/7", b"hidden");
    refused(
        &z.build(),
        Corrupt,
        "record archive/data/7 is not used by any tensor",
    );
    z.entry("data/7").crc = Some(5);
    refused(&z.build(), Corrupt, "data/7");
}

#[test]
fn crc_mismatch_in_version_record_refused() {
    // Small records are CRC-checked when read.
    let mut z = reference_zip();
    z.entry("version").crc = Some(5);
    refused(&z.build(), Corrupt, "CRC-32 mismatch in record version");
}

#[test]
fn local_header_name_differs_from_central_directory_refused() {
    // CVE-2025-1944: scanners read the LFH name, torch the CD name.
    let mut z = reference_zip();
    z.entry("data.pkl").lfh_name = Some("archive/datb.pkl".into());
    refused(
        &z.build(),
        Corrupt,
        "zip entry archive/data.pkl: local header names archive/datb.pkl",
    );
}

#[test]
fn duplicate_entry_name_refused() {
    // torch reads the first duplicate, CPython zipfile the last: ambiguous.
    let mut z = reference_zip();
    z.push("archive/data/0", &f32s(&[9.0, 9.0, 9.0, 9.0]));
    refused(&z.build(), Corrupt, "duplicate zip entry archive/data/0");
}

#[test]
fn case_variant_record_name_refused() {
    // torch finds records case-insensitively: `DATA.PKL` beside `data.pkl`
    // is one name to torch (miniz's sorted search picks either) and two to
    // decant, which used to read data.pkl and convert.
    let mut z = reference_zip();
    z.push("archive/DATA.PKL", &state_dict_pkl());
    refused(
        &z.build(),
        Corrupt,
        "zip entries archive/data.pkl and archive/DATA.PKL differ only in letter case",
    );
}

#[test]
fn two_roots_refused() {
    // candle reads every `*data.pkl`; torch refuses; so does decant.
    let mut z = reference_zip();
    z.push("other/version", b"3\n");
    refused(
        &z.build(),
        Corrupt,
        "zip archive has two roots: archive and other",
    );
}

#[test]
fn entry_outside_root_folder_refused() {
    // A root-level `byteorder` is not the archive's byteorder record.
    let mut z = reference_zip();
    z.push("byteorder", b"big");
    refused(
        &z.build(),
        Corrupt,
        "zip entry byteorder is not inside a root folder",
    );
}

#[test]
fn junk_prepended_refused_as_not_a_checkpoint() {
    // Plain bytes before the archive: neither zip magic nor a pickle.
    let mut z = reference_zip();
    z.prefix = b"JUNKJUNK".to_vec();
    refused(
        &z.build(),
        Format,
        "neither a zip archive nor a pickle stream",
    );
}

#[test]
fn junk_prepended_behind_zip_magic_refused() {
    // `cat stub.zip real.zip`: the reader finds the real archive at an offset; refuse it.
    let mut z = reference_zip();
    z.prefix = b"PK\x03\x04 polyglot stub".to_vec();
    refused(&z.build(), Corrupt, "18 bytes precede the zip archive");
}

#[test]
fn hidden_bytes_before_first_local_header_refused() {
    // Self-consistent offsets but a gap before the first entry: somewhere to hide a payload.
    let mut z = reference_zip();
    z.prefix = b"PK\x03\x04 polyglot stub".to_vec();
    z.prefix_in_offsets = true;
    refused(
        &z.build(),
        Corrupt,
        "starts at byte 18 where byte 0 was expected",
    );
}

#[test]
fn junk_appended_after_end_record_refused() {
    // torch loads it; another reader might see the trailing payload instead.
    let mut z = reference_zip();
    z.suffix = b"trailer".to_vec();
    refused(
        &z.build(),
        Corrupt,
        "7 bytes follow the end of the zip archive",
    );
}

#[test]
fn encrypted_flag_in_central_directory_refused() {
    // CVE-2025-1945: flag 0x1 in the CD (torch fails on it).
    let mut z = reference_zip();
    let e = z.entry("data/0");
    e.flags |= 0x1;
    let r = refused(&z.build(), Unsupported, "archive/data/0");
    assert!(r.message.contains("encrypted"), "{}", r.message);
}

#[test]
fn encrypted_flag_only_in_local_header_refused() {
    // CVE-2025-1945: the flag only in the LFH, which torch ignores and scanners may not.
    let mut z = reference_zip();
    let e = z.entry("data/0");
    e.lfh_flags = Some(e.flags | FLAG_DESCRIPTOR | 0x1);
    refused(
        &z.build(),
        Unsupported,
        "zip entry archive/data/0 is flagged encrypted or patched",
    );
}

#[test]
fn patched_flag_only_in_local_header_refused() {
    // Flag 0x20 (patched data) has the same LFH/CD split as 0x1.
    let mut z = reference_zip();
    let e = z.entry("data.pkl");
    e.lfh_flags = Some(e.flags | FLAG_DESCRIPTOR | 0x20);
    refused(
        &z.build(),
        Unsupported,
        "zip entry archive/data.pkl is flagged encrypted or patched",
    );
}

#[test]
fn local_and_central_flags_disagreeing_refused() {
    // Any other LFH/CD flag difference is a header disagreement too.
    let mut z = reference_zip();
    let e = z.entry("version");
    e.lfh_flags = Some(FLAG_DESCRIPTOR);
    refused(
        &z.build(),
        Corrupt,
        "zip entry archive/version: local header flags 0x0008 differ from the central directory's 0x0808",
    );
}

#[test]
fn deflated_record_refused_as_unsupported() {
    // torch stores records; a compressed one was re-packed by another tool.
    let mut z = reference_zip();
    z.entry("data/0").method = 8;
    refused(
        &z.build(),
        Unsupported,
        "compressed zip entry archive/data/0",
    );
}

#[test]
fn missing_version_record_refused() {
    // torch requires `version`; without it the archive is not torch's.
    let mut z = reference_zip();
    z.remove("version");
    refused(&z.build(), Corrupt, "the archive has no version record");
}

#[test]
fn version_11_refused() {
    // torch 2.15 reads versions up to 10.
    let mut z = reference_zip();
    z.entry("version").data = b"11\n".to_vec();
    let r = refused(&z.build(), Unsupported, "archive version \"11");
    assert!(
        r.message.ends_with("(torch reads 1 to 10)"),
        "{}",
        r.message
    );
}

#[test]
fn version_abc_refused() {
    // A non-numeric version is not guessed at.
    let mut z = reference_zip();
    z.entry("version").data = b"abc".to_vec();
    refused(&z.build(), Unsupported, "archive version \"abc\"");
}

#[test]
fn version_0_refused() {
    // 0 is below every version torch wrote.
    let mut z = reference_zip();
    z.entry("version").data = b"0\n".to_vec();
    refused(&z.build(), Unsupported, "archive version \"0");
}

#[test]
fn legacy_data_version_record_accepted() {
    // Older torch wrote `.data/version` instead of `version`.
    let mut z = reference_zip();
    z.entry("version").name = "archive/.data/version".into();
    let (_, out) = converts(&z.build());
    assert_eq!(out, safetensors(W_HEADER, &data0()));
}

#[test]
fn byteorder_uppercase_big_refused() {
    // torch raises "Unknown endianness type" for anything but little/big.
    let mut z = reference_zip();
    z.entry("byteorder").data = b"BIG".to_vec();
    refused(
        &z.build(),
        Corrupt,
        "byteorder record says \"BIG\", not little or big",
    );
}

#[test]
fn byteorder_big_f16_is_byteswapped() {
    // Big-endian records are swapped per element size (2 bytes for F16).
    let pkl = dict_pickle(vec![(
        "h",
        Pkl::new().tensor_v2(Pkl::new().zip_storage("HalfStorage", "0", 2), 0, &[2], &[1]),
    )]);
    let mut z = torch_zip(pkl, &[("0", vec![0x3c, 0x00, 0x40, 0x01])]);
    z.entry("byteorder").data = b"big".to_vec();
    let (report, out) = converts(&z.build());
    assert_eq!(report.byteorder, "big");
    let json =
        r#"{"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    assert_eq!(out, safetensors(json, &[0x00, 0x3c, 0x01, 0x40]));
}

#[test]
fn byteorder_big_strided_f32_is_byteswapped() {
    // The gather path swaps too: a transposed big-endian 2x2.
    let be: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    let pkl = dict_pickle(vec![("t", f32_tensor("0", 4, 0, &[2, 2], &[1, 2]))]);
    let mut z = torch_zip(pkl, &[("0", be)]);
    z.entry("byteorder").data = b"big".to_vec();
    let (_, out) = converts(&z.build());
    let json = r#"{"__metadata__":{"format":"pt"},"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    assert_eq!(out, safetensors(json, &f32s(&[1.0, 3.0, 2.0, 4.0])));
}

#[test]
fn record_shorter_than_storage_refused() {
    // burn zero-padded short records; torch refuses them, and so does decant.
    let mut z = reference_zip();
    z.entry("data/0").data.truncate(12);
    refused(
        &z.build(),
        Corrupt,
        "record data/0 holds 12 bytes but its storage declares 16",
    );
}

#[test]
fn record_longer_than_storage_refused() {
    // Extra bytes in a record are a size disagreement too.
    let mut z = reference_zip();
    z.entry("data/0").data.extend_from_slice(&[0; 8]);
    refused(
        &z.build(),
        Corrupt,
        "record data/0 holds 24 bytes but its storage declares 16",
    );
}

#[test]
fn storage_without_record_refused() {
    // burn turned a missing data file into zeros.
    let mut z = reference_zip();
    z.remove("data/0");
    refused(
        &z.build(),
        Corrupt,
        "storage 0 has no record archive/data/0",
    );
}

#[test]
fn unexpected_extra_record_refused() {
    // A second pickle in the archive is a place to hide code from a scanner.
    let mut z = reference_zip();
    z.push("archive/extra.pkl", b"\x80\x02N.");
    refused(&z.build(), Corrupt, "unexpected record archive/extra.pkl");
}

#[test]
fn nested_zip_record_refused() {
    // modelscan refuses nested archives; decant refuses any record torch does not write.
    let inner = reference_zip().build();
    let mut z = reference_zip();
    z.push("archive/inner.zip", &inner);
    refused(&z.build(), Corrupt, "unexpected record archive/inner.zip");
}

#[test]
fn data_record_in_subfolder_refused() {
    // Storage keys are plain names, so `data/<a>/<b>` is not a storage record.
    let mut z = reference_zip();
    z.push("archive/data/0/x", b"");
    refused(&z.build(), Corrupt, "unexpected record archive/data/0/x");
}

#[test]
fn torchscript_archive_refused() {
    // A `constants.pkl` makes it a torch.jit archive, which torch.load does not read either.
    let mut z = reference_zip();
    z.push("archive/constants.pkl", b"\x80\x02).");
    refused(&z.build(), Unsupported, "TorchScript archive");
}

#[test]
fn bytes_after_stop_in_data_pkl_refused() {
    // torch ignores what follows STOP; a second pickle there is invisible to it, not to others.
    let mut pkl = state_dict_pkl();
    pkl.extend_from_slice(b"\x80\x02cos\nsystem\n.");
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Corrupt,
        "14 bytes follow the STOP opcode of data.pkl",
    );
}

#[test]
fn memo_bomb_data_pkl_refused_as_not_a_dict() {
    // 2^20 shared tuple references are built in linear time and refused by the plan, not walked.
    // NEWFALSE BINPUT0, 20x (POP BINGET0 BINGET0 TUPLE2 BINPUT0), STOP.
    let mut p = vec![0x89, b'q', 0];
    for _ in 0..20 {
        p.extend_from_slice(&[b'0', b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    p.push(b'.');
    assert_eq!(p.len(), 164);
    let start = std::time::Instant::now();
    refused(
        &zip_of(p, &[]),
        Unsupported,
        "the checkpoint holds a tuple, not a dict of tensors",
    );
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn global_in_data_pkl_refused_with_position() {
    // The refusal names the global and where it is, relative to data.pkl.
    let pkl = Pkl::new()
        .proto(2)
        .global("posix", "system")
        .str("id")
        .op(0x85)
        .reduce()
        .stop()
        .bytes();
    refused(
        &zip_of(pkl, &[]),
        Global,
        "global posix.system at byte 2 of data.pkl is not on the allowlist",
    );
}

#[test]
fn truncated_archive_refused_at_every_cut() {
    // Whatever the cut, a truncated file is refused, never converted, never a panic.
    let full = reference_zip().build();
    for cut in 0..full.len() {
        let part = &full[..cut];
        let outcome = std::panic::catch_unwind(|| run(part).0)
            .unwrap_or_else(|_| panic!("convert panicked on a cut at byte {cut}"));
        assert!(
            matches!(outcome, Outcome::Refused(_)),
            "cut at {cut} converted"
        );
        let inspected = std::panic::catch_unwind(|| converter_guest::inspect(&part.to_vec()))
            .unwrap_or_else(|_| panic!("inspect panicked on a cut at byte {cut}"));
        assert!(
            matches!(inspected, Outcome::Refused(_)),
            "cut at {cut} inspected"
        );
    }
    refused(&[], Format, "the file is empty");
    refused(&full[..full.len() - 1], Corrupt, "");
}

#[test]
fn truncated_torch_fixture_refused_at_many_cuts() {
    // The same for a real torch archive (ZIP64 records, aligned data), every 7th byte.
    let full = fixture("convert/zip_p2.pt");
    for cut in (0..full.len()).step_by(7) {
        let outcome = std::panic::catch_unwind(|| run(&full[..cut]).0)
            .unwrap_or_else(|_| panic!("panicked on a cut at byte {cut}"));
        assert!(
            matches!(outcome, Outcome::Refused(_)),
            "cut at {cut} converted"
        );
    }
}

// ---------------------------------------------------------------------------
// Legacy format
// ---------------------------------------------------------------------------

#[test]
fn legacy_stream_converts() {
    // The five pickles plus raw storages convert to the same bytes as the zip form.
    let (report, out) = converts(&reference_legacy());
    assert_eq!(out, safetensors(W_HEADER, &data0()));
    assert_eq!(report.format, "legacy");
    assert_eq!(report.pickle_protocol, 2);
}

#[test]
fn legacy_bad_magic_refused_as_format() {
    // A pickle whose first value is not torch's magic number is not a checkpoint.
    let mut magic = legacy_magic();
    magic[4] ^= 1;
    let file = legacy_file(
        [
            magic,
            legacy_protocol(),
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&["0"]),
        ],
        &[(4, data0())],
    );
    refused(&file, Format, "the legacy magic number is missing");
}

#[test]
fn legacy_plain_pickle_refused_as_format() {
    // A bare pickle (no magic) is refused before its other pickles are looked for.
    refused(
        &dict_pickle(vec![]),
        Format,
        "a pickle, but not a torch checkpoint",
    );
}

#[test]
fn legacy_wrong_protocol_version_refused() {
    // torch asserts protocol_version == 1001.
    let file = legacy_file(
        [
            legacy_magic(),
            vec![0x80, 2, b'M', 0xea, 0x03, b'.'],
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&["0"]),
        ],
        &[(4, data0())],
    );
    refused(
        &file,
        Unsupported,
        "legacy checkpoint with an unknown protocol version",
    );
}

#[test]
fn legacy_count_differs_from_numel_refused() {
    // torch: "storage has wrong byte size"; burn sized storages from views.
    let file = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&["0"]),
        ],
        &[(3, f32s(&[1.0, 2.0, 3.0]))],
    );
    refused(
        &file,
        Corrupt,
        "legacy storage 0 records 3 elements but its reference declares 4",
    );
}

#[test]
fn legacy_negative_count_refused() {
    // A negative int64 count is not a size.
    let file = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&["0"]),
        ],
        &[(-1, data0())],
    );
    refused(&file, Corrupt, "records -1 elements");
}

#[test]
fn legacy_key_list_missing_key_refused() {
    // A storage the key list omits has no data.
    let file = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&[]),
        ],
        &[],
    );
    refused(
        &file,
        Corrupt,
        "legacy storage 0 is referenced but missing from the key list",
    );
}

#[test]
fn legacy_key_list_repeated_key_refused() {
    // Two data blocks for one storage are ambiguous.
    let file = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&["0", "0"]),
        ],
        &[(4, data0()), (4, data0())],
    );
    refused(&file, Corrupt, "legacy key list names storage 0 twice");
}

#[test]
fn legacy_key_list_extra_key_refused() {
    // torch asserts every listed key was declared.
    let file = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            legacy_main(),
            legacy_keys(&["0", "1"]),
        ],
        &[(4, data0()), (4, data0())],
    );
    refused(&file, Corrupt, "legacy key list names undeclared storage 1");
}

#[test]
fn legacy_trailing_bytes_refused() {
    // Nothing may follow the last storage.
    let mut file = reference_legacy();
    file.extend_from_slice(b"xyz");
    refused(&file, Corrupt, "3 bytes follow the last legacy storage");
}

#[test]
fn legacy_truncated_storage_refused() {
    // A storage running past the end of the file.
    let mut file = reference_legacy();
    file.truncate(file.len() - 1);
    refused(
        &file,
        Corrupt,
        "legacy storage 0 runs past the end of the file",
    );
}

#[test]
fn legacy_truncated_everywhere_refused() {
    // Every prefix of a legacy file is refused without a panic.
    let full = reference_legacy();
    for cut in 0..full.len() {
        let outcome = std::panic::catch_unwind(|| run(&full[..cut]).0)
            .unwrap_or_else(|_| panic!("panicked on a cut at byte {cut}"));
        assert!(
            matches!(outcome, Outcome::Refused(_)),
            "cut at {cut} converted"
        );
    }
}

#[test]
fn legacy_protocol_4_with_frames_converts() {
    // burn's fixed 15-byte sniff missed `80 04 95 ...`; decant detects and reads it.
    let file = legacy_file(
        [
            framed_p4(&legacy_magic()),
            framed_p4(&legacy_protocol()),
            framed_p4(&legacy_sys_info()),
            framed_p4(&legacy_main()),
            framed_p4(&legacy_keys(&["0"])),
        ],
        &[(4, data0())],
    );
    assert_eq!(&file[..3], &[0x80, 4, 0x95]);
    let (report, out) = converts(&file);
    assert_eq!(out, safetensors(W_HEADER, &data0()));
    assert_eq!(report.pickle_protocol, 4);
}

#[test]
fn legacy_storage_view_metadata_offsets_the_data() {
    // Legacy pids may carry (view_key, offset, size): the tensor reads from that slice.
    let main = dict_pickle(vec![(
        "w",
        Pkl::new().tensor_v2(
            Pkl::new()
                .mark()
                .str("storage")
                .global("torch", "FloatStorage")
                .str("0")
                .str("cpu")
                .int(4)
                .mark()
                .str("v1")
                .int(2)
                .int(2)
                .tuple()
                .tuple()
                .op(b'Q'),
            0,
            &[2],
            &[1],
        ),
    )]);
    let file = legacy_file(
        [
            legacy_magic(),
            legacy_protocol(),
            legacy_sys_info(),
            main,
            legacy_keys(&["0"]),
        ],
        &[(4, data0())],
    );
    let (_, out) = converts(&file);
    let json =
        r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    assert_eq!(out, safetensors(json, &f32s(&[3.0, 4.0])));
}

#[test]
fn legacy_torch_fixtures_convert_byte_identically() {
    // Real legacy files, protocol 2 and protocol 4.
    for (src, reference) in [
        ("convert/legacy_p2.pt", "convert/legacy_p2.safetensors"),
        ("convert/legacy_p4.bin", "convert/legacy_p4.safetensors"),
    ] {
        let (_, out) = converts(&fixture(src));
        assert!(out == fixture(reference), "{src}");
    }
}

// ---------------------------------------------------------------------------
// Views and layout
// ---------------------------------------------------------------------------

#[test]
fn transposed_view_is_materialised_row_major() {
    // burn ignored strides and scrambled non-contiguous tensors.
    // storage [0..6] as 2x3, transposed: shape (3,2), stride (1,3).
    let (report, out) = convert_views(
        vec![("t", f32_tensor("0", 6, 0, &[3, 2], &[1, 3]))],
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    );
    let json = r#"{"__metadata__":{"format":"pt"},"t":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}}"#;
    assert_eq!(
        out,
        safetensors(json, &f32s(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]))
    );
    assert_eq!(report.tensors, 1);
}

#[test]
fn inspect_marks_strided_views() {
    // The inspect listing says which tensors are materialised from strides.
    let pkl = dict_pickle(vec![
        ("t", f32_tensor("0", 4, 0, &[2, 2], &[1, 2])),
        ("u", f32_tensor("0", 4, 0, &[2, 2], &[2, 1])),
    ]);
    let r = inspects(&zip_of(pkl, &[("0", data0())]));
    let strided: Vec<(&str, bool)> = r
        .tensor_list
        .iter()
        .map(|t| (t.name.as_str(), t.strided))
        .collect();
    assert_eq!(strided, [("t", true), ("u", false)]);
}

#[test]
fn stride_zero_expand_repeats_the_row() {
    // expand() writes stride 0; the output repeats the row, bounded by the view's numel.
    let (_, out) = convert_views(
        vec![("e", f32_tensor("0", 3, 0, &[2, 3], &[0, 1]))],
        &[1.0, 2.0, 3.0],
    );
    let json = r#"{"__metadata__":{"format":"pt"},"e":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#;
    assert_eq!(
        out,
        safetensors(json, &f32s(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]))
    );
}

#[test]
fn scalar_expand_with_all_zero_strides() {
    // (2,2) stride (0,0) at offset 1 repeats one element.
    let (_, out) = convert_views(
        vec![("s", f32_tensor("0", 3, 1, &[2, 2], &[0, 0]))],
        &[1.0, 2.0, 3.0],
    );
    let json = r#"{"__metadata__":{"format":"pt"},"s":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    assert_eq!(out, safetensors(json, &f32s(&[2.0; 4])));
}

#[test]
fn overlapping_strides_are_materialised() {
    // as_strided (3,3) stride (1,1): element (i,j) is storage[i+j].
    let (_, out) = convert_views(
        vec![("o", f32_tensor("0", 5, 0, &[3, 3], &[1, 1]))],
        &[0.0, 1.0, 2.0, 3.0, 4.0],
    );
    let json = r#"{"__metadata__":{"format":"pt"},"o":{"dtype":"F32","shape":[3,3],"data_offsets":[0,36]}}"#;
    assert_eq!(
        out,
        safetensors(json, &f32s(&[0.0, 1.0, 2.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0]))
    );
}

#[test]
fn zero_dim_tensor_kept_with_empty_shape() {
    // A scalar at offset 2 has shape () and one element.
    let (_, out) = convert_views(
        vec![("s", f32_tensor("0", 4, 2, &[], &[]))],
        &[1.0, 2.0, 3.0, 4.0],
    );
    let json =
        r#"{"__metadata__":{"format":"pt"},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#;
    assert_eq!(out, safetensors(json, &f32s(&[3.0])));
}

#[test]
fn empty_tensor_kept_with_zero_bytes() {
    // torch writes a 0-byte record for an empty tensor; it is kept, not dropped.
    let (_, out) = convert_views(vec![("e", f32_tensor("0", 0, 0, &[0], &[1]))], &[]);
    let json =
        r#"{"__metadata__":{"format":"pt"},"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#;
    assert_eq!(out, safetensors(json, &[]));
}

#[test]
fn empty_view_of_non_empty_storage_kept() {
    // (3,0) over a non-empty storage writes no bytes but keeps its shape.
    let (_, out) = convert_views(
        vec![
            ("a", f32_tensor("0", 4, 0, &[4], &[1])),
            ("e", f32_tensor("0", 4, 1, &[3, 0], &[1, 1])),
        ],
        &[1.0, 2.0, 3.0, 4.0],
    );
    let json = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"e":{"dtype":"F32","shape":[3,0],"data_offsets":[16,16]}}"#;
    assert_eq!(out, safetensors(json, &data0()));
}

#[test]
fn exact_alias_keeps_the_first_name_in_the_checkpoints_order() {
    // Tied weights: one copy under the name the state dict lists first
    // (issue 11: transformers 4.x loads `transformer.wte.weight`, listed
    // before `lm_head.weight`, and cannot load the pair stored under the
    // alphabetically first `lm_head.weight`); the others in __metadata__.
    let t = f32_tensor("0", 4, 0, &[2, 2], &[2, 1]);
    let (report, out) = convert_views(
        vec![
            ("transformer.wte.weight", t.clone()),
            ("b", t.clone()),
            ("lm_head.weight", t),
        ],
        &[1.0, 2.0, 3.0, 4.0],
    );
    let json = r#"{"__metadata__":{"b":"transformer.wte.weight","format":"pt","lm_head.weight":"transformer.wte.weight"},"transformer.wte.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    assert_eq!(out, safetensors(json, &data0()));
    let expected: BTreeMap<String, String> = [
        ("b", "transformer.wte.weight"),
        ("lm_head.weight", "transformer.wte.weight"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(report.aliases, expected);
    assert_eq!(report.tensors, 1);
}

#[test]
fn memo_shared_tensor_is_an_alias() {
    // The same tensor object reached twice through the memo (BINGET) is an alias too.
    let pkl = Pkl::new()
        .proto(2)
        .ordered_dict()
        .mark()
        .str("x")
        .then(f32_tensor("0", 4, 0, &[4], &[1]))
        .put(9)
        .str("y")
        .get(9)
        .setitems()
        .stop()
        .bytes();
    let (report, out) = converts(&zip_of(pkl, &[("0", data0())]));
    let json = r#"{"__metadata__":{"format":"pt","y":"x"},"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    assert_eq!(out, safetensors(json, &data0()));
    assert_eq!(report.aliases.get("y").map(String::as_str), Some("x"));
}

#[test]
fn alias_named_format_refused() {
    // A removed alias called "format" would overwrite safetensors' format metadata.
    let t = f32_tensor("0", 4, 0, &[4], &[1]);
    refused(
        &zip_of(
            dict_pickle(vec![("a", t.clone()), ("format", t)]),
            &[("0", data0())],
        ),
        Unsupported,
        "a tied weight named \"format\"",
    );
}

#[test]
fn non_alias_views_of_one_storage_written_separately() {
    // Disjoint or differently shaped views share bytes but are each their own tensor.
    let (report, out) = convert_views(
        vec![
            ("x", f32_tensor("0", 4, 0, &[2], &[1])),
            ("y", f32_tensor("0", 4, 2, &[2], &[1])),
            ("z", f32_tensor("0", 4, 0, &[4], &[1])),
        ],
        &[1.0, 2.0, 3.0, 4.0],
    );
    let json = r#"{"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"z":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}"#;
    assert_eq!(
        out,
        safetensors(json, &f32s(&[1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]))
    );
    assert!(report.aliases.is_empty());
    assert_eq!(report.tensors, 3);
}

#[test]
fn tensors_ordered_by_dtype_descending_then_name() {
    // safetensors' own order: F32 (rank 17) before F16 (rank 13), whatever the names.
    let pkl = dict_pickle(vec![
        (
            "a_half",
            Pkl::new().tensor_v2(Pkl::new().zip_storage("HalfStorage", "1", 1), 0, &[1], &[1]),
        ),
        ("b_float", f32_tensor("0", 1, 0, &[1], &[1])),
    ]);
    let (_, out) = converts(&zip_of(
        pkl,
        &[("0", f32s(&[1.0])), ("1", vec![0x00, 0x3c])],
    ));
    let json = r#"{"__metadata__":{"format":"pt"},"b_float":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a_half":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}}"#;
    assert_eq!(out, safetensors(json, &[0, 0, 0x80, 0x3f, 0x00, 0x3c]));
}

// ---------------------------------------------------------------------------
// Selection and naming
// ---------------------------------------------------------------------------

#[test]
fn nested_dicts_flatten_with_dots_and_int_keys() {
    // {"enc": {0: {"w": t}, 1: t}, "lr": 0.5} -> enc.0.w, enc.1; the float is dropped.
    let t = || f32_tensor("0", 4, 0, &[4], &[1]);
    let pkl = dict_pickle(vec![
        (
            "enc",
            Pkl::new()
                .empty_dict()
                .mark()
                .int(0)
                .then(Pkl::new().empty_dict().mark().str("w").then(t()).setitems())
                .int(1)
                .then(f32_tensor("0", 4, 1, &[2], &[1]))
                .setitems(),
        ),
        ("lr", Pkl::new().float(0.5)),
    ]);
    let (report, out) = converts(&zip_of(pkl, &[("0", data0())]));
    let json = r#"{"__metadata__":{"format":"pt"},"enc.0.w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"enc.1":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#;
    assert_eq!(
        out,
        safetensors(json, &f32s(&[1.0, 2.0, 3.0, 4.0, 2.0, 3.0]))
    );
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(
        (
            report.dropped[0].name.as_str(),
            report.dropped[0].kind.as_str()
        ),
        ("lr", "float")
    );
    assert_eq!(report.dropped_total, 1);
}

#[test]
fn negative_int_key_becomes_decimal_name() {
    // Integer keys are written as Python's str(int), sign included.
    let pkl = Pkl::new()
        .proto(2)
        .empty_dict()
        .mark()
        .int(-3)
        .then(f32_tensor("0", 4, 0, &[4], &[1]))
        .setitems()
        .stop()
        .bytes();
    let r = inspects(&zip_of(pkl, &[("0", data0())]));
    assert_eq!(r.tensor_list[0].name, "-3");
}

#[test]
fn flattened_name_collision_refused() {
    // "a.b" and {"a": {"b": ...}} would both be named a.b.
    let pkl = dict_pickle(vec![
        ("a.b", f32_tensor("0", 4, 0, &[4], &[1])),
        (
            "a",
            Pkl::new()
                .empty_dict()
                .mark()
                .str("b")
                .then(f32_tensor("0", 4, 0, &[2], &[1]))
                .setitems(),
        ),
    ]);
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Corrupt,
        "two entries flatten to the same name a.b",
    );
}

#[test]
fn int_and_string_key_collision_refused() {
    // {1: t, "1": t} flatten to the same name "1".
    let pkl = Pkl::new()
        .proto(2)
        .empty_dict()
        .mark()
        .int(1)
        .then(f32_tensor("0", 4, 0, &[4], &[1]))
        .str("1")
        .then(f32_tensor("0", 4, 0, &[2], &[1]))
        .setitems()
        .stop()
        .bytes();
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Corrupt,
        "two entries flatten to the same name 1",
    );
}

#[test]
fn tensor_named_metadata_refused() {
    // safetensors reserves __metadata__ for the string map.
    let pkl = dict_pickle(vec![("__metadata__", f32_tensor("0", 4, 0, &[4], &[1]))]);
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Unsupported,
        "an entry is named __metadata__",
    );
}

#[test]
fn dropped_value_named_metadata_refused() {
    // Even a dropped non-tensor named __metadata__ is refused (it would be listed under that name).
    let pkl = dict_pickle(vec![("__metadata__", Pkl::new().int(1))]);
    refused(
        &zip_of(pkl, &[]),
        Unsupported,
        "an entry is named __metadata__",
    );
}

#[test]
fn float_dict_key_refused() {
    // Tensor names must be strings or integers.
    let pkl = Pkl::new()
        .proto(2)
        .empty_dict()
        .mark()
        .float(1.5)
        .then(f32_tensor("0", 4, 0, &[4], &[1]))
        .setitems()
        .stop()
        .bytes();
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Unsupported,
        "a dict key is a float, not a string or integer",
    );
}

#[test]
fn tuple_dict_key_refused() {
    // A tuple key has no name.
    let pkl = Pkl::new()
        .proto(2)
        .empty_dict()
        .mark()
        .ints(&[1, 2])
        .then(f32_tensor("0", 4, 0, &[4], &[1]))
        .setitems()
        .stop()
        .bytes();
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Unsupported,
        "a dict key is a tuple, not a string or integer",
    );
}

#[test]
fn big_int_dict_key_refused() {
    // An integer beyond i64 is refused rather than printed approximately.
    let pkl = Pkl::new()
        .proto(2)
        .empty_dict()
        .mark()
        .raw(&[0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .int(1)
        .setitems()
        .stop()
        .bytes();
    refused(&zip_of(pkl, &[]), Unsupported, "integer too large");
}

#[test]
fn self_containing_dict_refused_by_nesting_limit() {
    // d["self"] = d would flatten forever; the depth bound stops it.
    let pkl = Pkl::new()
        .proto(2)
        .empty_dict()
        .put(0)
        .mark()
        .str("self")
        .get(0)
        .setitems()
        .stop()
        .bytes();
    let r = refused(&zip_of(pkl, &[]), Limit, "nested deeper than 64 levels");
    assert!(r.message.contains("contains itself"), "{}", r.message);
    assert!(r.message.contains("self.self.self"), "{}", r.message);
}

#[test]
fn deep_but_bounded_nesting_converts() {
    // 64 levels of nesting are within the bound.
    let mut inner = f32_tensor("0", 4, 0, &[4], &[1]);
    for _ in 0..64 {
        inner = Pkl::new()
            .empty_dict()
            .mark()
            .str("d")
            .then(inner)
            .setitems();
    }
    let pkl = Pkl::new().proto(2).then(inner).stop().bytes();
    let r = inspects(&zip_of(pkl, &[("0", data0())]));
    assert_eq!(r.tensor_list[0].name, vec!["d"; 64].join("."));
}

#[test]
fn state_dict_entry_selected_and_rest_ignored() {
    // Lightning-style checkpoints: only state_dict converts; other keys are listed as ignored.
    let pkl = dict_pickle(vec![
        ("epoch", Pkl::new().int(3)),
        (
            "state_dict",
            dict_body(vec![
                ("w", f32_tensor("0", 4, 0, &[2, 2], &[2, 1])),
                ("step", Pkl::new().int(7)),
            ]),
        ),
        (
            "optimizer",
            dict_body(vec![("m", f32_tensor("1", 1, 0, &[1], &[1]))]),
        ),
    ]);
    let (report, out) = converts(&zip_of(pkl, &[("0", data0()), ("1", f32s(&[0.5]))]));
    assert_eq!(out, safetensors(W_HEADER, &data0()));
    assert_eq!(report.ignored, ["epoch", "optimizer"]);
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(report.dropped[0].name, "step");
    assert_eq!(report.dropped[0].kind, "int");
}

#[test]
fn state_dict_that_is_not_a_dict_refused() {
    // A state_dict entry is the selection; a non-dict there is not silently skipped.
    let pkl = dict_pickle(vec![
        ("state_dict", Pkl::new().int(1)),
        ("w", f32_tensor("0", 4, 0, &[2, 2], &[2, 1])),
    ]);
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Unsupported,
        "the state_dict entry is a int, not a dict",
    );
}

#[test]
fn top_level_tensor_refused() {
    // torch.save(tensor) has no names to write.
    let pkl = Pkl::new()
        .proto(2)
        .then(f32_tensor("0", 4, 0, &[4], &[1]))
        .stop()
        .bytes();
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Unsupported,
        "the checkpoint holds a tensor, not a dict of tensors",
    );
}

#[test]
fn stride_zero_bomb_is_described_without_materialising() {
    // burn materialised (2^21, 2^21) stride (0,0) over 4 elements (17.6 TB); inspect only describes it.
    let pkl = dict_pickle(vec![(
        "b",
        f32_tensor("0", 4, 0, &[1 << 21, 1 << 21], &[0, 0]),
    )]);
    let start = std::time::Instant::now();
    let r = inspects(&zip_of(pkl, &[("0", data0())]));
    assert_eq!(r.tensor_list[0].shape, [1u64 << 21, 1 << 21]);
    assert!(r.tensor_list[0].strided);
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn address_style_storage_key_converts() {
    // torch 1.6/1.7 keyed storages by memory address (`data/94047543798432`).
    let pkl = dict_pickle(vec![(
        "w",
        f32_tensor("94047543798432", 4, 0, &[2, 2], &[2, 1]),
    )]);
    let (_, out) = converts(&zip_of(pkl, &[("94047543798432", data0())]));
    assert_eq!(out, safetensors(W_HEADER, &data0()));
}

#[test]
fn same_storage_key_with_another_type_refused() {
    // torch refuses to save one storage viewed as two types; a file that does so was crafted.
    let pkl = dict_pickle(vec![
        ("a", f32_tensor("0", 4, 0, &[4], &[1])),
        (
            "b",
            Pkl::new().tensor_v2(Pkl::new().zip_storage("IntStorage", "0", 4), 0, &[4], &[1]),
        ),
    ]);
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Corrupt,
        "storage 0 is declared again at byte",
    );
}

#[test]
fn bool_dict_key_refused() {
    // Bools have no canonical tensor name (str(True) vs 1); SEMANTICS.md refuses them.
    let pkl = Pkl::new()
        .proto(2)
        .empty_dict()
        .mark()
        .op(0x88)
        .then(f32_tensor("0", 4, 0, &[4], &[1]))
        .setitems()
        .stop()
        .bytes();
    refused(
        &zip_of(pkl, &[("0", data0())]),
        Unsupported,
        "a dict key is a bool, not a string or integer",
    );
}

#[test]
fn list_of_tensors_is_dropped_as_a_list() {
    // A list of tensors is not a dict: it is dropped and listed, not flattened.
    let pkl = dict_pickle(vec![
        ("w", f32_tensor("0", 4, 0, &[2, 2], &[2, 1])),
        (
            "hist",
            Pkl::new()
                .empty_list()
                .mark()
                .then(f32_tensor("0", 4, 0, &[4], &[1]))
                .appends(),
        ),
    ]);
    let (report, out) = converts(&zip_of(pkl, &[("0", data0())]));
    assert_eq!(out, safetensors(W_HEADER, &data0()));
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(
        (
            report.dropped[0].name.as_str(),
            report.dropped[0].kind.as_str()
        ),
        ("hist", "list")
    );
}

#[test]
fn empty_storage_tensors_never_alias() {
    // Zero-byte storages share no bytes: both names are written, no alias recorded.
    let t = f32_tensor("0", 0, 0, &[0], &[1]);
    let (report, out) = converts(&zip_of(
        dict_pickle(vec![("b", t.clone()), ("a", t)]),
        &[("0", vec![])],
    ));
    let json = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#;
    assert_eq!(out, safetensors(json, &[]));
    assert!(report.aliases.is_empty());
    assert_eq!(report.tensors, 2);
}

#[test]
fn dropped_names_capped_at_1000_but_counted() {
    // Reports stay small: 1000 names listed, dropped_total counts all 1001, sorted by name.
    let mut p = Pkl::new().proto(2).empty_dict().mark();
    for i in 0..1001 {
        p = p.str(&format!("k{i:04}")).none();
    }
    let pkl = p.setitems().stop().bytes();
    let (report, _) = converts(&zip_of(pkl, &[]));
    assert_eq!(report.dropped_total, 1001);
    assert_eq!(report.dropped.len(), 1000);
    assert_eq!(report.dropped[0].name, "k0000");
    assert_eq!(report.dropped[999].name, "k0999");
    assert_eq!(report.dropped[0].kind, "None");
}

#[test]
fn more_than_a_million_entries_refused() {
    // The flattened entry count is bounded (1,000,000) against resource attacks.
    let mut p = Pkl::new().proto(2).empty_dict().mark();
    for i in 0..1_000_001 {
        p = p.int(i).none();
    }
    let pkl = p.setitems().stop().bytes();
    refused(
        &zip_of(pkl, &[]),
        Limit,
        "more than 1000000 entries after flattening nested dicts",
    );
}

/// A U8 tensor over storage "0" of `numel` bytes.
fn u8_tensor(numel: i64, offset: i64, shape: &[i64], stride: &[i64]) -> Pkl {
    Pkl::new().tensor_v2(
        Pkl::new().zip_storage("ByteStorage", "0", numel),
        offset,
        shape,
        stride,
    )
}

/// The elements of a strided view, row-major, computed directly.
fn expected_view(storage: &[u8], offset: usize, shape: &[usize], stride: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let n: usize = shape.iter().product();
    for i in 0..n {
        let (mut rest, mut at) = (i, offset);
        for d in (0..shape.len()).rev() {
            at += (rest % shape[d]) * stride[d];
            rest /= shape[d];
        }
        out.push(storage[at]);
    }
    out
}

#[test]
fn strided_views_of_a_storage_over_64_mib_are_gathered_correctly() {
    // Storages too large to hold are gathered through windows; runs straddling a window edge
    // and views spanning several windows must still come out in row-major order.
    const MIB: usize = 1 << 20;
    let len = 64 * MIB + 64;
    let storage: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let views: [(&str, usize, Vec<usize>, Vec<usize>); 4] = [
        // Rows 16 MiB - 2 apart: the second row's run crosses a 16 MiB window edge.
        ("a", 7, vec![3, 5], vec![16 * MIB - 2, 1]),
        // A transpose near the end of the storage.
        ("b", len - 12, vec![4, 3], vec![1, 4]),
        // Stride 0 over a large storage.
        ("c", 1000, vec![3, 4], vec![0, 1]),
        // A column spanning the whole storage.
        ("d", 5, vec![5, 2], vec![16 * MIB + 3, 1]),
    ];
    let items = views
        .iter()
        .map(|(name, off, shape, stride)| {
            let sh: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
            let st: Vec<i64> = stride.iter().map(|&x| x as i64).collect();
            (*name, u8_tensor(len as i64, *off as i64, &sh, &st))
        })
        .collect();
    let src = zip_of(dict_pickle(items), &[("0", storage.clone())]);
    let (report, out) = converts(&src);
    assert_eq!(report.tensors, 4);
    let mut data = Vec::new();
    let mut header = String::from(r#"{"__metadata__":{"format":"pt"}"#);
    for (name, off, shape, stride) in &views {
        let bytes = expected_view(&storage, *off, shape, stride);
        header.push_str(&format!(
            r#","{name}":{{"dtype":"U8","shape":{shape:?},"data_offsets":[{},{}]}}"#,
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend_from_slice(&bytes);
    }
    header.push('}');
    let header = header.replace(", ", ",");
    assert_eq!(out, safetensors(&header, &data));
}

#[test]
fn zip64_size_beyond_the_file_refused() {
    // A ZIP64 extra field claiming a 1 TiB record cannot fit between its header and the next.
    let mut z = reference_zip();
    z.entry("data/0").cd_zip64_size = Some(1 << 40);
    refused(
        &z.build(),
        Corrupt,
        "zip entry archive/data/0 overlaps the next record",
    );
}

#[test]
fn zip64_size_disagreeing_with_descriptor_refused() {
    // A ZIP64 size one byte longer than the data: the descriptor no longer follows the data.
    let mut z = reference_zip();
    z.entry("data/0").cd_zip64_size = Some(17);
    refused(
        &z.build(),
        Corrupt,
        "zip entry archive/data/0 is followed by 15 bytes that are not its data descriptor",
    );
}

#[test]
fn tensor_names_are_json_escaped_like_serde_json() {
    // Names are attacker text: quotes, backslashes and controls are escaped, UTF-8 kept raw.
    let pkl = dict_pickle(vec![("q\"b\\né", f32_tensor("0", 4, 0, &[4], &[1]))]);
    let (_, out) = converts(&zip_of(pkl, &[("0", data0())]));
    let json = "{\"__metadata__\":{\"format\":\"pt\"},\"q\\\"b\\\\n\u{e9}\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    assert_eq!(out, safetensors(json, &data0()));
}

/// Names are printed and listed: control characters (terminal escapes,
/// forged lines) and bidirectional overrides (`gnp.exe` shown as
/// `exe.png`) are refused (fixtures/hostile t_tied_name_terminal_escape,
/// t_bidi_override_name).
#[test]
fn deceptive_entry_names_are_refused() {
    for name in [
        "w\u{1b}[8m",
        "a\nconverted x",
        "\u{202e}gnp.exe",
        "zero\u{200b}width",
        "bom\u{feff}",
    ] {
        let pkl = dict_pickle(vec![(name, f32_tensor("0", 4, 0, &[4], &[1]))]);
        refused(
            &zip_of(pkl, &[("0", data0())]),
            Unsupported,
            "control or bidirectional-formatting characters",
        );
    }
    // Ordinary non-ASCII names are fine.
    let pkl = dict_pickle(vec![("编码器.权重", f32_tensor("0", 4, 0, &[4], &[1]))]);
    converts(&zip_of(pkl, &[("0", data0())]));
}

// Regressions for bugs found by this suite's first run (each panicked or was
// accepted before the fix).

/// A ZIP64 size of u64::MAX made `data_start + size` overflow (a panic
/// natively, a silent wrap in wasm).
#[test]
fn zip64_size_claim_near_u64_max_is_refused_not_overflowed() {
    for name in ["data/0", "data.pkl", "version"] {
        for claim in [u64::MAX, u64::MAX - 100] {
            let mut z = reference_zip();
            z.entry(name).cd_zip64_size = Some(claim);
            let (outcome, _) = run(&z.build());
            assert!(
                matches!(outcome, Outcome::Refused(ref r) if r.kind == Corrupt),
                "{name} {claim}: {outcome:?}"
            );
        }
    }
}

/// Three 2^63-byte stride-0 views made the output size overflow while the
/// header was written (a panic natively).
#[test]
fn output_larger_than_2_pow_64_bytes_is_refused_before_writing() {
    let big = 1i64 << 61;
    let pkl = dict_pickle(vec![
        ("a", f32_tensor("0", 1, 0, &[big], &[0])),
        ("b", f32_tensor("0", 1, 0, &[big, 1], &[0, 0])),
        ("c", f32_tensor("0", 1, 0, &[1, big], &[0, 0])),
    ]);
    let src = torch_zip(pkl, &[("0", f32s(&[1.0]))]).build();
    let r = refused(&src, Limit, "2^64 bytes");
    assert!(r.message.contains("output"), "{}", r.message);
    let (outcome, out) = run(&src);
    assert!(matches!(outcome, Outcome::Refused(_)));
    assert!(out.is_empty(), "nothing may be written before the refusal");
    assert!(matches!(
        converter_guest::inspect(&src),
        Outcome::Refused(_)
    ));
}

/// `inspect` reads no tensor data, but used to accept a corrupt data record
/// that `convert` refuses.
#[test]
fn inspect_verifies_data_record_crcs_too() {
    let mut z = reference_zip();
    z.entry("data/0").crc = Some(1);
    let src = z.build();
    match converter_guest::inspect(&src) {
        Outcome::Refused(r) => assert!(
            r.message.contains("CRC-32 mismatch in record data/0"),
            "{}",
            r.message
        ),
        other => panic!("inspect accepted a bad CRC: {other:?}"),
    }
}

/// Local headers were compared with the central directory only on name and
/// flags; method, CRC and sizes must agree too (docs/SEMANTICS.md: local/central
/// header disagreement is refused).
#[test]
fn local_header_method_crc_and_sizes_must_match_the_directory() {
    let lie = |edit: &dyn Fn(&mut ZEntry)| {
        let mut z = reference_zip();
        let e = z.entry("data/0");
        e.descriptor = false;
        edit(e);
        z.build()
    };
    // Sanity: without descriptors and without lies, it converts.
    converts(&lie(&|_| {}));
    refused(
        &lie(&|e| e.lfh_method = Some(8)),
        Corrupt,
        "compression method",
    );
    refused(&lie(&|e| e.lfh_crc = Some(0)), Corrupt, "CRC-32");
    refused(&lie(&|e| e.lfh_sizes = Some((0, 0))), Corrupt, "size");
    refused(&lie(&|e| e.lfh_sizes = Some((16, 15))), Corrupt, "size");
}

#[test]
fn version_with_a_sign_is_refused() {
    let mut z = reference_zip();
    z.entry("version").data = b"+3\n".to_vec();
    refused(&z.build(), Unsupported, "archive version");
}

#[test]
fn dotted_global_name_is_shown_as_module_colon_name() {
    let pkl = Pkl::new()
        .proto(2)
        .global("torch", "_utils._rebuild_tensor_v2")
        .stop()
        .bytes();
    let src = torch_zip(pkl, &[]).build();
    refused(&src, Global, "global torch:_utils._rebuild_tensor_v2");
}

/// Found by cargo-fuzz (fuzz/regressions/legacy_reader/zip_eocd_comment_overrun):
/// an end record whose comment length runs past the file made the trailing
/// byte count underflow (a panic natively, a wrapped number in wasm).
#[test]
fn end_record_comment_running_past_the_file_is_refused() {
    let input = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/legacy_reader/zip_eocd_comment_overrun"
    ))
    .unwrap();
    let (outcome, _) = run(&input);
    assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
    let mut z = reference_zip().build();
    let n = z.len();
    z[n - 2] = 0xff; // comment length 0xff.. with no comment bytes
    refused(&z, Corrupt, "comment");
}
