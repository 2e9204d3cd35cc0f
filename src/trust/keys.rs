//! Ed25519 signing keys for receipts, in the file formats other tools read.
//!
//! Receipts must verify with tools that are not decant (docs/RECEIPTS.md:
//! securesystemslib and openssl check them in CI), so keys
//! are the plain formats those tools share: the private key is PKCS#8 PEM
//! byte-for-byte as `openssl genpkey -algorithm ed25519` writes it (the
//! 48-byte v1 form, no embedded public key), the public key is SPKI PEM
//! (`BEGIN PUBLIC KEY`). Keys made by openssl load here, and keys made here
//! load in openssl, Python `cryptography` and securesystemslib.
//!
//! Two identifiers are derived from a public key:
//! - [`keyid`]: securesystemslib's default keyid, written into every DSSE
//!   signature so that `SSlibKey.from_crypto(pub)` verifies a receipt without
//!   being told a keyid. It is only a hint; decant never trusts it.
//! - [`fingerprint`]: sha256 of the SPKI DER, what
//!   `openssl pkey -pubin -in k.pub -outform DER | sha256sum` prints; shown to
//!   users so they can tell which trusted key matched.

use crate::error::{Error, Kind, Result};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    self, spki, DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte
/// public key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// id-Ed25519 (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

/// Hint for a refused overwrite: a key file may be the only copy of a key.
const NEVER_OVERWRITE: &str = "choose another path; decant never overwrites keys";

/// Where [`generate`] puts the public key: `KEYFILE.pub`, ".pub" appended to
/// the full file name (`release.pem` -> `release.pem.pub`, as ssh-keygen
/// names it).
pub fn public_path(private: &Path) -> PathBuf {
    let mut name: OsString = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates a new Ed25519 key pair: the private key at `path` (mode 0600
/// from the moment it exists) and the public key at [`public_path`] (mode
/// 0644). Never overwrites: if either file exists nothing is written.
pub fn generate(path: &Path) -> Result<VerifyingKey> {
    check_new_pair(path)?;
    let signing = SigningKey::generate(&mut rand_core::OsRng);
    let verifying = signing.verifying_key();
    // v1 (no public key inside), as openssl writes it; SigningKey's own
    // to_pkcs8_pem would write v2. The PEM is zeroized when dropped.
    let private_pem = KeypairBytes {
        secret_key: signing.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| Error::internal(format!("cannot encode the private key: {e}")))?;
    let public_pem = verifying
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::internal(format!("cannot encode the public key: {e}")))?;
    write_pair(path, private_pem.as_bytes(), public_pem.as_bytes())?;
    Ok(verifying)
}

/// Creates a new ECDSA P-256 key pair for OpenSSF model signatures
/// (`--oms-key`, [`crate::trust::oms`]), in the files and modes of
/// [`generate`]: PKCS#8 PEM (`BEGIN PRIVATE KEY`, the SEC1 key with its
/// public point inside, as `openssl genpkey -algorithm EC` writes it) and
/// SPKI PEM. Never overwrites.
pub fn generate_p256(path: &Path) -> Result<p256::PublicKey> {
    use p256::pkcs8::EncodePrivateKey as _;
    use p256::pkcs8::EncodePublicKey as _;
    check_new_pair(path)?;
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let public = secret.public_key();
    let private_pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::internal(format!("cannot encode the private key: {e}")))?;
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::internal(format!("cannot encode the public key: {e}")))?;
    write_pair(path, private_pem.as_bytes(), public_pem.as_bytes())?;
    Ok(public)
}

/// Refuses a key path that is not a file name, or whose private or public
/// file exists, before anything is created.
fn check_new_pair(path: &Path) -> Result<()> {
    let public = public_path(path);
    if path.as_os_str().is_empty() || path.to_string_lossy().ends_with('/') {
        return Err(Error::new(
            Kind::Usage,
            format!("{} is not a file name", path.display()),
            "give the path of the private key file to create, e.g. decant.key",
        ));
    }
    // Check both before creating either, so a refusal leaves nothing behind.
    // symlink_metadata: a dangling symlink counts as existing, it must not be
    // followed to create a file elsewhere.
    for p in [path, public.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(Error::new(
                Kind::Usage,
                format!("{} already exists", p.display()),
                NEVER_OVERWRITE,
            ));
        }
    }
    Ok(())
}

