//! Publishing output files without ever leaving a partial one.
//!
//! Output is written to a temp file in its final directory (created
//! exclusively, mode 0600, so a planted file or symlink cannot redirect it),
//! validated, synced, and only then put in place. Without `--force` the
//! final step is a hard link, which atomically refuses to replace an
//! existing file; with it, a rename. A temp file that is not published is
//! deleted when dropped.
//!
//! Every operation goes through a cap-std [`Dir`] handle: names resolve
//! beneath that directory only (no `..`, absolute path or symlink leads
//! out), which is what directory mode relies on.

use crate::error::{Error, Kind, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Prefix of decant's temp files (so a leftover from a killed run is
/// recognisable).
pub const TEMP_PREFIX: &str = ".decant-";

/// Every temp file of this run not yet published or removed, by path, so a
/// signal can remove them ([`clean_up_on_signals`]).
static TEMPS: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn temps() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<PathBuf>> {
    TEMPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// On SIGINT, SIGTERM or SIGHUP: remove this run's temp files, say so, and
/// exit with the conventional status (128 + the signal: 130, 143, 129).
/// Files already published stay; SIGKILL cannot be caught and may leave
/// `.decant-*.partial` files (SECURITY.md).
pub fn clean_up_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io("cannot install signal handlers", &e))?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held until exit: no new temp file can be created meanwhile.
            let temps = temps();
            for path in temps.iter() {
                let _ = std::fs::remove_file(path);
            }
            let name = match signal {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            crate::render::emit_err(&format!(
                "decant: interrupted by {name}; removed {} unpublished temp file{}\nhint: nothing half-written is left; run the command again\n",
                temps.len(),
                if temps.len() == 1 { "" } else { "s" }
            ));
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

/// A file being written next to its final name.
///
/// It holds no descriptor of its own once [`Pending::close`]d: the
/// directory handle is shared, so a model directory with thousands of
/// staged outputs needs as many descriptors as conversions running at
/// once, not as files converted.
pub struct Pending {
    dir: Arc<Dir>,
    temp: String,
    target: String,
    /// For messages.
    shown: PathBuf,
    /// Open while being written; `None` once closed.
    file: Option<File>,
    /// The temp file's path as recorded for signal clean-up.
    recorded: PathBuf,
    /// What to do when the target exists: which option chooses its path.
    exists_hint: &'static str,
    done: bool,
}

/// The hint when an output exists (`-o` chooses its path).
const OUTPUT_EXISTS_HINT: &str = "pass --force to replace it, or choose another path with -o";
/// The hint when a receipt exists (`--receipt` chooses its path).
const RECEIPT_EXISTS_HINT: &str =
    "pass --force to replace it, or choose another path with --receipt";
/// The hint when a CycloneDX BOM exists (`--cyclonedx` chooses its path).
pub const BOM_EXISTS_HINT: &str =
    "pass --force to replace it, or choose another path with --cyclonedx";
/// The hint when a verification summary exists (`--vsa` chooses its path).
pub const VSA_EXISTS_HINT: &str = "pass --force to replace it, or choose another path with --vsa";

fn exists(shown: &Path, hint: &str) -> Error {
    Error::new(
        Kind::Usage,
        format!("{} already exists", shown.display()),
        hint,
    )
}

fn split(target: &Path) -> Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .ok_or_else(|| {
            Error::new(
                Kind::Usage,
                format!("{} is not a file path", target.display()),
                "give a path that ends in a file name",
            )
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Opens a directory given on the command line (the one place ambient
/// authority is used).
pub fn open_dir(path: &Path) -> Result<Dir> {
    Dir::open_ambient_dir(path, ambient_authority())
        .map_err(|e| Error::io(format!("cannot open directory {}", path.display()), &e))
}

/// Refuses early when `target` exists and `force` was not given, so no work
/// is wasted; publishing checks again atomically.
pub fn check_target(target: &Path, force: bool) -> Result<()> {
    if !force && target.symlink_metadata().is_ok() {
        return Err(exists(target, OUTPUT_EXISTS_HINT));
    }
    Ok(())
}

/// [`check_target`] for a receipt path.
pub fn check_receipt_target(target: &Path, force: bool) -> Result<()> {
    if !force && target.symlink_metadata().is_ok() {
        return Err(exists(target, RECEIPT_EXISTS_HINT));
    }
    Ok(())
}

/// [`check_target`] for a side output whose option names its path
/// (`hint` says which: [`BOM_EXISTS_HINT`], [`VSA_EXISTS_HINT`]).
pub fn check_target_hinted(target: &Path, force: bool, hint: &'static str) -> Result<()> {
    if !force && target.symlink_metadata().is_ok() {
        return Err(exists(target, hint));
    }
    Ok(())
}

/// Where `p` leads, as far as it exists: the longest existing prefix of
/// its absolute form resolved (symlinks, `..`), the rest appended as
/// written (it does not exist, so it holds no symlink to resolve).
pub(crate) fn resolved(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p)
        .map_err(|e| Error::io(format!("cannot resolve {}", p.display()), &e))?;
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(r) = existing.canonicalize() {
            let mut out = r;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Ok(out);
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.pop(),
        ) {
            (Some(name), true) => rest.push(name),
            _ => return Ok(abs),
        }
    }
}

/// Refuses a side file (a BOM, a verification summary) that would be
/// written inside a directory it describes: there it would be one more
/// file that no receipt or manifest lists, and `decant verify DIR` would
/// fail on it. `what` names the file, `dir_what` the directory, `option`
/// the option that chooses the file's path.
pub fn refuse_inside(
    target: &Path,
    dir: &Path,
    what: &str,
    dir_what: &str,
    option: &str,
) -> Result<()> {
    if resolved(target)?.starts_with(resolved(dir)?) {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "{what} {} is inside {dir_what} {}, which it describes",
                target.display(),
                dir.display()
            ),
            format!(
                "write it beside the directory (e.g. {option} {}): inside, it is a file no receipt lists, and decant verify would refuse the directory",
                sibling_example(
                    dir,
                    if option == "--cyclonedx" {
                        ".cdx.json"
                    } else {
                        ".vsa.intoto.jsonl"
                    }
                )
            ),
        ));
    }
    Ok(())
}

