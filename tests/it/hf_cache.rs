//! Issue 11: models where people have them. Hugging Face cache snapshots
//! (links into `blobs/`, the shared Xet store), `--revision`, the purl in
//! the receipt, nested repositories (diffusers, sentence-transformers),
//! `--local-dir` downloads; and every link huggingface_hub does not make,
//! refused with nothing written.

use crate::common::{
    convert_keyed, convert_signed, decant, files_under, fixture, keygen, read_json,
    receipt_statement, verify_dir, Blobs, HfCache, COMMIT,
};
use std::fs;
use std::path::{Path, PathBuf};

const REPO: &str = "acme/tiny-gpt";
const PURL: &str = "pkg:huggingface/acme/tiny-gpt@0123456789abcdef0123456789abcdef01234567";

fn sharded_cache(root: &Path, blobs: Blobs) -> HfCache {
    HfCache::build(root, REPO, &fixture("dirs/sharded"), blobs)
}

/// OUT holds exactly the expected conversions of `expected` plus the
/// copies of every other file of `source`, byte for byte, and the receipt.
fn assert_bundle(out: &Path, source: &Path, expected: &Path, converted_sources: &[&str]) {
    let mut want: Vec<String> = files_under(expected);
    for rel in files_under(source) {
        if !converted_sources.contains(&rel.as_str()) && !rel.ends_with(".index.json") {
            want.push(rel);
        }
    }
    want.push("decant.intoto.jsonl".into());
    want.sort();
    assert_eq!(files_under(out), want);
    for rel in files_under(expected) {
        assert_eq!(
            fs::read(out.join(&rel)).unwrap(),
            fs::read(expected.join(&rel)).unwrap(),
            "{rel}"
        );
    }
    for rel in files_under(source) {
        if out.join(&rel).exists() {
            assert_eq!(
                fs::read(out.join(&rel)).unwrap(),
                fs::read(source.join(&rel)).unwrap(),
                "{rel}"
            );
        }
    }
}

fn shard_sources() -> Vec<&'static str> {
    vec![
        "pytorch_model-00001-of-00003.bin",
        "pytorch_model-00002-of-00003.bin",
        "pytorch_model-00003-of-00003.bin",
    ]
}

