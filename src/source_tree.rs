//! The files of a model directory, and how each one is opened.
//!
//! A model directory reaches decant in one of two shapes:
//!
//! - **A plain directory**: a checkout, an `hf download --local-dir`
//!   directory, a training run's output. Every file is read beneath a
//!   cap-std handle, so nothing outside it is reached. `.cache/huggingface/`
//!   (the download metadata `--local-dir` writes) and `.git/` are not part
//!   of the model and are left alone.
//! - **A Hugging Face cache snapshot**
//!   (`models--ORG--NAME/snapshots/<commit>`, or `models--ORG--NAME` with a
//!   revision resolved through `refs/`). Every file in it is a symlink, so
//!   the one rule that keeps a directory's reads inside it (no links out)
//!   would refuse every cached model. Instead only the links
//!   huggingface_hub makes are followed, each checked lexically before
//!   anything is opened: a relative link of exactly as many `..` as leads
//!   to the repository's `blobs/<name>`, and from that blob, only where the
//!   cache marks a shared store (`blobs/.huggingface-shared-blobs` holding
//!   `1\n`), one further hop of exactly `../../blobs/<xx>/<hash>`. No
//!   absolute target, no other hop; the final file is opened without
//!   following links and must be a regular file.
//!
//! A blob's name is a digest of its content: the sha256 for LFS files, the
//! git blob SHA-1 for the rest. Both are checked, so a cache whose content
//! does not match what the commit names is refused: SHA-1 names while the
//! tree is listed (those files are small), sha256 names wherever decant
//! hashes the file anyway ([`SourceTree::sha256`], [`SourceTree::confirm`]).

use crate::error::{Error, Kind, Result};
use crate::trust::statement::Sha256Hex;
use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, MetadataExt as _};
use std::io::Read;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

/// Most entries listed; a larger tree is refused rather than walked.
const MAX_ENTRIES: usize = 100_000;
/// Deepest nesting walked.
const MAX_DEPTH: usize = 32;
/// A `refs/` file holds a 40-hex commit; anything longer is not one.
const MAX_REF_BYTES: u64 = 64;
/// What huggingface_hub writes in the shared store's marker
/// (`utils/_shared_blobs.py`, `SHARED_BLOBS_LAYOUT_VERSION` "1").
const SHARED_MARKER: &str = ".huggingface-shared-blobs";
const SHARED_MARKER_CONTENT: &[u8] = b"1\n";
/// The cache directory prefix of a model repository.
const REPO_PREFIX: &str = "models--";

/// (device, inode).
pub type FileId = (u64, u64);

/// Where a source came from, when the cache says: a Hugging Face model
/// repository at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `ORG/NAME`, or `NAME` for repositories without an owner.
    pub repo_id: String,
    /// The 40-hex commit.
    pub commit: String,
}

impl Origin {
    /// The package URL naming this revision: `pkg:huggingface/ORG/NAME@<commit>`.
    pub fn purl(&self) -> String {
        format!("pkg:huggingface/{}@{}", self.repo_id, self.commit)
    }
}

/// How a listed file is reached.
#[derive(Debug, Clone)]
enum Location {
    /// Beneath the tree's root, by its path.
    InTree,
    /// The repository's `blobs/<name>`.
    Blob(String),
    /// The cache's shared store, `blobs/<xx>/<hash>`.
    Shared { prefix: String, hash: String },
}

/// A file of the tree.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Its path in the tree, `/`-separated.
    pub path: String,
    pub bytes: u64,
    /// The file's identity, so that no output can be it.
    pub id: FileId,
    location: Location,
    /// What its sha256 must be, when the cache names it.
    expected: Option<Sha256Hex>,
}

impl TreeFile {
    /// The name within its directory.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    /// Its directory's path (`""` at the top), `/`-separated.
    pub fn dir(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(d, _)| d)
    }
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every file, sorted by path.
    pub files: Vec<TreeFile>,
    /// Directories not walked (`.git/`, `.cache/huggingface/`, the output
    /// directory), `/`-terminated.
    pub left_alone: Vec<String>,
}

