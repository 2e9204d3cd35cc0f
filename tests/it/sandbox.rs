//! The host against a guest gone wrong: small WAT modules that misbehave in
//! every way the host must survive. Each must be stopped with a clear error
//! and leave no output behind.

use crate::common::{fixture, only_files};
use decant::convert::{self, Options};
use decant::error::Kind;
use decant::policy::Policy;
use decant::sandbox::Sandbox;

/// The decant imports and the exports the host requires, around `body`.
fn guest(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "decant" "source_len" (func $source_len (result i64)))
          (import "decant" "read_source" (func $read_source (param i64 i32 i32) (result i32)))
          (import "decant" "write_output" (func $write_output (param i32 i32) (result i32)))
          (import "decant" "copy_source" (func $copy_source (param i64 i32 i32) (result i32)))
          (import "decant" "finish" (func $finish (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          {body}
          (func (export "inspect") (result i32) (call $convert_impl)))"#
    ))
    .unwrap()
}

fn policy(edit: impl FnOnce(&mut serde_json::Value)) -> Policy {
    let mut p: serde_json::Value = serde_json::from_str(decant::policy::DEFAULT_POLICY).unwrap();
    edit(&mut p);
    Policy::parse(p.to_string().as_bytes(), "test").unwrap()
}

/// Runs a full conversion of a real fixture with the given guest; returns
/// the error and checks nothing was left in the output directory.
fn convert_err(wasm: &[u8], policy: Policy) -> decant::error::Error {
    let sandbox = Sandbox::from_wasm(wasm, policy).expect("module accepted");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let err = convert::convert(
        &sandbox,
        &Options {
            source: fixture("convert/zip_p2.pt"),
            output: Some(out),
            strict: false,
            force: false,
        },
    )
    .expect_err("the hostile guest must fail");
    assert!(
        only_files(dir.path()).is_empty(),
        "left {:?}",
        only_files(dir.path())
    );
    err
}

/// Issue 12: the converter the binary runs, compiled ahead of time, is
/// exactly what this wasmtime makes from the committed wasm that receipts
/// name, for the target the tests run on (so a stale or swapped artifact
/// fails here). The tests' build has only the host's Cranelift backend;
/// CI's `decant-precompile --check` (feature `precompile-all`) rebuilds
/// every committed target.
#[test]
fn compiled_converter_is_made_from_exactly_the_committed_wasm() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("converter-guest/dist");
    let target = decant::guest::HOST_TARGET;
    assert!(decant::guest::TARGETS.contains(&target));
    let again = decant::sandbox::precompile(decant::guest::WASM, target).unwrap();
    let committed = std::fs::read(dist.join(format!("decant_guest.{target}.cwasm"))).unwrap();
    assert!(
        again == committed,
        "{target}: the committed artifact is stale"
    );
    // And the binary embeds it.
    assert!(again == decant::guest::COMPILED);
}

/// Checked on the module the binary loads (the precompiled converter, which
/// the test above proves is made from the committed wasm), so that this
/// test needs no second Cranelift compile of the whole converter.
#[test]
fn committed_guest_imports_only_the_decant_abi() {
    let sandbox = Sandbox::new(Policy::default_policy().unwrap()).unwrap();
    let module = sandbox.module();
    let imports: Vec<(String, String)> = module
        .imports()
        .map(|i| (i.module().to_string(), i.name().to_string()))
        .collect();
    assert!(!imports.is_empty());
    for (m, n) in &imports {
        assert_eq!(m, decant_abi::IMPORT_MODULE, "import {m}::{n}");
        assert!(decant_abi::IMPORTS.contains(&n.as_str()), "import {m}::{n}");
    }
    decant::sandbox::check_imports(module).unwrap();
}

