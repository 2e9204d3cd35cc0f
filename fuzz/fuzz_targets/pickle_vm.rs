//! A data.pkl: the restricted pickle VM, the plan, the header the guest would
//! write, and a full conversion of the pickle wrapped into a valid torch zip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    decant_fuzz::fuzz_pickle(data);
});
