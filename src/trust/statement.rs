//! A decant receipt's statement as types: the one definition decant writes
//! and reads back.
//!
//! The statement is an in-toto Statement v1 whose predicate is SLSA
//! provenance v1 with decant's build type (docs/RECEIPTS.md lists every
//! field). Writing and reading go through these structs, so a field cannot
//! be written under one name and read under another, and nothing is read by
//! string path. Reading is strict: every struct refuses unknown fields,
//! duplicate fields and digests that are not lower-case sha256 hex. Every
//! field of a decant receipt is one decant wrote, and a field decant would
//! ignore is one another consumer might read differently (one
//! interpretation or none).
//!
//! A parsed [`Statement`] means nothing until the verifier has checked the
//! signature over its bytes; callers get it only inside a
//! [`super::verify::Verified`].

use crate::policy::Limits;
use decant_abi::{Dropped, Report};
use serde::de::DeserializeSeed;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a decant conversion is; its parameters are documented in
/// docs/RECEIPTS.md.
pub const BUILD_TYPE: &str = "https://decant.dev/conversion/v1";
/// decant converting on the user's machine with a local key. A different
/// trust model (say, a hosted converter) would get a different id, since
/// SLSA consumers accept specific signer-builder pairs.
pub const BUILDER_ID: &str = "https://decant.dev/builder/v1";
/// Media type of a report byproduct.
pub const REPORT_MEDIA_TYPE: &str = "application/json";

/// A sha256 digest as lower-case hex, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Accepts exactly 64 lower-case hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Sha256Hex(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Hex(hex::encode(Sha256::digest(bytes)))
    }

    /// From a digest decant computed itself (always lower-case hex).
    pub fn from_computed(hex: String) -> Self {
        Sha256Hex(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256Hex::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a sha256 digest (64 lower-case hex digits)"
            ))
        })
    }
}

/// in-toto DigestSet; decant records sha256 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSet {
    pub sha256: Sha256Hex,
}

/// The statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    /// Every file the receipt vouches for, by name (relative to the output
    /// directory for a directory receipt) and digest.
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

/// One file the receipt vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: DigestSet,
    /// Absent for a file decant wrote; `{"role": "copied"}` for a file of a
    /// model directory copied unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<SubjectRole>,
}

/// How a subject came to be, when it was not converted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase", deny_unknown_fields)]
pub enum SubjectRole {
    /// Copied unchanged from the model directory (configs, tokenizer
    /// files, README, code).
    Copied,
}

/// SLSA provenance v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    pub resolved_dependencies: Vec<Dependency>,
}

/// What the user chose. SLSA asks for small string values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalParameters {
    /// The source file's name, or the model directory's.
    pub source: String,
    /// `--strict`, written as `"true"` or `"false"`.
    #[serde(with = "bool_text")]
    pub strict: bool,
    /// `default` or the policy file as the user named it.
    pub policy: String,
    /// `--shard I/N`: which part of a batch plan this receipt covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardParameters>,
}

/// One shard of a batch plan ([`crate::batch`]): a shard receipt covers only
/// its part of a directory, and says which other shards' receipts complete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardParameters {
    /// This shard, from 1.
    pub shard: u32,
    /// Shards in the plan.
    pub count: u32,
    /// The plan's sha256: every shard of one batch computed the same plan.
    pub plan: Sha256Hex,
    /// Which of the plan's directories this receipt covers part of (its
    /// name in the plan).
    pub directory: String,
    /// The sha256 of that directory's units as planned (files, sizes,
    /// index digests): receipts of one directory agree on it.
    pub directory_units: Sha256Hex,
    /// The shards with work in this directory, ascending: the receipts a
    /// verifier needs to cover it.
    pub directory_shards: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalParameters {
    pub sandbox: SandboxParameters,
}

/// The sandbox the conversion ran in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxParameters {
    pub runtime: String,
    pub runtime_version: String,
    pub isolation: String,
    /// sha256 of the policy file's bytes.
    pub policy_sha256: Sha256Hex,
    pub limits: Limits,
}

