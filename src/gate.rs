//! `decant verify`: the promotion gate.
//!
//! [`crate::trust::verify`] decides whether a receipt vouches for an
//! artifact; this module gathers what it needs (the artifact's digest or
//! the directory as served, the receipt, the trusted keys and converters,
//! the pins) and adds the checks that need the file system: `--source DIR`
//! and `--reproduce`, which take the verified statement and nothing else.
//! Problems reading inputs are usage or I/O errors (exit 2); a check that
//! fails is "not verified" (exit 1). Rendering is the CLI's.

use crate::convert::{self, sha256_file, Options};
use crate::error::{Error, Kind, Result};
use crate::policy::Policy;
use crate::sandbox::Sandbox;
use crate::served;
use crate::trust::dsse::MAX_RECEIPT_BYTES;
use crate::trust::statement::{Sha256Hex, Statement};
use crate::trust::verify::{
    self, Artifact, Check, CheckName, DirectoryFiles, Request, Trust, Verdict, Verified,
};
use crate::trust::vsa::{self, AttestationRef, Level, VerifyPolicy};
use crate::{guest, trust::keys};
use sha2::Digest as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

/// The command's inputs, as given (the receipt already read).
#[derive(Debug, Clone)]
pub struct Args {
    pub artifact: PathBuf,
    pub receipt: ReceiptFile,
    pub trusted_keys: Vec<PathBuf>,
    pub source: Option<PathBuf>,
    pub source_sha256: Option<String>,
    pub policy_sha256: Option<String>,
    pub allow_converters: Vec<String>,
    pub reproduce: bool,
    pub policy: Option<PathBuf>,
}

/// The result: every check, and which trusted key signed.
#[derive(Debug)]
pub struct Outcome {
    pub artifact: PathBuf,
    pub receipt: PathBuf,
    /// Every receipt checked, with the sha256 of the whole file: `receipt`
    /// alone, or a set of shard receipts.
    pub receipts: Vec<(PathBuf, Sha256Hex)>,
    /// The artifact's sha256 (a single file).
    pub artifact_sha256: Option<Sha256Hex>,
    /// Every file of the directory, as verified (a directory).
    pub directory_files: Option<DirectoryFiles>,
    pub verdict: Verdict,
    /// `sha256:` fingerprints of the trusted keys, in the order given.
    pub trusted_key_fingerprints: Vec<String>,
    /// What the gate required, as a verification summary records it.
    pub policy: VerifyPolicy,
    /// Where the verification summary went (`--vsa`).
    pub vsa: Option<PathBuf>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }

    /// The repository revisions (`pkg:huggingface/...@<commit>`) the
    /// authenticated receipt says its sources came from.
    pub fn source_revisions(&self) -> Vec<String> {
        self.verdict.statement().map_or_else(Vec::new, |s| {
            s.source_revisions()
                .into_iter()
                .map(|p| p.as_str().to_string())
                .collect()
        })
    }

    /// The fingerprint of the key that signed the authenticated statement.
    pub fn signer_fingerprint(&self) -> Option<&str> {
        let signer = self.verdict.statement()?.signer();
        self.trusted_key_fingerprints
            .get(signer)
            .map(String::as_str)
    }
}

fn hex_digest(value: &str, what: &str) -> Result<Sha256Hex> {
    Sha256Hex::parse(&value.to_ascii_lowercase()).ok_or_else(|| {
        Error::new(
            Kind::Usage,
            format!("{what} {value:?} is not a sha256 digest"),
            "give 64 hexadecimal characters",
        )
    })
}

fn file_sha256(path: &Path) -> Result<Sha256Hex> {
    sha256_file(&crate::open::regular_file(path)?)
        .map(Sha256Hex::from_computed)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))
}

/// A receipt or bundle manifest, read once: its bytes (at most one more
/// than a receipt may have, so the verifier can say it is too large) and
/// its identity, so that one kept inside the directory it covers is not
/// counted as served content.
#[derive(Debug, Clone)]
pub struct ReceiptFile {
    pub path: PathBuf,
    bytes: Vec<u8>,
    id: served::FileId,
    /// Of the whole file, however large (what a verification summary
    /// names it by).
    pub sha256: Sha256Hex,
}

