//! Model directories through the real binary: Hugging Face layouts, sharded
//! checkpoints, escape attempts, all-or-nothing failures, reruns, and the
//! directory receipt as a promotion gate.

use crate::common::{
    convert_keyed, convert_signed, copy_fixture_dir, decant, fixture, keygen, only_files,
    read_json, receipt_statement, verify_dir,
};
use std::fs;

fn dirs_manifest() -> serde_json::Value {
    read_json(&fixture("dirs/manifest.json"))
}

/// Every fixture directory with expected outputs converts to exactly them,
/// and the directory receipt verifies (and reproduces).
#[test]
fn model_directories_convert_to_their_references() {
    let m = dirs_manifest();
    let mut checked = 0;
    for (name, entry) in m.as_object().unwrap() {
        let Some(expected) = entry["expected"].as_str() else {
            continue;
        };
        let work = tempfile::tempdir().unwrap();
        let (key, public) = keygen(work.path());
        let out = work.path().join("out");
        let src = fixture(entry["source"].as_str().unwrap());
        let run = convert_signed(&src, &out, &key, &[]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let summary = run.json();
        // The manifest's "left_alone" files are what OUT gets copied
        // unchanged (issue 11: OUT is a complete repository).
        let copied: Vec<&str> = summary["directory"]["copied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let expected_copied: Vec<&str> = entry["left_alone"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .filter(|n| !n.ends_with('/'))
            .collect();
        assert_eq!(copied, expected_copied, "{name}");
        for f in &copied {
            assert_eq!(
                fs::read(out.join(f)).unwrap(),
                fs::read(src.join(f)).unwrap(),
                "{name}: {f} was not copied unchanged"
            );
        }
        let mut expected_files = only_files(&fixture(expected));
        expected_files.extend(copied.iter().map(|s| s.to_string()));
        expected_files.push("decant.intoto.jsonl".into());
        expected_files.sort();
        assert_eq!(only_files(&out), expected_files, "{name}");
        for f in only_files(&fixture(expected)) {
            assert!(
                fs::read(out.join(&f)).unwrap() == fs::read(fixture(expected).join(&f)).unwrap(),
                "{name}: {f} differs from the reference"
            );
        }
        let (code, failed) = verify_dir(
            &out,
            &public,
            &["--source", src.to_str().unwrap(), "--reproduce"],
        );
        assert_eq!((code, failed.len()), (0, 0), "{name}: {failed:?}");
        checked += 1;
    }
    assert!(checked >= 3);
}

/// Index entries naming `../x`, an absolute path or a subdirectory, shards
/// that are symlinks leading out, broken indexes and colliding outputs are
/// refused, and nothing is written.
#[test]
fn escape_attempts_and_broken_directories_are_refused() {
    let m = dirs_manifest();
    let mut checked = 0;
    for (name, entry) in m.as_object().unwrap() {
        if entry["refuse"] != true {
            continue;
        }
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let src = fixture(entry["source"].as_str().unwrap());
        let run = decant(&[
            "convert",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        run.assert_error_shape();
        assert!(run.stderr.contains("refused"), "{name}: {}", run.stderr);
        assert!(
            !out.exists() || only_files(&out).is_empty(),
            "{name} wrote {:?}",
            only_files(&out)
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked}");
}

#[test]
fn escape_messages_say_what_was_refused() {
    let cases = [
        ("dirs/escape_dotdot", "../outside.bin"),
        ("dirs/escape_absolute", "/etc/passwd"),
        ("dirs/escape_nested", "sub/model.bin"),
        ("dirs/escape_symlink", "symlink leading outside"),
    ];
    for (dir, needle) in cases {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let run = decant(&[
            "convert",
            fixture(dir).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains(needle), "{dir}: {}", run.stderr);
    }
}

/// One bad file fails the whole run: every failure is listed and no output
/// (not even the good ones) is published.
#[test]
fn one_failing_file_fails_the_run_with_every_failure_listed() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("model");
    fs::create_dir(&src).unwrap();
    fs::copy(fixture("convert/zip_p2.pt"), src.join("good.pt")).unwrap();
    fs::copy(fixture("convert/views.pt"), src.join("good2.pt")).unwrap();
    fs::copy(fixture("refuse/unknown_global.pt"), src.join("evil.bin")).unwrap();
    fs::copy(fixture("refuse/complex64.pt"), src.join("complex.pth")).unwrap();
    let out = work.path().join("out");
    let (key, _) = keygen(work.path());
    let run = convert_keyed(&src, &out, &key, &["--jobs", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    for needle in [
        "2 of 4",
        "evil.bin",
        "argparse.Namespace",
        "complex.pth",
        "complex64",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    // Nothing is left behind, not even the output directory the run made.
    assert!(!out.exists(), "{:?}", only_files(&out));
}

/// Parallelism changes nothing in the bytes: `--jobs 1` and `--jobs 2` on
/// three shards convert each on one core (hashing on the conversion's own
/// thread), `--jobs 8` lends each conversion a spare core (hashing on
/// threads of their own, issue 12).
#[test]
fn jobs_do_not_change_the_output() {
    let work = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for jobs in ["1", "2", "8"] {
        let out = work.path().join(format!("out{jobs}"));
        let run = decant(&[
            "convert",
            fixture("dirs/sharded").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--jobs",
            jobs,
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let files: Vec<(String, Vec<u8>)> = only_files(&out)
            .into_iter()
            .map(|f| (f.clone(), fs::read(out.join(&f)).unwrap()))
            .collect();
        outputs.push(files);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

/// A rerun reuses outputs the directory receipt already vouches for; an
/// output that was changed is not reused (and not overwritten without
/// --force).
#[test]
fn rerun_reuses_outputs_with_a_valid_receipt() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let out = work.path().join("out");
    let src = fixture("dirs/sharded");
    let convert = |extra: &[&str]| convert_signed(&src, &out, &key, extra);
    assert_eq!(convert(&[]).code, 0);
    let run = convert(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["directory"]["reused"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["directory"]["converted"].as_array().unwrap().len(), 0);
    assert_eq!(verify_dir(&out, &public, &[]).0, 0);

    // A changed output is not vouched for any more.
    let shard = out.join("model-00003-of-00003.safetensors");
    let mut bytes = fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&shard, &bytes).unwrap();
    let run = convert(&[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        fs::read(&shard).unwrap(),
        bytes,
        "overwritten without --force"
    );
    let run = convert(&["--force"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["directory"]["reused"].as_array().unwrap().len(), 2);
    assert_eq!(verify_dir(&out, &public, &[]).0, 0);
}

/// Rerun bug: a rerun with `--strict` or another `--policy` reused every
/// output of the earlier run and signed a receipt claiming the new policy
/// and strictness, which a fresh run under them might refuse. Reuse needs
/// the same converter, policy, strictness and key.
#[test]
fn rerun_under_another_policy_or_strictness_converts_again() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let out = work.path().join("out");
    let src = fixture("dirs/sharded");
    let policy = work.path().join("policy.json");
    let mut p: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox-policy/default.json"),
        )
        .unwrap(),
    )
    .unwrap();
    p["fuel_base"] = serde_json::json!(p["fuel_base"].as_u64().unwrap() + 1);
    fs::write(&policy, serde_json::to_vec_pretty(&p).unwrap()).unwrap();
    let convert = |extra: &[&str]| {
        let run = convert_signed(&src, &out, &key, &[extra, &["--force"]].concat());
        assert_eq!(run.code, 0, "{extra:?}: {}", run.stderr);
        let v = run.json();
        v["directory"]["reused"].as_array().unwrap().len()
    };
    assert_eq!(convert(&[]), 0);
    assert_eq!(convert(&[]), 3, "same settings: reused");
    assert_eq!(convert(&["--strict"]), 0, "strict after non-strict");
    assert_eq!(convert(&["--strict"]), 3, "strict again: reused");
    assert_eq!(
        convert(&["--strict", "--policy", policy.to_str().unwrap()]),
        0,
        "another policy"
    );
    assert_eq!(convert(&[]), 0, "back to the default policy, not strict");

    // Another key: the earlier receipt does not authenticate with it, so
    // nothing is reused, and the new receipt is the new key's alone.
    let keys = work.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let (other_key, other_public) = keygen(&keys);
    let run = convert_signed(&src, &out, &other_key, &["--force"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["directory"]["reused"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(verify_dir(&out, &other_public, &[]).0, 0);
    assert_eq!(
        verify_dir(&out, &public, &[]),
        (
            1,
            vec![
                "signature".into(),
                "statement".into(),
                "build_type".into(),
                "builder".into(),
                "converter".into(),
                "subject".into()
            ]
        )
    );
}

/// The rerun bug as the issue reported it: a rerun under a policy that
/// refuses every file must refuse, not reuse the earlier outputs and sign
/// a receipt naming the narrower policy.
#[test]
fn rerun_under_a_policy_that_refuses_the_files_refuses() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let out = work.path().join("out");
    let src = fixture("dirs/sharded");
    let narrow = work.path().join("narrow.json");
    let mut p: serde_json::Value =
        serde_json::from_str(include_str!("../../sandbox-policy/default.json")).unwrap();
    p["allowed_globals"] = serde_json::json!(["collections.OrderedDict"]);
    fs::write(&narrow, serde_json::to_vec_pretty(&p).unwrap()).unwrap();
    assert_eq!(convert_signed(&src, &out, &key, &[]).code, 0);
    let receipt = fs::read(out.join("decant.intoto.jsonl")).unwrap();
    let run = convert_signed(
        &src,
        &out,
        &key,
        &["--strict", "--policy", narrow.to_str().unwrap(), "--force"],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    let v = run.json();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not allowed by the sandbox policy"),
        "{v}"
    );
    assert_eq!(fs::read(out.join("decant.intoto.jsonl")).unwrap(), receipt);
    let narrow_sha = decant::policy::Policy::load(&narrow).unwrap().sha256;
    assert_eq!(
        verify_dir(&out, &public, &["--policy-sha256", narrow_sha.as_str()]),
        (1, vec!["policy".into()])
    );
}

/// The directory receipt vouches for the directory as a whole.
#[test]
fn directory_verification_fails_on_changed_extra_or_missing_files() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let out = work.path().join("out");
    let src = fixture("dirs/sharded");
    assert_eq!(convert_keyed(&src, &out, &key, &[]).code, 0);
    assert_eq!(verify_dir(&out, &public, &[]), (0, vec![]));

    let index = out.join("model.safetensors.index.json");
    let original = fs::read(&index).unwrap();
    fs::write(&index, b"{}\n").unwrap();
    assert_eq!(
        verify_dir(&out, &public, &[]),
        (1, vec!["subject".to_string()])
    );
    fs::write(&index, &original).unwrap();

    fs::copy(
        fixture("convert/zip_p2.safetensors"),
        out.join("smuggled.safetensors"),
    )
    .unwrap();
    assert_eq!(
        verify_dir(&out, &public, &[]),
        (1, vec!["subject".to_string()])
    );
    fs::remove_file(out.join("smuggled.safetensors")).unwrap();

    fs::remove_file(out.join("model-00002-of-00003.safetensors")).unwrap();
    assert_eq!(
        verify_dir(&out, &public, &[]),
        (1, vec!["subject".to_string()])
    );
}

// receipt_option_is_refused_for_directories: pinned in tests/it/cli.rs.

/// Issue 11: a repository with Trainer's `training_args.bin` (a pickled
/// TrainingArguments, not weights) failed as a whole. Training state is
/// excluded, listed with its reason in the summary and the receipt, and
/// not copied; `--strict` refuses instead; any other failing checkpoint
/// still fails the run.
#[test]
fn training_state_is_excluded_and_listed() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let src = work.path().join("repo");
    copy_fixture_dir("dirs/sharded", &src, None);
    // Pickles of classes decant would refuse: they must not be converted.
    for name in ["training_args.bin", "optimizer.pt", "rng_state_0.pth"] {
        fs::copy(fixture("refuse/unknown_global.pt"), src.join(name)).unwrap();
    }
    let out = work.path().join("out");
    let run = convert_signed(&src, &out, &key, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v = run.json();
    let excluded: Vec<&str> = v["directory"]["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        excluded,
        ["optimizer.pt", "rng_state_0.pth", "training_args.bin"]
    );
    assert!(v["directory"]["excluded"][2]["reason"]
        .as_str()
        .unwrap()
        .contains("TrainingArguments"));
    for name in excluded {
        assert!(!out.join(name).exists(), "{name} was copied");
    }
    // The receipt lists them as excluded, with digests, and verifies.
    let statement = receipt_statement(&out.join("decant.intoto.jsonl"));
    let excluded_deps: Vec<&serde_json::Value> = statement["predicate"]["buildDefinition"]
        ["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["role"] == "excluded")
        .collect();
    assert_eq!(excluded_deps.len(), 3);
    assert!(excluded_deps.iter().all(|d| d["annotations"]["reason"]
        .as_str()
        .unwrap()
        .ends_with("not weights")));
    assert_eq!(verify_dir(&out, &public, &[]).0, 0);

    // Text summary names them.
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        work.path().join("text").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("excluded (training state, not converted, not copied): optimizer.pt"),
        "{}",
        run.stdout
    );

    // --strict refuses instead.
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        work.path().join("strict").to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("is not weights"), "{}", run.stderr);
    run.assert_error_shape();

    // Any other failing checkpoint still fails the whole run.
    fs::copy(fixture("refuse/unknown_global.pt"), src.join("extra.bin")).unwrap();
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        work.path().join("fails").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
}

/// Issue 11: OUT held the shards, the index and the receipt, nothing else,
/// so `from_pretrained(OUT)` failed for want of config.json. Every other
/// file is copied unchanged and vouched for with role "copied"; `.py`
/// files and configs with an `auto_map` are listed as code a loader may
/// run; `verify OUT` accepts exactly the bundle; a rerun leaves identical
/// copies alone.
#[test]
fn other_files_are_copied_and_vouched_for_as_copied() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let src = work.path().join("repo");
    fs::create_dir(&src).unwrap();
    fs::copy(
        fixture("dirs/single/pytorch_model.bin"),
        src.join("pytorch_model.bin"),
    )
    .unwrap();
    fs::write(
        src.join("config.json"),
        r#"{"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}"#,
    )
    .unwrap();
    fs::write(src.join("modeling_x.py"), "class XModel: pass\n").unwrap();
    fs::write(src.join("tokenizer.json"), "{}").unwrap();
    let out = work.path().join("out");
    let run = convert_signed(&src, &out, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(
        v["directory"]["copied"],
        serde_json::json!(["config.json", "modeling_x.py", "tokenizer.json"])
    );
    let code: Vec<&str> = v["directory"]["code"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        code.iter().any(|c| c.starts_with("config.json (auto_map")),
        "{code:?}"
    );
    assert!(code.contains(&"modeling_x.py"), "{code:?}");
    for name in ["config.json", "modeling_x.py", "tokenizer.json"] {
        assert_eq!(
            fs::read(out.join(name)).unwrap(),
            fs::read(src.join(name)).unwrap()
        );
    }
    let statement = receipt_statement(&out.join("decant.intoto.jsonl"));
    let copied: Vec<&str> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["annotations"]["role"] == "copied")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(copied, ["config.json", "modeling_x.py", "tokenizer.json"]);
    assert_eq!(verify_dir(&out, &public, &[]), (0, vec![]));

    // A rerun without --force: identical copies are not "already there".
    let run = convert_signed(&src, &out, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A copy changed in OUT is not replaced without --force.
    fs::write(out.join("tokenizer.json"), "{\"changed\": 1}").unwrap();
    let run = convert_signed(&src, &out, &key, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(
        fs::read_to_string(out.join("tokenizer.json")).unwrap(),
        "{\"changed\": 1}"
    );
}
