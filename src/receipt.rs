//! The receipt: a signed statement of exactly what one conversion did.
//!
//! A receipt is an in-toto Statement v1 whose predicate is SLSA provenance
//! v1, signed as a DSSE envelope ([`crate::trust::dsse`]) and stored as one JSON
//! line in `<OUT>.intoto.jsonl` (the in-toto bundle convention). Standard
//! formats so that a promotion gate can check it with tools other than
//! decant; every field is documented in docs/RECEIPTS.md.
//!
//! Because the guest has no clock and no randomness, a conversion is a pure
//! function of (converter, policy, source): the receipt names all three by
//! digest, which is what lets `decant verify --reproduce` re-run it.

use crate::error::{Error, Kind, Result};
use crate::output::Pending;
use crate::policy::Policy;
use crate::trust::dsse::{self, Envelope, MAX_RECEIPT_BYTES};
use crate::trust::statement::{
    sorted_json, BuildDefinition, BuildMetadata, Builder, BuilderVersion, Byproduct, Dependency,
    DependencyRole, DigestSet, ExternalParameters, InternalParameters, Provenance, ReceiptReport,
    RevisionPurl, RunDetails, SandboxParameters, Sha256Hex, Statement, Subject, SubjectRole,
    BUILDER_ID, BUILD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE,
};
use ed25519_dalek::SigningKey;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wasmtime the sandbox runs on; kept equal to the exact pin in
/// Cargo.toml (a test checks).
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Sandbox runtime name in `internalParameters`.
pub const RUNTIME: &str = "wasmtime";
/// The sandbox's isolation, as the threat model (SECURITY.md) states it.
pub const ISOLATION: &str = "no network, no env, no filesystem; source read-only, one output";
/// Name of the converter in `resolvedDependencies`.
pub const CONVERTER_NAME: &str = "decant_guest.wasm";
/// Name of the guest report in `byproducts` (single-file receipts).
pub const REPORT_NAME: &str = "decant-report.json";
/// Suffix of the default receipt path.
pub const RECEIPT_SUFFIX: &str = ".intoto.jsonl";

/// Everything a receipt records about one conversion.
#[derive(Debug, Clone)]
pub struct ReceiptInput<'a> {
    /// Each output file: name (relative to the output directory) and sha256.
    pub subjects: Vec<(String, Sha256Hex)>,
    /// What was converted: one file, or each file of a model directory
    /// (names relative to the directory: they say what a file was, not
    /// where it was).
    pub sources: Vec<SourceFile>,
    /// Files of a model directory copied unchanged: (name, sha256).
    pub copied: Vec<(String, Sha256Hex)>,
    /// Files of a model directory deliberately not converted: (name,
    /// sha256, reason).
    pub excluded: Vec<(String, Sha256Hex, String)>,
    /// `externalParameters.source`: the source file's name, or the model
    /// directory's.
    pub source_param: String,
    /// The repository revision every source and excluded file was read
    /// from (a Hugging Face cache snapshot), as each one's `uri`.
    pub origin: Option<RevisionPurl>,
    /// sha256 of the guest wasm that converted ([`crate::guest::sha256`]).
    pub converter_sha256: Sha256Hex,
    pub policy: &'a Policy,
    pub strict: bool,
    /// The report for each converted file, by name: one entry named
    /// [`REPORT_NAME`] for a single file, `<output>.report.json` per file for
    /// a directory.
    pub reports: Vec<(String, ReceiptReport)>,
    pub started: SystemTime,
    pub finished: SystemTime,
    /// `--shard I/N`: the part of a batch plan this receipt covers.
    pub shard: Option<crate::trust::statement::ShardParameters>,
}

/// One source file of a conversion.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub sha256: Sha256Hex,
    pub bytes: u64,
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

fn digest(sha256: &Sha256Hex) -> DigestSet {
    DigestSet {
        sha256: sha256.clone(),
    }
}

