//! DSSE (Dead Simple Signing Envelope) v1: the signed wrapper around a
//! receipt.
//!
//! The signature covers the PAE ("pre-authentication encoding") of the
//! payload type and the payload bytes, not the JSON envelope, so the
//! envelope's own formatting never matters and the type cannot be swapped
//! without breaking the signature. Signatures are pure Ed25519 (RFC 8032)
//! over the PAE bytes, which is what securesystemslib, the `dsse` crate,
//! cosign and `openssl pkeyutl -rawin` verify.
//!
//! Verification follows the DSSE protocol: check the payload type, verify a
//! signature with a trusted key, and only then hand the exact verified bytes
//! to the caller, who parses nothing else. `keyid` is an unauthenticated
//! hint; it is written (securesystemslib requires it) but never needed to
//! match.

use crate::trust::keys;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ed25519_dalek::{Signature as Ed25519Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The in-toto payload type; the only one decant writes or accepts.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The largest receipt file (one envelope, or JSON Lines of envelopes)
/// decant writes or reads: the one limit both sides share, so decant never
/// signs a receipt its own verifier would refuse unread. A real receipt is a
/// few KB, more for a model directory with many files; report listings are
/// cut short to stay under it (docs/RECEIPTS.md).
pub const MAX_RECEIPT_BYTES: usize = 16 << 20;

/// A DSSE envelope as JSON. Unknown fields are ignored when parsing (the
/// DSSE spec requires it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload, standard base64 with padding.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// A hint naming the key (securesystemslib's default keyid); optional in
    /// DSSE, so a missing one reads as empty.
    #[serde(default)]
    pub keyid: String,
    /// The 64-byte Ed25519 signature, base64.
    pub sig: String,
}

/// What a successful verification yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayload {
    /// The exact payload bytes the signature covers; the only bytes a caller
    /// may parse.
    pub payload: Vec<u8>,
    /// Index into the trusted keys of the key that verified.
    pub key_index: usize,
    /// Index into the envelope's signatures of the one that verified.
    pub signature_index: usize,
}

/// Why an envelope did not verify. Each is a distinct failure users need to
/// tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFailure {
    /// `payload` is not base64 (standard or URL-safe).
    MalformedPayload(String),
    /// `payloadType` is not [`PAYLOAD_TYPE`].
    UnsupportedPayloadType(String),
    /// No signature verified with any trusted key.
    NoSignatureVerified {
        /// Signature entries in the envelope.
        signatures: usize,
        /// Of those, how many were not a base64 64-byte signature.
        undecodable: usize,
        /// Trusted keys tried.
        trusted_keys: usize,
    },
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyFailure::MalformedPayload(why) => {
                write!(f, "the envelope's payload is not valid base64: {why}")
            }
            VerifyFailure::UnsupportedPayloadType(t) => write!(
                f,
                "unsupported payloadType {t:?} (expected {PAYLOAD_TYPE:?})"
            ),
            VerifyFailure::NoSignatureVerified {
                signatures,
                undecodable,
                trusted_keys,
            } => {
                write!(
                    f,
                    "no signature verified with a trusted key (signatures tried: {signatures}, trusted keys: {trusted_keys}"
                )?;
                if *undecodable > 0 {
                    write!(
                        f,
                        ", {undecodable} signatures were not valid Ed25519 base64"
                    )?;
                }
                f.write_str(")")
            }
        }
    }
}

impl std::error::Error for VerifyFailure {}