impl ReceiptFile {
    pub fn read(path: &Path) -> Result<Self> {
        let f = crate::open::regular_file(path)?;
        let id = served::file_id(&f)
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), &e))?;
        let mut bytes = Vec::new();
        let mut f = f;
        let cannot = |e: std::io::Error| Error::io(format!("cannot read {}", path.display()), &e);
        (&mut f)
            .take(MAX_RECEIPT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        // The digest covers what lies past the bytes kept, too.
        let mut hasher = sha2::Sha256::new();
        hasher.update(&bytes);
        std::io::copy(&mut f, &mut hasher).map_err(cannot)?;
        Ok(ReceiptFile {
            path: path.to_path_buf(),
            bytes,
            id,
            sha256: Sha256Hex::from_computed(hex::encode(hasher.finalize())),
        })
    }

    /// Whether it claims to be a shard receipt (which verifier a directory
    /// needs; nothing read here is trusted).
    pub fn is_shard_receipt(&self) -> bool {
        crate::trust::shards::claims_shard(&self.bytes)
    }

    /// Whether it claims to be a bundle manifest (which verifier to run;
    /// nothing read here is trusted).
    pub fn is_bundle_manifest(&self) -> bool {
        crate::trust::manifest::claims_bundle_predicate(&self.bytes)
    }
}

/// The converters a receipt may name: the embedded guest and each
/// `--allow-converter`.
fn trusted_converters(allowed: &[String]) -> Result<Vec<Sha256Hex>> {
    let mut converters = vec![guest::sha256()];
    for c in allowed {
        converters.push(hex_digest(c, "--allow-converter")?);
    }
    Ok(converters)
}

/// `--policy-sha256`, parsed.
fn policy_pin(given: Option<&str>) -> Result<Option<Sha256Hex>> {
    given.map(|h| hex_digest(h, "--policy-sha256")).transpose()
}

/// What a conversion receipt's verification required, as a verification
/// summary records it.
fn conversion_policy(
    trusted_key_fingerprints: &[String],
    mut converters: Vec<Sha256Hex>,
    source_sha256: Option<Sha256Hex>,
    source_directory: bool,
    policy_sha256: Option<Sha256Hex>,
    reproduce: bool,
) -> VerifyPolicy {
    converters.sort();
    converters.dedup();
    VerifyPolicy::ConversionReceipt {
        trusted_keys: sorted(trusted_key_fingerprints),
        converters,
        source_sha256,
        source_directory,
        policy_sha256,
        reproduce,
    }
}

