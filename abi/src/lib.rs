//! The one definition of the boundary between decant's host and its converter
//! guest.
//!
//! Both sides compile against this crate, so an import name, a status code or a
//! report field can only change in one place. The guest is a core wasm module
//! (`wasm32-unknown-unknown`) that imports exactly the functions in [`IMPORTS`]
//! from module [`IMPORT_MODULE`] and exports [`EXPORT_MEMORY`] plus the entry
//! points [`EXPORT_CONVERT`], [`EXPORT_INSPECT`] and [`EXPORT_AUDIT`]. It has no WASI: no clock,
//! no randomness, no environment, no files. Everything it learns comes through
//! `read_source`, everything it produces leaves through `write_output`,
//! `copy_source` and `finish`.
//!
//! Signatures (wasm types):
//!
//! | import         | params                               | result |
//! |----------------|--------------------------------------|--------|
//! | `source_len`   | –                                    | `i64` byte length of the source |
//! | `read_source`  | `offset: i64, ptr: i32, len: i32`    | `i32` bytes copied (0 at end of source) |
//! | `write_output` | `ptr: i32, len: i32`                 | `i32` [`status::OK`] |
//! | `copy_source`  | `offset: i64, len: i32, crc: i32`    | `i32` the CRC-32 continued over the bytes |
//! | `finish`       | `ptr: i32, len: i32`                 | `i32` [`status::OK`] |
//!
//! `copy_source` appends `len` source bytes at `offset` to the output
//! unchanged, without them passing through guest memory (issue 12: most of a
//! checkpoint is tensor bytes that go out as they are). The guest still
//! decides every byte's place; the host only moves the range it was named
//! and returns the CRC-32 of those bytes continued from `crc` (a running
//! value as `crc32fast::Hasher::finalize` gives it; 0 to start), so the
//! guest can check the zip record's checksum without reading the bytes.
//!
//! `finish` carries one UTF-8 JSON [`Outcome`]; the guest calls it exactly once,
//! last. Any misuse (a pointer outside guest memory, a read, write or copy
//! larger than [`MAX_IO_CHUNK`], a copy of bytes past the source's end,
//! output past the policy's limit, a second `finish`) traps the guest: the
//! host never trusts a value it was handed.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only module the guest may import from.
pub const IMPORT_MODULE: &str = "decant";
/// `() -> i64`
pub const IMPORT_SOURCE_LEN: &str = "source_len";
/// `(offset: i64, ptr: i32, len: i32) -> i32`
pub const IMPORT_READ_SOURCE: &str = "read_source";
/// `(ptr: i32, len: i32) -> i32`
pub const IMPORT_WRITE_OUTPUT: &str = "write_output";
/// `(offset: i64, len: i32, crc: i32) -> i32`
pub const IMPORT_COPY_SOURCE: &str = "copy_source";
/// `(ptr: i32, len: i32) -> i32`
pub const IMPORT_FINISH: &str = "finish";
/// Every import the guest may have, all from [`IMPORT_MODULE`].
pub const IMPORTS: [&str; 5] = [
    IMPORT_SOURCE_LEN,
    IMPORT_READ_SOURCE,
    IMPORT_WRITE_OUTPUT,
    IMPORT_COPY_SOURCE,
    IMPORT_FINISH,
];

/// The guest's linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// `() -> i32`: convert the source, stream safetensors to the output, finish
/// with an [`Outcome`].
pub const EXPORT_CONVERT: &str = "convert";
/// `() -> i32`: describe the source without writing output; finish with an
/// [`Outcome`] whose report lists the tensors.
pub const EXPORT_INSPECT: &str = "inspect";
/// `() -> i32`: say what the source is, by its content alone, without
/// writing output; finish with a [`FileScan`] ([`status::OK`] whatever the
/// file holds: a file that is not a model file is a scan result too).
pub const EXPORT_AUDIT: &str = "audit";

/// The most bytes one `read_source`, `write_output` or `copy_source` call
/// may move. Host
/// functions cannot be interrupted by the epoch deadline, so their work per
/// call is bounded.
pub const MAX_IO_CHUNK: u32 = 4 << 20;
/// The largest `finish` payload the host accepts.
pub const MAX_OUTCOME_BYTES: u32 = 16 << 20;

/// Return values of the guest's entry points and the host functions.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// The input was refused (details in the [`crate::Outcome`]).
    pub const REFUSED: i32 = 1;
}

