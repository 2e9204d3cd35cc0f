//! A static pickle scanner: it walks one stream's opcodes and names the
//! globals the stream would import, without executing or importing anything.
//!
//! The VM (`crate::pickle`) cannot do this job: it stops at the first global
//! outside the allowlist, and `decant audit` must list all of them. So this
//! walker keeps only what naming a global needs: a symbolic stack whose
//! values are a known string or unknown, the marks, and the memo. GLOBAL and
//! INST carry `module\nname\n` inline; STACK_GLOBAL takes its two operands
//! from the stack, so it resolves when they were pushed as strings or
//! fetched from the memo, and is counted as unresolved otherwise (a value
//! computed by a call, taken from below a MARK or from an empty stack, a
//! memo slot never written): the scanner never guesses a name.
//!
//! Every opcode of protocols 0 to 5 is decoded with its exact argument
//! length, through the VM's own stream reader and text decoders. A stream
//! ends at STOP; an unknown opcode, an impossible length or the end of the
//! data ends it early, as `damaged`. Frame violations (a frame inside a
//! frame, longer than the stream, an opcode or STOP crossing a frame's end)
//! are where Python's two unpicklers read a stream differently, so they
//! are reported as `damaged` too, but the scan goes on linearly, as
//! `pickle.loads` reads: what follows is still listed.
//!
//! A damaged stream has no single reading, so it gets three:
//!
//! - linear, as above (`pickle.loads`, a file with `peek`, linear
//!   scanners);
//! - if it has frames, as CPython's C unpickler reads a file object
//!   without `peek` (`io.BytesIO`, which is how torch.load reads a zip
//!   record): an argument that does not fit in the rest of the frame is
//!   read from after the frame ([`Reading::FileObject`]). Both readings
//!   are exact; their names are listed as any other;
//! - resynchronising, as a lenient reader or a desynchronised scanner
//!   could: after the opcode the linear reading stopped at, a fresh walk
//!   from the next byte, and again after each stop, to the end of the
//!   range; then the same over every argument (string, bytes, text line)
//!   the readings passed over, since a frame of the wrong length or a
//!   resynchronisation elsewhere turns such bytes into opcodes. Names
//!   found only this way are listed as `possible`, if they are outside the
//!   allowlist and names an unpickler could import (letters, digits, `_`,
//!   `.`); their calls and hidden names are not counted.
//!
//! None of this can make a file look clean: a damaged stream stays
//! damaged, whatever the other readings find. The resynchronising reading
//! reads at most [`MAX_RESYNC_BYTES`] bytes and [`MAX_ARGUMENTS`]
//! arguments per stream, and says so when it stops at a cap.
//!
//! Memory grows at most linearly with the bytes read: one stack slot, mark
//! or memo entry per opcode; a string operand is kept as at most
//! [`MAX_GLOBAL_NAME`] bytes plus a digest, and shared, not copied, by DUP
//! and the memo.

use super::input::Input;
use super::text;
use crate::pickle::globals;
use crate::source::Source;
use decant_abi::{GlobalRef, PickleStream, MAX_GLOBAL_NAME, MAX_LISTED_GLOBALS};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Longest protocol-0 text argument read (the VM's limit).
const MAX_LINE: u64 = 1 << 20;
/// Longest string argument kept as a known string. No module or attribute
/// is named by a longer one; it is skipped, and as an operand it counts as
/// unresolved.
const MAX_KEPT_STRING: u64 = 1 << 20;
/// Bytes skipped per read.
const SKIP_CHUNK: u64 = 64 * 1024;

use crate::pickle::{op, HIGHEST_PROTOCOL, PROTOCOL_0};

/// A string the stream pushed: its first [`MAX_GLOBAL_NAME`] bytes, and for
/// a longer one the sha256 of all of it, so two strings are equal exactly
/// when their contents are, whatever their length.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Text {
    head: Box<[u8]>,
    /// `None` when `head` is the whole string.
    digest: Option<[u8; 32]>,
    /// Non-empty, ASCII letters, digits, `_` and `.` only: a name an
    /// unpickler could import (the VM's rule for names it resolves).
    identifier: bool,
    /// Contains a `.` (an attribute path rather than one name).
    dotted: bool,
}

impl Text {
    fn new(bytes: &[u8]) -> Text {
        let whole = bytes.len() <= MAX_GLOBAL_NAME;
        Text {
            head: bytes.get(..MAX_GLOBAL_NAME).unwrap_or(bytes).into(),
            digest: (!whole).then(|| Sha256::digest(bytes).into()),
            identifier: !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.'),
            dotted: bytes.contains(&b'.'),
        }
    }

    /// The whole string, if it is short and a possible name.
    fn name(&self) -> Option<&str> {
        match self.digest {
            None if self.identifier => std::str::from_utf8(&self.head).ok(),
            _ => None,
        }
    }
}

/// A value on the symbolic stack: a known string, or unknown.
type Value = Option<Rc<Text>>;

