//! The receipt: a signed statement of exactly what one conversion did.
//!
//! A receipt is an in-toto Statement v1 whose predicate is SLSA provenance
//! v1, signed as a DSSE envelope ([`crate::dsse`]) and stored as one JSON
//! line in `<OUT>.intoto.jsonl` (the in-toto bundle convention). Standard
//! formats so that a promotion gate can check it with tools other than
//! decant; every field is documented in docs/RECEIPTS.md.
//!
//! Because the guest has no clock and no randomness, a conversion is a pure
//! function of (converter, policy, source): the receipt names all three by
//! digest, which is what lets `decant verify --reproduce` re-run it.

use crate::dsse::{self, Envelope};
use crate::error::{Error, Kind, Result};
use crate::output::Pending;
use crate::policy::Policy;
use decant_abi::Report;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a decant conversion is; its parameters are documented in
/// docs/RECEIPTS.md.
pub const BUILD_TYPE: &str = "https://decant.dev/conversion/v1";
/// decant converting on the user's machine with a local key. A different
/// trust model (say, a hosted converter) would get a different id, since SLSA
/// consumers accept specific signer-builder pairs.
pub const BUILDER_ID: &str = "https://decant.dev/builder/v1";
/// The wasmtime the sandbox runs on; kept equal to the exact pin in
/// Cargo.toml (a test checks).
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Sandbox runtime name in `internalParameters`.
pub const RUNTIME: &str = "wasmtime";
/// The sandbox's isolation, as DESIGN.md states it.
pub const ISOLATION: &str = "no network, no env, no filesystem; source read-only, one output";
/// Name of the converter in `resolvedDependencies`.
pub const CONVERTER_NAME: &str = "decant_guest.wasm";
/// Name of the guest report in `byproducts`.
pub const REPORT_NAME: &str = "decant-report.json";
/// `annotations.role` of the source dependency.
pub const ROLE_SOURCE: &str = "source";
/// `annotations.role` of the converter dependency.
pub const ROLE_CONVERTER: &str = "converter";
/// Suffix of the default receipt path.
pub const RECEIPT_SUFFIX: &str = ".intoto.jsonl";

/// Everything a receipt records about one conversion.
#[derive(Debug, Clone)]
pub struct ReceiptInput<'a> {
    /// Each output file: (file name, sha256 hex).
    pub subjects: Vec<(String, String)>,
    /// What was converted: one file, or each file of a model directory
    /// (names relative to the directory: they say what a file was, not
    /// where it was).
    pub sources: Vec<SourceFile>,
    /// `externalParameters.source`: the source file's name, or the model
    /// directory's.
    pub source_param: String,
    /// sha256 of the guest wasm that converted ([`crate::guest::sha256`]).
    pub converter_sha256: String,
    pub policy: &'a Policy,
    pub strict: bool,
    /// The guest's report for each converted file, by name: one entry named
    /// [`REPORT_NAME`] for a single file, `<output>.report.json` per file for
    /// a directory.
    pub reports: Vec<(String, &'a Report)>,
    pub started: SystemTime,
    pub finished: SystemTime,
}

