//! `file:` URIs for the local files an attestation or BOM names.
//!
//! A verification summary must name the resource it is about
//! (`resourceUri`) and the attestations it read (`inputAttestations[].uri`);
//! when all decant knows is a local path, that is a `file:` URI of the
//! path resolved (RFC 8089), percent-encoded byte by byte so a name with
//! spaces, `#`, `%` or bytes that are not UTF-8 is still one unambiguous
//! URI.

use crate::error::{Error, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes left as they are in a path: RFC 3986 unreserved characters, `/`
/// and the sub-delimiters a path segment may hold unencoded, less the ones
/// shells and URI parsers commonly mangle.
fn keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b'+' | b'=' | b'@')
}

/// `bytes` percent-encoded where [`keep`] says.
fn percent_encoded(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `file://` and the percent-encoded absolute path.
fn encode(abs: &Path) -> String {
    format!("file://{}", percent_encoded(abs.as_os_str().as_bytes()))
}

/// A `/`-separated path relative to a model directory as a relative URI
/// reference (a BOM's `url` must be an IRI reference: a space is not, and a
/// `:` in the first segment would read as a scheme).
pub fn relative_ref(path: &str) -> String {
    percent_encoded(path.as_bytes())
}

/// The `file:` URI of `path` resolved (symlinks and `..`); a directory's
/// ends in `/`, so a URI says which of the two was meant. A file about to
/// be written (its directory exists, it does not yet) is named in its
/// resolved directory.
pub fn file_uri(path: &Path) -> Result<String> {
    let cannot = |e: std::io::Error| Error::io(format!("cannot resolve {}", path.display()), &e);
    let abs = match path.canonicalize() {
        Ok(abs) => abs,
        Err(e) => match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                parent.canonicalize().map_err(cannot)?.join(name)
            }
            _ => return Err(cannot(e)),
        },
    };
    let mut uri = encode(&abs);
    if abs.is_dir() && !uri.ends_with('/') {
        uri.push('/');
    }
    Ok(uri)
}

/// Whether `s` is an absolute URI decant will write as given: a scheme
/// (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`), a colon, and
/// no whitespace or control characters, at most 4096 bytes.
pub fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && s.len() <= 4096
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// Names that are not plain ASCII become one unambiguous URI.
    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode(Path::new("/m/a b#c%d")), "file:///m/a%20b%23c%25d");
        assert_eq!(
            encode(Path::new(OsStr::from_bytes(b"/x/\xff\xc3\xa9"))),
            "file:///x/%FF%C3%A9"
        );
        assert_eq!(
            encode(Path::new("/m/model-1.0_x~y.safetensors")),
            "file:///m/model-1.0_x~y.safetensors"
        );
    }

    /// Relative names in a BOM stay relative and valid.
    #[test]
    fn relative_references_are_encoded() {
        assert_eq!(relative_ref("decant.intoto.jsonl"), "decant.intoto.jsonl");
        assert_eq!(relative_ref("my model/a:b.jsonl"), "my%20model/a%3Ab.jsonl");
    }

    /// A directory's URI ends in `/`; a file's does not.
    #[test]
    fn directories_end_in_a_slash() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(file_uri(tmp.path()).unwrap().ends_with('/'));
        assert!(file_uri(&f).unwrap().ends_with("/f"));
        assert!(file_uri(&tmp.path().join("new")).unwrap().ends_with("/new"));
        assert!(file_uri(&tmp.path().join("missing/new")).is_err());
    }

    /// `--resource-uri` takes absolute URIs only.
    #[test]
    fn resource_uris_need_a_scheme() {
        for good in [
            "https://models.example/bert@sha256:ab",
            "pkg:huggingface/org/m@0123",
            "s3://bucket/key",
        ] {
            assert!(is_absolute_uri(good), "{good}");
        }
        for bad in [
            "",
            "model.safetensors",
            ":x",
            "1x:y",
            "a b:c",
            "s3://x y",
            "x:",
        ] {
            assert!(!is_absolute_uri(bad), "{bad}");
        }
    }
}
