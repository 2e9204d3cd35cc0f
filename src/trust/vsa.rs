//! SLSA Verification Summary Attestation v1 (`decant verify --vsa PATH
//! --key KEY`): the gate's decision, signed, for admission controllers
//! and audit logs that trust decant's verdict without re-running it.
//!
//! Written to the VSA spec as of SLSA v1.2 (`docs/spec/v1.2/
//! verification_summary.md`, slsa-framework/slsa tag v1.2, commit
//! 19e4e2f0; docs/RECEIPTS.md records it): an in-toto Statement v1 with
//! predicate type `https://slsa.dev/verification_summary/v1`, in a DSSE
//! envelope signed with Ed25519 exactly like a receipt, so the verifiers
//! that check receipts check it.
//!
//! What decant claims, and no more (docs/RECEIPTS.md):
//!
//! - `verifiedLevels` never names a SLSA build level: decant's receipts
//!   are signed with a key on the converting machine, not by a hosted
//!   build platform, so Build L2+ does not hold, and decant does not
//!   evaluate the track. A pass is `SLSA_BUILD_LEVEL_UNEVALUATED` plus
//!   decant's own values (`DECANT_CONVERSION_VERIFIED`,
//!   `DECANT_CONVERSION_REPRODUCED`, `DECANT_BUNDLE_VERIFIED`); a failure
//!   is `FAILED` alone.
//! - `dependencyLevels` is absent: decant makes no claim about the
//!   sources' own provenance.
//! - `policy` is what the gate checked with: a decant policy URI and the
//!   sha256 of the parameters (trusted keys, converters, pins, required
//!   bindings), which are also given as `annotations`, so a consumer can
//!   both pin the digest and read what it means.

use super::dsse;
use super::manifest::Severity;
use super::statement::{sorted_json, DigestSet, Sha256Hex, STATEMENT_TYPE};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use std::collections::BTreeMap;

/// SLSA VSA v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// decant's gate, run by the holder of the key that signs the VSA.
pub const VERIFIER_ID: &str = "https://decant.dev/verifier/v1";
/// The SLSA version whose VSA definition decant follows
/// (`SLSA_BUILD_LEVEL_UNEVALUATED` is defined from 1.2).
pub const SLSA_VERSION: &str = "1.2";
/// The checks `decant verify` runs on a conversion receipt
/// (docs/RECEIPTS.md, "Verification").
pub const CONVERSION_POLICY_URI: &str = "https://decant.dev/verify-policy/conversion-receipt/v1";
/// The checks `decant verify DIR --receipt MANIFEST` runs.
pub const BUNDLE_POLICY_URI: &str = "https://decant.dev/verify-policy/bundle-manifest/v1";

/// The statement.
#[derive(Debug, Clone, Serialize)]
pub struct VsaStatement {
    #[serde(rename = "_type")]
    pub type_: &'static str,
    /// What was verified: the file, or every file of the directory.
    pub subject: Vec<VsaSubject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: &'static str,
    pub predicate: Vsa,
}

#[derive(Debug, Clone, Serialize)]
pub struct VsaSubject {
    pub name: String,
    pub digest: DigestSet,
}

/// The VSA predicate.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vsa {
    pub verifier: Verifier,
    /// RFC 3339 UTC, whole seconds.
    pub time_verified: String,
    pub resource_uri: String,
    pub policy: PolicyDescriptor,
    /// The receipt or manifest the verdict was reached from.
    pub input_attestations: Vec<AttestationRef>,
    pub verification_result: VerificationResult,
    pub verified_levels: Vec<Level>,
    pub slsa_version: &'static str,
    /// Which of decant's checks failed (an extension field, named by URI
    /// as the VSA spec asks); absent when all passed.
    #[serde(
        rename = "https://decant.dev/vsa/failedChecks",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failed_checks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verifier {
    pub id: &'static str,
    /// `decant` (its version) and `converter` (the embedded guest's
    /// sha256, which `--reproduce` runs).
    pub version: BTreeMap<String, String>,
}

