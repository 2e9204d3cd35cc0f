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
use crate::trust::statement::{is_hub_name, RevisionPurl, Sha256Hex};
use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, MetadataExt as _};
use std::collections::BTreeMap;
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
/// A non-LFS file larger than this is not what the Hub stores (it refuses
/// files over 10 MB outside LFS); hashing one while listing is refused.
const MAX_GIT_BLOB_BYTES: u64 = 16 << 20;
/// A folder holding this is another decant bundle, not part of the model.
const RECEIPT_NAME: &str = "decant.intoto.jsonl";
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
    /// This revision as a package URL, `pkg:huggingface/ORG/NAME@<commit>`.
    pub purl: RevisionPurl,
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

/// A walk in progress.
struct Walk {
    /// A directory not to walk (the output directory inside the source).
    skip: Option<FileId>,
    entries: usize,
    out: Listing,
    /// Git blob names already checked, with their content's sha256: a
    /// blob linked many times is read once.
    blob_sha256: BTreeMap<String, Sha256Hex>,
}

fn out_left_alone(out: &mut Listing, rel: &str, is_dir: bool) {
    out.left_alone.push(if is_dir {
        format!("{rel}/")
    } else {
        rel.to_string()
    });
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
    /// The cache root (the repository's parent), resolved: nothing is
    /// written beneath it.
    cache_root: PathBuf,
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

/// The repository id a cache directory name stands for
/// (huggingface_hub's `repo_folder_name` writes `models--OWNER--NAME`), if
/// the Hub allows it ([`is_hub_name`]).
fn repo_id_from_dir(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix(REPO_PREFIX)?;
    let parts: Vec<&str> = rest.split("--").collect();
    match parts.as_slice() {
        [name] if is_hub_name(name) => Some((*name).to_string()),
        [owner, name] if is_hub_name(owner) && is_hub_name(name) => Some(format!("{owner}/{name}")),
        _ => None,
    }
}

fn file_name_of(p: &Path) -> Option<&str> {
    p.file_name().and_then(|n| n.to_str())
}

/// Where a path sits in a Hugging Face cache, judged by its names.
enum CacheShape {
    /// `models--ORG--NAME` holding `snapshots/`.
    Repository(PathBuf),
    /// `models--ORG--NAME/snapshots/<name>`.
    Snapshot { repo: PathBuf, commit: String },
}

fn cache_shape(path: &Path) -> Option<CacheShape> {
    let name = file_name_of(path)?;
    let parent = path.parent();
    let repo = parent.and_then(Path::parent);
    if parent.and_then(file_name_of) == Some("snapshots") {
        if let Some(repo) =
            repo.filter(|r| file_name_of(r).is_some_and(|n| n.starts_with(REPO_PREFIX)))
        {
            return Some(CacheShape::Snapshot {
                repo: repo.to_path_buf(),
                commit: name.to_string(),
            });
        }
    }
    let is_dir = |p: &Path| p.symlink_metadata().is_ok_and(|m| m.is_dir());
    (name.starts_with(REPO_PREFIX) && is_dir(&path.join("snapshots")))
        .then(|| CacheShape::Repository(path.to_path_buf()))
}

/// The cache's repository directory names (huggingface_hub
/// `REPO_TYPES_MAPPING`): decant converts only `models--`.
fn is_cache_repository_name(name: &str) -> bool {
    ["models--", "datasets--", "spaces--", "kernels--"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Refuses a plain-looking SRC that is part of a cache without being a
/// model snapshot: a folder inside a snapshot, another repository type, a
/// repository without snapshots, or the cache itself. Read as a plain
/// directory, it would follow the cache's links unchecked and (with OUT
/// defaulting to SRC) write into the cache.
fn refuse_other_cache_parts(src: &Path, canonical: &Path) -> Result<()> {
    let inside = canonical.ancestors().find(|a| {
        file_name_of(a).is_some_and(is_cache_repository_name)
            && ["blobs", "refs", "snapshots"]
                .iter()
                .any(|d| a.join(d).symlink_metadata().is_ok())
    });
    let holds_repositories = || {
        std::fs::read_dir(canonical).ok().is_some_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.file_name().to_str().is_some_and(is_cache_repository_name)
                    && e.path().join("snapshots").is_dir()
            })
        })
    };
    if let Some(repo) = inside {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "{} is part of the Hugging Face cache repository {}, not a model snapshot",
                src.display(),
                repo.display()
            ),
            "give a model's snapshot (models--ORG--NAME/snapshots/<commit>) or its models--ORG--NAME directory with -o OUT",
        ));
    }
    if holds_repositories() {
        return Err(Error::new(
            Kind::Usage,
            format!("{} is a Hugging Face cache, not a model", src.display()),
            "give one model's snapshot (models--ORG--NAME/snapshots/<commit>) with -o OUT",
        ));
    }
    Ok(())
}

