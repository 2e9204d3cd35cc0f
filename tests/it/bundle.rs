//! Issue 13: `decant audit`, `decant attest` and `decant verify DIR
//! --receipt MANIFEST`, through the binary, one bundle per finding.

use crate::common::{convert_keyed, decant, fixture, keygen, read_json, verify_run, Run};
use serde_json::Value;
use std::fs;
use std::path::Path;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A bundle with converted weights and a plain config: what a clean
/// promotion starts from.
fn clean_bundle(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::copy(
        fixture("convert/zip_p2.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    fs::write(dir.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    fs::write(dir.join("README.md"), "# a model\n").unwrap();
}

fn audit_json(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let run = decant(&args);
    (run.code, run.json())
}

/// (severity, kind, file, message) of every finding.
fn findings(v: &Value) -> Vec<(String, String, String, String)> {
    v["audit"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().into(),
                f["kind"].as_str().unwrap().into(),
                f["file"].as_str().unwrap().into(),
                f["message"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn has(v: &Value, severity: &str, kind: &str, file: &str) -> bool {
    findings(v)
        .iter()
        .any(|f| f.0 == severity && f.1 == kind && f.2 == file)
}

fn message<'a>(all: &'a [(String, String, String, String)], kind: &str, file: &str) -> &'a str {
    &all.iter()
        .find(|f| f.1 == kind && f.2 == file)
        .unwrap_or_else(|| panic!("no {kind} finding for {file}: {all:?}"))
        .3
}

#[test]
fn a_clean_bundle_passes_and_its_weights_are_unproven_without_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    let (code, v) = audit_json(&dir, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "passed");
    assert!(
        has(&v, "medium", "safetensors_unproven", "model.safetensors"),
        "{v}"
    );
    let classes: Vec<(&str, &str)> = v["audit"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["class"].as_str().unwrap()))
        .collect();
    assert_eq!(
        classes,
        [
            ("README.md", "data"),
            ("config.json", "config"),
            ("model.safetensors", "safetensors")
        ]
    );
    // --fail-on medium turns the unproven weights into a failure.
    assert_eq!(audit_json(&dir, &["--fail-on", "medium"]).0, 1);
}

/// The issue's first gap: a checksum-stable bundle that still serves a
/// pickle. Detected by content, whatever its name.
#[test]
fn a_pickle_planted_in_a_safetensors_bundle_is_found_by_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    fs::copy(
        fixture("hostile/g_os_system_reduce_p2.pt"),
        dir.join("model-extra.safetensors"),
    )
    .unwrap();
    let (code, v) = audit_json(&dir, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["status"], "failed");
    let all = findings(&v);
    let m = message(&all, "pickle_code_execution", "model-extra.safetensors");
    assert!(m.contains("os.system"), "{m}");
    assert!(m.contains("decant refuses it"), "{m}");
    assert_eq!(all[0].0, "critical", "worst first: {all:?}");
    let file = v["audit"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "model-extra.safetensors")
        .unwrap();
    assert_eq!(file["class"], "pickle");
    assert_eq!(file["conversion"]["result"], "refused");

    // The text form says the same, worst first, and fails on stderr.
    let run = decant(&["audit", dir.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    let first = run.stdout.lines().nth(1).unwrap();
    assert!(
        first.starts_with("  critical model-extra.safetensors: a pickle naming os.system"),
        "{}",
        run.stdout
    );
    run.assert_error_shape();
    assert!(
        run.stderr
            .starts_with("decant: audit failed: a finding at critical"),
        "{}",
        run.stderr
    );
}

/// A weights-only pickle is still a finding in a served bundle, below the
/// default failure level.
#[test]
fn a_weights_only_pickle_is_a_medium_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    fs::copy(fixture("convert/zip_p2.pt"), dir.join("pytorch_model.bin")).unwrap();
    let (code, v) = audit_json(&dir, &[]);
    assert_eq!(code, 0, "{v}");
    let all = findings(&v);
    let m = message(&all, "pickle_weights_only", "pytorch_model.bin");
    assert!(m.contains("decant converts it"), "{m}");
    assert!(has(
        &v,
        "medium",
        "pickle_weights_only",
        "pytorch_model.bin"
    ));
}

#[test]
fn auto_map_to_a_present_and_to_a_missing_file_is_remote_code() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    fs::write(
        dir.join("config.json"),
        r#"{"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel", "AutoConfig": "configuration_x.XConfig"}}"#,
    )
    .unwrap();
    fs::write(dir.join("modeling_x.py"), "import os\n").unwrap();
    let (code, v) = audit_json(&dir, &[]);
    assert_eq!(code, 1, "{v}");
    let all = findings(&v);
    let remote: Vec<&str> = all
        .iter()
        .filter(|f| f.1 == "remote_code")
        .map(|f| f.3.as_str())
        .collect();
    assert_eq!(remote.len(), 2, "{all:?}");
    assert!(
        remote
            .iter()
            .any(|m| m.contains("AutoModel -> modeling_x.XModel")
                && m.contains("modeling_x.py, present")),
        "{remote:?}"
    );
    assert!(
        remote
            .iter()
            .any(|m| m.contains("AutoConfig -> configuration_x.XConfig")
                && m.contains("configuration_x.py, missing")),
        "{remote:?}"
    );
    assert!(has(&v, "high", "remote_code", "config.json"));
    assert!(has(&v, "medium", "python_file", "modeling_x.py"));
}

