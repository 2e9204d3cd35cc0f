//! Hostile environments (issue 10): what other people left in the paths
//! and directories decant is pointed at. Each case is bounded in time: a
//! decant that blocks is killed and the test fails.

use crate::common::{copy_fixture_dir, fixture, read_json, sha256_file};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs decant, killing it after `limit`; returns (exit code, stdout,
/// stderr), failing the test if it had to be killed.
fn bounded(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_decant"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("decant {args:?} still running after {limit:?}: it blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const LIMIT: Duration = Duration::from_secs(20);

/// Issue 10: a FIFO (or a device) where decant expects a file blocked
/// `open` forever: as SRC, for `inspect`, as a key, a policy, a receipt,
/// the artifact, a checkpoint or the index of a model directory, or a
/// source under `--source DIR`. Each is now refused at once, naming what
/// the path is.
#[test]
fn special_files_are_refused_at_once() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let fifo = w.join("pytorch_model.bin");
    mkfifo(&fifo);
    let out = w.join("out.safetensors");
    let key = w.join("key");
    assert_eq!(bounded(&["keygen", s(&key)], LIMIT).0, 0);
    let tied = fixture("convert/tied.pt");
    let good_out = w.join("good.safetensors");
    assert_eq!(
        bounded(
            &["convert", s(&tied), "-o", s(&good_out), "--key", s(&key)],
            LIMIT
        )
        .0,
        0
    );
    let receipt = w.join("good.safetensors.intoto.jsonl");
    let public = w.join("key.pub");

    let usage_cases: Vec<Vec<&str>> = vec![
        vec!["convert", s(&fifo), "-o", s(&out)],
        vec!["inspect", s(&fifo)],
        vec!["convert", s(&tied), "-o", s(&out), "--key", s(&fifo)],
        vec!["convert", s(&tied), "-o", s(&out), "--policy", s(&fifo)],
        vec![
            "verify",
            s(&good_out),
            "--receipt",
            s(&fifo),
            "--trusted-key",
            s(&public),
        ],
        vec![
            "verify",
            s(&good_out),
            "--receipt",
            s(&receipt),
            "--trusted-key",
            s(&fifo),
        ],
        vec![
            "verify",
            "/dev/zero",
            "--receipt",
            s(&receipt),
            "--trusted-key",
            s(&public),
        ],
    ];
    for args in &usage_cases {
        let (code, _, stderr) = bounded(args, LIMIT);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("is a FIFO, not a regular file")
                || stderr.contains("is a character device, not a regular file"),
            "{args:?}: {stderr}"
        );
        assert!(!out.exists());
    }

    // In a model directory: a FIFO checkpoint and a FIFO index are refused
    // (the directory's contents are input: exit 1).
    for planted in [
        "pytorch_model-00002-of-00003.bin",
        "pytorch_model.bin.index.json",
    ] {
        let dir = w.join(format!("dir-{planted}"));
        copy_fixture_dir("dirs/sharded", &dir, Some(planted));
        mkfifo(&dir.join(planted));
        let (code, _, stderr) = bounded(&["convert", s(&dir), "-o", s(&w.join("never"))], LIMIT);
        assert_eq!(code, 1, "{planted}: {stderr}");
        assert!(stderr.contains("is a FIFO, not a regular file"), "{stderr}");
    }

    // verify DIR with a FIFO among the outputs, and --source DIR with a
    // FIFO where a source was.
    let served = w.join("served");
    assert_eq!(
        bounded(
            &[
                "convert",
                s(&fixture("dirs/sharded")),
                "-o",
                s(&served),
                "--key",
                s(&key)
            ],
            LIMIT
        )
        .0,
        0
    );
    let dir_receipt = served.join("decant.intoto.jsonl");
    let fake_src = w.join("fake-src");
    std::fs::create_dir(&fake_src).unwrap();
    mkfifo(&fake_src.join("pytorch_model-00001-of-00003.bin"));
    let (code, stdout, _) = bounded(
        &[
            "verify",
            s(&served),
            "--receipt",
            s(&dir_receipt),
            "--trusted-key",
            s(&public),
            "--source",
            s(&fake_src),
        ],
        LIMIT,
    );
    assert_eq!(code, 1);
    assert!(stdout.contains("is a FIFO, not a regular file"), "{stdout}");
    mkfifo(&served.join("extra.safetensors"));
    let (code, stdout, _) = bounded(
        &[
            "verify",
            s(&served),
            "--receipt",
            s(&dir_receipt),
            "--trusted-key",
            s(&public),
        ],
        LIMIT,
    );
    assert_eq!(code, 1);
    assert!(
        stdout.contains("extra.safetensors is a special file"),
        "{stdout}"
    );
}

