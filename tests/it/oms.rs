//! OpenSSF model signatures (`model.sig`, issue 14): `decant keygen --type
//! p256`, `--oms-key` on directory conversions and `decant attest`, and how
//! `decant verify` and `decant audit` treat a `model.sig`. Signatures are
//! checked here with the p256 crate directly, and decant's statement is
//! compared with one the real `model_signing` tool wrote
//! (fixtures/oms/README.md).

use crate::common::{
    convert_keyed, copy_tree, decant, fixture, keygen, sha256_hex, verify_dir_run, verify_run, Run,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use decant::trust::oms;
use decant::trust::statement::Sha256Hex;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A fresh P-256 key pair in `dir` from `decant keygen --type p256`.
fn keygen_p256(dir: &Path) -> (String, String) {
    let key = dir.join("oms.key");
    let run = decant(&["keygen", "--type", "p256", key.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (
        key.to_str().unwrap().into(),
        dir.join("oms.key.pub").to_str().unwrap().into(),
    )
}

/// Every regular file under `dir` (relative `/` path, sha256), sorted.
fn files_of(dir: &Path) -> Vec<(String, Sha256Hex)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Sha256Hex)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                out.push((rel, Sha256Hex::of(&fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The bundle and its decoded statement, read without decant's code.
fn read_sig(path: &Path) -> (Value, Value, Vec<u8>) {
    let text = fs::read_to_string(path).unwrap();
    assert!(
        !text.contains('\n'),
        "one line, no newline, as model_signing writes"
    );
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let payload = STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    (bundle, statement, payload)
}

/// Checks the signature of a model.sig with the p256 crate: ECDSA P-256
/// SHA-256, DER, over the DSSE PAE.
fn signature_verifies(bundle: &Value, payload: &[u8], public_pem: &str) -> bool {
    let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(public_pem).unwrap();
    let sigs = bundle["dsseEnvelope"]["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 1);
    let der = STANDARD.decode(sigs[0]["sig"].as_str().unwrap()).unwrap();
    let Ok(sig) = p256::ecdsa::Signature::from_der(&der) else {
        return false;
    };
    let mut pae = format!("DSSEv1 28 application/vnd.in-toto+json {} ", payload.len()).into_bytes();
    pae.extend_from_slice(payload);
    vk.verify(&pae, &sig).is_ok()
}

/// Python `PurePosixPath` order, model_signing's resource order.
fn posix_sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    names
}

/// Converts fixtures/dirs/sharded into `work/out` with both keys.
fn convert_with_oms(work: &Path) -> (PathBuf, String, String, Run) {
    let (key, public) = keygen(work);
    let (oms_key, oms_pub) = keygen_p256(work);
    let out = work.join("out");
    let run = convert_keyed(
        &fixture("dirs/sharded"),
        &out,
        &key,
        &["--oms-key", &oms_key],
    );
    (out, public, oms_pub, run)
}

/// `keygen --type p256` writes a PKCS#8 private key (0600) and an SPKI
/// public key that load as P-256 and belong together, openssl reads them,
/// and neither is ever overwritten.
#[test]
fn keygen_p256_writes_pem_keys_that_load_and_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k");
    let run = decant(&["keygen", "--type", "p256", key.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("ECDSA P-256"), "{}", run.stdout);
    let private = fs::read_to_string(&key).unwrap();
    let public = fs::read_to_string(tmp.path().join("k.pub")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(private.ends_with("-----END PRIVATE KEY-----\n"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(public.ends_with("-----END PUBLIC KEY-----\n"));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sk = p256::SecretKey::from_pkcs8_pem(&private).unwrap();
    let pk = p256::PublicKey::from_public_key_pem(&public).unwrap();
    assert_eq!(sk.public_key(), pk);
    // The hint printed is model_signing's: sha256 of the SPKI PEM text.
    assert!(
        run.stdout.contains(&sha256_hex(public.as_bytes())),
        "{}",
        run.stdout
    );
    // openssl derives the same public key file.
    let derived = std::process::Command::new("openssl")
        .args(["pkey", "-in", key.to_str().unwrap(), "-pubout"])
        .output()
        .unwrap();
    assert!(derived.status.success());
    assert_eq!(String::from_utf8(derived.stdout).unwrap(), public);

    let again = decant(&["keygen", "--type", "p256", key.to_str().unwrap()]);
    assert_eq!(again.code, 2);
    again.assert_error_shape();
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(fs::read_to_string(&key).unwrap(), private);
    let bad = decant(&[
        "keygen",
        "--type",
        "rsa",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 2);
    bad.assert_error_shape();
}

/// A directory conversion with --oms-key writes model.sig: a sigstore
/// bundle v0.3 whose ECDSA signature verifies, whose statement lists every
/// other file of OUT (the receipt included) with its digest in
/// model_signing's order, and whose subject is their root digest. A
/// changed file no longer matches.
#[test]
fn directory_conversion_writes_a_model_sig_over_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _, oms_pub, run) = convert_with_oms(tmp.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("model.sig"), "{}", run.stdout);
    let (bundle, statement, payload) = read_sig(&out.join("model.sig"));
    let public = fs::read_to_string(&oms_pub).unwrap();
    assert_eq!(
        bundle["mediaType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert_eq!(
        bundle["verificationMaterial"]["publicKey"]["hint"],
        sha256_hex(public.as_bytes())
    );
    assert_eq!(
        bundle["verificationMaterial"]["tlogEntries"],
        Value::Array(vec![])
    );
    assert_eq!(
        bundle["dsseEnvelope"]["payloadType"],
        "application/vnd.in-toto+json"
    );
    assert!(signature_verifies(&bundle, &payload, &public));

    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["predicateType"],
        "https://model_signing/signature/v1.0"
    );
    let ser = &statement["predicate"]["serialization"];
    assert_eq!(ser["method"], "files");
    assert_eq!(ser["hash_type"], "sha256");
    assert_eq!(ser["allow_symlinks"], false);
    // The fixture's .gitattributes is copied (and in the receipt), but
    // model_signing leaves the root git paths out, so model.sig does too.
    assert!(out.join(".gitattributes").is_file());
    let files: Vec<(String, Sha256Hex)> = files_of(&out)
        .into_iter()
        .filter(|(n, _)| n != "model.sig" && n != ".gitattributes")
        .collect();
    assert!(files.iter().any(|(n, _)| n == "decant.intoto.jsonl"));
    let resources = statement["predicate"]["resources"].as_array().unwrap();
    let names: Vec<String> = resources
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        posix_sorted(files.iter().map(|(n, _)| n.clone()).collect())
    );
    let mut root = Vec::new();
    for r in resources {
        assert_eq!(r["algorithm"], "sha256");
        let name = r["name"].as_str().unwrap();
        let (_, sha) = files.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(r["digest"], sha.as_str(), "{name}");
        root.extend(hex::decode(r["digest"].as_str().unwrap()).unwrap());
    }
    let subject = statement["subject"].as_array().unwrap();
    assert_eq!(subject.len(), 1);
    assert_eq!(subject[0]["name"], "out");
    assert_eq!(subject[0]["digest"]["sha256"], sha256_hex(&root));

    // decant's own verifier agrees, and a changed file is named.
    let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(&public).unwrap();
    let parsed = oms::verify(&fs::read(out.join("model.sig")).unwrap(), &vk).unwrap();
    assert!(oms::differences(&parsed, &files_of(&out)).is_empty());
    let mut config = fs::read(out.join("config.json")).unwrap();
    config.push(b' ');
    fs::write(out.join("config.json"), config).unwrap();
    assert_eq!(
        oms::differences(&parsed, &files_of(&out)),
        ["config.json has changed since it was signed"]
    );
}

/// A rerun into the same output directory keeps the earlier model.sig
/// unless --force is given, and the replaced one still matches.
#[test]
fn a_rerun_replaces_model_sig_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _, oms_pub, run) = convert_with_oms(tmp.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let before = fs::read(out.join("model.sig")).unwrap();
    let key = tmp.path().join("key");
    let oms_key = tmp.path().join("oms.key");
    let rerun = |extra: &[&str]| {
        let mut args = vec![
            "convert".to_string(),
            fixture("dirs/sharded").to_str().unwrap().to_string(),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--key".into(),
            key.to_str().unwrap().into(),
            "--oms-key".into(),
            oms_key.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        decant(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let run = rerun(&[]);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert!(
        run.stderr.contains("model.sig already exists"),
        "{}",
        run.stderr
    );
    assert_eq!(fs::read(out.join("model.sig")).unwrap(), before);
    let run = rerun(&["--force"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(&fs::read_to_string(&oms_pub).unwrap())
        .unwrap();
    let s = oms::verify(&fs::read(out.join("model.sig")).unwrap(), &vk).unwrap();
    assert!(oms::differences(&s, &files_of(&out)).is_empty());
}

/// decant verify and decant audit of a directory with a root model.sig
/// still pass, and say that model.sig was left out as a side file; a
/// planted sub/model.sig is a served file like any other, and fails.
#[test]
fn verify_and_audit_leave_out_a_root_model_sig_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, public, _, run) = convert_with_oms(tmp.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = verify_dir_run(&out, &public, &[]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    assert!(
        v.stdout
            .contains("left out: model.sig (OpenSSF model signature"),
        "{}",
        v.stdout
    );
    let a = decant(&[
        "audit",
        out.to_str().unwrap(),
        "--trusted-key",
        &public,
        "--json",
    ]);
    assert_eq!(a.code, 0, "{}\n{}", a.stdout, a.stderr);
    let audit: Value = serde_json::from_str(a.stdout.trim()).unwrap();
    assert_eq!(
        audit["audit"]["side_files"],
        serde_json::json!(["model.sig"])
    );
    assert!(audit["audit"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["path"] != "model.sig"));
    assert!(audit["audit"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "model_signature" && f["file"] == "model.sig"));

    // A file named like the signature anywhere but the root is served.
    fs::create_dir_all(out.join("sub")).unwrap();
    fs::write(out.join("sub/model.sig"), "planted").unwrap();
    let v = verify_dir_run(&out, &public, &[]);
    assert_eq!(v.code, 1);
    assert!(v.stdout.contains("sub/model.sig"), "{}", v.stdout);
    fs::remove_dir_all(out.join("sub")).unwrap();
    // A symlink named model.sig is not a regular file: a problem.
    fs::remove_file(out.join("model.sig")).unwrap();
    std::os::unix::fs::symlink("config.json", out.join("model.sig")).unwrap();
    let v = verify_dir_run(&out, &public, &[]);
    assert_eq!(v.code, 1);
    assert!(v.stdout.contains("model.sig is a symlink"), "{}", v.stdout);
}

/// attest --oms-key writes model.sig over every file and the manifest
/// itself; the bundle still verifies; an existing model.sig is replaced
/// only with --force.
#[test]
fn attest_writes_a_model_sig_that_covers_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let (oms_key, oms_pub) = keygen_p256(tmp.path());
    let dir = tmp.path().join("tiny-model");
    copy_tree(&fixture("oms/tiny-model"), &dir);
    let attest = |extra: &[&str]| {
        let mut args = vec![
            "attest",
            dir.to_str().unwrap(),
            "--key",
            &key,
            "--oms-key",
            &oms_key,
        ];
        args.extend_from_slice(extra);
        decant(&args)
    };
    let run = attest(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("model.sig"), "{}", run.stdout);
    let (bundle, statement, payload) = read_sig(&dir.join("model.sig"));
    assert!(signature_verifies(
        &bundle,
        &payload,
        &fs::read_to_string(&oms_pub).unwrap()
    ));
    let manifest = fs::read(dir.join("decant.bundle.intoto.jsonl")).unwrap();
    let resources = statement["predicate"]["resources"].as_array().unwrap();
    assert!(
        resources
            .iter()
            .any(|r| r["name"] == "decant.bundle.intoto.jsonl"
                && r["digest"] == sha256_hex(&manifest))
    );
    assert_eq!(resources.len(), 6);

    let manifest_path = dir.join("decant.bundle.intoto.jsonl");
    let verify = verify_run(&dir, &manifest_path, &public, &[]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("left out: model.sig"),
        "{}",
        verify.stdout
    );

    // The manifest elsewhere, model.sig still there: refused without --force.
    let other = tmp.path().join("m.jsonl");
    let sig_before = fs::read(dir.join("model.sig")).unwrap();
    let run = attest(&["-o", other.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert!(
        run.stderr.contains("model.sig already exists"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert!(!other.exists());
    assert_eq!(fs::read(dir.join("model.sig")).unwrap(), sig_before);

    let run = attest(&["--force"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_ne!(fs::read(dir.join("model.sig")).unwrap(), sig_before);
    let leftovers: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".decant-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The wrong kind of key is a usage error that says which key is for what:
/// the Ed25519 receipt key as --oms-key, the P-256 key as --key; and
/// --oms-key needs a directory and --key.
#[test]
fn wrong_key_types_are_usage_errors_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keygen(tmp.path());
    let (oms_key, _) = keygen_p256(tmp.path());
    let dir = tmp.path().join("tiny-model");
    copy_tree(&fixture("oms/tiny-model"), &dir);
    let d = dir.to_str().unwrap();

    let run = decant(&["attest", d, "--key", &key, "--oms-key", &key]);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert!(
        run.stderr
            .contains("is not an ECDSA P-256 private key (it is an Ed25519 key"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("decant keygen --type p256"),
        "{}",
        run.stderr
    );

    let run = decant(&["attest", d, "--key", &oms_key]);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert!(
        run.stderr.contains("is not an Ed25519 private key"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--oms-key"), "{}", run.stderr);

    let out = tmp.path().join("o");
    let run = convert_keyed(&fixture("dirs/sharded"), &out, &key, &["--oms-key", &key]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("keygen --type p256"), "{}", run.stderr);
    assert!(!out.exists(), "nothing is written");

    let run = convert_keyed(
        &fixture("convert/zip_p2.pt"),
        &tmp.path().join("m.safetensors"),
        &key,
        &["--oms-key", &oms_key],
    );
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert!(
        run.stderr
            .contains("--oms-key applies to model directories"),
        "{}",
        run.stderr
    );

    let run = decant(&[
        "convert",
        fixture("dirs/sharded").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--oms-key",
        &oms_key,
    ]);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert!(!out.exists());
    assert!(!dir.join("model.sig").exists());
}

/// model.sig signs only what the receipt vouches for: an output directory
/// holding another file is refused before any work, and nothing is
/// written.
#[test]
fn oms_key_refuses_an_output_directory_with_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keygen(tmp.path());
    let (oms_key, _) = keygen_p256(tmp.path());
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("stray.bin"), "x").unwrap();
    let run = convert_keyed(
        &fixture("dirs/sharded"),
        &out,
        &key,
        &["--oms-key", &oms_key],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("stray.bin"), "{}", run.stderr);
    let mut left: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["stray.bin"]);
}

/// A root model.sig in the source signs the source's files, so a
/// conversion does not copy it (it would not match the output); the output
/// directory still verifies.
#[test]
fn a_source_model_sig_is_not_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let src = tmp.path().join("src");
    copy_tree(&fixture("dirs/sharded"), &src);
    fs::write(src.join("model.sig"), "{}").unwrap();
    let out = tmp.path().join("out");
    let run = convert_keyed(&src, &out, &key, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert!(v["directory"]["left_alone"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "model.sig"));
    assert!(!out.join("model.sig").exists());
    assert_eq!(verify_dir_run(&out, &public, &[]).code, 0);
}

/// The external test vector: for the directory the real model_signing
/// 1.1.1 signed, decant's statement is the same (ignore_paths compared as
/// a set), and decant's verifier accepts model_signing's signature and
/// finds the directory matches it.
#[test]
fn statement_matches_model_signing_and_its_signature_verifies() {
    let vector = fs::read(fixture("oms/tiny-model.model.sig")).unwrap();
    let (_, theirs, _) = read_sig(&fixture("oms/tiny-model.model.sig"));

    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keygen(tmp.path());
    let (oms_key, _) = keygen_p256(tmp.path());
    let dir = tmp.path().join("tiny-model");
    copy_tree(&fixture("oms/tiny-model"), &dir);
    // The manifest outside the directory, so model.sig covers exactly the
    // files model_signing signed.
    let manifest = tmp.path().join("manifest.jsonl");
    let run = decant(&[
        "attest",
        dir.to_str().unwrap(),
        "--key",
        &key,
        "--oms-key",
        &oms_key,
        "-o",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, ours, _) = read_sig(&dir.join("model.sig"));
    let normalise = |mut v: Value| {
        let paths = v["predicate"]["serialization"]["ignore_paths"]
            .as_array_mut()
            .unwrap();
        paths.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        v
    };
    assert_eq!(normalise(ours), normalise(theirs));

    let public = fs::read_to_string(fixture("oms/tiny-model.pub")).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(&public).unwrap();
    let statement = oms::verify(&vector, &vk).unwrap();
    // Given to decant verify as a receipt, it is not one, and says why.
    let (_, public_ed) = keygen(&tmp.path().join("ed").tap_mkdir());
    let v = verify_run(
        &fixture("oms/tiny-model"),
        &fixture("oms/tiny-model.model.sig"),
        &public_ed,
        &[],
    );
    assert_eq!(v.code, 1);
    assert!(v.stdout.contains("is a sigstore bundle"), "{}", v.stdout);
    assert!(oms::differences(&statement, &files_of(&fixture("oms/tiny-model"))).is_empty());
    // And a flipped signature byte is rejected.
    let mut bundle: Value = serde_json::from_slice(&vector).unwrap();
    let mut sig = STANDARD
        .decode(
            bundle["dsseEnvelope"]["signatures"][0]["sig"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let n = sig.len();
    sig[n - 1] ^= 1;
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = STANDARD.encode(sig).into();
    assert!(oms::verify(bundle.to_string().as_bytes(), &vk).is_err());
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}
