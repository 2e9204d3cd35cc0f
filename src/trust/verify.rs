//! Verifying a receipt: numbered steps, each reported as a check with what
//! was expected and what was found, and a verified statement that only this
//! module can construct.
//!
//! The steps, in order (docs/RECEIPTS.md):
//!
//! 1. `envelope`: the receipt is at most [`MAX_RECEIPT_BYTES`] and parses as
//!    a DSSE envelope (or JSON Lines of envelopes).
//! 2. `payload_type`: `application/vnd.in-toto+json`.
//! 3. `signature`: a signature verifies with one of the trusted keys. Only
//!    the bytes it covers are read from here on.
//! 4. `statement`: an in-toto Statement v1 with SLSA provenance v1.
//! 5. `build_type`: decant's build type, and the statement parses as
//!    decant's schema ([`super::statement`]: no unknown or duplicate
//!    fields), every report byproduct matching its digest.
//! 6. `builder`: decant's builder id.
//! 7. `converter`: exactly one converter, and a trusted one.
//! 8. `subject`: the artifact's digest is a subject; for a directory, every
//!    file in it is a subject with its digest and every subject is there.
//! 9. `source`, `policy`: the pins the caller asked for.
//!
//! Steps 1 to 7 authenticate the statement: only when all pass does a
//! [`Verified<Statement>`] exist, which is what `--reproduce`, `--source
//! DIR` and directory reuse take. A [`Verdict`] passes only if every check
//! ran and passed, including the ones the caller declared it would add
//! ([`Request::caller_checks`]): a check cannot pass by being left out.

pub use super::dsse::MAX_RECEIPT_BYTES;
use super::dsse::{self, Envelope, VerifyFailure};
use super::keys;
use super::statement::{
    Sha256Hex, Statement, BUILDER_ID, BUILD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE,
};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::ops::Deref;

/// The checks, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    Envelope,
    PayloadType,
    Signature,
    Statement,
    BuildType,
    Builder,
    Converter,
    Subject,
    Source,
    Policy,
    /// `decant verify --reproduce`.
    Reproduce,
    /// A bundle manifest: the bindings `--require` asks for.
    Bindings,
    /// A bundle manifest: its recorded findings against `--fail-on`.
    Findings,
    /// A set of shard receipts: steps 1 to 7 (and pins) for one of them.
    Receipt,
    /// A set of shard receipts: one plan, every shard with work present.
    Shards,
}

impl CheckName {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Envelope => "envelope",
            CheckName::PayloadType => "payload_type",
            CheckName::Signature => "signature",
            CheckName::Statement => "statement",
            CheckName::BuildType => "build_type",
            CheckName::Builder => "builder",
            CheckName::Converter => "converter",
            CheckName::Subject => "subject",
            CheckName::Source => "source",
            CheckName::Policy => "policy",
            CheckName::Reproduce => "reproduce",
            CheckName::Bindings => "bindings",
            CheckName::Findings => "findings",
            CheckName::Receipt => "receipt",
            CheckName::Shards => "shards",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Detail of a check that could not run because the receipt did not
/// authenticate (steps 1 to 7).
pub const NOT_CHECKED: &str = "not checked: the receipt did not authenticate";

/// How many names or digests a detail lists before counting the rest.
const LISTED: usize = 8;

/// Most envelopes in one receipt file, and signatures in one envelope: each
/// signature is checked against every trusted key over the whole payload,
/// so without a cap a 16 MiB receipt of repeated wrong signatures costs
/// minutes of CPU. decant writes one envelope with one signature.
pub const MAX_ENVELOPES: usize = 64;
pub const MAX_SIGNATURES: usize = 16;

/// One verification check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub passed: bool,
    /// What was expected and what was found.
    pub detail: String,
}

impl Check {
    pub fn pass(name: CheckName, detail: impl Into<String>) -> Self {
        Check {
            name,
            passed: true,
            detail: detail.into(),
        }
    }
    pub fn fail(name: CheckName, detail: impl Into<String>) -> Self {
        Check {
            name,
            passed: false,
            detail: detail.into(),
        }
    }
}

/// A value whose signature verified with a trusted key and that passed
/// every authentication step. Its fields are private and it is built only
/// here, so holding one is proof the checks ran.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    value: T,
    signer: usize,
    envelope: usize,
}

impl<T> Verified<T> {
    /// Only the trust core's verifiers make one, after every
    /// authentication step passed.
    pub(super) fn new(value: T, signer: usize, envelope: usize) -> Self {
        Verified {
            value,
            signer,
            envelope,
        }
    }

    /// Index into the trusted keys of the key that signed.
    pub fn signer(&self) -> usize {
        self.signer
    }
    /// Which envelope of the receipt file (0-based) this came from.
    pub fn envelope(&self) -> usize {
        self.envelope
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Who may sign and what may have converted.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// Public keys whose signatures are accepted (any one suffices).
    pub keys: &'a [VerifyingKey],
    /// Converter digests accepted: the embedded guest's plus any
    /// `--allow-converter`.
    pub converters: &'a [Sha256Hex],
}

/// What is being promoted.
#[derive(Debug, Clone)]
pub enum Artifact {
    /// One file, by digest (a renamed file is still the file).
    File(Sha256Hex),
    /// A directory as served (see [`crate::served`]).
    Directory(DirectoryFiles),
}

/// Every regular file under a directory, and what else is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryFiles {
    /// (path relative to the directory with `/` separators, sha256), sorted.
    pub files: Vec<(String, Sha256Hex)>,
    /// Entries that make the directory unverifiable: symlinks, special
    /// files, names that are not UTF-8.
    pub problems: Vec<String>,
    /// Signature side files left out, as the receipt is: the root
    /// `model.sig` (an OpenSSF model signature, which covers the files and
    /// the receipt, so it cannot be covered by them).
    pub side_files: Vec<String>,
}

impl DirectoryFiles {
    /// What a passing subject check adds about the side files left out.
    pub fn side_files_note(&self) -> String {
        if self.side_files.is_empty() {
            return String::new();
        }
        format!(
            "; left out: {} (OpenSSF model signature, not covered: check it with model_signing verify key)",
            self.side_files.join(", ")
        )
    }
}