/// `module.name` as the VM shows a global (`module:name` when the name is
/// dotted, so `torch` + `_utils._rebuild_tensor_v2` is not mistaken for the
/// allowlisted function), cut to [`MAX_GLOBAL_NAME`] bytes.
fn display(module: &Text, name: &Text) -> String {
    let mut s = String::from_utf8_lossy(&module.head).into_owned();
    if module.digest.is_none() {
        s.push(if name.dotted { ':' } else { '.' });
        s.push_str(&String::from_utf8_lossy(&name.head));
    }
    super::shorten(s, module.digest.is_some() || name.digest.is_some())
}

/// One stream's scan.
#[derive(Debug)]
pub(super) struct Scanned {
    location: String,
    /// The first PROTO's number.
    proto: Option<u8>,
    /// Whether an opcode outside protocol 0's text set was seen.
    binary: bool,
    outside: Vec<GlobalRef>,
    allowlisted: Vec<GlobalRef>,
    pub outside_total: u64,
    pub globals_total: u64,
    pub unresolved: u64,
    pub calls: u64,
    /// Whether a global's module and name were both possible names.
    pub importable: bool,
    /// Why the stream is not well formed, if it is not.
    pub damaged: Option<String>,
    /// Whether the scan reached the stream's STOP.
    pub stopped: bool,
    /// Offset just past the last byte read.
    pub end: u64,
    /// Every (module, name) named so far, by any reading.
    seen: BTreeSet<(Rc<Text>, Rc<Text>)>,
    /// Whether the stream has a FRAME opcode.
    saw_frame: bool,
    /// Where a resynchronising reading starts: after the opcode the
    /// linear reading stopped at.
    resync_from: Option<u64>,
    /// The arguments (strings, bytes, text lines) the readings passed
    /// over, as (start, length), at least [`MIN_HIDING`] bytes long and at
    /// most [`MAX_ARGUMENTS`] of them: where a damaged stream can hide
    /// opcodes from one reader and show them to another.
    arguments: Vec<(u64, u64)>,
    /// Whether arguments were left out of `arguments` (over the cap).
    arguments_cut: bool,
}

/// The shortest argument that can hold a global: `ca\nb\n`.
const MIN_HIDING: u64 = 5;
/// How many arguments of a stream are kept to be read again.
const MAX_ARGUMENTS: usize = 100_000;
/// The most bytes the resynchronising readings of one damaged stream read.
const MAX_RESYNC_BYTES: u64 = 64 << 20;

impl Scanned {
    fn new(location: String, start: u64) -> Scanned {
        Scanned {
            location,
            proto: None,
            binary: false,
            outside: Vec::new(),
            allowlisted: Vec::new(),
            outside_total: 0,
            globals_total: 0,
            unresolved: 0,
            calls: 0,
            importable: false,
            damaged: None,
            stopped: false,
            end: start,
            seen: BTreeSet::new(),
            saw_frame: false,
            resync_from: None,
            arguments: Vec::new(),
            arguments_cut: false,
        }
    }

    /// Whether it names any global, resolved or not.
    pub fn names_globals(&self) -> bool {
        self.globals_total > 0 || self.unresolved > 0
    }

    pub fn into_stream(self) -> PickleStream {
        let protocol = match self.proto {
            Some(p) => p,
            None => u8::from(self.binary),
        };
        let mut globals = self.outside;
        globals.extend(self.allowlisted);
        PickleStream {
            location: self.location,
            protocol,
            globals,
            outside_total: self.outside_total,
            globals_total: self.globals_total,
            unresolved: self.unresolved,
            calls: self.calls,
            damaged: self.damaged,
        }
    }
}

/// Reads pickle streams from a byte range, one after another.
pub(super) struct Scanner<'s> {
    src: &'s dyn Source,
    input: Input<'s>,
    /// Names the range in messages: empty for the whole file (positions are
    /// file offsets), else the zip member (positions are member offsets).
    label: String,
}

/// How a walk reports what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An exact reading: the stream as a reader reads it.
    Exact,
    /// A resynchronising reading of a damaged stream: names outside the
    /// allowlist are listed as possibly referenced; nothing else it sees
    /// (calls, hidden names, damage) is counted. `keep` says whether the
    /// arguments it passes over are kept to be read again.
    Resync { keep: bool },
}

impl<'s> Scanner<'s> {
    pub fn new(src: &'s dyn Source, start: u64, end: u64, label: String) -> Self {
        Scanner {
            src,
            input: Input::new(src, start, end),
            label,
        }
    }

    /// The offset of the next byte, from the start of the range.
    pub fn offset(&self) -> u64 {
        self.input.pos().saturating_sub(self.input.start())
    }

    /// The length of the range.
    pub fn len(&self) -> u64 {
        self.input.end().saturating_sub(self.input.start())
    }

    /// Whether the range is read to its end.
    pub fn at_end(&self) -> bool {
        self.input.pos() >= self.input.end()
    }

    /// Reads the next byte if it starts another stream (a pickle opcode).
    pub fn next_opcode(&mut self) -> Option<u8> {
        if self.input.pos() >= self.input.end() {
            return None;
        }
        let b = self.input.u8().ok()?;
        crate::pickle::is_opcode(b).then_some(b)
    }