/// What the guest reports when it is done; the JSON carried by `finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The checkpoint was read (and, for `convert`, written out).
    Done(Report),
    /// The checkpoint was refused; nothing the guest wrote may be kept.
    Refused(Refusal),
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// A pickle global outside the allowlist.
    Global,
    /// A well-formed construct decant does not convert (complex, quantized,
    /// sparse tensors; TorchScript; out-of-band buffers).
    Unsupported,
    /// A corrupt, truncated or ambiguous container or pickle stream.
    Corrupt,
    /// A guest-side resource bound (nesting, entry counts).
    Limit,
    /// Not a checkpoint format decant knows.
    Format,
}

/// A refusal: what happened, where, and what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    /// One line: what was found.
    pub message: String,
    /// One line: what to do about it.
    pub hint: String,
}

/// One entry that was not converted because it is not a tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropped {
    /// Flattened name (`optimizer.lr`).
    pub name: String,
    /// Python-ish type of the value (`int`, `str`, `list`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A tensor as it appears in the output (listed by `inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSummary {
    pub name: String,
    /// safetensors dtype name (`F32`, `BF16`, ...).
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Whether the source stores it non-contiguously (a view decant
    /// materialises).
    pub strided: bool,
}

/// What the guest found and did. Recorded in receipts, so it stays small: it
/// counts tensors rather than listing them, except for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `zip` (torch >= 1.6) or `legacy`.
    pub format: String,
    /// The main pickle's protocol: its PROTO number, or for a stream without
    /// one, 1 if it uses binary opcodes and 0 if it is all text.
    pub pickle_protocol: u8,
    /// Byte order of the stored tensor data (`little` or `big`).
    pub byteorder: String,
    /// Tensors written (after removing aliases).
    pub tensors: u64,
    /// Bytes of safetensors output (0 for `inspect`).
    pub output_bytes: u64,
    /// Non-tensor entries inside the converted dict, in name order.
    pub dropped: Vec<Dropped>,
    /// How many dropped entries exist in all (`dropped` is capped).
    pub dropped_total: u64,
    /// Top-level keys outside `state_dict` when a `state_dict` entry was
    /// selected (training state such as `epoch`, `optimizer_states`).
    pub ignored: Vec<String>,
    /// Exact aliases (tied weights): removed name -> kept name.
    pub aliases: BTreeMap<String, String>,
    /// Every pickle global the checkpoint used, sorted.
    pub globals: Vec<String>,
    /// The tensors, for `inspect` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensor_list: Vec<TensorSummary>,
}

/// What `audit` found in one file's bytes: facts, not judgements (the host
/// turns them into findings with severities). The file's name plays no
/// part: a pickle named `model.safetensors` is a pickle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScan {
    pub format: ScanFormat,
    /// For pickle-based formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickle: Option<PickleScan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safetensors: Option<SafetensorsScan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<GgufScan>,
    /// Why the file is not a valid file of its format (a truncated header,
    /// offsets that do not cover the data), if it is not. One line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// A file's format, decided by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanFormat {
    /// A zip archive holding a pickle as torch.save (>= 1.6) writes it.
    TorchZip,
    /// A zip archive holding pickles (`*.pkl` members) in another layout.
    ZipWithPickles,
    /// A pickle stream at byte 0: the legacy torch format, or any pickle
    /// (joblib, `pickle.dump`, a `.pkl`).
    Pickle,
    /// A safetensors file (8-byte little-endian header length, then JSON).
    Safetensors,
    /// A GGUF file (`GGUF` magic).
    Gguf,
    /// None of the above (text, JSON, images, an empty file, ...).
    Other,
}

impl ScanFormat {
    /// Whether the file holds pickles (and a [`PickleScan`] says which).
    pub fn is_pickle_based(self) -> bool {
        matches!(
            self,
            ScanFormat::TorchZip | ScanFormat::ZipWithPickles | ScanFormat::Pickle
        )
    }
}

/// The pickles in a file, scanned statically: opcodes are walked, nothing
/// is executed or imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickleScan {
    /// Pickle streams found, in file order (a legacy torch file holds
    /// several in a row; a zip one per `*.pkl` member), at most
    /// [`MAX_LISTED_STREAMS`].
    pub streams: Vec<PickleStream>,
    /// How many pickle streams there are in all.
    pub streams_total: u64,
}