/// What to verify.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub artifact: &'a Artifact,
    /// The receipt file's bytes: one envelope, or JSON Lines of envelopes.
    pub receipt: &'a [u8],
    pub trust: Trust<'a>,
    /// `--source FILE` / `--source-sha256`: the source the receipt must name.
    pub source_sha256_pin: Option<Sha256Hex>,
    /// `--policy-sha256`: the sandbox policy the receipt must name.
    pub policy_sha256_pin: Option<Sha256Hex>,
    /// Checks the caller will add from the verified statement (`--source
    /// DIR`, `--reproduce`); the verdict fails until each is added.
    pub caller_checks: &'a [CheckName],
}

/// The outcome of verifying a receipt.
#[derive(Debug, Clone)]
pub struct Verdict {
    checks: Vec<Check>,
    statement: Option<Verified<Statement>>,
    awaiting: Vec<CheckName>,
}

impl Verdict {
    /// A verdict from checks made elsewhere in the trust core.
    pub(super) fn from_parts(checks: Vec<Check>, statement: Option<Verified<Statement>>) -> Self {
        Verdict {
            checks,
            statement,
            awaiting: Vec::new(),
        }
    }

    /// Every check, in order.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// The authenticated statement (steps 1 to 7 passed), whatever the
    /// subject and pins said.
    pub fn statement(&self) -> Option<&Verified<Statement>> {
        self.statement.as_ref()
    }

    /// Adds a check the caller declared in [`Request::caller_checks`].
    pub fn add(&mut self, check: Check) {
        self.awaiting.retain(|n| *n != check.name);
        self.checks.push(check);
    }

    /// Whether the receipt vouches for the artifact: authenticated, every
    /// declared check present, every check passed.
    pub fn passed(&self) -> bool {
        self.statement.is_some()
            && self.awaiting.is_empty()
            && !self.checks.is_empty()
            && self.checks.iter().all(|c| c.passed)
    }

    /// Names of the failed checks, and of declared checks never added.
    pub fn failed(&self) -> Vec<CheckName> {
        let mut failed: Vec<CheckName> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        failed.extend(self.awaiting.iter().copied());
        failed
    }
}

/// Steps 1 to 7 for a receipt file: the first envelope that authenticates,
/// or `None`. Used where the caller needs a trusted statement and no
/// artifact is being promoted (directory reuse).
pub fn authenticate(receipt: &[u8], trust: Trust<'_>) -> Option<Verified<Statement>> {
    let Ok(envelopes) = split_envelopes(receipt) else {
        return None;
    };
    envelopes
        .into_iter()
        .enumerate()
        .find_map(|(index, (_, parsed))| {
            let env = parsed.ok()?;
            let (statement, signer) = authenticate_envelope(trust, &env, "", &mut Vec::new())?;
            Some(Verified {
                value: statement,
                signer: signer?,
                envelope: index,
            })
        })
}

/// Verifies a receipt against an artifact. A receipt file with several
/// envelopes (JSON Lines) passes if any one envelope passes every check;
/// the `envelope` check says which was chosen.
pub fn verify(req: &Request<'_>) -> Verdict {
    let envelopes = match split_envelopes(req.receipt) {
        Ok(e) => e,
        Err(why) => return unparsed(req, why),
    };
    let total = envelopes.len();
    let mut best: Option<Verdict> = None;
    for (index, (line, parsed)) in envelopes.into_iter().enumerate() {
        let where_ = if total > 1 {
            format!("envelope {} of {total} (line {line}): ", index + 1)
        } else {
            String::new()
        };
        let mut v = match parsed {
            Ok(env) => verify_envelope(req, &env, &where_, index),
            Err(why) => unparsed(req, format!("{where_}{why}")),
        };
        let all_passed = v.checks.iter().all(|c| c.passed) && v.statement.is_some();
        if all_passed {
            if total > 1 {
                annotate_first(
                    &mut v,
                    " (the first envelope that passed every check)".into(),
                );
            }
            return v;
        }
        let score = |v: &Verdict| v.checks.iter().filter(|c| c.passed).count();
        if best.as_ref().is_none_or(|b| score(&v) > score(b)) {
            best = Some(v);
        }
    }
    let mut v = best.unwrap_or_else(|| unparsed(req, "the receipt is empty".into()));
    if total > 1 {
        annotate_first(
            &mut v,
            format!(
                " (none of the {total} envelopes passed every check; showing the one that passed most)"
            ),
        );
    }
    v
}

fn annotate_first(v: &mut Verdict, note: String) {
    if let Some(first) = v.checks.first_mut() {
        first.detail.push_str(&note);
    }
}

pub(super) type Parsed = (usize, Result<Envelope, String>);

/// Whether any envelope's payload, parsed as JSON without checking its
/// signature, satisfies `claim`: only for choosing which verifier to run,
/// never for a decision.
pub(super) fn any_unverified_payload(bytes: &[u8], claim: impl Fn(&Value) -> bool) -> bool {
    let Ok(envelopes) = split_envelopes(bytes) else {
        return false;
    };
    envelopes.iter().any(|(_, env)| {
        env.as_ref()
            .ok()
            .and_then(|e| dsse::decode_base64(&e.payload).ok())
            .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
            .is_some_and(|v| claim(&v))
    })
}

