//! A bundle manifest (`decant attest`) as types, and its verification as a
//! promotion gate (`decant verify DIR --receipt MANIFEST`).
//!
//! The manifest is an in-toto Statement v1 in a DSSE envelope, signed with
//! Ed25519 like a receipt, with decant's bundle predicate
//! ([`PREDICATE_TYPE`]): every file of the bundle is a subject with its
//! digest, and the predicate records the audit's findings, the conversion
//! receipts the audit verified (by digest), and bindings: the evaluation
//! run, approval, model card version, upstream revision, environment the
//! bundle was promoted with. docs/RECEIPTS.md lists every field.
//!
//! Verification, in order (each a [`Check`] saying expected and found):
//!
//! 1. `envelope`: a DSSE envelope (or JSON Lines of them) within
//!    [`MAX_RECEIPT_BYTES`].
//! 2. `payload_type`: `application/vnd.in-toto+json`.
//! 3. `signature`: verifies with one of the trusted keys; only the bytes it
//!    covers are read from here on.
//! 4. `statement`: in-toto Statement v1 with [`PREDICATE_TYPE`], parsed
//!    strictly (no unknown or repeated fields).
//! 5. `subject`: every regular file of the directory is a subject with its
//!    digest, every subject is there, and nothing else is (no symlinks or
//!    special files).
//! 6. `bindings`: each `--require NAME[=VALUE]` is bound (to VALUE).
//! 7. `findings`: no recorded finding at or above `--fail-on`.
//!
//! A [`BundleVerdict`] passes only if all seven ran and passed.

use super::dsse::{self, MAX_RECEIPT_BYTES};
use super::statement::{check_unique_keys, DigestSet, Sha256Hex, STATEMENT_TYPE};
use super::verify::{list, split_envelopes, Check, CheckName, DirectoryFiles, Verified};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// decant's bundle manifest predicate.
pub const PREDICATE_TYPE: &str = "https://decant.dev/bundle/v1";
/// Who attests: decant run by the holder of the key.
pub const ATTESTER_ID: &str = "https://decant.dev/attester/v1";

/// How bad a finding is; ordered from `Info` to `Critical`. The meaning of
/// each level is documented with the audit (`crate::bundle::findings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a severity (info, low, medium, high, critical)"))
    }
}

/// The manifest's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleStatement {
    #[serde(rename = "_type")]
    pub type_: String,
    /// Every file of the bundle, by path relative to it (`/`-separated).
    pub subject: Vec<BundleSubject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: BundlePredicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSubject {
    pub name: String,
    pub digest: DigestSet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundlePredicate {
    pub attester: Attester,
    /// RFC 3339 UTC.
    pub attested_on: String,
    /// The audit's findings when the bundle was attested.
    pub findings: Vec<RecordedFinding>,
    /// Conversion receipts in the bundle that verified with a trusted key.
    pub receipts: Vec<VerifiedReceipt>,
    /// What the bundle is promoted with, by name.
    pub bindings: BTreeMap<String, Binding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attester {
    pub id: String,
    /// `decant` (its version) and `converter` (the guest's sha256, which
    /// scanned the files).
    pub version: BTreeMap<String, String>,
}

/// A finding as recorded: `kind` is the audit's stable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedFinding {
    pub severity: Severity,
    pub kind: String,
    pub file: String,
    pub message: String,
}

/// A conversion receipt the audit verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedReceipt {
    /// The receipt's path in the bundle.
    pub name: String,
    pub digest: DigestSet,
    /// `sha256:` fingerprint of the key that signed it.
    pub signer: String,
    /// Bundle files it vouches for.
    pub covers: Vec<String>,
}

/// One binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub value: String,
    /// Present (true) only for a revision binding whose revision can move,
    /// bound with `--allow-mutable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mutable: bool,
}

/// Signs `statement` as one DSSE envelope line.
pub fn sign(statement: &BundleStatement, key: &SigningKey) -> String {
    let payload = super::statement::sorted_json(statement);
    let env = dsse::sign(&payload, key);
    let mut line = serde_json::to_string(&env).unwrap_or_default();
    line.push('\n');
    line
}

/// What to verify a manifest against.
pub struct BundleRequest<'a> {
    /// The directory as served (the manifest itself left out).
    pub files: &'a DirectoryFiles,
    pub manifest: &'a [u8],
    pub keys: &'a [VerifyingKey],
    /// `--require NAME[=VALUE]`.
    pub required: &'a [(String, Option<String>)],
    /// `--fail-on`.
    pub fail_on: Severity,
}

/// The outcome: every check, and the manifest if it authenticated.
#[derive(Debug, Clone)]
pub struct BundleVerdict {
    pub checks: Vec<Check>,
    pub manifest: Option<Verified<BundleStatement>>,
}

