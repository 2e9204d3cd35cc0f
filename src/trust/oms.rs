//! OpenSSF model signatures: the `model.sig` of a directory, in the format
//! of the OpenSSF `model-signing` tool (PyPI `model-signing` 1.1.x,
//! repository sigstore/model-transparency), so that
//! `model_signing verify key --signature model.sig --public_key KEY.pub DIR`
//! accepts what decant signs.
//!
//! decant's own receipts and manifests are for decant's gate; this file is
//! for everyone else's tooling that already checks `model.sig`. It is a
//! sigstore bundle v0.3 (`verificationMaterial.publicKey.hint` = sha256 of
//! the signer's SPKI PEM, no transparency log) around a DSSE envelope whose
//! in-toto statement has the predicate `https://model_signing/signature/v1.0`:
//! one subject, the sha256 over the concatenated raw sha256 digests of the
//! `resources` in their order, and `resources`, every file of the directory
//! by relative POSIX name and sha256 (serialization method `files`, the only
//! one `verify key` reads). The signature is ECDSA P-256 with SHA-256 over
//! the DSSE PAE, DER-encoded (model_signing accepts only ECDSA keys and only
//! DER). Sources: docs/RECEIPTS.md ("OpenSSF model signatures").
//!
//! Only the root `model.sig` is the signature; it is never one of the files
//! it covers, and it covers every other file, decant's receipt or manifest
//! included, except the git paths model_signing leaves out by default. Its
//! `ignore_paths` lists those and itself, because `model_signing verify`
//! also ignores whatever a signature's own `ignore_paths` lists.

use super::dsse::pae;
use super::statement::{Sha256Hex, STATEMENT_TYPE};
use crate::error::{Error, Kind, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The signature's name, at the root of the directory it signs.
pub const SIGNATURE_FILE: &str = "model.sig";
/// model_signing's predicate type (v1.0 of its signature format).
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The media type model_signing writes and requires (sigstore bundle v0.3).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Paths model_signing leaves out by default (`--ignore-git-paths`), at the
/// root of the directory.
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];
/// Largest signature read: a resource is about 150 bytes, so this allows
/// about a hundred thousand files.
pub const MAX_SIGNATURE_BYTES: usize = 16 << 20;

/// The in-toto statement model_signing signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmsStatement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<OmsSubject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: OmsPredicate,
}

/// The one subject: the directory, by the digest of its resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmsSubject {
    pub name: String,
    pub digest: super::statement::DigestSet,
}

/// How the directory was hashed, and every file's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmsPredicate {
    pub serialization: Serialization,
    pub resources: Vec<Resource>,
}

/// model_signing's `files` serialization (whole files, SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serialization {
    pub method: String,
    pub hash_type: String,
    pub allow_symlinks: bool,
    pub ignore_paths: Vec<String>,
}

/// One file: its POSIX path relative to the directory and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub name: String,
    pub algorithm: String,
    pub digest: Sha256Hex,
}

