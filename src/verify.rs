//! Verifying a receipt against an artifact: every check, named, with what
//! was expected and what was found.
//!
//! This is the promotion gate's side of [`crate::receipt`]. It returns a
//! list of checks rather than the first error because users asked for
//! exactly that from other verifiers (which key matched, which digest was
//! expected), and so the CLI can print them or emit them as JSON.
//!
//! Order matters for safety, not just for display: the DSSE signature is
//! checked before anything in the payload is looked at, and the statement is
//! parsed only from the bytes the signature covers. After a failed
//! signature the payload checks are reported as not run; an unverified
//! payload can never make a check pass.

use crate::dsse::{self, Envelope, VerifyFailure};
use crate::keys;
use crate::policy::Limits;
use crate::receipt::{
    BUILDER_ID, BUILD_TYPE, PREDICATE_TYPE, ROLE_CONVERTER, ROLE_SOURCE, STATEMENT_TYPE,
};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde_json::Value;

/// Check names, in the order they are reported.
pub const ENVELOPE: &str = "envelope";
pub const PAYLOAD_TYPE: &str = "payload_type";
pub const SIGNATURE: &str = "signature";
pub const STATEMENT: &str = "statement";
pub const BUILD_TYPE_CHECK: &str = "build_type";
pub const BUILDER: &str = "builder";
pub const SUBJECT: &str = "subject";
pub const CONVERTER: &str = "converter";
pub const SOURCE: &str = "source";
pub const POLICY: &str = "policy";

/// Detail of every check after a signature that did not verify.
pub const NOT_CHECKED_UNSIGNED: &str = "not checked: signature did not verify";

/// Receipts larger than this are refused unread: a real one is a few KB
/// (more for a model directory with many shards), and a verifier should not
/// be made to parse an arbitrarily large file.
pub const MAX_RECEIPT_BYTES: usize = 16 << 20;

/// The `externalParameters` decant's build type defines; SLSA: "Verifiers
/// SHOULD reject unrecognized or unexpected fields".
const EXTERNAL_PARAMETERS: [&str; 3] = ["source", "strict", "policy"];

/// How many digests a detail lists before eliding.
const LISTED: usize = 8;

/// One verification check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// What was expected and what was found.
    pub detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            passed: true,
            detail: detail.into(),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            passed: false,
            detail: detail.into(),
        }
    }
}

/// What to verify.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// sha256 of the artifact being promoted, hex (single-file receipts).
    pub artifact_sha256: String,
    /// For a model directory: (name, sha256) of every weight file in it
    /// (`*.safetensors`, the index). Then each must be a subject under its
    /// name with its digest, and each subject must be one of them;
    /// `artifact_sha256` is not used.
    pub directory_files: Option<Vec<(String, String)>>,
    /// The receipt file's bytes: one envelope, or JSON Lines of envelopes.
    pub envelope_json: &'a [u8],
    /// Public keys whose signatures are accepted (any one suffices).
    pub trusted: Vec<VerifyingKey>,
    /// Converter digests accepted: the embedded guest's sha256 plus any
    /// `--allow-converter` values.
    pub trusted_converters: Vec<String>,
    /// `--source` / `--source-sha256`: the source the receipt must name.
    pub source_sha256_pin: Option<String>,
    /// `--policy-sha256`: the sandbox policy the receipt must name.
    pub policy_sha256_pin: Option<String>,
}

/// The outcome of verifying a receipt.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The statement, parsed from signature-verified bytes; `None` unless
    /// the signature verified (whatever the other checks said).
    pub statement: Option<Value>,
    /// Index into [`Request::trusted`] of the key that verified.
    pub trusted_key: Option<usize>,
    /// Which envelope (0-based, in file order) these checks are for.
    pub envelope_index: usize,
}

impl Verification {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        passed(&self.checks)
    }
}

/// Whether every check passed (and there is at least one).
pub fn passed(checks: &[Check]) -> bool {
    !checks.is_empty() && checks.iter().all(|c| c.passed)
}

/// Verifies a receipt; see [`verify_detailed`].
pub fn verify(req: &Request<'_>) -> Vec<Check> {
    verify_detailed(req).checks
}

