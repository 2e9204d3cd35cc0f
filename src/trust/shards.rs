//! Verifying a directory converted in shards: a set of receipts that
//! together vouch for it.
//!
//! `decant convert SRC... --shard I/N` ([`crate::batch`]) has each machine
//! write a receipt for its part of a directory. The parts are gathered
//! into one directory, which is promoted only if the set of receipts covers
//! it exactly. The steps, in order (docs/RECEIPTS.md):
//!
//! 1. `receipt`, once per receipt: steps 1 to 7 of [`super::verify`] (and a
//!    `--policy-sha256` pin) pass for it on its own.
//! 2. `shards`: every receipt is a shard receipt of the same plan and
//!    shard count; no shard appears twice; and the shards present are
//!    exactly the ones every receipt says have work in this directory. A
//!    shard that never ran, or whose output was not gathered, fails here
//!    even though the directory looks complete.
//! 3. `subject`: every file in the directory is a subject of exactly one
//!    receipt, with its digest, and every subject is there.

use super::statement::{Sha256Hex, ShardParameters, Statement};
use super::verify::{
    self, list, Artifact, Check, CheckName, DirectoryFiles, Request, Trust, Verdict, Verified,
    NOT_CHECKED,
};
use std::collections::{BTreeMap, BTreeSet};

/// Whether a receipt claims to be a shard receipt: which verifier a
/// directory needs. Nothing read here is trusted: the single-receipt
/// verifier refuses a shard receipt for a directory, and this one requires
/// every shard, so choosing wrongly can only fail.
pub fn claims_shard(bytes: &[u8]) -> bool {
    super::verify::any_unverified_payload(bytes, |v| {
        v.pointer("/predicate/buildDefinition/externalParameters/shard")
            .is_some()
    })
}

/// Most receipts in one set.
pub const MAX_RECEIPTS: usize = 10_000;

/// What to verify.
#[derive(Debug, Clone)]
pub struct SetRequest<'a> {
    /// The directory as served (the receipts themselves left out).
    pub dir: &'a DirectoryFiles,
    /// Each receipt: how it is shown, and its bytes.
    pub receipts: &'a [(String, &'a [u8])],
    pub trust: Trust<'a>,
    /// `--policy-sha256`: the sandbox policy every receipt must name.
    pub policy_sha256_pin: Option<Sha256Hex>,
}

/// Runs the steps; the verdict passes only if every one of them did.
pub fn verify_set(req: &SetRequest<'_>) -> Verdict {
    let mut checks = Vec::new();
    let mut statements: Vec<(&str, Verified<Statement>)> = Vec::new();
    if req.receipts.len() > MAX_RECEIPTS {
        checks.push(Check::fail(
            CheckName::Receipt,
            format!(
                "{} receipts were given, more than the {MAX_RECEIPTS} a set may have",
                req.receipts.len()
            ),
        ));
    }
    // Step 1: each receipt alone. The subject check against an empty
    // directory is not one of the steps here (step 3 replaces it).
    let nothing = Artifact::Directory(DirectoryFiles::default());
    for (label, bytes) in req.receipts.iter().take(MAX_RECEIPTS) {
        let v = verify::verify(&Request {
            artifact: &nothing,
            receipt: bytes,
            trust: req.trust,
            source_sha256_pin: None,
            policy_sha256_pin: req.policy_sha256_pin.clone(),
            caller_checks: &[],
        });
        let failed = v
            .checks()
            .iter()
            .find(|c| !c.passed && c.name != CheckName::Subject);
        match (v.statement(), failed) {
            (Some(s), None) => {
                checks.push(Check::pass(
                    CheckName::Receipt,
                    format!(
                        "{label}: authenticated by trusted key #{}{}",
                        s.signer() + 1,
                        match shard_of(s) {
                            Some(p) => format!(", shard {}/{}", p.shard, p.count),
                            None => String::new(),
                        }
                    ),
                ));
                statements.push((label, s.clone()));
            }
            (_, Some(c)) => checks.push(Check::fail(
                CheckName::Receipt,
                format!("{label}: {} failed: {}", c.name, c.detail),
            )),
            (None, None) => checks.push(Check::fail(
                CheckName::Receipt,
                format!("{label}: did not authenticate"),
            )),
        }
    }
    if statements.len() != req.receipts.len() {
        checks.push(Check::fail(CheckName::Shards, NOT_CHECKED));
        checks.push(Check::fail(CheckName::Subject, NOT_CHECKED));
        return Verdict::from_parts(checks, None);
    }
    checks.push(shards_check(&statements));
    checks.push(union_subject_check(req.dir, &statements));
    let first = statements.into_iter().next().map(|(_, s)| s);
    Verdict::from_parts(checks, first)
}