/// A `resolvedDependencies` entry: a source file or the converter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub name: String,
    /// Where a source came from, when decant knows: the Hugging Face
    /// repository revision it was read from (a cache snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<RevisionPurl>,
    pub digest: DigestSet,
    pub annotations: DependencyRole,
}

/// A Hugging Face model repository at a commit, as a package URL:
/// `pkg:huggingface/[OWNER/]NAME@<40-hex commit>`. Checked when parsed, so
/// a receipt cannot name a branch (which moves) as the revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RevisionPurl(String);

/// A repository owner or name as the Hub allows it (huggingface_hub
/// `validate_repo_id`): `[A-Za-z0-9._-]`, at most 96, no `--` or `..`, not
/// starting or ending with `-` or `.`.
pub fn is_hub_name(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 96
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !p.starts_with(['-', '.'])
        && !p.ends_with(['-', '.'])
        && !p.contains("..")
        && !p.contains("--")
}

impl RevisionPurl {
    /// `repo_id` (`OWNER/NAME` or `NAME`) at `commit` (40 lower-case hex),
    /// if both are as the Hub allows them.
    pub fn new(repo_id: &str, commit: &str) -> Option<Self> {
        let repo_ok = match repo_id.split_once('/') {
            Some((owner, name)) => is_hub_name(owner) && is_hub_name(name),
            None => is_hub_name(repo_id),
        };
        let commit_ok = commit.len() == 40
            && commit
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        (repo_ok && commit_ok).then(|| RevisionPurl(format!("pkg:huggingface/{repo_id}@{commit}")))
    }

    /// Reads one back, with the checks of [`RevisionPurl::new`].
    pub fn parse(s: &str) -> Option<Self> {
        let (repo_id, commit) = s.strip_prefix("pkg:huggingface/")?.rsplit_once('@')?;
        Self::new(repo_id, commit)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RevisionPurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RevisionPurl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RevisionPurl::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a Hugging Face revision (pkg:huggingface/OWNER/NAME@<40-hex commit>)"
            ))
        })
    }
}

/// `annotations.role` of a dependency, with what that role records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase", deny_unknown_fields)]
pub enum DependencyRole {
    /// A file that was converted; ResourceDescriptor has no size field.
    Source { size: u64 },
    /// The guest wasm that converted.
    Converter,
    /// A file of the model directory that was deliberately not converted
    /// (training state such as `training_args.bin`), and why.
    Excluded { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
    /// One guest report per converted file.
    pub byproducts: Vec<Byproduct>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    pub id: String,
    pub version: BuilderVersion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderVersion {
    pub decant: String,
    pub wasmtime: String,
}

/// RFC 3339 times, whole seconds, UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildMetadata {
    pub started_on: String,
    pub finished_on: String,
}

/// A guest report, embedded as `annotations` (too big for `content`, which
/// SLSA wants under 1 KB, and readable as plain JSON) with the sha256 of its
/// compact, key-sorted JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Byproduct {
    pub name: String,
    pub media_type: String,
    pub digest: DigestSet,
    pub annotations: ReceiptReport,
}

impl Byproduct {
    /// A report byproduct; the digest is computed here, so it always
    /// matches.
    pub fn report(name: String, report: ReceiptReport) -> Self {
        Byproduct {
            digest: DigestSet {
                sha256: Sha256Hex::of(&sorted_json(&report)),
            },
            name,
            media_type: REPORT_MEDIA_TYPE.into(),
            annotations: report,
        }
    }

    /// Whether `digest` is the digest of `annotations`.
    pub fn digest_matches(&self) -> bool {
        Sha256Hex::of(&sorted_json(&self.annotations)) == self.digest.sha256
    }
}

/// What one listed entry costs in a statement beyond its names: quotes,
/// separators and, for a dropped entry, its field names.
pub const ENTRY_OVERHEAD: usize = 32;

