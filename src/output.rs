//! Publishing output files without ever leaving a partial one.
//!
//! Output is written to a temp file in OUT's directory (created exclusively,
//! mode 0600, so a planted symlink cannot redirect it), validated, synced,
//! and only then renamed into place. Without `--force` the rename refuses to
//! replace an existing file, atomically (no check-then-write race). A temp
//! file that is not published is deleted when dropped.

use crate::error::{Error, Kind, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// Prefix of decant's temp files (so a leftover from a killed run is
/// recognisable).
pub const TEMP_PREFIX: &str = ".decant-";

/// A file being written next to its final path.
pub struct Pending {
    temp: NamedTempFile,
    target: PathBuf,
}

/// Refuses early when OUT exists and `--force` was not given, so no work is
/// wasted; the final rename checks again atomically.
pub fn check_target(target: &Path, force: bool) -> Result<()> {
    if !force && target.symlink_metadata().is_ok() {
        return Err(exists(target));
    }
    Ok(())
}

fn exists(target: &Path) -> Error {
    Error::new(
        Kind::Usage,
        format!("{} already exists", target.display()),
        "pass --force to replace it, or choose another path with -o",
    )
}

fn parent(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl Pending {
    pub fn new(target: &Path) -> Result<Self> {
        let dir = parent(target);
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a temp file in {}", dir.display()),
                    &e,
                )
            })?;
        Ok(Pending {
            temp,
            target: target.to_path_buf(),
        })
    }

    /// A second handle for writing.
    pub fn file(&self) -> Result<File> {
        self.temp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io("cannot reopen the temp file", &e))
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Syncs and renames into place; `force` allows replacing an existing
    /// file.
    pub fn publish(self, force: bool) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let file = self.temp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io("cannot set the output's permissions", &e))?;
        file.sync_all()
            .map_err(|e| Error::io("cannot sync the output", &e))?;
        let target = self.target;
        let persisted = if force {
            self.temp.persist(&target)
        } else {
            self.temp.persist_noclobber(&target)
        };
        if let Err(e) = persisted {
            // `e.file` is dropped here, which deletes the temp file.
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(exists(&target));
            }
            return Err(Error::io(
                format!("cannot create {}", target.display()),
                &e.error,
            ));
        }
        // Make the rename itself durable.
        if let Ok(d) = File::open(parent(&target)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