/// Runs every check.
pub fn run(args: &Args) -> Result<Outcome> {
    let trusted = keys::load_public_keys(&args.trusted_keys)?;
    let converters = trusted_converters(&args.allow_converters)?;
    let directory = args.artifact.is_dir();
    if directory && args.source_sha256.is_some() {
        return Err(Error::new(
            Kind::Usage,
            "--source-sha256 names one file, but the artifact is a directory",
            "pin the sources with --source DIR",
        ));
    }
    let source_pin = match (&args.source, &args.source_sha256) {
        (Some(_), _) if directory => None,
        (Some(path), _) => Some(file_sha256(path)?),
        (None, Some(hex)) => Some(hex_digest(hex, "--source-sha256")?),
        (None, None) => None,
    };
    let policy_pin = policy_pin(args.policy_sha256.as_deref())?;
    let (receipt, receipt_id) = (&args.receipt.bytes, args.receipt.id);
    let artifact = if directory {
        let dir = crate::output::open_dir(&args.artifact)?;
        Artifact::Directory(served::list(&dir, &args.artifact, &[receipt_id])?)
    } else {
        Artifact::File(file_sha256(&args.artifact)?)
    };
    let mut caller_checks = Vec::new();
    if directory && args.source.is_some() {
        caller_checks.push(CheckName::Source);
    }
    if args.reproduce {
        caller_checks.push(CheckName::Reproduce);
    }
    let mut verdict = verify::verify(&Request {
        artifact: &artifact,
        receipt,
        trust: Trust {
            keys: &trusted,
            converters: &converters,
        },
        source_sha256_pin: source_pin.clone(),
        policy_sha256_pin: policy_pin.clone(),
        caller_checks: &caller_checks,
    });
    for name in caller_checks {
        let check = match verdict.statement() {
            None => Check::fail(name, verify::NOT_CHECKED),
            Some(statement) => match (&artifact, name, &args.source) {
                (Artifact::Directory(_), CheckName::Source, Some(source)) => {
                    directory_source_check(statement, source)?
                }
                (Artifact::File(sha), CheckName::Reproduce, Some(source)) => {
                    reproduce(args, statement, source, sha)?
                }
                (Artifact::Directory(files), CheckName::Reproduce, Some(source)) => {
                    reproduce_directory(args, statement, source, files)?
                }
                _ => Check::fail(name, "not checked: --reproduce needs --source"),
            },
        };
        verdict.add(check);
    }
    let (artifact_sha256, directory_files) = match artifact {
        Artifact::File(sha) => (Some(sha), None),
        Artifact::Directory(files) => (None, Some(files)),
    };
    let trusted_key_fingerprints: Vec<String> = trusted.iter().map(keys::fingerprint).collect();
    let policy = conversion_policy(
        &trusted_key_fingerprints,
        converters,
        source_pin,
        directory && args.source.is_some(),
        policy_pin,
        args.reproduce,
    );
    Ok(Outcome {
        artifact: args.artifact.clone(),
        receipt: args.receipt.path.clone(),
        receipts: vec![(args.receipt.path.clone(), args.receipt.sha256.clone())],
        artifact_sha256,
        directory_files,
        verdict,
        trusted_key_fingerprints,
        policy,
        vsa: None,
    })
}

/// The sandbox a reproduction runs in: the receipt's converter (which must
/// be this binary's guest) under the receipt's policy, or why not (as a
/// failed check).
fn reproduction(args: &Args, s: &Statement) -> Result<std::result::Result<Sandbox, Check>> {
    let fail = |detail: String| Ok(Err(Check::fail(CheckName::Reproduce, detail)));
    let converter = s.converter().map(|c| c.digest.sha256.clone());
    if converter.as_ref() != Ok(&guest::sha256()) {
        return fail(format!(
            "the receipt names converter {}, but this decant embeds {}; reproduce with the decant that made it",
            converter.map(|c| c.to_string()).unwrap_or_else(|e| e),
            guest::sha256()
        ));
    }
    let policy = Policy::from_option(args.policy.as_deref())?;
    if policy.sha256 != *s.policy_sha256() {
        return fail(format!(
            "the receipt's policy has sha256 {}, {} has {}; pass the same policy with --policy",
            s.policy_sha256(),
            policy.origin,
            policy.sha256
        ));
    }
    Ok(Ok(Sandbox::new(policy)?))
}

fn refused_again(source: &Path, e: &Error) -> Check {
    Check::fail(
        CheckName::Reproduce,
        format!(
            "converting {} again was refused: {}",
            source.display(),
            e.message
        ),
    )
}

/// Re-runs the conversion of `--source` under the receipt's policy and
/// strictness and compares the bytes with the artifact's.
fn reproduce(
    args: &Args,
    s: &Verified<Statement>,
    source: &Path,
    artifact_sha256: &Sha256Hex,
) -> Result<Check> {
    let sandbox = match reproduction(args, s)? {
        Ok(sandbox) => sandbox,
        Err(check) => return Ok(check),
    };
    let dir = tempfile::tempdir().map_err(|e| Error::io("cannot create a temp directory", &e))?;
    let converted = convert::convert(
        &sandbox,
        &Options {
            source: source.to_path_buf(),
            output: Some(dir.path().join("reproduced.safetensors")),
            strict: s.strict(),
            force: false,
        },
    );
    Ok(match converted {
        Ok(c) if c.output_sha256 == artifact_sha256.as_str() => Check::pass(
            CheckName::Reproduce,
            format!(
                "converting {} again gives the artifact's exact bytes (sha256 {artifact_sha256})",
                source.display(),
            ),
        ),
        Ok(c) => Check::fail(
            CheckName::Reproduce,
            format!(
                "converting {} again gives sha256 {}, the artifact has {artifact_sha256}",
                source.display(),
                c.output_sha256,
            ),
        ),
        Err(e) if e.kind.exit_code() == 1 => refused_again(source, &e),
        Err(e) => return Err(e),
    })
}