/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as ASCII
/// decimal byte counts (DSSE v1.0; not the pre-1.0 little-endian form).
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` as an in-toto DSSE envelope with one signature.
pub fn sign(payload: &[u8], key: &SigningKey) -> Envelope {
    let sig = key.sign(&pae(PAYLOAD_TYPE, payload));
    Envelope {
        payload: STANDARD.encode(payload),
        payload_type: PAYLOAD_TYPE.to_string(),
        signatures: vec![Signature {
            keyid: keys::keyid(&key.verifying_key()),
            sig: STANDARD.encode(sig.to_bytes()),
        }],
    }
}

/// Decodes base64 in either alphabet, padded or not (DSSE: verifiers MUST
/// accept both).
pub(super) fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    standard
        .decode(s)
        .or_else(|e| url_safe.decode(s).map_err(|_| e))
}

/// Verifies `env` against `trusted`: succeeds when any signature verifies
/// (Ed25519 `verify_strict`, which also rejects weak keys and non-canonical
/// signatures) with any trusted key. Failing or undecodable signatures are
/// skipped; `keyid` is ignored.
pub fn verify(env: &Envelope, trusted: &[VerifyingKey]) -> Result<VerifiedPayload, VerifyFailure> {
    let payload =
        decode_base64(&env.payload).map_err(|e| VerifyFailure::MalformedPayload(e.to_string()))?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(VerifyFailure::UnsupportedPayloadType(
            env.payload_type.clone(),
        ));
    }
    let message = pae(&env.payload_type, &payload);
    let mut undecodable = 0;
    for (signature_index, s) in env.signatures.iter().enumerate() {
        let Some(sig) = decode_base64(&s.sig)
            .ok()
            .and_then(|b| Ed25519Signature::from_slice(&b).ok())
        else {
            undecodable += 1;
            continue;
        };
        if let Some(key_index) = trusted
            .iter()
            .position(|k| k.verify_strict(&message, &sig).is_ok())
        {
            return Ok(VerifiedPayload {
                payload,
                key_index,
                signature_index,
            });
        }
    }
    Err(VerifyFailure::NoSignatureVerified {
        signatures: env.signatures.len(),
        undecodable,
        trusted_keys: trusted.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const SIG_HEX: &str = "daf9bbfb1428ceec1033372966aa6493708d34caf89f8d5ed385e3628d6f60f350160ab684190b64359be1f4c6b05d4f96b51cc4523d4b6eaedc47bc698bdf05";
    const SIG_B64: &str =
        "2vm7+xQozuwQMzcpZqpkk3CNNMr4n41e04XjYo1vYPNQFgq2hBkLZDWb4fTGsF1PlrUcxFI9S26u3Ee8aYvfBQ==";

    fn test_key() -> SigningKey {
        SigningKey::from_bytes(&hex::decode(SEED).unwrap().try_into().unwrap())
    }

    fn vector() -> Envelope {
        sign(br#"{"a":1}"#, &test_key())
    }

    #[test]
    fn pae_spec_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
        // Lengths count bytes, not characters.
        assert_eq!(pae("t", "é".as_bytes()), "DSSEv1 1 t 2 é".as_bytes());
    }

    #[test]
    fn rfc8032_test_1_vector() {
        let pae_bytes = pae(PAYLOAD_TYPE, br#"{"a":1}"#);
        assert_eq!(pae_bytes.len(), 48);
        let expected = "445353457631 20 3238 20 6170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e 20 37 20 7b2261223a317d".replace(' ', "");
        assert_eq!(hex::encode(&pae_bytes), expected);
        assert!(pae_bytes.starts_with(b"DSSEv1 28 application/vnd.in-toto+json "));

        let env = vector();
        assert_eq!(env.payload, "eyJhIjoxfQ==");
        assert_eq!(env.payload_type, PAYLOAD_TYPE);
        assert_eq!(env.signatures.len(), 1);
        assert_eq!(env.signatures[0].sig, SIG_B64);
        assert_eq!(
            hex::encode(STANDARD.decode(&env.signatures[0].sig).unwrap()),
            SIG_HEX
        );
        assert_eq!(
            env.signatures[0].keyid,
            "74c181c7ad8a0855d4b55e44d2ba87aabdddb196832571f15f92fece332e4916"
        );

        let v = verify(&env, &[test_key().verifying_key()]).unwrap();
        assert_eq!(v.payload, br#"{"a":1}"#);
        assert_eq!(v.key_index, 0);
        assert_eq!(v.signature_index, 0);
    }

    #[test]
    fn json_field_names() {
        let s = serde_json::to_string(&vector()).unwrap();
        assert_eq!(
            s,
            format!(
                r#"{{"payload":"eyJhIjoxfQ==","payloadType":"application/vnd.in-toto+json","signatures":[{{"keyid":"74c181c7ad8a0855d4b55e44d2ba87aabdddb196832571f15f92fece332e4916","sig":"{SIG_B64}"}}]}}"#
            )
        );
        // Unknown fields ignored, keyid optional.
        let parsed: Envelope = serde_json::from_str(&format!(
            r#"{{"payload":"eyJhIjoxfQ==","payloadType":"application/vnd.in-toto+json","extra":1,"signatures":[{{"sig":"{SIG_B64}","x":2}}]}}"#
        ))
        .unwrap();
        assert_eq!(parsed.signatures[0].keyid, "");
        assert!(verify(&parsed, &[test_key().verifying_key()]).is_ok());
    }

    #[test]
    fn either_base64_alphabet_with_or_without_padding() {
        let vk = test_key().verifying_key();
        let mut env = vector();
        env.payload = "eyJhIjoxfQ".into();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        env.signatures[0].sig = url.encode(hex::decode(SIG_HEX).unwrap());
        assert!(env.signatures[0].sig.contains('-') || env.signatures[0].sig.contains('_'));
        assert!(verify(&env, &[vk]).is_ok());
    }

    #[test]
    fn each_tampering_fails_with_its_own_reason() {
        let vk = test_key().verifying_key();

        let mut env = vector();
        env.payload = STANDARD.encode(br#"{"a":2}"#);
        assert!(matches!(
            verify(&env, &[vk]),
            Err(VerifyFailure::NoSignatureVerified {
                signatures: 1,
                undecodable: 0,
                trusted_keys: 1
            })
        ));

        let mut env = vector();
        env.payload_type = "application/vnd.in-toto.provenance+json".into();
        assert!(matches!(
            verify(&env, &[vk]),
            Err(VerifyFailure::UnsupportedPayloadType(_))
        ));

        let mut env = vector();
        let mut sig = hex::decode(SIG_HEX).unwrap();
        sig[10] ^= 1;
        env.signatures[0].sig = STANDARD.encode(&sig);
        assert!(matches!(
            verify(&env, &[vk]),
            Err(VerifyFailure::NoSignatureVerified { .. })
        ));

        let other = SigningKey::from_bytes(&[1u8; 32]).verifying_key();
        let e = verify(&vector(), &[other]).unwrap_err();
        assert!(matches!(e, VerifyFailure::NoSignatureVerified { .. }));
        assert!(e
            .to_string()
            .contains("signatures tried: 1, trusted keys: 1"));

        let mut env = vector();
        env.payload = "not base64!".into();
        assert!(matches!(
            verify(&env, &[vk]),
            Err(VerifyFailure::MalformedPayload(_))
        ));

        let mut env = vector();
        env.signatures[0].sig = "!!".into();
        let e = verify(&env, &[vk]).unwrap_err();
        assert!(matches!(
            e,
            VerifyFailure::NoSignatureVerified { undecodable: 1, .. }
        ));
    }

    #[test]
    fn bad_signatures_are_skipped_and_keyid_is_ignored() {
        let sk = test_key();
        let other = SigningKey::from_bytes(&[2u8; 32]);
        let mut env = vector();
        // A junk entry and one by an untrusted key, then the real one with a
        // wrong keyid: the real one still counts.
        let real = env.signatures.remove(0);
        env.signatures.push(Signature {
            keyid: "x".into(),
            sig: "???".into(),
        });
        env.signatures
            .push(sign(br#"{"a":1}"#, &other).signatures.remove(0));
        env.signatures.push(Signature {
            keyid: "not-the-keyid".into(),
            ..real
        });
        let v = verify(&env, &[other.verifying_key(), sk.verifying_key()]).unwrap();
        // Trusting `other` too: its entry (index 1) is the first to verify.
        assert_eq!((v.signature_index, v.key_index), (1, 0));
        let v = verify(&env, &[sk.verifying_key()]).unwrap();
        assert_eq!((v.signature_index, v.key_index), (2, 0));
        assert!(verify(&env, &[]).is_err());
    }
}