/// The sigstore bundle, as model_signing reads it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Envelope,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VerificationMaterial {
    public_key: PublicKeyIdentifier,
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyIdentifier {
    hint: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeSignature {
    sig: String,
    keyid: String,
}

/// Whether model_signing leaves `path` (relative, `/`-separated) out of a
/// signature: the signature itself and the git paths at the root.
pub fn is_ignored(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or(path);
    path == SIGNATURE_FILE || GIT_PATHS.contains(&first)
}

/// The `ignore_paths` decant records: the git paths and the signature,
/// sorted as model_signing writes them.
pub fn ignore_paths() -> Vec<String> {
    let mut paths: Vec<String> = GIT_PATHS
        .iter()
        .chain([SIGNATURE_FILE].iter())
        .map(|p| p.to_string())
        .collect();
    paths.sort();
    paths
}

/// The order model_signing lists resources in: Python's `PurePosixPath`
/// order, component by component (`a/b` before `a-b` before `a.txt`),
/// which plain string order is not.
fn posix_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// model_signing's subject digest: sha256 over the raw 32-byte digests of
/// the resources, concatenated in their order.
pub fn root_digest(resources: &[Resource]) -> Result<Sha256Hex> {
    let mut h = Sha256::new();
    for r in resources {
        let raw = hex::decode(r.digest.as_str())
            .map_err(|_| Error::internal("a resource digest is not hex"))?;
        h.update(raw);
    }
    Ok(Sha256Hex::from_computed(hex::encode(h.finalize())))
}

/// The statement for a directory named `model_name` holding `files`
/// (relative path, sha256): every file model_signing would hash, in its
/// order.
pub fn statement(model_name: &str, files: &[(String, Sha256Hex)]) -> Result<OmsStatement> {
    let mut kept: Vec<&(String, Sha256Hex)> =
        files.iter().filter(|(p, _)| !is_ignored(p)).collect();
    kept.sort_by(|a, b| posix_order(&a.0, &b.0));
    let resources: Vec<Resource> = kept
        .into_iter()
        .map(|(name, sha)| Resource {
            name: name.clone(),
            algorithm: "sha256".into(),
            digest: sha.clone(),
        })
        .collect();
    Ok(OmsStatement {
        type_: STATEMENT_TYPE.into(),
        subject: vec![OmsSubject {
            name: model_name.to_string(),
            digest: super::statement::DigestSet {
                sha256: root_digest(&resources)?,
            },
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: OmsPredicate {
            serialization: Serialization {
                method: "files".into(),
                hash_type: "sha256".into(),
                allow_symlinks: false,
                ignore_paths: ignore_paths(),
            },
            resources,
        },
    })
}

/// model_signing's key hint: hex sha256 of the SPKI PEM text.
pub fn key_hint(key: &VerifyingKey) -> Result<String> {
    let pem = super::keys::p256_public_pem(&p256::PublicKey::from(key))?;
    Ok(hex::encode(Sha256::digest(pem.as_bytes())))
}

/// Signs `statement`: the bundle, one line of compact JSON without a final
/// newline, as model_signing writes it.
pub fn sign(statement: &OmsStatement, key: &SigningKey) -> Result<String> {
    let payload = serde_json::to_vec(statement)
        .map_err(|e| Error::internal(format!("cannot encode the statement: {e}")))?;
    let sig: Signature = key.sign(&pae(PAYLOAD_TYPE, &payload));
    let der: DerSignature = sig.to_der();
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: PublicKeyIdentifier {
                hint: key_hint(key.verifying_key())?,
            },
            tlog_entries: Vec::new(),
        },
        dsse_envelope: Envelope {
            payload: STANDARD.encode(&payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                sig: STANDARD.encode(der.as_bytes()),
                keyid: String::new(),
            }],
        },
    };
    let line = serde_json::to_string(&bundle)
        .map_err(|e| Error::internal(format!("cannot encode the signature: {e}")))?;
    if line.len() > MAX_SIGNATURE_BYTES {
        return Err(Error::new(
            Kind::Limit,
            format!(
                "{SIGNATURE_FILE} would be {} bytes, more than the {MAX_SIGNATURE_BYTES} decant writes",
                line.len()
            ),
            "the directory has too many files for one model signature; sign its parts",
        ));
    }
    Ok(line)
}

/// Whether `bytes` claim to be a sigstore bundle (a JSON object with a
/// sigstore `mediaType` and a `dsseEnvelope`): only to explain why a
/// model.sig given where a decant receipt belongs is not one.
pub fn is_sigstore_bundle(bytes: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(bytes) else {
        return false;
    };
    map.contains_key("dsseEnvelope")
        && map
            .get("mediaType")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.starts_with("application/vnd.dev.sigstore.bundle"))
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub String);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn reject<T>(why: impl Into<String>) -> std::result::Result<T, Rejected> {
    Err(Rejected(why.into()))
}

/// Verifies a `model.sig` with `key`, as `model_signing verify key` does
/// and stricter: the bundle and statement must have exactly the fields
/// model_signing writes, one signature (model_signing checks only the
/// first, so a second one would be read by no one), a hint naming this key
/// if one is given, `files` / `sha256` serialization, unique resource
/// names, and a subject digest that is the digest of the resources.
/// Returns the statement, decoded from the verified bytes.
pub fn verify(bytes: &[u8], key: &VerifyingKey) -> std::result::Result<OmsStatement, Rejected> {
    if bytes.len() > MAX_SIGNATURE_BYTES {
        return reject(format!("larger than {MAX_SIGNATURE_BYTES} bytes"));
    }
    let bundle: Bundle = match serde_json::from_slice(bytes) {
        Ok(b) => b,
        Err(e) => return reject(format!("not a model_signing bundle: {e}")),
    };
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return reject(format!(
            "media type {:?}, expected {BUNDLE_MEDIA_TYPE:?}",
            bundle.media_type
        ));
    }
    let hint = &bundle.verification_material.public_key.hint;
    let ours = key_hint(key).map_err(|e| Rejected(e.message))?;
    if !hint.is_empty() && *hint != ours {
        return reject(format!(
            "signed by another key (hint {hint}, this key's is {ours})"
        ));
    }
    let env = &bundle.dsse_envelope;
    if env.payload_type != PAYLOAD_TYPE {
        return reject(format!(
            "payload type {:?}, expected {PAYLOAD_TYPE:?}",
            env.payload_type
        ));
    }
    let [signature] = env.signatures.as_slice() else {
        return reject(format!(
            "{} signatures, expected exactly one",
            env.signatures.len()
        ));
    };
    let Ok(payload) = STANDARD.decode(&env.payload) else {
        return reject("the payload is not standard base64");
    };
    let Ok(sig) = STANDARD.decode(&signature.sig) else {
        return reject("the signature is not standard base64");
    };
    let Ok(sig) = Signature::from_der(&sig) else {
        return reject("the signature is not a DER-encoded ECDSA P-256 signature");
    };
    if key.verify(&pae(PAYLOAD_TYPE, &payload), &sig).is_err() {
        return reject("the signature does not verify with this key");
    }
    let statement: OmsStatement = match serde_json::from_slice(&payload) {
        Ok(s) => s,
        Err(e) => return reject(format!("the signed statement is not model_signing's: {e}")),
    };
    check_statement(&statement)?;
    Ok(statement)
}