/// Writes a new pair: the private key 0600, then the public key 0644.
fn write_pair(path: &Path, private_pem: &[u8], public_pem: &[u8]) -> Result<()> {
    // create_new closes the check-then-create race of check_new_pair: if
    // something appeared meanwhile, this fails instead of replacing it.
    write_new(path, private_pem, 0o600)?;
    if let Err(e) = write_new(&public_path(path), public_pem, 0o644) {
        // A private key whose public half is missing is useless and
        // confusing; remove the one we just created.
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Creates `path` exclusively with `mode` and writes `bytes`; on a write
/// failure the half-written file is removed.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    Kind::Usage,
                    format!("{} already exists", path.display()),
                    NEVER_OVERWRITE,
                )
            } else {
                Error::io(format!("cannot create {}", path.display()), &e)
            }
        })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(format!("cannot write {}", path.display()), &e));
    }
    Ok(())
}

/// Largest key file read: a PEM key is a few hundred bytes.
pub const MAX_KEY_BYTES: u64 = 64 << 10;

fn read_text(path: &Path, what: &str) -> Result<String> {
    let file = crate::open::regular_file(path).map_err(|mut e| {
        if e.kind == Kind::Io {
            e.message = e
                .message
                .replacen("cannot open", &format!("cannot read {what}"), 1);
        }
        e
    })?;
    let bytes = crate::open::read_bounded(file, MAX_KEY_BYTES, path, "a key file")?;
    String::from_utf8(bytes).map_err(|_| {
        Error::new(
            Kind::Usage,
            format!("{what} {} is not a PEM text file", path.display()),
            "keys are PEM files (-----BEGIN ...-----), e.g. from decant keygen",
        )
    })
}

/// The label of the first PEM block (`PRIVATE KEY`, `PUBLIC KEY`, ...).
fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    Some(&rest[..rest.find("-----")?])
}

/// Names the usual algorithms so a wrong key type is explained, not just
/// reported as an OID.
fn describe_algorithm(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.10045.2.1" => "EC (ECDSA)",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.3.101.113" => "Ed448",
        "1.2.840.10040.4.1" => "DSA",
        _ => return format!("algorithm OID {oid}"),
    };
    format!("it is {name}, algorithm OID {oid}")
}

/// An encrypted PKCS#8 key: decant never prompts for a passphrase.
fn encrypted_private_key(path: &Path) -> Error {
    Error::new(
        Kind::Usage,
        format!("private key {} is encrypted", path.display()),
        "decrypt it first: openssl pkey -in KEY -out PLAIN.pem (keep it mode 0600)",
    )
}

/// A public key given where a signing key is needed.
fn public_not_private(path: &Path) -> Error {
    Error::new(
        Kind::Usage,
        format!("{} is a public key, not a private key", path.display()),
        "sign with the private key file (the one without .pub)",
    )
}

fn wrong_type(path: &Path, what: &str, found: &str) -> Error {
    // An ECDSA key here is most likely the --oms-key one given to --key.
    let hint = if found.contains("EC") {
        "receipts and manifests are signed with Ed25519 (decant keygen KEYFILE); an ECDSA P-256 key (decant keygen --type p256) is for --oms-key"
    } else {
        "decant signs with Ed25519 only: create a key with decant keygen or openssl genpkey -algorithm ed25519"
    };
    Error::new(
        Kind::Usage,
        format!("{} is not an Ed25519 {what} ({found})", path.display()),
        hint,
    )
}

/// Turns a PKCS#8/SPKI decoding error into a user-facing one.
fn decode_error(path: &Path, what: &str, err: impl std::fmt::Display) -> Error {
    Error::new(
        Kind::Usage,
        format!("cannot read {what} {}: {err}", path.display()),
        "keys are PEM files as decant keygen or openssl genpkey -algorithm ed25519 write them",
    )
}

/// The algorithm OID of a PKCS#8 (`private`) or SPKI PEM document, if it
/// parses that far. Read separately because the decoders' "unknown OID"
/// error names the OID they expected, not the one they found.
fn algorithm_oid(text: &str, private: bool) -> Option<String> {
    if private {
        let (_, doc) = pkcs8::SecretDocument::from_pem(text).ok()?;
        let info = pkcs8::PrivateKeyInfo::try_from(doc.as_bytes()).ok()?;
        Some(info.algorithm.oid.to_string())
    } else {
        let (_, doc) = pkcs8::Document::from_pem(text).ok()?;
        let info = spki::SubjectPublicKeyInfoRef::try_from(doc.as_bytes()).ok()?;
        Some(info.algorithm.oid.to_string())
    }
}