/// RFC 3339 UTC with `Z`, whole seconds. Clamped to what RFC 3339 can say,
/// because humantime panics outside years 1970..=9999 and a receipt must
/// not fail over a badly set clock.
pub fn timestamp(t: SystemTime) -> String {
    const LAST: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .min(LAST);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The guest report as embedded in the receipt (compact JSON, keys sorted)
/// and its sha256, so a verifier can recompute the digest from the
/// receipt's own `annotations`.
fn report_json(report: &Report) -> (Value, String) {
    // Through Value: serde_json's map is a BTreeMap, so keys come out sorted,
    // the same order the statement itself is serialised in.
    let value = serde_json::to_value(report).unwrap_or(Value::Null);
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    (value, hex::encode(Sha256::digest(&bytes)))
}

/// The in-toto Statement for one conversion.
/// One source file of a conversion.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

pub fn statement(input: &ReceiptInput<'_>) -> Value {
    let subject: Vec<Value> = input
        .subjects
        .iter()
        .map(|(name, sha256)| json!({"name": name, "digest": {"sha256": sha256}}))
        .collect();
    let mut dependencies: Vec<Value> = input
        .sources
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "digest": {"sha256": s.sha256},
                // ResourceDescriptor has no size field.
                "annotations": {"role": ROLE_SOURCE, "size": s.bytes},
            })
        })
        .collect();
    dependencies.push(json!({
        "name": CONVERTER_NAME,
        "digest": {"sha256": input.converter_sha256},
        "annotations": {"role": ROLE_CONVERTER},
    }));
    let byproducts: Vec<Value> = input
        .reports
        .iter()
        .map(|(name, report)| {
            let (report, report_sha256) = report_json(report);
            json!({
                "name": name,
                "mediaType": "application/json",
                "digest": {"sha256": report_sha256},
                // Too big for `content` (SHOULD be < 1 KB) with many dropped
                // entries, and readable as plain JSON here.
                "annotations": report,
            })
        })
        .collect();
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                // SLSA: small, user-controlled, string values.
                "externalParameters": {
                    "source": input.source_param,
                    "strict": input.strict.to_string(),
                    "policy": input.policy.origin,
                },
                "internalParameters": {
                    "sandbox": {
                        "runtime": RUNTIME,
                        "runtimeVersion": WASMTIME_VERSION,
                        "isolation": ISOLATION,
                        "policySha256": input.policy.sha256,
                        "limits": serde_json::to_value(&input.policy.limits)
                            .unwrap_or(Value::Null),
                    }
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {
                        "decant": env!("CARGO_PKG_VERSION"),
                        "wasmtime": WASMTIME_VERSION,
                    },
                },
                "metadata": {
                    "startedOn": timestamp(input.started),
                    "finishedOn": timestamp(input.finished),
                },
                "byproducts": byproducts,
            },
        },
    })
}

/// Signs a statement: the DSSE payload is its compact JSON.
pub fn sign_statement(statement: &Value, key: &SigningKey) -> Envelope {
    let payload = serde_json::to_vec(statement).expect("a JSON value always serialises");
    dsse::sign(&payload, key)
}

/// `<OUT>.intoto.jsonl`, appended to the full file name
/// (`model.safetensors.intoto.jsonl`).
pub fn default_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(RECEIPT_SUFFIX);
    PathBuf::from(name)
}

/// The receipt file's bytes: one JSON line (an in-toto bundle with one
/// envelope; also a valid JSON document).
pub fn to_line(env: &Envelope) -> String {
    let mut line = serde_json::to_string(env).expect("an envelope always serialises");
    line.push('\n');
    line
}

/// Writes the receipt to a temp file beside `path`, not yet published, so a
/// caller can publish it together with the output (or drop it, which deletes
/// it).
pub fn stage(path: &Path, env: &Envelope) -> Result<Pending> {
    write_staged(Pending::new(path)?, path, env)
}

/// [`stage`] for a receipt named `name` in the directory `dir`.
pub fn stage_in_dir(
    dir: &cap_std::fs::Dir,
    name: &str,
    shown: &Path,
    env: &Envelope,
) -> Result<Pending> {
    write_staged(Pending::in_dir(dir, name, shown)?, shown, env)
}

fn write_staged(pending: Pending, path: &Path, env: &Envelope) -> Result<Pending> {
    // Every receipt decant writes must be one `decant verify` reads: refuse
    // here, before any output is published, rather than sign a receipt the
    // gate would reject as too large.
    let line = to_line(env);
    if line.len() > crate::verify::MAX_RECEIPT_BYTES {
        return Err(Error::new(
            Kind::Limit,
            format!(
                "the receipt for {} would be {} bytes, more than the {} decant verify reads",
                path.display(),
                line.len(),
                crate::verify::MAX_RECEIPT_BYTES
            ),
            "the conversion reports too many or too long dropped or tied names; convert the files in smaller groups, or rename the entries",
        ));
    }
    let mut file = pending.file()?;
    file.write_all(line.as_bytes()).map_err(|e| {
        Error::io(
            format!("cannot write the receipt for {}", path.display()),
            &e,
        )
    })?;
    Ok(pending)
}

/// Publishes a staged receipt; without `force` an existing file is never
/// replaced (atomically: the rename itself refuses).
pub fn publish(pending: Pending, force: bool) -> Result<()> {
    pending.publish(force).map_err(|mut e| {
        if e.kind == Kind::Usage {
            // output.rs's hint names -o, which chooses OUT, not the receipt.
            e.hint = "pass --force to replace it, or choose another path with --receipt".into();
        }
        e
    })
}