    /// Scans one stream from the current position; `first` is its first
    /// opcode when [`Scanner::next_opcode`] already read it. The stream is
    /// read linearly, as `pickle.loads` reads it; if it has frames and
    /// something is wrong with it, it is read again as CPython reads a
    /// file object (see [`Reading::FileObject`]), and the names of both
    /// readings are listed. The scanner is left where the linear reading
    /// ended.
    pub fn scan(&mut self, first: Option<u8>, location: String) -> Scanned {
        let start = self.input.pos().saturating_sub(u64::from(first.is_some()));
        let (mut out, result) = self.walk(
            Reading::Linear,
            Role::Exact,
            first,
            Scanned::new(location, start),
        );
        if let Err((why, at)) = result {
            out.damaged = Some(why);
            out.resync_from = Some(at.saturating_add(1));
        }
        let linear_end = out.end;
        if out.saw_frame && out.damaged.is_some() {
            // The second reading adds the names it finds; what the stream
            // is (its damage, counts of calls and hidden names) stays the
            // linear reading's, with the larger counts.
            let (unresolved, calls) = (out.unresolved, out.calls);
            let (damaged, stopped) = (out.damaged.take(), out.stopped);
            out.unresolved = 0;
            out.calls = 0;
            self.input.seek(start);
            let reading = Reading::FileObject { buffer_end: None };
            let (framed, _) = self.walk(reading, Role::Exact, None, out);
            out = framed;
            out.unresolved = out.unresolved.max(unresolved);
            out.calls = out.calls.max(calls);
            out.damaged = damaged;
            out.stopped = stopped;
            out.end = linear_end;
            self.input.seek(linear_end);
        }
        out
    }

    /// One walk from the current position; `Err` says why and at which
    /// opcode it stopped before a STOP.
    fn walk(
        &mut self,
        reading: Reading,
        role: Role,
        first: Option<u8>,
        out: Scanned,
    ) -> (Scanned, Result<(), (String, u64)>) {
        let start = self.input.pos().saturating_sub(u64::from(first.is_some()));
        let mut walk = Walk {
            sc: self,
            start,
            reading,
            role,
            op_at: start,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: BTreeMap::new(),
            frame_end: None,
            out,
        };
        let result = walk.run(first);
        let at = walk.op_at;
        let mut out = walk.out;
        out.end = self.input.pos();
        (out, result.map_err(|why| (why, at)))
    }

    /// The range from `offset` as a stream no reading decoded, damaged for
    /// `why`: [`Scanner::read_damaged`] reads it from its first byte.
    pub fn unread(&self, offset: u64, location: String, why: String) -> Scanned {
        let at = self.input.start().saturating_add(offset);
        let mut s = Scanned::new(location, at);
        s.damaged = Some(why);
        s.resync_from = Some(at);
        s
    }

    /// For a damaged stream, what a reader that does not stop where
    /// Python does could still import: a reading that resynchronises
    /// (after an opcode it cannot read, a fresh walk from the next byte,
    /// and so on to the end of the range), then the same reading of every
    /// argument the readings passed over (a string, bytes or text line
    /// whose bytes another reader may take for opcodes: a frame of the
    /// wrong length does exactly that). Names no exact reading found are
    /// listed as possibly referenced. The stream is damaged whatever this
    /// finds, so the file is never reported clean.
    pub fn read_damaged(&mut self, s: &mut Scanned) {
        let Some(why) = s.damaged.take() else {
            return;
        };
        // What the resynchronising walks change besides the names is put
        // back.
        let kept = (
            s.proto,
            s.binary,
            s.calls,
            s.unresolved,
            s.importable,
            s.stopped,
            s.end,
        );
        let mut budget = MAX_RESYNC_BYTES;
        let mut out = std::mem::replace(s, Scanned::new(String::new(), 0));
        if let Some(from) = out.resync_from {
            out = self.resync(out, from, true, &mut budget);
        }
        let arguments = std::mem::take(&mut out.arguments);
        for (start, len) in arguments {
            let mut inner = Scanner::new(self.src, start, start.saturating_add(len), String::new());
            out = inner.resync(out, start, false, &mut budget);
        }
        self.input.seek(kept.6);
        (
            out.proto,
            out.binary,
            out.calls,
            out.unresolved,
            out.importable,
            out.stopped,
            out.end,
        ) = kept;
        let mut notes = vec![why];
        if budget == 0 {
            notes.push(format!(
                "its resynchronising reading stopped after {MAX_RESYNC_BYTES} bytes"
            ));
        }
        if out.arguments_cut {
            notes.push(format!(
                "only its first {MAX_ARGUMENTS} arguments were read again"
            ));
        }
        if out.seen.len() >= MAX_RESYNC_NAMES {
            notes.push(format!(
                "its resynchronising reading stopped after {MAX_RESYNC_NAMES} names"
            ));
        }
        out.damaged = Some(notes.join("; "));
        *s = out;
    }

    /// Walks from `from` to the end of the range, a fresh walk after each
    /// STOP and one byte after each opcode a walk stops at, until `budget`
    /// bytes were read.
    fn resync(&mut self, mut out: Scanned, from: u64, keep: bool, budget: &mut u64) -> Scanned {
        let end = self.input.end();
        let mut at = from;
        while at < end && *budget > 0 && out.seen.len() < MAX_RESYNC_NAMES {
            self.input.seek(at);
            let (next, result) = self.walk(Reading::Linear, Role::Resync { keep }, None, out);
            out = next;
            let read = self.input.pos().saturating_sub(at).max(1);
            *budget = budget.saturating_sub(read);
            at = match result {
                Ok(()) => self.input.pos().max(at + 1),
                Err((_, stop)) => stop.saturating_add(1).max(at + 1),
            };
        }
        out
    }
}