/// One envelope (a JSON document, possibly pretty-printed) or JSON Lines of
/// envelopes, each with its 1-based line number.
pub(super) fn split_envelopes(bytes: &[u8]) -> Result<Vec<Parsed>, String> {
    if bytes.len() > MAX_RECEIPT_BYTES {
        return Err(format!(
            "the receipt is more than the {MAX_RECEIPT_BYTES} bytes a receipt may have"
        ));
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(bytes) {
        return Ok(vec![(1, Ok(env))]);
    }
    // JSON Lines: every non-blank line must be an envelope. A receipt file
    // that also carries other lines is refused whole: it would be a file
    // whose bytes mean something to another reader (a receipt kept inside
    // a model directory is served with it).
    let mut lines: Vec<Parsed> = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        if lines.len() == MAX_ENVELOPES {
            return Err(format!(
                "the receipt holds more than {MAX_ENVELOPES} envelopes"
            ));
        }
        let env = serde_json::from_slice::<Envelope>(line).map_err(|e| {
            if super::oms::is_sigstore_bundle(line) {
                format!(
                    "line {} is a sigstore bundle (an OpenSSF model.sig?), not a DSSE envelope: check a model.sig with model_signing verify key",
                    i + 1
                )
            } else {
                format!("line {} is not a DSSE envelope: {e}", i + 1)
            }
        })?;
        lines.push((i + 1, Ok(env)));
    }
    if lines.is_empty() {
        return Err("the receipt is empty".into());
    }
    Ok(lines)
}

/// The checks after step 3, in order, for this request.
fn later_checks(req: &Request<'_>) -> Vec<CheckName> {
    let mut names = vec![
        CheckName::Statement,
        CheckName::BuildType,
        CheckName::Builder,
        CheckName::Converter,
        CheckName::Subject,
    ];
    if req.source_sha256_pin.is_some() {
        names.push(CheckName::Source);
    }
    if req.policy_sha256_pin.is_some() {
        names.push(CheckName::Policy);
    }
    names
}

fn verdict(
    req: &Request<'_>,
    checks: Vec<Check>,
    statement: Option<Verified<Statement>>,
) -> Verdict {
    Verdict {
        checks,
        statement,
        awaiting: req.caller_checks.to_vec(),
    }
}

/// The checks for an envelope that could not be parsed.
fn unparsed(req: &Request<'_>, why: String) -> Verdict {
    let mut checks = vec![Check::fail(CheckName::Envelope, why)];
    for name in [CheckName::PayloadType, CheckName::Signature] {
        checks.push(Check::fail(name, "not checked: the envelope did not parse"));
    }
    for name in later_checks(req) {
        checks.push(Check::fail(name, NOT_CHECKED));
    }
    verdict(req, checks, None)
}

fn describe_key(index: usize, key: Option<&VerifyingKey>) -> String {
    match key {
        Some(key) => format!(
            "trusted key #{} (fingerprint sha256:{}, keyid {})",
            index + 1,
            keys::fingerprint(key),
            keys::keyid(key)
        ),
        None => format!("trusted key #{}", index + 1),
    }
}

fn verify_envelope(req: &Request<'_>, env: &Envelope, where_: &str, index: usize) -> Verdict {
    let mut checks = Vec::new();
    let Some((parsed, signer)) = authenticate_envelope(req.trust, env, where_, &mut checks) else {
        // Authentication stopped before a statement parsed: the rest did
        // not run.
        for name in later_checks(req) {
            if !checks.iter().any(|c| c.name == name) {
                checks.push(Check::fail(name, NOT_CHECKED));
            }
        }
        return verdict(req, checks, None);
    };
    // The statement parsed from signed bytes. The remaining checks are
    // reported even when the builder or converter failed, but only an
    // authenticated statement can pass the verdict.
    checks.push(subject_check(req.artifact, &parsed));
    if let Some(pin) = &req.source_sha256_pin {
        checks.push(source_check(pin, &parsed, req.artifact));
    }
    if let Some(pin) = &req.policy_sha256_pin {
        checks.push(policy_check(pin, &parsed));
    }
    let statement = signer.map(|signer| Verified {
        value: parsed,
        signer,
        envelope: index,
    });
    verdict(req, checks, statement)
}

/// Steps 1 to 7 for one envelope; pushes their checks. Returns the
/// statement once it parsed from signed bytes (steps 1 to 5), with the
/// index of the key that signed if steps 6 and 7 passed too.
fn authenticate_envelope(
    trust: Trust<'_>,
    env: &Envelope,
    where_: &str,
    checks: &mut Vec<Check>,
) -> Option<(Statement, Option<usize>)> {
    let signatures = env.signatures.len();
    if signatures > MAX_SIGNATURES {
        checks.push(Check::fail(
            CheckName::Envelope,
            format!("{where_}the envelope has {signatures} signatures, more than the {MAX_SIGNATURES} decant checks"),
        ));
        for name in [CheckName::PayloadType, CheckName::Signature] {
            checks.push(Check::fail(name, "not checked: too many signatures"));
        }
        return None;
    }
    let verified = dsse::verify(env, trust.keys);
    match &verified {
        Err(e @ VerifyFailure::MalformedPayload(_)) => {
            checks.push(Check::fail(CheckName::Envelope, format!("{where_}{e}")));
            for name in [CheckName::PayloadType, CheckName::Signature] {
                checks.push(Check::fail(
                    name,
                    "not checked: the envelope's payload is malformed",
                ));
            }
        }
        other => {
            checks.push(Check::pass(
                CheckName::Envelope,
                format!(
                    "{where_}DSSE envelope with {signatures} signature{}",
                    if signatures == 1 { "" } else { "s" }
                ),
            ));
            if let Err(VerifyFailure::UnsupportedPayloadType(found)) = other {
                checks.push(Check::fail(
                    CheckName::PayloadType,
                    format!("expected {}, found {found:?}", dsse::PAYLOAD_TYPE),
                ));
                checks.push(Check::fail(
                    CheckName::Signature,
                    "not checked: unsupported payloadType",
                ));
            } else {
                checks.push(Check::pass(CheckName::PayloadType, dsse::PAYLOAD_TYPE));
                checks.push(signature_check(trust, env, other));
            }
        }
    }
    let verified = verified.ok()?;

    // From here on only the verified bytes are read.
    let header: Value = match serde_json::from_slice(&verified.payload) {
        Ok(v) => v,
        Err(e) => {
            checks.push(Check::fail(
                CheckName::Statement,
                format!("the signed payload is not JSON: {e}"),
            ));
            return None;
        }
    };
    let type_ = header.get("_type").and_then(Value::as_str);
    let predicate_type = header.get("predicateType").and_then(Value::as_str);
    if type_ != Some(STATEMENT_TYPE) || predicate_type != Some(PREDICATE_TYPE) {
        // Other statement types give these fields other meanings (in-toto:
        // consumers rely only on predicateType), so nothing else is read.
        checks.push(Check::fail(
            CheckName::Statement,
            format!(
                "expected _type {STATEMENT_TYPE} and predicateType {PREDICATE_TYPE}, found {} and {}",
                shown(type_),
                shown(predicate_type)
            ),
        ));
        return None;
    }
    checks.push(Check::pass(
        CheckName::Statement,
        "in-toto Statement v1 with SLSA provenance v1",
    ));
    let build_type = header
        .get("predicate")
        .and_then(|p| p.get("buildDefinition"))
        .and_then(|b| b.get("buildType"))
        .and_then(Value::as_str);
    if build_type != Some(BUILD_TYPE) {
        checks.push(Check::fail(
            CheckName::BuildType,
            format!("expected {BUILD_TYPE}, found {}", shown(build_type)),
        ));
        return None;
    }
    if let Err(e) = super::statement::check_unique_keys(&verified.payload) {
        checks.push(Check::fail(
            CheckName::BuildType,
            format!("the statement does not follow {BUILD_TYPE}: {e}"),
        ));
        return None;
    }
    let statement = match serde_json::from_slice::<Statement>(&verified.payload) {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::fail(
                CheckName::BuildType,
                format!("the statement does not follow {BUILD_TYPE}: {e}"),
            ));
            return None;
        }
    };
    if let Err(why) = statement.check_names() {
        checks.push(Check::fail(
            CheckName::BuildType,
            format!("the statement does not follow {BUILD_TYPE}: {why}"),
        ));
        return None;
    }
    let bad_reports: Vec<&str> = statement
        .predicate
        .run_details
        .byproducts
        .iter()
        .filter(|b| !b.digest_matches())
        .map(|b| b.name.as_str())
        .collect();
    if !bad_reports.is_empty() {
        checks.push(Check::fail(
            CheckName::BuildType,
            format!(
                "the digest of report byproduct {} does not match its content",
                list(&bad_reports)
            ),
        ));
        return None;
    }
    checks.push(Check::pass(CheckName::BuildType, BUILD_TYPE));
    let builder = builder_check(&statement);
    let converter = converter_check(trust, &statement);
    let authentic = builder.passed && converter.passed;
    checks.push(builder);
    checks.push(converter);
    Some((statement, authentic.then_some(verified.key_index)))
}