/// A cache snapshot converts to what the plain directory converts to, the
/// receipt names the repository revision on every source, `verify OUT`
/// accepts the bundle, and the cache is left exactly as it was.
#[test]
fn cache_snapshot_converts_and_names_its_revision() {
    let work = tempfile::tempdir().unwrap();
    let cache = sharded_cache(&work.path().join("hub"), Blobs::InRepo);
    let before = cache.state();
    let (key, public) = keygen(work.path());
    let out = work.path().join("out");
    let run = convert_signed(&cache.snapshot(), &out, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["directory"]["origin"], PURL);
    assert_bundle(
        &out,
        &fixture("dirs/sharded"),
        &fixture("dirs/sharded.expected"),
        &shard_sources(),
    );
    let statement = receipt_statement(&out.join("decant.intoto.jsonl"));
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    for dep in deps {
        if dep["annotations"]["role"] == "converter" {
            assert!(dep.get("uri").is_none());
        } else {
            assert_eq!(dep["uri"], PURL, "{dep}");
        }
    }
    assert_eq!(
        statement["predicate"]["buildDefinition"]["externalParameters"]["source"],
        REPO
    );
    assert_eq!(verify_dir(&out, &public, &[]), (0, vec![]));
    // The gate says which revision it is vouching was converted.
    let run = crate::common::verify_dir_run(&out, &public, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("converted from {PURL}")),
        "{}",
        run.stdout
    );
    // The snapshot is a --source for the gate, and reproduces the bundle.
    let snapshot = cache.snapshot();
    let source = snapshot.to_str().unwrap();
    assert_eq!(
        verify_dir(&out, &public, &["--source", source]),
        (0, vec![])
    );
    assert_eq!(
        verify_dir(&out, &public, &["--source", source, "--reproduce"]),
        (0, vec![])
    );
    // Another revision with the same bytes is not the one converted.
    let other = cache.repo.join("snapshots").join("f".repeat(40));
    assert!(std::process::Command::new("cp")
        .args(["-a", source, other.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let (code, failed) = verify_dir(&out, &public, &["--source", other.to_str().unwrap()]);
    assert_eq!((code, failed), (1, vec!["source".to_string()]));
    fs::remove_dir_all(&other).unwrap();
    assert_eq!(cache.state(), before, "the cache was written to");

    // The repository directory with --revision main reads the same commit.
    let out2 = work.path().join("out2");
    let run = convert_signed(&cache.repo, &out2, &key, &["--revision", "main"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for rel in files_under(&fixture("dirs/sharded.expected")) {
        assert_eq!(
            fs::read(out.join(&rel)).unwrap(),
            fs::read(out2.join(&rel)).unwrap()
        );
    }
    // And by its commit, and with the default revision.
    for (i, extra) in [vec!["--revision", COMMIT], vec![]].into_iter().enumerate() {
        let out3 = work.path().join(format!("out3-{i}"));
        let run = convert_signed(&cache.repo, &out3, &key, &extra);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stdout.contains(PURL), "{}", run.stdout);
    }
    assert_eq!(cache.state(), before, "the cache was written to");
}

/// huggingface_hub >= 1.32 keeps Xet-backed LFS files in the cache's
/// shared store: the repository blob links one hop further. Followed where
/// the cache marks the store, refused where it does not.
#[test]
fn shared_store_hop_is_followed_only_where_the_cache_marks_it() {
    let work = tempfile::tempdir().unwrap();
    let cache = sharded_cache(&work.path().join("hub"), Blobs::Shared);
    let (key, public) = keygen(work.path());
    let out = work.path().join("out");
    let run = convert_signed(&cache.snapshot(), &out, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_bundle(
        &out,
        &fixture("dirs/sharded"),
        &fixture("dirs/sharded.expected"),
        &shard_sources(),
    );
    assert_eq!(verify_dir(&out, &public, &[]), (0, vec![]));

    let marker = cache.root.join("blobs/.huggingface-shared-blobs");
    for (content, case) in [
        (None, "no marker"),
        (Some("1"), "marker without its newline"),
        (Some("2\n"), "another layout version"),
    ] {
        let _ = fs::remove_file(&marker);
        if let Some(c) = content {
            fs::write(&marker, c).unwrap();
        }
        let out = work.path().join(format!("never-{}", case.len()));
        let run = convert_keyed(&cache.snapshot(), &out, &key, &[]);
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        run.assert_error_shape();
        assert!(
            run.stderr.contains("no shared-store marker"),
            "{case}: {}",
            run.stderr
        );
        assert!(!out.exists(), "{case}");
    }
}

/// Each kind of link huggingface_hub never makes is refused before
/// anything is read through it, and nothing is written.
#[test]
fn links_huggingface_hub_does_not_make_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let (key, _) = keygen(work.path());
    let outside = work.path().join("outside.bin");
    fs::copy(fixture("dirs/outside.bin"), &outside).unwrap();
    let shard = "pytorch_model-00001-of-00003.bin";
    type Tamper = Box<dyn Fn(&HfCache)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "a link escaping the repository",
            Box::new(|c: &HfCache| c.relink(shard, "../../../../outside.bin")),
            "which is not the repository's blobs/",
        ),
        (
            "a link into another repository's blobs",
            Box::new(|c: &HfCache| {
                let name = c.blob_name(shard);
                c.relink(shard, &format!("../../../models--evil--x/blobs/{name}"))
            }),
            "which is not the repository's blobs/",
        ),
        (
            "an absolute link",
            Box::new(move |c: &HfCache| {
                let name = c.blob_name(shard);
                let abs = c.repo.join("blobs").join(name);
                c.relink(shard, abs.to_str().unwrap())
            }),
            "an absolute path",
        ),
        (
            "a link with the wrong number of ..",
            Box::new(|c: &HfCache| {
                let name = c.blob_name(shard);
                c.relink(shard, &format!("../../../blobs/{name}"))
            }),
            "which is not the repository's blobs/",
        ),
        (
            "a blob name that is not a digest",
            Box::new(|c: &HfCache| {
                fs::copy(fixture("dirs/outside.bin"), c.repo.join("blobs/evil")).unwrap();
                c.relink(shard, "../../blobs/evil")
            }),
            "not a blob name",
        ),
        (
            "a chain beyond the shared-store hop",
            Box::new(|c: &HfCache| {
                // The repo blob links to a store entry that is itself a link.
                let name = c.blob_name(shard);
                let blob = c.repo.join("blobs").join(&name);
                let bytes = fs::read(&blob).unwrap();
                fs::remove_file(&blob).unwrap();
                let hash = "ab".to_string() + &"0".repeat(62);
                let store = c.root.join("blobs/ab");
                fs::create_dir_all(&store).unwrap();
                fs::write(c.root.join("blobs/.huggingface-shared-blobs"), "1\n").unwrap();
                fs::write(store.join("real"), bytes).unwrap();
                std::os::unix::fs::symlink("real", store.join(&hash)).unwrap();
                std::os::unix::fs::symlink(format!("../../blobs/ab/{hash}"), &blob).unwrap();
            }),
            "cannot be opened as a regular file",
        ),
        (
            "a repository blob linking anywhere but the shared store",
            Box::new(move |c: &HfCache| {
                let name = c.blob_name(shard);
                let blob = c.repo.join("blobs").join(&name);
                fs::remove_file(&blob).unwrap();
                std::os::unix::fs::symlink("../../../outside.bin", &blob).unwrap();
            }),
            "which is not the cache's shared store",
        ),
        (
            "a shared-store hop whose directory is not the hash's prefix",
            Box::new(|c: &HfCache| {
                let name = c.blob_name(shard);
                let blob = c.repo.join("blobs").join(&name);
                fs::remove_file(&blob).unwrap();
                let hash = "ab".to_string() + &"1".repeat(62);
                std::os::unix::fs::symlink(format!("../../blobs/cd/{hash}"), &blob).unwrap();
            }),
            "not a shared-store name",
        ),
        (
            "a blob that is missing",
            Box::new(|c: &HfCache| {
                let name = c.blob_name(shard);
                fs::remove_file(c.repo.join("blobs").join(name)).unwrap();
            }),
            "a blob that is missing",
        ),
        (
            "a checkpoint whose content is not its sha256 name",
            Box::new(|c: &HfCache| {
                let name = c.blob_name(shard);
                let blob = c.repo.join("blobs").join(name);
                fs::remove_file(&blob).unwrap();
                fs::copy(
                    fixture("dirs/sharded/pytorch_model-00002-of-00003.bin"),
                    &blob,
                )
                .unwrap();
            }),
            "does not match its blob name",
        ),
        (
            "an index whose content is not its blob name",
            Box::new(|c: &HfCache| {
                let name = c.blob_name("pytorch_model.bin.index.json");
                let blob = c.repo.join("blobs").join(name);
                let mut bytes = fs::read(&blob).unwrap();
                bytes.push(b' ');
                fs::remove_file(&blob).unwrap();
                fs::write(&blob, bytes).unwrap();
            }),
            "does not match its blob name",
        ),
        (
            "a copied config whose content is not its git blob name",
            Box::new(|c: &HfCache| {
                let name = c.blob_name("config.json");
                let blob = c.repo.join("blobs").join(name);
                fs::remove_file(&blob).unwrap();
                fs::write(&blob, "{\"model_type\": \"evil\"}").unwrap();
            }),
            "does not match its blob name",
        ),
        (
            "a FIFO in the snapshot",
            Box::new(|c: &HfCache| {
                let fifo = c.snapshot().join("notes.txt");
                assert!(std::process::Command::new("mkfifo")
                    .arg(fifo)
                    .status()
                    .unwrap()
                    .success());
            }),
            "a FIFO",
        ),
    ];
    for (i, (case, tamper, needle)) in cases.iter().enumerate() {
        let root = work.path().join(format!("hub{i}"));
        let cache = sharded_cache(&root, Blobs::InRepo);
        tamper(&cache);
        let before = cache.state();
        let out = work.path().join(format!("never{i}"));
        let run = convert_keyed(&cache.snapshot(), &out, &key, &[]);
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        run.assert_error_shape();
        assert!(run.stderr.contains(needle), "{case}: {}", run.stderr);
        assert!(!out.exists(), "{case}: output left behind");
        assert_eq!(cache.state(), before, "{case}: the cache was written to");
        if fs::metadata(&outside).is_ok() {
            assert_eq!(
                fs::read(&outside).unwrap(),
                fs::read(fixture("dirs/outside.bin")).unwrap()
            );
        }
    }
}

/// decant never writes into the cache: OUT is required, and may not be
/// inside the repository.
#[test]
fn cache_needs_an_output_outside_it() {
    let work = tempfile::tempdir().unwrap();
    let cache = sharded_cache(&work.path().join("hub"), Blobs::InRepo);
    let before = cache.state();
    let snapshot = cache.snapshot();
    let run = decant(&["convert", snapshot.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("never writes into the cache"));
    assert!(run.stderr.contains("-o OUT"));
    for inside in [
        snapshot.clone(),
        snapshot.join("converted"),
        cache.repo.join("out"),
    ] {
        let run = decant(&[
            "convert",
            snapshot.to_str().unwrap(),
            "-o",
            inside.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 2, "{}: {}", inside.display(), run.stderr);
        run.assert_error_shape();
        assert!(
            run.stderr.contains("inside the Hugging Face cache"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(cache.state(), before);
}

/// `--revision` is resolved through `refs/` to a commit, and refused where
/// it cannot mean anything.
#[test]
fn revisions_resolve_through_refs_or_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let cache = sharded_cache(&work.path().join("hub"), Blobs::InRepo);
    let (key, _) = keygen(work.path());
    let repo = cache.repo.to_str().unwrap().to_string();
    let snapshot = cache.snapshot();
    fs::create_dir_all(cache.repo.join("refs/pr")).unwrap();
    fs::write(cache.repo.join("refs/pr/1"), COMMIT).unwrap();
    fs::write(cache.repo.join("refs/moved"), "f".repeat(40)).unwrap();
    fs::write(cache.repo.join("refs/garbage"), "main\n").unwrap();
    let plain = work.path().join("plain");
    crate::common::copy_fixture_dir("dirs/single", &plain, None);
    let single_bin = plain.join("pytorch_model.bin");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec![&repo, "--revision", "pr/1"], 0, ""),
        (vec![&repo, "--revision", "nope"], 2, "has no revision nope"),
        (
            vec![&repo, "--revision", "moved"],
            2,
            "which has no snapshot",
        ),
        (
            vec![&repo, "--revision", "garbage"],
            1,
            "does not hold a 40-hex commit",
        ),
        (
            vec![&repo, "--revision", "../refs/main"],
            2,
            "not a branch, tag or commit",
        ),
        (
            vec![&repo, "--revision", "/etc/passwd"],
            2,
            "not a branch, tag or commit",
        ),
        (
            vec![snapshot.to_str().unwrap(), "--revision", "main"],
            2,
            "already a snapshot",
        ),
        (
            vec![plain.to_str().unwrap(), "--revision", "main"],
            2,
            "is not one",
        ),
        (
            vec![single_bin.to_str().unwrap(), "--revision", "main"],
            2,
            "--revision applies to a Hugging Face cache repository",
        ),
    ];
    for (i, (args, code, needle)) in cases.iter().enumerate() {
        let out = work.path().join(format!("out{i}"));
        let mut all = vec!["convert"];
        all.extend(args.iter().copied());
        all.extend(["-o", out.to_str().unwrap(), "--key", &key]);
        let run = decant(&all);
        assert_eq!(run.code, *code, "{args:?}: {}", run.stderr);
        if *code != 0 {
            run.assert_error_shape();
            assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
            assert!(!out.exists(), "{args:?}");
        }
    }
}

/// A directory made by `hf download --local-dir`: its `.cache/huggingface/`
/// metadata is not part of the model: not copied, not converted, and the
/// output verifies.
#[test]
fn local_dir_download_metadata_is_left_alone() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("local");
    crate::common::copy_fixture_dir("dirs/sharded", &src, None);
    let meta = src.join(".cache/huggingface/download");
    fs::create_dir_all(&meta).unwrap();
    fs::write(
        meta.join("config.json.metadata"),
        "abc\n123\n1700000000.0\n",
    )
    .unwrap();
    fs::write(src.join(".cache/huggingface/.gitignore"), "*\n").unwrap();
    // A pickle planted in the metadata directory is not converted either.
    fs::copy(fixture("refuse/unknown_global.pt"), meta.join("x.bin")).unwrap();
    let (key, public) = keygen(work.path());
    let out = work.path().join("out");
    let run = convert_signed(&src, &out, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    assert_eq!(
        summary["directory"]["left_alone"],
        serde_json::json!([".cache/huggingface/"])
    );
    assert!(summary["directory"]["origin"].is_null());
    assert!(!out.join(".cache").exists());
    assert_eq!(verify_dir(&out, &public, &[]), (0, vec![]));
}

fn nested_repo(at: &Path) -> PathBuf {
    let put = |rel: &str, from: PathBuf| {
        let to = at.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    };
    let text = |rel: &str, content: &str| {
        let to = at.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(to, content).unwrap();
    };
    text("model_index.json", "{\"_class_name\": \"TinyPipeline\"}\n");
    put(
        "unet/diffusion_pytorch_model.bin",
        fixture("convert/zip_p2.pt"),
    );
    text(
        "unet/config.json",
        "{\"_class_name\": \"UNet2DConditionModel\"}\n",
    );
    put("text_encoder/pytorch_model.bin", fixture("convert/tied.pt"));
    text(
        "text_encoder/config.json",
        "{\"model_type\": \"clip_text_model\"}\n",
    );
    text(
        "scheduler/scheduler_config.json",
        "{\"_class_name\": \"DDIMScheduler\"}\n",
    );
    put("1_Pooling/config.json", fixture("dirs/sharded/config.json"));
    for name in [
        "pytorch_model-00001-of-00003.bin",
        "pytorch_model-00002-of-00003.bin",
        "pytorch_model-00003-of-00003.bin",
        "pytorch_model.bin.index.json",
    ] {
        put(
            &format!("vae/{name}"),
            fixture(&format!("dirs/sharded/{name}")),
        );
    }
    at.to_path_buf()
}

fn nested_expected(at: &Path) -> PathBuf {
    let put = |rel: &str, from: PathBuf| {
        let to = at.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    };
    put(
        "unet/diffusion_pytorch_model.safetensors",
        fixture("convert/zip_p2.safetensors"),
    );
    put(
        "text_encoder/model.safetensors",
        fixture("convert/tied.safetensors"),
    );
    for rel in files_under(&fixture("dirs/sharded.expected")) {
        put(
            &format!("vae/{rel}"),
            fixture(&format!("dirs/sharded.expected/{rel}")),
        );
    }
    at.to_path_buf()
}

/// Subfolders are converted and copied like the top: diffusers-style
/// components, a sharded checkpoint with its index in a subfolder, and
/// module folders with only configs. Plain and cached alike.
#[test]
fn nested_repositories_convert_in_every_subfolder() {
    let work = tempfile::tempdir().unwrap();
    let src = nested_repo(&work.path().join("repo"));
    let expected = nested_expected(&work.path().join("expected"));
    let converted = [
        "unet/diffusion_pytorch_model.bin",
        "text_encoder/pytorch_model.bin",
        "vae/pytorch_model-00001-of-00003.bin",
        "vae/pytorch_model-00002-of-00003.bin",
        "vae/pytorch_model-00003-of-00003.bin",
    ];
    let (key, public) = keygen(work.path());
    let cache = HfCache::build(&work.path().join("hub"), "acme/pipe", &src, Blobs::Shared);
    for (i, from) in [src.clone(), cache.snapshot()].into_iter().enumerate() {
        let out = work.path().join(format!("out{i}"));
        let run = convert_signed(&from, &out, &key, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_bundle(&out, &src, &expected, &converted);
        let summary = run.json();
        assert_eq!(
            summary["directory"]["indexes"],
            serde_json::json!(["vae/model.safetensors.index.json"])
        );
        let statement = receipt_statement(&out.join("decant.intoto.jsonl"));
        let subjects: Vec<&str> = statement["subject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert!(subjects.contains(&"unet/diffusion_pytorch_model.safetensors"));
        assert!(subjects.contains(&"scheduler/scheduler_config.json"));
        assert_eq!(verify_dir(&out, &public, &[]), (0, vec![]));
    }
}

/// Review findings (issue 11): a cache's own directories are never
/// followed as links. A `snapshots/<commit>` (or `snapshots/`, or the
/// repository) that is a link would otherwise lead the read to any
/// directory, read as a plain one; the shared-store marker and a ref are
/// files, never links.
#[test]
fn cache_directories_and_markers_that_are_links_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let (key, _) = keygen(work.path());
    let victim = work.path().join("victim");
    fs::create_dir_all(victim.join(".ssh")).unwrap();
    fs::copy(
        fixture("dirs/single/pytorch_model.bin"),
        victim.join("pytorch_model.bin"),
    )
    .unwrap();
    fs::write(victim.join(".ssh/id_ed25519"), "PRIVATE").unwrap();
    type Tamper = Box<dyn Fn(&HfCache)>;
    let victim2 = victim.clone();
    let victim3 = victim.clone();
    let cases: Vec<(&str, Tamper, &str, i32)> = vec![
        (
            "the snapshot is a link",
            Box::new(move |c: &HfCache| {
                fs::remove_dir_all(c.snapshot()).unwrap();
                std::os::unix::fs::symlink(&victim2, c.snapshot()).unwrap();
            }),
            "(the snapshot) is a symlink",
            1,
        ),
        (
            "snapshots/ is a link",
            Box::new(move |c: &HfCache| {
                let fake = c.root.join("fake");
                fs::create_dir_all(&fake).unwrap();
                std::os::unix::fs::symlink(&victim3, fake.join(COMMIT)).unwrap();
                fs::remove_dir_all(c.repo.join("snapshots")).unwrap();
                std::os::unix::fs::symlink(&fake, c.repo.join("snapshots")).unwrap();
            }),
            "(the snapshots directory) is a symlink",
            1,
        ),
        (
            "the shared-store marker is a link",
            Box::new(|c: &HfCache| {
                let marker = c.root.join("blobs/.huggingface-shared-blobs");
                fs::write(c.root.join("elsewhere"), "1\n").unwrap();
                fs::remove_file(&marker).unwrap();
                std::os::unix::fs::symlink("../elsewhere", &marker).unwrap();
            }),
            "no shared-store marker",
            1,
        ),
    ];
    for (i, (case, tamper, needle, code)) in cases.iter().enumerate() {
        let root = work.path().join(format!("hub{i}"));
        let cache = sharded_cache(&root, Blobs::Shared);
        tamper(&cache);
        let out = work.path().join(format!("never{i}"));
        let run = convert_keyed(&cache.snapshot(), &out, &key, &[]);
        assert_eq!(run.code, *code, "{case}: {}", run.stderr);
        run.assert_error_shape();
        assert!(run.stderr.contains(needle), "{case}: {}", run.stderr);
        assert!(!out.exists(), "{case}: output left behind");
    }
    // A ref that is a link (to /dev/zero, say) is refused, not read.
    let cache = sharded_cache(&work.path().join("hubref"), Blobs::InRepo);
    std::os::unix::fs::symlink("/dev/zero", cache.repo.join("refs/zero")).unwrap();
    let out = work.path().join("neverref");
    let run = decant(&[
        "convert",
        cache.repo.to_str().unwrap(),
        "--revision",
        "zero",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_error_shape();
    assert!(
        run.stderr.contains("does not hold a 40-hex commit"),
        "{}",
        run.stderr
    );
}

/// Review findings (issue 11): OUT anywhere in the cache is refused, also
/// in the shared store or another repository, and also when it climbs
/// there with `..` through directories that do not exist yet; and parts
/// of a cache that are not a model snapshot are not read as plain
/// directories (which would write into the cache by default).
#[test]
fn nothing_is_written_anywhere_in_the_cache() {
    let work = tempfile::tempdir().unwrap();
    let hub = work.path().join("hub");
    let cache = sharded_cache(&hub, Blobs::Shared);
    // A snapshot folder holding real files, as HF_HUB_DISABLE_SYMLINKS writes.
    let unet = cache.snapshot().join("unet");
    fs::create_dir_all(&unet).unwrap();
    fs::copy(
        fixture("dirs/single/pytorch_model.bin"),
        unet.join("pytorch_model.bin"),
    )
    .unwrap();
    let datasets = hub.join("datasets--acme--data/snapshots").join(COMMIT);
    fs::create_dir_all(&datasets).unwrap();
    fs::copy(
        fixture("dirs/single/pytorch_model.bin"),
        datasets.join("pytorch_model.bin"),
    )
    .unwrap();
    let no_snapshots = hub.join("models--acme--bare");
    fs::create_dir_all(no_snapshots.join("blobs")).unwrap();
    fs::copy(
        fixture("dirs/single/pytorch_model.bin"),
        no_snapshots.join("pytorch_model.bin"),
    )
    .unwrap();
    let before = cache.state();
    let snapshot = cache.snapshot();
    let s = snapshot.to_str().unwrap();
    let climb = work
        .path()
        .join("nonexist/../hub/models--acme--tiny-gpt/evil");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                s.into(),
                "-o".into(),
                hub.join("blobs/out").display().to_string(),
            ],
            "inside the Hugging Face cache",
        ),
        (
            vec![
                s.into(),
                "-o".into(),
                hub.join("models--other--x/out").display().to_string(),
            ],
            "inside the Hugging Face cache",
        ),
        (
            vec![s.into(), "-o".into(), climb.display().to_string()],
            "contains ..",
        ),
        (vec![unet.display().to_string()], "not a model snapshot"),
        (vec![datasets.display().to_string()], "not a model snapshot"),
        (
            vec![no_snapshots.display().to_string()],
            "not a model snapshot",
        ),
        (
            vec![hub.display().to_string()],
            "is a Hugging Face cache, not a model",
        ),
    ];
    for (args, needle) in &cases {
        let mut all = vec!["convert"];
        all.extend(args.iter().map(String::as_str));
        let run = decant(&all);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        run.assert_error_shape();
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert_eq!(cache.state(), before, "{args:?}: the cache was written to");
    }
    assert!(!work.path().join("nonexist").exists());
}

/// Review findings (issue 11): a failed run removes every directory it
/// created for OUT, parents included; an earlier decant bundle inside SRC
/// is not part of the model; a link inside a plain directory is resolved
/// from its root; a non-LFS blob larger than the Hub allows is refused
/// before it is read.
#[test]
fn plain_directories_and_failed_runs_leave_no_trace() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let bad = work.path().join("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("pytorch_model.bin"), "garbage").unwrap();
    let out = work.path().join("n1/n2/out");
    let run = convert_keyed(&bad, &out, &key, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        !work.path().join("n1").exists(),
        "created parents left behind"
    );

    let src = work.path().join("model");
    crate::common::copy_fixture_dir("dirs/single", &src, None);
    fs::create_dir_all(src.join("sub")).unwrap();
    std::os::unix::fs::symlink("../config.json", src.join("sub/config.json")).unwrap();
    let first = src.join("converted");
    assert_eq!(convert_keyed(&src, &first, &key, &[]).code, 0);
    let again = work.path().join("again");
    let run = convert_signed(&src, &again, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    assert_eq!(
        summary["directory"]["left_alone"],
        serde_json::json!(["converted/"])
    );
    assert_eq!(
        fs::read(again.join("sub/config.json")).unwrap(),
        fs::read(src.join("config.json")).unwrap()
    );
    assert_eq!(verify_dir(&again, &public, &[]), (0, vec![]));

    // A 40-hex (git) blob of 17 MiB: the Hub keeps such files in LFS.
    let cache = sharded_cache(&work.path().join("hub"), Blobs::InRepo);
    let big = vec![b' '; 17 << 20];
    let name = crate::common::git_blob_sha1(&big);
    fs::write(cache.repo.join("blobs").join(&name), &big).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{name}"),
        cache.snapshot().join("big.txt"),
    )
    .unwrap();
    let out = work.path().join("neverbig");
    let run = convert_keyed(&cache.snapshot(), &out, &key, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("stored outside LFS"), "{}", run.stderr);
    assert!(!out.exists());
}

/// Issue 11: real repositories as transformers 4.x, diffusers, PEFT and
/// sentence-transformers write them (`fixtures/repos/`, made by those
/// libraries) convert to exactly their expected files, copy everything
/// else, exclude Trainer's state, and verify; read as plain directories and
/// as cache snapshots alike. (`tests/e2e/hf_load.py` loads the outputs in
/// the libraries themselves.)
#[test]
fn hugging_face_repositories_convert_to_their_references() {
    let manifest: serde_json::Value = read_json(&fixture("repos/manifest.json"));
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    for (name, entry) in manifest.as_object().unwrap() {
        let source = fixture(entry["source"].as_str().unwrap());
        let expected = fixture(entry["expected"].as_str().unwrap());
        let mut want: Vec<String> = files_under(&expected);
        want.extend(
            entry["copied"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string()),
        );
        want.push("decant.intoto.jsonl".into());
        want.sort();
        let excluded: Vec<&str> = entry["excluded"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let cache = HfCache::build(
            &work.path().join(format!("hub-{name}")),
            entry["repo_id"].as_str().unwrap(),
            &source,
            Blobs::Shared,
        );
        for (i, from) in [source.clone(), cache.snapshot()].into_iter().enumerate() {
            let out = work.path().join(format!("{name}-{i}"));
            let run = convert_signed(&from, &out, &key, &[]);
            assert_eq!(run.code, 0, "{name}: {}", run.stderr);
            assert_eq!(files_under(&out), want, "{name}");
            for rel in files_under(&expected) {
                assert_eq!(
                    fs::read(out.join(&rel)).unwrap(),
                    fs::read(expected.join(&rel)).unwrap(),
                    "{name}: {rel}"
                );
            }
            for c in entry["copied"].as_array().unwrap() {
                let rel = c.as_str().unwrap();
                assert_eq!(
                    fs::read(out.join(rel)).unwrap(),
                    fs::read(source.join(rel)).unwrap(),
                    "{name}: {rel}"
                );
            }
            let summary = run.json();
            let listed: Vec<&str> = summary["directory"]["excluded"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            assert_eq!(listed, excluded, "{name}");
            assert_eq!(verify_dir(&out, &public, &[]), (0, vec![]), "{name}");
        }
    }
}
