//! decant converts pickle-based PyTorch checkpoints to safetensors inside a
//! wasmtime sandbox, without executing anything the checkpoint contains.
//!
//! The host (this crate) is small and trusted: it opens files, runs the
//! converter guest under limits, validates what comes back, publishes it
//! atomically and signs and verifies receipts. Checkpoint bytes are parsed
//! only in the guest (`converter-guest/`). The host parses a few inputs of
//! its own, each bounded before it is read and parsed strictly: sharded
//! index files, receipts (DSSE JSON and the statement inside), key files
//! (PEM), policy files, and the safetensors header of every output it
//! publishes (SECURITY.md lists the limits).
//!
//! - [`cli`]: argument parsing and exit statuses; `render`: everything
//!   printed, through one writer that never panics.
//! - [`convert`]: one conversion end to end, and convert-and-sign.
//! - [`sandbox`]: wasmtime configuration, limits and the host functions.
//! - [`policy`]: the sandbox policy file.
//! - [`validate`]: checks of the guest's safetensors output.
//! - [`output`]: temp files and atomic publication; [`sink`]: the converter's
//!   output, written and hashed on its own thread.
//! - [`guest`]: the embedded converter, as wasm (what receipts name) and
//!   compiled ahead of time (what runs).
//! - [`receipt`]: the statement for a conversion, signed, staged and
//!   published after the outputs it covers.
//! - [`trust`]: the trust core, separable from the sandbox: keys, DSSE,
//!   the typed statement, verification.
//! - `model_dir`: model directories (Hugging Face layouts, shards, reruns).
//! - `served`: a directory as it will be served (what `verify DIR` covers).
//! - `gate`: `decant verify`, the promotion gate (inputs, `--source DIR`,
//!   `--reproduce`), and the verification summary it signs (`--vsa`).
//! - `bom`: CycloneDX ML-BOMs of a converted directory or attested bundle.
//! - `uri`: `file:` URIs for local files named in attestations.
// No unsafe code but one function: loading the converter compiled ahead
// of time (`sandbox::load_compiled_converter`, with its SAFETY argument).
#![deny(unsafe_code)]

pub(crate) mod batch;
pub(crate) mod bom;
pub mod bundle;
pub mod cli;
pub mod convert;
pub mod error;
pub(crate) mod gate;
pub mod guest;
pub(crate) mod model_dir;
pub(crate) mod open;
pub mod output;
pub mod policy;
pub(crate) mod progress;
pub mod receipt;
pub(crate) mod render;
pub mod sandbox;
pub(crate) mod served;
pub mod sink;
pub(crate) mod source_tree;
pub mod trust;
pub(crate) mod uri;
pub mod validate;
