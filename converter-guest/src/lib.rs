//! decant's converter guest: reads a pickle-based PyTorch checkpoint and
//! writes safetensors, running inside a wasmtime sandbox.
//!
//! - [`pickle`]: the restricted pickle VM (allowlisted globals only).
//! - [`torch`]: the zip and legacy containers, and the tensor plan.
//! - [`safetensors`]: the streaming writer.
//! - [`scan`]: `decant audit`'s file scan (format, pickle globals, headers).
//! - `ffi` (wasm only): the glue to the host's `decant` imports.
//!
//! The same code builds natively, so every reader is unit-tested and fuzzed
//! outside the sandbox against byte slices.
//!
//! `unsafe` is denied crate-wide by the workspace lints, on every target; the
//! FFI module alone allows it, for its calls to the host imports.

pub mod dtype;
pub mod error;
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod ffi;
pub mod pickle;
pub mod safetensors;
pub mod scan;
pub mod source;
pub mod torch;

use decant_abi::{Outcome, Report, TensorSummary};
use error::Result;
use source::Source;

/// Converts `src`, streaming safetensors into `sink`.
pub fn convert(src: &dyn Source, sink: &mut dyn safetensors::Sink) -> Outcome {
    outcome(run(src, Some(sink)))
}

/// Describes `src` without writing anything; the report lists the tensors.
pub fn inspect(src: &dyn Source) -> Outcome {
    outcome(run(src, None))
}

/// Says what `src` is by its content alone (`decant audit`); never fails:
/// a damaged or unknown file is described as such.
pub fn audit(src: &dyn Source) -> decant_abi::FileScan {
    scan::audit(src)
}

fn outcome(r: Result<Report>) -> Outcome {
    match r {
        Ok(report) => Outcome::Done(report),
        Err(refusal) => Outcome::Refused(refusal),
    }
}

fn run(src: &dyn Source, sink: Option<&mut dyn safetensors::Sink>) -> Result<Report> {
    let parsed = torch::parse(src)?;
    let plan = torch::plan::plan(&parsed)?;
    let (output_bytes, tensor_list) = match sink {
        Some(sink) => (safetensors::write(src, &parsed, &plan, sink)?, Vec::new()),
        None => {
            // Inspect reads no tensor data, but a corrupt record must not
            // pass for a valid checkpoint.
            safetensors::verify_records(src, &parsed, &Default::default())?;
            (
                0,
                plan.tensors
                    .iter()
                    .map(|e| TensorSummary {
                        name: e.name.clone(),
                        dtype: e.tensor.dtype.safetensors_name().into(),
                        shape: e.tensor.shape.clone(),
                        strided: !e.tensor.is_contiguous(),
                    })
                    .collect(),
            )
        }
    };
    Ok(Report {
        format: parsed.format.into(),
        pickle_protocol: parsed.protocol,
        byteorder: if parsed.big_endian { "big" } else { "little" }.into(),
        tensors: plan.tensors.len() as u64,
        output_bytes,
        dropped: plan.dropped,
        dropped_total: plan.dropped_total,
        ignored: plan.ignored,
        aliases: plan.aliases,
        globals: parsed.machine.globals.iter().cloned().collect(),
        tensor_list,
    })
}
