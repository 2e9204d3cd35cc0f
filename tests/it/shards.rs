//! Issue 14 part 5: `decant plan`, `convert --shard I/N` run as separate
//! processes, and `verify` with the set of shard receipts.

use crate::common::{
    copy_tree, decant, failed_checks, files_under, fixture, keygen, sha256_file, Run,
};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: [&str; 3] = ["repos/gpt2_sharded", "repos/diffusers_nested", "dirs/mixed"];

/// Three model directories (a sharded checkpoint with its index, a
/// diffusers pipeline with subfolders, loose checkpoints) under `root`.
fn batch(root: &Path) -> Vec<PathBuf> {
    SOURCES
        .iter()
        .map(|rel| {
            let to = root.join(Path::new(rel).file_name().unwrap());
            copy_tree(&fixture(rel), &to);
            to
        })
        .collect()
}

fn strs(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

fn plan_json(sources: &[PathBuf], shards: &str) -> Value {
    let mut args = vec!["plan"];
    args.extend(strs(sources));
    args.extend(["--shards", shards, "--json"]);
    let run = decant(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

/// Runs every shard of N at once, as separate processes, each into its own
/// output directory (as separate machines would).
fn run_shards(sources: &[PathBuf], n: u32, out: &Path, key: &str) -> Vec<PathBuf> {
    let children: Vec<_> = (1..=n)
        .map(|i| {
            let dir = out.join(format!("machine{i}"));
            let child = Command::new(env!("CARGO_BIN_EXE_decant"))
                .arg("convert")
                .args(strs(sources))
                .args(["--shard", &format!("{i}/{n}"), "-o"])
                .arg(&dir)
                .args(["--key", key, "--jobs", "1", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (dir, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(dir, child)| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir
        })
        .collect()
}

/// The machines' outputs copied into one tree, as a CI job that downloads
/// every shard's artifact does.
fn gather(machines: &[PathBuf], into: &Path) {
    for m in machines {
        if m.exists() {
            copy_tree(m, into);
        }
    }
}

fn shard_receipts(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("decant.shard-"))
        .map(|n| dir.join(n).to_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn verify_set(dir: &Path, receipts: &[String], public: &str) -> (Run, Value) {
    let mut args = vec!["verify", dir.to_str().unwrap(), "--receipt"];
    args.extend(receipts.iter().map(String::as_str));
    args.extend(["--trusted-key", public, "--json"]);
    let run = decant(&args);
    let v = run.json();
    (run, v)
}

/// The acceptance test: N shard processes, gathered, give exactly the
/// files one machine makes (byte for byte; only the receipts differ), and
/// the gathered directories verify with their shard receipts.
#[test]
fn shards_run_as_processes_add_up_to_a_one_machine_run_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let sources = batch(&tmp.path().join("src"));
    let machines = run_shards(&sources, 3, &tmp.path().join("out"), &key);
    let all = tmp.path().join("gathered");
    gather(&machines, &all);

    let plan = plan_json(&sources, "3");
    for src in &sources {
        let name = src.file_name().unwrap();
        let one = tmp.path().join("one").join(name);
        let run = crate::common::convert_keyed(src, &one, &key, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let gathered = all.join(name);
        let without_receipts = |dir: &Path| -> Vec<String> {
            files_under(dir)
                .into_iter()
                .filter(|f| !f.starts_with("decant.") || !f.ends_with(".intoto.jsonl"))
                .collect()
        };
        let files = without_receipts(&one);
        assert_eq!(files, without_receipts(&gathered), "{name:?}");
        for f in &files {
            assert_eq!(
                fs::read(one.join(f)).unwrap(),
                fs::read(gathered.join(f)).unwrap(),
                "{name:?}/{f} differs from the one-machine run"
            );
        }
        let receipts = shard_receipts(&gathered);
        assert!(!receipts.is_empty());
        let (run, v) = verify_set(&gathered, &receipts, &public);
        assert_eq!(run.code, 0, "{name:?}: {}", run.stdout);
        assert_eq!(v["status"], "verified");
        // Every receipt records the plan `decant plan` printed.
        for r in &receipts {
            let s = crate::common::receipt_statement(Path::new(r));
            let shard = &s["predicate"]["buildDefinition"]["externalParameters"]["shard"];
            assert_eq!(shard["plan"], plan["plan"], "{r}");
            assert_eq!(shard["count"], 3);
        }
    }
}

/// Every unit of every source is in exactly one shard, shards are
/// balanced by bytes (largest first onto the lightest), and the plan does
/// not depend on where the sources are mounted or their order.
#[test]
fn plan_puts_every_file_in_exactly_one_shard_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = batch(&tmp.path().join("a"));
    let plan = plan_json(&sources, "3");
    let mut seen = std::collections::BTreeSet::new();
    let mut loads = Vec::new();
    for shard in plan["shards"].as_array().unwrap() {
        let mut load = 0;
        for unit in shard["units"].as_array().unwrap() {
            for f in unit["files"].as_array().unwrap() {
                let key = format!(
                    "{}/{}",
                    unit["source"].as_str().unwrap(),
                    f.as_str().unwrap()
                );
                assert!(seen.insert(key.clone()), "{key} is in two shards");
            }
            load += unit["bytes"].as_u64().unwrap();
        }
        assert_eq!(shard["bytes"], load);
        loads.push(load);
    }
    let mut expected = std::collections::BTreeSet::new();
    for src in &sources {
        let name = src.file_name().unwrap().to_str().unwrap();
        for f in files_under(src) {
            expected.insert(format!("{name}/{f}"));
        }
    }
    assert_eq!(seen, expected, "the plan does not cover every file once");
    // The largest unit is the gpt2 index with its three checkpoints; no
    // shard is heavier than the largest unit plus the lightest shard.
    let (max, min) = (loads.iter().max().unwrap(), loads.iter().min().unwrap());
    let biggest = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["units"].as_array().unwrap())
        .map(|u| u["bytes"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(max - min <= biggest, "unbalanced: {loads:?}");

    // Elsewhere, listed in another order: the same plan.
    let moved = batch(&tmp.path().join("b/deeper"));
    let reversed: Vec<PathBuf> = moved.into_iter().rev().collect();
    let again = plan_json(&reversed, "3");
    assert_eq!(again["plan"], plan["plan"]);
    assert_eq!(again["shards"], plan["shards"]);
    assert_ne!(plan_json(&sources, "2")["plan"], plan["plan"]);
}

/// A shard whose outputs were never gathered (its job failed, or its
/// artifact was not downloaded) makes the directory fail, though every
/// file present is vouched for: the receipts say which shards had work.
#[test]
fn a_missing_shard_fails_even_when_what_is_there_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let sources = batch(&tmp.path().join("src"));
    let machines = run_shards(&sources, 3, &tmp.path().join("out"), &key);
    let name = "gpt2_sharded";
    let expected = shard_receipts(&{
        let all = tmp.path().join("all");
        gather(&machines, &all);
        all.join(name)
    })
    .len();
    assert!(expected >= 2, "the fixture must be split over shards");
    // Gather all machines but the first that has work in gpt2_sharded.
    let skipped = machines.iter().position(|m| m.join(name).exists()).unwrap();
    let partial = tmp.path().join("partial");
    let kept: Vec<PathBuf> = machines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skipped)
        .map(|(_, m)| m.clone())
        .collect();
    gather(&kept, &partial);
    let dir = partial.join(name);
    let (run, v) = verify_set(&dir, &shard_receipts(&dir), &public);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(failed_checks(&v), ["shards"], "{v}");
    let detail = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "shards")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains(&format!("missing {}/3", skipped + 1)),
        "{detail}"
    );
    // One shard receipt alone, given as the only --receipt, is checked as a
    // set too: it cannot vouch for the whole directory.
    let one = shard_receipts(&dir);
    let (run, v) = verify_set(&dir, &one[..1], &public);
    assert_eq!(run.code, 1);
    assert!(failed_checks(&v).contains(&"shards".to_string()), "{v}");
}

/// Receipts of two different plans (another shard count) never add up,
/// and a file planted among the gathered outputs is refused.
#[test]
fn receipts_of_different_plans_and_planted_files_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let sources = batch(&tmp.path().join("src"));
    let three = run_shards(&sources, 3, &tmp.path().join("three"), &key);
    let two = run_shards(&sources, 2, &tmp.path().join("two"), &key);
    let mixed = tmp.path().join("mixed");
    gather(&three, &mixed);
    gather(&two, &mixed);
    let dir = mixed.join("gpt2_sharded");
    let (run, v) = verify_set(&dir, &shard_receipts(&dir), &public);
    assert_eq!(run.code, 1);
    assert!(failed_checks(&v).contains(&"shards".to_string()), "{v}");

    let good = tmp.path().join("good");
    gather(&three, &good);
    let dir = good.join("diffusers_nested");
    fs::write(dir.join("unet").join("pytorch_model.bin"), b"planted").unwrap();
    let (run, v) = verify_set(&dir, &shard_receipts(&dir), &public);
    assert_eq!(run.code, 1);
    assert_eq!(failed_checks(&v), ["subject"], "{v}");
    assert!(v.to_string().contains("unet/pytorch_model.bin"), "{v}");
}

/// Usage errors: each says what and what to do, exit 2, nothing written.
#[test]
fn shard_usage_errors_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = batch(&tmp.path().join("src"));
    let src = sources[0].to_str().unwrap();
    let out = tmp.path().join("out");
    let inside = format!("{src}/converted");
    let tied = fixture("convert/tied.pt");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "convert",
                src,
                "--shard",
                "0/3",
                "-o",
                out.to_str().unwrap(),
            ],
            "numbered from 1",
        ),
        (
            vec![
                "convert",
                src,
                "--shard",
                "4/3",
                "-o",
                out.to_str().unwrap(),
            ],
            "is not I/N",
        ),
        (
            vec![
                "convert",
                src,
                sources[1].to_str().unwrap(),
                "--shard",
                "1/2",
            ],
            "several sources need an output directory",
        ),
        (
            vec![
                "convert",
                src,
                sources[1].to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            "convert takes one SRC",
        ),
        (
            vec!["convert", src, "--shard", "1/2", "-o", &inside],
            "is inside the source",
        ),
        (
            vec![
                "convert",
                src,
                "--shard",
                "1/2",
                "--cyclonedx",
                "/tmp/never.cdx.json",
            ],
            "--cyclonedx does not apply with --shard",
        ),
        (
            vec![
                "convert",
                src,
                "--shard",
                "1/2",
                "--key",
                "/tmp/never.key",
                "--oms-key",
                "/tmp/never.key",
            ],
            "--oms-key does not apply with --shard",
        ),
        (vec!["plan", src, "--shards", "0"], "--shards"),
        (
            vec!["plan", tied.to_str().unwrap(), "--shards", "2"],
            "is not a directory",
        ),
    ];
    for (args, want) in cases {
        let run = decant(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{args:?}: {}", run.stderr);
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    // Two sources with one name would be one entry of the plan.
    let twin = tmp.path().join("other").join("gpt2_sharded");
    copy_tree(&sources[0], &twin);
    let run = decant(&["plan", src, twin.to_str().unwrap(), "--shards", "2"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("are both named gpt2_sharded"),
        "{}",
        run.stderr
    );
    let run = decant(&["plan", src, src, "--shards", "2"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is given twice"), "{}", run.stderr);
}

/// A verification summary of a gathered directory names every shard
/// receipt it checked, by digest, and every served file as a subject.
#[test]
fn a_vsa_of_a_shard_set_names_every_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let sources = batch(&tmp.path().join("src"));
    let machines = run_shards(&sources, 3, &tmp.path().join("out"), &key);
    let all = tmp.path().join("gathered");
    gather(&machines, &all);
    let dir = all.join("diffusers_nested");
    let receipts = shard_receipts(&dir);
    assert!(receipts.len() >= 2, "{receipts:?}");
    let vsa = tmp.path().join("diffusers.vsa.jsonl");
    let mut args = vec!["verify", dir.to_str().unwrap(), "--receipt"];
    args.extend(receipts.iter().map(String::as_str));
    args.extend([
        "--trusted-key",
        &public,
        "--vsa",
        vsa.to_str().unwrap(),
        "--key",
        &key,
    ]);
    let run = decant(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let text = fs::read_to_string(&vsa).unwrap();
    let env: decant::trust::dsse::Envelope = serde_json::from_str(text.trim_end()).unwrap();
    let pubkey = decant::trust::keys::load_public_key(Path::new(&public)).unwrap();
    let verified = decant::trust::dsse::verify(&env, &[pubkey]).unwrap();
    let st: Value = serde_json::from_slice(&verified.payload).unwrap();
    assert_eq!(st["predicate"]["verificationResult"], "PASSED");
    let mut inputs: Vec<String> = st["predicate"]["inputAttestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["digest"]["sha256"].as_str().unwrap().to_string())
        .collect();
    inputs.sort();
    let mut want: Vec<String> = receipts.iter().map(|r| sha256_file(Path::new(r))).collect();
    want.sort();
    assert_eq!(inputs, want);
    let subjects = st["subject"].as_array().unwrap().len();
    let served = files_under(&dir)
        .iter()
        .filter(|f| !f.starts_with("decant.shard-"))
        .count();
    assert_eq!(subjects, served);
}

/// Review of issue 14: receipts of two directories of one plan (same plan,
/// same shard list) must not add up to a directory no run produced.
#[test]
fn receipts_of_two_directories_of_one_plan_do_not_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let src = tmp.path().join("src");
    for name in ["A", "B"] {
        copy_tree(&fixture("dirs/mixed"), &src.join(name));
    }
    let sources = vec![src.join("A"), src.join("B")];
    let machines = run_shards(&sources, 2, &tmp.path().join("out"), &key);
    // A's directory assembled from one machine's part of B and the other
    // machine's part of A (the sources are identical but for their names).
    let (mb, ma) = [(0, 1), (1, 0)]
        .into_iter()
        .find(|&(b, a)| machines[b].join("B").exists() && machines[a].join("A").exists())
        .expect("both machines have work in both directories");
    let stitched = tmp.path().join("stitched");
    copy_tree(&machines[mb].join("B"), &stitched);
    copy_tree(&machines[ma].join("A"), &stitched);
    let receipts = shard_receipts(&stitched);
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    let (run, v) = verify_set(&stitched, &receipts, &public);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(failed_checks(&v).contains(&"shards".to_string()), "{v}");
    assert!(
        v.to_string().contains("receipts of different directories"),
        "{v}"
    );
}

/// Review of issue 14: two indexes over the same checkpoints (an index and
/// a variant's) are one unit of work, so the checkpoints are converted
/// once and the gathered directory verifies.
#[test]
fn indexes_sharing_checkpoints_are_one_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let dir = tmp.path().join("src").join("S");
    copy_tree(&fixture("dirs/sharded"), &dir);
    fs::copy(
        dir.join("pytorch_model.bin.index.json"),
        dir.join("pytorch_model.bin.index.fp16.json"),
    )
    .unwrap();
    let plan = plan_json(std::slice::from_ref(&dir), "2");
    let units: Vec<&Value> = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["units"].as_array().unwrap())
        .filter(|u| u["kind"] == "sharded checkpoint")
        .collect();
    assert_eq!(units.len(), 1, "{plan}");
    let machines = run_shards(std::slice::from_ref(&dir), 2, &tmp.path().join("out"), &key);
    let all = tmp.path().join("all");
    gather(&machines, &all);
    let (run, _) = verify_set(&all, &shard_receipts(&all), &public);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

/// Review of issue 14: `decant audit` checks shard receipts as a set, so a
/// gathered directory with a shard missing is a high finding (and a bundle
/// attested from it fails `verify --fail-on high`), while a complete set is
/// proven as usual.
#[test]
fn audit_finds_an_incomplete_shard_set() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let sources = batch(&tmp.path().join("src"));
    let machines = run_shards(&sources, 3, &tmp.path().join("out"), &key);
    let all = tmp.path().join("all");
    gather(&machines, &all);
    let audit = |dir: &Path| -> (i32, Value) {
        let run = decant(&[
            "audit",
            dir.to_str().unwrap(),
            "--trusted-key",
            &public,
            "--json",
        ]);
        (run.code, run.json())
    };
    let kinds = |v: &Value| -> Vec<String> {
        v["audit"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = audit(&all.join("gpt2_sharded"));
    assert!(
        !kinds(&v).contains(&"shard_set_incomplete".to_string()),
        "{v}"
    );

    let skipped = machines
        .iter()
        .position(|m| m.join("gpt2_sharded").exists())
        .unwrap();
    let partial = tmp.path().join("partial");
    let kept: Vec<PathBuf> = machines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skipped)
        .map(|(_, m)| m.clone())
        .collect();
    gather(&kept, &partial);
    let (code, v) = audit(&partial.join("gpt2_sharded"));
    assert_eq!(code, 1, "{v}");
    assert!(
        kinds(&v).contains(&"shard_set_incomplete".to_string()),
        "{v}"
    );
}