/// Verifies a receipt and returns every check plus the verified statement.
/// A receipt file with several envelopes (JSON Lines) passes if any one
/// envelope passes every check; the `envelope` check says which was chosen.
pub fn verify_detailed(req: &Request<'_>) -> Verification {
    let envelopes = match split_envelopes(req.envelope_json) {
        Ok(e) => e,
        Err(why) => return unparsed(req, why, 0),
    };
    let total = envelopes.len();
    let mut best: Option<Verification> = None;
    for (index, (line, parsed)) in envelopes.into_iter().enumerate() {
        let where_ = if total > 1 {
            format!("envelope {} of {total} (line {line}): ", index + 1)
        } else {
            String::new()
        };
        let mut v = match parsed {
            Ok(env) => verify_envelope(req, &env, &where_, index),
            Err(why) => unparsed(req, format!("{where_}{why}"), index),
        };
        if v.passed() {
            if total > 1 {
                v.checks[0].detail = format!(
                    "{} (the first envelope that passed every check)",
                    v.checks[0].detail
                );
            }
            return v;
        }
        let score = |v: &Verification| v.checks.iter().filter(|c| c.passed).count();
        if best.as_ref().is_none_or(|b| score(&v) > score(b)) {
            best = Some(v);
        }
    }
    let mut v = best.expect("split_envelopes never returns an empty list");
    if total > 1 {
        v.checks[0].detail = format!(
            "{} (none of the {total} envelopes passed every check; showing the one that passed most)",
            v.checks[0].detail
        );
    }
    v
}

type Parsed = (usize, Result<Envelope, String>);