/// A ResourceDescriptor for the policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyDescriptor {
    pub uri: &'static str,
    /// sha256 of `annotations` as compact JSON with sorted keys.
    pub digest: DigestSet,
    pub annotations: VerifyPolicy,
}

/// What the gate was told to require.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VerifyPolicy {
    /// `decant verify ARTIFACT --receipt RECEIPT`.
    #[serde(rename_all = "camelCase")]
    ConversionReceipt {
        /// Fingerprints (sha256 of the SPKI DER, hex) of the trusted keys,
        /// sorted.
        trusted_keys: Vec<String>,
        /// Converter digests accepted (the embedded guest's and any
        /// `--allow-converter`), sorted.
        converters: Vec<Sha256Hex>,
        /// `--source FILE` / `--source-sha256`.
        #[serde(skip_serializing_if = "Option::is_none")]
        source_sha256: Option<Sha256Hex>,
        /// `--source DIR` (for a directory): every source the receipt
        /// names was found in a given directory with its digest.
        source_directory: bool,
        /// `--policy-sha256`.
        #[serde(skip_serializing_if = "Option::is_none")]
        policy_sha256: Option<Sha256Hex>,
        /// `--reproduce`.
        reproduce: bool,
    },
    /// `decant verify DIR --receipt MANIFEST`.
    #[serde(rename_all = "camelCase")]
    BundleManifest {
        trusted_keys: Vec<String>,
        /// `--require NAME[=VALUE]`, sorted.
        required: Vec<String>,
        fail_on: Severity,
    },
}

impl VerifyPolicy {
    /// As a ResourceDescriptor: its URI and the digest of its parameters.
    pub fn descriptor(self) -> PolicyDescriptor {
        let uri = match self {
            VerifyPolicy::ConversionReceipt { .. } => CONVERSION_POLICY_URI,
            VerifyPolicy::BundleManifest { .. } => BUNDLE_POLICY_URI,
        };
        PolicyDescriptor {
            uri,
            digest: DigestSet {
                sha256: Sha256Hex::of(&sorted_json(&self)),
            },
            annotations: self,
        }
    }
}

/// An input attestation: where it was read, and its file's sha256.
#[derive(Debug, Clone, Serialize)]
pub struct AttestationRef {
    pub uri: String,
    pub digest: DigestSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VerificationResult {
    Passed,
    Failed,
}

/// A `verifiedLevels` value: SLSA's, or decant's own (custom values may not
/// start with `SLSA_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    /// No claim about the SLSA build track (see the module docs).
    #[serde(rename = "SLSA_BUILD_LEVEL_UNEVALUATED")]
    BuildUnevaluated,
    /// A conversion receipt signed by a trusted key, with decant's build
    /// type and builder and a trusted converter, vouches for exactly these
    /// bytes (a directory: exactly these files, nothing else), and every
    /// pin given held.
    #[serde(rename = "DECANT_CONVERSION_VERIFIED")]
    ConversionVerified,
    /// And converting the source again in the sandbox gave the same bytes
    /// (`--reproduce`).
    #[serde(rename = "DECANT_CONVERSION_REPRODUCED")]
    ConversionReproduced,
    /// A bundle manifest signed by a trusted key lists exactly these
    /// files, binds what `--require` asks, and records no finding at or
    /// above `--fail-on`.
    #[serde(rename = "DECANT_BUNDLE_VERIFIED")]
    BundleVerified,
    /// The verification failed.
    #[serde(rename = "FAILED")]
    Failed,
}

/// What a VSA is built from.
pub struct Summary {
    pub subject: Vec<(String, Sha256Hex)>,
    pub resource_uri: String,
    pub policy: VerifyPolicy,
    pub inputs: Vec<AttestationRef>,
    /// `None` when the verification passed; otherwise the failed checks.
    pub failed: Option<Vec<String>>,
    /// decant's levels the verification established (used only if it
    /// passed).
    pub levels: Vec<Level>,
    pub time_verified: String,
}