impl BundleVerdict {
    pub fn passed(&self) -> bool {
        self.manifest.is_some() && self.checks.len() == 7 && self.checks.iter().all(|c| c.passed)
    }
}

/// Whether `bytes` look like a bundle manifest (an envelope whose payload
/// claims the bundle predicate), before any verification: only to tell
/// `decant verify` which verifier to run. Nothing read here is trusted.
pub fn claims_bundle_predicate(bytes: &[u8]) -> bool {
    super::verify::any_unverified_payload(bytes, |v| {
        v.get("predicateType").and_then(Value::as_str) == Some(PREDICATE_TYPE)
    })
}

/// Steps 1 to 4 for every envelope; the first that authenticates.
pub fn authenticate(
    bytes: &[u8],
    keys: &[VerifyingKey],
) -> (Vec<Check>, Option<Verified<BundleStatement>>) {
    let envelopes = match split_envelopes(bytes) {
        Ok(e) => e,
        Err(why) => {
            let mut checks = vec![Check::fail(CheckName::Envelope, why)];
            for name in [
                CheckName::PayloadType,
                CheckName::Signature,
                CheckName::Statement,
            ] {
                checks.push(Check::fail(name, "not checked: no envelope"));
            }
            return (checks, None);
        }
    };
    let mut first_checks = None;
    for (index, (_, parsed)) in envelopes.into_iter().enumerate() {
        let mut checks = Vec::new();
        let statement = match parsed {
            Ok(env) => authenticate_envelope(&env, keys, &mut checks),
            Err(why) => {
                checks.push(Check::fail(CheckName::Envelope, why));
                None
            }
        };
        if let Some((statement, signer)) = statement {
            return (checks, Some(Verified::new(statement, signer, index)));
        }
        first_checks.get_or_insert(checks);
    }
    let mut checks = first_checks.unwrap_or_default();
    for name in [
        CheckName::Envelope,
        CheckName::PayloadType,
        CheckName::Signature,
        CheckName::Statement,
    ] {
        if !checks.iter().any(|c| c.name == name) {
            checks.push(Check::fail(name, "not checked: an earlier step failed"));
        }
    }
    (checks, None)
}

fn authenticate_envelope(
    env: &dsse::Envelope,
    keys: &[VerifyingKey],
    checks: &mut Vec<Check>,
) -> Option<(BundleStatement, usize)> {
    if env.signatures.len() > super::verify::MAX_SIGNATURES {
        checks.push(Check::fail(
            CheckName::Envelope,
            format!(
                "the envelope has {} signatures, more than the {} decant checks",
                env.signatures.len(),
                super::verify::MAX_SIGNATURES
            ),
        ));
        return None;
    }
    checks.push(Check::pass(CheckName::Envelope, "DSSE envelope"));
    let verified = match dsse::verify(env, keys) {
        Ok(v) => v,
        Err(dsse::VerifyFailure::UnsupportedPayloadType(found)) => {
            checks.push(Check::fail(
                CheckName::PayloadType,
                format!("expected {}, found {found:?}", dsse::PAYLOAD_TYPE),
            ));
            return None;
        }
        Err(e) => {
            checks.push(Check::pass(CheckName::PayloadType, dsse::PAYLOAD_TYPE));
            checks.push(Check::fail(CheckName::Signature, e.to_string()));
            return None;
        }
    };
    checks.push(Check::pass(CheckName::PayloadType, dsse::PAYLOAD_TYPE));
    let fingerprint = keys
        .get(verified.key_index)
        .map(super::keys::fingerprint)
        .unwrap_or_default();
    checks.push(Check::pass(
        CheckName::Signature,
        format!("signed by trusted key {fingerprint}"),
    ));
    // From here on only the verified bytes are read.
    let parsed = check_unique_keys(&verified.payload)
        .and_then(|()| {
            serde_json::from_slice::<BundleStatement>(&verified.payload).map_err(|e| e.to_string())
        })
        .and_then(|s| {
            if s.type_ != STATEMENT_TYPE || s.predicate_type != PREDICATE_TYPE {
                Err(format!(
                    "expected _type {STATEMENT_TYPE} and predicateType {PREDICATE_TYPE}, found {:?} and {:?}",
                    s.type_, s.predicate_type
                ))
            } else {
                Ok(s)
            }
        });
    match parsed {
        Ok(statement) => {
            checks.push(Check::pass(
                CheckName::Statement,
                format!("in-toto Statement v1 with {PREDICATE_TYPE}"),
            ));
            Some((statement, verified.key_index))
        }
        Err(why) => {
            checks.push(Check::fail(
                CheckName::Statement,
                format!("not a decant bundle manifest: {why}"),
            ));
            None
        }
    }
}

