//! Element types: torch's storage classes and dtypes mapped to safetensors.
//!
//! The table follows `torch/storage.py::_dtype_to_storage_type_map` and
//! safetensors' `Dtype`. Types with no safetensors equivalent (complex,
//! quantized, bit-packed) are recognised by name so the refusal can say what
//! was found instead of "unknown global".

/// A dtype decant can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    F8E8M0,
    F8E4M3Fnuz,
    F8E5M2Fnuz,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        use DType::*;
        match self {
            Bool | U8 | I8 | F8E5M2 | F8E4M3 | F8E8M0 | F8E4M3Fnuz | F8E5M2Fnuz => 1,
            I16 | U16 | F16 | BF16 => 2,
            I32 | U32 | F32 => 4,
            F64 | I64 | U64 => 8,
        }
    }

    /// The safetensors name.
    /// torch's `dtype.is_floating_point` (float8 formats included): only
    /// such tensors may be saved with `requires_grad=True`.
    pub fn is_floating_point(self) -> bool {
        use DType::*;
        matches!(
            self,
            F8E5M2 | F8E4M3 | F8E8M0 | F8E4M3Fnuz | F8E5M2Fnuz | F16 | BF16 | F32 | F64
        )
    }

    pub fn safetensors_name(self) -> &'static str {
        use DType::*;
        match self {
            Bool => "BOOL",
            U8 => "U8",
            I8 => "I8",
            F8E5M2 => "F8_E5M2",
            F8E4M3 => "F8_E4M3",
            F8E8M0 => "F8_E8M0",
            F8E4M3Fnuz => "F8_E4M3FNUZ",
            F8E5M2Fnuz => "F8_E5M2FNUZ",
            I16 => "I16",
            U16 => "U16",
            F16 => "F16",
            BF16 => "BF16",
            I32 => "I32",
            U32 => "U32",
            F32 => "F32",
            F64 => "F64",
            I64 => "I64",
            U64 => "U64",
        }
    }

    /// Position in safetensors' `Dtype` enum (0.8.0), which orders tensors in
    /// the file: descending rank, then name.
    pub fn safetensors_rank(self) -> u8 {
        use DType::*;
        match self {
            Bool => 0,
            // 1..=3 are F4, F6_E2M3, F6_E3M2: no torch storage produces them.
            U8 => 4,
            I8 => 5,
            F8E5M2 => 6,
            F8E4M3 => 7,
            F8E8M0 => 8,
            F8E4M3Fnuz => 9,
            F8E5M2Fnuz => 10,
            I16 => 11,
            U16 => 12,
            F16 => 13,
            BF16 => 14,
            I32 => 15,
            U32 => 16,
            F32 => 17,
            // 18 is C64 (complex, refused).
            F64 => 19,
            I64 => 20,
            U64 => 21,
        }
    }
}

/// What a torch name denotes as an element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    Known(DType),
    /// Recognised, but with no safetensors layout; the string names it.
    Unsupported(&'static str),
}

/// `torch.<Name>Storage` classes, as written in persistent ids.
pub fn storage_class(name: &str) -> Option<Element> {
    use DType::*;
    use Element::*;
    Some(match name {
        "DoubleStorage" => Known(F64),
        "FloatStorage" => Known(F32),
        "HalfStorage" => Known(F16),
        "BFloat16Storage" => Known(BF16),
        "LongStorage" => Known(I64),
        "IntStorage" => Known(I32),
        "ShortStorage" => Known(I16),
        "CharStorage" => Known(I8),
        "ByteStorage" => Known(U8),
        "BoolStorage" => Known(Bool),
        // Untyped storages count bytes; the tensor's dtype comes from
        // `_rebuild_tensor_v3`.
        "UntypedStorage" => Known(U8),
        "ComplexFloatStorage" => Unsupported("complex64"),
        "ComplexDoubleStorage" => Unsupported("complex128"),
        "QInt8Storage" | "QInt32Storage" | "QUInt8Storage" | "QUInt4x2Storage"
        | "QUInt2x4Storage" => Unsupported("quantized"),
        _ => return None,
    })
}

/// `torch.<dtype>` names (`str(dtype)` without the `torch.` prefix).
pub fn dtype_name(name: &str) -> Option<Element> {
    use DType::*;
    use Element::*;
    Some(match name {
        "float64" => Known(F64),
        "float32" => Known(F32),
        "float16" => Known(F16),
        "bfloat16" => Known(BF16),
        "int64" => Known(I64),
        "int32" => Known(I32),
        "int16" => Known(I16),
        "int8" => Known(I8),
        "uint8" => Known(U8),
        "bool" => Known(Bool),
        "uint16" => Known(U16),
        "uint32" => Known(U32),
        "uint64" => Known(U64),
        "float8_e4m3fn" => Known(F8E4M3),
        "float8_e5m2" => Known(F8E5M2),
        "float8_e4m3fnuz" => Known(F8E4M3Fnuz),
        "float8_e5m2fnuz" => Known(F8E5M2Fnuz),
        "float8_e8m0fnu" => Known(F8E8M0),
        "complex32" | "bcomplex32" => Unsupported("complex32"),
        "complex64" => Unsupported("complex64"),
        "complex128" => Unsupported("complex128"),
        "float4_e2m1fn_x2" => Unsupported("float4_e2m1fn_x2"),
        "bits8" | "bits16" | "bits1x8" | "bits2x4" | "bits4x2" => Unsupported("bits"),
        "qint8" | "qint32" | "quint8" | "quint4x2" | "quint2x4" => Unsupported("quantized"),
        "uint1" | "uint2" | "uint3" | "uint4" | "uint5" | "uint6" | "uint7" | "int1" | "int2"
        | "int3" | "int4" | "int5" | "int6" | "int7" => Unsupported("sub-byte integer"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_safetensors_dtype_order() {
        // The output's tensor order depends on this; safetensors sorts by the
        // enum's declaration order, which is roughly alignment.
        let all = [
            DType::Bool,
            DType::U8,
            DType::I8,
            DType::F8E5M2,
            DType::F8E4M3,
            DType::F8E8M0,
            DType::F8E4M3Fnuz,
            DType::F8E5M2Fnuz,
            DType::I16,
            DType::U16,
            DType::F16,
            DType::BF16,
            DType::I32,
            DType::U32,
            DType::F32,
            DType::F64,
            DType::I64,
            DType::U64,
        ];
        for w in all.windows(2) {
            assert!(w[0].safetensors_rank() < w[1].safetensors_rank());
        }
    }
}