/// The statement for `s`.
pub fn statement(s: Summary) -> VsaStatement {
    let (result, levels, failed_checks) = match s.failed {
        None => {
            let mut levels = vec![Level::BuildUnevaluated];
            levels.extend(s.levels);
            (VerificationResult::Passed, levels, Vec::new())
        }
        Some(failed) => (VerificationResult::Failed, vec![Level::Failed], failed),
    };
    VsaStatement {
        type_: STATEMENT_TYPE,
        subject: s
            .subject
            .into_iter()
            .map(|(name, sha256)| VsaSubject {
                name,
                digest: DigestSet { sha256 },
            })
            .collect(),
        predicate_type: PREDICATE_TYPE,
        predicate: Vsa {
            verifier: Verifier {
                id: VERIFIER_ID,
                version: BTreeMap::from([
                    ("decant".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                    ("converter".to_string(), crate::guest::sha256().to_string()),
                ]),
            },
            time_verified: s.time_verified,
            resource_uri: s.resource_uri,
            policy: s.policy.descriptor(),
            input_attestations: s.inputs,
            verification_result: result,
            verified_levels: levels,
            slsa_version: SLSA_VERSION,
            failed_checks,
        },
    }
}

/// Signs the statement as one DSSE envelope line (compact JSON, keys
/// sorted), as receipts are signed.
pub fn sign(statement: &VsaStatement, key: &SigningKey) -> String {
    let env = dsse::sign(&sorted_json(statement), key);
    let mut line = serde_json::to_string(&env).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(failed: Option<Vec<String>>) -> Summary {
        Summary {
            subject: vec![("m.safetensors".into(), Sha256Hex::of(b"m"))],
            resource_uri: "file:///m.safetensors".into(),
            policy: VerifyPolicy::BundleManifest {
                trusted_keys: vec!["sha256:ab".into()],
                required: vec![],
                fail_on: Severity::High,
            },
            inputs: vec![],
            failed,
            levels: vec![Level::BundleVerified],
            time_verified: "2026-11-28T12:00:00Z".into(),
        }
    }

    /// A pass claims decant's levels and no SLSA build level; a failure
    /// claims only FAILED and says which checks failed.
    #[test]
    fn levels_follow_the_result() {
        let pass = serde_json::to_value(statement(summary(None))).unwrap();
        let p = &pass["predicate"];
        assert_eq!(p["verificationResult"], "PASSED");
        assert_eq!(
            p["verifiedLevels"],
            serde_json::json!(["SLSA_BUILD_LEVEL_UNEVALUATED", "DECANT_BUNDLE_VERIFIED"])
        );
        assert!(p.get("https://decant.dev/vsa/failedChecks").is_none());
        assert!(p.get("dependencyLevels").is_none());
        let fail = serde_json::to_value(statement(summary(Some(vec!["subject".into()])))).unwrap();
        let p = &fail["predicate"];
        assert_eq!(p["verificationResult"], "FAILED");
        assert_eq!(p["verifiedLevels"], serde_json::json!(["FAILED"]));
        assert_eq!(
            p["https://decant.dev/vsa/failedChecks"],
            serde_json::json!(["subject"])
        );
    }

    /// The policy digest is the sha256 of its annotations' sorted JSON, so
    /// a consumer can recompute it from what the VSA shows.
    #[test]
    fn policy_digest_covers_its_annotations() {
        let v = serde_json::to_value(statement(summary(None))).unwrap();
        let policy = &v["predicate"]["policy"];
        assert_eq!(policy["uri"], BUNDLE_POLICY_URI);
        let recomputed = Sha256Hex::of(&serde_json::to_vec(&policy["annotations"]).unwrap());
        assert_eq!(policy["digest"]["sha256"], recomputed.as_str());
        assert_eq!(policy["annotations"]["kind"], "bundle-manifest");
        assert_eq!(policy["annotations"]["failOn"], "high");
    }
}