/// Issue 10: `-o m.ckpt --force` replaced the only copy of a checkpoint,
/// `--receipt m.ckpt` replaced it with the receipt, and `--receipt OUT`
/// published the output without a receipt (or, with `--force`, replaced
/// the weights by the receipt). A path decant writes may be neither a path
/// it reads nor another path it writes, by name, through `..`, a symlink
/// or a hard link: refused before any work, `--force` or not.
#[test]
fn outputs_never_alias_inputs_or_each_other() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("m.ckpt");
    std::fs::copy(fixture("convert/lightning.ckpt"), &src).unwrap();
    let key = w.join("key");
    assert_eq!(bounded(&["keygen", s(&key)], LIMIT).0, 0);
    let (src_sha, key_sha) = (sha256_file(&src), sha256_file(&key));
    std::os::unix::fs::symlink(&src, w.join("link.safetensors")).unwrap();
    std::fs::hard_link(&src, w.join("hard.safetensors")).unwrap();
    std::fs::create_dir(w.join("sub")).unwrap();
    let out = w.join("o.safetensors");
    let dotted = format!("{}/sub/../m.ckpt", w.display());
    let (link, hard) = (w.join("link.safetensors"), w.join("hard.safetensors"));
    let cases: Vec<Vec<&str>> = vec![
        vec!["convert", s(&src), "-o", s(&src)],
        vec!["convert", s(&src), "-o", &dotted],
        vec!["convert", s(&src), "-o", s(&link)],
        vec!["convert", s(&src), "-o", s(&hard)],
        vec![
            "convert",
            s(&src),
            "-o",
            s(&out),
            "--key",
            s(&key),
            "--receipt",
            s(&src),
        ],
        vec![
            "convert",
            s(&src),
            "-o",
            s(&out),
            "--key",
            s(&key),
            "--receipt",
            s(&out),
        ],
        vec![
            "convert",
            s(&src),
            "-o",
            s(&out),
            "--key",
            s(&key),
            "--receipt",
            s(&key),
        ],
    ];
    for case in &cases {
        for force in [false, true] {
            let mut args = case.clone();
            if force {
                args.push("--force");
            }
            let (code, _, stderr) = bounded(&args, LIMIT);
            assert_eq!(code, 2, "{args:?}: {stderr}");
            assert!(stderr.contains("is the same file as"), "{args:?}: {stderr}");
            assert!(!out.exists(), "{args:?} wrote the output");
            assert_eq!(sha256_file(&src), src_sha, "{args:?} changed the source");
            assert_eq!(sha256_file(&key), key_sha, "{args:?} changed the key");
        }
    }

    // A model directory whose OUT holds a hard link of a source under an
    // output's name.
    let dir = w.join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixture("convert/tied.pt"), dir.join("pytorch_model.bin")).unwrap();
    let outdir = w.join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    std::fs::hard_link(
        dir.join("pytorch_model.bin"),
        outdir.join("model.safetensors"),
    )
    .unwrap();
    let before = sha256_file(&dir.join("pytorch_model.bin"));
    let (code, _, stderr) = bounded(&["convert", s(&dir), "-o", s(&outdir), "--force"], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is the same file as the source"),
        "{stderr}"
    );
    assert_eq!(sha256_file(&dir.join("pytorch_model.bin")), before);
}

/// Issue 10: every staged output of a directory kept a file and a
/// directory descriptor open until publication, so 600 checkpoints failed
/// with "Too many open files" under `ulimit -n 1024`. Descriptors now
/// scale with the jobs running, not the files converted: 300 checkpoints
/// convert under `ulimit -n 64`.
#[test]
fn descriptors_are_bounded_by_jobs_not_files() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("many");
    std::fs::create_dir(&dir).unwrap();
    let tied = std::fs::read(fixture("convert/tied.pt")).unwrap();
    for i in 0..300 {
        std::fs::write(dir.join(format!("w{i:03}.pt")), &tied).unwrap();
    }
    let out = work.path().join("out");
    let key = work.path().join("key");
    assert_eq!(bounded(&["keygen", s(&key)], LIMIT).0, 0);
    let script = format!(
        "ulimit -n 64 && exec '{}' convert '{}' -o '{}' --jobs 2 --key '{}' --json",
        env!("CARGO_BIN_EXE_decant"),
        s(&dir),
        s(&out),
        s(&key)
    );
    let run = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // 300 outputs and the receipt, and no temp file left.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 301);
}