/// `--source DIR` for a directory receipt: every source the receipt names
/// must be in DIR with that digest. DIR is read as a conversion reads it,
/// so it may be a Hugging Face cache snapshot; then the revision the
/// receipt names must be the snapshot's.
fn directory_source_check(s: &Verified<Statement>, source: &Path) -> Result<Check> {
    let tree = crate::source_tree::SourceTree::open(source, None)?;
    let listing = match tree.list(None) {
        Ok(listing) => listing,
        Err(e) if e.kind.exit_code() == 1 => {
            return Ok(Check::fail(CheckName::Source, e.message));
        }
        Err(e) => return Err(e),
    };
    let files: std::collections::BTreeMap<&str, &crate::source_tree::TreeFile> =
        listing.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut problems = Vec::new();
    let here = tree.origin().map(|o| &o.purl);
    let mut count = 0;
    for (dep, _) in s.sources() {
        count += 1;
        let want = &dep.digest.sha256;
        if let (Some(named), Some(here)) = (&dep.uri, &here) {
            if named != *here {
                problems.push(format!(
                    "{} comes from {named} by the receipt, {} is {here}",
                    dep.name,
                    source.display()
                ));
                continue;
            }
        }
        match files.get(dep.name.as_str()).map(|f| tree.sha256(f)) {
            Some(Ok(sha)) if sha == *want => {}
            Some(Ok(sha)) => problems.push(format!(
                "{} has sha256 {sha}, the receipt says {want}",
                dep.name
            )),
            None => problems.push(format!("{} is not in {}", dep.name, source.display())),
            Some(Err(e)) => problems.push(e.message),
        }
    }
    Ok(if problems.is_empty() {
        Check::pass(
            CheckName::Source,
            format!("all {count} sources match {}", source.display()),
        )
    } else {
        Check::fail(CheckName::Source, problems.join("; "))
    })
}

/// Re-runs a directory conversion of `--source DIR` into a temp directory
/// and requires it to hold exactly the directory's files, byte for byte.
fn reproduce_directory(
    args: &Args,
    s: &Verified<Statement>,
    source: &Path,
    files: &DirectoryFiles,
) -> Result<Check> {
    let sandbox = match reproduction(args, s)? {
        Ok(sandbox) => sandbox,
        Err(check) => return Ok(check),
    };
    let tmp = tempfile::tempdir().map_err(|e| Error::io("cannot create a temp directory", &e))?;
    let out = tmp.path().join("reproduced");
    let opts = crate::model_dir::Options {
        revision: None,
        source: source.to_path_buf(),
        output: Some(out.clone()),
        strict: s.strict(),
        force: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        key: None,
        shard: None,
        cyclonedx: None,
        oms_key: None,
    };
    if let Err(e) = crate::model_dir::convert_dir(&sandbox, &opts, &|_| {}) {
        if e.kind.exit_code() == 1 {
            return Ok(refused_again(source, &e));
        }
        return Err(e);
    }
    let again = served::list(&crate::output::open_dir(&out)?, &out, &[])?;
    Ok(if again.files == files.files {
        Check::pass(
            CheckName::Reproduce,
            format!(
                "converting {} again gives all {} files byte for byte",
                source.display(),
                files.files.len()
            ),
        )
    } else {
        let differ: Vec<String> = files
            .files
            .iter()
            .filter(|f| !again.files.contains(f))
            .map(|(n, _)| n.clone())
            .chain(
                again
                    .files
                    .iter()
                    .filter(|f| !files.files.contains(f))
                    .map(|(n, _)| format!("{n} (new)")),
            )
            .collect();
        Check::fail(
            CheckName::Reproduce,
            format!(
                "converting {} again differs in {}",
                source.display(),
                differ.join(", ")
            ),
        )
    })
}