fn shard_of(s: &Statement) -> Option<&ShardParameters> {
    s.predicate
        .build_definition
        .external_parameters
        .shard
        .as_ref()
}

/// Step 2: whether authenticated shard receipts make one complete set
/// (also what `decant audit` asks of the shard receipts it finds).
pub fn shards_check(statements: &[(&str, Verified<Statement>)]) -> Check {
    let fail = |detail: String| Check::fail(CheckName::Shards, detail);
    let mut params: Vec<(&str, &ShardParameters)> = Vec::new();
    for (label, s) in statements {
        match shard_of(s) {
            Some(p) => params.push((label, p)),
            None => {
                return fail(format!(
                    "{label} is not a shard receipt (it covers a whole conversion); verify it on its own with --receipt {label}"
                ))
            }
        }
    }
    let Some((first_label, first)) = params.first().copied() else {
        return fail("no receipt was given".into());
    };
    for (label, p) in &params {
        let well_formed = p.shard >= 1
            && p.shard <= p.count
            && p.directory_shards.is_sorted_by(|a, b| a < b)
            && p.directory_shards.iter().all(|&i| i >= 1 && i <= p.count)
            && p.directory_shards.contains(&p.shard);
        if !well_formed {
            return fail(format!(
                "{label} says it is shard {}/{} of a directory with work for shards {:?}, which is inconsistent",
                p.shard, p.count, p.directory_shards
            ));
        }
        if p.plan != first.plan || p.count != first.count {
            return fail(format!(
                "{label} is shard {}/{} of plan {}, but {first_label} is shard {}/{} of plan {}: the machines planned different batches (different sources or --shard counts)",
                p.shard, p.count, p.plan, first.shard, first.count, first.plan
            ));
        }
        if p.directory != first.directory || p.directory_units != first.directory_units {
            return fail(format!(
                "{label} covers part of directory {:?} (units {}) of the plan, {first_label} part of {:?} (units {}): receipts of different directories do not add up to one",
                p.directory, p.directory_units, first.directory, first.directory_units
            ));
        }
        if p.directory_shards != first.directory_shards {
            return fail(format!(
                "{label} expects shards {:?} in this directory, {first_label} expects {:?}",
                p.directory_shards, first.directory_shards
            ));
        }
    }
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for (label, p) in &params {
        if let Some(other) = seen.insert(p.shard, label) {
            return fail(format!(
                "shard {}/{} was given twice: {other} and {label}",
                p.shard, p.count
            ));
        }
    }
    let present: BTreeSet<u32> = seen.keys().copied().collect();
    let expected: BTreeSet<u32> = first.directory_shards.iter().copied().collect();
    let missing: Vec<String> = expected
        .difference(&present)
        .map(|i| format!("{i}/{}", first.count))
        .collect();
    if !missing.is_empty() {
        return fail(format!(
            "expected receipts from shards {} (plan {}), missing {}: give every shard's receipt; a shard whose job did not run, or whose outputs were not gathered here, has none",
            list(&shard_names(&expected, first.count)),
            first.plan,
            list(&missing)
        ));
    }
    Check::pass(
        CheckName::Shards,
        format!(
            "{} receipt{} of plan {}: every shard with work in this directory ({})",
            params.len(),
            if params.len() == 1 { "" } else { "s" },
            first.plan,
            list(&shard_names(&expected, first.count))
        ),
    )
}