#[test]
fn an_adapter_whose_base_is_not_pinned_is_a_finding_and_a_pinned_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    fs::write(
        dir.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "base_model_name_or_path": "org/base", "revision": null}"#,
    )
    .unwrap();
    let (code, v) = audit_json(&dir, &["--fail-on", "medium"]);
    assert_eq!(code, 1);
    let all = findings(&v);
    let m = message(&all, "adapter_unpinned_base", "adapter_config.json");
    assert!(m.contains("\"org/base\" with no revision"), "{m}");

    fs::write(
        dir.join("adapter_config.json"),
        format!(r#"{{"peft_type": "LORA", "base_model_name_or_path": "org/base", "revision": "{COMMIT}"}}"#),
    )
    .unwrap();
    let (_, v) = audit_json(&dir, &[]);
    assert!(has(&v, "info", "adapter", "adapter_config.json"), "{v}");
    assert!(!has(
        &v,
        "medium",
        "adapter_unpinned_base",
        "adapter_config.json"
    ));
}

/// A GGUF file as llama.cpp writes one (spec: ggml docs/gguf.md), version
/// 3, no tensors, with the given metadata.
fn gguf(metadata: &[(&str, GgufValue)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    for (key, value) in metadata {
        string(&mut b, key);
        match value {
            GgufValue::U32(n) => {
                b.extend_from_slice(&4u32.to_le_bytes());
                b.extend_from_slice(&n.to_le_bytes());
            }
            GgufValue::Str(s) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                string(&mut b, s);
            }
        }
    }
    b
}

enum GgufValue {
    U32(u32),
    Str(&'static str),
}

#[test]
fn a_gguf_header_and_its_embedded_chat_template_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    fs::create_dir_all(&dir).unwrap();
    let template = "{% for m in messages %}{{ m.content }}{% endfor %}";
    fs::write(
        dir.join("model-q4.gguf"),
        gguf(&[
            ("general.architecture", GgufValue::Str("llama")),
            ("general.file_type", GgufValue::U32(15)),
            ("tokenizer.chat_template", GgufValue::Str(template)),
        ]),
    )
    .unwrap();
    let (code, v) = audit_json(&dir, &[]);
    assert_eq!(code, 0, "{v}");
    let all = findings(&v);
    let header = message(&all, "gguf", "model-q4.gguf");
    assert!(
        header.contains("GGUF v3, architecture llama, file type 15"),
        "{header}"
    );
    let t = message(&all, "chat_template", "model-q4.gguf");
    assert!(
        t.contains(&crate::common::sha256_hex(template.as_bytes())),
        "{t}"
    );
    assert_eq!(v["audit"]["files"][0]["class"], "gguf");
}