/// The guest's report as a receipt records it: the listings (dropped
/// entries, entries outside `state_dict`, tied names) may be cut short so
/// that every receipt fits the size a verifier reads; each has a total
/// saying how many there were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptReport {
    pub format: String,
    pub pickle_protocol: u8,
    pub byteorder: String,
    pub tensors: u64,
    pub output_bytes: u64,
    pub dropped: Vec<Dropped>,
    pub dropped_total: u64,
    pub ignored: Vec<String>,
    pub ignored_total: u64,
    /// Removed name -> kept name (the output's `__metadata__` has them all).
    pub aliases: BTreeMap<String, String>,
    pub aliases_total: u64,
    pub globals: Vec<String>,
}

impl ReceiptReport {
    /// The report with every listing as the guest gave it.
    pub fn from_report(r: &Report) -> Self {
        ReceiptReport {
            format: r.format.clone(),
            pickle_protocol: r.pickle_protocol,
            byteorder: r.byteorder.clone(),
            tensors: r.tensors,
            output_bytes: r.output_bytes,
            dropped: r.dropped.clone(),
            dropped_total: r.dropped_total,
            ignored: r.ignored.clone(),
            ignored_total: r.ignored.len() as u64,
            aliases: r.aliases.clone(),
            aliases_total: r.aliases.len() as u64,
            globals: r.globals.clone(),
        }
    }

    /// Cuts the listings down to at most `budget` bytes in all, counting
    /// each entry as its names plus [`ENTRY_OVERHEAD`] (the totals stay),
    /// keeping each listing's first entries.
    pub fn cut_to(&mut self, budget: usize) {
        let mut left = budget;
        let mut take = |len: usize| {
            let len = len.saturating_add(ENTRY_OVERHEAD);
            let fits = len <= left;
            if fits {
                left -= len;
            } else {
                left = 0;
            }
            fits
        };
        self.dropped = std::mem::take(&mut self.dropped)
            .into_iter()
            .take_while(|d| take(d.name.len() + d.kind.len()))
            .collect();
        self.ignored = std::mem::take(&mut self.ignored)
            .into_iter()
            .take_while(|n| take(n.len()))
            .collect();
        self.aliases = std::mem::take(&mut self.aliases)
            .into_iter()
            .take_while(|(a, b)| take(a.len() + b.len()))
            .collect();
    }

    /// Whether any listing was cut short.
    pub fn is_cut(&self) -> bool {
        self.dropped.len() as u64 != self.dropped_total
            || self.ignored.len() as u64 != self.ignored_total
            || self.aliases.len() as u64 != self.aliases_total
    }
}

/// Compact JSON with keys sorted, the form decant signs (serde_json's map
/// is a BTreeMap, so going through a `Value` sorts every object's keys).
pub fn sorted_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_value(value)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_default()
}

/// Refuses JSON with a repeated key in any object, at any depth. serde
/// refuses a repeated field of a struct, but a map (the report's `aliases`)
/// would keep the last value silently, where another reader keeps the
/// first.
pub fn check_unique_keys(json: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    UniqueKeys
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())
}

struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
}

