//! Attacker-crafted checkpoints (fixtures/hostile/, one line each in its
//! README) through the real binary: every one is refused with exit 1 and a
//! one-line reason naming the global, the container defect or the limit,
//! and leaves no output, no receipt and no temp file. A few files that look
//! like attacks are harmless by construction (structures decant never
//! expands, marked `accepted` in the manifest): they must convert, quickly.

use crate::common::{convert_keyed, decant, fixture, keygen, only_files, read_json};
use std::time::{Duration, Instant};

/// Generous bound that only guards against "never stops": the policy's own
/// limits are what stop resource attacks.
const NEVER_HANGS: Duration = Duration::from_secs(120);

fn hostile_manifest() -> serde_json::Value {
    read_json(&fixture("hostile/manifest.json"))
}

#[test]
fn every_hostile_fixture_is_refused_cleanly() {
    let manifest = hostile_manifest();
    let entries = manifest.as_object().unwrap();
    assert!(
        entries.len() >= 60,
        "only {} hostile fixtures",
        entries.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path());
    let mut failures = Vec::new();
    for (name, entry) in entries {
        let src = fixture(&format!("hostile/{}", entry["file"].as_str().unwrap()));
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out.safetensors");
        let started = Instant::now();
        let run = convert_keyed(&src, &out, &key, &[]);
        let elapsed = started.elapsed();
        let Some(expect) = entry["expect"].as_str() else {
            assert!(
                entry["accepted"].is_string(),
                "{name}: neither expect nor accepted"
            );
            let converted = run.code == 0
                && only_files(work.path()) == ["out.safetensors", "out.safetensors.intoto.jsonl"]
                && elapsed < NEVER_HANGS;
            if !converted {
                failures.push(format!(
                    "{name} (accepted): exit {}, {elapsed:?}: {}",
                    run.code, run.stderr
                ));
            }
            continue;
        };
        let lines: Vec<&str> = run.stderr.lines().collect();
        let ok = run.code == 1
            && lines.len() == 2
            && lines[0].starts_with("decant: refused")
            && lines[1].starts_with("hint: ")
            && lines[0].contains(expect)
            && only_files(work.path()).is_empty()
            && elapsed < NEVER_HANGS;
        if !ok {
            failures.push(format!(
                "{name}: exit {}, {elapsed:?}, left {:?}, expected {expect:?}, got {:?}",
                run.code,
                only_files(work.path()),
                run.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} not refused cleanly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `inspect` runs the same parser and checks the same records, so it
/// refuses every file whose defect lies in the globals, the container or the
/// stream. Some resource attacks bite only while writing (output size,
/// fuel spent copying); inspect may list those, but must not fail
/// otherwise or hang.
#[test]
fn inspect_refuses_what_it_reads() {
    let manifest = hostile_manifest();
    let mut failures = Vec::new();
    for (name, entry) in manifest.as_object().unwrap() {
        let src = fixture(&format!("hostile/{}", entry["file"].as_str().unwrap()));
        let started = Instant::now();
        let run = decant(&["inspect", src.to_str().unwrap()]);
        let resource = entry["category"] == "resource";
        let ok = if resource {
            run.code == 0 || run.code == 1
        } else {
            run.code == 1
        };
        if !ok || started.elapsed() >= NEVER_HANGS {
            failures.push(format!("{name}: inspect exit {}: {}", run.code, run.stderr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
