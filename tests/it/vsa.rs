//! Issue 14 part 3: `decant verify ... --vsa PATH --key KEY` writes a signed
//! SLSA Verification Summary Attestation v1 for every verify form (a file
//! with its receipt, a directory with its receipt, a bundle with its
//! manifest), passed or failed, through the binary.

use crate::common::{
    convert_keyed, decant, files_under, fixture, keygen, sha256_file, sha256_hex, verify_run,
};
use base64::Engine as _;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// Verifies the VSA's envelope with `public` (decant's DSSE verifier, the
/// one receipts are checked with; CI checks VSAs with securesystemslib and
/// openssl too) and returns its statement.
fn vsa_statement(vsa: &Path, public: &str) -> Value {
    let text = fs::read_to_string(vsa).unwrap();
    assert_eq!(text.lines().count(), 1, "one envelope line");
    let env: decant::trust::dsse::Envelope = serde_json::from_str(text.trim_end()).unwrap();
    let key = decant::trust::keys::load_public_key(Path::new(public)).unwrap();
    let verified = decant::trust::dsse::verify(&env, &[key]).expect("the VSA's signature verifies");
    assert_eq!(env.payload_type, "application/vnd.in-toto+json");
    serde_json::from_slice(&verified.payload).unwrap()
}

/// The statement, without checking the signature (for tampering tests).
fn unverified(vsa: &Path) -> (Value, Value) {
    let env: Value = serde_json::from_str(fs::read_to_string(vsa).unwrap().trim_end()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    (env, serde_json::from_slice(&payload).unwrap())
}

fn file_uri(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

struct Signed {
    tmp: tempfile::TempDir,
    key: String,
    public: String,
    artifact: PathBuf,
    receipt: PathBuf,
}

fn signed_file() -> Signed {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let artifact = tmp.path().join("model.safetensors");
    let run = convert_keyed(&fixture("convert/tied.pt"), &artifact, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    Signed {
        receipt: tmp.path().join("model.safetensors.intoto.jsonl"),
        tmp,
        key,
        public,
        artifact,
    }
}

fn subjects(statement: &Value) -> Vec<(String, String)> {
    statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["digest"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The fields every VSA has, whatever the result.
fn assert_vsa_shape(s: &Value) {
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        s["predicateType"],
        "https://slsa.dev/verification_summary/v1"
    );
    let p = &s["predicate"];
    assert_eq!(p["verifier"]["id"], "https://decant.dev/verifier/v1");
    assert_eq!(
        p["verifier"]["version"]["decant"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(p["slsaVersion"], "1.2");
    let t = p["timeVerified"].as_str().unwrap();
    assert!(
        t.len() == 20 && t.ends_with('Z') && &t[10..11] == "T",
        "{t}"
    );
    assert!(
        p.get("dependencyLevels").is_none(),
        "decant claims nothing about dependencies"
    );
    // The policy digest is the sha256 of its annotations' sorted JSON.
    let policy = &p["policy"];
    assert_eq!(
        policy["digest"]["sha256"],
        sha256_hex(&serde_json::to_vec(&policy["annotations"]).unwrap()).as_str()
    );
}

/// A passing file verification: PASSED, decant's level and no SLSA build
/// level, the artifact's real digest as the subject, its file URI as the
/// resource, the receipt file by its real digest as the input
/// attestation, the trusted key in the policy; signed with the VSA key.
#[test]
fn a_passing_file_verification_writes_a_signed_passed_vsa() {
    let s = signed_file();
    let vsa = s.tmp.path().join("model.vsa.intoto.jsonl");
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &["--vsa", vsa.to_str().unwrap(), "--key", &s.key, "--json"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["vsa"], vsa.to_str().unwrap());
    let st = vsa_statement(&vsa, &s.public);
    assert_vsa_shape(&st);
    let p = &st["predicate"];
    assert_eq!(p["verificationResult"], "PASSED");
    assert_eq!(
        p["verifiedLevels"],
        serde_json::json!(["SLSA_BUILD_LEVEL_UNEVALUATED", "DECANT_CONVERSION_VERIFIED"])
    );
    assert_eq!(
        subjects(&st),
        [("model.safetensors".to_string(), sha256_file(&s.artifact))]
    );
    assert_eq!(p["resourceUri"], file_uri(&s.artifact));
    assert_eq!(
        p["inputAttestations"],
        serde_json::json!([{
            "uri": file_uri(&s.receipt),
            "digest": {"sha256": sha256_file(&s.receipt)}
        }])
    );
    let policy = &p["policy"];
    assert_eq!(
        policy["uri"],
        "https://decant.dev/verify-policy/conversion-receipt/v1"
    );
    assert_eq!(policy["annotations"]["kind"], "conversion-receipt");
    let fingerprint = out["signer_fingerprint"].as_str().unwrap();
    assert_eq!(
        policy["annotations"]["trustedKeys"],
        serde_json::json!([fingerprint])
    );
    assert_eq!(policy["annotations"]["reproduce"], false);
    assert!(p.get("https://decant.dev/vsa/failedChecks").is_none());

    // Text mode says where the summary went, and what it says.
    let vsa2 = s.tmp.path().join("second.jsonl");
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &["--vsa", vsa2.to_str().unwrap(), "--key", &s.key],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("verification summary (PASSED): "),
        "{}",
        run.stdout
    );
}

/// A failed verification still writes a signed VSA, FAILED, with FAILED as
/// its only level and the failed checks named; the subject is the digest
/// of the bytes that failed; the exit status stays 1.
#[test]
fn a_failing_verification_writes_a_failed_vsa_and_exits_1() {
    let s = signed_file();
    let mut bytes = fs::read(&s.artifact).unwrap();
    bytes.push(b'x');
    fs::write(&s.artifact, &bytes).unwrap();
    let vsa = s.tmp.path().join("vsa.jsonl");
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &["--vsa", vsa.to_str().unwrap(), "--key", &s.key],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("verification summary (FAILED)"),
        "{}",
        run.stdout
    );
    let st = vsa_statement(&vsa, &s.public);
    assert_vsa_shape(&st);
    let p = &st["predicate"];
    assert_eq!(p["verificationResult"], "FAILED");
    assert_eq!(p["verifiedLevels"], serde_json::json!(["FAILED"]));
    assert_eq!(
        p["https://decant.dev/vsa/failedChecks"],
        serde_json::json!(["subject"])
    );
    assert_eq!(
        subjects(&st),
        [("model.safetensors".to_string(), sha256_hex(&bytes))]
    );

    // A receipt signed by a key that is not trusted: FAILED too.
    let other = s.tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let (_, other_public) = keygen(&other);
    let vsa = s.tmp.path().join("untrusted.jsonl");
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &other_public,
        &["--vsa", vsa.to_str().unwrap(), "--key", &s.key],
    );
    assert_eq!(run.code, 1);
    let st = vsa_statement(&vsa, &s.public);
    assert_eq!(st["predicate"]["verificationResult"], "FAILED");
    let failed = st["predicate"]["https://decant.dev/vsa/failedChecks"]
        .as_array()
        .unwrap();
    assert!(failed.contains(&Value::from("signature")), "{failed:?}");
}

/// `--reproduce` that passes adds DECANT_CONVERSION_REPRODUCED, and the
/// policy records the source pin and the reproduction; `--resource-uri`
/// is written as given.
#[test]
fn reproduction_and_resource_uri_are_recorded() {
    let s = signed_file();
    let vsa = s.tmp.path().join("vsa.jsonl");
    let uri = "https://models.example/tied/model.safetensors";
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &[
            "--source",
            fixture("convert/tied.pt").to_str().unwrap(),
            "--reproduce",
            "--vsa",
            vsa.to_str().unwrap(),
            "--key",
            &s.key,
            "--resource-uri",
            uri,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let st = vsa_statement(&vsa, &s.public);
    let p = &st["predicate"];
    assert_eq!(p["resourceUri"], uri);
    assert_eq!(
        p["verifiedLevels"],
        serde_json::json!([
            "SLSA_BUILD_LEVEL_UNEVALUATED",
            "DECANT_CONVERSION_VERIFIED",
            "DECANT_CONVERSION_REPRODUCED"
        ])
    );
    let a = &p["policy"]["annotations"];
    assert_eq!(a["reproduce"], true);
    assert_eq!(
        a["sourceSha256"],
        sha256_file(&fixture("convert/tied.pt")).as_str()
    );
}

/// A directory with its receipt: every file of the directory is a subject
/// with its real digest (the receipt inside it left out, as verify leaves
/// it out), and the resource is the directory's URI (ending in `/`). A VSA
/// path inside the directory is refused: it would be an unlisted file.
#[test]
fn a_directory_verification_vsa_lists_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let out = tmp.path().join("out");
    let run = convert_keyed(&fixture("dirs/sharded"), &out, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let receipt = out.join("decant.intoto.jsonl");
    let vsa = tmp.path().join("out.vsa.intoto.jsonl");
    let run = verify_run(
        &out,
        &receipt,
        &public,
        &["--vsa", vsa.to_str().unwrap(), "--key", &key],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let st = vsa_statement(&vsa, &public);
    assert_vsa_shape(&st);
    assert_eq!(st["predicate"]["verificationResult"], "PASSED");
    let mut expected: Vec<(String, String)> = files_under(&out)
        .into_iter()
        .filter(|f| f != "decant.intoto.jsonl")
        .map(|f| {
            let sha = sha256_file(&out.join(&f));
            (f, sha)
        })
        .collect();
    expected.sort();
    assert_eq!(subjects(&st), expected);
    let uri = st["predicate"]["resourceUri"].as_str().unwrap();
    assert_eq!(uri, format!("{}/", file_uri(&out)));
    assert_eq!(
        st["predicate"]["inputAttestations"][0]["digest"]["sha256"],
        sha256_file(&receipt).as_str()
    );

    // Inside the directory: refused, nothing written, still verifies.
    let inside = out.join("vsa.jsonl");
    let run = verify_run(
        &out,
        &receipt,
        &public,
        &["--vsa", inside.to_str().unwrap(), "--key", &key],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(
        run.stderr.contains("inside the verified directory"),
        "{}",
        run.stderr
    );
    assert!(!inside.exists());
    assert_eq!(verify_run(&out, &receipt, &public, &[]).code, 0);

    // A planted file fails the verification, and the VSA says so.
    fs::write(out.join("modeling_evil.py"), "import os").unwrap();
    let failed = tmp.path().join("failed.jsonl");
    let run = verify_run(
        &out,
        &receipt,
        &public,
        &["--vsa", failed.to_str().unwrap(), "--key", &key],
    );
    assert_eq!(run.code, 1);
    let st = vsa_statement(&failed, &public);
    assert_eq!(st["predicate"]["verificationResult"], "FAILED");
    assert!(subjects(&st).iter().any(|(n, _)| n == "modeling_evil.py"));
}

/// A bundle with its manifest: the bundle's files as subjects, the manifest
/// as the input attestation, the bundle policy (required bindings,
/// --fail-on), DECANT_BUNDLE_VERIFIED; a missing required binding is
/// FAILED.
#[test]
fn a_bundle_verification_vsa_records_the_manifest_and_its_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let bundle = tmp.path().join("bundle");
    let run = convert_keyed(&fixture("dirs/single"), &bundle, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = decant(&[
        "attest",
        bundle.to_str().unwrap(),
        "--key",
        &key,
        "--trusted-key",
        &public,
        "--bind",
        "approval=CHG-1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let manifest = bundle.join("decant.bundle.intoto.jsonl");
    let vsa = tmp.path().join("bundle.vsa.jsonl");
    let run = verify_run(
        &bundle,
        &manifest,
        &public,
        &[
            "--require",
            "approval=CHG-1",
            "--vsa",
            vsa.to_str().unwrap(),
            "--key",
            &key,
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["vsa"], vsa.to_str().unwrap());
    let st = vsa_statement(&vsa, &public);
    assert_vsa_shape(&st);
    let p = &st["predicate"];
    assert_eq!(p["verificationResult"], "PASSED");
    assert_eq!(
        p["verifiedLevels"],
        serde_json::json!(["SLSA_BUILD_LEVEL_UNEVALUATED", "DECANT_BUNDLE_VERIFIED"])
    );
    let expected: Vec<(String, String)> = files_under(&bundle)
        .into_iter()
        .filter(|f| f != "decant.bundle.intoto.jsonl")
        .map(|f| {
            let sha = sha256_file(&bundle.join(&f));
            (f, sha)
        })
        .collect();
    assert_eq!(subjects(&st), expected);
    assert_eq!(
        p["inputAttestations"][0]["digest"]["sha256"],
        sha256_file(&manifest).as_str()
    );
    assert_eq!(
        p["policy"]["uri"],
        "https://decant.dev/verify-policy/bundle-manifest/v1"
    );
    assert_eq!(
        p["policy"]["annotations"]["required"],
        serde_json::json!(["approval=CHG-1"])
    );
    assert_eq!(p["policy"]["annotations"]["failOn"], "high");

    let failed = tmp.path().join("failed.jsonl");
    let run = verify_run(
        &bundle,
        &manifest,
        &public,
        &[
            "--require",
            "evaluation",
            "--vsa",
            failed.to_str().unwrap(),
            "--key",
            &key,
        ],
    );
    assert_eq!(run.code, 1);
    let st = vsa_statement(&failed, &public);
    assert_eq!(st["predicate"]["verificationResult"], "FAILED");
    assert_eq!(
        st["predicate"]["https://decant.dev/vsa/failedChecks"],
        serde_json::json!(["bindings"])
    );
}

/// A changed statement no longer verifies with the VSA key: the signature
/// covers the verdict.
#[test]
fn a_tampered_vsa_does_not_verify() {
    let s = signed_file();
    let vsa = s.tmp.path().join("vsa.jsonl");
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &["--vsa", vsa.to_str().unwrap(), "--key", &s.key],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (mut env, mut st) = unverified(&vsa);
    st["predicate"]["verificationResult"] = "PASSED".into();
    st["subject"][0]["digest"]["sha256"] = sha256_hex(b"another model").into();
    env["payload"] = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&st).unwrap())
        .into();
    let env: decant::trust::dsse::Envelope = serde_json::from_value(env).unwrap();
    let key = decant::trust::keys::load_public_key(Path::new(&s.public)).unwrap();
    assert!(decant::trust::dsse::verify(&env, &[key]).is_err());
}

/// --vsa and --key require each other; --resource-uri and --force need
/// --vsa: usage errors (exit 2) in decant's two-line shape, nothing
/// written.
#[test]
fn vsa_and_key_require_each_other() {
    let s = signed_file();
    let vsa = s.tmp.path().join("vsa.jsonl");
    for extra in [
        vec!["--vsa", vsa.to_str().unwrap()],
        vec!["--key", s.key.as_str()],
        vec!["--resource-uri", "https://x.example/m"],
        vec!["--force"],
    ] {
        let run = verify_run(&s.artifact, &s.receipt, &s.public, &extra);
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        run.assert_error_shape();
        assert!(!vsa.exists());
    }
}

/// An existing VSA is not replaced without --force (refused before
/// verifying, naming --vsa); with --force it is.
#[test]
fn an_existing_vsa_is_replaced_only_with_force() {
    let s = signed_file();
    let vsa = s.tmp.path().join("vsa.jsonl");
    fs::write(&vsa, "keep me").unwrap();
    let args = ["--vsa", vsa.to_str().unwrap(), "--key", s.key.as_str()];
    let run = verify_run(&s.artifact, &s.receipt, &s.public, &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert!(run.stderr.contains("--vsa"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing verified: {}", run.stdout);
    assert_eq!(fs::read_to_string(&vsa).unwrap(), "keep me");
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &[&args[..], &["--force"]].concat(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    vsa_statement(&vsa, &s.public);
}

/// --key must be a private Ed25519 key: a public key, or a file that is
/// not a key, is refused before anything is verified or written.
#[test]
fn the_vsa_key_must_be_a_private_ed25519_key() {
    let s = signed_file();
    let vsa = s.tmp.path().join("vsa.jsonl");
    let not_a_key = s.tmp.path().join("not-a-key");
    fs::write(&not_a_key, "hello").unwrap();
    for key in [s.public.as_str(), not_a_key.to_str().unwrap()] {
        let run = verify_run(
            &s.artifact,
            &s.receipt,
            &s.public,
            &["--vsa", vsa.to_str().unwrap(), "--key", key],
        );
        assert_eq!(run.code, 2, "{key}: {}", run.stderr);
        run.assert_error_shape();
        assert!(!vsa.exists());
    }
}

/// The VSA may not be written over a file verify reads (the receipt, the
/// artifact, a key, the policy), and --resource-uri must be an absolute
/// URI.
#[test]
fn the_vsa_path_and_resource_uri_are_checked() {
    let s = signed_file();
    let receipt_before = fs::read(&s.receipt).unwrap();
    for (path, force) in [
        (s.receipt.to_str().unwrap(), true),
        (s.artifact.to_str().unwrap(), true),
        (s.public.as_str(), true),
        (s.key.as_str(), true),
    ] {
        let mut extra = vec!["--vsa", path, "--key", s.key.as_str()];
        if force {
            extra.push("--force");
        }
        let run = verify_run(&s.artifact, &s.receipt, &s.public, &extra);
        assert_eq!(run.code, 2, "{path}: {}", run.stderr);
        run.assert_error_shape();
        assert!(run.stderr.contains("the same file"), "{}", run.stderr);
    }
    assert_eq!(fs::read(&s.receipt).unwrap(), receipt_before);
    // The policy --reproduce reads.
    let policy = s.tmp.path().join("policy.json");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox-policy/default.json"),
        &policy,
    )
    .unwrap();
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &[
            "--source",
            fixture("convert/tied.pt").to_str().unwrap(),
            "--reproduce",
            "--policy",
            policy.to_str().unwrap(),
            "--vsa",
            policy.to_str().unwrap(),
            "--key",
            &s.key,
            "--force",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("the same file"), "{}", run.stderr);
    let vsa = s.tmp.path().join("vsa.jsonl");
    let run = verify_run(
        &s.artifact,
        &s.receipt,
        &s.public,
        &[
            "--vsa",
            vsa.to_str().unwrap(),
            "--key",
            &s.key,
            "--resource-uri",
            "model.safetensors",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("absolute URI"), "{}", run.stderr);
    assert!(!vsa.exists());
}