impl Statement {
    /// Names that must be unique are, and there is a source: two subjects
    /// (or sources, or reports) under one name would let a verifier match
    /// one and a reader use the other.
    pub fn check_names(&self) -> Result<(), String> {
        fn repeated<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
            let mut seen = std::collections::HashSet::new();
            let mut names = names;
            names.find(|n| !seen.insert(*n))
        }
        if let Some(n) = repeated(self.subject.iter().map(|s| s.name.as_str())) {
            return Err(format!("two subjects are named {n:?}"));
        }
        if let Some(n) = repeated(self.sources().map(|(d, _)| d.name.as_str())) {
            return Err(format!("two sources are named {n:?}"));
        }
        if let Some(n) = repeated(
            self.predicate
                .run_details
                .byproducts
                .iter()
                .map(|b| b.name.as_str()),
        ) {
            return Err(format!("two byproducts are named {n:?}"));
        }
        // A shard's part of a directory may be only copied or excluded
        // files; any other receipt is of a conversion, which has a source.
        let shard = &self.predicate.build_definition.external_parameters.shard;
        if self.sources().next().is_none() && shard.is_none() {
            return Err("it names no source".into());
        }
        Ok(())
    }

    /// The converter dependency, if there is exactly one.
    pub fn converter(&self) -> Result<&Dependency, String> {
        let mut found = self
            .predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .filter(|d| d.annotations == DependencyRole::Converter);
        match (found.next(), found.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err("the receipt names no converter dependency".into()),
            (Some(_), Some(_)) => {
                Err("the receipt names more than one converter dependency".into())
            }
        }
    }

    /// Every source dependency with its size.
    pub fn sources(&self) -> impl Iterator<Item = (&Dependency, u64)> {
        self.predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .filter_map(|d| match d.annotations {
                DependencyRole::Source { size } => Some((d, size)),
                DependencyRole::Converter | DependencyRole::Excluded { .. } => None,
            })
    }

    /// The repository revisions the sources were read from (a Hugging Face
    /// cache), each once; empty when the receipt names none.
    pub fn source_revisions(&self) -> Vec<&RevisionPurl> {
        let mut uris: Vec<&RevisionPurl> =
            self.sources().filter_map(|(d, _)| d.uri.as_ref()).collect();
        uris.sort();
        uris.dedup();
        uris
    }

    /// The sandbox policy's sha256.
    pub fn policy_sha256(&self) -> &Sha256Hex {
        &self
            .predicate
            .build_definition
            .internal_parameters
            .sandbox
            .policy_sha256
    }

    /// Whether the conversion ran with `--strict`.
    pub fn strict(&self) -> bool {
        self.predicate.build_definition.external_parameters.strict
    }

    /// The subject named `name`.
    pub fn subject(&self, name: &str) -> Option<&Subject> {
        self.subject.iter().find(|s| s.name == name)
    }

    /// The report byproduct named `name`.
    pub fn byproduct(&self, name: &str) -> Option<&Byproduct> {
        self.predicate
            .run_details
            .byproducts
            .iter()
            .find(|b| b.name == name)
    }
}

/// `true`/`false` as the strings SLSA parameters are.
mod bool_text {
    use super::*;

    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *v { "true" } else { "false" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match String::deserialize(d)?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "strict must be \"true\" or \"false\", found {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: a receipt names a source's revision by commit only; a
    /// branch (which moves), another purl type or a malformed repository
    /// id is not read as one.
    #[test]
    fn source_uri_is_a_pinned_hugging_face_revision() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        for good in [
            format!("pkg:huggingface/org/name@{commit}"),
            format!("pkg:huggingface/gpt2@{commit}"),
            format!("pkg:huggingface/Org_1/name.v2-x@{commit}"),
        ] {
            assert!(RevisionPurl::parse(&good).is_some(), "{good}");
        }
        for bad in [
            "pkg:huggingface/org/name@main".to_string(),
            format!("pkg:huggingface/org/name@{}", commit.to_uppercase()),
            format!("pkg:huggingface/org/name@{commit}0"),
            format!("pkg:pypi/org/name@{commit}"),
            format!("pkg:huggingface/a/b/c@{commit}"),
            format!("pkg:huggingface/../x@{commit}"),
            format!("pkg:huggingface/a--b@{commit}"),
            format!("pkg:huggingface/@{commit}"),
            format!("pkg:huggingface/org/name@{commit}#sub"),
            format!("pkg:huggingface/org/name@{commit}?x=1"),
        ] {
            assert!(RevisionPurl::parse(&bad).is_none(), "{bad}");
        }
        let dep = serde_json::json!({
            "name": "pytorch_model.bin",
            "uri": "pkg:huggingface/org/name@main",
            "digest": {"sha256": "0".repeat(64)},
            "annotations": {"role": "source", "size": 1}
        });
        let err = serde_json::from_value::<Dependency>(dep).unwrap_err();
        assert!(
            err.to_string().contains("not a Hugging Face revision"),
            "{err}"
        );
    }
}