/// The cache's stores, for a snapshot.
struct Cache {
    /// `models--ORG--NAME/blobs`, if the repository has one.
    repo_blobs: Option<Dir>,
    /// The cache root's `blobs/`, if it is marked as a shared store.
    shared_blobs: Option<Dir>,
    shown_repo_blobs: PathBuf,
    /// `models--ORG--NAME`, resolved: nothing is written beneath it.
    repo_path: PathBuf,
}

/// A model directory to read.
pub struct SourceTree {
    root: Dir,
    shown: PathBuf,
    cache: Option<Cache>,
    origin: Option<Origin>,
}

fn refused(message: String, hint: &str) -> Error {
    Error::new(Kind::Refused, format!("refused: {message}"), hint)
}

const LINK_HINT: &str =
    "huggingface_hub makes only links into the repository's blobs/; download the model again";

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A repository id as the Hub allows it (huggingface_hub
/// `validate_repo_id`): one optional owner, names of `[A-Za-z0-9._-]`, no
/// `--` or `..`, not starting or ending with `-` or `.`.
fn repo_id_from_dir(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix(REPO_PREFIX)?;
    let parts: Vec<&str> = rest.split("--").collect();
    let ok = |p: &&str| {
        !p.is_empty()
            && p.len() <= 96
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("..")
    };
    match parts.as_slice() {
        [name] if ok(name) => Some((*name).to_string()),
        [owner, name] if ok(owner) && ok(name) => Some(format!("{owner}/{name}")),
        _ => None,
    }
}

fn file_name_of(p: &Path) -> Option<&str> {
    p.file_name().and_then(|n| n.to_str())
}

impl SourceTree {
    /// Opens SRC: a cache snapshot or repository (with `revision`), or a
    /// plain directory.
    pub fn open(src: &Path, revision: Option<&str>) -> Result<SourceTree> {
        let canonical = src
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot open directory {}", src.display()), &e))?;
        let name = file_name_of(&canonical).unwrap_or("");
        let parent = canonical.parent();
        let in_snapshots = parent.and_then(file_name_of) == Some("snapshots");
        let grandparent = parent.and_then(Path::parent);
        if name.starts_with(REPO_PREFIX) && canonical.join("snapshots").is_dir() {
            return Self::open_repository(src, &canonical, revision.unwrap_or("main"));
        }
        if let (true, Some(repo)) = (in_snapshots, grandparent) {
            if file_name_of(repo).is_some_and(|n| n.starts_with(REPO_PREFIX)) {
                if revision.is_some() {
                    return Err(Error::new(
                        Kind::Usage,
                        format!(
                            "{} is already a snapshot; --revision chooses one in a repository directory",
                            src.display()
                        ),
                        "give the models--ORG--NAME directory with --revision, or the snapshot without it",
                    ));
                }
                return Self::open_snapshot(src, &canonical, repo, name);
            }
        }
        if let Some(rev) = revision {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "--revision {} needs a Hugging Face cache repository, and {} is not one",
                    crate::error::one_line(rev),
                    src.display()
                ),
                "give the cache's models--ORG--NAME directory, or leave out --revision",
            ));
        }
        Ok(SourceTree {
            root: crate::output::open_dir(src)?,
            shown: src.to_path_buf(),
            cache: None,
            origin: None,
        })
    }

    fn open_repository(src: &Path, repo_path: &Path, revision: &str) -> Result<SourceTree> {
        let repo = crate::output::open_dir(repo_path)?;
        let commit = if is_hex(revision, 40) {
            revision.to_string()
        } else {
            let safe = !revision.is_empty()
                && Path::new(revision)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
                && !revision.contains('\0');
            if !safe {
                return Err(Error::new(
                    Kind::Usage,
                    format!(
                        "--revision {} is not a branch, tag or commit name",
                        crate::error::one_line(revision)
                    ),
                    "give a name such as main or refs/pr/1, or a 40-hex commit",
                ));
            }
            let at = src.join("refs").join(revision);
            let file = match crate::open::regular_file_in(&repo, &format!("refs/{revision}"), src)
            {
                Ok(opened) => opened?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::new(
                        Kind::Usage,
                        format!(
                            "{} has no revision {} (no {})",
                            src.display(),
                            crate::error::one_line(revision),
                            at.display()
                        ),
                        "download that revision first (hf download ORG/NAME --revision REV), or pass its 40-hex commit",
                    ))
                }
                Err(e) => return Err(Error::io(format!("cannot open {}", at.display()), &e)),
            };
            let bytes =
                crate::open::read_bounded(file, MAX_REF_BYTES, &at, "a cache ref").map_err(|_| {
                    refused(
                        format!("{} does not hold a commit", at.display()),
                        "a cache ref holds the 40-hex commit it points at; download the model again",
                    )
                })?;
            match std::str::from_utf8(&bytes) {
                Ok(s) if is_hex(s, 40) => s.to_string(),
                _ => {
                    return Err(refused(
                        format!("{} does not hold a 40-hex commit", at.display()),
                        "a cache ref holds the commit it points at; download the model again",
                    ))
                }
            }
        };
        let snapshot_path = repo_path.join("snapshots").join(&commit);
        let shown = src.join("snapshots").join(&commit);
        match repo.symlink_metadata(format!("snapshots/{commit}")) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(refused(
                    format!("{} is not a directory", shown.display()),
                    "a cache snapshot is a directory of links; download the model again",
                ))
            }
            Err(_) => {
                return Err(Error::new(
                    Kind::Usage,
                    format!(
                        "revision {} is commit {commit}, which has no snapshot in {}",
                        crate::error::one_line(revision),
                        src.display()
                    ),
                    "download it first (hf download ORG/NAME --revision REV)",
                ))
            }
        }
        Self::open_snapshot(&shown, &snapshot_path, repo_path, &commit)
    }

    /// A snapshot directory `root` of the repository `repo_path`; `shown`
    /// is how messages name it.
    fn open_snapshot(
        shown: &Path,
        root: &Path,
        repo_path: &Path,
        commit: &str,
    ) -> Result<SourceTree> {
        let repo_name = file_name_of(repo_path).unwrap_or("");
        let repo_id = repo_id_from_dir(repo_name).ok_or_else(|| {
            refused(
                format!("{repo_name} is not a cache directory name (models--ORG--NAME)"),
                "convert a snapshot of a Hugging Face cache, or copy the files into a plain directory",
            )
        })?;
        if !is_hex(commit, 40) {
            return Err(refused(
                format!(
                    "{} is not a snapshot: its name is not a 40-hex commit",
                    shown.display()
                ),
                "give a directory under snapshots/, or the repository directory with --revision",
            ));
        }
        let repo = crate::output::open_dir(repo_path)?;
        let repo_blobs = match repo.symlink_metadata("blobs") {
            Ok(m) if m.is_dir() => Some(
                repo.open_dir_nofollow("blobs")
                    .map_err(|e| Error::io("cannot open the repository's blobs/", &e))?,
            ),
            _ => None,
        };
        let shared_blobs = repo_path
            .parent()
            .and_then(|cache| Dir::open_ambient_dir(cache, cap_std::ambient_authority()).ok())
            .and_then(|cache| {
                if !cache.symlink_metadata("blobs").ok()?.is_dir() {
                    return None;
                }
                let blobs = cache.open_dir_nofollow("blobs").ok()?;
                let marker =
                    crate::open::regular_file_in(&blobs, SHARED_MARKER, Path::new("")).ok()?;
                let bytes = crate::open::read_bounded(
                    marker.ok()?,
                    SHARED_MARKER_CONTENT.len() as u64,
                    Path::new(SHARED_MARKER),
                    "a marker",
                )
                .ok()?;
                (bytes == SHARED_MARKER_CONTENT).then_some(blobs)
            });
        Ok(SourceTree {
            root: crate::output::open_dir(root)?,
            shown: shown.to_path_buf(),
            cache: Some(Cache {
                repo_blobs,
                shared_blobs,
                shown_repo_blobs: repo_path.join("blobs"),
                repo_path: repo_path.to_path_buf(),
            }),
            origin: Some(Origin {
                repo_id,
                commit: commit.to_string(),
            }),
        })
    }

    /// The directory as the user named it (for a repository with a
    /// revision, its snapshot).
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The repository and commit, for a cache snapshot.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// Whether this is a cache snapshot (decant never writes there).
    pub fn is_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// The cache repository directory (resolved) a snapshot belongs to.
    pub fn cache_repository(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.repo_path.as_path())
    }

    /// The root's identity, to tell whether an output directory is it.
    pub fn root_id(&self) -> Option<FileId> {
        self.root.dir_metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// Every file, recursively; `skip` is a directory not to walk (the
    /// output directory, when it is inside the source).
    pub fn list(&self, skip: Option<FileId>) -> Result<Listing> {
        let mut listing = Listing::default();
        let mut entries = 0;
        self.walk(&self.root, "", 0, skip, &mut entries, &mut listing)?;
        listing.files.sort_by(|a, b| a.path.cmp(&b.path));
        listing.left_alone.sort();
        Ok(listing)
    }

    fn walk(
        &self,
        dir: &Dir,
        prefix: &str,
        depth: usize,
        skip: Option<FileId>,
        entries: &mut usize,
        out: &mut Listing,
    ) -> Result<()> {
        let shown = |rel: &str| self.shown.join(rel);
        let io = |rel: &str, e: std::io::Error| {
            Error::io(format!("cannot read {}", shown(rel).display()), &e)
        };
        if depth > MAX_DEPTH {
            return Err(refused(
                format!(
                    "{} is nested more than {MAX_DEPTH} directories deep",
                    shown(prefix).display()
                ),
                "a model repository is a few directories deep; check what SRC is",
            ));
        }
        let mut names = Vec::new();
        for entry in dir.entries().map_err(|e| io(prefix, e))? {
            let entry = entry.map_err(|e| io(prefix, e))?;
            *entries += 1;
            if *entries > MAX_ENTRIES {
                return Err(Error::new(
                    Kind::Limit,
                    format!(
                        "{} holds more than {MAX_ENTRIES} entries",
                        self.shown.display()
                    ),
                    "convert a model directory, not a whole file system",
                ));
            }
            let raw = entry.file_name();
            let Some(name) = raw.to_str() else {
                return Err(refused(
                    format!(
                        "{} has a name that is not UTF-8",
                        shown(&format!("{prefix}{}", raw.to_string_lossy())).display()
                    ),
                    "a receipt names every file; rename it or remove it",
                ));
            };
            names.push(name.to_string());
        }
        names.sort();
        for name in names {
            let rel = format!("{prefix}{name}");
            let meta = dir.symlink_metadata(&name).map_err(|e| io(&rel, e))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                let not_model = (depth == 0 && name == ".git")
                    || (depth == 1 && prefix == ".cache/" && name == "huggingface")
                    || skip == Some((meta.dev(), meta.ino()));
                if not_model {
                    out.left_alone.push(format!("{rel}/"));
                    continue;
                }
                let sub = dir.open_dir_nofollow(&name).map_err(|e| io(&rel, e))?;
                self.walk(&sub, &format!("{rel}/"), depth + 1, skip, entries, out)?;
            } else if kind.is_file() {
                let file = self.in_tree(dir, &name, &rel)?;
                out.files
                    .push(self.describe(file, rel, Location::InTree, None)?);
            } else if kind.is_symlink() {
                match &self.cache {
                    Some(cache) => {
                        let (location, blob) = self.follow(cache, dir, &name, &rel, depth)?;
                        let file = self.open_at(&location, &rel)?;
                        out.files
                            .push(self.describe(file, rel, location, Some(blob))?);
                    }
                    None => match self.plain_link(dir, &name, &rel)? {
                        Some(file) => {
                            out.files
                                .push(self.describe(file, rel, Location::InTree, None)?);
                        }
                        None => out.left_alone.push(format!("{rel}/")),
                    },
                }
            } else {
                return Err(refused(
                    format!(
                        "{} is {}, not a regular file",
                        shown(&rel).display(),
                        crate::open::kind_of_entry(kind)
                    ),
                    "a model directory holds regular files; remove it",
                ));
            }
        }
        Ok(())
    }

    /// A symlink in a plain directory: a file it leads to beneath the root
    /// is read (cap-std refuses one leading out), a directory is left
    /// alone (`None`).
    fn plain_link(&self, dir: &Dir, name: &str, rel: &str) -> Result<Option<std::fs::File>> {
        match dir.metadata(name) {
            Ok(m) if m.is_dir() => Ok(None),
            Ok(_) => self.in_tree(dir, name, rel).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(refused(
                format!(
                    "{} is a symlink leading outside the model directory",
                    self.shown.join(rel).display()
                ),
                "copy the files into the directory (e.g. download with --local-dir) instead of linking outside it",
            )),
            Err(e) => Err(Error::io(
                format!("cannot open {}", self.shown.join(rel).display()),
                &e,
            )),
        }
    }

    /// Opens `name` beneath `dir` (which holds the tree path `rel`); in a
    /// cache snapshot without following a final link.
    fn in_tree(&self, dir: &Dir, name: &str, rel: &str) -> Result<std::fs::File> {
        let parent = self.shown.join(rel.strip_suffix(name).unwrap_or(""));
        let opened = if self.cache.is_some() {
            crate::open::regular_file_nofollow(dir, name, &parent)
        } else {
            crate::open::regular_file_in(dir, name, &parent)
        };
        match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(refused(
                format!(
                    "{} is a symlink leading outside the model directory",
                    self.shown.join(rel).display()
                ),
                "copy the files into the directory (e.g. download with --local-dir) instead of linking outside it",
            )),
            Err(e) => Err(Error::io(
                format!("cannot open {}", self.shown.join(rel).display()),
                &e,
            )),
        }
    }

    /// Checks a snapshot link against what huggingface_hub makes and says
    /// where it leads, and the blob name (a digest of the content).
    fn follow(
        &self,
        cache: &Cache,
        dir: &Dir,
        name: &str,
        rel: &str,
        depth: usize,
    ) -> Result<(Location, String)> {
        let shown = self.shown.join(rel);
        let target = dir
            .read_link_contents(name)
            .map_err(|e| Error::io(format!("cannot read the link {}", shown.display()), &e))?;
        let bad = |why: &str| {
            refused(
                format!(
                    "{} links to {}, {why}",
                    shown.display(),
                    crate::error::one_line(&target.to_string_lossy())
                ),
                LINK_HINT,
            )
        };
        // snapshots/<commit>/<depth dirs>/file -> (depth + 2) x "..", then blobs/<name>.
        let parts: Vec<Component<'_>> = target.components().collect();
        let ups = depth + 2;
        let blob = match parts.as_slice() {
            [ups_part @ .., Component::Normal(b), Component::Normal(n)]
                if ups_part.len() == ups
                    && ups_part.iter().all(|c| *c == Component::ParentDir)
                    && *b == "blobs" =>
            {
                n.to_str().unwrap_or("").to_string()
            }
            _ if target.is_absolute() => return Err(bad("an absolute path")),
            _ => return Err(bad("which is not the repository's blobs/")),
        };
        if !(is_hex(&blob, 40) || is_hex(&blob, 64)) {
            return Err(bad("which is not a blob name (a 40- or 64-hex digest)"));
        }
        let Some(blobs) = &cache.repo_blobs else {
            return Err(bad("but the repository has no blobs/ directory"));
        };
        let blob_shown = cache.shown_repo_blobs.join(&blob);
        let meta = blobs.symlink_metadata(&blob).map_err(|_| {
            refused(
                format!("{} links to a blob that is missing", shown.display()),
                "the download is incomplete; download the model again",
            )
        })?;
        if meta.is_file() {
            return Ok((Location::Blob(blob.clone()), blob));
        }
        if !meta.is_symlink() {
            return Err(refused(
                format!(
                    "{} is {}, not a regular file",
                    blob_shown.display(),
                    crate::open::kind_of_entry(meta.file_type())
                ),
                LINK_HINT,
            ));
        }
        // The one further hop: into the cache's shared store.
        let hop = blobs
            .read_link_contents(&blob)
            .map_err(|e| Error::io(format!("cannot read the link {}", blob_shown.display()), &e))?;
        let bad_hop = |why: &str| {
            refused(
                format!(
                    "{} (the blob of {}) links to {}, {why}",
                    blob_shown.display(),
                    shown.display(),
                    crate::error::one_line(&hop.to_string_lossy())
                ),
                "huggingface_hub links a blob only into the cache's shared store (../../blobs/<xx>/<hash>); download the model again",
            )
        };
        let hop_parts: Vec<Component<'_>> = hop.components().collect();
        let (prefix, hash) = match hop_parts.as_slice() {
            [Component::ParentDir, Component::ParentDir, Component::Normal(b), Component::Normal(x), Component::Normal(h)]
                if *b == "blobs" =>
            {
                (
                    x.to_str().unwrap_or("").to_string(),
                    h.to_str().unwrap_or("").to_string(),
                )
            }
            _ if hop.is_absolute() => return Err(bad_hop("an absolute path")),
            _ => return Err(bad_hop("which is not the cache's shared store")),
        };
        if !is_hex(&hash, 64) || hash.get(..2) != Some(prefix.as_str()) {
            return Err(bad_hop("which is not a shared-store name (<xx>/<64-hex>)"));
        }
        let Some(shared) = &cache.shared_blobs else {
            return Err(bad_hop(
                "but the cache has no shared-store marker (blobs/.huggingface-shared-blobs)",
            ));
        };
        let location = Location::Shared {
            prefix: prefix.clone(),
            hash: hash.clone(),
        };
        match shared.symlink_metadata(&prefix) {
            Ok(m) if m.is_dir() => {}
            _ => return Err(bad_hop("which is missing or not a directory")),
        }
        Ok((location, blob))
    }

    /// Opens where a listed file is, never following a link.
    fn open_at(&self, location: &Location, rel: &str) -> Result<std::fs::File> {
        let shown = self.shown.join(rel);
        let cache = self.cache.as_ref();
        let opened = match location {
            Location::InTree => return self.in_tree(&self.root, rel, rel),
            Location::Blob(name) => match cache.and_then(|c| c.repo_blobs.as_ref()) {
                Some(blobs) => crate::open::regular_file_nofollow(blobs, name, &shown),
                None => return Err(Error::internal("a blob was listed without blobs/")),
            },
            Location::Shared { prefix, hash } => {
                match cache.and_then(|c| c.shared_blobs.as_ref()) {
                    Some(shared) => shared
                        .open_dir_nofollow(prefix)
                        .and_then(|sub| crate::open::regular_file_nofollow(&sub, hash, &shown)),
                    None => {
                        return Err(Error::internal("a shared blob was listed without a store"))
                    }
                }
            }
        };
        match opened {
            Ok(file) => file,
            Err(e) => Err(refused(
                format!(
                    "the blob {} links to cannot be opened as a regular file ({e})",
                    shown.display()
                ),
                LINK_HINT,
            )),
        }
    }

    fn describe(
        &self,
        file: std::fs::File,
        path: String,
        location: Location,
        blob: Option<String>,
    ) -> Result<TreeFile> {
        let shown = self.shown.join(&path);
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", shown.display()), &e))?;
        let expected = match blob {
            Some(name) if name.len() == 64 => {
                Some(Sha256Hex::parse(&name).ok_or_else(|| {
                    Error::internal("a checked blob name did not parse as a digest")
                })?)
            }
            Some(name) => Some(git_blob_checked(file, &name, &shown)?),
            None => None,
        };
        Ok(TreeFile {
            path,
            bytes: meta.len(),
            id: (meta.dev(), meta.ino()),
            location,
            expected,
        })
    }

    /// Opens a listed file, never following a link the listing did not check.
    pub fn open_file(&self, f: &TreeFile) -> Result<std::fs::File> {
        self.open_at(&f.location, &f.path)
    }

    /// The file's path for messages.
    pub fn shown_path(&self, f: &TreeFile) -> PathBuf {
        self.shown.join(&f.path)
    }

    /// The sha256 of a listed file, checked against its blob name.
    pub fn sha256(&self, f: &TreeFile) -> Result<Sha256Hex> {
        let file = self.open_file(f)?;
        let sha = crate::convert::sha256_file(&file)
            .map_err(|e| Error::io(format!("cannot read {}", self.shown_path(f).display()), &e))?;
        let sha = Sha256Hex::from_computed(sha);
        self.confirm(f, &sha)?;
        Ok(sha)
    }

    /// Checks a sha256 computed from the file's bytes against its blob
    /// name; every digest of a source goes through here.
    pub fn confirm(&self, f: &TreeFile, computed: &Sha256Hex) -> Result<()> {
        match &f.expected {
            Some(want) if want != computed => Err(refused(
                format!(
                    "{} does not match its blob name: its sha256 is {computed}, the cache says {want}",
                    self.shown_path(f).display()
                ),
                "the cache was altered or the download is corrupt; download the model again",
            )),
            _ => Ok(()),
        }
    }
}

