//! A model bundle as it will be served, judged whole: `decant audit`
//! ([`audit`]: every file classified, with findings and severities) and
//! `decant attest` ([`attest`]: a signed manifest of the bundle, which
//! `decant verify DIR --receipt MANIFEST` checks with
//! [`crate::trust::manifest`]).
//!
//! Model files' bytes (pickles, safetensors and GGUF headers) are read only
//! by the guest, in the sandbox; the host reads configs, Modelfiles and
//! receipts itself, each through a cap.

pub mod attest;
pub mod audit;
mod configs;
pub mod findings;
