//! decant converts pickle-based PyTorch checkpoints to safetensors inside a
//! wasmtime sandbox, without executing anything the checkpoint contains.
//!
//! The host (this crate) is small and trusted: it opens files, runs the
//! converter guest under limits, validates what comes back and publishes it
//! atomically. All parsing of untrusted bytes happens in the guest
//! (`converter-guest/`).
//!
//! - [`cli`]: the command line.
//! - [`convert`]: one conversion end to end.
//! - [`sandbox`]: wasmtime configuration, limits and the host functions.
//! - [`policy`]: the sandbox policy file.
//! - [`validate`]: checks of the guest's safetensors output.
//! - [`output`]: temp files and atomic publication.
//! - [`guest`]: the embedded converter.
#![forbid(unsafe_code)]

pub mod cli;
pub mod convert;
pub mod error;
pub mod guest;
pub mod output;
pub mod policy;
pub mod sandbox;
pub mod validate;