/// Hashes a non-LFS blob both ways: its git blob SHA-1 must be its name;
/// the sha256 is then what later reads must find.
fn git_blob_checked(file: std::fs::File, name: &str, shown: &Path) -> Result<Sha256Hex> {
    use sha1::Digest as _;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", shown.display()), &e))?
        .len();
    let mut git = sha1::Sha1::new();
    git.update(format!("blob {len}\0").as_bytes());
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut reader = file.take(len);
    let mut seen: u64 = 0;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", shown.display()), &e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        git.update(chunk);
        sha.update(chunk);
        seen += n as u64;
    }
    if seen != len || hex::encode(git.finalize()) != name {
        return Err(refused(
            format!(
                "{} does not match its blob name {name} (git blob SHA-1)",
                shown.display()
            ),
            "the cache was altered or the download is corrupt; download the model again",
        ));
    }
    Ok(Sha256Hex::from_computed(hex::encode(sha.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_ids_come_from_cache_names_as_the_hub_allows_them() {
        assert_eq!(repo_id_from_dir("models--gpt2").as_deref(), Some("gpt2"));
        assert_eq!(
            repo_id_from_dir("models--openai-community--gpt2").as_deref(),
            Some("openai-community/gpt2")
        );
        for bad in [
            "models--",
            "models--a--b--c",
            "models--a/b",
            "models--..",
            "models--a..b",
            "models---a",
            "datasets--a--b",
            "models--a--b%2e",
        ] {
            assert_eq!(repo_id_from_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn purl_names_repository_and_commit() {
        let o = Origin {
            repo_id: "org/name".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        assert_eq!(
            o.purl(),
            "pkg:huggingface/org/name@0123456789abcdef0123456789abcdef01234567"
        );
    }
}
