//! `decant verify`: the promotion gate.
//!
//! [`crate::verify`] decides whether a receipt vouches for an artifact; this
//! module gathers what it needs (the artifact's digest, the receipt, the
//! trusted keys and converters, the optional pins), adds the `--reproduce`
//! check, and reports every check. Problems reading inputs are usage or I/O
//! errors (exit 2); a check that fails is "not verified" (exit 1).

use crate::convert::{self, sha256_file, Options};
use crate::error::{Error, Kind, Result};
use crate::policy::Policy;
use crate::sandbox::Sandbox;
use crate::verify::{self, Check, Request, Verification};
use crate::{guest, keys};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Name of the check `--reproduce` adds.
pub const REPRODUCE: &str = "reproduce";

/// The command's inputs, as given.
#[derive(Debug, Clone)]
pub struct Args {
    pub artifact: PathBuf,
    pub receipt: PathBuf,
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
    pub artifact_sha256: String,
    pub verification: Verification,
    pub trusted_key_fingerprints: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.verification.passed()
    }

    /// Prints the checks (text or one JSON object).
    pub fn print(&self, args: &Args, json: bool) {
        let v = &self.verification;
        let signer = v
            .trusted_key
            .and_then(|i| self.trusted_key_fingerprints.get(i));
        if json {
            let out = serde_json::json!({
                "status": if self.passed() { "verified" } else { "not_verified" },
                "artifact": args.artifact,
                "artifact_sha256": self.artifact_sha256,
                "receipt": args.receipt,
                "signer_fingerprint": signer,
                "checks": v.checks,
            });
            println!("{out}");
            return;
        }
        for c in &v.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            println!(
                "{mark} {:<13} {}",
                c.name,
                crate::error::one_line(&c.detail)
            );
        }
        if self.passed() {
            println!(
                "verified: {} is vouched for by {} (signer {})",
                args.artifact.display(),
                args.receipt.display(),
                signer.map(String::as_str).unwrap_or("?")
            );
        } else {
            let failed: Vec<&str> = v
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name)
                .collect();
            eprintln!(
                "decant: NOT verified: {} failed ({})",
                args.artifact.display(),
                failed.join(", ")
            );
            eprintln!("hint: do not promote this artifact; each FAIL line above says what was expected and what was found");
        }
    }
}

fn hex_digest(value: &str, what: &str) -> Result<String> {
    let v = value.to_ascii_lowercase();
    if v.len() != 64 || !v.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::new(
            Kind::Usage,
            format!("{what} {value:?} is not a sha256 digest"),
            "give 64 hexadecimal characters",
        ));
    }
    Ok(v)
}

fn file_sha256(path: &Path) -> Result<String> {
    let f =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), &e))?;
    sha256_file(&f).map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))
}

fn read_receipt(path: &Path) -> Result<Vec<u8>> {
    let f =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), &e))?;
    let mut bytes = Vec::new();
    f.take(verify::MAX_RECEIPT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))?;
    Ok(bytes)
}

/// Runs every check.
pub fn run(args: &Args) -> Result<Outcome> {
    let trusted = args
        .trusted_keys
        .iter()
        .map(|p| keys::load_public_key(p))
        .collect::<Result<Vec<_>>>()?;
    let mut trusted_converters = vec![guest::sha256()];
    for c in &args.allow_converters {
        trusted_converters.push(hex_digest(c, "--allow-converter")?);
    }
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
    let policy_pin = args
        .policy_sha256
        .as_deref()
        .map(|h| hex_digest(h, "--policy-sha256"))
        .transpose()?;
    let (artifact_sha256, directory_files) = if directory {
        let dir = crate::output::open_dir(&args.artifact)?;
        (
            String::new(),
            Some(crate::model_dir::weight_files(&dir, &args.artifact)?),
        )
    } else {
        (file_sha256(&args.artifact)?, None)
    };
    let receipt = read_receipt(&args.receipt)?;
    let mut verification = verify::verify_detailed(&Request {
        artifact_sha256: artifact_sha256.clone(),
        directory_files: directory_files.clone(),
        envelope_json: &receipt,
        trusted: trusted.clone(),
        trusted_converters,
        source_sha256_pin: source_pin,
        policy_sha256_pin: policy_pin,
    });
    if let (true, Some(source)) = (directory, &args.source) {
        let check = directory_source_check(&verification, source)?;
        verification.checks.push(check);
    }
    if args.reproduce {
        let check = match &directory_files {
            Some(files) => reproduce_directory(args, &verification, files)?,
            None => reproduce(args, &verification, &artifact_sha256)?,
        };
        verification.checks.push(check);
    }
    Ok(Outcome {
        artifact_sha256,
        verification,
        trusted_key_fingerprints: trusted.iter().map(keys::fingerprint).collect(),
    })
}

/// What a reproduction runs with: the receipt's converter (which must be
/// this binary's guest) under the receipt's policy.
struct Reproduction<'a> {
    sandbox: Sandbox,
    source: &'a Path,
    strict: bool,
}

fn reproduce_fail(detail: String) -> Check {
    Check {
        name: REPRODUCE,
        passed: false,
        detail,
    }
}

