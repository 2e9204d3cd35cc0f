//! A whole checkpoint file (seeded with legacy-format checkpoints): `convert`
//! and `inspect`, with the output checked by the host's validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    decant_fuzz::check_convert(data);
});