/// DIR with `suffix` appended (`out.cdx.json` beside `out`), for a hint.
fn sibling_example(dir: &Path, suffix: &str) -> String {
    let given = dir.to_string_lossy();
    let trimmed = given.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    if matches!(last, "" | "." | "..") {
        let full = resolved(dir).unwrap_or_else(|_| dir.to_path_buf());
        return format!("{}{suffix}", full.display());
    }
    format!("{trimmed}{suffix}")
}

/// [`check_target`] for a name in a directory.
pub fn check_in_dir(dir: &Dir, name: &str, shown: &Path, force: bool) -> Result<()> {
    if !force && dir.symlink_metadata(name).is_ok() {
        return Err(exists(shown, OUTPUT_EXISTS_HINT));
    }
    Ok(())
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

impl Pending {
    /// A temp file beside `target`.
    pub fn new(target: &Path) -> Result<Self> {
        let (parent, name) = split(target)?;
        let dir = Arc::new(open_dir(&parent)?);
        Self::in_dir(&dir, &name, target)
    }

    /// A temp file in `dir` for the file `name`; `shown` names it in messages.
    pub fn in_dir(dir: &Arc<Dir>, name: &str, shown: &Path) -> Result<Self> {
        let dir = Arc::clone(dir);
        let parent = match shown.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        for _ in 0..16 {
            let temp = format!("{TEMP_PREFIX}{}.partial", random_suffix());
            let mut opts = OpenOptions::new();
            opts.read(true).write(true).create_new(true).mode(0o600);
            // Created and recorded under the lock, so a signal either finds
            // the file recorded or stops it being created.
            let mut temps = temps();
            match dir.open_with(&temp, &opts) {
                Ok(f) => {
                    let recorded = parent.join(&temp);
                    temps.insert(recorded.clone());
                    return Ok(Pending {
                        dir,
                        temp,
                        target: name.to_string(),
                        shown: shown.to_path_buf(),
                        file: Some(f.into_std()),
                        recorded,
                        exists_hint: OUTPUT_EXISTS_HINT,
                        done: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot create a temp file beside {}", shown.display()),
                        &e,
                    ))
                }
            }
        }
        Err(Error::internal("could not find a free temp file name"))
    }

    /// Marks this as a receipt: an existing target's error names
    /// `--receipt`, the option that chooses its path.
    pub fn for_receipt(mut self) -> Self {
        self.exists_hint = RECEIPT_EXISTS_HINT;
        self
    }

    /// Sets the hint given when the target exists (for a file whose path
    /// no option chooses, such as a model signature).
    pub fn with_exists_hint(mut self, hint: &'static str) -> Self {
        self.exists_hint = hint;
        self
    }

    /// A second handle to the temp file, for writing or reading back.
    pub fn file(&self) -> Result<File> {
        self.file
            .as_ref()
            .ok_or_else(|| Error::internal("the temp file was already closed"))?
            .try_clone()
            .map_err(|e| Error::io("cannot reopen the temp file", &e))
    }

    /// Syncs the finished file and closes its descriptor; publishing needs
    /// only its name.
    pub fn close(&mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io("cannot set the output's permissions", &e))?;
            file.sync_all()
                .map_err(|e| Error::io("cannot sync the output", &e))?;
        }
        Ok(())
    }

    /// Syncs and puts the file in place; `force` allows replacing an
    /// existing file.
    pub fn publish(mut self, force: bool) -> Result<()> {
        self.close()?;
        let placed = if force {
            self.dir.rename(&self.temp, &self.dir, &self.target)
        } else {
            // A hard link never replaces an existing name: atomic no-clobber.
            self.dir
                .hard_link(&self.temp, &self.dir, &self.target)
                .and_then(|()| self.dir.remove_file(&self.temp))
        };
        match placed {
            Ok(()) => {
                self.done = true;
                // Make the new directory entry durable.
                if let Ok(d) = self.dir.try_clone() {
                    let _ = d.into_std_file().sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(exists(&self.shown, self.exists_hint))
            }
            Err(e) => Err(Error::io(
                format!("cannot create {}", self.shown.display()),
                &e,
            )),
        }
    }
}