/// A cache repository directory is a directory, never a link: a link in
/// the cache is cache content, and would lead the whole read elsewhere.
fn refuse_linked(path: &Path, what: &str) -> Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) => Err(refused(
            format!(
                "{} ({what}) is {}, not a directory",
                path.display(),
                crate::open::kind_of(m.file_type())
            ),
            "huggingface_hub makes repository and snapshot directories, not links; download the model again",
        )),
        Err(e) => Err(Error::io(format!("cannot open {}", path.display()), &e)),
    }
}

impl SourceTree {
    /// Opens SRC: a cache snapshot or repository (with `revision`), or a
    /// plain directory.
    ///
    /// What SRC is, is judged first on the path as given (made absolute,
    /// links not resolved): a `snapshots/<commit>` that is itself a link
    /// (cache content, which anyone with write access to the cache can
    /// plant) must not turn the cache into a plain directory somewhere
    /// else. Only if the path as given is no cache is it resolved, so a
    /// link the user made to a snapshot still reads as the snapshot.
    pub fn open(src: &Path, revision: Option<&str>) -> Result<SourceTree> {
        let given = std::path::absolute(src)
            .map_err(|e| Error::io(format!("cannot open directory {}", src.display()), &e))?;
        let canonical = src
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot open directory {}", src.display()), &e))?;
        let shape = match cache_shape(&given) {
            Some(shape) => Some(shape),
            None => cache_shape(&canonical),
        };
        match shape {
            Some(CacheShape::Repository(repo)) => {
                Self::open_repository(src, &repo, revision.unwrap_or("main"))
            }
            Some(CacheShape::Snapshot { repo, commit }) => {
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
                Self::open_snapshot(src, &repo, &commit)
            }
            None => {
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
                refuse_other_cache_parts(src, &canonical)?;
                Ok(SourceTree {
                    root: crate::output::open_dir(src)?,
                    shown: src.to_path_buf(),
                    cache: None,
                    origin: None,
                })
            }
        }
    }