/// The most distinct names the resynchronising reading of a stream keeps
/// (each is held to tell the next from it).
const MAX_RESYNC_NAMES: usize = 100_000;

/// How a walk reads the stream's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// As `pickle.loads`, CPython reading a file object with `peek`, and
    /// linear scanners: a FRAME changes nothing.
    Linear,
    /// As CPython's C unpickler reads a file object without `peek`
    /// (`io.BytesIO`: torch.load's reading of a zip record): a FRAME's
    /// bytes are read into a buffer (up to `buffer_end`); an argument that
    /// does not fit in what is left of it is read from the file after the
    /// frame, and the rest of the buffer is dropped; a text line not ended
    /// in the buffer is read whole from after the frame. Bytes literals
    /// (BINBYTES...) are read on from the buffer into the file
    /// (`_Unpickler_ReadInto`).
    FileObject { buffer_end: Option<u64> },
}

/// The walk over one stream.
struct Walk<'a, 's> {
    sc: &'a mut Scanner<'s>,
    /// Where the walk started.
    start: u64,
    reading: Reading,
    role: Role,
    /// Where the opcode being read starts.
    op_at: u64,
    stack: Vec<Value>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: BTreeMap<u64, Value>,
    frame_end: Option<u64>,
    out: Scanned,
}

impl Walk<'_, '_> {
    fn at(&self, pos: u64) -> String {
        if self.sc.label.is_empty() {
            format!("byte {pos}")
        } else {
            format!(
                "byte {} of {}",
                pos.saturating_sub(self.sc.input.start()),
                self.sc.label
            )
        }
    }

    /// Records the first sign that readers may disagree on the stream; the
    /// scan goes on.
    fn anomaly(&mut self, why: String) {
        if self.out.damaged.is_none() {
            self.out.damaged = Some(why);
        }
    }

    /// Walks to STOP; `Err` says why the stream ended before it.
    fn run(&mut self, mut first: Option<u8>) -> Result<(), String> {
        loop {
            let pos = self
                .sc
                .input
                .pos()
                .saturating_sub(u64::from(first.is_some()));
            self.op_at = pos;
            if self.frame_end == Some(pos) {
                self.frame_end = None;
            }
            let code = match first.take() {
                Some(c) => c,
                None => self.sc.input.u8().map_err(|_| {
                    format!("the stream ends at {} without a STOP opcode", self.at(pos))
                })?,
            };
            self.out.binary |= !PROTOCOL_0.contains(&code);
            let stop = self.step(code, pos)?;
            // (`frame_end` is the linear reading's: the other reading
            // keeps its frame in `reading`.)
            if let Some(fe) = self.frame_end {
                let after = self.sc.input.pos();
                if after > fe || (stop && after != fe) {
                    let why = if stop {
                        format!("STOP at {} inside an unfinished frame (readers disagree on where the next pickle starts)", self.at(pos))
                    } else {
                        format!(
                            "opcode 0x{code:02x} at {} runs past the end of its frame (Python's unpicklers read it differently)",
                            self.at(pos)
                        )
                    };
                    self.anomaly(why);
                    self.frame_end = None;
                }
            }
            if stop {
                self.out.stopped = true;
                return Ok(());
            }
        }
    }

    fn truncated(&self, code: u8, pos: u64) -> String {
        format!(
            "opcode 0x{code:02x} at {} runs past the end of the {}",
            self.at(pos),
            if self.sc.label.is_empty() {
                "file"
            } else {
                "member"
            }
        )
    }

    fn left(&self) -> u64 {
        self.sc.input.end().saturating_sub(self.sc.input.pos())
    }

    /// The end of the frame buffer the file-object reading reads from, if
    /// bytes of it are left.
    fn buffered(&mut self) -> Option<u64> {
        let Reading::FileObject { buffer_end } = &mut self.reading else {
            return None;
        };
        match *buffer_end {
            Some(fe) if self.sc.input.pos() < fe => Some(fe),
            _ => {
                *buffer_end = None;
                None
            }
        }
    }

    /// Before reading `n` bytes of an argument (CPython's
    /// `_Unpickler_Read`): in the file-object reading, `n` bytes that do
    /// not fit in what is left of the frame buffer are read from the file
    /// after the frame, and the rest of the buffer is dropped.
    fn before_read(&mut self, n: u64) {
        if let Some(fe) = self.buffered() {
            if self.sc.input.pos().saturating_add(n) > fe {
                self.sc.input.seek(fe);
                self.reading = Reading::FileObject { buffer_end: None };
            }
        }
    }

    fn u8(&mut self, code: u8, pos: u64) -> Result<u8, String> {
        self.before_read(1);
        self.sc.input.u8().map_err(|_| self.truncated(code, pos))
    }
    fn u16(&mut self, code: u8, pos: u64) -> Result<u16, String> {
        self.before_read(2);
        self.sc.input.u16().map_err(|_| self.truncated(code, pos))
    }
    fn u32(&mut self, code: u8, pos: u64) -> Result<u32, String> {
        self.before_read(4);
        self.sc.input.u32().map_err(|_| self.truncated(code, pos))
    }
    fn u64(&mut self, code: u8, pos: u64) -> Result<u64, String> {
        self.before_read(8);
        self.sc.input.u64().map_err(|_| self.truncated(code, pos))
    }