/// `decant verify DIR --receipt MANIFEST`'s inputs.
#[derive(Debug, Clone)]
pub struct BundleArgs {
    pub dir: PathBuf,
    pub manifest: ReceiptFile,
    pub trusted_keys: Vec<PathBuf>,
    /// `--require NAME[=VALUE]`, as given.
    pub required: Vec<String>,
    pub fail_on: crate::trust::manifest::Severity,
}

/// The result of verifying a bundle manifest.
#[derive(Debug)]
pub struct BundleOutcome {
    pub dir: PathBuf,
    pub manifest: PathBuf,
    pub manifest_sha256: Sha256Hex,
    /// Every file of the directory, as verified.
    pub files: DirectoryFiles,
    pub verdict: crate::trust::manifest::BundleVerdict,
    pub trusted_key_fingerprints: Vec<String>,
    /// What the gate required, as a verification summary records it.
    pub policy: VerifyPolicy,
    /// Where the verification summary went (`--vsa`).
    pub vsa: Option<PathBuf>,
}

impl BundleOutcome {
    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }

    /// The fingerprint of the key that signed the manifest.
    pub fn signer_fingerprint(&self) -> Option<&str> {
        let signer = self.verdict.manifest.as_ref()?.signer();
        self.trusted_key_fingerprints
            .get(signer)
            .map(String::as_str)
    }

    /// What the authenticated manifest binds.
    pub fn bindings(
        &self,
    ) -> Option<&std::collections::BTreeMap<String, crate::trust::manifest::Binding>> {
        self.verdict
            .manifest
            .as_ref()
            .map(|m| &m.predicate.bindings)
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Parses `--require NAME[=VALUE]`.
fn parse_required(given: &[String]) -> Result<Vec<(String, Option<String>)>> {
    given
        .iter()
        .map(|r| {
            let (name, value) = match r.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (r.as_str(), None),
            };
            if name.is_empty() {
                return Err(Error::new(
                    Kind::Usage,
                    format!("--require {r:?} names no binding"),
                    "require like --require approval or --require evaluation=run-2291",
                ));
            }
            Ok((name.to_string(), value))
        })
        .collect()
}

/// Verifies a bundle manifest against the directory as served.
pub fn run_bundle(args: &BundleArgs) -> Result<BundleOutcome> {
    let trusted = keys::load_public_keys(&args.trusted_keys)?;
    let required = parse_required(&args.required)?;
    if !args.dir.is_dir() {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "{} is a bundle manifest, which covers a directory, but {} is not one",
                args.manifest.path.display(),
                args.dir.display()
            ),
            "give the bundle's directory as the artifact",
        ));
    }
    let (manifest, manifest_id) = (&args.manifest.bytes, args.manifest.id);
    let dir = crate::output::open_dir(&args.dir)?;
    let files = served::list(&dir, &args.dir, &[manifest_id])?;
    let verdict = crate::trust::manifest::verify(&crate::trust::manifest::BundleRequest {
        files: &files,
        manifest,
        keys: &trusted,
        required: &required,
        fail_on: args.fail_on,
    });
    let trusted_key_fingerprints: Vec<String> = trusted.iter().map(keys::fingerprint).collect();
    let policy = VerifyPolicy::BundleManifest {
        trusted_keys: sorted(&trusted_key_fingerprints),
        required: sorted(&args.required),
        fail_on: args.fail_on,
    };
    Ok(BundleOutcome {
        dir: args.dir.clone(),
        manifest: args.manifest.path.clone(),
        manifest_sha256: args.manifest.sha256.clone(),
        files,
        verdict,
        trusted_key_fingerprints,
        policy,
        vsa: None,
    })
}

/// `decant verify DIR --receipt R1 R2 ...`: a directory converted in shards.
#[derive(Debug, Clone)]
pub struct SetArgs {
    pub dir: PathBuf,
    pub receipts: Vec<ReceiptFile>,
    pub trusted_keys: Vec<PathBuf>,
    pub policy_sha256: Option<String>,
    pub allow_converters: Vec<String>,
}

