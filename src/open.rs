//! Opening the files decant reads: without blocking, regular files only,
//! and never read without a bound.
//!
//! decant runs unattended on paths and directories other people filled. A
//! FIFO named `pytorch_model.bin` (or given as SRC, the receipt, a key or
//! the artifact) would block `open` until someone writes to it, and
//! `/dev/zero` would never end: a hung gate is a stalled release. So every
//! file is opened with `O_NONBLOCK` (an open that returns at once whatever
//! the file is; it changes nothing for a regular file), checked with
//! `fstat` on the open descriptor (so a swap between the check and the
//! open cannot matter), and refused at once, naming its type, if it is not
//! a regular file. Whole-file reads of small inputs (receipts, keys,
//! policies, indexes) go through [`read_bounded`].

use crate::error::{Error, Kind, Result};
use cap_std::fs::Dir;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The name of the first kind that holds, for messages: file, directory,
/// symlink, FIFO, character device, block device, socket.
fn kind_name(holds: [bool; 7]) -> &'static str {
    const NAMES: [&str; 7] = [
        "a regular file",
        "a directory",
        "a symlink",
        "a FIFO",
        "a character device",
        "a block device",
        "a socket",
    ];
    holds
        .iter()
        .zip(NAMES)
        .find_map(|(&h, name)| h.then_some(name))
        .unwrap_or("not a regular file")
}

/// What kind of file this is, for messages.
pub fn kind_of(t: std::fs::FileType) -> &'static str {
    kind_name([
        t.is_file(),
        t.is_dir(),
        t.is_symlink(),
        t.is_fifo(),
        t.is_char_device(),
        t.is_block_device(),
        t.is_socket(),
    ])
}

/// [`kind_of`] for an entry seen beneath a directory handle.
pub fn kind_of_entry(t: cap_std::fs::FileType) -> &'static str {
    use cap_std::fs::FileTypeExt as _;
    kind_name([
        t.is_file(),
        t.is_dir(),
        t.is_symlink(),
        t.is_fifo(),
        t.is_char_device(),
        t.is_block_device(),
        t.is_socket(),
    ])
}

fn regular(file: File, shown: &Path, kind: Kind) -> Result<File> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", shown.display()), &e))?;
    if meta.is_file() {
        return Ok(file);
    }
    Err(Error::new(
        kind,
        format!(
            "{}{} is {}, not a regular file",
            if kind == Kind::Refused {
                "refused: "
            } else {
                ""
            },
            shown.display(),
            kind_of(meta.file_type())
        ),
        "decant reads only regular files; give the path of the file itself",
    ))
}

/// Opens a path given on the command line: a regular file, or a usage error
/// naming what it is instead. Symlinks are followed (the user named them).
pub fn regular_file(path: &Path) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), &e))?;
    regular(file, path, Kind::Usage)
}

/// Opens `name` beneath `dir` (cap-std: nothing outside `dir` is reached):
/// a regular file, or a refusal naming what it is instead, since the
/// directory's contents are input.
pub fn regular_file_in(dir: &Dir, name: &str, shown: &Path) -> std::io::Result<Result<File>> {
    open_in(dir, name, shown, libc::O_NONBLOCK)
}

/// [`regular_file_in`] that does not follow a final symlink: for the blobs
/// of a Hugging Face cache, whose links decant checks itself.
pub fn regular_file_nofollow(dir: &Dir, name: &str, shown: &Path) -> std::io::Result<Result<File>> {
    open_in(dir, name, shown, libc::O_NONBLOCK | libc::O_NOFOLLOW)
}

fn open_in(dir: &Dir, name: &str, shown: &Path, flags: i32) -> std::io::Result<Result<File>> {
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    cap_std::fs::OpenOptionsExt::custom_flags(&mut opts, flags);
    let file = dir.open_with(name, &opts)?.into_std();
    Ok(regular(file, &shown.join(name), Kind::Refused))
}

/// Reads at most `max` bytes of `file`; more is an error naming the limit.
pub fn read_bounded(file: File, max: u64, shown: &Path, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("cannot read {}", shown.display()), &e))?;
    if bytes.len() as u64 > max {
        return Err(Error::new(
            Kind::Limit,
            format!(
                "{} is larger than the {max} bytes decant reads for {what}",
                shown.display()
            ),
            format!("a real {what} is far smaller; check that this is the right file"),
        ));
    }
    Ok(bytes)
}