#[test]
fn guest_importing_wasi_is_refused_before_it_runs() {
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "convert") (result i32) (i32.const 0))
          (func (export "inspect") (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = Sandbox::from_wasm(&wasm, Policy::default_policy().unwrap())
        .err()
        .unwrap();
    assert_eq!(err.kind, Kind::Internal);
    assert!(
        err.message.contains("wasi_snapshot_preview1::fd_write"),
        "{}",
        err.message
    );
}

#[test]
fn guest_importing_an_unknown_decant_function_is_refused() {
    let wasm = wat::parse_str(
        r#"(module
          (import "decant" "open_file" (func (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "convert") (result i32) (i32.const 0))
          (func (export "inspect") (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = Sandbox::from_wasm(&wasm, Policy::default_policy().unwrap())
        .err()
        .unwrap();
    assert!(err.message.contains("decant::open_file"), "{}", err.message);
}

const LOOP: &str = r#"
  (func $convert_impl (result i32) (loop $l (br $l)) (i32.const 0))
  (func (export "convert") (result i32) (call $convert_impl))"#;

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let err = convert_err(
        &guest(LOOP),
        policy(|p| {
            p["fuel_base"] = 10_000_000.into();
            p["fuel_per_source_byte"] = 0.into();
        }),
    );
    assert_eq!(err.kind, Kind::Limit);
    assert!(err.message.contains("CPU budget"), "{}", err.message);
}

#[test]
fn infinite_loop_hits_the_wall_clock_deadline() {
    let started = std::time::Instant::now();
    let err = convert_err(
        &guest(LOOP),
        policy(|p| {
            p["fuel_base"] = u64::MAX.into();
            p["timeout_seconds"] = 1.into();
        }),
    );
    assert_eq!(err.kind, Kind::Limit);
    assert!(err.message.contains("deadline"), "{}", err.message);
    // Generous bound: this only guards against "never stops".
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn memory_growth_past_the_limit_is_stopped() {
    let err = convert_err(
        &guest(
            r#"(func $convert_impl (result i32)
                 (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
        ),
        Policy::default_policy().unwrap(),
    );
    assert_eq!(err.kind, Kind::Limit);
    assert!(err.message.contains("memory limit"), "{}", err.message);
}

#[test]
fn unbounded_recursion_hits_the_stack_limit() {
    let err = convert_err(
        &guest(
            r#"(func $r (param i64) (result i64) (call $r (i64.add (local.get 0) (i64.const 1))))
               (func $convert_impl (result i32) (drop (call $r (i64.const 0))) (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
        ),
        Policy::default_policy().unwrap(),
    );
    assert_eq!(err.kind, Kind::Limit);
    assert!(err.message.contains("stack"), "{}", err.message);
}

#[test]
fn out_of_bounds_pointers_are_rejected() {
    for (call, args) in [
        (
            "read_source",
            "(i64.const 0) (i32.const 65530) (i32.const 100)",
        ),
        ("read_source", "(i64.const 0) (i32.const -1) (i32.const 10)"),
        ("read_source", "(i64.const 0) (i32.const 0) (i32.const -1)"),
        ("write_output", "(i32.const 65535) (i32.const 2)"),
        ("write_output", "(i32.const 0) (i32.const 2147483647)"),
        ("finish", "(i32.const 65000) (i32.const 1000)"),
        // copy_source takes no pointer, but its length and offset are
        // checked the same way: over MAX_IO_CHUNK, negative.
        (
            "copy_source",
            "(i64.const 0) (i32.const 0x400001) (i32.const 0)",
        ),
        ("copy_source", "(i64.const 0) (i32.const -1) (i32.const 0)"),
        ("copy_source", "(i64.const -1) (i32.const 1) (i32.const 0)"),
    ] {
        let err = convert_err(
            &guest(&format!(
                r#"(func $convert_impl (result i32) (drop (call ${call} {args})) (i32.const 0))
                   (func (export "convert") (result i32) (call $convert_impl))"#
            )),
            Policy::default_policy().unwrap(),
        );
        assert_eq!(err.kind, Kind::Internal, "{call} {args}");
        assert!(
            err.message.contains("invalid buffer"),
            "{call}: {}",
            err.message
        );
    }
}

#[test]
fn reading_past_the_source_end_returns_nothing() {
    // An offset beyond the source yields 0 bytes, never host memory; the
    // guest then returns without finishing, which is an error.
    let err = convert_err(
        &guest(
            r#"(func $convert_impl (result i32)
                 (if (i32.ne (call $read_source (i64.const 0x7fffffffffff) (i32.const 0) (i32.const 16)) (i32.const 0))
                   (then unreachable))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
        ),
        Policy::default_policy().unwrap(),
    );
    assert!(err.message.contains("without reporting"), "{}", err.message);
}

#[test]
fn writing_past_the_output_limit_is_stopped() {
    let err = convert_err(
        &guest(
            r#"(func $convert_impl (result i32)
                 (loop $l (drop (call $write_output (i32.const 0) (i32.const 65536))) (br $l))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
        ),
        policy(|p| p["max_output_bytes"] = (1u64 << 20).into()),
    );
    assert_eq!(err.kind, Kind::Limit);
    assert!(err.message.contains("max_output_bytes"), "{}", err.message);
}

/// A report claiming success over output that is not safetensors.
#[test]
fn invalid_safetensors_output_is_not_published() {
    let report = r#"{"outcome":"done","format":"zip","pickle_protocol":2,"byteorder":"little","tensors":1,"output_bytes":16,"dropped":[],"dropped_total":0,"ignored":[],"aliases":{},"globals":[]}"#;
    let escaped = report.replace('"', "\\\"");
    let err = convert_err(
        &guest(&format!(
            r#"(data (i32.const 0) "garbage garbage!")
               (data (i32.const 1024) "{escaped}")
               (func $convert_impl (result i32)
                 (drop (call $write_output (i32.const 0) (i32.const 16)))
                 (drop (call $finish (i32.const 1024) (i32.const {len})))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
            len = report.len()
        )),
        Policy::default_policy().unwrap(),
    );
    assert_eq!(err.kind, Kind::Internal);
    assert!(
        err.message.contains("invalid safetensors"),
        "{}",
        err.message
    );
}

#[test]
fn finishing_twice_or_lying_about_status_is_rejected() {
    let report = r#"{"outcome":"refused","kind":"corrupt","message":"m","hint":"h"}"#;
    let escaped = report.replace('"', "\\\"");
    // Status OK with a refusal report.
    let err = convert_err(
        &guest(&format!(
            r#"(data (i32.const 0) "{escaped}")
               (func $convert_impl (result i32)
                 (drop (call $finish (i32.const 0) (i32.const {len})))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
            len = report.len()
        )),
        Policy::default_policy().unwrap(),
    );
    assert!(err.message.contains("contradicting"), "{}", err.message);
    // Two finish calls.
    let err = convert_err(
        &guest(&format!(
            r#"(data (i32.const 0) "{escaped}")
               (func $convert_impl (result i32)
                 (drop (call $finish (i32.const 0) (i32.const {len})))
                 (drop (call $finish (i32.const 0) (i32.const {len})))
                 (i32.const 1))
               (func (export "convert") (result i32) (call $convert_impl))"#,
            len = report.len()
        )),
        Policy::default_policy().unwrap(),
    );
    assert!(err.message.contains("called twice"), "{}", err.message);
}

#[test]
fn guest_that_never_finishes_is_an_error() {
    let err = convert_err(
        &guest(
            r#"(func $convert_impl (result i32) (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
        ),
        Policy::default_policy().unwrap(),
    );
    assert!(err.message.contains("without reporting"), "{}", err.message);
}

/// A guest that reports success without writing a byte: the empty output is
/// not a safetensors file and must not be published.
#[test]
fn guest_that_finishes_without_writing_publishes_nothing() {
    let report = r#"{"outcome":"done","format":"zip","pickle_protocol":2,"byteorder":"little","tensors":0,"output_bytes":0,"dropped":[],"dropped_total":0,"ignored":[],"aliases":{},"globals":[]}"#;
    let escaped = report.replace('"', "\\\"");
    let err = convert_err(
        &guest(&format!(
            r#"(data (i32.const 0) "{escaped}")
               (func $convert_impl (result i32)
                 (drop (call $finish (i32.const 0) (i32.const {len})))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
            len = report.len()
        )),
        Policy::default_policy().unwrap(),
    );
    assert_eq!(err.kind, Kind::Internal);
    assert!(
        err.message.contains("invalid safetensors"),
        "{}",
        err.message
    );
}

/// Issue 10: a guest report over the ABI's 16 MiB cap was reported as "a
/// bug in decant" (exit 2). It is a limit (exit 1), named as one.
#[test]
fn a_report_over_the_abi_cap_is_a_limit() {
    let err = convert_err(
        &guest(&format!(
            r#"(func $convert_impl (result i32)
                 (drop (call $finish (i32.const 0) (i32.const {len})))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#,
            len = decant_abi::MAX_OUTCOME_BYTES + 1
        )),
        Policy::default_policy().unwrap(),
    );
    assert_eq!(err.kind, Kind::Limit, "{err:?}");
    assert!(err.message.contains("MAX_OUTCOME_BYTES"), "{}", err.message);
}

/// Issue 12: `copy_source` moves only bytes inside the source; a guest
/// naming a range past its end is stopped, not answered with other bytes.
#[test]
fn copying_past_the_source_end_is_stopped() {
    let len = std::fs::metadata(fixture("convert/zip_p2.pt"))
        .unwrap()
        .len();
    for (offset, n) in [(len - 1, 2), (len, 1), (0x7fff_ffff_ffff, 16)] {
        let err = convert_err(
            &guest(&format!(
                r#"(func $convert_impl (result i32)
                     (drop (call $copy_source (i64.const {offset}) (i32.const {n}) (i32.const 0)))
                     (i32.const 0))
                   (func (export "convert") (result i32) (call $convert_impl))"#
            )),
            Policy::default_policy().unwrap(),
        );
        assert_eq!(err.kind, Kind::Internal, "{offset}+{n}");
        assert!(
            err.message.contains("past the end of the source"),
            "{offset}+{n}: {}",
            err.message
        );
    }
}

/// Issue 12: the CRC-32 `copy_source` returns is that of the bytes it
/// copied, continued from the value passed in; the guest relies on it to
/// check zip records it never reads itself.
#[test]
fn copy_source_returns_the_running_crc_of_what_it_copied() {
    let bytes = std::fs::read(fixture("convert/zip_p2.pt")).unwrap();
    let whole = crc32fast::hash(&bytes[..100]) as i32;
    let first = crc32fast::hash(&bytes[..40]) as i32;
    // Traps (unreachable) on a wrong CRC; otherwise returns without
    // reporting, which is the error expected here.
    let err = convert_err(
        &guest(&format!(
            r#"(func $convert_impl (result i32)
                 (if (i32.ne (call $copy_source (i64.const 0) (i32.const 100) (i32.const 0)) (i32.const {whole}))
                   (then unreachable))
                 (if (i32.ne (call $copy_source (i64.const 40) (i32.const 60) (i32.const {first})) (i32.const {whole}))
                   (then unreachable))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#
        )),
        Policy::default_policy().unwrap(),
    );
    assert!(err.message.contains("without reporting"), "{}", err.message);
}

/// Issue 12: host-side copies are charged to fuel like the guest's own
/// reads and writes, so a few instructions cannot make the host move
/// unbounded bytes (a loop of 1,000 calls costs ~10,000 fuel in
/// instructions, but moves megabytes).
#[test]
fn copy_source_is_charged_to_fuel() {
    let len = std::fs::metadata(fixture("convert/zip_p2.pt"))
        .unwrap()
        .len();
    let err = convert_err(
        &guest(&format!(
            r#"(func $convert_impl (result i32) (local $i i32)
                 (loop $l
                   (drop (call $copy_source (i64.const 0) (i32.const {len}) (i32.const 0)))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
                 (i32.const 0))
               (func (export "convert") (result i32) (call $convert_impl))"#
        )),
        policy(|p| {
            p["fuel_base"] = 1_000_000.into();
            p["fuel_per_source_byte"] = 0.into();
        }),
    );
    assert_eq!(err.kind, Kind::Limit);
    assert!(err.message.contains("CPU budget"), "{}", err.message);
}

/// `inspect` writes nothing: output by either call is stopped.
#[test]
fn output_while_inspecting_is_stopped() {
    for call in [
        "(call $write_output (i32.const 0) (i32.const 8))",
        "(call $copy_source (i64.const 0) (i32.const 8) (i32.const 0))",
    ] {
        let sandbox = Sandbox::from_wasm(
            &guest(&format!(
                r#"(func $convert_impl (result i32) (drop {call}) (i32.const 0))
                   (func (export "convert") (result i32) (call $convert_impl))"#
            )),
            Policy::default_policy().unwrap(),
        )
        .unwrap();
        let err = convert::inspect(&sandbox, &fixture("convert/zip_p2.pt")).unwrap_err();
        assert_eq!(err.kind, Kind::Internal, "{call}");
        assert!(
            err.message.contains("wrote output while inspecting"),
            "{call}: {}",
            err.message
        );
    }
}