/// What `model_signing verify key` requires of a statement, besides the
/// files matching.
fn check_statement(s: &OmsStatement) -> std::result::Result<(), Rejected> {
    if s.type_ != STATEMENT_TYPE || s.predicate_type != PREDICATE_TYPE {
        return reject(format!(
            "statement {:?} with predicate {:?}, expected {STATEMENT_TYPE:?} with {PREDICATE_TYPE:?}",
            s.type_, s.predicate_type
        ));
    }
    let ser = &s.predicate.serialization;
    if ser.method != "files" || ser.hash_type != "sha256" {
        return reject(format!(
            "serialization {:?} with {:?}; model_signing verify key reads files with sha256",
            ser.method, ser.hash_type
        ));
    }
    let mut names = BTreeSet::new();
    for r in &s.predicate.resources {
        if r.algorithm != "sha256" {
            return reject(format!("resource {} uses {:?}", r.name, r.algorithm));
        }
        if !names.insert(r.name.as_str()) {
            return reject(format!("resource {} is listed twice", r.name));
        }
    }
    let [subject] = s.subject.as_slice() else {
        return reject(format!("{} subjects, expected one", s.subject.len()));
    };
    let root = root_digest(&s.predicate.resources).map_err(|e| Rejected(e.message))?;
    if subject.digest.sha256 != root {
        return reject(format!(
            "the subject digest {} is not the digest of the resources ({root})",
            subject.digest.sha256
        ));
    }
    Ok(())
}

/// How a directory's files differ from a statement's resources, as
/// model_signing compares them: the statement's own `ignore_paths`, the git
/// paths and the signature are left out of `files`. Empty if they match.
pub fn differences(s: &OmsStatement, files: &[(String, Sha256Hex)]) -> Vec<String> {
    let ignored = |p: &str| {
        is_ignored(p)
            || s.predicate
                .serialization
                .ignore_paths
                .iter()
                .any(|i| p == i || p.starts_with(&format!("{i}/")))
    };
    let signed: BTreeMap<&str, &Sha256Hex> = s
        .predicate
        .resources
        .iter()
        .map(|r| (r.name.as_str(), &r.digest))
        .collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, sha) in files.iter().filter(|(p, _)| !ignored(p)) {
        seen.insert(path.as_str());
        match signed.get(path.as_str()) {
            None => out.push(format!("{path} is not signed")),
            Some(d) if *d != sha => out.push(format!("{path} has changed since it was signed")),
            Some(_) => {}
        }
    }
    for name in signed.keys().filter(|n| !seen.contains(*n)) {
        out.push(format!("{name} is signed but missing"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(s: &str) -> Sha256Hex {
        Sha256Hex::of(s.as_bytes())
    }

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn resources_are_in_posix_path_order_without_ignored_paths() {
        let files: Vec<(String, Sha256Hex)> = [
            "a.txt",
            "a-b",
            "a/b",
            "model.sig",
            ".git/HEAD",
            ".gitattributes",
            "sub/model.sig",
            "sub/.gitignore",
        ]
        .iter()
        .map(|n| (n.to_string(), sha(n)))
        .collect();
        let s = statement("m", &files).unwrap();
        let names: Vec<&str> = s
            .predicate
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["a/b", "a-b", "a.txt", "sub/.gitignore", "sub/model.sig"]
        );
        assert_eq!(
            s.predicate.serialization.ignore_paths,
            [
                ".git",
                ".gitattributes",
                ".github",
                ".gitignore",
                "model.sig"
            ]
        );
    }

    #[test]
    fn a_signature_verifies_and_a_changed_byte_does_not() {
        let files = vec![("a".to_string(), sha("a"))];
        let s = statement("m", &files).unwrap();
        let line = sign(&s, &key()).unwrap();
        let vk = *key().verifying_key();
        assert_eq!(verify(line.as_bytes(), &vk).unwrap(), s);
        assert!(differences(&s, &files).is_empty());
        let changed = vec![("a".to_string(), sha("b"))];
        assert_eq!(
            differences(&s, &changed),
            ["a has changed since it was signed"]
        );

        let other = *SigningKey::from_slice(&[9u8; 32]).unwrap().verifying_key();
        assert!(verify(line.as_bytes(), &other)
            .unwrap_err()
            .0
            .contains("another key"));

        // A flipped signature byte.
        let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let sig = v["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap();
        let mut raw = STANDARD.decode(sig).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        v["dsseEnvelope"]["signatures"][0]["sig"] = STANDARD.encode(raw).into();
        assert!(verify(v.to_string().as_bytes(), &vk).is_err());
    }
}