/// One pickle stream's references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickleStream {
    /// Where it is: `data.pkl` (the zip member's name) or `byte 0`.
    pub location: String,
    /// The PROTO number, or 0/1 for streams without one (as [`Report`]).
    pub protocol: u8,
    /// The globals the stream names (GLOBAL, INST, STACK_GLOBAL with
    /// operands the scan could follow), `module.name`, unique, in the order
    /// first named: every one outside the allowlist up to
    /// [`MAX_LISTED_GLOBALS`], then allowlisted ones up to as many again, so
    /// a flood of harmless names cannot hide a dangerous one. A stream is
    /// read the way `pickle.loads` and linear scanners read it and, where
    /// its frames are violated, the way CPython's unpickler reads a file
    /// object (torch.load's reading of a zip record); the names of both
    /// readings are listed. A damaged stream is also read on past its
    /// damage, as a resynchronising reader would ([`GlobalRef::possible`]).
    pub globals: Vec<GlobalRef>,
    /// Unique globals named outside the allowlist, in all.
    pub outside_total: u64,
    /// Unique globals named, in all.
    pub globals_total: u64,
    /// STACK_GLOBAL opcodes whose module or name the scan could not
    /// determine without executing the pickle (computed names: a sign of
    /// obfuscation), and EXT1/EXT2/EXT4, which name a global through the
    /// copyreg extension registry.
    pub unresolved: u64,
    /// Opcodes that call something: REDUCE, BUILD, INST, OBJ, NEWOBJ,
    /// NEWOBJ_EX.
    pub calls: u64,
    /// Why the stream is not well formed, if it is not: the scan stopped
    /// before its STOP (truncation, an unknown opcode), or went on past
    /// something Python's unpicklers disagree on (a frame problem, a
    /// misplaced or unknown PROTO), listing what follows; and which cap
    /// stopped the resynchronising reading, if one did. One line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// A global a pickle names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRef {
    /// `module.name` as the pickle spells it (Python 2 names as written),
    /// or `module:qual.name` for a dotted name (as decant's refusals show
    /// it), cut at [`MAX_GLOBAL_NAME`] bytes (on a character boundary,
    /// with `...` appended) if longer.
    pub name: String,
    /// Whether decant's allowlist (torch's weights-only allowlist, as far
    /// as state dicts go) resolves it. Anything else is something a plain
    /// `torch.load` / `pickle.load` would import and may call.
    pub allowlisted: bool,
    /// Found only by reading a damaged stream on as a resynchronising
    /// reader could (a fresh walk from the byte after each opcode a walk
    /// stops at, and over the bytes of the stream's string, bytes and text
    /// arguments): possibly referenced, by a reader that does not stop
    /// where Python does. Only names outside the allowlist are listed this
    /// way; they count in `outside_total` and `globals_total` like the
    /// others. The stream's `damaged` is always set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub possible: bool,
}

/// A safetensors file's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetensorsScan {
    /// Tensors the header declares.
    pub tensors: u64,
    /// The header's length field.
    pub header_bytes: u64,
}

/// A GGUF file's header: its version, counts and the metadata an auditor
/// needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GgufScan {
    pub version: u32,
    pub tensor_count: u64,
    pub metadata_count: u64,
    /// `general.architecture`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// `general.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `general.file_type` (llama.cpp's `LLAMA_FTYPE_*` number: the
    /// quantization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<u32>,
    /// `tokenizer.chat_template`, the embedded chat template (Jinja), if
    /// any: named by its digest, since it can be large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<TextRef>,
}

/// A piece of text inside a file, by size and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextRef {
    pub bytes: u64,
    /// Lowercase hex sha256 of its bytes.
    pub sha256: String,
}

/// How many pickle streams a [`PickleScan`] lists (past it, streams with
/// findings take the place of clean ones). The caps multiplied could pass
/// [`MAX_OUTCOME_BYTES`], so the guest then drops listed names,
/// allowlisted ones first and from the last streams, until the report
/// fits; every count stays exact. Locations and GGUF strings are cut at
/// [`MAX_GLOBAL_NAME`] bytes.
pub const MAX_LISTED_STREAMS: usize = 100;
/// How many globals of each kind a [`PickleStream`] lists.
pub const MAX_LISTED_GLOBALS: usize = 1000;
/// The longest global name a [`GlobalRef`] carries, in bytes.
pub const MAX_GLOBAL_NAME: usize = 256;

/// Characters that make text display as something else: C0/C1 controls
/// (terminal escapes, forged lines) and Unicode's invisible and
/// bidirectional formatting characters (`gnp.exe` shown as `exe.png`). The
/// guest refuses names containing them; the host escapes them in anything
/// it prints.
pub fn is_deceptive_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// How many dropped entries a report lists by name.
pub const MAX_LISTED_DROPPED: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_is_tagged() {
        let o = Outcome::Refused(Refusal {
            kind: RefusalKind::Global,
            message: "global posix.system at byte 2".into(),
            hint: "h".into(),
        });
        let s = serde_json::to_string(&o).unwrap();
        assert!(
            s.starts_with(r#"{"outcome":"refused","kind":"global""#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<Outcome>(&s).unwrap(), o);
    }
}