/// Refuses a well-formed key of another algorithm, naming it.
fn check_algorithm(path: &Path, what: &str, text: &str, private: bool) -> Result<()> {
    match algorithm_oid(text, private) {
        Some(oid) if oid != ED25519_OID => Err(wrong_type(path, what, &describe_algorithm(&oid))),
        // Ed25519, or unparseable: the decoder's own error says why.
        _ => Ok(()),
    }
}

/// Loads a PKCS#8 PEM private key (v1 as openssl writes it, or v2 with the
/// public key, which must then match).
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let what = "private key";
    let text = read_text(path, what)?;
    match pem_label(&text) {
        Some("PRIVATE KEY") => {}
        Some("ENCRYPTED PRIVATE KEY") => return Err(encrypted_private_key(path)),
        Some("PUBLIC KEY") => return Err(public_not_private(path)),
        Some(label @ ("RSA PRIVATE KEY" | "EC PRIVATE KEY" | "DSA PRIVATE KEY")) => {
            return Err(wrong_type(path, what, &format!("it is a PEM {label}")))
        }
        Some("OPENSSH PRIVATE KEY") => {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "{} is an OpenSSH private key, not PKCS#8 PEM",
                    path.display()
                ),
                "create a key with decant keygen or openssl genpkey -algorithm ed25519",
            ))
        }
        Some(other) => return Err(wrong_type(path, what, &format!("it is a PEM {other}"))),
        None => {
            return Err(Error::new(
                Kind::Usage,
                format!("{} is not a PEM private key", path.display()),
                "expected -----BEGIN PRIVATE KEY----- as decant keygen or openssl genpkey write it",
            ))
        }
    }
    check_algorithm(path, what, &text, true)?;
    let pair = KeypairBytes::from_pkcs8_pem(&text).map_err(|e| decode_error(path, what, e))?;
    let signing = SigningKey::from_bytes(&pair.secret_key);
    if let Some(public) = &pair.public_key {
        // PKCS#8 v2 carries the public key too; one that does not belong to
        // the private key means a corrupt or tampered file.
        if public.to_bytes() != signing.verifying_key().to_bytes() {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "private key {} embeds a public key that does not match it",
                    path.display()
                ),
                "the key file is corrupt; restore it or create a new key",
            ));
        }
    }
    Ok(signing)
}

/// Loads an SPKI PEM public key (`BEGIN PUBLIC KEY`).
pub fn load_public_key(path: &Path) -> Result<VerifyingKey> {
    let what = "public key";
    let text = read_text(path, what)?;
    match pem_label(&text) {
        Some("PUBLIC KEY") => {}
        Some(label) if label.contains("PRIVATE KEY") => {
            // Never echo or use private material as a trust anchor.
            return Err(Error::new(
                Kind::Usage,
                format!("{} is a private key, not a public key", path.display()),
                "pass the public key (KEYFILE.pub, or openssl pkey -in KEY -pubout)",
            ));
        }
        Some(other) => return Err(wrong_type(path, what, &format!("it is a PEM {other}"))),
        None => {
            return Err(Error::new(
                Kind::Usage,
                format!("{} is not a PEM public key", path.display()),
                "expected -----BEGIN PUBLIC KEY----- (KEYFILE.pub from decant keygen)",
            ))
        }
    }
    check_algorithm(path, what, &text, false)?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| decode_error(path, what, e))
}

/// id-ecPublicKey (RFC 5480): an EC key; the curve is its parameter.
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
/// secp256r1 / prime256v1 (RFC 5480).
const P256_OID: &str = "1.2.840.10045.3.1.7";
/// The hint for every refused `--oms-key`.
const OMS_KEY_HINT: &str = "OpenSSF model signatures need an ECDSA P-256 key: create one with decant keygen --type p256 KEYFILE (or openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)";

/// Names the curve of an EC key, by its parameter OID, for a refusal.
fn describe_curve(oid: Option<&str>) -> String {
    match oid {
        Some("1.3.132.0.34") => "curve P-384".into(),
        Some("1.3.132.0.35") => "curve P-521".into(),
        Some("1.3.132.0.10") => "curve secp256k1".into(),
        Some(other) => format!("curve OID {other}"),
        None => "no named curve".into(),
    }
}

