//! The allowlist: the only pickle globals decant resolves, each mapped to a
//! behaviour implemented in the guest.
//!
//! Nothing here imports or calls Python; a name either maps to one of these
//! variants or the file is refused. The list is what `torch.save` writes for
//! state dicts (see torch's `_weights_only_unpickler._get_allowed_globals`),
//! minus everything that has no safetensors equivalent, which is recognised
//! only to be refused by name.

use crate::dtype::{self, DType, Element};
use crate::error::{unsupported, Refusal};

/// A resolved global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    /// `torch._utils._rebuild_tensor` (torch 0.4 era).
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor_v3` (untyped storage + explicit dtype).
    RebuildTensorV3,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`.
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2` (tensors carrying Python
    /// attributes).
    RebuildFromTypeV2,
    /// `torch.Tensor`, only as the type argument of `_rebuild_from_type_v2`.
    TensorClass,
    /// `torch.nn.parameter.Parameter`: the type argument of
    /// `_rebuild_from_type_v2`, or called as `Parameter(data[,
    /// requires_grad])` (how torch 0.4 pickled parameters).
    ParameterClass,
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch.Size`.
    TorchSize,
    /// `torch.device`.
    TorchDevice,
    /// `_codecs.encode`: how protocol 2 pickles `bytes`.
    CodecsEncode,
    /// `builtins.set`.
    Set,
    /// `builtins.bytearray`.
    Bytearray,
    /// `torch.<X>Storage` / `torch.UntypedStorage`.
    StorageClass { dtype: DType, untyped: bool },
    /// A `torch.<dtype>` value.
    Dtype(DType),
    /// A dtype that exists but cannot be a safetensors dtype; fine as a value,
    /// refused as a tensor's dtype.
    OtherDtype(&'static str),
}

impl Global {
    /// Type name of the global used as a value.
    pub fn value_type_name(self) -> &'static str {
        match self {
            Global::Dtype(_) | Global::OtherDtype(_) => "torch.dtype",
            Global::StorageClass { .. }
            | Global::TensorClass
            | Global::ParameterClass
            | Global::OrderedDict => "type",
            _ => "function",
        }
    }
}

/// Resolves `module.name`. `Ok(None)` means "not on the allowlist"; a known
/// but unconvertible name is refused here with a specific message.
///
/// Every name accepted here is a key of torch 2.15's
/// `_weights_only_unpickler._get_allowed_globals()` (after torch's Python 2
/// module mapping, which for allowlisted names only renames `__builtin__`):
/// a spelling torch's weights-only loader refuses (`torch.UntypedStorage`,
/// `torch.storage.FloatStorage`, `torch.float`, `builtins.frozenset`) is
/// refused here too, so decant never converts a file torch would not load.
pub fn resolve(module: &str, name: &str, at: &str) -> Result<Option<Global>, Refusal> {
    // Python 2 spellings, as torch's own loader maps them.
    let module = match module {
        "__builtin__" => "builtins",
        other => other,
    };
    let g = match (module, name) {
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") => Global::TensorClass,
        ("torch.nn.parameter", "Parameter") => Global::ParameterClass,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch", "Size") => Global::TorchSize,
        ("torch", "device") => Global::TorchDevice,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("builtins", "set") => Global::Set,
        ("builtins", "bytearray") => Global::Bytearray,
        ("torch._utils", f) if f.starts_with("_rebuild_") => {
            return Err(refuse_rebuild(f, at));
        }
        ("torch.serialization", "_get_layout") => {
            return Err(unsupported(
                format!("sparse tensor layout (torch.serialization._get_layout at {at})"),
                "sparse tensors have no safetensors layout; save them dense with .to_dense()",
            ))
        }
        // torch's keys: `torch.<X>Storage`, `torch.cuda.<X>Storage` (typed
        // classes only) and `torch.storage.UntypedStorage`.
        ("torch" | "torch.cuda", "UntypedStorage") => return Ok(None),
        ("torch.storage", n) if n != "UntypedStorage" => return Ok(None),
        ("torch" | "torch.cuda" | "torch.storage", n) if n.ends_with("Storage") => {
            let untyped = n == "UntypedStorage";
            match dtype::storage_class(n) {
                Some(Element::Known(dtype)) => Global::StorageClass { dtype, untyped },
                Some(Element::Unsupported(what)) => return Err(refuse_dtype(what, module, n, at)),
                None => return Ok(None),
            }
        }
        ("torch", n) => match dtype::dtype_name(n) {
            Some(Element::Known(d)) => Global::Dtype(d),
            Some(Element::Unsupported(what)) => Global::OtherDtype(what),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(g))
}

fn refuse_rebuild(function: &str, at: &str) -> Refusal {
    let what = match function {
        "_rebuild_qtensor" => "quantized tensor",
        "_rebuild_sparse_tensor" | "_rebuild_sparse_csr_tensor" => "sparse tensor",
        "_rebuild_nested_tensor" => "nested tensor",
        "_rebuild_meta_tensor_no_storage" => "meta tensor (no data)",
        "_rebuild_wrapper_subclass" => "tensor subclass",
        "_rebuild_device_tensor_from_numpy" | "_rebuild_device_tensor_from_cpu_tensor" => {
            "device tensor"
        }
        _ => "tensor kind",
    };
    unsupported(
        format!("{what} (torch._utils.{function} at {at}) has no safetensors equivalent"),
        "convert it to a dense tensor of a plain dtype in PyTorch before saving",
    )
}

/// Refusal for a storage class or tensor dtype that safetensors cannot hold.
pub fn refuse_dtype(what: &str, module: &str, name: &str, at: &str) -> Refusal {
    unsupported(
        format!("{what} tensor ({module}.{name} at {at}) has no safetensors dtype"),
        "decant converts real-valued dense tensors only; convert it (e.g. torch.view_as_real) before saving",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_running_names_are_not_resolved() {
        for (m, n) in [
            ("posix", "system"),
            ("os", "system"),
            ("builtins", "eval"),
            ("builtins", "getattr"),
            ("__builtin__", "exec"),
            ("torch", "load"),
            ("torch.serialization", "load"),
            ("torch.storage", "_load_from_bytes"),
            ("collections", "defaultdict"),
            // torch resolves this dotted spelling by joining strings; decant
            // matches module and name exactly.
            ("torch", "_utils._rebuild_tensor_v2"),
            ("mark", "mark"),
        ] {
            assert_eq!(resolve(m, n, "x").unwrap(), None, "{m}.{n}");
        }
    }

    #[test]
    fn unconvertible_tensors_are_refused_by_name() {
        let e = resolve("torch._utils", "_rebuild_qtensor", "byte 9").unwrap_err();
        assert!(e.message.starts_with("quantized tensor"), "{}", e.message);
        let e = resolve("torch", "ComplexFloatStorage", "byte 9").unwrap_err();
        assert!(e.message.starts_with("complex64 tensor"), "{}", e.message);
    }

    #[test]
    fn storage_location_module_is_ignored() {
        // Legacy CUDA checkpoints name torch.cuda.FloatStorage: bytes are bytes.
        assert_eq!(
            resolve("torch.cuda", "FloatStorage", "x").unwrap(),
            Some(Global::StorageClass {
                dtype: DType::F32,
                untyped: false
            })
        );
    }
}
