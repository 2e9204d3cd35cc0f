//! A directory as it will be served: every file under it.
//!
//! A directory receipt vouches for a directory only as a whole, because a
//! loader serves whatever is there: a planted `pytorch_model.bin`,
//! `sub/x.safetensors`, `model.SAFETENSORS` or `modeling_x.py` is served as
//! surely as the weights the receipt names. So `decant verify DIR` lists
//! every regular file under DIR, recursively and whatever its name, and
//! anything that is not a regular file or directory (a symlink, a FIFO, a
//! device, a socket) is a problem in itself: what it serves is not in DIR.
//!
//! One name besides the receipt is left out: a regular file `model.sig` at
//! the root of DIR, an OpenSSF model signature ([`crate::trust::oms`]). It
//! signs the directory's files, decant's receipt or manifest included, so
//! it cannot be one of them; no loader reads it. It is reported as a side
//! file, never silently skipped. Only that exact name at the root counts:
//! `sub/model.sig`, `Model.sig` or a symlink named `model.sig` are served
//! files or problems like any other.

use crate::convert::sha256_file;
use crate::error::{Error, Result};
use crate::trust::statement::Sha256Hex;
use crate::trust::verify::DirectoryFiles;
use cap_std::fs::Dir;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Most entries listed; a larger tree is refused rather than walked
/// without end.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Deepest nesting walked.
pub const MAX_DEPTH: usize = 64;

/// A file identity (device, inode), to leave the receipt itself out.
pub type FileId = (u64, u64);

/// The identity of an open file.
pub fn file_id(file: &std::fs::File) -> std::io::Result<FileId> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Every regular file under `dir` with its sha256, except the files `except`
/// (the receipts being checked); symlinks and special files are listed as
/// problems.
pub fn list(dir: &Dir, shown: &Path, except: &[FileId]) -> Result<DirectoryFiles> {
    let listed = visit(dir, shown, except, &mut |_, file| {
        sha256_file(file).map(Sha256Hex::from_computed)
    })?;
    Ok(DirectoryFiles {
        files: listed.files,
        problems: listed.problems.iter().map(Problem::to_string).collect(),
        side_files: listed.side_files,
    })
}

/// An entry that is a problem in itself: its path (relative, as far as it
/// can be shown) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub path: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.path, self.what)
    }
}

/// What [`visit`] found: each regular file (path relative to the directory,
/// `/`-separated) with what the visitor made of it, sorted by path, and
/// the entries that are problems in themselves.
pub struct Visited<T> {
    pub files: Vec<(String, T)>,
    pub problems: Vec<Problem>,
    /// Signature side files left out (the root `model.sig`), by path.
    pub side_files: Vec<String>,
}

/// Opens every regular file under `dir` (as [`list`] finds them) and hands
/// it to `each` with its relative path; an I/O error from `each` stops the
/// walk, naming the file.
pub fn visit<T>(
    dir: &Dir,
    shown: &Path,
    except: &[FileId],
    each: &mut dyn FnMut(&str, &std::fs::File) -> std::io::Result<T>,
) -> Result<Visited<T>> {
    let mut out = Visited {
        files: Vec::new(),
        problems: Vec::new(),
        side_files: Vec::new(),
    };
    let mut entries = 0;
    walk(dir, shown, "", 0, except, &mut entries, each, &mut out)?;
    // Paths are unique, so this is the order of `list` too.
    out.files.sort_by(|a, b| a.0.cmp(&b.0));
    out.problems.sort();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn walk<T>(
    dir: &Dir,
    shown: &Path,
    prefix: &str,
    depth: usize,
    except: &[FileId],
    entries: &mut usize,
    each: &mut dyn FnMut(&str, &std::fs::File) -> std::io::Result<T>,
    out: &mut Visited<T>,
) -> Result<()> {
    let at = |rel: &str| shown.join(rel);
    let io =
        |rel: &str, e: std::io::Error| Error::io(format!("cannot read {}", at(rel).display()), &e);
    if depth > MAX_DEPTH {
        out.problems.push(Problem {
            path: prefix.to_string(),
            what: format!("is nested more than {MAX_DEPTH} directories deep"),
        });
        return Ok(());
    }
    for entry in dir.entries().map_err(|e| io(prefix, e))? {
        let entry = entry.map_err(|e| io(prefix, e))?;
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return Err(Error::new(
                crate::error::Kind::Limit,
                format!("{} holds more than {MAX_ENTRIES} entries", shown.display()),
                "verify a model directory, not a whole file system",
            ));
        }
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else {
            out.problems.push(Problem {
                path: format!("{prefix}{}", raw.to_string_lossy()),
                what: "has a name that is not UTF-8".into(),
            });
            continue;
        };
        let rel = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(|e| io(&rel, e))?;
        if kind.is_dir() {
            let sub = dir.open_dir(name).map_err(|e| io(&rel, e))?;
            walk(
                &sub,
                shown,
                &format!("{rel}/"),
                depth + 1,
                except,
                entries,
                each,
                out,
            )?;
        } else if kind.is_file() {
            // Opened without blocking: a FIFO swapped in after the listing
            // is a problem, not a hang.
            let file = match crate::open::regular_file_in(dir, name, Path::new(prefix)) {
                Ok(Ok(file)) => file,
                Ok(Err(_)) => {
                    out.problems.push(Problem {
                        path: rel,
                        what: "changed into a non-file while being listed".into(),
                    });
                    continue;
                }
                Err(e) => return Err(io(&rel, e)),
            };
            let meta = file.metadata().map_err(|e| io(&rel, e))?;
            if except.contains(&(meta.dev(), meta.ino())) {
                // The receipt itself is not served content, but only under
                // its one name: a hard link of it is another file a loader
                // would serve, with whatever the receipt's extra bytes say.
                if meta.nlink() == 1 {
                    continue;
                }
                out.problems.push(Problem {
                    path: rel,
                    what: format!(
                        "is a name of the receipt, which has {} (a receipt inside the directory may have only one)",
                        meta.nlink()
                    ),
                });
                continue;
            }
            if prefix.is_empty() && name == crate::trust::oms::SIGNATURE_FILE {
                // Checked after the receipt's identity: a model.sig that is
                // a second name of the receipt is still a problem.
                out.side_files.push(rel);
                continue;
            }
            let made = each(&rel, &file).map_err(|e| io(&rel, e))?;
            out.files.push((rel, made));
        } else {
            let what = if kind.is_symlink() {
                "a symlink"
            } else {
                "a special file (FIFO, socket or device)"
            };
            out.problems.push(Problem {
                path: rel,
                what: format!("is {what}, not a regular file"),
            });
        }
    }
    Ok(())
}