/// The algorithm and (for EC) curve OIDs of a PKCS#8 private key PEM.
fn private_key_oids(text: &str) -> Option<(String, Option<String>)> {
    let (_, doc) = pkcs8::SecretDocument::from_pem(text).ok()?;
    let info = pkcs8::PrivateKeyInfo::try_from(doc.as_bytes()).ok()?;
    let curve = info
        .algorithm
        .parameters_oid()
        .ok()
        .map(|oid| oid.to_string());
    Some((info.algorithm.oid.to_string(), curve))
}

/// Loads the ECDSA P-256 private key of `--oms-key`: PKCS#8 PEM (`BEGIN
/// PRIVATE KEY`, as decant keygen --type p256 and openssl genpkey write it)
/// or SEC1 PEM (`BEGIN EC PRIVATE KEY`, as openssl ecparam -genkey writes
/// it). An Ed25519 key (the receipt key) or another curve is refused by
/// name: the model_signing tool verifies ECDSA only, and decant signs
/// model.sig with P-256 only.
pub fn load_oms_signing_key(path: &Path) -> Result<p256::ecdsa::SigningKey> {
    use p256::pkcs8::DecodePrivateKey as _;
    let what = "private key";
    let text = read_text(path, what)?;
    let wrong = |found: &str| {
        Error::new(
            Kind::Usage,
            format!(
                "--oms-key {} is not an ECDSA P-256 private key ({found})",
                path.display()
            ),
            OMS_KEY_HINT,
        )
    };
    let secret = match pem_label(&text) {
        Some("PRIVATE KEY") => {
            match private_key_oids(&text) {
                Some((oid, _)) if oid == ED25519_OID => {
                    return Err(wrong(
                        "it is an Ed25519 key, the kind that signs decant's receipts",
                    ))
                }
                Some((oid, curve))
                    if oid == EC_PUBLIC_KEY_OID && curve.as_deref() != Some(P256_OID) =>
                {
                    return Err(wrong(&format!(
                        "it is an EC key on {}",
                        describe_curve(curve.as_deref())
                    )))
                }
                // P-256, or unparseable: the decoder's own error says why.
                Some((oid, _)) if oid == EC_PUBLIC_KEY_OID => {}
                Some((oid, _)) => return Err(wrong(&describe_algorithm(&oid))),
                None => {}
            }
            p256::SecretKey::from_pkcs8_pem(&text).map_err(|e| decode_error(path, what, e))?
        }
        Some("EC PRIVATE KEY") => p256::SecretKey::from_sec1_pem(&text)
            .map_err(|_| wrong("a SEC1 EC key that is not on curve P-256, or is damaged"))?,
        Some("ENCRYPTED PRIVATE KEY") => return Err(encrypted_private_key(path)),
        Some("PUBLIC KEY") => return Err(public_not_private(path)),
        Some(other) => return Err(wrong(&format!("it is a PEM {other}"))),
        None => {
            return Err(Error::new(
                Kind::Usage,
                format!("{} is not a PEM private key", path.display()),
                OMS_KEY_HINT,
            ))
        }
    };
    Ok(p256::ecdsa::SigningKey::from(&secret))
}

/// The SPKI PEM of a P-256 public key, exactly as Python `cryptography`
/// writes it (64-character lines, LF, a final newline): model_signing
/// names the key of a signature by the sha256 of this text
/// ([`crate::trust::oms`]).
pub fn p256_public_pem(key: &p256::PublicKey) -> Result<String> {
    use p256::pkcs8::EncodePublicKey as _;
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::internal(format!("cannot encode the public key: {e}")))
}

/// sha256 of a P-256 key's SPKI DER, hex, like [`fingerprint`].
pub fn p256_fingerprint(key: &p256::PublicKey) -> Result<String> {
    use p256::pkcs8::EncodePublicKey as _;
    let der = key
        .to_public_key_der()
        .map_err(|e| Error::internal(format!("cannot encode the public key: {e}")))?;
    Ok(hex::encode(Sha256::digest(der.as_bytes())))
}

/// Every `--trusted-key` given, loaded; the first bad one is the error.
pub fn load_public_keys(paths: &[std::path::PathBuf]) -> Result<Vec<VerifyingKey>> {
    paths.iter().map(|p| load_public_key(p)).collect()
}

