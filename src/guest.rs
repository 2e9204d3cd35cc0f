//! The committed converter guest, embedded in the binary.
//!
//! Its sha256 is "the converter" in every receipt, so it is built
//! reproducibly (converter-guest/build-wasm.sh) and committed; CI rebuilds it
//! and fails if the bytes differ. Building the host never needs the wasm
//! target.

use crate::trust::statement::Sha256Hex;

/// The converter module.
pub const WASM: &[u8] = include_bytes!("../converter-guest/dist/decant_guest.wasm");

/// sha256 of [`WASM`].
pub fn sha256() -> Sha256Hex {
    Sha256Hex::of(WASM)
}
