//! Helpers shared by the integration tests.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// One line saying what happened, one saying what to do.
    pub fn assert_error_shape(&self) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "expected two lines, got {:?}", self.stderr);
        assert!(lines[0].starts_with("decant: "), "{:?}", lines[0]);
        assert!(lines[1].starts_with("hint: "), "{:?}", lines[1]);
    }
}

pub fn decant(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_decant"))
        .args(args)
        .output()
        .expect("run decant");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

pub fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("manifest.json")).unwrap()).unwrap()
}

/// File names in `dir`, sorted (temp files included, so leftovers show).
pub fn only_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A writable copy of the fixture directory `rel` at `to`, leaving out the
/// file named `except`.
pub fn copy_fixture_dir(rel: &str, to: &Path, except: Option<&str>) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture(rel)).unwrap() {
        let entry = entry.unwrap();
        if except.is_some_and(|e| entry.file_name() == e) || !entry.file_type().unwrap().is_file() {
            continue;
        }
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The statement inside a receipt file (its first envelope), unverified:
/// for tests that check what decant wrote.
pub fn receipt_statement(receipt: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(receipt).unwrap();
    let env: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        env["payload"].as_str().unwrap(),
    )
    .unwrap();
    serde_json::from_slice(&payload).unwrap()
}