/// securesystemslib's default keyid: sha256 of the compact, key-sorted JSON
/// `{"keytype":"ed25519","keyval":{"public":"<hex>"},"scheme":"ed25519"}`
/// (`compute_default_keyid`), so `SSlibKey.from_crypto(pub)` finds decant's
/// signatures without being given a keyid.
pub fn keyid(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
        hex::encode(key.as_bytes())
    );
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// sha256 of the key's SPKI DER, hex: the same as
/// `openssl pkey -pubin -in k.pub -outform DER | sha256sum`.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let mut h = Sha256::new();
    h.update(SPKI_PREFIX);
    h.update(key.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// RFC 8032 section 7.1 TEST 1.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn test_key() -> SigningKey {
        SigningKey::from_bytes(&hex::decode(SEED).unwrap().try_into().unwrap())
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn keyid_and_fingerprint_match_the_test_vector() {
        let vk = test_key().verifying_key();
        assert_eq!(hex::encode(vk.as_bytes()), PUBLIC);
        assert_eq!(
            keyid(&vk),
            "74c181c7ad8a0855d4b55e44d2ba87aabdddb196832571f15f92fece332e4916"
        );
        assert_eq!(
            fingerprint(&vk),
            "06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9"
        );
        let der = vk.to_public_key_der().unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(der.as_bytes())),
            fingerprint(&vk)
        );
    }

    #[test]
    fn private_pem_is_what_openssl_writes() {
        let pem = KeypairBytes {
            secret_key: test_key().to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
        assert_eq!(
            pem.as_str(),
            "-----BEGIN PRIVATE KEY-----\n\
             MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
             -----END PRIVATE KEY-----\n"
        );
        let public = test_key()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(
            public,
            "-----BEGIN PUBLIC KEY-----\n\
             MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n\
             -----END PUBLIC KEY-----\n"
        );
    }

    #[test]
    fn generate_writes_a_loadable_pair_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.key");
        let vk = generate(&path).unwrap();
        let public = dir.path().join("release.key.pub");
        assert_eq!(public_path(&path), public);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&public) & 0o600, 0o600);
        assert_eq!(mode(&public) & 0o022, 0, "not group/world writable");

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(text.ends_with("-----END PRIVATE KEY-----\n"));
        // 48-byte v1 DER: one 64-character base64 line.
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(body.len(), 1);
        assert_eq!(body[0].len(), 64);
        assert!(body[0].starts_with("MC4CAQAwBQYDK2VwBCIEI"));

        let sk = load_signing_key(&path).unwrap();
        assert_eq!(sk.verifying_key(), vk);
        assert_eq!(load_public_key(&public).unwrap(), vk);
    }

    #[test]
    fn generate_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "precious").unwrap();
        let e = generate(&path).unwrap_err();
        assert_eq!(e.kind, Kind::Usage);
        assert_eq!(e.hint, NEVER_OVERWRITE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        assert!(!public_path(&path).exists());

        // Only the .pub exists: the private key must not be created either.
        let path = dir.path().join("j");
        std::fs::write(public_path(&path), "old").unwrap();
        let e = generate(&path).unwrap_err();
        assert!(e.message.contains("j.pub already exists"), "{}", e.message);
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(public_path(&path)).unwrap(), "old");

        // A dangling symlink is not followed.
        let path = dir.path().join("s");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        assert!(generate(&path).is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn a_failed_public_write_removes_the_private_key() {
        let dir = tempfile::tempdir().unwrap();
        // The private key's directory is writable, but "<key>.pub" cannot be
        // created because the name is too long for the file system while the
        // private key's name is not.
        let name = "k".repeat(252);
        let path = dir.path().join(&name);
        let e = generate(&path).unwrap_err();
        assert_eq!(e.kind, Kind::Io, "{}", e.message);
        assert!(!path.exists(), "the private key was left behind");
    }

    #[test]
    fn openssl_keys_load_and_agree() {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &["genpkey", "-algorithm", "ed25519", "-out", "k.pem"],
        );
        openssl(
            dir.path(),
            &["pkey", "-in", "k.pem", "-pubout", "-out", "k.pub"],
        );
        let sk = load_signing_key(&dir.path().join("k.pem")).unwrap();
        let vk = load_public_key(&dir.path().join("k.pub")).unwrap();
        assert_eq!(sk.verifying_key(), vk);

        // openssl reads ours and derives the same public key.
        let ours = dir.path().join("ours.key");
        let vk = generate(&ours).unwrap();
        openssl(
            dir.path(),
            &[
                "pkey",
                "-in",
                "ours.key",
                "-pubout",
                "-out",
                "ours.openssl.pub",
            ],
        );
        assert_eq!(
            std::fs::read(dir.path().join("ours.openssl.pub")).unwrap(),
            std::fs::read(dir.path().join("ours.key.pub")).unwrap()
        );
        assert_eq!(
            load_public_key(&dir.path().join("ours.openssl.pub")).unwrap(),
            vk
        );
    }

    #[test]
    fn other_key_types_are_named() {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
                "-out",
                "rsa.pem",
            ],
        );
        openssl(
            dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec.pem",
            ],
        );
        openssl(
            dir.path(),
            &["genpkey", "-algorithm", "ed448", "-out", "ed448.pem"],
        );
        openssl(
            dir.path(),
            &["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub"],
        );
        for (file, algo) in [("rsa.pem", "RSA"), ("ec.pem", "EC"), ("ed448.pem", "Ed448")] {
            let e = load_signing_key(&dir.path().join(file)).unwrap_err();
            assert!(
                e.message.contains("not an Ed25519 private key") && e.message.contains(algo),
                "{file}: {}",
                e.message
            );
        }
        let e = load_public_key(&dir.path().join("ec.pub")).unwrap_err();
        assert!(
            e.message.contains("not an Ed25519 public key"),
            "{}",
            e.message
        );
        // Mixing up the halves is explained.
        let e = load_public_key(&dir.path().join("rsa.pem")).unwrap_err();
        assert!(e.message.contains("is a private key"), "{}", e.message);
        let e = load_signing_key(&dir.path().join("ec.pub")).unwrap_err();
        assert!(e.message.contains("is a public key"), "{}", e.message);
        std::fs::write(dir.path().join("junk"), "hello").unwrap();
        assert!(load_signing_key(&dir.path().join("junk")).is_err());
        assert!(load_public_key(&dir.path().join("junk")).is_err());
    }

    /// --oms-key takes P-256 keys as openssl writes them (PKCS#8 and SEC1)
    /// and as keygen --type p256 does, and refuses the Ed25519 receipt key
    /// and other curves by name, with the keygen hint.
    #[test]
    fn oms_keys_are_p256_and_other_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "p256.pem",
            ],
        );
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "sec1.pem",
            ],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "p384.pem",
            ],
        );
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "sec1-384.pem",
            ],
        );
        openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
        openssl(
            d,
            &["pkey", "-in", "p256.pem", "-pubout", "-out", "p256.pub"],
        );
        assert!(load_oms_signing_key(&d.join("p256.pem")).is_ok());
        assert!(load_oms_signing_key(&d.join("sec1.pem")).is_ok());
        let ours = d.join("ours.key");
        let public = generate_p256(&ours).unwrap();
        let loaded = load_oms_signing_key(&ours).unwrap();
        assert_eq!(p256::PublicKey::from(loaded.verifying_key()), public);
        assert_eq!(
            p256_public_pem(&public).unwrap(),
            std::fs::read_to_string(public_path(&ours)).unwrap()
        );
        assert_eq!(mode(&ours), 0o600);
        assert!(generate_p256(&ours).is_err(), "never overwritten");

        for (file, says) in [
            ("ed.pem", "it is an Ed25519 key"),
            ("p384.pem", "curve P-384"),
            ("sec1-384.pem", "not on curve P-256"),
            ("p256.pub", "is a public key"),
        ] {
            let e = load_oms_signing_key(&d.join(file)).unwrap_err();
            assert_eq!(e.kind, Kind::Usage, "{file}");
            assert!(e.message.contains(says), "{file}: {}", e.message);
        }
        let e = load_oms_signing_key(&d.join("ed.pem")).unwrap_err();
        assert!(e.hint.contains("decant keygen --type p256"), "{}", e.hint);
        // And the other way round: the P-256 key as the receipt key.
        let e = load_signing_key(&d.join("p256.pem")).unwrap_err();
        assert!(
            e.message.contains("not an Ed25519 private key"),
            "{}",
            e.message
        );
        assert!(e.hint.contains("--oms-key"), "{}", e.hint);
    }

    #[test]
    fn pkcs8_v2_loads_only_with_its_own_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let sk = test_key();
        let v2 = dir.path().join("v2.pem");
        std::fs::write(&v2, sk.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
        assert_eq!(load_signing_key(&v2).unwrap().to_bytes(), sk.to_bytes());

        let other = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let bad = KeypairBytes {
            secret_key: sk.to_bytes(),
            public_key: Some(pkcs8::PublicKeyBytes(other.to_bytes())),
        }
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, bad.as_bytes()).unwrap();
        let e = load_signing_key(&path).unwrap_err();
        assert!(e.message.contains("does not match"), "{}", e.message);
    }
}