/// Issue 10: directory mode printed file names raw, so a checkpoint named
/// with a newline forged a "converted ..." line and an ESC sequence drove
/// the terminal; single-file mode escaped them. One rule now, every mode.
#[test]
fn names_from_the_input_are_escaped_in_every_mode() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let tied = fixture("convert/tied.pt");
    std::fs::copy(&tied, dir.join("x\nconverted forged.pt")).unwrap();
    std::fs::copy(&tied, dir.join("y\x1b[2J.pt")).unwrap();
    std::fs::write(dir.join("notes\x1b]0;title\x07.txt"), "x").unwrap();
    let out = work.path().join("out");
    let (code, stdout, stderr) = bounded(&["convert", s(&dir), "-o", s(&out)], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(
            !text.lines().any(|l| l.starts_with("converted forged")),
            "a forged line: {text}"
        );
    }
    assert!(stdout.contains("x\\nconverted forged.pt"), "{stdout}");

    // The same names in a refusal.
    std::fs::write(dir.join("z\nrefused.pt"), b"not a pickle").unwrap();
    let (code, _, stderr) = bounded(
        &["convert", s(&dir), "-o", s(&work.path().join("o2"))],
        LIMIT,
    );
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

/// Issue 10: `--force` into a directory that already held some outputs
/// published part of the result when a later file failed. Publication is
/// now one step: if any file cannot be put in place, every file already
/// published is taken back and every file it replaced is back as it was.
#[test]
fn directory_publication_is_all_or_nothing_with_force() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let old = out.join("model-00001-of-00003.safetensors");
    std::fs::write(&old, b"what the user had").unwrap();
    // A directory where the last shard goes: renaming a file over it fails
    // after the first two shards were published.
    std::fs::create_dir(out.join("model-00003-of-00003.safetensors")).unwrap();
    std::fs::write(out.join("model-00003-of-00003.safetensors/keep"), b"x").unwrap();
    let (code, _, stderr) = bounded(
        &[
            "convert",
            s(&fixture("dirs/sharded")),
            "-o",
            s(&out),
            "--force",
        ],
        LIMIT,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert_eq!(std::fs::read(&old).unwrap(), b"what the user had");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "model-00001-of-00003.safetensors",
            "model-00003-of-00003.safetensors"
        ],
        "published files were not taken back, or temp files were left"
    );
}

/// Runs decant under python3 and returns (exit code, peak resident KiB).
fn peak_rss(args: &[&str]) -> (i32, u64) {
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)\n\
                  print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_decant"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|x| x.parse::<i64>().unwrap());
    (it.next().unwrap() as i32, it.next().unwrap() as u64)
}

/// Issue 10: host-side reads are bounded before reading and parsing costs
/// memory in proportion to what is kept. A 60 MB index whose bulk is a key
/// decant does not use cost gigabytes as a JSON tree; a 3 GiB (sparse)
/// receipt in the output directory was read whole on a rerun. Peak
/// resident size is measured.
#[test]
fn host_reads_are_bounded_in_memory() {
    const CEILING_KIB: u64 = 400 << 10;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("model");
    copy_fixture_dir("dirs/sharded", &dir, None);
    let index_path = dir.join("pytorch_model.bin.index.json");
    let mut index: serde_json::Value = read_json(&index_path);
    index["junk"] = serde_json::Value::Array(vec![serde_json::Value::from(0); 30_000_000]);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    drop(index);
    let out = work.path().join("out");
    let key = work.path().join("key");
    assert_eq!(bounded(&["keygen", s(&key)], LIMIT).0, 0);
    let (code, kib) = peak_rss(&["convert", s(&dir), "-o", s(&out), "--key", s(&key)]);
    assert_eq!(code, 0);
    assert!(
        kib < CEILING_KIB,
        "converting with a 60 MB index peaked at {kib} KiB"
    );
    let written = std::fs::read(out.join("model.safetensors.index.json")).unwrap();
    assert!(
        written.len() < 4096,
        "the rewritten index carried the junk over"
    );

    // A 3 GiB sparse receipt where the rerun looks for its own.
    let receipt = out.join("decant.intoto.jsonl");
    std::fs::remove_file(&receipt).unwrap();
    std::fs::File::create(&receipt)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let (code, kib) = peak_rss(&[
        "convert",
        s(&dir),
        "-o",
        s(&out),
        "--key",
        s(&key),
        "--force",
    ]);
    assert_eq!(code, 0);
    assert!(
        kib < CEILING_KIB,
        "a rerun over a 3 GiB receipt peaked at {kib} KiB"
    );
    std::fs::File::create(work.path().join("huge.jsonl"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let (code, kib) = peak_rss(&[
        "verify",
        s(&out),
        "--receipt",
        s(&work.path().join("huge.jsonl")),
        "--trusted-key",
        s(&work.path().join("key.pub")),
    ]);
    assert_eq!(code, 1);
    assert!(
        kib < CEILING_KIB,
        "verify of a 3 GiB receipt peaked at {kib} KiB"
    );
}