/// Verifies a set of shard receipts against the directory they cover
/// together ([`crate::trust::shards`]).
pub fn run_set(args: &SetArgs) -> Result<Outcome> {
    let trusted = keys::load_public_keys(&args.trusted_keys)?;
    let converters = trusted_converters(&args.allow_converters)?;
    let policy_pin = policy_pin(args.policy_sha256.as_deref())?;
    if !args.dir.is_dir() {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "several receipts cover a directory together, but {} is not one",
                args.dir.display()
            ),
            "give the directory the shards were gathered into, or verify a file with its one receipt",
        ));
    }
    let mut ids: Vec<served::FileId> = Vec::new();
    for r in &args.receipts {
        if ids.contains(&r.id) {
            return Err(Error::new(
                Kind::Usage,
                format!("{} was given twice", r.path.display()),
                "give each shard's receipt once",
            ));
        }
        ids.push(r.id);
    }
    let dir = crate::output::open_dir(&args.dir)?;
    let files = served::list(&dir, &args.dir, &ids)?;
    let receipts: Vec<(String, &[u8])> = args
        .receipts
        .iter()
        .map(|r| (r.path.display().to_string(), r.bytes.as_slice()))
        .collect();
    let verdict = crate::trust::shards::verify_set(&crate::trust::shards::SetRequest {
        dir: &files,
        receipts: &receipts,
        trust: Trust {
            keys: &trusted,
            converters: &converters,
        },
        policy_sha256_pin: policy_pin.clone(),
    });
    let trusted_key_fingerprints: Vec<String> = trusted.iter().map(keys::fingerprint).collect();
    let policy = conversion_policy(
        &trusted_key_fingerprints,
        converters,
        None,
        false,
        policy_pin,
        false,
    );
    Ok(Outcome {
        artifact: args.dir.clone(),
        receipt: args
            .receipts
            .first()
            .map(|r| r.path.clone())
            .unwrap_or_default(),
        receipts: args
            .receipts
            .iter()
            .map(|r| (r.path.clone(), r.sha256.clone()))
            .collect(),
        artifact_sha256: None,
        directory_files: Some(files),
        verdict,
        trusted_key_fingerprints,
        policy,
        vsa: None,
    })
}

/// `--vsa PATH --key KEY [--resource-uri URI] [--force]`: where the
/// verification summary goes and what signs it, checked before anything
/// is verified.
pub struct VsaOutput {
    path: PathBuf,
    key: ed25519_dalek::SigningKey,
    resource_uri: Option<String>,
    force: bool,
}

impl VsaOutput {
    /// Loads the key and refuses, before any work: a `--resource-uri` that
    /// is not an absolute URI; a path that is a file decant reads
    /// (`reads`: the artifact, the receipt, the keys); a path inside the
    /// directory being verified (one more file that nothing lists, so the
    /// next `decant verify DIR` would fail); an existing file without
    /// `--force`.
    pub fn prepare(
        path: PathBuf,
        key_file: &Path,
        resource_uri: Option<String>,
        force: bool,
        artifact: &Path,
        reads: &[(&str, &Path)],
    ) -> Result<Self> {
        if let Some(uri) = &resource_uri {
            if !crate::uri::is_absolute_uri(uri) {
                return Err(Error::new(
                    Kind::Usage,
                    format!("--resource-uri {uri:?} is not an absolute URI"),
                    "give the URI admission will look the artifact up by, e.g. https://models.example/bert/model.safetensors or pkg:huggingface/org/name@<commit>",
                ));
            }
        }
        let key = keys::load_signing_key(key_file)?;
        let mut all_reads = vec![("the key", key_file)];
        all_reads.extend_from_slice(reads);
        crate::output::refuse_aliases(&[("the VSA", &path)], &all_reads)?;
        if artifact.is_dir() {
            crate::output::refuse_inside(
                &path,
                artifact,
                "the VSA",
                "the verified directory",
                "--vsa",
            )?;
        }
        crate::output::check_target_hinted(&path, force, crate::output::VSA_EXISTS_HINT)?;
        Ok(VsaOutput {
            path,
            key,
            resource_uri,
            force,
        })
    }

