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
//! - [`keys`]: Ed25519 key files (PKCS#8 / SPKI PEM) and key ids.
//! - [`dsse`]: the signed envelope (DSSE v1, PAE, Ed25519).
//! - [`receipt`]: the in-toto / SLSA provenance statement for a conversion.
//! - [`verify`]: checking a receipt against an artifact.
//! - [`model_dir`]: model directories (Hugging Face layouts, shards, batch).
//! - [`gate`]: `decant verify`, the promotion gate (inputs, --reproduce, output).
#![forbid(unsafe_code)]

pub mod cli;
pub mod convert;
pub mod error;
pub mod gate;
pub mod guest;
pub mod model_dir;
pub mod output;
pub mod policy;
pub mod progress;
pub mod receipt;
pub mod render;
pub mod sandbox;
pub mod served;
pub mod trust;
pub mod validate;
