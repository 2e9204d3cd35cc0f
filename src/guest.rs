//! The committed converter guest, embedded in the binary.
//!
//! Its sha256 is "the converter" in every receipt, so it is built
//! reproducibly (converter-guest/build-wasm.sh) and committed; CI rebuilds it
//! and fails if the bytes differ. Building the host never needs the wasm
//! target.

use crate::trust::statement::Sha256Hex;

/// The converter module.
pub const WASM: &[u8] = include_bytes!("../converter-guest/dist/decant_guest.wasm");

/// [`WASM`] compiled ahead of time for this target by `decant-precompile`
/// (see `converter-guest/build-wasm.sh`); loaded by the sandbox, so the
/// binary needs no compiler. The receipt still names [`WASM`]'s sha256.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub const COMPILED: &[u8] =
    include_bytes!("../converter-guest/dist/decant_guest.x86_64-unknown-linux-gnu.cwasm");
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub const COMPILED: &[u8] =
    include_bytes!("../converter-guest/dist/decant_guest.aarch64-unknown-linux-gnu.cwasm");
#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_os = "linux"
)))]
compile_error!(
    "no precompiled converter for this target: add it to TARGETS in src/bin/precompile.rs and run converter-guest/build-wasm.sh"
);

/// The target triples a compiled converter is committed for.
pub const TARGETS: &[&str] = &["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/// The entry of [`TARGETS`] this binary runs on (whose artifact is
/// [`COMPILED`]).
#[cfg(target_arch = "x86_64")]
pub const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";
#[cfg(target_arch = "aarch64")]
pub const HOST_TARGET: &str = "aarch64-unknown-linux-gnu";

/// sha256 of [`WASM`].
pub fn sha256() -> Sha256Hex {
    Sha256Hex::of(WASM)
}