#[test]
fn a_modelfile_from_a_mutable_tag_is_a_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    fs::write(
        dir.join("Modelfile"),
        "FROM llama3.2:latest\nPARAMETER temperature 0.2\n",
    )
    .unwrap();
    let (_, v) = audit_json(&dir, &[]);
    assert!(
        has(&v, "medium", "modelfile_mutable_base", "Modelfile"),
        "{v}"
    );
}

/// The receipt decant wrote for the weights makes them proven, for the
/// key that signed it and no other.
#[test]
fn weights_covered_by_a_trusted_receipt_are_proven() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let (_, other) = keygen(&tmp.path().join("other").tap_mkdir());
    let dir = tmp.path().join("b");
    fs::create_dir_all(&dir).unwrap();
    let run = convert_keyed(
        &fixture("convert/zip_p2.pt"),
        &dir.join("model.safetensors"),
        &key,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, v) = audit_json(&dir, &["--trusted-key", &public]);
    assert!(
        has(&v, "info", "safetensors_proven", "model.safetensors"),
        "{v}"
    );
    assert_eq!(v["audit"]["receipts"][0]["covers"][0], "model.safetensors");
    let (_, v) = audit_json(&dir, &["--trusted-key", &other]);
    assert!(
        has(&v, "medium", "safetensors_unproven", "model.safetensors"),
        "{v}"
    );
    assert!(
        has(
            &v,
            "medium",
            "receipt_unverified",
            "model.safetensors.intoto.jsonl"
        ),
        "{v}"
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

fn attest(dir: &Path, key: &str, extra: &[&str]) -> Run {
    let mut args = vec!["attest", dir.to_str().unwrap(), "--key", key];
    args.extend_from_slice(extra);
    decant(&args)
}

fn verify_bundle(dir: &Path, public: &str, extra: &[&str]) -> (i32, Value) {
    let manifest = dir.join("decant.bundle.intoto.jsonl");
    let run = verify_run(dir, &manifest, public, &[&["--json"], extra].concat());
    (run.code, run.json())
}

fn failed(v: &Value) -> Vec<&str> {
    v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

fn check<'a>(v: &'a Value, name: &str) -> &'a str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {v}"))["detail"]
        .as_str()
        .unwrap()
}

#[test]
fn an_attested_bundle_verifies_with_its_bindings() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    let upstream = format!("pkg:huggingface/org/model@{COMMIT}");
    let run = attest(
        &dir,
        &key,
        &[
            "--bind",
            "evaluation=run-2291",
            "--bind",
            "approval=CHG-1042",
            "--bind",
            &format!("upstream={upstream}"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(&format!(
            "attested {} -> {} (3 files, 1 findings, highest medium)\n",
            dir.display(),
            dir.join("decant.bundle.intoto.jsonl").display()
        )),
        "{}",
        run.stdout
    );
    let (code, v) = verify_bundle(
        &dir,
        &public,
        &[
            "--require",
            "approval",
            "--require",
            "evaluation=run-2291",
            "--require",
            &format!("upstream={upstream}"),
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "verified");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "envelope",
            "payload_type",
            "signature",
            "statement",
            "subject",
            "bindings",
            "findings"
        ]
    );
    assert_eq!(v["bindings"]["approval"]["value"], "CHG-1042");
    // Attesting again needs --force; the old manifest is not a subject.
    assert_eq!(attest(&dir, &key, &[]).code, 2);
    assert_eq!(
        attest(&dir, &key, &["--force", "--bind", "approval=CHG-1043"]).code,
        0
    );
    let (code, v) = verify_bundle(&dir, &public, &["--require", "approval=CHG-1042"]);
    assert_eq!(code, 1);
    assert_eq!(failed(&v), ["bindings"]);
    assert_eq!(
        check(&v, "bindings"),
        "approval: expected \"CHG-1042\", found \"CHG-1043\""
    );
}