/// Publishes files as one: every file in place, or, if one fails, every
/// file published before it taken back and every file it replaced put back
/// (`--force` replaces a file only once a backup link to it exists). Each
/// item says whether it may replace an existing file.
pub fn publish_together(items: Vec<(Pending, bool)>) -> Result<()> {
    struct Done {
        dir: Arc<Dir>,
        target: String,
        backup: Option<String>,
    }
    let undo = |done: Vec<Done>| {
        for d in done.into_iter().rev() {
            match &d.backup {
                Some(b) => {
                    let _ = d.dir.rename(b, &d.dir, &d.target);
                }
                None => {
                    let _ = d.dir.remove_file(&d.target);
                }
            }
        }
    };
    let mut done: Vec<Done> = Vec::new();
    for (pending, replace) in items {
        let dir = Arc::clone(&pending.dir);
        let target = pending.target.clone();
        let backup = if replace && dir.symlink_metadata(&target).is_ok() {
            let name = format!("{TEMP_PREFIX}{}.backup", random_suffix());
            if let Err(e) = dir.hard_link(&target, &dir, &name) {
                let shown = pending.shown.clone();
                drop(pending);
                undo(done);
                return Err(Error::io(
                    format!(
                        "cannot keep {} while replacing it, so nothing was published",
                        shown.display()
                    ),
                    &e,
                ));
            }
            Some(name)
        } else {
            None
        };
        if let Err(e) = pending.publish(replace) {
            if let Some(b) = &backup {
                let _ = dir.remove_file(b);
            }
            undo(done);
            return Err(Error::new(
                e.kind,
                format!("{}; nothing was published", e.message),
                e.hint,
            ));
        }
        done.push(Done {
            dir,
            target,
            backup,
        });
    }
    for d in done {
        if let Some(b) = d.backup {
            let _ = d.dir.remove_file(&b);
        }
    }
    Ok(())
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.dir.remove_file(&self.temp);
        }
        temps().remove(&self.recorded);
    }
}

/// Where a path leads, for telling whether two paths are one file: its
/// directory resolved (symlinks and `..`), its name, and the identity
/// (device, inode) of the file it reaches, if any.
struct Place {
    dir: Option<PathBuf>,
    name: Option<std::ffi::OsString>,
    id: Option<(u64, u64)>,
}

fn place(p: &Path) -> Place {
    use std::os::unix::fs::MetadataExt;
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Place {
        dir: parent.canonicalize().ok(),
        name: p.file_name().map(|n| n.to_os_string()),
        id: std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())),
    }
}

fn same(a: &Place, b: &Place) -> bool {
    (a.dir.is_some() && a.dir == b.dir && a.name.is_some() && a.name == b.name)
        || (a.id.is_some() && a.id == b.id)
}

/// Refuses, before any work and whatever `--force` says, a path decant
/// would write that is a path it reads, or another path it writes: by name
/// (after resolving its directory) or by identity (a hard link or symlink
/// to the same file). Writing over the source, or the receipt over the
/// output, would destroy what the user has.
pub fn refuse_aliases(writes: &[(&str, &Path)], reads: &[(&str, &Path)]) -> Result<()> {
    let writes: Vec<(&str, &Path, Place)> = writes
        .iter()
        .map(|(what, p)| (*what, *p, place(p)))
        .collect();
    let reads: Vec<(&str, &Path, Place)> = reads
        .iter()
        .map(|(what, p)| (*what, *p, place(p)))
        .collect();
    for (i, (what, path, w)) in writes.iter().enumerate() {
        let others = reads.iter().chain(writes.iter().skip(i + 1));
        for (other_what, other_path, o) in others {
            if same(w, o) {
                return Err(Error::new(
                    Kind::Usage,
                    format!(
                        "{what} {} is the same file as {other_what} {}",
                        path.display(),
                        other_path.display()
                    ),
                    "choose another path: decant never writes over a file it reads or writes twice",
                ));
            }
        }
    }
    Ok(())
}
