//! `decant attest DIR`: the audit of a bundle, signed as a manifest
//! ([`crate::trust::manifest`]) that binds the exact files to what they
//! are promoted with.
//!
//! A binding that names a revision (its name ends in `revision`, or its
//! value is a reference `...@REV`) must name one that cannot move: a
//! commit id or a digest. `main`, `latest` or `v2` is refused unless the
//! binding is named in `--allow-mutable`, and is then recorded as mutable,
//! which `decant verify --require` reports as a failure: an approval that
//! names a moving target does not approve these bytes.
//!
//! With `--oms-key`, `DIR/model.sig` is written too: an OpenSSF model
//! signature ([`crate::trust::oms`]) over every file the manifest covers
//! and the manifest itself (when it is inside DIR), published together
//! with the manifest, after it.

use super::audit::{self, Audit};
use super::configs::is_immutable_revision;
use super::findings::{FindingKind, Severity};
use crate::error::{Error, Kind, Result};
use crate::sandbox::Sandbox;
use crate::trust::manifest::{
    self, Attester, Binding, BundlePredicate, BundleStatement, BundleSubject, RecordedFinding,
};
use crate::trust::oms;
use crate::trust::statement::{DigestSet, Sha256Hex, STATEMENT_TYPE};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The manifest's name when `-o` is not given: inside the bundle, which
/// `decant verify` leaves out of the files it covers.
pub const DEFAULT_NAME: &str = "decant.bundle.intoto.jsonl";

/// What `attest` takes.
pub struct Options<'a> {
    pub dir: &'a Path,
    pub key: &'a SigningKey,
    pub key_file: &'a Path,
    /// `--bind NAME=VALUE`, as given.
    pub bindings: &'a [String],
    /// `--allow-mutable NAME`.
    pub allow_mutable: &'a [String],
    /// Keys whose conversion receipts in the bundle count as proof.
    pub trusted_keys: &'a [VerifyingKey],
    pub output: Option<&'a Path>,
    /// Write a CycloneDX ML-BOM of the bundle here (outside DIR),
    /// published with the manifest.
    pub cyclonedx: Option<&'a Path>,
    pub force: bool,
    /// Also write `DIR/model.sig` with this ECDSA P-256 key, read from
    /// the file named second.
    pub oms_key: Option<(&'a p256::ecdsa::SigningKey, &'a Path)>,
}

/// A written manifest.
#[derive(Debug, serde::Serialize)]
pub struct Attested {
    #[serde(serialize_with = "crate::render::lossy_path")]
    pub manifest: PathBuf,
    /// The OpenSSF model signature written, with `--oms-key`.
    #[serde(serialize_with = "crate::render::lossy_opt_path")]
    pub model_signature: Option<PathBuf>,
    pub audit: Audit,
    pub bindings: BTreeMap<String, Binding>,
    /// The CycloneDX ML-BOM written, if asked for.
    #[serde(serialize_with = "crate::render::lossy_opt_path")]
    pub cyclonedx: Option<PathBuf>,
}

fn binding_error(message: String, hint: &str) -> Error {
    Error::new(Kind::Usage, message, hint)
}

/// Whether a binding names a revision, and which part is the revision.
fn revision_of<'v>(name: &str, value: &'v str) -> Option<&'v str> {
    if let Some((_, rev)) = value.rsplit_once('@') {
        return Some(rev);
    }
    (name.ends_with("revision") || name.ends_with("_rev")).then_some(value)
}

/// Parses `--bind` arguments, refusing mutable revisions not allowed.
pub fn parse_bindings(
    given: &[String],
    allow_mutable: &[String],
) -> Result<BTreeMap<String, Binding>> {
    let mut out = BTreeMap::new();
    for arg in given {
        let Some((name, value)) = arg.split_once('=') else {
            return Err(binding_error(
                format!("--bind {arg:?} is not NAME=VALUE"),
                "bind like --bind evaluation=run-2291 --bind upstream=pkg:huggingface/org/model@<commit>",
            ));
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(binding_error(
                format!("--bind name {name:?} is not 1 to 64 letters, digits, '_', '-' or '.'"),
                "use a plain name such as evaluation, approval, upstream_revision",
            ));
        }
        if value.is_empty()
            || value.len() > 1024
            || value.chars().any(decant_abi::is_deceptive_char)
        {
            return Err(binding_error(
                format!("--bind {name}: the value must be 1 to 1024 printable characters"),
                "bind the identifier itself (a run id, a ticket, a commit)",
            ));
        }
        let mutable = match revision_of(name, value) {
            Some(rev) if !is_immutable_revision(rev) => {
                if !allow_mutable.iter().any(|a| a == name) {
                    return Err(Error::new(
                        Kind::Refused,
                        format!(
                            "refused: --bind {name}={value} names revision {rev:?}, which can move (not a commit id or digest)"
                        ),
                        format!(
                            "bind the commit or digest it resolves to now, or pass --allow-mutable {name} to record it as mutable"
                        ),
                    ));
                }
                true
            }
            _ => false,
        };
        let binding = Binding {
            value: value.to_string(),
            mutable,
        };
        if out.insert(name.to_string(), binding).is_some() {
            return Err(binding_error(
                format!("--bind {name} is given twice"),
                "bind each name once",
            ));
        }
    }
    for a in allow_mutable {
        if !out.contains_key(a) {
            return Err(binding_error(
                format!("--allow-mutable {a} names no --bind"),
                "name a binding given with --bind",
            ));
        }
    }
    Ok(out)
}