#[test]
fn a_file_added_or_changed_after_attesting_fails_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    assert_eq!(attest(&dir, &key, &[]).code, 0);
    assert_eq!(verify_bundle(&dir, &public, &[]).0, 0);

    fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let (code, v) = verify_bundle(&dir, &public, &[]);
    assert_eq!(code, 1);
    assert_eq!(failed(&v), ["subject"]);
    assert!(
        check(&v, "subject").starts_with("changed since attested: config.json (expected sha256 "),
        "{v}"
    );

    fs::write(dir.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    fs::write(dir.join("modeling_evil.py"), "import os\n").unwrap();
    let (code, v) = verify_bundle(&dir, &public, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        check(&v, "subject"),
        "not in the manifest: modeling_evil.py"
    );
    let run = verify_run(&dir, &dir.join("decant.bundle.intoto.jsonl"), &public, &[]);
    assert_eq!(run.code, 1);
    run.assert_error_shape();
    assert!(
        run.stdout
            .contains("FAIL subject       not in the manifest: modeling_evil.py\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_missing_required_binding_fails_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    assert_eq!(attest(&dir, &key, &["--bind", "evaluation=run-1"]).code, 0);
    let (code, v) = verify_bundle(&dir, &public, &["--require", "approval"]);
    assert_eq!(code, 1);
    assert_eq!(failed(&v), ["bindings"]);
    assert_eq!(check(&v, "bindings"), "approval: required, not bound");
}

/// A revision that can move is refused when binding, unless allowed, and
/// then recorded as mutable, which a --require of it reports.
#[test]
fn a_mutable_revision_binding_is_refused_unless_allowed_and_then_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    let run = attest(
        &dir,
        &key,
        &["--bind", "upstream=pkg:huggingface/org/model@main"],
    );
    assert_eq!(run.code, 1);
    run.assert_error_shape();
    assert!(
        run.stderr
            .contains("names revision \"main\", which can move"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("decant.bundle.intoto.jsonl").exists());

    let run = attest(
        &dir,
        &key,
        &[
            "--bind",
            "upstream=pkg:huggingface/org/model@main",
            "--allow-mutable",
            "upstream",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("bound upstream = pkg:huggingface/org/model@main (mutable: --allow-mutable)"),
        "{}",
        run.stdout
    );
    let (code, v) = verify_bundle(&dir, &public, &["--require", "upstream"]);
    assert_eq!(code, 1);
    assert!(
        check(&v, "bindings").contains("a revision that can move"),
        "{v}"
    );
    assert_eq!(v["bindings"]["upstream"]["mutable"], true);
}

/// Findings recorded at attest time gate verification, at the level the
/// deploy job chooses.
#[test]
fn recorded_findings_gate_verification_at_the_chosen_level() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    fs::copy(
        fixture("hostile/g_os_system_reduce_p2.pt"),
        dir.join("extra.bin"),
    )
    .unwrap();
    assert_eq!(attest(&dir, &key, &[]).code, 0);
    let (code, v) = verify_bundle(&dir, &public, &[]);
    assert_eq!(code, 1);
    assert_eq!(failed(&v), ["findings"]);
    assert!(
        check(&v, "findings").contains("critical extra.bin (pickle_code_execution)"),
        "{v}"
    );
    // Only --fail-on above every recorded finding lets it through... and
    // nothing is above critical.
    let (code, _) = verify_bundle(&dir, &public, &["--fail-on", "critical"]);
    assert_eq!(code, 1);
}

#[test]
fn a_manifest_signed_by_another_key_does_not_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keygen(tmp.path());
    let (_, other) = keygen(&tmp.path().join("o").tap_mkdir());
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    assert_eq!(attest(&dir, &key, &[]).code, 0);
    let (code, v) = verify_bundle(&dir, &other, &[]);
    assert_eq!(code, 1);
    assert!(failed(&v).starts_with(&["signature"]), "{v}");
}

#[test]
fn conversion_receipt_options_with_a_manifest_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    assert_eq!(attest(&dir, &key, &[]).code, 0);
    let manifest = dir.join("decant.bundle.intoto.jsonl");
    let run = verify_run(
        &dir,
        &manifest,
        &public,
        &["--reproduce", "--source", dir.to_str().unwrap()],
    );
    assert_eq!(run.code, 2);
    run.assert_error_shape();
}