/// Writes the receipt atomically: temp file in the same directory, synced,
/// renamed into place; never a partial receipt.
pub fn write(path: &Path, env: &Envelope, force: bool) -> Result<()> {
    publish(stage(path, env)?, force)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(crate) fn sample_report() -> Report {
        Report {
            format: "zip".into(),
            pickle_protocol: 2,
            byteorder: "little".into(),
            tensors: 3,
            output_bytes: 1234,
            dropped: vec![decant_abi::Dropped {
                name: "epoch".into(),
                kind: "int".into(),
            }],
            dropped_total: 1,
            ignored: vec![],
            aliases: BTreeMap::from([("lm_head.weight".into(), "embed.weight".into())]),
            globals: vec!["collections.OrderedDict".into()],
            tensor_list: vec![],
        }
    }

    pub(crate) fn sample_statement(
        artifact_sha256: &str,
        source_sha256: &str,
        converter_sha256: &str,
        policy: &Policy,
    ) -> Value {
        let report = sample_report();
        statement(&ReceiptInput {
            subjects: vec![("model.safetensors".into(), artifact_sha256.into())],
            sources: vec![SourceFile {
                name: "pytorch_model.bin".into(),
                sha256: source_sha256.into(),
                bytes: 4096,
            }],
            source_param: "pytorch_model.bin".into(),
            converter_sha256: converter_sha256.into(),
            policy,
            strict: false,
            reports: vec![(REPORT_NAME.into(), &report)],
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            finished: UNIX_EPOCH + Duration::from_secs(1_700_000_002),
        })
    }

    #[test]
    fn statement_layout() {
        let policy = Policy::default_policy();
        let s = sample_statement(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        assert_eq!(s["_type"], STATEMENT_TYPE);
        assert_eq!(s["predicateType"], PREDICATE_TYPE);
        assert_eq!(s["subject"][0]["name"], "model.safetensors");
        assert_eq!(s["subject"][0]["digest"]["sha256"], "a".repeat(64));
        let bd = &s["predicate"]["buildDefinition"];
        assert_eq!(bd["buildType"], BUILD_TYPE);
        assert_eq!(
            bd["externalParameters"],
            json!({"source": "pytorch_model.bin", "strict": "false", "policy": "default"})
        );
        let sandbox = &bd["internalParameters"]["sandbox"];
        assert_eq!(sandbox["runtime"], "wasmtime");
        assert_eq!(sandbox["runtimeVersion"], WASMTIME_VERSION);
        assert_eq!(sandbox["isolation"], ISOLATION);
        assert_eq!(sandbox["policySha256"], policy.sha256);
        assert_eq!(
            sandbox["limits"]["memory_bytes"],
            policy.limits.memory_bytes
        );
        let deps = bd["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps[0]["name"], "pytorch_model.bin");
        assert_eq!(deps[0]["digest"]["sha256"], "b".repeat(64));
        assert_eq!(
            deps[0]["annotations"],
            json!({"role": "source", "size": 4096})
        );
        assert_eq!(deps[1]["name"], CONVERTER_NAME);
        assert_eq!(deps[1]["digest"]["sha256"], "c".repeat(64));
        assert_eq!(deps[1]["annotations"]["role"], "converter");

        let rd = &s["predicate"]["runDetails"];
        assert_eq!(rd["builder"]["id"], BUILDER_ID);
        assert_eq!(
            rd["builder"]["version"]["decant"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(rd["builder"]["version"]["wasmtime"], WASMTIME_VERSION);
        assert_eq!(rd["metadata"]["startedOn"], "2023-11-14T22:13:20Z");
        assert_eq!(rd["metadata"]["finishedOn"], "2023-11-14T22:13:22Z");
        let bp = &rd["byproducts"][0];
        assert_eq!(bp["name"], REPORT_NAME);
        assert_eq!(bp["mediaType"], "application/json");
        assert_eq!(bp["annotations"]["format"], "zip");
        assert_eq!(
            bp["annotations"]["aliases"]["lm_head.weight"],
            "embed.weight"
        );
        // The digest is recomputable from the embedded object.
        let embedded = serde_json::to_vec(&bp["annotations"]).unwrap();
        assert_eq!(
            bp["digest"]["sha256"],
            hex::encode(Sha256::digest(&embedded))
        );

        // Compact JSON with sorted keys: deterministic bytes for the same
        // conversion.
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicate":"#));
        assert!(!text.contains('\n'));
        assert_eq!(
            text,
            serde_json::to_string(&sample_statement(
                &"a".repeat(64),
                &"b".repeat(64),
                &"c".repeat(64),
                &policy
            ))
            .unwrap()
        );
    }

    #[test]
    fn wasmtime_version_matches_the_cargo_pin() {
        let manifest = include_str!("../Cargo.toml");
        assert!(
            manifest.contains(&format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"")),
            "update receipt::WASMTIME_VERSION with the wasmtime pin"
        );
    }

    #[test]
    fn timestamps_never_panic() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            timestamp(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(u64::MAX / 4)),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn default_path_appends() {
        assert_eq!(
            default_path(Path::new("out/model.safetensors")),
            Path::new("out/model.safetensors.intoto.jsonl")
        );
    }

    #[test]
    fn signed_receipt_round_trips_and_is_never_overwritten() {
        let policy = Policy::default_policy();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let s = sample_statement(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        let env = sign_statement(&s, &key);
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(&dir.path().join("model.safetensors"));
        write(&path, &env, false).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(text.lines().count(), 1);
        let parsed: Envelope = serde_json::from_str(text.trim_end()).unwrap();
        let v = dsse::verify(&parsed, &[key.verifying_key()]).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&v.payload).unwrap(), s);

        let e = write(&path, &env, false).unwrap_err();
        assert_eq!(e.kind, Kind::Usage);
        assert!(e.hint.contains("--receipt"), "{}", e.hint);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        write(&path, &env, true).unwrap();

        // Nothing but the receipt: no temp files left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A staged receipt that is dropped leaves nothing.
        let other = dir.path().join("other.intoto.jsonl");
        drop(stage(&other, &env).unwrap());
        assert!(!other.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Issue 9: `convert --key` could sign a receipt that `decant verify`
    /// then refused as too large (DSSE base64 grows a 13 MB report past the
    /// 16 MiB verify reads). Such a receipt is refused before anything is
    /// published, as a limit, and leaves no file.
    #[test]
    fn a_receipt_verify_would_refuse_as_too_large_is_never_written() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.intoto.jsonl");
        let big = json!({"dropped": "n".repeat(13 << 20)});
        let Err(e) = stage(&path, &sign_statement(&big, &key)) else {
            panic!("an oversized receipt was staged");
        };
        assert_eq!(e.kind, Kind::Limit, "{e:?}");
        assert!(
            e.message
                .contains("more than the 16777216 decant verify reads"),
            "{e:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Just under the limit is written, and verify reads it.
        let fits = json!({"dropped": "n".repeat(11 << 20)});
        let staged = stage(&path, &sign_statement(&fits, &key)).unwrap();
        publish(staged, false).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= crate::verify::MAX_RECEIPT_BYTES as u64);
    }

    fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed")
    }

    /// The commands docs/RECEIPTS.md gives: openssl verifies a decant
    /// receipt's signature over the PAE it rebuilds itself, and decant
    /// verifies a signature openssl made with a decant key.
    #[test]
    fn openssl_verifies_receipts_and_decant_verifies_openssl() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let vk = crate::keys::generate(&d.join("k.pem")).unwrap();
        let key = crate::keys::load_signing_key(&d.join("k.pem")).unwrap();
        let policy = Policy::default_policy();
        let s = sample_statement(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        let path = d.join("r.intoto.jsonl");
        write(&path, &sign_statement(&s, &key), false).unwrap();

        let env: Envelope = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let body = STANDARD.decode(&env.payload).unwrap();
        let mut pae =
            format!("DSSEv1 28 application/vnd.in-toto+json {} ", body.len()).into_bytes();
        pae.extend_from_slice(&body);
        std::fs::write(d.join("pae"), &pae).unwrap();
        std::fs::write(
            d.join("sig"),
            STANDARD.decode(&env.signatures[0].sig).unwrap(),
        )
        .unwrap();
        let out = openssl(
            d,
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "k.pem.pub",
                "-rawin",
                "-in",
                "pae",
                "-sigfile",
                "sig",
            ],
        );
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let out = openssl(
            d,
            &[
                "pkeyutl", "-sign", "-inkey", "k.pem", "-rawin", "-in", "pae", "-out", "sig2",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sig2 = std::fs::read(d.join("sig2")).unwrap();
        let env2 = Envelope {
            signatures: vec![dsse::Signature {
                keyid: String::new(),
                sig: STANDARD.encode(&sig2),
            }],
            ..env
        };
        assert_eq!(dsse::verify(&env2, &[vk]).unwrap().payload, body);
    }
}
