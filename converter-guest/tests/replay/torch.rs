//! Replays every checkpoint on which decant once read something other than
//! torch's weights-only loader (`fixtures/differential/`, written by hand and
//! by the differential harness in `fuzz/differential/`), and the checkpoints
//! of every era (`fixtures/eras/`: Python 2 / torch 0.3-0.4 files, the lpips
//! weights, protocol 0/1 streams), and real checkpoints shipped inside PyPI
//! packages (`fixtures/packages/`: unmodified, provenance and licences in its
//! README). Each manifest entry records what torch
//! 2.15 did with the file (its generator ran torch) and what decant must do:
//! convert to the reference bytes written from torch's reading, or refuse
//! with a given reason. No torch is needed here.
//!
//! The rule the manifests must obey is checked too: decant converts only
//! what torch loads, and every file torch loads that decant refuses carries
//! the documented reason (`decant_differs`).

use super::common::run;
use decant_abi::Outcome;
use serde_json::Value;

fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn manifest(family: &str) -> serde_json::Map<String, Value> {
    let path = fixtures_dir().join(family).join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    match serde_json::from_str(&text).unwrap() {
        Value::Object(m) => m,
        _ => panic!("{path:?} is not an object"),
    }
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixtures_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Substrings the refusal of `entry` must contain.
fn reasons(entry: &Value) -> Vec<String> {
    if let Some(r) = entry.get("reason").and_then(Value::as_str) {
        return vec![r.to_string()];
    }
    // A dangerous global: named as written and, where CPython's Python 2
    // mapping changes it, as what Python 3 would import.
    let g = &entry["global"];
    let written = g["written"].as_str().expect("global.written");
    let python3 = g["python3"].as_str().expect("global.python3");
    let mut out = vec![format!("global {written} at")];
    if python3 != written {
        out.push(format!("(Python 3 loads it as {python3})"));
    }
    out
}

/// Returns the names of the cases that failed, with why.
fn replay(family: &str) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let m = manifest(family);
    for (name, entry) in &m {
        let torch_loads = entry["torch"].as_str().unwrap().starts_with("loads");
        let expect = entry["expect"].as_str().unwrap();
        let (outcome, out) = run(&read(entry["source"].as_str().unwrap()));
        match (expect, outcome) {
            ("convert", Outcome::Done(_)) => {
                assert!(
                    torch_loads,
                    "{family}/{name}: decant may only convert what torch loads"
                );
                let reference = read(entry["reference"].as_str().unwrap());
                if out != reference {
                    failures.push(format!("{name}: output differs from torch's reference"));
                }
            }
            ("refuse", Outcome::Refused(r)) => {
                assert!(
                    !torch_loads || entry.get("decant_differs").is_some(),
                    "{family}/{name}: torch loads it; the manifest must say why decant refuses"
                );
                for needle in reasons(entry) {
                    if !r.message.contains(&needle) {
                        failures.push(format!("{name}: {:?} lacks {needle:?}", r.message));
                    }
                }
            }
            (_, Outcome::Done(_)) => failures.push(format!("{name}: converted, must refuse")),
            (_, Outcome::Refused(r)) => {
                failures.push(format!("{name}: refused ({}), must convert", r.message))
            }
        }
    }
    (m.len(), failures)
}

/// Divergences between decant and torch found so far (tensor state applied
/// with setattr, the legacy key namespace, case-insensitive records, byte
/// order units, requires_grad, allowlist spellings, OrderedDict forms, text
/// numbers, ...): each converts to torch's reading or is refused.
#[test]
fn every_divergence_ever_found_reads_as_torch_or_is_refused() {
    let (n, failures) = replay("differential");
    assert!(n >= 24, "only {n} differential fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Python 2-era torch 0.3/0.4 checkpoints (the lpips weights among them),
/// protocol 0/1 streams, and dangerous globals under their Python 2 names.
#[test]
fn checkpoints_of_every_era_read_as_torch_or_are_refused() {
    let (n, failures) = replay("eras");
    assert!(n >= 40, "only {n} era fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Real checkpoints as PyPI wheels ship them (facenet-pytorch's MTCNN
/// weights with permuted conv and transposed Linear views, DISTS-pytorch's
/// plain-dict weights, BeatNet's pickled nn.Module that must be refused).
#[test]
fn real_checkpoints_from_pypi_packages_read_as_torch_or_are_refused() {
    let (n, failures) = replay("packages");
    assert!(n >= 4, "only {n} package fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