/// The statement for one conversion.
pub fn statement(input: &ReceiptInput<'_>) -> Statement {
    let mut dependencies: Vec<Dependency> = input
        .sources
        .iter()
        .map(|s| Dependency {
            name: s.name.clone(),
            uri: input.origin.clone(),
            digest: digest(&s.sha256),
            annotations: DependencyRole::Source { size: s.bytes },
        })
        .collect();
    dependencies.extend(
        input
            .excluded
            .iter()
            .map(|(name, sha256, reason)| Dependency {
                name: name.clone(),
                uri: input.origin.clone(),
                digest: digest(sha256),
                annotations: DependencyRole::Excluded {
                    reason: reason.clone(),
                },
            }),
    );
    dependencies.push(Dependency {
        name: CONVERTER_NAME.into(),
        uri: None,
        digest: digest(&input.converter_sha256),
        annotations: DependencyRole::Converter,
    });
    Statement {
        type_: STATEMENT_TYPE.into(),
        subject: input
            .subjects
            .iter()
            .map(|(name, sha256)| Subject {
                name: name.clone(),
                digest: digest(sha256),
                annotations: None,
            })
            .chain(input.copied.iter().map(|(name, sha256)| Subject {
                name: name.clone(),
                digest: digest(sha256),
                annotations: Some(SubjectRole::Copied),
            }))
            .collect(),
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters: ExternalParameters {
                    source: input.source_param.clone(),
                    strict: input.strict,
                    policy: input.policy.origin.clone(),
                    shard: input.shard.clone(),
                },
                internal_parameters: InternalParameters {
                    sandbox: SandboxParameters {
                        runtime: RUNTIME.into(),
                        runtime_version: WASMTIME_VERSION.into(),
                        isolation: ISOLATION.into(),
                        policy_sha256: input.policy.sha256.clone(),
                        limits: input.policy.limits.clone(),
                    },
                },
                resolved_dependencies: dependencies,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: BUILDER_ID.into(),
                    version: BuilderVersion {
                        decant: env!("CARGO_PKG_VERSION").into(),
                        wasmtime: WASMTIME_VERSION.into(),
                    },
                },
                metadata: BuildMetadata {
                    started_on: timestamp(input.started),
                    finished_on: timestamp(input.finished),
                },
                byproducts: input
                    .reports
                    .iter()
                    .map(|(name, report)| Byproduct::report(name.clone(), report.clone()))
                    .collect(),
            },
        },
    }
}

/// Signs a statement: the DSSE payload is its compact JSON with keys sorted
/// (the same bytes for the same conversion).
pub fn sign_statement(statement: &Statement, key: &SigningKey) -> Envelope {
    dsse::sign(&sorted_json(statement), key)
}

/// The signed receipt line for `input`. When the report listings would make
/// it larger than [`MAX_RECEIPT_BYTES`], they are cut short (their totals
/// stay), the room left shared among the reports, so that every receipt
/// decant writes is one `decant verify` reads.
pub fn signed_line(input: &ReceiptInput<'_>, key: &SigningKey, shown: &Path) -> Result<String> {
    signed_line_within(input, key, shown, MAX_RECEIPT_BYTES)
}

/// [`signed_line`] for a limit of `max` bytes (tests use a small one).
fn signed_line_within(
    input: &ReceiptInput<'_>,
    key: &SigningKey,
    shown: &Path,
    max: usize,
) -> Result<String> {
    let sign = |input: &ReceiptInput<'_>| to_line(&sign_statement(&statement(input), key));
    let line = sign(input);
    if line.len() <= max {
        return Ok(line);
    }
    let cut_to = |budget: usize| {
        let mut cut = input.clone();
        for (_, r) in &mut cut.reports {
            r.cut_to(budget);
        }
        cut
    };
    let bare = sign(&cut_to(0)).len();
    // A name byte costs at most 8 in the line: 6 for a JSON escape, times
    // 4/3 for base64.
    let mut budget = max.saturating_sub(bare) / input.reports.len().max(1) / 8;
    loop {
        let line = sign(&cut_to(budget));
        if line.len() <= max {
            return Ok(line);
        }
        if budget == 0 {
            return Err(too_large(shown, line.len(), max));
        }
        budget /= 2;
    }
}