/// Sets up a reproduction, or says why the receipt cannot be reproduced
/// here (as a failed check).
fn reproduction<'a>(
    args: &'a Args,
    v: &Verification,
) -> Result<std::result::Result<Reproduction<'a>, Check>> {
    let Some(statement) = &v.statement else {
        return Ok(Err(reproduce_fail(verify::NOT_CHECKED_UNSIGNED.into())));
    };
    let source = args
        .source
        .as_deref()
        .expect("clap requires --source with --reproduce");
    let converter = verify::statement_converter_sha256(statement).unwrap_or_default();
    if converter != guest::sha256() {
        return Ok(Err(reproduce_fail(format!(
            "the receipt names converter {converter}, but this decant embeds {}; reproduce with the decant that made it",
            guest::sha256()
        ))));
    }
    let wanted = verify::statement_policy_sha256(statement).unwrap_or_default();
    let policy = match &args.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default_policy(),
    };
    if policy.sha256 != wanted {
        return Ok(Err(reproduce_fail(format!(
            "the receipt's policy has sha256 {wanted}, {} has {}; pass the same policy with --policy",
            policy.origin, policy.sha256
        ))));
    }
    Ok(Ok(Reproduction {
        sandbox: Sandbox::new(guest::WASM, policy)?,
        source,
        strict: verify::statement_strict(statement).unwrap_or(false),
    }))
}

/// Re-runs the conversion of `--source` under the receipt's policy and
/// compares the bytes with the artifact's.
fn reproduce(args: &Args, v: &Verification, artifact_sha256: &str) -> Result<Check> {
    let fail = reproduce_fail;
    let Reproduction {
        sandbox,
        source,
        strict,
    } = match reproduction(args, v)? {
        Ok(r) => r,
        Err(check) => return Ok(check),
    };
    let dir = tempfile::tempdir().map_err(|e| Error::io("cannot create a temp directory", &e))?;
    let out = dir.path().join("reproduced.safetensors");
    let converted = convert::convert(
        &sandbox,
        &Options {
            source: source.to_path_buf(),
            output: Some(out),
            strict,
            force: false,
        },
    );
    Ok(match converted {
        Ok(c) if c.output_sha256 == artifact_sha256 => Check {
            name: REPRODUCE,
            passed: true,
            detail: format!(
                "converting {} again gives the artifact's exact bytes (sha256 {})",
                source.display(),
                artifact_sha256
            ),
        },
        Ok(c) => fail(format!(
            "converting {} again gives sha256 {}, the artifact has {}",
            source.display(),
            c.output_sha256,
            artifact_sha256
        )),
        Err(e) if e.kind.exit_code() == 1 => fail(format!(
            "converting {} again was refused: {}",
            source.display(),
            e.message
        )),
        Err(e) => return Err(e),
    })
}

/// `--source DIR` for a directory receipt: every source the receipt names
/// must be in DIR with that digest.
fn directory_source_check(v: &Verification, source: &Path) -> Result<Check> {
    let Some(statement) = &v.statement else {
        return Ok(Check {
            name: verify::SOURCE,
            passed: false,
            detail: verify::NOT_CHECKED_UNSIGNED.into(),
        });
    };
    let dir = crate::output::open_dir(source)?;
    let mut problems = Vec::new();
    let mut count = 0;
    for source_dep in verify::statement_sources(statement) {
        count += 1;
        let Some((name, want)) = source_dep else {
            problems.push("a source without a name or digest".to_string());
            continue;
        };
        let found = crate::model_dir::file_sha256(&dir, &name);
        match found {
            Some(sha) if sha == want => {}
            Some(sha) => problems.push(format!("{name} has sha256 {sha}, the receipt says {want}")),
            None => problems.push(format!("{name} is not in {}", source.display())),
        }
    }
    Ok(if problems.is_empty() {
        Check {
            name: verify::SOURCE,
            passed: true,
            detail: format!("all {count} sources match {}", source.display()),
        }
    } else {
        Check {
            name: verify::SOURCE,
            passed: false,
            detail: problems.join("; "),
        }
    })
}

/// Re-runs a directory conversion of `--source DIR` into a temp directory
/// and requires every weight file to come out identical.
fn reproduce_directory(args: &Args, v: &Verification, files: &[(String, String)]) -> Result<Check> {
    let fail = reproduce_fail;
    let Reproduction {
        sandbox,
        source,
        strict,
    } = match reproduction(args, v)? {
        Ok(r) => r,
        Err(check) => return Ok(check),
    };
    let tmp = tempfile::tempdir().map_err(|e| Error::io("cannot create a temp directory", &e))?;
    let out = tmp.path().join("reproduced");
    let opts = crate::model_dir::Options {
        source: source.to_path_buf(),
        output: Some(out.clone()),
        strict,
        force: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        key: None,
    };
    if let Err(e) = crate::model_dir::convert_dir(&sandbox, &opts, &|_| {}) {
        if e.kind.exit_code() == 1 {
            return Ok(fail(format!(
                "converting {} again was refused: {}",
                source.display(),
                e.message
            )));
        }
        return Err(e);
    }
    let again = crate::model_dir::weight_files(&crate::output::open_dir(&out)?, &out)?;
    Ok(if again == files {
        Check {
            name: REPRODUCE,
            passed: true,
            detail: format!(
                "converting {} again gives all {} files byte for byte",
                source.display(),
                files.len()
            ),
        }
    } else {
        let differ: Vec<String> = files
            .iter()
            .filter(|f| !again.contains(f))
            .map(|(n, _)| n.clone())
            .chain(
                again
                    .iter()
                    .filter(|f| !files.contains(f))
                    .map(|(n, _)| format!("{n} (new)")),
            )
            .collect();
        fail(format!(
            "converting {} again differs in {}",
            source.display(),
            differ.join(", ")
        ))
    })
}