    /// A signed 4-byte length (BINSTRING, LONG4): negative fails Python's load.
    fn i32_len(&mut self, code: u8, pos: u64) -> Result<u64, String> {
        let n = self.u32(code, pos)? as i32;
        u64::try_from(n).map_err(|_| {
            format!(
                "opcode 0x{code:02x} at {} has a negative length (Python refuses the stream)",
                self.at(pos)
            )
        })
    }

    /// Keeps the argument of `n` bytes starting here to be read again if
    /// the stream turns out damaged.
    fn argument(&mut self, n: u64) {
        if n <= self.left() {
            self.keep(self.sc.input.pos(), n);
        }
    }

    fn keep(&mut self, start: u64, n: u64) {
        if n < MIN_HIDING || self.role == (Role::Resync { keep: false }) {
            return;
        }
        if self.out.arguments.len() < MAX_ARGUMENTS {
            self.out.arguments.push((start, n));
        } else {
            self.out.arguments_cut = true;
        }
    }

    fn bytes(&mut self, n: u64, code: u8, pos: u64) -> Result<Vec<u8>, String> {
        self.before_read(n);
        self.argument(n);
        if n > self.left() {
            return Err(self.truncated(code, pos));
        }
        self.sc
            .input
            .bytes(n)
            .map_err(|_| self.truncated(code, pos))
    }

    /// Passes over an argument of `n` bytes (LONG1, LONG4, a string too
    /// long to keep), a window at a time.
    fn skip(&mut self, n: u64, code: u8, pos: u64) -> Result<(), String> {
        self.before_read(n);
        self.skip_into(n, code, pos)
    }

    /// Passes over `n` bytes in `SKIP_CHUNK` pieces.
    fn pass(&mut self, n: u64, code: u8, pos: u64) -> Result<(), String> {
        let mut rest = n;
        while rest > 0 {
            let k = rest.min(SKIP_CHUNK);
            self.sc
                .input
                .bytes(k)
                .map_err(|_| self.truncated(code, pos))?;
            rest -= k;
        }
        Ok(())
    }

    /// Passes over a bytes literal's `n` bytes, which CPython reads on from
    /// the frame buffer into the file (`_Unpickler_ReadInto`), a window at
    /// a time.
    fn skip_into(&mut self, n: u64, code: u8, pos: u64) -> Result<(), String> {
        if n > self.left() {
            return Err(self.truncated(code, pos));
        }
        self.argument(n);
        self.pass(n, code, pos)
    }

    /// A text argument. The file-object reading takes a line from the
    /// frame buffer only if it ends there; else it reads the whole line
    /// from the file after the frame (CPython's `_Unpickler_Readline`).
    fn line(&mut self, code: u8, pos: u64) -> Result<Vec<u8>, String> {
        if let Some(fe) = self.buffered() {
            let from = self.sc.input.pos();
            match self.sc.input.line(MAX_LINE) {
                Ok(line) if self.sc.input.pos() <= fe => return Ok(line),
                _ => {
                    self.sc.input.seek(from.max(fe));
                    self.reading = Reading::FileObject { buffer_end: None };
                }
            }
        }
        let from = self.sc.input.pos();
        let line = self.sc.input.line(MAX_LINE).map_err(|e| {
            if e.message.contains("longer than") {
                format!(
                    "text argument of opcode 0x{code:02x} at {} is longer than {MAX_LINE} bytes",
                    self.at(pos)
                )
            } else {
                self.truncated(code, pos)
            }
        })?;
        self.keep(from, line.len() as u64);
        Ok(line)
    }

    /// A memo index written as text (GET, PUT), as Python's `int()` reads
    /// it; `None` for a spelling this parser does not read the same way.
    fn line_number(&mut self, code: u8, pos: u64) -> Result<Option<u64>, String> {
        let line = self.line(code, pos)?;
        Ok(std::str::from_utf8(&line)
            .ok()
            .and_then(|s| s.parse::<u64>().ok()))
    }

