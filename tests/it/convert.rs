//! End-to-end: the real `decant` binary running the committed guest on
//! fixtures written by real PyTorch (fixtures/generate.py), compared byte for
//! byte with references written by the `safetensors` package.

use crate::common::{decant, fixture, manifest, only_files, Run};
use std::fs;

/// Every fixture with a reference converts to exactly its bytes, and the
/// report agrees with what the generator recorded.
#[test]
fn every_fixture_converts_to_its_reference_bytes() {
    let m = manifest();
    let mut checked = 0;
    for (name, entry) in m.as_object().unwrap() {
        let Some(reference) = entry.get("reference") else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.safetensors");
        let run = decant(&[
            "convert",
            fixture(entry["source"].as_str().unwrap()).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
        let expected = fs::read(fixture(reference.as_str().unwrap())).unwrap();
        let actual = fs::read(&out).unwrap();
        assert!(
            actual == expected,
            "{name}: output differs from the reference"
        );

        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let report = &v["conversion"]["report"];
        assert_eq!(report["format"], entry["format"], "{name}");
        assert_eq!(
            report["pickle_protocol"], entry["pickle_protocol"],
            "{name}"
        );
        assert_eq!(report["byteorder"], entry["byteorder"], "{name}");
        assert_eq!(report["tensors"], entry["tensors"], "{name}");
        assert_eq!(report["aliases"], entry["aliases"], "{name}");
        assert_eq!(report["ignored"], entry["ignored_top_level"], "{name}");
        let dropped: Vec<&str> = report["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        let expected_dropped: Vec<&str> = entry["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert_eq!(dropped, expected_dropped, "{name}");
        assert_eq!(
            v["conversion"]["output_sha256"],
            crate::common::sha256_hex(&actual),
            "{name}"
        );
        assert_eq!(only_files(dir.path()), vec!["out.safetensors"], "{name}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures checked");
}

/// A conversion is a pure function of (guest, policy, source): receipts and
/// `verify --reproduce` rely on it.
#[test]
fn converting_twice_gives_identical_bytes() {
    for name in ["tied", "views", "dtypes", "legacy_p4", "big_endian"] {
        let dir = tempfile::tempdir().unwrap();
        let src = manifest()[name]["source"].as_str().unwrap().to_string();
        let mut outputs = Vec::new();
        for i in 0..2 {
            let out = dir.path().join(format!("{i}.safetensors"));
            let run = decant(&[
                "convert",
                fixture(&src).to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            outputs.push(fs::read(out).unwrap());
        }
        assert_eq!(outputs[0], outputs[1], "{name}");
    }
}

/// Unconvertible checkpoints are refused by name, with exit 1, a one-line
/// message and a hint, and leave nothing behind.
#[test]
fn unconvertible_fixtures_are_refused_cleanly() {
    let m = manifest();
    let mut checked = 0;
    for (name, entry) in m.as_object().unwrap() {
        if entry.get("refuse").is_none() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.safetensors");
        let run = decant(&[
            "convert",
            fixture(entry["source"].as_str().unwrap()).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        run.assert_error_shape();
        let reason = entry["reason"].as_str().unwrap();
        let key = reason.split_whitespace().last().unwrap();
        assert!(
            run.stderr.contains(key),
            "{name}: {:?} lacks {key:?}",
            run.stderr
        );
        assert!(
            only_files(dir.path()).is_empty(),
            "{name} left files behind"
        );
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn existing_output_is_not_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    fs::write(&out, b"keep me").unwrap();
    let src = fixture("convert/zip_p2.pt");
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("already exists") && run.stderr.contains("--force"));
    assert_eq!(fs::read(&out).unwrap(), b"keep me");
    assert_eq!(only_files(dir.path()), vec!["model.safetensors"]);

    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(fixture("convert/zip_p2.safetensors")).unwrap()
    );
}

/// A refused conversion never disturbs an existing file, even with --force.
#[test]
fn refused_conversion_with_force_keeps_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    fs::write(&out, b"keep me").unwrap();
    let run = decant(&[
        "convert",
        fixture("refuse/unknown_global.pt").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(fs::read(&out).unwrap(), b"keep me");
    assert_eq!(only_files(dir.path()), vec!["x.safetensors"]);
}

#[test]
fn default_output_name_follows_hugging_face() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("pytorch_model.bin");
    fs::copy(fixture("convert/example/pytorch_model.bin"), &src).unwrap();
    let run = decant(&["convert", src.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("model.safetensors"));
    assert_eq!(
        fs::read(dir.path().join("model.safetensors")).unwrap(),
        fs::read(fixture("convert/example/model.safetensors")).unwrap()
    );
}

#[test]
fn strict_refuses_dropped_entries_and_passes_clean_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("n.safetensors");
    let run = decant(&[
        "convert",
        fixture("convert/nested.pt").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("--strict"), "{}", run.stderr);
    assert!(only_files(dir.path()).is_empty());

    let run = decant(&[
        "convert",
        fixture("convert/zip_p2.pt").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn inspect_lists_tensors_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("views.pt");
    fs::copy(fixture("convert/views.pt"), &src).unwrap();
    let run = decant(&["inspect", src.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let list = v["report"]["tensor_list"].as_array().unwrap();
    assert_eq!(list.len() as u64, v["report"]["tensors"].as_u64().unwrap());
    assert!(list.iter().any(|t| t["strided"] == true));
    assert_eq!(only_files(dir.path()), vec!["views.pt"]);

    let run = decant(&["inspect", src.to_str().unwrap()]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("strided view"), "{}", run.stdout);
}

/// Issue 9: this test used to accept either a refusal or an I/O error.
/// Each outcome is now its own case: with `--json`, a refusal and an I/O
/// error are each one JSON object on stdout, with the status and kind that
/// match the exit status, and nothing on stderr.
#[test]
fn json_errors_are_one_object_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let cases = [
        (fixture("refuse/unknown_global.pt"), 1, "refused", "refused"),
        (dir.path().join("missing.pt"), 2, "error", "io"),
    ];
    for (src, code, status, kind) in cases {
        let run = decant(&[
            "convert",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(run.code, code, "{}", run.stdout);
        assert_eq!(run.stderr, "");
        assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
        let v = run.json();
        assert_eq!(v["status"], status, "{v}");
        assert_eq!(v["kind"], kind, "{v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
        assert!(!v["hint"].as_str().unwrap().is_empty());
        assert!(!out.exists());
    }
}

#[test]
fn missing_source_is_an_io_error() {
    let run = decant(&["convert", "/nonexistent/x.pt"]);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
}

#[test]
fn not_a_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("notes.pt");
    fs::write(&src, b"just some text, not a pickle").unwrap();
    let run = decant(&["convert", src.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    assert!(
        run.stderr.contains("not a torch checkpoint"),
        "{}",
        run.stderr
    );
    assert_eq!(only_files(dir.path()), vec!["notes.pt"]);
}

fn policy_with(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut p: serde_json::Value =
        serde_json::from_str(include_str!("../../sandbox-policy/default.json")).unwrap();
    edit(&mut p);
    let path = dir.join("policy.json");
    fs::write(&path, p.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn convert_with_policy(policy: &str, src: &str, dir: &std::path::Path) -> Run {
    let out = dir.join("out.safetensors");
    decant(&[
        "convert",
        fixture(src).to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--policy",
        policy,
    ])
}

#[test]
fn policy_can_narrow_the_allowlist() {
    let src = fixture("convert/zip_p2.pt");
    let run = decant(&["inspect", src.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let used: Vec<String> = serde_json::from_value(v["report"]["globals"].clone()).unwrap();
    assert!(used.iter().any(|g| g == "torch._utils._rebuild_tensor_v2"));

    // Exactly the globals the file uses: converts.
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with(dir.path(), |p| {
        p["allowed_globals"] = serde_json::json!(used)
    });
    let run = convert_with_policy(&policy, "convert/zip_p2.pt", dir.path());
    assert_eq!(run.code, 0, "{}", run.stderr);

    // One fewer: refused, naming it, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let narrowed: Vec<&String> = used
        .iter()
        .filter(|g| *g != "torch._utils._rebuild_tensor_v2")
        .collect();
    let policy = policy_with(dir.path(), |p| {
        p["allowed_globals"] = serde_json::json!(narrowed)
    });
    let run = convert_with_policy(&policy, "convert/zip_p2.pt", dir.path());
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    assert!(
        run.stderr.contains(
            "global torch._utils._rebuild_tensor_v2 is not allowed by the sandbox policy"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(only_files(dir.path()), vec!["policy.json"]);
}

#[test]
fn output_limit_is_a_clean_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with(dir.path(), |p| p["max_output_bytes"] = 100.into());
    let run = convert_with_policy(&policy, "convert/zip_p2.pt", dir.path());
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("max_output_bytes"), "{}", run.stderr);
    assert_eq!(only_files(dir.path()), vec!["policy.json"]);
}

#[test]
fn fuel_limit_is_a_clean_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with(dir.path(), |p| {
        p["fuel_base"] = 1000.into();
        p["fuel_per_source_byte"] = 0.into();
    });
    let run = convert_with_policy(&policy, "convert/zip_p2.pt", dir.path());
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("CPU budget"), "{}", run.stderr);
    assert_eq!(only_files(dir.path()), vec!["policy.json"]);
}

#[test]
fn memory_limit_is_a_clean_refusal() {
    let dir = tempfile::tempdir().unwrap();
    // Below what the guest needs for its initial memory plus buffers.
    let policy = policy_with(dir.path(), |p| p["memory_bytes"] = (2u64 << 20).into());
    let run = convert_with_policy(&policy, "convert/zip_p2.pt", dir.path());
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("memory limit"), "{}", run.stderr);
    assert_eq!(only_files(dir.path()), vec!["policy.json"]);
}

#[test]
fn invalid_policy_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with(dir.path(), |p| p["memory_byte"] = 1.into());
    let run = convert_with_policy(&policy, "convert/zip_p2.pt", dir.path());
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("unknown field"), "{}", run.stderr);
}

/// Review of issue 9: with `--json`, a source path that is not UTF-8 made
/// serde_json fail inside `json!`, a panic (exit 101) after the output and
/// receipt were published. Paths are now written lossily.
#[test]
fn json_output_with_a_non_utf8_path_still_succeeds() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"model-\xff.pt"));
    fs::copy(fixture("convert/tied.pt"), &src).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_decant"))
        .arg("convert")
        .arg(&src)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "converted");
    assert!(v["conversion"]["source"]
        .as_str()
        .unwrap()
        .ends_with("model-\u{fffd}.pt"));
}