/// Verifies a manifest against a directory: steps 1 to 7.
pub fn verify(req: &BundleRequest<'_>) -> BundleVerdict {
    let (mut checks, manifest) = authenticate(req.manifest, req.keys);
    let Some(m) = manifest.as_ref() else {
        for name in [CheckName::Subject, CheckName::Bindings, CheckName::Findings] {
            checks.push(Check::fail(name, super::verify::NOT_CHECKED));
        }
        return BundleVerdict { checks, manifest };
    };
    checks.push(subject_check(m, req.files));
    checks.push(bindings_check(m, req.required));
    checks.push(findings_check(m, req.fail_on));
    BundleVerdict { checks, manifest }
}

fn subject_check(m: &BundleStatement, files: &DirectoryFiles) -> Check {
    let mut subjects: BTreeMap<&str, &Sha256Hex> = BTreeMap::new();
    let mut repeated = Vec::new();
    for s in &m.subject {
        if subjects.insert(&s.name, &s.digest.sha256).is_some() {
            repeated.push(s.name.clone());
        }
    }
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, sha) in &files.files {
        seen.insert(path.as_str());
        match subjects.get(path.as_str()) {
            None => added.push(path.clone()),
            Some(expected) if *expected != sha => {
                changed.push(format!("{path} (expected sha256 {expected}, found {sha})"))
            }
            Some(_) => {}
        }
    }
    let missing: Vec<String> = subjects
        .keys()
        .filter(|n| !seen.contains(*n))
        .map(|n| n.to_string())
        .collect();
    let mut problems = Vec::new();
    if !repeated.is_empty() {
        problems.push(format!("subjects named twice: {}", list(&repeated)));
    }
    if !changed.is_empty() {
        problems.push(format!("changed since attested: {}", list(&changed)));
    }
    if !added.is_empty() {
        problems.push(format!("not in the manifest: {}", list(&added)));
    }
    if !missing.is_empty() {
        problems.push(format!("in the manifest but missing: {}", list(&missing)));
    }
    if !files.problems.is_empty() {
        problems.push(list(&files.problems));
    }
    if problems.is_empty() {
        Check::pass(
            CheckName::Subject,
            format!(
                "all {} files are subjects with their digests, and nothing else is there{}",
                files.files.len(),
                files.side_files_note()
            ),
        )
    } else {
        Check::fail(CheckName::Subject, problems.join("; "))
    }
}

fn bindings_check(m: &BundleStatement, required: &[(String, Option<String>)]) -> Check {
    let bound = &m.predicate.bindings;
    let mut problems = Vec::new();
    for (name, value) in required {
        match (bound.get(name), value) {
            (None, _) => problems.push(format!("{name}: required, not bound")),
            (Some(b), Some(v)) if &b.value != v => {
                problems.push(format!("{name}: expected {v:?}, found {:?}", b.value))
            }
            (Some(b), _) if b.mutable => problems.push(format!(
                "{name}: bound to {:?}, a revision that can move (attested with --allow-mutable)",
                b.value
            )),
            _ => {}
        }
    }
    if problems.is_empty() {
        let names: Vec<String> = bound
            .iter()
            .map(|(k, b)| format!("{k}={}", b.value))
            .collect();
        Check::pass(
            CheckName::Bindings,
            if required.is_empty() {
                format!(
                    "none required; bound: {}",
                    if names.is_empty() {
                        "nothing".into()
                    } else {
                        list(&names)
                    }
                )
            } else {
                format!("{} required, all bound: {}", required.len(), list(&names))
            },
        )
    } else {
        Check::fail(CheckName::Bindings, problems.join("; "))
    }
}

fn findings_check(m: &BundleStatement, fail_on: Severity) -> Check {
    let over: Vec<String> = m
        .predicate
        .findings
        .iter()
        .filter(|f| f.severity >= fail_on)
        .map(|f| format!("{} {} ({})", f.severity, f.file, f.kind))
        .collect();
    if over.is_empty() {
        let worst = m.predicate.findings.iter().map(|f| f.severity).max();
        Check::pass(
            CheckName::Findings,
            format!(
                "{} recorded, none at or above {fail_on} (highest: {})",
                m.predicate.findings.len(),
                worst.map_or("none", Severity::as_str)
            ),
        )
    } else {
        Check::fail(
            CheckName::Findings,
            format!(
                "expected none at or above {fail_on}, found {}: {}",
                over.len(),
                list(&over)
            ),
        )
    }
}

/// The largest manifest decant writes or reads (a receipt's limit).
pub const MAX_MANIFEST_BYTES: usize = MAX_RECEIPT_BYTES;