    /// A string argument of `n` bytes; known if it is UTF-8 (as Python
    /// decodes it) and not too long to keep.
    fn string(&mut self, n: u64, code: u8, pos: u64) -> Result<Value, String> {
        if n > MAX_KEPT_STRING {
            self.skip(n, code, pos)?;
            return Ok(None);
        }
        let bytes = self.bytes(n, code, pos)?;
        Ok(std::str::from_utf8(&bytes)
            .is_ok()
            .then(|| Rc::new(Text::new(&bytes))))
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// The value on top of the stack, above the last MARK; unknown if there
    /// is none (Python fails there; the scan goes on without guessing).
    fn top(&self) -> Value {
        if self.stack.len() > self.floor() {
            self.stack.last().cloned().flatten()
        } else {
            None
        }
    }

    fn pop(&mut self) -> Value {
        if self.stack.len() > self.floor() {
            self.stack.pop().flatten()
        } else {
            None
        }
    }

    fn pop_n(&mut self, n: usize) {
        for _ in 0..n {
            self.pop();
        }
    }

    /// Drops everything above the last MARK, and the mark.
    fn pop_mark(&mut self) {
        if let Some(m) = self.marks.pop() {
            self.stack.truncate(m);
        }
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn name_global(&mut self, module: Rc<Text>, name: Rc<Text>) {
        let key = (module, name);
        if self.out.seen.contains(&key) {
            return;
        }
        let (module, name) = (&key.0, &key.1);
        // As the VM decides: only a valid name reaches the allowlist, and a
        // known but unconvertible one (`_rebuild_qtensor`) is refused there,
        // so it is not on it.
        let allowlisted = match (module.name(), name.name()) {
            (Some(m), Some(n)) => matches!(globals::resolve(m, n, ""), Ok(Some(_))),
            _ => false,
        };
        let possible = self.role != Role::Exact;
        if possible && (allowlisted || !(module.identifier && name.identifier)) {
            // What a damaged stream possibly names is listed for its risk:
            // an allowlisted name adds none, and text that is no name an
            // unpickler could import (a resynchronised walk reading the
            // middle of a string as a GLOBAL line) is noise.
            return;
        }
        self.out.globals_total += 1;
        self.out.importable |= module.identifier && name.identifier;
        let list = if allowlisted {
            &mut self.out.allowlisted
        } else {
            self.out.outside_total += 1;
            &mut self.out.outside
        };
        if list.len() < MAX_LISTED_GLOBALS {
            list.push(GlobalRef {
                name: display(module, name),
                allowlisted,
                possible,
            });
        }
        self.out.seen.insert(key);
    }

    /// A GLOBAL or INST argument: `module\nname\n`.
    fn inline_global(&mut self, code: u8, pos: u64) -> Result<(), String> {
        let module = Rc::new(Text::new(&self.line(code, pos)?));
        let name = Rc::new(Text::new(&self.line(code, pos)?));
        self.name_global(module, name);
        Ok(())
    }

    /// Executes one opcode symbolically; `Ok(true)` at STOP.
    fn step(&mut self, code: u8, pos: u64) -> Result<bool, String> {
        match code {
            op::STOP => return Ok(true),
            op::PROTO => {
                let p = self.u8(code, pos)?;
                if p > HIGHEST_PROTOCOL {
                    // CPython refuses the stream here, but a scanner must
                    // not: another reader may not, and what the stream
                    // names is the finding.
                    self.anomaly(format!(
                        "PROTO {p} at {}: no such protocol (Python refuses the stream)",
                        self.at(pos)
                    ));
                }
                if pos != self.start {
                    self.anomaly(format!("PROTO at {} is not the first opcode", self.at(pos)));
                }
                self.out.proto.get_or_insert(p);
            }
            op::FRAME if self.reading != Reading::Linear => {
                let len = self.u64(code, pos)?;
                let from = self.sc.input.pos();
                // A frame that fits in what is left of the buffer only
                // checks that it does; else its bytes are read from the
                // file, after the buffer (CPython's `load_frame`).
                if self
                    .buffered()
                    .is_some_and(|fe| from.saturating_add(len) <= fe)
                {
                    return Ok(false);
                }
                let from = self.buffered().unwrap_or(from);
                self.sc.input.seek(from);
                match from.checked_add(len) {
                    Some(end) if end <= self.sc.input.end() => {
                        self.reading = Reading::FileObject {
                            buffer_end: Some(end),
                        }
                    }
                    _ => {
                        return Err(format!(
                            "FRAME at {} claims {len} bytes, more than the stream holds",
                            self.at(pos)
                        ))
                    }
                }
            }
            op::FRAME => {
                self.out.saw_frame = true;
                let len = self.u64(code, pos)?;
                if self.frame_end.is_some() {
                    self.anomaly(format!(
                        "FRAME at {} starts inside another frame (Python's unpicklers read it differently)",
                        self.at(pos)
                    ));
                }
                let from = self.sc.input.pos();
                match from.checked_add(len) {
                    Some(end) if end <= self.sc.input.end() => self.frame_end = Some(end),
                    _ => {
                        self.anomaly(format!(
                            "FRAME at {} claims {len} bytes, more than the stream holds (Python's unpicklers read it differently)",
                            self.at(pos)
                        ));
                        self.frame_end = None;
                    }
                }
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                // POP of a bare mark discards the mark (CPython's `load_pop`).
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop();
                }
            }
            op::POP_MARK => self.pop_mark(),
            op::DUP => {
                let v = self.top();
                self.push(v);
            }
            op::NONE
            | op::NEWTRUE
            | op::NEWFALSE
            | op::EMPTY_TUPLE
            | op::EMPTY_LIST
            | op::EMPTY_DICT
            | op::EMPTY_SET
            | op::NEXT_BUFFER => self.push(None),
            op::READONLY_BUFFER => {}
            op::BININT1 => {
                self.u8(code, pos)?;
                self.push(None);
            }
            op::BININT2 => {
                self.u16(code, pos)?;
                self.push(None);
            }
            op::BININT => {
                self.u32(code, pos)?;
                self.push(None);
            }
            op::BINFLOAT => {
                self.u64(code, pos)?;
                self.push(None);
            }
            op::LONG1 => {
                let n = u64::from(self.u8(code, pos)?);
                self.skip(n, code, pos)?;
                self.push(None);
            }
            op::LONG4 => {
                let n = self.i32_len(code, pos)?;
                self.skip(n, code, pos)?;
                self.push(None);
            }
            op::INT | op::LONG | op::FLOAT | op::PERSID => {
                self.line(code, pos)?;
                self.push(None);
            }
            op::STRING => {
                let line = self.line(code, pos)?;
                let v = text::python_string_literal(&line)
                    .filter(|b| std::str::from_utf8(b).is_ok())
                    .map(|b| Rc::new(Text::new(&b)));
                self.push(v);
            }
            op::UNICODE => {
                let line = self.line(code, pos)?;
                let v = text::raw_unicode_escape(&line).map(|s| Rc::new(Text::new(s.as_bytes())));
                self.push(v);
            }
            op::SHORT_BINSTRING | op::SHORT_BINUNICODE => {
                let n = u64::from(self.u8(code, pos)?);
                let v = self.string(n, code, pos)?;
                self.push(v);
            }
            op::BINSTRING => {
                let n = self.i32_len(code, pos)?;
                let v = self.string(n, code, pos)?;
                self.push(v);
            }
            op::BINUNICODE => {
                let n = u64::from(self.u32(code, pos)?);
                let v = self.string(n, code, pos)?;
                self.push(v);
            }
            op::BINUNICODE8 => {
                let n = self.u64(code, pos)?;
                let v = self.string(n, code, pos)?;
                self.push(v);
            }
            op::SHORT_BINBYTES => {
                let n = u64::from(self.u8(code, pos)?);
                self.skip_into(n, code, pos)?;
                self.push(None);
            }
            op::BINBYTES => {
                let n = u64::from(self.u32(code, pos)?);
                self.skip_into(n, code, pos)?;
                self.push(None);
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.u64(code, pos)?;
                self.skip_into(n, code, pos)?;
                self.push(None);
            }
            op::TUPLE | op::LIST | op::DICT | op::FROZENSET => {
                self.pop_mark();
                self.push(None);
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                self.pop_n(usize::from(code - op::TUPLE1) + 1);
                self.push(None);
            }
            op::APPEND => self.pop_n(1),
            op::SETITEM => self.pop_n(2),
            op::APPENDS | op::SETITEMS | op::ADDITEMS => self.pop_mark(),
            op::GET => {
                let v = match self.line_number(code, pos)? {
                    Some(k) => self.memo.get(&k).cloned().flatten(),
                    None => None,
                };
                self.push(v);
            }
            op::BINGET => {
                let k = u64::from(self.u8(code, pos)?);
                let v = self.memo.get(&k).cloned().flatten();
                self.push(v);
            }
            op::LONG_BINGET => {
                let k = u64::from(self.u32(code, pos)?);
                let v = self.memo.get(&k).cloned().flatten();
                self.push(v);
            }
            op::PUT => {
                if let Some(k) = self.line_number(code, pos)? {
                    let v = self.top();
                    self.memo.insert(k, v);
                }
            }
            op::BINPUT => {
                let k = u64::from(self.u8(code, pos)?);
                let v = self.top();
                self.memo.insert(k, v);
            }
            op::LONG_BINPUT => {
                let k = u64::from(self.u32(code, pos)?);
                let v = self.top();
                self.memo.insert(k, v);
            }
            op::MEMOIZE => {
                let k = self.memo.len() as u64;
                let v = self.top();
                self.memo.insert(k, v);
            }
            op::GLOBAL => {
                self.inline_global(code, pos)?;
                self.push(None);
            }
            op::STACK_GLOBAL => {
                let name = self.pop();
                let module = self.pop();
                match (module, name) {
                    (Some(module), Some(name)) => self.name_global(module, name),
                    _ => self.out.unresolved += 1,
                }
                self.push(None);
            }
            // Extension codes name a global through copyreg's registry,
            // which only the loading process knows: a global the scan
            // cannot name.
            op::EXT1 => {
                self.u8(code, pos)?;
                self.out.unresolved += 1;
                self.push(None);
            }
            op::EXT2 => {
                self.u16(code, pos)?;
                self.out.unresolved += 1;
                self.push(None);
            }
            op::EXT4 => {
                self.u32(code, pos)?;
                self.out.unresolved += 1;
                self.push(None);
            }
            op::INST => {
                self.inline_global(code, pos)?;
                self.pop_mark();
                self.out.calls += 1;
                self.push(None);
            }
            op::OBJ => {
                self.pop_mark();
                self.out.calls += 1;
                self.push(None);
            }
            op::REDUCE | op::NEWOBJ => {
                self.pop_n(2);
                self.out.calls += 1;
                self.push(None);
            }
            op::NEWOBJ_EX => {
                self.pop_n(3);
                self.out.calls += 1;
                self.push(None);
            }
            op::BUILD => {
                self.pop_n(1);
                self.out.calls += 1;
            }
            op::BINPERSID => {
                self.pop_n(1);
                self.push(None);
            }
            other => {
                return Err(format!(
                    "unknown pickle opcode 0x{other:02x} at {}",
                    self.at(pos)
                ))
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8]) -> Scanned {
        let src = bytes.to_vec();
        let mut sc = Scanner::new(&src, 0, src.len() as u64, String::new());
        sc.scan(None, "byte 0".into())
    }

    fn names(s: Scanned) -> Vec<(String, bool)> {
        s.into_stream()
            .globals
            .into_iter()
            .map(|g| (g.name, g.allowlisted))
            .collect()
    }

    #[test]
    fn long_strings_are_equal_only_when_their_contents_are() {
        let a = "m".repeat(300);
        let mut b = a.clone();
        b.push('x');
        assert_eq!(Text::new(a.as_bytes()), Text::new(a.as_bytes()));
        assert_ne!(Text::new(a.as_bytes()), Text::new(b.as_bytes()));
        // Same first 256 bytes, different tails.
        let c = format!("{}y", &a[..299]);
        assert_ne!(Text::new(a.as_bytes()), Text::new(c.as_bytes()));
    }

    #[test]
    fn a_dotted_name_is_shown_with_a_colon_as_the_vm_shows_it() {
        let p = b"ctorch\n_utils._rebuild_tensor_v2\n.";
        assert_eq!(
            names(scan(p)),
            vec![("torch:_utils._rebuild_tensor_v2".to_string(), false)]
        );
    }

    #[test]
    fn a_long_global_name_is_cut_on_a_char_boundary() {
        // 'é' is two bytes: 255 of 'a' then 'é' straddles byte 256.
        let module = format!("{}é{}", "a".repeat(254), "b".repeat(10));
        let mut p = vec![b'c'];
        p.extend_from_slice(module.as_bytes());
        p.extend_from_slice(b"\nx\n.");
        let g = names(scan(&p));
        let (name, allowlisted) = &g[0];
        assert!(!allowlisted);
        assert!(name.ends_with("..."), "{name}");
        assert!(name.len() <= MAX_GLOBAL_NAME + 3, "{}", name.len());
    }

    #[test]
    fn a_memo_slot_never_written_is_an_unknown_operand() {
        // BINGET 7 (never PUT) as the module.
        let mut p = vec![0x80, 4, b'h', 7, 0x8c, 6];
        p.extend_from_slice(b"system");
        p.extend_from_slice(&[0x93, b'.']);
        let s = scan(&p);
        assert_eq!(s.unresolved, 1);
        assert_eq!(s.globals_total, 0);
        assert!(s.stopped);
    }

    #[test]
    fn operands_from_below_a_mark_are_not_used() {
        // 'os' 'system' MARK STACK_GLOBAL: CPython fails (stack underflow at
        // the mark); a mark-unaware reader would name os.system.
        let mut p = vec![0x80, 4, 0x8c, 2];
        p.extend_from_slice(b"os");
        p.extend_from_slice(&[0x8c, 6]);
        p.extend_from_slice(b"system");
        p.extend_from_slice(&[b'(', 0x93, b'.']);
        let s = scan(&p);
        assert_eq!(s.unresolved, 1);
        assert_eq!(s.globals_total, 0);
    }

    #[test]
    fn frame_violations_are_damage_but_the_scan_goes_on() {
        // A FRAME claiming far more than the stream holds, then os.system:
        // the pure-Python unpickler runs it, so it is listed.
        let mut p = vec![0x80, 4, 0x95];
        p.extend_from_slice(&(1u64 << 32).to_le_bytes());
        p.extend_from_slice(b"cos\nsystem\n.");
        let s = scan(&p);
        assert!(s.stopped);
        assert!(s
            .damaged
            .as_deref()
            .unwrap()
            .contains("more than the stream holds"));
        assert_eq!(names(s), vec![("os.system".to_string(), false)]);
    }

    #[test]
    fn a_protocol_above_5_is_noted_and_the_scan_goes_on() {
        let s = scan(&[0x80, 6, b'N', b'.']);
        assert!(s.stopped);
        assert!(s.damaged.unwrap().contains("PROTO 6"));
    }

    #[test]
    fn negative_lengths_end_the_stream() {
        let mut p = vec![b'T'];
        p.extend_from_slice(&(-1i32).to_le_bytes());
        let s = scan(&p);
        assert!(s.damaged.unwrap().contains("negative length"));
    }

    #[test]
    fn huge_lengths_are_checked_before_anything_is_read() {
        let mut p = vec![0x80, 4, 0x8e];
        p.extend_from_slice(&u64::MAX.to_le_bytes());
        let s = scan(&p);
        assert!(s.damaged.unwrap().contains("runs past the end of the file"));
    }

    #[test]
    fn extension_codes_count_as_unresolved() {
        let s = scan(&[0x80, 2, 0x82, 0xe0, b')', b'R', b'.']);
        assert_eq!(s.unresolved, 1);
        assert_eq!(s.calls, 1);
    }

    #[test]
    fn positions_in_a_member_are_member_offsets() {
        let mut src = vec![0u8; 10];
        src.extend_from_slice(&[0x80, 2, 0xff]);
        let mut sc = Scanner::new(&src, 10, src.len() as u64, "a/data.pkl".into());
        let s = sc.scan(None, "a/data.pkl".into());
        assert_eq!(
            s.damaged.as_deref(),
            Some("unknown pickle opcode 0xff at byte 2 of a/data.pkl")
        );
    }
}
