//! Where the converter's output goes: a file, written on the sandbox thread
//! and hashed on a thread of its own.
//!
//! Why a thread: sha256 of a gigabyte is about half a second of one core,
//! and writing it about as much again in the kernel. Done on the sandbox
//! thread, the guest (and the source bytes the host copies for it) would
//! wait for both. Measured (`perf`, a 1 GiB checkpoint), a conversion has
//! three strands of about equal weight: reading and hashing the source
//! (`convert::prepare_job`'s thread), reading the source and writing the
//! output (the sandbox thread), and hashing the output (this one). Writing
//! and hashing on one thread made it the long pole at twice the others.
//!
//! Write-behind: the published output is synced (`output::Pending::close`),
//! and syncing a gigabyte at the end took 0.4 s more on this machine's disk.
//! So every [`SYNC_EVERY`] bytes a third helper thread syncs what has been
//! written so far while the conversion goes on (what databases call
//! bytes-per-sync), and the final sync has only the tail left to write.
//!
//! Memory stays fixed: buffers go round between the two threads, and at
//! most [`DEPTH`] of them, each at most `decant_abi::MAX_IO_CHUNK` bytes,
//! ever exist. Nothing is reordered: bytes reach the file and the hash in
//! the order they were handed over.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Buffers in flight between the sandbox thread and the writer: enough
/// that neither waits for the other while both are busy.
const DEPTH: usize = 4;

/// Bytes written between write-behind syncs.
const SYNC_EVERY: u64 = 64 << 20;

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
    file: Option<File>,
    to_hasher: Option<SyncSender<Vec<u8>>>,
    returned: Receiver<Vec<u8>>,
    hasher: Option<JoinHandle<Sha256>>,
    syncer: Syncer,
    /// Buffers made so far (never more than [`DEPTH`]).
    made: usize,
    /// Bytes handed over so far.
    pub handed_over: u64,
}

impl OutputSink {
    /// Starts the hashing thread for output to `file`.
    pub fn new(file: File) -> io::Result<Self> {
        let (to_hasher, from_sink) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
        let (give_back, returned) = mpsc::channel::<Vec<u8>>();
        let hasher = std::thread::Builder::new()
            .name("decant-hash".into())
            .spawn(move || hash_all(from_sink, give_back))?;
        Ok(OutputSink {
            syncer: Syncer::new(&file)?,
            file: Some(file),
            to_hasher: Some(to_hasher),
            returned,
            hasher: Some(hasher),
            made: 0,
            handed_over: 0,
        })
    }

    /// An empty buffer to fill and [`hand_over`](Self::hand_over): one the
    /// hasher is done with, a new one while fewer than [`DEPTH`] exist, or
    /// else the next one the hasher gives back.
    pub fn buffer(&mut self) -> io::Result<Vec<u8>> {
        let buf = match self.returned.try_recv() {
            Ok(buf) => buf,
            Err(_) if self.made < DEPTH => {
                self.made += 1;
                Vec::new()
            }
            Err(_) => match self.returned.recv() {
                Ok(buf) => buf,
                Err(_) => return Err(stopped()),
            },
        };
        Ok(buf)
    }

    /// Writes `buf` after everything handed over before it, and queues it
    /// for hashing.
    pub fn hand_over(&mut self, buf: Vec<u8>) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(stopped());
        };
        file.write_all(&buf)?;
        let n = buf.len() as u64;
        match &self.to_hasher {
            Some(tx) if tx.send(buf).is_ok() => {}
            _ => return Err(stopped()),
        }
        let before = self.handed_over;
        self.handed_over += n;
        if self.handed_over / SYNC_EVERY != before / SYNC_EVERY {
            self.syncer.nudge();
        }
        Ok(())
    }

    /// Waits until everything handed over is hashed.
    pub fn finish(mut self) -> io::Result<Written> {
        self.to_hasher = None;
        let hasher = match self.hasher.take().map(JoinHandle::join) {
            Some(Ok(hasher)) => hasher,
            _ => return Err(stopped()),
        };
        let file = self.file.take().ok_or_else(stopped)?;
        Ok(Written {
            file,
            sha256: hasher.finalize().into(),
            bytes: self.handed_over,
        })
    }
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

/// The hashing thread ends only when the sink lets it go, or by panicking.
fn stopped() -> io::Error {
    io::Error::other("the output's hashing thread stopped")
}

impl Drop for OutputSink {
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
fn hash_all(buffers: Receiver<Vec<u8>>, give_back: mpsc::Sender<Vec<u8>>) -> Sha256 {
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

    #[test]
    fn bytes_arrive_in_order_and_buffers_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut sink = OutputSink::new(File::create(&path).unwrap()).unwrap();
        let mut expected = Vec::new();
        for i in 0..100u32 {
            let mut buf = sink.buffer().unwrap();
            buf.clear();
            buf.extend((0..(i * 37 % 1000)).map(|j| (i + j) as u8));
            expected.extend_from_slice(&buf);
            sink.hand_over(buf).unwrap();
            assert!(sink.made <= DEPTH);
        }
        let written = sink.finish().unwrap();
        assert_eq!(written.bytes, expected.len() as u64);
        assert_eq!(written.sha256, <[u8; 32]>::from(Sha256::digest(&expected)));
        let mut on_disk = Vec::new();
        File::open(&path)
            .unwrap()
            .read_to_end(&mut on_disk)
            .unwrap();
        assert_eq!(on_disk, expected);
    }

    #[test]
    fn a_failed_write_is_reported_at_once() {
        // A file opened read-only: the first write fails, and says why.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        File::create(&path).unwrap();
        let mut sink = OutputSink::new(File::open(&path).unwrap()).unwrap();
        let mut buf = sink.buffer().unwrap();
        buf.resize(10, 1);
        let err = sink.hand_over(buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(9), "{err}"); // EBADF
    }
}