/// One envelope (a JSON document, possibly pretty-printed) or JSON Lines of
/// envelopes, each with its 1-based line number.
fn split_envelopes(bytes: &[u8]) -> Result<Vec<Parsed>, String> {
    if bytes.len() > MAX_RECEIPT_BYTES {
        return Err(format!(
            "the receipt is {} bytes, more than the {MAX_RECEIPT_BYTES} a receipt may have",
            bytes.len()
        ));
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(bytes) {
        return Ok(vec![(1, Ok(env))]);
    }
    let lines: Vec<Parsed> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .map(|(i, l)| {
            let parsed = serde_json::from_slice::<Envelope>(l)
                .map_err(|e| format!("not a DSSE envelope: {e}"));
            (i + 1, parsed)
        })
        .collect();
    if lines.is_empty() {
        return Err("the receipt is empty".into());
    }
    Ok(lines)
}

/// The checks for an envelope that could not be parsed.
fn unparsed(req: &Request<'_>, why: String, index: usize) -> Verification {
    let mut checks = vec![Check::fail(ENVELOPE, why)];
    for name in [PAYLOAD_TYPE, SIGNATURE] {
        checks.push(Check::fail(name, "not checked: the envelope did not parse"));
    }
    not_checked(req, &mut checks, NOT_CHECKED_UNSIGNED);
    Verification {
        checks,
        statement: None,
        trusted_key: None,
        envelope_index: index,
    }
}

/// Appends every payload check as not run.
fn not_checked(req: &Request<'_>, checks: &mut Vec<Check>, why: &str) {
    for name in payload_check_names(req) {
        checks.push(Check::fail(name, why));
    }
}

fn payload_check_names(req: &Request<'_>) -> Vec<&'static str> {
    let mut names = vec![STATEMENT, BUILD_TYPE_CHECK, BUILDER, SUBJECT, CONVERTER];
    if req.source_sha256_pin.is_some() {
        names.push(SOURCE);
    }
    if req.policy_sha256_pin.is_some() {
        names.push(POLICY);
    }
    names
}

fn describe_key(index: usize, key: &VerifyingKey) -> String {
    format!(
        "trusted key #{} (fingerprint sha256:{}, keyid {})",
        index + 1,
        keys::fingerprint(key),
        keys::keyid(key)
    )
}

fn verify_envelope(req: &Request<'_>, env: &Envelope, where_: &str, index: usize) -> Verification {
    let mut checks = Vec::new();
    let signatures = env.signatures.len();
    let verified = dsse::verify(env, &req.trusted);
    match &verified {
        Err(e @ VerifyFailure::MalformedPayload(_)) => {
            checks.push(Check::fail(ENVELOPE, format!("{where_}{e}")));
            for name in [PAYLOAD_TYPE, SIGNATURE] {
                checks.push(Check::fail(
                    name,
                    "not checked: the envelope's payload is malformed",
                ));
            }
        }
        other => {
            checks.push(Check::pass(
                ENVELOPE,
                format!(
                    "{where_}DSSE envelope with {signatures} signature{}",
                    if signatures == 1 { "" } else { "s" }
                ),
            ));
            if let Err(VerifyFailure::UnsupportedPayloadType(found)) = other {
                checks.push(Check::fail(
                    PAYLOAD_TYPE,
                    format!("expected {}, found {found:?}", dsse::PAYLOAD_TYPE),
                ));
                checks.push(Check::fail(
                    SIGNATURE,
                    "not checked: unsupported payloadType",
                ));
            } else {
                checks.push(Check::pass(PAYLOAD_TYPE, dsse::PAYLOAD_TYPE));
                checks.push(signature_check(req, env, other));
            }
        }
    }
    let Ok(verified) = verified else {
        not_checked(req, &mut checks, NOT_CHECKED_UNSIGNED);
        return Verification {
            checks,
            statement: None,
            trusted_key: None,
            envelope_index: index,
        };
    };

    // From here on only the verified bytes are read.
    let statement = serde_json::from_slice::<Value>(&verified.payload);
    match statement {
        Ok(statement) => {
            statement_checks(req, &statement, &mut checks);
            Verification {
                checks,
                statement: Some(statement),
                trusted_key: Some(verified.key_index),
                envelope_index: index,
            }
        }
        Err(e) => {
            checks.push(Check::fail(
                STATEMENT,
                format!("the signed payload is not JSON: {e}"),
            ));
            for name in payload_check_names(req).into_iter().skip(1) {
                checks.push(Check::fail(
                    name,
                    "not checked: the statement did not parse",
                ));
            }
            Verification {
                checks,
                statement: None,
                trusted_key: Some(verified.key_index),
                envelope_index: index,
            }
        }
    }
}

fn signature_check(
    req: &Request<'_>,
    env: &Envelope,
    result: &Result<dsse::Verified, VerifyFailure>,
) -> Check {
    match result {
        Ok(v) => Check::pass(
            SIGNATURE,
            format!(
                "signature {} of {} verified by {}",
                v.signature_index + 1,
                env.signatures.len(),
                describe_key(v.key_index, &req.trusted[v.key_index])
            ),
        ),
        Err(e) => {
            if req.trusted.is_empty() {
                return Check::fail(SIGNATURE, "no trusted keys were given");
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
            let trusted: Vec<String> = req.trusted.iter().map(keys::keyid).take(LISTED).collect();
            Check::fail(
                SIGNATURE,
                format!(
                    "{e}; the envelope names keyids [{}], the trusted keys have keyids [{}]",
                    hints.join(", "),
                    trusted.join(", ")
                ),
            )
        }
    }
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn shown(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("{s:?}"),
        None => "nothing".into(),
    }
}

/// Lists digests for a detail, eliding after [`LISTED`].
fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let mut s = items
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LISTED {
        s.push_str(&format!(" and {} more", items.len() - LISTED));
    }
    s
}

fn normalise(hex: &str) -> String {
    hex.trim().to_ascii_lowercase()
}

fn statement_checks(req: &Request<'_>, s: &Value, checks: &mut Vec<Check>) {
    let type_ = str_at(s, &["_type"]);
    let predicate_type = str_at(s, &["predicateType"]);
    if type_ != Some(STATEMENT_TYPE) || predicate_type != Some(PREDICATE_TYPE) {
        checks.push(Check::fail(
            STATEMENT,
            format!(
                "expected _type {STATEMENT_TYPE} and predicateType {PREDICATE_TYPE}, found {} and {}",
                shown(type_),
                shown(predicate_type)
            ),
        ));
        // Other statement types give these fields other meanings (in-toto:
        // consumers rely only on predicateType), so nothing else is read.
        for name in payload_check_names(req).into_iter().skip(1) {
            checks.push(Check::fail(
                name,
                "not checked: not an in-toto Statement v1 with SLSA provenance v1",
            ));
        }
        return;
    }
    checks.push(Check::pass(
        STATEMENT,
        "in-toto Statement v1 with SLSA provenance v1",
    ));
    checks.push(build_type_check(s));
    checks.push(builder_check(s));
    checks.push(subject_check(req, s));
    checks.push(converter_check(req, s));
    if let Some(pin) = &req.source_sha256_pin {
        checks.push(source_check(pin, s));
    }
    if let Some(pin) = &req.policy_sha256_pin {
        checks.push(policy_check(pin, s));
    }
}

fn build_type_check(s: &Value) -> Check {
    let build_type = str_at(s, &["predicate", "buildDefinition", "buildType"]);
    if build_type != Some(BUILD_TYPE) {
        return Check::fail(
            BUILD_TYPE_CHECK,
            format!("expected {BUILD_TYPE}, found {}", shown(build_type)),
        );
    }
    let params = &s["predicate"]["buildDefinition"]["externalParameters"];
    let Some(params) = params.as_object() else {
        return Check::fail(
            BUILD_TYPE_CHECK,
            "expected externalParameters to be an object, found something else",
        );
    };
    let unexpected: Vec<String> = params
        .iter()
        .filter(|(k, v)| !EXTERNAL_PARAMETERS.contains(&k.as_str()) || !v.is_string())
        .map(|(k, _)| k.clone())
        .collect();
    if !unexpected.is_empty() {
        return Check::fail(
            BUILD_TYPE_CHECK,
            format!(
                "externalParameters may hold only the strings {} for {BUILD_TYPE}, found unexpected {}",
                EXTERNAL_PARAMETERS.join(", "),
                unexpected.join(", ")
            ),
        );
    }
    Check::pass(BUILD_TYPE_CHECK, BUILD_TYPE)
}

fn builder_check(s: &Value) -> Check {
    let id = str_at(s, &["predicate", "runDetails", "builder", "id"]);
    if id != Some(BUILDER_ID) {
        return Check::fail(
            BUILDER,
            format!("expected builder id {BUILDER_ID}, found {}", shown(id)),
        );
    }
    let version = str_at(
        s,
        &["predicate", "runDetails", "builder", "version", "decant"],
    );
    Check::pass(
        BUILDER,
        format!(
            "{BUILDER_ID}, decant {}",
            version.unwrap_or("(version not recorded)")
        ),
    )
}

/// Every source dependency of a verified statement as (name, sha256), or
/// `None` for an entry missing either (callers decide whether that fails).
pub fn statement_sources(s: &Value) -> Vec<Option<(String, String)>> {
    s["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .map(|deps| {
            deps.iter()
                .filter(|d| d["annotations"]["role"] == ROLE_SOURCE)
                .map(|d| {
                    Some((
                        d["name"].as_str()?.to_string(),
                        normalise(d["digest"]["sha256"].as_str()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (name, sha256) of every subject that has a sha256.
pub fn statement_subjects(s: &Value) -> Vec<(String, String)> {
    s["subject"]
        .as_array()
        .map(|subjects| {
            subjects
                .iter()
                .filter_map(|d| {
                    let sha = d["digest"]["sha256"].as_str()?;
                    Some((d["name"].as_str().unwrap_or("").to_string(), normalise(sha)))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn subject_check(req: &Request<'_>, s: &Value) -> Check {
    if let Some(files) = &req.directory_files {
        return directory_subject_check(files, s);
    }
    let want = normalise(&req.artifact_sha256);
    let subjects = statement_subjects(s);
    // Matched by digest only (in-toto): a renamed file is still the file.
    match subjects.iter().find(|(_, sha)| *sha == want) {
        Some((name, _)) => Check::pass(
            SUBJECT,
            format!("the artifact (sha256 {want}) is subject {name:?}"),
        ),
        None => {
            let found: Vec<String> = subjects
                .iter()
                .map(|(name, sha)| format!("{name} {sha}"))
                .collect();
            Check::fail(
                SUBJECT,
                format!(
                    "expected a subject with sha256 {want}, found {}",
                    list(&found)
                ),
            )
        }
    }
}

/// A directory is vouched for only as a whole: no weight file unattested,
/// none altered, none missing.
fn directory_subject_check(files: &[(String, String)], s: &Value) -> Check {
    let subjects = statement_subjects(s);
    let mut problems = Vec::new();
    for (name, sha) in files {
        let sha = normalise(sha);
        match subjects.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("{name} (sha256 {sha}) is not a subject")),
            Some((_, want)) if *want != sha => {
                problems.push(format!("{name} has sha256 {sha}, the receipt says {want}"))
            }
            Some(_) => {}
        }
    }
    for (name, _) in &subjects {
        if !files.iter().any(|(n, _)| n == name) {
            problems.push(format!("subject {name} is missing from the directory"));
        }
    }
    if problems.is_empty() {
        Check::pass(
            SUBJECT,
            format!("all {} files match the receipt's subjects", files.len()),
        )
    } else {
        Check::fail(SUBJECT, problems.join("; "))
    }
}

/// The `resolvedDependencies` entry with `annotations.role == role`, if
/// there is exactly one.
fn dependency<'v>(s: &'v Value, role: &str) -> Result<&'v Value, String> {
    let deps: Vec<&Value> = s["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter(|d| d["annotations"]["role"].as_str() == Some(role))
                .collect()
        })
        .unwrap_or_default();
    match deps.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("the receipt names no {role} dependency")),
        many => Err(format!(
            "the receipt names {} {role} dependencies, expected one",
            many.len()
        )),
    }
}

fn dependency_sha256(s: &Value, role: &str) -> Result<String, String> {
    let dep = dependency(s, role)?;
    dep["digest"]["sha256"]
        .as_str()
        .map(normalise)
        .ok_or_else(|| format!("the {role} dependency has no sha256 digest"))
}

fn converter_check(req: &Request<'_>, s: &Value) -> Check {
    let found = match dependency_sha256(s, ROLE_CONVERTER) {
        Ok(f) => f,
        Err(why) => return Check::fail(CONVERTER, why),
    };
    let trusted: Vec<String> = req
        .trusted_converters
        .iter()
        .map(|c| normalise(c))
        .collect();
    if trusted.contains(&found) {
        Check::pass(CONVERTER, format!("converter sha256 {found} is trusted"))
    } else {
        Check::fail(
            CONVERTER,
            format!(
                "converter sha256 {found} is not trusted (trusted: {}); pass --allow-converter {found} to accept it",
                list(&trusted)
            ),
        )
    }
}

fn source_check(pin: &str, s: &Value) -> Check {
    let want = normalise(pin);
    match dependency_sha256(s, ROLE_SOURCE) {
        Ok(found) if found == want => {
            Check::pass(SOURCE, format!("source sha256 {found} as pinned"))
        }
        Ok(found) => Check::fail(
            SOURCE,
            format!("expected source sha256 {want}, found {found}"),
        ),
        Err(why) => Check::fail(SOURCE, format!("expected source sha256 {want}, but {why}")),
    }
}

fn policy_check(pin: &str, s: &Value) -> Check {
    let want = normalise(pin);
    match statement_policy_sha256(s) {
        Some(found) if found == want => {
            Check::pass(POLICY, format!("sandbox policy sha256 {found} as pinned"))
        }
        Some(found) => Check::fail(
            POLICY,
            format!("expected sandbox policy sha256 {want}, found {found}"),
        ),
        None => Check::fail(
            POLICY,
            format!("expected sandbox policy sha256 {want}, found no policySha256"),
        ),
    }
}

/// The source's sha256 in a verified statement.
pub fn statement_source_sha256(s: &Value) -> Option<String> {
    dependency_sha256(s, ROLE_SOURCE).ok()
}

/// The source's file name in a verified statement.
pub fn statement_source_name(s: &Value) -> Option<String> {
    dependency(s, ROLE_SOURCE)
        .ok()?
        .get("name")?
        .as_str()
        .map(String::from)
}

/// The source's size in bytes in a verified statement.
pub fn statement_source_bytes(s: &Value) -> Option<u64> {
    dependency(s, ROLE_SOURCE).ok()?["annotations"]["size"].as_u64()
}

/// The converter's sha256 in a verified statement.
pub fn statement_converter_sha256(s: &Value) -> Option<String> {
    dependency_sha256(s, ROLE_CONVERTER).ok()
}

/// The sandbox policy's sha256 in a verified statement.
pub fn statement_policy_sha256(s: &Value) -> Option<String> {
    str_at(
        s,
        &[
            "predicate",
            "buildDefinition",
            "internalParameters",
            "sandbox",
            "policySha256",
        ],
    )
    .map(normalise)
}

/// The policy as the user named it (`default` or a path).
pub fn statement_policy_origin(s: &Value) -> Option<String> {
    str_at(
        s,
        &[
            "predicate",
            "buildDefinition",
            "externalParameters",
            "policy",
        ],
    )
    .map(String::from)
}

/// The sandbox limits the conversion ran under.
pub fn statement_limits(s: &Value) -> Option<Limits> {
    let limits = &s["predicate"]["buildDefinition"]["internalParameters"]["sandbox"]["limits"];
    serde_json::from_value(limits.clone()).ok()
}

/// Whether the conversion ran with `--strict`.
pub fn statement_strict(s: &Value) -> Option<bool> {
    match str_at(
        s,
        &[
            "predicate",
            "buildDefinition",
            "externalParameters",
            "strict",
        ],
    )? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
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

    const ARTIFACT: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SOURCE_SHA: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const CONVERTER_SHA: &str = "3333333333333333333333333333333333333333333333333333333333333333";

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand_core::OsRng)
    }

    fn receipt_for(artifact: &str, key: &SigningKey) -> (Value, String) {
        let policy = Policy::default_policy();
        let s = sample_statement(artifact, SOURCE_SHA, CONVERTER_SHA, &policy);
        let line = receipt::to_line(&receipt::sign_statement(&s, key));
        (s, line)
    }

    fn request<'a>(receipt: &'a [u8], key: &SigningKey) -> Request<'a> {
        Request {
            artifact_sha256: ARTIFACT.into(),
            directory_files: None,
            envelope_json: receipt,
            trusted: vec![key.verifying_key()],
            trusted_converters: vec![CONVERTER_SHA.into()],
            source_sha256_pin: Some(SOURCE_SHA.into()),
            policy_sha256_pin: Some(Policy::default_policy().sha256),
        }
    }

    /// The named check is the first to fail; before it all passed; after a
    /// signature failure nothing else is checked, otherwise nothing else
    /// fails.
    fn fails_at(checks: &[Check], name: &str) {
        let first = checks
            .iter()
            .position(|c| !c.passed)
            .unwrap_or_else(|| panic!("expected {name} to fail: {checks:#?}"));
        assert_eq!(checks[first].name, name, "{checks:#?}");
        assert!(!checks[first].detail.is_empty());
        for c in &checks[first + 1..] {
            if matches!(name, ENVELOPE | PAYLOAD_TYPE | SIGNATURE) {
                assert!(!c.passed && c.detail.starts_with("not checked"), "{c:?}");
            } else {
                assert!(c.passed, "only {name} should fail: {checks:#?}");
            }
        }
        assert!(!passed(checks));
    }

    fn names(checks: &[Check]) -> Vec<&str> {
        checks.iter().map(|c| c.name).collect()
    }

    fn mutate_envelope(line: &str, f: impl FnOnce(&mut Envelope)) -> String {
        let mut env: Envelope = serde_json::from_str(line.trim()).unwrap();
        f(&mut env);
        receipt::to_line(&env)
    }

    #[test]
    fn a_good_receipt_passes_every_check() {
        let k = key();
        let (s, line) = receipt_for(ARTIFACT, &k);
        let v = verify_detailed(&request(line.as_bytes(), &k));
        assert!(v.passed(), "{:#?}", v.checks);
        assert_eq!(
            names(&v.checks),
            [
                ENVELOPE,
                PAYLOAD_TYPE,
                SIGNATURE,
                STATEMENT,
                BUILD_TYPE_CHECK,
                BUILDER,
                SUBJECT,
                CONVERTER,
                SOURCE,
                POLICY
            ]
        );
        let sig = &v.checks[2].detail;
        assert!(
            sig.contains(&keys::fingerprint(&k.verifying_key())),
            "{sig}"
        );
        assert_eq!(v.statement.as_ref(), Some(&s));
        assert_eq!(v.trusted_key, Some(0));

        // Pins are optional; unpinned checks are not listed.
        let mut req = request(line.as_bytes(), &k);
        req.source_sha256_pin = None;
        req.policy_sha256_pin = None;
        let checks = verify(&req);
        assert!(passed(&checks));
        assert!(!names(&checks).contains(&SOURCE));
        assert!(!names(&checks).contains(&POLICY));

        // Upper-case hex from the command line is the same digest.
        let mut req = request(line.as_bytes(), &k);
        req.artifact_sha256 = ARTIFACT.to_uppercase();
        assert!(passed(&verify(&req)));
    }

    #[test]
    fn statement_accessors() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let v = verify_detailed(&request(line.as_bytes(), &k));
        let s = v.statement.unwrap();
        assert_eq!(statement_source_sha256(&s).as_deref(), Some(SOURCE_SHA));
        assert_eq!(
            statement_source_name(&s).as_deref(),
            Some("pytorch_model.bin")
        );
        assert_eq!(statement_source_bytes(&s), Some(4096));
        assert_eq!(
            statement_converter_sha256(&s).as_deref(),
            Some(CONVERTER_SHA)
        );
        let policy = Policy::default_policy();
        assert_eq!(statement_policy_sha256(&s), Some(policy.sha256));
        assert_eq!(statement_policy_origin(&s).as_deref(), Some("default"));
        assert_eq!(statement_limits(&s), Some(policy.limits));
        assert_eq!(statement_strict(&s), Some(false));
        assert_eq!(
            statement_subjects(&s),
            [("model.safetensors".to_string(), ARTIFACT.to_string())]
        );
    }

    #[test]
    fn a_different_artifact_digest_fails_subject() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let mut req = request(line.as_bytes(), &k);
        // One byte (two hex digits) different.
        req.artifact_sha256 = format!("ab{}", &ARTIFACT[2..]);
        let checks = verify(&req);
        fails_at(&checks, SUBJECT);
        let d = &checks.iter().find(|c| c.name == SUBJECT).unwrap().detail;
        assert!(
            d.contains(&req.artifact_sha256) && d.contains(ARTIFACT),
            "{d}"
        );
    }

    #[test]
    fn a_receipt_for_another_artifact_fails_subject() {
        let k = key();
        let (_, line) = receipt_for(&"9".repeat(64), &k);
        fails_at(&verify(&request(line.as_bytes(), &k)), SUBJECT);
    }

    #[test]
    fn a_changed_payload_byte_fails_signature() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let line = mutate_envelope(&line, |env| {
            let mut payload = STANDARD.decode(&env.payload).unwrap();
            // Flip a digit inside the subject digest: still valid JSON, and
            // it would even claim a different artifact.
            let at = payload.iter().position(|&b| b == b'1').unwrap();
            payload[at] = b'4';
            env.payload = STANDARD.encode(&payload);
        });
        let checks = verify(&request(line.as_bytes(), &k));
        fails_at(&checks, SIGNATURE);
        assert!(checks[3..].iter().all(|c| c.detail == NOT_CHECKED_UNSIGNED));
    }

    #[test]
    fn an_unverified_payload_never_passes_anything() {
        // Signed by an untrusted key, claiming exactly what the verifier
        // wants: every payload check must still be "not checked".
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &key());
        let v = verify_detailed(&request(line.as_bytes(), &k));
        fails_at(&v.checks, SIGNATURE);
        assert!(v.statement.is_none());
        assert_eq!(v.checks.len(), 10);
        assert!(v.checks[3..].iter().all(|c| !c.passed));
    }

    #[test]
    fn a_changed_signature_fails_signature() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let line = mutate_envelope(&line, |env| {
            let mut sig = STANDARD.decode(&env.signatures[0].sig).unwrap();
            sig[0] ^= 0x01;
            env.signatures[0].sig = STANDARD.encode(&sig);
        });
        fails_at(&verify(&request(line.as_bytes(), &k)), SIGNATURE);
    }

    #[test]
    fn a_changed_payload_type_fails_payload_type() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let line = mutate_envelope(&line, |env| {
            env.payload_type = "application/json".into();
        });
        let checks = verify(&request(line.as_bytes(), &k));
        fails_at(&checks, PAYLOAD_TYPE);
        assert!(checks[1].detail.contains("application/json"));
    }

    #[test]
    fn an_untrusted_key_fails_signature() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &key());
        let checks = verify(&request(line.as_bytes(), &k));
        fails_at(&checks, SIGNATURE);
        assert!(
            checks[2].detail.contains("trusted keys: 1"),
            "{}",
            checks[2].detail
        );

        let mut req = request(line.as_bytes(), &k);
        req.trusted.clear();
        let checks = verify(&req);
        fails_at(&checks, SIGNATURE);
        assert!(checks[2].detail.contains("no trusted keys"));
    }

    #[test]
    fn a_source_pin_that_does_not_match_fails_source() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let mut req = request(line.as_bytes(), &k);
        req.source_sha256_pin = Some("4".repeat(64));
        let checks = verify(&req);
        fails_at(&checks, SOURCE);
        let d = &checks.iter().find(|c| c.name == SOURCE).unwrap().detail;
        assert!(d.contains(&"4".repeat(64)) && d.contains(SOURCE_SHA), "{d}");
    }

    #[test]
    fn an_untrusted_converter_fails_converter() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let mut req = request(line.as_bytes(), &k);
        req.trusted_converters = vec!["5".repeat(64)];
        let checks = verify(&req);
        fails_at(&checks, CONVERTER);
        let d = &checks.iter().find(|c| c.name == CONVERTER).unwrap().detail;
        assert!(d.contains("--allow-converter"), "{d}");
    }

    #[test]
    fn a_policy_pin_that_does_not_match_fails_policy() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let mut req = request(line.as_bytes(), &k);
        req.policy_sha256_pin = Some("6".repeat(64));
        fails_at(&verify(&req), POLICY);
    }

    #[test]
    fn key_rotation_any_trusted_key_verifies() {
        let old = key();
        let new = key();
        let (_, line) = receipt_for(ARTIFACT, &new);
        let mut req = request(line.as_bytes(), &old);
        req.trusted.push(new.verifying_key());
        let v = verify_detailed(&req);
        assert!(v.passed(), "{:#?}", v.checks);
        assert_eq!(v.trusted_key, Some(1));
        assert!(v.checks[2].detail.contains("trusted key #2"));
        assert!(v.checks[2]
            .detail
            .contains(&keys::fingerprint(&new.verifying_key())));
    }

    #[test]
    fn signed_but_wrong_statement_fields_fail_their_own_checks() {
        let k = key();
        let policy = Policy::default_policy();
        let base = sample_statement(ARTIFACT, SOURCE_SHA, CONVERTER_SHA, &policy);
        type Change = fn(&mut Value);
        let cases: [(&str, Change); 5] = [
            (STATEMENT, |s| {
                s["predicateType"] = "https://example.com/other".into()
            }),
            (BUILD_TYPE_CHECK, |s| {
                s["predicate"]["buildDefinition"]["buildType"] = "https://x".into()
            }),
            (BUILD_TYPE_CHECK, |s| {
                s["predicate"]["buildDefinition"]["externalParameters"]["extra"] = "1".into()
            }),
            (BUILDER, |s| {
                s["predicate"]["runDetails"]["builder"]["id"] = "https://x".into()
            }),
            (CONVERTER, |s| {
                s["predicate"]["buildDefinition"]["resolvedDependencies"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
        ];
        for (name, change) in cases {
            let mut s = base.clone();
            change(&mut s);
            let line = receipt::to_line(&receipt::sign_statement(&s, &k));
            let checks = verify(&request(line.as_bytes(), &k));
            let first = checks.iter().position(|c| !c.passed).unwrap();
            assert_eq!(checks[first].name, name, "{checks:#?}");
        }

        // Signed bytes that are not JSON.
        let env = dsse::sign(b"not json", &k);
        let checks = verify(&request(receipt::to_line(&env).as_bytes(), &k));
        let first = checks.iter().position(|c| !c.passed).unwrap();
        assert_eq!(checks[first].name, STATEMENT);
    }

    #[test]
    fn malformed_receipts_fail_envelope() {
        let k = key();
        for bytes in [&b""[..], b"\n\n", b"{}", b"not json", b"[1,2]"] {
            let checks = verify(&request(bytes, &k));
            fails_at(&checks, ENVELOPE);
        }
        let (_, line) = receipt_for(ARTIFACT, &k);
        let line = mutate_envelope(&line, |env| env.payload = "@@@".into());
        fails_at(&verify(&request(line.as_bytes(), &k)), ENVELOPE);
    }

    #[test]
    fn pretty_printed_envelopes_are_accepted() {
        let k = key();
        let (_, line) = receipt_for(ARTIFACT, &k);
        let env: Envelope = serde_json::from_str(line.trim()).unwrap();
        let pretty = serde_json::to_string_pretty(&env).unwrap();
        assert!(passed(&verify(&request(pretty.as_bytes(), &k))));
    }

    #[test]
    fn json_lines_pass_if_any_envelope_passes() {
        let k = key();
        let (_, other) = receipt_for(&"9".repeat(64), &k);
        let (_, good) = receipt_for(ARTIFACT, &k);
        let bundle = format!("{other}\n{good}");
        let v = verify_detailed(&request(bundle.as_bytes(), &k));
        assert!(v.passed(), "{:#?}", v.checks);
        assert_eq!(v.envelope_index, 1);
        assert!(
            v.checks[0].detail.contains("envelope 2 of 2 (line 3)"),
            "{}",
            v.checks[0].detail
        );

        // None passes: the closest one is shown, and the choice is said.
        let (_, untrusted) = receipt_for(ARTIFACT, &key());
        let bundle = format!("garbage\n{untrusted}{other}");
        let v = verify_detailed(&request(bundle.as_bytes(), &k));
        assert!(!v.passed());
        assert_eq!(v.envelope_index, 2);
        assert!(
            v.checks[0].detail.contains("none of the 3"),
            "{}",
            v.checks[0].detail
        );
        fails_at(&v.checks, SUBJECT);
    }
}
