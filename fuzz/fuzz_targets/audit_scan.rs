//! Any file through `converter_guest::audit` (what `decant audit` runs on
//! every file of a bundle): it never panics, and its scan serialises to a
//! `finish` payload the host accepts (under `MAX_OUTCOME_BYTES`, and
//! parsed back to the same value).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scan = converter_guest::audit(&converter_guest::source::Chunked(data));
    let json = serde_json::to_vec(&scan).expect("a scan serialises");
    assert!(json.len() <= decant_abi::MAX_OUTCOME_BYTES as usize);
    let back: decant_abi::FileScan = serde_json::from_slice(&json).expect("and parses back");
    assert_eq!(back, scan);
});