    fn open_repository(src: &Path, repo_path: &Path, revision: &str) -> Result<SourceTree> {
        refuse_linked(repo_path, "a cache repository")?;
        let repo = crate::output::open_dir(repo_path)?;
        let commit = if is_hex(revision, 40) {
            revision.to_string()
        } else {
            if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::new(
                    Kind::Usage,
                    format!("--revision {revision} is a commit in upper case"),
                    "commits are named in lower-case hex; pass it in lower case",
                ));
            }
            let safe = !revision.is_empty()
                && Path::new(revision)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
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
            read_ref(&repo, src, revision)?
        };
        let shown = src.join("snapshots").join(&commit);
        Self::open_snapshot(&shown, repo_path, &commit).map_err(|e| {
            if e.kind == Kind::Io
                && repo
                    .symlink_metadata(format!("snapshots/{commit}"))
                    .is_err()
            {
                Error::new(
                    Kind::Usage,
                    format!(
                        "revision {} is commit {commit}, which has no snapshot in {}",
                        crate::error::one_line(revision),
                        src.display()
                    ),
                    "download it first (hf download ORG/NAME --revision REV)",
                )
            } else {
                e
            }
        })
    }

    /// The snapshot `commit` of the repository at `repo_path`; `shown` is
    /// how messages name it. The repository, its `snapshots/` and the
    /// snapshot are opened without following links.
    fn open_snapshot(shown: &Path, repo_path: &Path, commit: &str) -> Result<SourceTree> {
        let repo_name = file_name_of(repo_path).unwrap_or("");
        let repo_id = repo_id_from_dir(repo_name).ok_or_else(|| {
            refused(
                format!("{repo_name} is not a cache directory name (models--ORG--NAME)"),
                "convert a snapshot of a Hugging Face cache, or copy the files into a plain directory",
            )
        })?;
        let Some(purl) = RevisionPurl::new(&repo_id, commit) else {
            return Err(refused(
                format!(
                    "{} is not a snapshot: its name is not a 40-hex commit",
                    shown.display()
                ),
                "give a directory under snapshots/, or the repository directory with --revision",
            ));
        };
        refuse_linked(repo_path, "a cache repository")?;
        let repo = crate::output::open_dir(repo_path)?;
        let io = |what: &str, e: std::io::Error| Error::io(format!("cannot open {what}"), &e);
        for (at, what) in [
            ("snapshots".to_string(), "the snapshots directory"),
            (format!("snapshots/{commit}"), "the snapshot"),
        ] {
            match repo.symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => {
                    return Err(refused(
                        format!(
                            "{} ({what}) is {}, not a directory",
                            repo_path.join(&at).display(),
                            crate::open::kind_of_entry(m.file_type())
                        ),
                        "huggingface_hub makes snapshot directories, not links; download the model again",
                    ))
                }
                Err(e) => return Err(io(&repo_path.join(&at).display().to_string(), e)),
            }
        }
        let root = repo
            .open_dir_nofollow("snapshots")
            .and_then(|d| d.open_dir_nofollow(commit))
            .map_err(|e| io(&shown.display().to_string(), e))?;
        let repo_blobs = match repo.symlink_metadata("blobs") {
            Ok(m) if m.is_dir() => Some(
                repo.open_dir_nofollow("blobs")
                    .map_err(|e| io("the repository's blobs/", e))?,
            ),
            _ => None,
        };
        let cache_root = repo_path.parent().unwrap_or(Path::new("/"));
        let shared_blobs = Dir::open_ambient_dir(cache_root, cap_std::ambient_authority())
            .ok()
            .and_then(|cache| {
                if !cache.symlink_metadata("blobs").ok()?.is_dir() {
                    return None;
                }
                let blobs = cache.open_dir_nofollow("blobs").ok()?;
                let marker =
                    crate::open::regular_file_nofollow(&blobs, SHARED_MARKER, Path::new(""))
                        .ok()?;
                let bytes = crate::open::read_bounded(
                    marker.ok()?,
                    SHARED_MARKER_CONTENT.len() as u64,
                    Path::new(SHARED_MARKER),
                    "a marker",
                )
                .ok()?;
                (bytes == SHARED_MARKER_CONTENT).then_some(blobs)
            });
        let cache_root = cache_root
            .canonicalize()
            .map_err(|e| io(&cache_root.display().to_string(), e))?;
        Ok(SourceTree {
            root,
            shown: shown.to_path_buf(),
            cache: Some(Cache {
                repo_blobs,
                shared_blobs,
                shown_repo_blobs: repo_path.join("blobs"),
                cache_root,
            }),
            origin: Some(Origin { repo_id, purl }),
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

    /// The cache (resolved) a snapshot belongs to.
    pub fn cache_root(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.cache_root.as_path())
    }

    /// The root's identity, to tell whether an output directory is it.
    pub fn root_id(&self) -> Option<FileId> {
        self.root.dir_metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// Every file, recursively; `skip` is a directory not to walk (the
    /// output directory, when it is inside the source).
    pub fn list(&self, skip: Option<FileId>) -> Result<Listing> {
        let mut walk = Walk {
            skip,
            entries: 0,
            out: Listing::default(),
            blob_sha256: BTreeMap::new(),
        };
        self.walk(&self.root, "", 0, &mut walk)?;
        let mut listing = walk.out;
        listing.files.sort_by(|a, b| a.path.cmp(&b.path));
        listing.left_alone.sort();
        Ok(listing)
    }

    fn walk(&self, dir: &Dir, prefix: &str, depth: usize, walk: &mut Walk) -> Result<()> {
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
            walk.entries += 1;
            if walk.entries > MAX_ENTRIES {
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
            // Not the model: a clone's git store (its LFS objects are the
            // pickles under hash names), the metadata `hf download
            // --local-dir` writes, the output directory, and another
            // decant bundle (a folder holding its own receipt).
            let not_model = (depth == 0 && name == ".git")
                || (depth == 1 && prefix == ".cache/" && name == "huggingface")
                || (kind.is_dir() && walk.skip == Some((meta.dev(), meta.ino())))
                || (kind.is_dir()
                    && dir
                        .symlink_metadata(format!("{name}/{RECEIPT_NAME}"))
                        .is_ok());
            if not_model {
                out_left_alone(&mut walk.out, &rel, kind.is_dir());
            } else if kind.is_dir() {
                let sub = dir.open_dir_nofollow(&name).map_err(|e| io(&rel, e))?;
                self.walk(&sub, &format!("{rel}/"), depth + 1, walk)?;
            } else if kind.is_file() {
                let file = self.in_tree(dir, &name, &rel)?;
                let f = self.describe(file, rel, Location::InTree, None, walk)?;
                walk.out.files.push(f);
            } else if kind.is_symlink() {
                match &self.cache {
                    Some(cache) => {
                        let (location, blob) = self.follow(cache, dir, &name, &rel, depth)?;
                        let file = self.open_at(&location, &rel)?;
                        let f = self.describe(file, rel, location, Some(blob), walk)?;
                        walk.out.files.push(f);
                    }
                    None => match self.plain_link(&rel)? {
                        Some(file) => {
                            let f = self.describe(file, rel, Location::InTree, None, walk)?;
                            walk.out.files.push(f);
                        }
                        None => out_left_alone(&mut walk.out, &rel, true),
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

    /// A symlink in a plain directory, resolved from the root (so
    /// `sub/config.json -> ../config.json` stays inside): a file it leads
    /// to beneath the root is read (cap-std refuses one leading out), a
    /// directory is left alone (`None`).
    fn plain_link(&self, rel: &str) -> Result<Option<std::fs::File>> {
        match self.root.metadata(rel) {
            Ok(m) if m.is_dir() => Ok(None),
            Ok(_) => self.in_tree(&self.root, rel, rel).map(Some),
            Err(e) => Err(self.open_error(rel, &e)),
        }
    }

    /// Why `rel` could not be opened beneath the root: cap-std's refusal
    /// to follow a link out of it is the input's fault; anything else
    /// (a file the user may not read, say) is an I/O error.
    fn open_error(&self, rel: &str, e: &std::io::Error) -> Error {
        let shown = self.shown.join(rel);
        if e.kind() == std::io::ErrorKind::PermissionDenied
            && self
                .root
                .symlink_metadata(rel)
                .is_ok_and(|m| m.is_symlink())
        {
            refused(
                format!("{} is a symlink leading outside the model directory", shown.display()),
                "copy the files into the directory (e.g. download with --local-dir) instead of linking outside it",
            )
        } else {
            Error::io(format!("cannot open {}", shown.display()), e)
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
            Err(e) => Err(self.open_error(rel, &e)),
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
            Location::Blob(name) => match (cache, cache.and_then(|c| c.repo_blobs.as_ref())) {
                (Some(c), Some(blobs)) => {
                    crate::open::regular_file_nofollow(blobs, name, &c.shown_repo_blobs)
                }
                _ => return Err(Error::internal("a blob was listed without blobs/")),
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
            Ok(file) => file.map_err(|e| Error::new(e.kind, e.message, LINK_HINT)),
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
        walk: &mut Walk,
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
            Some(name) => match walk.blob_sha256.get(&name) {
                Some(sha) => Some(sha.clone()),
                None => {
                    if meta.len() > MAX_GIT_BLOB_BYTES {
                        return Err(refused(
                            format!(
                                "{} is a {}-byte file stored outside LFS (its blob is named by a git SHA-1)",
                                shown.display(),
                                meta.len()
                            ),
                            "the Hub keeps files over 10 MB in LFS, named by sha256; download the model again",
                        ));
                    }
                    let sha = git_blob_checked(file, &name, &shown)?;
                    walk.blob_sha256.insert(name, sha.clone());
                    Some(sha)
                }
            },
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

/// The commit `refs/<revision>` names: a regular file (never a link)
/// holding exactly 40 lower-case hex digits.
fn read_ref(repo: &Dir, src: &Path, revision: &str) -> Result<String> {
    let at = src.join("refs").join(revision);
    let bad = || {
        refused(
            format!("{} does not hold a 40-hex commit", at.display()),
            "a cache ref is a file holding the commit it points at; download the model again",
        )
    };
    let rel = format!("refs/{revision}");
    let file = match repo.symlink_metadata(&rel) {
        Ok(m) if m.is_file() => crate::open::regular_file_nofollow(repo, &rel, src)
            .map_err(|e| Error::io(format!("cannot open {}", at.display()), &e))??,
        Ok(_) => return Err(bad()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "{} has no revision {} (no {})",
                    src.display(),
                    crate::error::one_line(revision),
                    at.display()
                ),
                "download that revision first (hf download ORG/NAME --revision REV)",
            ))
        }
        Err(e) => return Err(Error::io(format!("cannot open {}", at.display()), &e)),
    };
    let bytes =
        crate::open::read_bounded(file, MAX_REF_BYTES, &at, "a cache ref").map_err(|_| bad())?;
    match std::str::from_utf8(&bytes) {
        Ok(s) if is_hex(s, 40) => Ok(s.to_string()),
        _ => Err(bad()),
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
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            RevisionPurl::new("org/name", commit).unwrap().as_str(),
            "pkg:huggingface/org/name@0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(RevisionPurl::new("org/name", "main"), None);
    }
}