fn signature_check(
    trust: Trust<'_>,
    env: &Envelope,
    result: &Result<dsse::VerifiedPayload, VerifyFailure>,
) -> Check {
    match result {
        Ok(v) => Check::pass(
            CheckName::Signature,
            format!(
                "signature {} of {} verified by {}",
                v.signature_index + 1,
                env.signatures.len(),
                describe_key(v.key_index, trust.keys.get(v.key_index))
            ),
        ),
        Err(e) => {
            if trust.keys.is_empty() {
                return Check::fail(CheckName::Signature, "no trusted keys were given");
            }
            // The keyids are unauthenticated, but showing them next to the
            // trusted keys' ids helps find the right key.
            let hints: Vec<&str> = env
                .signatures
                .iter()
                .map(|s| s.keyid.as_str())
                .filter(|k| !k.is_empty())
                .take(LISTED)
                .collect();
            let trusted: Vec<String> = trust.keys.iter().map(keys::keyid).take(LISTED).collect();
            Check::fail(
                CheckName::Signature,
                format!(
                    "{e}; the envelope names keyids [{}], the trusted keys have keyids [{}]",
                    hints.join(", "),
                    trusted.join(", ")
                ),
            )
        }
    }
}

fn shown(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("{s:?}"),
        None => "nothing".into(),
    }
}

/// Lists items for a detail, counting those after [`LISTED`].
pub(super) fn list<T: AsRef<str>>(items: &[T]) -> String {
    list_at_most(items, LISTED, ", ")
}

fn list_at_most<T: AsRef<str>>(items: &[T], most: usize, separator: &str) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let mut s = items
        .iter()
        .take(most)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(separator);
    if items.len() > most {
        s.push_str(&format!(" and {} more", items.len() - most));
    }
    s
}

fn builder_check(s: &Statement) -> Check {
    let builder = &s.predicate.run_details.builder;
    if builder.id != BUILDER_ID {
        return Check::fail(
            CheckName::Builder,
            format!("expected builder id {BUILDER_ID}, found {:?}", builder.id),
        );
    }
    Check::pass(
        CheckName::Builder,
        format!("{BUILDER_ID}, decant {}", builder.version.decant),
    )
}

fn converter_check(trust: Trust<'_>, s: &Statement) -> Check {
    let found = match s.converter() {
        Ok(c) => &c.digest.sha256,
        Err(why) => return Check::fail(CheckName::Converter, why),
    };
    if trust.converters.contains(found) {
        Check::pass(
            CheckName::Converter,
            format!("converter sha256 {found} is trusted"),
        )
    } else {
        let trusted: Vec<&str> = trust.converters.iter().map(Sha256Hex::as_str).collect();
        Check::fail(
            CheckName::Converter,
            format!(
                "converter sha256 {found} is not trusted (trusted: {}); pass --allow-converter {found} to accept it",
                list(&trusted)
            ),
        )
    }
}

fn subject_check(artifact: &Artifact, s: &Statement) -> Check {
    match artifact {
        Artifact::File(want) => file_subject_check(want, s),
        Artifact::Directory(files) => directory_subject_check(files, s),
    }
}

fn file_subject_check(want: &Sha256Hex, s: &Statement) -> Check {
    // Matched by digest only (in-toto): a renamed file is still the file.
    match s.subject.iter().find(|sub| sub.digest.sha256 == *want) {
        Some(sub) => Check::pass(
            CheckName::Subject,
            format!("the artifact (sha256 {want}) is subject {:?}", sub.name),
        ),
        None => {
            let found: Vec<String> = s
                .subject
                .iter()
                .map(|sub| format!("{} {}", sub.name, sub.digest.sha256))
                .collect();
            Check::fail(
                CheckName::Subject,
                format!(
                    "expected a subject with sha256 {want}, found {}",
                    list(&found)
                ),
            )
        }
    }
}