/// Audits `opts.dir` and writes its signed manifest.
pub fn attest(sandbox: &Sandbox, opts: &Options<'_>) -> Result<Attested> {
    let bindings = parse_bindings(opts.bindings, opts.allow_mutable)?;
    let manifest_path = opts
        .output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.dir.join(DEFAULT_NAME));
    let signature_path = opts.dir.join(oms::SIGNATURE_FILE);
    let mut writes: Vec<(&str, &Path)> = vec![("the manifest", &manifest_path)];
    let mut reads: Vec<(&str, &Path)> = vec![("the key", opts.key_file)];
    if let Some((_, oms_key_file)) = opts.oms_key {
        writes.push(("the model signature", &signature_path));
        reads.push(("the --oms-key", oms_key_file));
    }
    crate::output::refuse_aliases(&writes, &reads)?;
    crate::output::check_receipt_target(&manifest_path, opts.force)?;
    if let Some(bom) = opts.cyclonedx {
        crate::output::refuse_aliases(
            &[("the BOM", bom)],
            &[("the manifest", &manifest_path), ("the key", opts.key_file)],
        )?;
        crate::output::refuse_inside(bom, opts.dir, "the BOM", "the bundle", "--cyclonedx")?;
        crate::output::check_target_hinted(bom, opts.force, crate::output::BOM_EXISTS_HINT)?;
    }
    let started = SystemTime::now();
    if opts.oms_key.is_some() && !opts.force && signature_path.symlink_metadata().is_ok() {
        return Err(Error::new(
            Kind::Usage,
            format!("{} already exists", signature_path.display()),
            crate::model_dir::SIGNATURE_EXISTS_HINT,
        ));
    }
    // A manifest being replaced inside the bundle is not part of it.
    let except = crate::open::regular_file(&manifest_path)
        .ok()
        .and_then(|f| crate::served::file_id(&f).ok());
    let audit = audit::audit(
        sandbox,
        &audit::Options {
            dir: opts.dir,
            trusted_keys: opts.trusted_keys,
            fail_on: Severity::High,
            except,
        },
    )?;
    let statement = BundleStatement {
        type_: STATEMENT_TYPE.into(),
        subject: audit
            .files
            .iter()
            .map(|f| BundleSubject {
                name: f.path.clone(),
                digest: DigestSet {
                    sha256: f.sha256.clone(),
                },
            })
            .collect(),
        predicate_type: manifest::PREDICATE_TYPE.into(),
        predicate: BundlePredicate {
            attester: Attester {
                id: manifest::ATTESTER_ID.into(),
                version: BTreeMap::from([
                    ("decant".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                    ("converter".to_string(), crate::guest::sha256().to_string()),
                ]),
            },
            attested_on: crate::receipt::timestamp(SystemTime::now()),
            findings: audit
                .findings
                .iter()
                .map(|f| RecordedFinding {
                    severity: f.severity,
                    kind: f.kind.code(),
                    file: f.file.clone(),
                    message: f.message.clone(),
                })
                .collect(),
            receipts: audit.receipts.clone(),
            bindings: bindings.clone(),
        },
    };
    let line = manifest::sign(&statement, opts.key);
    if line.len() > manifest::MAX_MANIFEST_BYTES {
        return Err(Error::new(
            Kind::Limit,
            format!(
                "the manifest would be {} bytes, more than the {} a manifest may have",
                line.len(),
                manifest::MAX_MANIFEST_BYTES
            ),
            "the bundle has too many files or findings for one manifest; attest its parts",
        ));
    }
    let manifest_pending = crate::receipt::stage(&manifest_path, &line)?;
    let mut items = vec![(manifest_pending, opts.force)];
    let model_signature = match opts.oms_key {
        Some((oms_key, _)) => {
            items.push((
                stage_signature(opts.dir, &audit, &manifest_path, &line, oms_key)?,
                opts.force,
            ));
            Some(signature_path)
        }
        None => None,
    };
    let bom = match opts.cyclonedx {
        Some(path) => {
            let manifest_url = match opts.output {
                None => DEFAULT_NAME.to_string(),
                Some(p) => crate::uri::file_uri(p)?,
            };
            let model_name = opts
                .dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "bundle".into());
            let bom = crate::bom::attestation_bom(&crate::bom::AttestationBom {
                model_name,
                audit: &audit,
                manifest: (
                    manifest_url,
                    crate::trust::statement::Sha256Hex::of(line.as_bytes()),
                ),
                model_parameters: config_parameters(opts.dir, &audit),
                started,
                finished: SystemTime::now(),
            });
            Some((crate::bom::stage(&bom, path)?, opts.force))
        }
        None => None,
    };
    // The manifest, the model signature, then the BOM that references
    // the manifest: all of them or none.
    items.extend(bom);
    crate::output::publish_together(items)?;
    Ok(Attested {
        manifest: manifest_path,
        model_signature,
        audit,
        bindings,
        cyclonedx: opts.cyclonedx.map(Path::to_path_buf),
    })
}

