//! Receipts end to end: keygen, convert --key, verify as a promotion gate.
//! Each way a receipt can fail to vouch for an artifact must fail with its
//! own check, through the real binary.

use crate::common::{convert_keyed, decant, fixture, keygen, only_files, read_json};
use base64::Engine as _;
use std::fs;
use std::path::{Path, PathBuf};

struct Signed {
    dir: tempfile::TempDir,
    artifact: PathBuf,
    receipt: PathBuf,
    public: PathBuf,
    source: PathBuf,
}

fn signed(source: &str) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path());
    let artifact = dir.path().join("model.safetensors");
    let run = convert_keyed(&fixture(source), &artifact, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    Signed {
        receipt: dir.path().join("model.safetensors.intoto.jsonl"),
        public: dir.path().join("key.pub"),
        source: fixture(source),
        artifact,
        dir,
    }
}

/// Runs `verify --json` with extra arguments; returns (exit code, failed check names).
fn verify(artifact: &Path, receipt: &Path, keys: &[&Path], extra: &[&str]) -> (i32, Vec<String>) {
    let mut args = vec![
        "verify".to_string(),
        artifact.to_str().unwrap().into(),
        "--receipt".into(),
        receipt.to_str().unwrap().into(),
        "--json".into(),
    ];
    for k in keys {
        args.push("--trusted-key".into());
        args.push(k.to_str().unwrap().into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = decant(&refs);
    let v = run.json();
    let failed = v["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["passed"] == false)
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(run.code == 0, v["status"] == "verified", "{}", run.stdout);
    (run.code, failed)
}

/// The first failing check: the one that names the reason.
fn first(failed: &[String]) -> &str {
    failed.first().map(String::as_str).unwrap_or("")
}

#[test]
fn round_trip_verifies_and_reproduces() {
    let s = signed("convert/tied.pt");
    let (code, failed) = verify(
        &s.artifact,
        &s.receipt,
        &[&s.public],
        &["--source", s.source.to_str().unwrap(), "--reproduce"],
    );
    assert_eq!((code, failed.len()), (0, 0), "{failed:?}");
    let mut names = only_files(s.dir.path());
    names.sort();
    assert_eq!(
        names,
        [
            "key",
            "key.pub",
            "model.safetensors",
            "model.safetensors.intoto.jsonl"
        ]
    );
}

#[test]
fn flipped_artifact_byte_fails_the_subject_check() {
    let s = signed("convert/zip_p2.pt");
    let mut bytes = fs::read(&s.artifact).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&s.artifact, bytes).unwrap();
    let (code, failed) = verify(&s.artifact, &s.receipt, &[&s.public], &[]);
    assert_eq!(code, 1);
    assert_eq!(failed, ["subject"]);
}

fn edit_envelope(receipt: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut env: serde_json::Value = read_json(receipt);
    edit(&mut env);
    fs::write(receipt, format!("{env}\n")).unwrap();
}

#[test]
fn changed_payload_byte_fails_the_signature() {
    let s = signed("convert/zip_p2.pt");
    edit_envelope(&s.receipt, |env| {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
        // Inside the builder version string: still valid JSON.
        let at = payload.windows(7).position(|w| w == b"\"0.1.0\"").unwrap() + 1;
        payload[at] = b'9';
        env["payload"] = b64.encode(payload).into();
    });
    let (code, failed) = verify(&s.artifact, &s.receipt, &[&s.public], &[]);
    assert_eq!(code, 1);
    assert_eq!(first(&failed), "signature");
}

#[test]
fn changed_signature_fails_the_signature() {
    let s = signed("convert/zip_p2.pt");
    edit_envelope(&s.receipt, |env| {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut sig = b64
            .decode(env["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        sig[10] ^= 0x40;
        env["signatures"][0]["sig"] = b64.encode(sig).into();
    });
    let (code, failed) = verify(&s.artifact, &s.receipt, &[&s.public], &[]);
    assert_eq!(code, 1);
    assert_eq!(first(&failed), "signature");
}

#[test]
fn changed_payload_type_fails_its_own_check() {
    let s = signed("convert/zip_p2.pt");
    edit_envelope(&s.receipt, |env| {
        env["payloadType"] = "application/json".into()
    });
    let (code, failed) = verify(&s.artifact, &s.receipt, &[&s.public], &[]);
    assert_eq!(code, 1);
    assert_eq!(first(&failed), "payload_type");
}

#[test]
fn untrusted_key_fails_the_signature_and_rotation_passes() {
    let s = signed("convert/zip_p2.pt");
    let other = s.dir.path().join("other");
    assert_eq!(decant(&["keygen", other.to_str().unwrap()]).code, 0);
    let other_pub = s.dir.path().join("other.pub");
    let (code, failed) = verify(&s.artifact, &s.receipt, &[&other_pub], &[]);
    assert_eq!(code, 1);
    assert_eq!(first(&failed), "signature");
    // Rotation: several trusted keys, any one may have signed.
    let (code, failed) = verify(&s.artifact, &s.receipt, &[&other_pub, &s.public], &[]);
    assert_eq!((code, failed.len()), (0, 0), "{failed:?}");
}

#[test]
fn receipt_of_another_artifact_fails_the_subject_check() {
    let a = signed("convert/zip_p2.pt");
    let b = signed("convert/views.pt");
    let (code, failed) = verify(&a.artifact, &b.receipt, &[&b.public], &[]);
    assert_eq!(code, 1);
    assert_eq!(failed, ["subject"]);
}

#[test]
fn source_pin_that_does_not_match_fails_the_source_check() {
    let s = signed("convert/zip_p2.pt");
    let other = fixture("convert/views.pt");
    let (code, failed) = verify(
        &s.artifact,
        &s.receipt,
        &[&s.public],
        &["--source", other.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert_eq!(failed, ["source"]);
    let (code, failed) = verify(
        &s.artifact,
        &s.receipt,
        &[&s.public],
        &["--source-sha256", &"ab".repeat(32)],
    );
    assert_eq!(code, 1);
    assert_eq!(failed, ["source"]);
    // --reproduce with the wrong source also fails to reproduce.
    let (code, failed) = verify(
        &s.artifact,
        &s.receipt,
        &[&s.public],
        &["--source", other.to_str().unwrap(), "--reproduce"],
    );
    assert_eq!(code, 1);
    assert_eq!(failed, ["source", "reproduce"]);
}

#[test]
fn policy_pin_that_does_not_match_fails_the_policy_check() {
    let s = signed("convert/zip_p2.pt");
    let (code, failed) = verify(
        &s.artifact,
        &s.receipt,
        &[&s.public],
        &["--policy-sha256", &"cd".repeat(32)],
    );
    assert_eq!(code, 1);
    assert_eq!(failed, ["policy"]);
    let default = decant::policy::Policy::default_policy().unwrap().sha256;
    let (code, _) = verify(
        &s.artifact,
        &s.receipt,
        &[&s.public],
        &["--policy-sha256", default.as_str()],
    );
    assert_eq!(code, 0);
}

/// A receipt naming a converter this decant does not embed: only trusted
/// with --allow-converter. Signed by the same key, so only the converter
/// check can fail.
#[test]
fn untrusted_converter_fails_unless_allowed() {
    let s = signed("convert/zip_p2.pt");
    let key = decant::trust::keys::load_signing_key(&s.dir.path().join("key")).unwrap();
    let env: decant::trust::dsse::Envelope =
        serde_json::from_slice(&fs::read(&s.receipt).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut statement: serde_json::Value =
        serde_json::from_slice(&b64.decode(&env.payload).unwrap()).unwrap();
    let other = "ef".repeat(32);
    for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array_mut()
        .unwrap()
    {
        if dep["annotations"]["role"] == "converter" {
            dep["digest"]["sha256"] = other.clone().into();
        }
    }
    let resigned = decant::trust::dsse::sign(&serde_json::to_vec(&statement).unwrap(), &key);
    fs::write(&s.receipt, decant::receipt::to_line(&resigned)).unwrap();
    let (code, failed) = verify(&s.artifact, &s.receipt, &[&s.public], &[]);
    assert_eq!(code, 1);
    assert_eq!(failed, ["converter"]);
    let (code, failed) = verify(
        &s.artifact,
        &s.receipt,
        &[&s.public],
        &["--allow-converter", &other],
    );
    assert_eq!((code, failed.len()), (0, 0), "{failed:?}");
}

#[test]
fn keygen_writes_private_0600_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    assert_eq!(decant(&["keygen", key.to_str().unwrap()]).code, 0);
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(fs::read_to_string(dir.path().join("k.pub"))
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let run = decant(&["keygen", key.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert_eq!(fs::read_to_string(&key).unwrap(), text);
}

/// Keys made by `openssl genpkey -algorithm ed25519` sign and verify.
#[test]
fn openssl_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ossl.pem");
    let public = dir.path().join("ossl.pub");
    let ok = |args: &[&str]| {
        assert!(std::process::Command::new("openssl")
            .args(args)
            .status()
            .unwrap()
            .success())
    };
    ok(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        key.to_str().unwrap(),
    ]);
    ok(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let artifact = dir.path().join("m.safetensors");
    let run = convert_keyed(
        &fixture("convert/zip_p2.pt"),
        &artifact,
        key.to_str().unwrap(),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let receipt = dir.path().join("m.safetensors.intoto.jsonl");
    let (code, failed) = verify(&artifact, &receipt, &[&public], &[]);
    assert_eq!((code, failed.len()), (0, 0), "{failed:?}");
}

/// A receipt is written only for a conversion that succeeded.
#[test]
fn refused_conversion_writes_no_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path());
    let run = convert_keyed(
        &fixture("refuse/unknown_global.pt"),
        &dir.path().join("x.safetensors"),
        &key,
        &[],
    );
    assert_eq!(run.code, 1);
    assert_eq!(only_files(dir.path()), ["key", "key.pub"]);
}

#[test]
fn existing_receipt_is_refused_before_converting() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path());
    let receipt = dir.path().join("r.jsonl");
    fs::write(&receipt, "old").unwrap();
    let run = convert_keyed(
        &fixture("convert/zip_p2.pt"),
        &dir.path().join("x.safetensors"),
        &key,
        &["--receipt", receipt.to_str().unwrap()],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert_eq!(fs::read_to_string(&receipt).unwrap(), "old");
    assert_eq!(only_files(dir.path()), ["key", "key.pub", "r.jsonl"]);
}

#[test]
fn receipt_without_key_is_a_usage_error() {
    let run = decant(&[
        "convert",
        fixture("convert/zip_p2.pt").to_str().unwrap(),
        "--receipt",
        "/tmp/x",
    ]);
    assert_eq!(run.code, 2);
}
