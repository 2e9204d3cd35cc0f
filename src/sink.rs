//! Where the converter's output goes: a file, written on the sandbox
//! thread and hashed on a thread of its own when there is a core to spare.
//!
//! Why a thread: sha256 of a gigabyte is about half a second of one core,
//! and writing it about as much again in the kernel. Done on the sandbox
//! thread, the guest (and the source bytes the host copies for it) would
//! wait for both. Measured (`perf`, a 1 GiB checkpoint), a conversion has
//! three strands of similar weight: reading and hashing the source
//! (`convert::prepare_job`'s thread), reading the source and writing the
//! output (the sandbox thread), and hashing the output (this one). Writing
//! and hashing on one thread made it the long pole at twice the others.
//! A fourth thread that only wrote was tried (issue 12) and dropped: it
//! balanced the threads but cost 8% more CPU in all (each buffer crossed
//! cores twice), and on two busy cores the total is what counts.
//!
//! With [`Cores::One`] everything happens on the sandbox thread: directory
//! mode runs one conversion per `--jobs` slot, and when those already fill
//! the cores, more threads per conversion would only add hand-offs.
//!
//! Write-behind: the published output is synced (`output::Pending::close`),
//! and syncing a gigabyte at the end took 0.4 s more on this machine's disk.
//! So every [`SYNC_EVERY`] bytes a helper thread syncs what has been
//! written so far while the conversion goes on (what databases call
//! bytes-per-sync), and the final sync has only the tail left to write.
//!
//! Memory stays fixed: buffers go round between the sandbox thread and the
//! hasher, and at most [`DEPTH`] of them, each at most
//! `decant_abi::MAX_IO_CHUNK` bytes, ever exist. Nothing is reordered:
//! bytes reach the file and the hash in the order they were handed over.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

/// Buffers in flight between the sandbox thread and the hasher: enough
/// that neither waits for the other while both are busy.
const DEPTH: usize = 4;

/// Bytes written between write-behind syncs.
const SYNC_EVERY: u64 = 64 << 20;

/// How many cores one conversion may keep busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cores {
    /// Everything on the conversion's own thread.
    One,
    /// The source and the output hashed on threads of their own (about
    /// 1.6 cores busy for a large checkpoint).
    Several,
}

impl Cores {
    /// [`Cores::Several`] where the machine has more than one core.
    pub fn available() -> Self {
        match std::thread::available_parallelism() {
            Ok(n) if n.get() > 1 => Cores::Several,
            _ => Cores::One,
        }
    }
}

/// The output, once everything is written and hashed.
pub struct Written {
    /// The output file (the sink's handle, for the caller to drop).
    pub file: File,
    /// sha256 of every byte written, in order.
    pub sha256: [u8; 32],
    pub bytes: u64,
}

/// The output of one conversion, fed buffer by buffer.
pub struct OutputSink {
    file: File,
    syncer: Syncer,
    work: Work,
    /// Bytes handed over so far.
    pub handed_over: u64,
}

enum Work {
    /// [`Cores::One`]: hashed in [`OutputSink::hand_over`], with one
    /// buffer going round.
    Here {
        hasher: Sha256,
        spare: Option<Vec<u8>>,
    },
    /// [`Cores::Several`].
    Threads(Pipeline),
}

/// The sandbox thread writes each buffer and hands it to the hasher, and
/// the hasher gives it back.
struct Pipeline {
    to_hasher: Option<SyncSender<Vec<u8>>>,
    returned: Receiver<Vec<u8>>,
    hasher: Option<JoinHandle<Sha256>>,
    /// Buffers made so far (never more than [`DEPTH`]).
    made: usize,
}

impl OutputSink {
    /// An output to `file`, with the threads `cores` allows.
    pub fn new(file: File, cores: Cores) -> io::Result<Self> {
        let work = match cores {
            Cores::One => Work::Here {
                hasher: Sha256::new(),
                spare: None,
            },
            Cores::Several => {
                let (to_hasher, for_hasher) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
                let (give_back, returned) = mpsc::channel::<Vec<u8>>();
                let hasher = std::thread::Builder::new()
                    .name("decant-hash".into())
                    .spawn(move || hash_all(for_hasher, give_back))?;
                Work::Threads(Pipeline {
                    to_hasher: Some(to_hasher),
                    returned,
                    hasher: Some(hasher),
                    made: 0,
                })
            }
        };
        Ok(OutputSink {
            syncer: Syncer::new(&file)?,
            file,
            work,
            handed_over: 0,
        })
    }

    /// An empty buffer to fill and [`hand_over`](Self::hand_over): one the
    /// hasher is done with, a new one while fewer than [`DEPTH`] exist, or
    /// else the next one the hasher gives back.
    pub fn buffer(&mut self) -> io::Result<Vec<u8>> {
        match &mut self.work {
            Work::Here { spare, .. } => Ok(spare.take().unwrap_or_default()),
            Work::Threads(p) => match p.returned.try_recv() {
                Ok(buf) => Ok(buf),
                Err(_) if p.made < DEPTH => {
                    p.made += 1;
                    Ok(Vec::new())
                }
                Err(_) => p.returned.recv().map_err(|_| hasher_stopped()),
            },
        }
    }

