//! The committed converter guest, embedded in the binary.
//!
//! Its sha256 is "the converter" in every receipt, so it is built
//! reproducibly (converter-guest/build-wasm.sh) and committed; CI rebuilds it
//! and fails if the bytes differ. Building the host never needs the wasm
//! target.

use sha2::{Digest, Sha256};

/// The converter module.
pub const WASM: &[u8] = include_bytes!("../converter-guest/dist/decant_guest.wasm");

/// sha256 of [`WASM`], hex.
pub fn sha256() -> String {
    hex::encode(Sha256::digest(WASM))
}
