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

    /// Stdout as one JSON document; panics showing stdout and stderr if not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.stdout, self.stderr))
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

/// The JSON document in the file at `path`.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn manifest() -> serde_json::Value {
    read_json(&fixture("manifest.json"))
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

/// The sha256 (hex) of the file at `path`.
pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
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

/// A fresh signing key in `dir`: (private, public) paths.
pub fn keygen(dir: &Path) -> (String, String) {
    let key = dir.join("key");
    assert_eq!(decant(&["keygen", key.to_str().unwrap()]).code, 0);
    (
        key.to_str().unwrap().into(),
        dir.join("key.pub").to_str().unwrap().into(),
    )
}

/// `decant convert SRC -o OUT --key KEY EXTRA...`.
pub fn convert_keyed(src: &Path, out: &Path, key: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--key",
        key,
    ];
    args.extend_from_slice(extra);
    decant(&args)
}

/// `decant convert SRC -o OUT --key KEY --json EXTRA...`.
pub fn convert_signed(src: &Path, out: &Path, key: &str, extra: &[&str]) -> Run {
    convert_keyed(src, out, key, &[&["--json"], extra].concat())
}

/// `decant verify OUT --receipt OUT/decant.intoto.jsonl --trusted-key
/// PUB EXTRA...`.
pub fn verify_dir_run(out: &Path, public: &str, extra: &[&str]) -> Run {
    verify_run(out, &out.join("decant.intoto.jsonl"), public, extra)
}

/// `decant verify TARGET --receipt RECEIPT --trusted-key PUB EXTRA...`.
pub fn verify_run(target: &Path, receipt: &Path, public: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "verify",
        target.to_str().unwrap(),
        "--receipt",
        receipt.to_str().unwrap(),
        "--trusted-key",
        public,
    ];
    args.extend_from_slice(extra);
    decant(&args)
}

/// [`verify_dir_run`] with `--json`: the exit status and the names of the
/// failed checks.
pub fn verify_dir(out: &Path, public: &str, extra: &[&str]) -> (i32, Vec<String>) {
    let run = verify_dir_run(out, public, &[&["--json"], extra].concat());
    (run.code, failed_checks(&run.json()))
}

/// The names of the failed checks in `verify --json` output.
pub fn failed_checks(v: &serde_json::Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Which store a cache keeps its LFS blobs in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Blobs {
    /// `models--ORG--NAME/blobs/<sha256>` (huggingface_hub before the Xet
    /// shared store, or with it disabled).
    InRepo,
    /// The shared store: `blobs/<sha256>` links to `../../blobs/<xx>/<xet
    /// hash>` at the cache root, which holds the marker.
    Shared,
}

/// A Hugging Face cache holding one repository at one commit, laid out as
/// huggingface_hub lays it out (ecosystem notes, "Hugging Face cache";
/// huggingface_hub `file_download.py`, `utils/_shared_blobs.py`): snapshot
/// files are relative links to `blobs/<name>`, one `../` more per
/// subfolder; LFS files (checkpoints, safetensors) are named by their
/// sha256, others by their git blob SHA-1.
pub struct HfCache {
    pub root: PathBuf,
    pub repo: PathBuf,
    pub commit: String,
}

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn is_lfs(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        ["bin", "pt", "pth", "ckpt", "safetensors"].contains(&e.to_string_lossy().as_ref())
    })
}

pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    sha1::Digest::update(&mut h, format!("blob {}\0", bytes.len()).as_bytes());
    sha1::Digest::update(&mut h, bytes);
    hex::encode(sha1::Digest::finalize(h))
}

/// Every file under `dir`, as `/`-separated relative paths.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

impl HfCache {
    /// The repository `repo_id` (`ORG/NAME`) holding the files of `files`.
    pub fn build(root: &Path, repo_id: &str, files: &Path, blobs: Blobs) -> HfCache {
        let repo = root.join(format!("models--{}", repo_id.replace('/', "--")));
        let snapshot = repo.join("snapshots").join(COMMIT);
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
        if blobs == Blobs::Shared {
            std::fs::create_dir_all(root.join("blobs")).unwrap();
            std::fs::write(root.join("blobs/.huggingface-shared-blobs"), "1\n").unwrap();
        }
        for rel in files_under(files) {
            let bytes = std::fs::read(files.join(&rel)).unwrap();
            let name = if is_lfs(Path::new(&rel)) {
                sha256_hex(&bytes)
            } else {
                git_blob_sha1(&bytes)
            };
            let blob = repo.join("blobs").join(&name);
            if blobs == Blobs::Shared && is_lfs(Path::new(&rel)) {
                let xet = sha256_hex(&[b"xet:".as_slice(), &bytes].concat());
                let store = root.join("blobs").join(&xet[..2]);
                std::fs::create_dir_all(&store).unwrap();
                std::fs::write(store.join(&xet), &bytes).unwrap();
                std::os::unix::fs::symlink(format!("../../blobs/{}/{xet}", &xet[..2]), &blob)
                    .unwrap();
            } else {
                std::fs::write(&blob, &bytes).unwrap();
            }
            let link = snapshot.join(&rel);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let depth = rel.matches('/').count();
            std::os::unix::fs::symlink(format!("{}blobs/{name}", "../".repeat(depth + 2)), &link)
                .unwrap();
        }
        HfCache {
            root: root.to_path_buf(),
            repo,
            commit: COMMIT.into(),
        }
    }

    pub fn snapshot(&self) -> PathBuf {
        self.repo.join("snapshots").join(&self.commit)
    }

    /// Replaces the snapshot link `rel` with one to `target`.
    pub fn relink(&self, rel: &str, target: &str) {
        let link = self.snapshot().join(rel);
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(target, link).unwrap();
    }

    /// The blob name the snapshot link `rel` points at.
    pub fn blob_name(&self, rel: &str) -> String {
        let target = std::fs::read_link(self.snapshot().join(rel)).unwrap();
        target.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// Everything in the cache, links as their targets and files as their
    /// digests: equal before and after means nothing was written.
    pub fn state(&self) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    out.push(format!("{} dir", path.display()));
                    walk(&path, out);
                } else if kind.is_symlink() {
                    let t = std::fs::read_link(&path).unwrap();
                    out.push(format!("{} -> {}", path.display(), t.display()));
                } else if kind.is_file() {
                    let bytes = std::fs::read(&path).unwrap();
                    out.push(format!("{} {}", path.display(), sha256_hex(&bytes)));
                } else {
                    // Never read a FIFO a test planted: it would block.
                    out.push(format!("{} special", path.display()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out.sort();
        out
    }
}

/// Copies a fixture directory tree (files and subdirectories) to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