fn shard_names(shards: &BTreeSet<u32>, count: u32) -> Vec<String> {
    shards.iter().map(|i| format!("{i}/{count}")).collect()
}

/// Step 3: the directory as served, against the union of the subjects.
fn union_subject_check(dir: &DirectoryFiles, statements: &[(&str, Verified<Statement>)]) -> Check {
    let mut problems = dir.problems.clone();
    let mut owner: BTreeMap<&str, (&str, &Sha256Hex)> = BTreeMap::new();
    for (label, s) in statements {
        for sub in &s.subject {
            if let Some((other, _)) = owner.insert(&sub.name, (label, &sub.digest.sha256)) {
                problems.push(format!(
                    "{} is a subject of both {other} and {label}",
                    sub.name
                ));
            }
        }
    }
    let present: BTreeSet<&str> = dir.files.iter().map(|(n, _)| n.as_str()).collect();
    for (name, sha) in &dir.files {
        match owner.get(name.as_str()) {
            None => problems.push(format!("{name} (sha256 {sha}) is a subject of no receipt")),
            Some((label, want)) if *want != sha => {
                problems.push(format!("{name} has sha256 {sha}, {label} says {want}"))
            }
            Some(_) => {}
        }
    }
    for (name, (label, _)) in &owner {
        if !present.contains(name) {
            problems.push(format!(
                "subject {name} of {label} is missing from the directory"
            ));
        }
    }
    verify::subject_problems(
        problems,
        format!(
            "all {} files in the directory are subjects of exactly one receipt, with their digests{}",
            dir.files.len(),
            dir.side_files_note()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::receipt::{self, tests::sample_statement};
    use ed25519_dalek::SigningKey;

    const CONVERTER: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    const PLAN: &str = "4444444444444444444444444444444444444444444444444444444444444444";

    fn sha(c: char) -> Sha256Hex {
        Sha256Hex::parse(&c.to_string().repeat(64)).unwrap()
    }

    /// A signed shard receipt whose one subject is `name` with digest `d`.
    fn shard_receipt(key: &SigningKey, shard: u32, of: &[u32], name: &str, d: char) -> String {
        let mut s = sample_statement(
            &d.to_string().repeat(64),
            &"2".repeat(64),
            CONVERTER,
            &Policy::default_policy().unwrap(),
        );
        s.subject[0].name = name.into();
        s.predicate.build_definition.external_parameters.shard = Some(ShardParameters {
            shard,
            count: 3,
            plan: Sha256Hex::parse(PLAN).unwrap(),
            directory: "model".into(),
            directory_units: Sha256Hex::parse(PLAN).unwrap(),
            directory_shards: of.to_vec(),
        });
        receipt::to_line(&receipt::sign_statement(&s, key))
    }

    fn run(receipts: &[String], files: &[(&str, char)], key: &SigningKey) -> Verdict {
        let dir = DirectoryFiles {
            files: files
                .iter()
                .map(|(n, d)| (n.to_string(), sha(*d)))
                .collect(),
            problems: vec![],
            ..DirectoryFiles::default()
        };
        let labelled: Vec<(String, &[u8])> = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("r{}", i + 1), r.as_bytes()))
            .collect();
        let keys = [key.verifying_key()];
        let converters = [Sha256Hex::parse(CONVERTER).unwrap()];
        verify_set(&SetRequest {
            dir: &dir,
            receipts: &labelled,
            trust: Trust {
                keys: &keys,
                converters: &converters,
            },
            policy_sha256_pin: None,
        })
    }

    fn detail(v: &Verdict, name: CheckName) -> String {
        v.checks()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.detail.clone())
            .unwrap_or_default()
    }

    /// The complete set passes; each way a set can be wrong fails the
    /// check that names it.
    #[test]
    fn a_set_passes_only_when_complete_from_one_plan_and_disjoint() {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let a = shard_receipt(&key, 1, &[1, 3], "a.safetensors", 'a');
        let c = shard_receipt(&key, 3, &[1, 3], "c.safetensors", 'c');
        let files = [("a.safetensors", 'a'), ("c.safetensors", 'c')];
        assert!(run(&[a.clone(), c.clone()], &files, &key).passed());

        // Shard 3 missing.
        let v = run(std::slice::from_ref(&a), &files[..1], &key);
        assert_eq!(v.failed(), [CheckName::Shards]);
        assert!(detail(&v, CheckName::Shards).contains("missing 3/3"));

        // The same shard twice.
        let v = run(&[a.clone(), a.clone()], &files[..1], &key);
        assert!(detail(&v, CheckName::Shards).contains("given twice"));

        // Two receipts that disagree on which shards have work here.
        let other = shard_receipt(&key, 3, &[2, 3], "c.safetensors", 'c');
        let v = run(&[a.clone(), other], &files, &key);
        assert!(detail(&v, CheckName::Shards).contains("expects shards"));

        // A file both shards claim.
        let both = shard_receipt(&key, 3, &[1, 3], "a.safetensors", 'a');
        let v = run(&[a.clone(), both], &files[..1], &key);
        assert_eq!(v.failed(), [CheckName::Subject]);
        assert!(detail(&v, CheckName::Subject).contains("subject of both r1 and r2"));

        // A receipt claiming a shard outside its own list of shards.
        let odd = shard_receipt(&key, 2, &[1, 3], "b.safetensors", 'b');
        let v = run(&[a.clone(), odd], &files[..1], &key);
        assert!(detail(&v, CheckName::Shards).contains("inconsistent"));

        // A receipt signed by another key: that receipt fails, nothing else
        // is looked at.
        let stranger = SigningKey::generate(&mut rand_core::OsRng);
        let forged = shard_receipt(&stranger, 3, &[1, 3], "c.safetensors", 'c');
        let v = run(&[a, forged], &files, &key);
        assert!(!v.passed());
        assert!(v.statement().is_none());
        assert!(detail(&v, CheckName::Subject).starts_with("not checked"));
    }

    /// A whole-conversion receipt is not a shard receipt: mixing it into a
    /// set fails, and a shard receipt fails the single-receipt directory
    /// check (so it can only be used as a set).
    #[test]
    fn shard_and_whole_receipts_do_not_mix() {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let a = shard_receipt(&key, 1, &[1], "a.safetensors", 'a');
        let whole = receipt::to_line(&receipt::sign_statement(
            &sample_statement(
                &"b".repeat(64),
                &"2".repeat(64),
                CONVERTER,
                &Policy::default_policy().unwrap(),
            ),
            &key,
        ));
        let v = run(&[a.clone(), whole], &[("a.safetensors", 'a')], &key);
        assert!(detail(&v, CheckName::Shards).contains("is not a shard receipt"));

        let dir = Artifact::Directory(DirectoryFiles {
            files: vec![("a.safetensors".into(), sha('a'))],
            problems: vec![],
            ..DirectoryFiles::default()
        });
        let keys = [key.verifying_key()];
        let converters = [Sha256Hex::parse(CONVERTER).unwrap()];
        let v = verify::verify(&Request {
            artifact: &dir,
            receipt: a.as_bytes(),
            trust: Trust {
                keys: &keys,
                converters: &converters,
            },
            source_sha256_pin: None,
            policy_sha256_pin: None,
            caller_checks: &[],
        });
        assert_eq!(v.failed(), [CheckName::Subject]);
        assert!(claims_shard(a.as_bytes()));
    }
}