/// What the bundle's top-level `config.json` says the model is, if it was
/// audited (its digest is in the audit) and still reads the same.
fn config_parameters(dir: &Path, audit: &Audit) -> Option<crate::bom::ModelParameters> {
    let audited = audit.files.iter().find(|f| f.path == "config.json")?;
    let path = dir.join("config.json");
    let file = crate::open::regular_file(&path).ok()?;
    let bytes = crate::open::read_bounded(file, 16 << 20, &path, "a config").ok()?;
    if crate::trust::statement::Sha256Hex::of(&bytes) != audited.sha256 {
        return None;
    }
    crate::bom::model_parameters(&bytes)
}

/// Signs and stages `DIR/model.sig`: every file audited, and the manifest
/// (bytes `line`) if it goes inside DIR. Refused if the audit found a
/// symlink or special file: model.sig covers regular files only, and
/// `model_signing verify` would fail on it.
fn stage_signature(
    dir: &Path,
    audit: &Audit,
    manifest_path: &Path,
    line: &str,
    key: &p256::ecdsa::SigningKey,
) -> Result<crate::output::Pending> {
    if let Some(f) = audit
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::NotARegularFile)
    {
        return Err(Error::new(
            Kind::Refused,
            format!(
                "refused: --oms-key: {}/{} {}",
                dir.display(),
                f.file,
                f.message
            ),
            "a model signature covers regular files only: remove it, or attest without --oms-key",
        ));
    }
    let mut files: Vec<(String, Sha256Hex)> = audit
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    if let Some(name) = path_inside(dir, manifest_path)? {
        files.retain(|(p, _)| *p != name);
        files.push((name, Sha256Hex::of(line.as_bytes())));
    }
    let statement = oms::statement(&crate::model_dir::model_name(dir)?, &files)?;
    let signed = oms::sign(&statement, key)?;
    let shown = dir.join(oms::SIGNATURE_FILE);
    let pending = crate::output::Pending::new(&shown)?
        .with_exists_hint(crate::model_dir::SIGNATURE_EXISTS_HINT);
    std::io::Write::write_all(&mut pending.file()?, signed.as_bytes())
        .map_err(|e| Error::io(format!("cannot write {}", shown.display()), &e))?;
    Ok(pending)
}

/// `path`'s name relative to `dir` (`/`-separated), if it is inside it.
fn path_inside(dir: &Path, path: &Path) -> Result<Option<String>> {
    let resolve = |p: &Path| {
        p.canonicalize()
            .map_err(|e| Error::io(format!("cannot resolve {}", p.display()), &e))
    };
    let root = resolve(dir)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (Some(name), Ok(parent)) = (path.file_name(), resolve(parent)) else {
        return Ok(None);
    };
    let Ok(rel) = parent.strip_prefix(&root) else {
        return Ok(None);
    };
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.push(name.to_string_lossy().into_owned());
    Ok(Some(parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(args: &[&str], allow: &[&str]) -> Result<BTreeMap<String, Binding>> {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let m: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        parse_bindings(&a, &m)
    }

    #[test]
    fn revisions_must_be_commits_or_digests_unless_allowed() {
        let commit = "a".repeat(40);
        let b = bind(
            &[
                "evaluation=run-2291",
                &format!("upstream=pkg:huggingface/org/m@{commit}"),
                &format!("upstream_revision={commit}"),
            ],
            &[],
        )
        .unwrap();
        assert!(b.values().all(|b| !b.mutable));
        for bad in [
            "upstream=pkg:huggingface/org/m@main",
            "upstream_revision=latest",
            "image=registry/x@v2",
        ] {
            let e = bind(&[bad], &[]).unwrap_err();
            assert_eq!(e.kind, Kind::Refused, "{bad}");
            assert!(e.message.contains("can move"), "{}", e.message);
        }
        let b = bind(&["upstream_revision=main"], &["upstream_revision"]).unwrap();
        assert!(b["upstream_revision"].mutable);
    }

    #[test]
    fn malformed_bindings_are_usage_errors() {
        for bad in [&["noequals"][..], &["=x"], &["a=1", "a=2"], &["bad name=x"]] {
            assert_eq!(bind(bad, &[]).unwrap_err().kind, Kind::Usage, "{bad:?}");
        }
        assert_eq!(bind(&["a=1"], &["b"]).unwrap_err().kind, Kind::Usage);
    }
}