/// How many problems a directory's subject check lists.
const LISTED_PROBLEMS: usize = 20;

/// A directory is vouched for only as served: every file in it a subject
/// with its digest, every subject present, nothing else there.
fn directory_subject_check(dir: &DirectoryFiles, s: &Statement) -> Check {
    if let Some(p) = &s.predicate.build_definition.external_parameters.shard {
        // One shard's receipt vouches for its part only: on its own it
        // cannot show that the other shards' outputs are all there.
        return Check::fail(
            CheckName::Subject,
            format!(
                "the receipt is shard {}/{} of plan {}, which covers part of a directory; verify the directory with the receipts of every shard with work in it ({}) together, in one --receipt",
                p.shard,
                p.count,
                p.plan,
                list(&p.directory_shards.iter().map(|i| format!("{i}/{}", p.count)).collect::<Vec<_>>())
            ),
        );
    }
    let mut problems = dir.problems.clone();
    for (name, sha) in &dir.files {
        match s.subject(name) {
            None => problems.push(format!("{name} (sha256 {sha}) is not a subject")),
            Some(sub) if sub.digest.sha256 != *sha => problems.push(format!(
                "{name} has sha256 {sha}, the receipt says {}",
                sub.digest.sha256
            )),
            Some(_) => {}
        }
    }
    for sub in &s.subject {
        if !dir.files.iter().any(|(n, _)| *n == sub.name) {
            problems.push(format!(
                "subject {} is missing from the directory",
                sub.name
            ));
        }
    }
    subject_problems(
        problems,
        format!(
            "all {} files in the directory are the receipt's subjects, with their digests{}",
            dir.files.len(),
            dir.side_files_note()
        ),
    )
}

/// The subject check of a directory: passes with `passed` if nothing is
/// wrong, else lists what is.
pub(super) fn subject_problems(problems: Vec<String>, passed: String) -> Check {
    if problems.is_empty() {
        Check::pass(CheckName::Subject, passed)
    } else {
        Check::fail(
            CheckName::Subject,
            format!(
                "{} problem{}: {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                list_at_most(&problems, LISTED_PROBLEMS, "; ")
            ),
        )
    }
}

fn source_check(want: &Sha256Hex, s: &Statement, artifact: &Artifact) -> Check {
    let sources: Vec<&Sha256Hex> = s.sources().map(|(d, _)| &d.digest.sha256).collect();
    if matches!(artifact, Artifact::File(_)) && sources.len() != 1 {
        // A directory receipt does not say which source made which output,
        // so a pinned source proves nothing about one file of it.
        return Check::fail(
            CheckName::Source,
            format!(
                "the receipt names {} sources and does not say which one made this file; verify the directory with --source DIR",
                sources.len()
            ),
        );
    }
    if sources.contains(&want) {
        Check::pass(CheckName::Source, format!("source sha256 {want} as pinned"))
    } else {
        let found: Vec<&str> = sources.iter().map(|d| d.as_str()).collect();
        Check::fail(
            CheckName::Source,
            format!("expected source sha256 {want}, found {}", list(&found)),
        )
    }
}