    /// Writes `buf` after everything handed over before it, and hashes it
    /// (here or on the hasher's thread).
    pub fn hand_over(&mut self, buf: Vec<u8>) -> io::Result<()> {
        self.file.write_all(&buf)?;
        let n = buf.len() as u64;
        match &mut self.work {
            Work::Here { hasher, spare } => {
                hasher.update(&buf);
                *spare = Some(buf);
            }
            Work::Threads(p) => match &p.to_hasher {
                Some(tx) if tx.send(buf).is_ok() => {}
                _ => return Err(hasher_stopped()),
            },
        }
        if crosses_sync_mark(self.handed_over, n) {
            self.syncer.nudge();
        }
        self.handed_over += n;
        Ok(())
    }

    /// Waits until everything handed over is hashed.
    pub fn finish(self) -> io::Result<Written> {
        let OutputSink {
            file,
            work,
            handed_over,
            ..
        } = self;
        let hasher = match work {
            Work::Here { hasher, .. } => hasher,
            Work::Threads(mut p) => {
                p.to_hasher = None;
                match p.hasher.take().map(JoinHandle::join) {
                    Some(Ok(hasher)) => hasher,
                    _ => return Err(hasher_stopped()),
                }
            }
        };
        Ok(Written {
            file,
            sha256: hasher.finalize().into(),
            bytes: handed_over,
        })
    }
}

/// Whether handing over `n` bytes after `before` passes a multiple of
/// [`SYNC_EVERY`].
fn crosses_sync_mark(before: u64, n: u64) -> bool {
    before / SYNC_EVERY != before.saturating_add(n) / SYNC_EVERY
}

/// Write-behind: a thread that syncs the output whenever nudged. Its
/// result is advisory: the caller's final sync is what must succeed, and
/// reports any error itself.
struct Syncer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn new(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        // One nudge waiting at most: a sync covers everything before it.
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("decant-sync".into())
            .spawn(move || {
                for () in nudged {
                    let _ = file.sync_data();
                }
            })?;
        Ok(Syncer {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    fn nudge(&self) {
        if let Some(n) = &self.nudge {
            // Full means a sync is already due, which will cover this too.
            let _ = n.try_send(());
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The error for output that could not be written, whether the sandbox
/// thread's write failed or the sink could not finish.
pub fn write_failed(why: &str) -> crate::error::Error {
    crate::error::Error::new(
        crate::error::Kind::Io,
        format!("writing the output failed: {why}"),
        "check free disk space and permissions",
    )
}

fn hasher_stopped() -> io::Error {
    io::Error::other("the output's hashing thread stopped")
}

impl Drop for Pipeline {
    /// An abandoned output (a refused conversion) still waits for its
    /// hasher, so no thread outlives the conversion.
    fn drop(&mut self) {
        self.to_hasher = None;
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
    }
}

/// The hashing thread: hashes each buffer in order, then gives it back.
fn hash_all(buffers: Receiver<Vec<u8>>, give_back: Sender<Vec<u8>>) -> Sha256 {
    let mut hasher = Sha256::new();
    for buf in buffers {
        hasher.update(&buf);
        // The sink may be gone already (it stops asking once it is done).
        let _ = give_back.send(buf);
    }
    hasher
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn made(sink: &OutputSink) -> usize {
        match &sink.work {
            Work::Here { .. } => 1,
            Work::Threads(p) => p.made,
        }
    }

    #[test]
    fn bytes_arrive_in_order_and_buffers_stay_bounded() {
        for cores in [Cores::One, Cores::Several] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out");
            let mut sink = OutputSink::new(File::create(&path).unwrap(), cores).unwrap();
            let mut expected = Vec::new();
            for i in 0..100u32 {
                let mut buf = sink.buffer().unwrap();
                buf.clear();
                buf.extend((0..(i * 37 % 1000)).map(|j| (i + j) as u8));
                expected.extend_from_slice(&buf);
                sink.hand_over(buf).unwrap();
                assert!(made(&sink) <= DEPTH, "{cores:?}");
            }
            let written = sink.finish().unwrap();
            assert_eq!(written.bytes, expected.len() as u64);
            assert_eq!(
                written.sha256,
                <[u8; 32]>::from(Sha256::digest(&expected)),
                "{cores:?}"
            );
            let mut on_disk = Vec::new();
            File::open(&path)
                .unwrap()
                .read_to_end(&mut on_disk)
                .unwrap();
            assert_eq!(on_disk, expected, "{cores:?}");
        }
    }

    /// A file opened read-only: the first write fails, and says why, in
    /// either mode (the sandbox thread writes; only hashing moves).
    #[test]
    fn a_failed_write_is_reported_at_once() {
        for cores in [Cores::One, Cores::Several] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out");
            File::create(&path).unwrap();
            let mut sink = OutputSink::new(File::open(&path).unwrap(), cores).unwrap();
            let mut buf = sink.buffer().unwrap();
            buf.resize(10, 1);
            let err = sink.hand_over(buf).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(9), "{cores:?}: {err}"); // EBADF
        }
    }

    #[test]
    fn sync_marks_are_crossed_once_per_interval() {
        assert!(!crosses_sync_mark(0, SYNC_EVERY - 1));
        assert!(crosses_sync_mark(SYNC_EVERY - 1, 1));
        assert!(!crosses_sync_mark(SYNC_EVERY, SYNC_EVERY - 1));
        // No overflow near the end of the range.
        assert!(!crosses_sync_mark(u64::MAX - 1, 5));
    }
}
