//! torch checkpoint containers: detection, and the model both readers produce.
//!
//! A [`Parsed`] checkpoint is the unpickled object graph plus, for every
//! declared storage, where its bytes lie in the source. Nothing is copied
//! yet: the writer streams tensor bytes straight from those locations.

pub mod legacy;
pub mod plan;
pub mod zip;

use crate::error::{format, Result};
use crate::pickle::{Machine, Value};
use crate::source::Source;

/// Where one storage's bytes lie in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageData {
    /// Absolute offset of the first byte.
    pub offset: u64,
    /// zip CRC-32 of the record, to check while or after reading it.
    pub crc32: Option<u32>,
}

/// A checkpoint, read and unpickled, with its data not yet touched.
pub struct Parsed {
    pub format: &'static str,
    pub protocol: u8,
    /// Whether stored elements are big-endian (zip `byteorder` = `big`).
    pub big_endian: bool,
    pub machine: Machine,
    pub root: Value,
    /// Indexed like `machine.storages.decls`.
    pub data: Vec<StorageData>,
}

/// Detects the container and reads it.
pub fn parse(src: &dyn Source) -> Result<Parsed> {
    let mut head = [0u8; 4];
    let n = src.read_at(0, &mut head);
    if n == 4 && head == *b"PK\x03\x04" {
        zip::parse(src)
    } else if n >= 1 && crate::pickle::is_opcode(head[0]) {
        // A pickle stream of any protocol: the legacy format, or a bare
        // pickle whose globals the VM names before anything else happens.
        legacy::parse(src)
    } else if n == 0 {
        Err(format("the file is empty"))
    } else {
        Err(format(
            "not a torch checkpoint: neither a zip archive nor a pickle stream",
        ))
    }
}