fn too_large(shown: &Path, len: usize, max: usize) -> Error {
    Error::new(
        Kind::Limit,
        format!(
            "the receipt for {} would be {len} bytes, more than the {max} decant verify reads",
            shown.display(),
        ),
        "convert the files in smaller groups",
    )
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
    // An envelope is three strings and a list of string pairs: serialising
    // it cannot fail.
    let mut line = serde_json::to_string(env).unwrap_or_default();
    line.push('\n');
    line
}

/// Writes a receipt line to a temp file beside `path`, not yet published,
/// so a caller can publish it together with the output (or drop it, which
/// deletes it).
pub fn stage(path: &Path, line: &str) -> Result<Pending> {
    write_staged(Pending::new(path)?.for_receipt(), path, line)
}

/// [`stage`] for a receipt named `name` in the directory `dir`.
pub fn stage_in_dir(
    dir: &std::sync::Arc<cap_std::fs::Dir>,
    name: &str,
    shown: &Path,
    line: &str,
) -> Result<Pending> {
    write_staged(
        Pending::in_dir(dir, name, shown)?.for_receipt(),
        shown,
        line,
    )
}

fn write_staged(pending: Pending, path: &Path, line: &str) -> Result<Pending> {
    // signed_line makes every receipt fit; this is the last guard that
    // nothing decant verify would refuse unread is ever written.
    if line.len() > MAX_RECEIPT_BYTES {
        return Err(too_large(path, line.len(), MAX_RECEIPT_BYTES));
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

/// A signed receipt staged beside where it goes, to be published after the
/// files it covers ([`publish_all`]).
pub struct StagedReceipt {
    pending: Pending,
    path: PathBuf,
    /// The receipt file's sha256 (what a BOM references it by; a model
    /// signature covers the receipt too).
    sha256: Sha256Hex,
    /// Whether an existing receipt may be replaced.
    replace: bool,
}

impl StagedReceipt {
    /// Signs `input` and stages the receipt for `path`.
    pub fn stage(
        input: &ReceiptInput<'_>,
        key: &SigningKey,
        path: &Path,
        replace: bool,
    ) -> Result<Self> {
        let line = signed_line(input, key, path)?;
        Ok(StagedReceipt {
            pending: stage(path, &line)?,
            path: path.to_path_buf(),
            sha256: Sha256Hex::of(line.as_bytes()),
            replace,
        })
    }

    /// Signs `input` and stages the receipt `name` in `dir`.
    pub fn stage_in_dir(
        input: &ReceiptInput<'_>,
        key: &SigningKey,
        dir: &std::sync::Arc<cap_std::fs::Dir>,
        name: &str,
        shown: &Path,
        replace: bool,
    ) -> Result<Self> {
        let line = signed_line(input, key, shown)?;
        Ok(StagedReceipt {
            pending: stage_in_dir(dir, name, shown, &line)?,
            path: shown.to_path_buf(),
            sha256: Sha256Hex::of(line.as_bytes()),
            replace,
        })
    }

    /// The sha256 of the receipt's bytes.
    pub fn sha256(&self) -> &Sha256Hex {
        &self.sha256
    }
}

/// Publishes a run: every output first, then the receipt that covers them,
/// then a BOM that references the receipt (`bom`, replaced only with
/// `force`): the one order file and directory mode share. Everything is
/// staged before this is called, so a full disk or a refused receipt name
/// stops the run before any output appears. Returns where the receipt went.
pub fn publish_all(
    outputs: Vec<Pending>,
    force: bool,
    receipt: Option<StagedReceipt>,
    bom: Option<Pending>,
) -> Result<Option<PathBuf>> {
    publish_all_then(
        outputs,
        force,
        receipt,
        bom.map(|b| (b, force)).into_iter().collect(),
    )
}

/// [`publish_all`], then `last` in order (a model signature that covers the
/// receipt too, a BOM that references it; each with whether it may replace
/// a file), in the same all-or-nothing step.
pub fn publish_all_then(
    outputs: Vec<Pending>,
    force: bool,
    receipt: Option<StagedReceipt>,
    last: Vec<(Pending, bool)>,
) -> Result<Option<PathBuf>> {
    let mut items: Vec<(Pending, bool)> = outputs.into_iter().map(|p| (p, force)).collect();
    let path = match receipt {
        Some(r) => {
            items.push((r.pending, r.replace));
            Some(r.path)
        }
        None => None,
    };
    items.extend(last);
    crate::output::publish_together(items)?;
    Ok(path)
}

/// Writes a receipt line atomically: temp file in the same directory,
/// synced, renamed into place; never a partial receipt.
pub fn write(path: &Path, line: &str, force: bool) -> Result<()> {
    stage(path, line)?.publish(force)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trust::dsse;
    use decant_abi::Report;
    use serde_json::json;
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    pub(crate) fn sha(s: &str) -> Sha256Hex {
        Sha256Hex::parse(s).unwrap()
    }

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
    ) -> Statement {
        statement(&sample_input(
            artifact_sha256,
            source_sha256,
            converter_sha256,
            policy,
        ))
    }

    pub(crate) fn sample_input<'a>(
        artifact_sha256: &str,
        source_sha256: &str,
        converter_sha256: &str,
        policy: &'a Policy,
    ) -> ReceiptInput<'a> {
        ReceiptInput {
            subjects: vec![("model.safetensors".into(), sha(artifact_sha256))],
            sources: vec![SourceFile {
                name: "pytorch_model.bin".into(),
                sha256: sha(source_sha256),
                bytes: 4096,
            }],
            copied: vec![],
            excluded: vec![],
            source_param: "pytorch_model.bin".into(),
            origin: None,
            converter_sha256: sha(converter_sha256),
            policy,
            strict: false,
            reports: vec![(
                REPORT_NAME.into(),
                ReceiptReport::from_report(&sample_report()),
            )],
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            finished: UNIX_EPOCH + Duration::from_secs(1_700_000_002),
            shard: None,
        }
    }

    #[test]
    fn statement_layout() {
        let policy = Policy::default_policy().unwrap();
        let typed = sample_statement(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        // The wire format, pinned: field names as docs/RECEIPTS.md gives them.
        let s = serde_json::to_value(&typed).unwrap();
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
        assert_eq!(sandbox["policySha256"], policy.sha256.as_str());
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
        // conversion; and it reads back as the same typed statement.
        let text = String::from_utf8(sorted_json(&typed)).unwrap();
        assert_eq!(serde_json::from_str::<Statement>(&text).unwrap(), typed);
        assert!(text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicate":"#));
        assert!(!text.contains('\n'));
        assert_eq!(
            text.as_bytes(),
            sorted_json(&sample_statement(
                &"a".repeat(64),
                &"b".repeat(64),
                &"c".repeat(64),
                &policy
            ))
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
        let policy = Policy::default_policy().unwrap();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let s = sample_statement(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        let line = to_line(&sign_statement(&s, &key));
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(&dir.path().join("model.safetensors"));
        write(&path, &line, false).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(text.lines().count(), 1);
        let parsed: Envelope = serde_json::from_str(text.trim_end()).unwrap();
        let v = dsse::verify(&parsed, &[key.verifying_key()]).unwrap();
        assert_eq!(serde_json::from_slice::<Statement>(&v.payload).unwrap(), s);

        let e = write(&path, &line, false).unwrap_err();
        assert_eq!(e.kind, Kind::Usage);
        assert!(e.hint.contains("--receipt"), "{}", e.hint);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        write(&path, &line, true).unwrap();

        // Nothing but the receipt: no temp files left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A staged receipt that is dropped leaves nothing.
        let other = dir.path().join("other.intoto.jsonl");
        drop(stage(&other, &line).unwrap());
        assert!(!other.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Issue 9: `convert --key` could sign a receipt that `decant verify`
    /// then refused as too large (many long dropped-entry names grow the
    /// reports, and DSSE base64 grows them by a third). Now the listings are
    /// cut to fit, with their totals kept, and the receipt authenticates.
    #[test]
    fn long_report_listings_are_cut_so_the_receipt_verifies() {
        // The cutting is the same for any limit; a small one keeps the test
        // fast (receipts at the real limit take seconds to sign in debug).
        const LIMIT: usize = 256 << 10;
        let policy = Policy::default_policy().unwrap();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let mut input = sample_input(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        let mut report = sample_report();
        report.dropped = (0..1000)
            .map(|i| decant_abi::Dropped {
                name: format!("{i}{}", "\u{1}".repeat(200)),
                kind: "str".into(),
            })
            .collect();
        report.dropped_total = 5000;
        report.aliases = (0..300)
            .map(|i| (format!("{i}{}", "t".repeat(1000)), "kept".to_string()))
            .collect();
        input.reports = (0..3)
            .map(|i| {
                (
                    format!("m{i}.safetensors.report.json"),
                    ReceiptReport::from_report(&report),
                )
            })
            .collect();
        let full = to_line(&sign_statement(&statement(&input), &key));
        assert!(full.len() > LIMIT, "the test must start too large");

        let line = signed_line_within(&input, &key, Path::new("r"), LIMIT).unwrap();
        assert!(line.len() <= LIMIT, "{}", line.len());
        let keys = [key.verifying_key()];
        let converters = [sha(&"c".repeat(64))];
        let verified = crate::trust::verify::authenticate(
            line.as_bytes(),
            crate::trust::verify::Trust {
                keys: &keys,
                converters: &converters,
            },
        )
        .expect("the cut receipt authenticates");
        for b in &verified.predicate.run_details.byproducts {
            let r = &b.annotations;
            assert!(r.is_cut());
            assert!(
                r.dropped.len() < 1000 && !r.dropped.is_empty(),
                "{}",
                r.dropped.len()
            );
            assert_eq!(r.dropped_total, 5000);
            assert_eq!(r.aliases_total, 300);
            // What is listed is the start of what the guest reported.
            assert_eq!(r.dropped[0], report.dropped[0]);
        }

        // A receipt that fits is signed as it is.
        let small = sample_input(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        assert_eq!(
            signed_line(&small, &key, Path::new("r")).unwrap(),
            to_line(&sign_statement(&statement(&small), &key))
        );
        // Too many files to fit even without listings: refused as a limit.
        let e = signed_line_within(&input, &key, Path::new("r"), 2000).unwrap_err();
        assert_eq!(e.kind, Kind::Limit);
        assert!(
            e.message.contains("more than the 2000 decant verify reads"),
            "{e:?}"
        );
    }

    /// The last guard: a line over the limit is never staged, as a limit,
    /// and leaves no file.
    #[test]
    fn a_receipt_verify_would_refuse_as_too_large_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.intoto.jsonl");
        let Err(e) = stage(&path, &"n".repeat(MAX_RECEIPT_BYTES + 1)) else {
            panic!("an oversized receipt was staged");
        };
        assert_eq!(e.kind, Kind::Limit, "{e:?}");
        assert!(
            e.message
                .contains("more than the 16777216 decant verify reads"),
            "{e:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let staged = stage(&path, &"n".repeat(MAX_RECEIPT_BYTES)).unwrap();
        staged.publish(false).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            MAX_RECEIPT_BYTES as u64
        );
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
        let vk = crate::trust::keys::generate(&d.join("k.pem")).unwrap();
        let key = crate::trust::keys::load_signing_key(&d.join("k.pem")).unwrap();
        let policy = Policy::default_policy().unwrap();
        let s = sample_statement(&"a".repeat(64), &"b".repeat(64), &"c".repeat(64), &policy);
        let path = d.join("r.intoto.jsonl");
        write(&path, &to_line(&sign_statement(&s, &key)), false).unwrap();

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