    /// `--resource-uri`, or the `file:` URI of what was verified.
    fn resource_uri(&self, artifact: &Path) -> Result<String> {
        match &self.resource_uri {
            Some(uri) => Ok(uri.clone()),
            None => crate::uri::file_uri(artifact),
        }
    }

    /// Signs `statement` and publishes it atomically (never over an
    /// existing file without `--force`).
    fn write(&self, statement: &vsa::VsaStatement) -> Result<PathBuf> {
        let line = vsa::sign(statement, &self.key);
        let pending = crate::output::Pending::new(&self.path)?
            .with_exists_hint(crate::output::VSA_EXISTS_HINT);
        pending
            .file()?
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(format!("cannot write the VSA {}", self.path.display()), &e))?;
        pending.publish(self.force)?;
        Ok(self.path.clone())
    }

    /// The summary of a conversion receipt's verification, signed and
    /// written; a failed verification is summarised as FAILED.
    pub fn write_conversion(&self, o: &mut Outcome) -> Result<()> {
        let subject = match (&o.artifact_sha256, &o.directory_files) {
            (Some(sha), _) => vec![(file_name(&o.artifact), sha.clone())],
            (None, Some(files)) => files.files.clone(),
            (None, None) => Vec::new(),
        };
        let reproduced = o
            .verdict
            .checks()
            .iter()
            .any(|c| c.name == CheckName::Reproduce && c.passed);
        let mut levels = vec![Level::ConversionVerified];
        if reproduced {
            levels.push(Level::ConversionReproduced);
        }
        let statement = vsa::statement(vsa::Summary {
            subject: nonempty(subject, &o.artifact)?,
            resource_uri: self.resource_uri(&o.artifact)?,
            policy: o.policy.clone(),
            inputs: o
                .receipts
                .iter()
                .map(|(path, sha256)| {
                    Ok(AttestationRef {
                        uri: crate::uri::file_uri(path)?,
                        digest: crate::trust::statement::DigestSet {
                            sha256: sha256.clone(),
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            failed: (!o.passed()).then(|| {
                o.verdict
                    .failed()
                    .iter()
                    .map(|n| n.as_str().to_string())
                    .collect()
            }),
            levels,
            time_verified: crate::receipt::timestamp(std::time::SystemTime::now()),
        });
        o.vsa = Some(self.write(&statement)?);
        Ok(())
    }

    /// The summary of a bundle manifest's verification.
    pub fn write_bundle(&self, o: &mut BundleOutcome) -> Result<()> {
        let statement = vsa::statement(vsa::Summary {
            subject: nonempty(o.files.files.clone(), &o.dir)?,
            resource_uri: self.resource_uri(&o.dir)?,
            policy: o.policy.clone(),
            inputs: vec![AttestationRef {
                uri: crate::uri::file_uri(&o.manifest)?,
                digest: crate::trust::statement::DigestSet {
                    sha256: o.manifest_sha256.clone(),
                },
            }],
            failed: (!o.passed()).then(|| {
                o.verdict
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| c.name.as_str().to_string())
                    .collect()
            }),
            levels: vec![Level::BundleVerified],
            time_verified: crate::receipt::timestamp(std::time::SystemTime::now()),
        });
        o.vsa = Some(self.write(&statement)?);
        Ok(())
    }
}

/// A file's name, for a VSA subject.
fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| p.to_string_lossy(), |n| n.to_string_lossy())
        .into_owned()
}

/// An in-toto statement needs a subject: an empty directory has nothing a
/// summary could be about.
fn nonempty(subject: Vec<(String, Sha256Hex)>, what: &Path) -> Result<Vec<(String, Sha256Hex)>> {
    if subject.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "{} holds no file, so a VSA would have no subject",
                what.display()
            ),
            "verify the directory that holds the model's files",
        ));
    }
    Ok(subject)
}