fn policy_check(want: &Sha256Hex, s: &Statement) -> Check {
    let found = s.policy_sha256();
    if found == want {
        Check::pass(
            CheckName::Policy,
            format!("sandbox policy sha256 {found} as pinned"),
        )
    } else {
        Check::fail(
            CheckName::Policy,
            format!("expected sandbox policy sha256 {want}, found {found}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::receipt::{self, tests::sample_statement};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use ed25519_dalek::SigningKey;
    use CheckName::*;

    const ARTIFACT: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SOURCE_SHA: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const CONVERTER_SHA: &str = "3333333333333333333333333333333333333333333333333333333333333333";

    fn sha(s: &str) -> Sha256Hex {
        Sha256Hex::parse(s).unwrap()
    }

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand_core::OsRng)
    }

    fn policy() -> Policy {
        Policy::default_policy().unwrap()
    }

    fn statement_for(artifact: &str) -> super::Statement {
        sample_statement(artifact, SOURCE_SHA, CONVERTER_SHA, &policy())
    }

    fn sign_value(v: &Value, key: &SigningKey) -> String {
        receipt::to_line(&dsse::sign(&serde_json::to_vec(v).unwrap(), key))
    }

    fn receipt_for(artifact: &str, key: &SigningKey) -> String {
        receipt::to_line(&receipt::sign_statement(&statement_for(artifact), key))
    }

    /// Runs `f` with a request for ARTIFACT, pinned to SOURCE_SHA and the
    /// default policy, trusting `key` and CONVERTER_SHA.
    fn verify_with<'a>(
        receipt: &'a str,
        key: &SigningKey,
        f: impl FnOnce(&mut Request<'a>),
    ) -> Verdict {
        // Leaked so a test's closure can swap in its own (tests only).
        let keys: &'static [VerifyingKey] = Box::leak(Box::new([key.verifying_key()]));
        let converters: &'static [Sha256Hex] = Box::leak(Box::new([sha(CONVERTER_SHA)]));
        let artifact: &'static Artifact = Box::leak(Box::new(Artifact::File(sha(ARTIFACT))));
        let mut req = Request {
            artifact,
            receipt: receipt.as_bytes(),
            trust: Trust { keys, converters },
            source_sha256_pin: Some(sha(SOURCE_SHA)),
            policy_sha256_pin: Some(policy().sha256),
            caller_checks: &[],
        };
        f(&mut req);
        verify(&req)
    }

    /// The named check is the first to fail; before it all passed; after a
    /// failure that stops authentication nothing else is checked, otherwise
    /// nothing else fails.
    fn fails_at(v: &Verdict, name: CheckName) {
        let checks = v.checks();
        let first = checks
            .iter()
            .position(|c| !c.passed)
            .unwrap_or_else(|| panic!("expected {name} to fail: {checks:#?}"));
        assert_eq!(checks[first].name, name, "{checks:#?}");
        assert!(!checks[first].detail.is_empty());
        for c in &checks[first + 1..] {
            if matches!(
                name,
                Envelope | PayloadType | Signature | Statement | BuildType
            ) {
                assert!(!c.passed && c.detail.starts_with("not checked"), "{c:?}");
            } else {
                assert!(c.passed, "only {name} should fail: {checks:#?}");
            }
        }
        assert!(!v.passed());
        assert_eq!(v.failed().first(), Some(&name));
    }

    fn names(v: &Verdict) -> Vec<CheckName> {
        v.checks().iter().map(|c| c.name).collect()
    }

    fn detail(v: &Verdict, name: CheckName) -> &str {
        &v.checks().iter().find(|c| c.name == name).unwrap().detail
    }

    fn mutate_envelope(line: &str, f: impl FnOnce(&mut dsse::Envelope)) -> String {
        let mut env: dsse::Envelope = serde_json::from_str(line.trim()).unwrap();
        f(&mut env);
        receipt::to_line(&env)
    }

    #[test]
    fn a_good_receipt_passes_every_check() {
        let k = key();
        let line = receipt_for(ARTIFACT, &k);
        let v = verify_with(&line, &k, |_| {});
        assert!(v.passed(), "{:#?}", v.checks());
        assert_eq!(
            names(&v),
            [
                Envelope,
                PayloadType,
                Signature,
                Statement,
                BuildType,
                Builder,
                Converter,
                Subject,
                Source,
                Policy
            ]
        );
        assert!(detail(&v, Signature).contains(&keys::fingerprint(&k.verifying_key())));
        let verified = v.statement().unwrap();
        assert_eq!(**verified, statement_for(ARTIFACT));
        assert_eq!(verified.signer(), 0);

        // Pins are optional; unpinned checks are not listed.
        let v = verify_with(&line, &k, |r| {
            r.source_sha256_pin = None;
            r.policy_sha256_pin = None;
        });
        assert!(v.passed());
        assert!(!names(&v).contains(&Source) && !names(&v).contains(&Policy));
    }

    /// Issue 9: a check the caller declared (`--reproduce`, `--source DIR`)
    /// that is never added fails the verdict: a check cannot pass by being
    /// left out.
    #[test]
    fn a_declared_check_that_never_ran_fails_the_verdict() {
        let k = key();
        let line = receipt_for(ARTIFACT, &k);
        let mut v = verify_with(&line, &k, |r| r.caller_checks = &[Reproduce]);
        assert!(v.checks().iter().all(|c| c.passed));
        assert!(!v.passed());
        assert_eq!(v.failed(), [Reproduce]);
        v.add(Check::pass(Reproduce, "same bytes"));
        assert!(v.passed());
        let mut v = verify_with(&line, &k, |r| r.caller_checks = &[Reproduce]);
        v.add(Check::fail(Reproduce, "other bytes"));
        assert!(!v.passed());
    }

    #[test]
    fn a_different_artifact_digest_fails_subject() {
        let k = key();
        let line = receipt_for(&format!("ab{}", &ARTIFACT[2..]), &k);
        let v = verify_with(&line, &k, |_| {});
        fails_at(&v, Subject);
        let d = detail(&v, Subject);
        assert!(
            d.contains(ARTIFACT) && d.contains(&format!("ab{}", &ARTIFACT[2..])),
            "{d}"
        );
    }

    #[test]
    fn a_changed_payload_byte_fails_signature() {
        let k = key();
        let line = mutate_envelope(&receipt_for(ARTIFACT, &k), |env| {
            let mut payload = STANDARD.decode(&env.payload).unwrap();
            // Flip a digit inside a digest: still valid JSON, and it would
            // even claim a different artifact.
            let at = payload.iter().position(|&b| b == b'1').unwrap();
            payload[at] = b'4';
            env.payload = STANDARD.encode(&payload);
        });
        let v = verify_with(&line, &k, |_| {});
        fails_at(&v, Signature);
        assert!(v.checks()[3..].iter().all(|c| c.detail == NOT_CHECKED));
        assert!(v.statement().is_none());
    }

    #[test]
    fn an_unverified_payload_never_passes_anything() {
        // Signed by an untrusted key, claiming exactly what the verifier
        // wants: every payload check must still be "not checked".
        let k = key();
        let v = verify_with(&receipt_for(ARTIFACT, &key()), &k, |_| {});
        fails_at(&v, Signature);
        assert!(v.statement().is_none());
        assert_eq!(v.checks().len(), 10);
        assert!(v.checks()[3..].iter().all(|c| !c.passed));
    }

    #[test]
    fn a_changed_signature_fails_signature() {
        let k = key();
        let line = mutate_envelope(&receipt_for(ARTIFACT, &k), |env| {
            let mut sig = STANDARD.decode(&env.signatures[0].sig).unwrap();
            sig[0] ^= 0x01;
            env.signatures[0].sig = STANDARD.encode(&sig);
        });
        fails_at(&verify_with(&line, &k, |_| {}), Signature);
    }

    #[test]
    fn a_changed_payload_type_fails_payload_type() {
        let k = key();
        let line = mutate_envelope(&receipt_for(ARTIFACT, &k), |env| {
            env.payload_type = "application/json".into();
        });
        let v = verify_with(&line, &k, |_| {});
        fails_at(&v, PayloadType);
        assert!(detail(&v, PayloadType).contains("application/json"));
    }

    #[test]
    fn an_untrusted_key_fails_signature() {
        let k = key();
        let line = receipt_for(ARTIFACT, &key());
        let v = verify_with(&line, &k, |_| {});
        fails_at(&v, Signature);
        assert!(detail(&v, Signature).contains("trusted keys: 1"));
        let v = verify_with(&line, &k, |r| r.trust.keys = &[]);
        fails_at(&v, Signature);
        assert!(detail(&v, Signature).contains("no trusted keys"));
    }

    #[test]
    fn a_source_pin_that_does_not_match_fails_source() {
        let k = key();
        let other = sha(&"4".repeat(64));
        let v = verify_with(&receipt_for(ARTIFACT, &k), &k, |r| {
            r.source_sha256_pin = Some(other.clone())
        });
        fails_at(&v, Source);
        let d = detail(&v, Source);
        assert!(d.contains(&"4".repeat(64)) && d.contains(SOURCE_SHA), "{d}");
    }

    #[test]
    fn an_untrusted_converter_fails_converter() {
        let k = key();
        let converters: &'static [Sha256Hex] = Box::leak(Box::new([sha(&"5".repeat(64))]));
        let line = receipt_for(ARTIFACT, &k);
        let v = verify_with(&line, &k, |r| r.trust.converters = converters);
        fails_at(&v, Converter);
        assert!(detail(&v, Converter).contains("--allow-converter"));
        // Reported, but not authenticated: nothing may build on it.
        assert!(v.statement().is_none());
    }

    #[test]
    fn a_policy_pin_that_does_not_match_fails_policy() {
        let k = key();
        let other = sha(&"6".repeat(64));
        let v = verify_with(&receipt_for(ARTIFACT, &k), &k, |r| {
            r.policy_sha256_pin = Some(other.clone())
        });
        fails_at(&v, Policy);
    }

    #[test]
    fn key_rotation_any_trusted_key_verifies() {
        let old = key();
        let new = key();
        let line = receipt_for(ARTIFACT, &new);
        let keys: &'static [VerifyingKey] =
            Box::leak(Box::new([old.verifying_key(), new.verifying_key()]));
        let v = verify_with(&line, &old, |r| r.trust.keys = keys);
        assert!(v.passed(), "{:#?}", v.checks());
        assert_eq!(v.statement().unwrap().signer(), 1);
        assert!(detail(&v, Signature).contains("trusted key #2"));
    }

    /// Every field of decant's schema is read strictly: a signed statement
    /// with a changed, unknown or duplicated field fails the check it
    /// belongs to, and nothing built on it authenticates.
    #[test]
    fn signed_but_wrong_statement_fields_fail_their_own_checks() {
        let k = key();
        let base = serde_json::to_value(statement_for(ARTIFACT)).unwrap();
        type Change = fn(&mut Value);
        let cases: [(CheckName, Change); 13] = [
            (Statement, |s| {
                s["predicateType"] = "https://example.com/other".into()
            }),
            (BuildType, |s| {
                s["predicate"]["buildDefinition"]["buildType"] = "https://x".into()
            }),
            (BuildType, |s| {
                s["predicate"]["buildDefinition"]["externalParameters"]["extra"] = "1".into()
            }),
            (BuildType, |s| {
                s["predicate"]["buildDefinition"]["externalParameters"]["strict"] = "yes".into()
            }),
            (BuildType, |s| {
                s["predicate"]["buildDefinition"]["internalParameters"]["sandbox"]["policySha256"] =
                    "AB".repeat(32).into()
            }),
            (BuildType, |s| {
                s["subject"][0]["digest"]["sha512"] = "00".into()
            }),
            (BuildType, |s| {
                s["predicate"]["runDetails"]["byproducts"][0]["annotations"]["tensors"] = 4.into()
            }),
            (BuildType, |s| {
                s["predicate"]["runDetails"]["byproducts"][0]["annotations"]["dropped"][0]["evil"] =
                    "yes".into()
            }),
            (BuildType, |s| {
                // Two subjects under one name: a verifier matching one and
                // a reader using the other.
                let first = s["subject"][0].clone();
                let mut second = first.clone();
                second["digest"]["sha256"] = "00".repeat(32).into();
                s["subject"] = serde_json::json!([first, second]);
            }),
            (BuildType, |s| {
                let deps = s["predicate"]["buildDefinition"]["resolvedDependencies"]
                    .as_array_mut()
                    .unwrap();
                deps.retain(|d| d["annotations"]["role"] != "source");
            }),
            (BuildType, |s| {
                let b = s["predicate"]["runDetails"]["byproducts"][0].clone();
                s["predicate"]["runDetails"]["byproducts"]
                    .as_array_mut()
                    .unwrap()
                    .push(b);
            }),
            (Builder, |s| {
                s["predicate"]["runDetails"]["builder"]["id"] = "https://x".into()
            }),
            (Converter, |s| {
                s["predicate"]["buildDefinition"]["resolvedDependencies"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
        ];
        for (name, change) in cases {
            let mut s = base.clone();
            change(&mut s);
            let v = verify_with(&sign_value(&s, &k), &k, |_| {});
            let first = v.checks().iter().position(|c| !c.passed).unwrap();
            assert_eq!(v.checks()[first].name, name, "{:#?}", v.checks());
            assert!(v.statement().is_none());
        }

        // A duplicated key, which a JSON map would silently collapse.
        let text = String::from_utf8(crate::trust::statement::sorted_json(&statement_for(
            ARTIFACT,
        )))
        .unwrap();
        let dup = text.replacen(
            r#""_type":"https://in-toto.io/Statement/v1","#,
            r#""_type":"https://in-toto.io/Statement/v1","_type":"https://in-toto.io/Statement/v1","#,
            1,
        );
        let line = receipt::to_line(&dsse::sign(dup.as_bytes(), &k));
        let v = verify_with(&line, &k, |_| {});
        fails_at(&v, BuildType);
        assert!(
            detail(&v, BuildType).contains("duplicate key"),
            "{}",
            detail(&v, BuildType)
        );

        // A repeated key inside a map (the report's aliases), where a JSON
        // map keeps one of the two values silently.
        let nested = text.replacen(
            r#""aliases":{"lm_head.weight":"embed.weight"}"#,
            r#""aliases":{"lm_head.weight":"embed.weight","lm_head.weight":"other"}"#,
            1,
        );
        assert_ne!(nested, text);
        let v = verify_with(
            &receipt::to_line(&dsse::sign(nested.as_bytes(), &k)),
            &k,
            |_| {},
        );
        fails_at(&v, BuildType);
        assert!(
            detail(&v, BuildType).contains("duplicate key"),
            "{}",
            detail(&v, BuildType)
        );

        // Signed bytes that are not JSON.
        let line = receipt::to_line(&dsse::sign(b"not json", &k));
        fails_at(&verify_with(&line, &k, |_| {}), Statement);
    }

    #[test]
    fn malformed_receipts_fail_envelope() {
        let k = key();
        for bytes in ["", "\n\n", "{}", "not json", "[1,2]"] {
            fails_at(&verify_with(bytes, &k, |_| {}), Envelope);
        }
        let line = mutate_envelope(&receipt_for(ARTIFACT, &k), |env| env.payload = "@@@".into());
        fails_at(&verify_with(&line, &k, |_| {}), Envelope);
        let huge = " ".repeat(MAX_RECEIPT_BYTES + 1);
        let v = verify_with(&huge, &k, |_| {});
        fails_at(&v, Envelope);
        assert!(detail(&v, Envelope).contains("16777216"));
    }

    /// Review of issue 9: a receipt file with a good envelope and other
    /// lines (which a hard link inside a model directory would serve as
    /// code or config) is refused whole; so is an envelope with more
    /// signatures than are worth checking (each one costs a pass over the
    /// payload per trusted key).
    #[test]
    fn extra_lines_and_signature_floods_fail_envelope() {
        let k = key();
        let good = receipt_for(ARTIFACT, &k);
        let v = verify_with(&format!("{good}import os; os.system('id')\n"), &k, |_| {});
        fails_at(&v, Envelope);
        assert!(detail(&v, Envelope).contains("line 2 is not a DSSE envelope"));
        let flood = mutate_envelope(&good, |env| {
            let wrong = dsse::Signature {
                keyid: String::new(),
                sig: STANDARD.encode([7u8; 64]),
            };
            env.signatures = vec![wrong; MAX_SIGNATURES];
            env.signatures.push(env.signatures[0].clone());
        });
        let v = verify_with(&flood, &k, |_| {});
        fails_at(&v, Envelope);
        assert!(detail(&v, Envelope).contains("17 signatures"));
        let many = good.repeat(MAX_ENVELOPES + 1);
        fails_at(&verify_with(&many, &k, |_| {}), Envelope);
        assert!(verify_with(&good.repeat(MAX_ENVELOPES), &k, |_| {}).passed());
    }

    /// Review of issue 9: `--source-sha256` against one file of a directory
    /// receipt proved only that some file came from that source.
    #[test]
    fn a_source_pin_on_one_file_of_a_multi_source_receipt_fails() {
        let k = key();
        let mut s = serde_json::to_value(statement_for(ARTIFACT)).unwrap();
        let mut other = s["predicate"]["buildDefinition"]["resolvedDependencies"][0].clone();
        other["name"] = "other.bin".into();
        other["digest"]["sha256"] = "4".repeat(64).into();
        s["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array_mut()
            .unwrap()
            .insert(0, other);
        let v = verify_with(&sign_value(&s, &k), &k, |_| {});
        fails_at(&v, Source);
        assert!(detail(&v, Source).contains("names 2 sources"));
    }

    #[test]
    fn pretty_printed_envelopes_are_accepted() {
        let k = key();
        let env: dsse::Envelope = serde_json::from_str(receipt_for(ARTIFACT, &k).trim()).unwrap();
        let pretty = serde_json::to_string_pretty(&env).unwrap();
        assert!(verify_with(&pretty, &k, |_| {}).passed());
    }

    #[test]
    fn json_lines_pass_if_any_envelope_passes() {
        let k = key();
        let other = receipt_for(&"9".repeat(64), &k);
        let good = receipt_for(ARTIFACT, &k);
        let v = verify_with(&format!("{other}\n{good}"), &k, |_| {});
        assert!(v.passed(), "{:#?}", v.checks());
        assert_eq!(v.statement().unwrap().envelope(), 1);
        assert!(detail(&v, Envelope).contains("envelope 2 of 2 (line 3)"));

        // None passes: the closest one is shown, and the choice is said.
        let untrusted = receipt_for(ARTIFACT, &key());
        let v = verify_with(&format!("{untrusted}{other}"), &k, |_| {});
        assert!(!v.passed());
        assert!(detail(&v, Envelope).contains("none of the 2"));
        fails_at(&v, Subject);
    }

    fn dir_files(files: &[(&str, &str)], problems: &[&str]) -> Artifact {
        Artifact::Directory(DirectoryFiles {
            files: files.iter().map(|(n, s)| (n.to_string(), sha(s))).collect(),
            problems: problems.iter().map(|p| p.to_string()).collect(),
            side_files: Vec::new(),
        })
    }

    /// Issue 9: a directory verifies only as served: a file that is not a
    /// subject, a subject that is missing, a changed file or a symlink each
    /// fail, and every failing name is listed.
    #[test]
    fn a_directory_verifies_only_as_a_whole() {
        let k = key();
        let line = receipt_for(ARTIFACT, &k);
        let check = |artifact: Artifact| {
            let v = verify_with(&line, &k, |r| {
                r.artifact = Box::leak(Box::new(artifact));
                r.source_sha256_pin = None;
            });
            (v.passed(), detail(&v, Subject).to_string())
        };
        let (ok, d) = check(dir_files(&[("model.safetensors", ARTIFACT)], &[]));
        assert!(ok, "{d}");
        let (ok, d) = check(dir_files(
            &[
                ("model.safetensors", ARTIFACT),
                ("pytorch_model.bin", SOURCE_SHA),
                ("sub/x.safetensors", ARTIFACT),
            ],
            &["link.safetensors is a symlink, not a regular file"],
        ));
        assert!(!ok);
        assert!(d.starts_with("3 problems: "), "{d}");
        for name in ["pytorch_model.bin", "sub/x.safetensors", "link.safetensors"] {
            assert!(d.contains(name), "{name} not in {d}");
        }
        let (ok, d) = check(dir_files(&[], &[]));
        assert!(
            !ok && d.contains("subject model.safetensors is missing"),
            "{d}"
        );
        let (ok, d) = check(dir_files(&[("model.safetensors", SOURCE_SHA)], &[]));
        assert!(!ok && d.contains("the receipt says"), "{d}");
    }
}
