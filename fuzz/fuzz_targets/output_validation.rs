//! A safetensors file as the guest might write it: the host's validation
//! (`decant::validate::header_bytes`, reached as `safetensors_file` reaches it)
//! must never panic, and whatever it accepts the reference `safetensors`
//! reader must accept too, with the same tensor count.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(summary)) = decant_fuzz::validate_file(data) {
        let st = safetensors::SafeTensors::deserialize(data)
            .unwrap_or_else(|e| panic!("host validation accepts what safetensors rejects: {e}"));
        assert_eq!(st.len(), summary.tensors);
        assert_eq!(summary.header_len + 8 <= data.len() as u64, true);
    }
});