/// Issue 13's acceptance: every pickle fixture of the hostile corpus whose
/// ground truth names globals (fixtures/hostile/manifest.json `globals`):
/// audit lists each one as outside the allowlist, and fails the file,
/// whichever reader would load it: CPython's two readings of a frame,
/// a reader that reads on past an invalid opcode, a streaming zip reader
/// (a local entry the directory does not list), a reader of the bytes
/// after a legacy file's storages.
#[test]
fn audit_names_the_globals_of_every_hostile_pickle() {
    let manifest: Value = read_json(&fixture("hostile/manifest.json"));
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (name, entry) in manifest.as_object().unwrap() {
        let Some(expected) = entry.get("globals").and_then(Value::as_array) else {
            continue;
        };
        let file = entry["file"].as_str().unwrap();
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(fixture(&format!("hostile/{file}")), dir.join(file)).unwrap();
        let (code, v) = audit_json(&dir, &[]);
        assert_eq!(code, 1, "{name}: {v}");
        let listed: Vec<String> = v["audit"]["files"][0]["scan"]["pickle"]["streams"]
            .as_array()
            .map(|s| {
                s.iter()
                    .flat_map(|s| s["globals"].as_array().unwrap())
                    .filter(|g| g["allowlisted"] == false)
                    // decant spells a dotted name module:qual.name; the
                    // ground truth module.qual.name.
                    .map(|g| g["name"].as_str().unwrap().replacen(':', ".", 1))
                    .collect()
            })
            .unwrap_or_default();
        if entry.get("hidden_globals") == Some(&Value::Bool(true)) {
            // Names computed at load time cannot be read without running
            // the pickle: audit must say it is hiding them.
            assert!(
                has(&v, "critical", "pickle_hidden_global", file),
                "{name}: hidden globals not reported\n{v}"
            );
        } else {
            let all_named = expected
                .iter()
                .all(|g| listed.iter().any(|l| l == g.as_str().unwrap()));
            assert!(
                all_named,
                "{name}: audit does not name {expected:?}; it lists {listed:?}\n{v}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 60,
        "only {checked} hostile fixtures carry ground-truth globals"
    );
}

/// What a symlink serves is not in the bundle: a finding naming it, and a
/// failed audit; a file named with spaces is named whole.
#[test]
fn a_symlink_in_a_bundle_is_a_high_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    clean_bundle(&dir);
    std::os::unix::fs::symlink("/etc/hostname", dir.join("tokenizer config.json")).unwrap();
    let (code, v) = audit_json(&dir, &[]);
    assert_eq!(code, 1, "{v}");
    let all = findings(&v);
    let m = message(&all, "not_a_regular_file", "tokenizer config.json");
    assert!(m.starts_with("is a symlink, not a regular file"), "{m}");
}

/// A global only a resynchronising reading of a damaged stream finds (here
/// after an invalid opcode) is judged as any other (os.system: critical)
/// and marked as possibly referenced; the stream is still reported as not
/// fully scanned, so a damaged pickle never looks clean.
#[test]
fn a_global_past_a_damaged_streams_damage_is_critical_and_marked_possible() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(
        fixture("hostile/s_invalid_opcode.pt"),
        dir.join("pytorch_model.bin"),
    )
    .unwrap();
    let (code, v) = audit_json(&dir, &[]);
    assert_eq!(code, 1, "{v}");
    let all = findings(&v);
    let m = message(&all, "pickle_code_execution", "pytorch_model.bin");
    assert!(
        m.starts_with(
            "a pickle naming os.system (possibly referenced: damaged stream), which runs code"
        ),
        "{m}"
    );
    assert!(has(
        &v,
        "critical",
        "pickle_code_execution",
        "pytorch_model.bin"
    ));
    let m = message(&all, "pickle_unreadable", "pytorch_model.bin");
    assert!(m.contains("unknown pickle opcode 0xff"), "{m}");
    assert!(has(&v, "high", "pickle_unreadable", "pytorch_model.bin"));
    let g = &v["audit"]["files"][0]["scan"]["pickle"]["streams"][0]["globals"][0];
    assert_eq!(g["possible"], true, "{g}");
}
