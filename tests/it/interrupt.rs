//! Killing decant (SIGKILL, no chance to clean up) in the middle of a large
//! conversion must leave nothing at the final paths: the output and the
//! receipt appear only by atomic rename after validation.

use crate::common::{decant, fixture};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Writes a torch-zip checkpoint of about `mib` MiB with the benchmark's
/// generator (plain python3, no torch).
fn big_checkpoint(path: &Path, mib: u32) {
    let script = fixture("../bench/make_checkpoint.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(path)
        .args(["--mib", &mib.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("python3 runs the checkpoint generator");
    assert!(status.success());
}

fn partial_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(decant::output::TEMP_PREFIX)
        })
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Starts `decant convert SRC -o OUT --key KEY` and returns once at least
/// 8 MiB of output are being written (its stderr piped, stdout discarded).
fn convert_until_writing(src: &Path, out: &Path, key: &Path) -> std::process::Child {
    let out_dir = out.parent().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_decant"))
        .arg("convert")
        .arg(src)
        .arg("-o")
        .arg(out)
        .arg("--key")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while partial_bytes(out_dir) < (8 << 20) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the conversion finished before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no output was ever written"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

#[test]
fn sigkill_mid_conversion_leaves_no_output_and_no_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    assert_eq!(decant(&["keygen", key.to_str().unwrap()]).code, 0);
    let src = dir.path().join("big.pt");
    big_checkpoint(&src, 768);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("big.safetensors");
    let receipt = out_dir.join("big.safetensors.intoto.jsonl");

    // Once output is being written, kill without warning.
    let mut child = convert_until_writing(&src, &out, &key);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    assert!(!out.exists(), "a partial output reached its final path");
    assert!(
        !receipt.exists(),
        "a receipt exists for an interrupted conversion"
    );
    // Only the recognisable temp file may remain.
    for e in std::fs::read_dir(&out_dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with(decant::output::TEMP_PREFIX),
            "unexpected file {name}"
        );
    }
}

/// Issue 10: SIGINT, SIGTERM or SIGHUP in the middle of a conversion left
/// `.decant-*.partial` files behind. Each now removes the run's temp files
/// and exits 128 + the signal (130, 143, 129), with nothing at the final
/// paths.
#[test]
fn sigint_sigterm_sighup_remove_the_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    assert_eq!(decant(&["keygen", key.to_str().unwrap()]).code, 0);
    let src = dir.path().join("big.pt");
    big_checkpoint(&src, 512);
    for (signal, name, code) in [(2, "INT", 130), (15, "TERM", 143), (1, "HUP", 129)] {
        let out_dir = dir.path().join(format!("out-{name}"));
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("big.safetensors");
        let child = convert_until_writing(&src, &out, &key);
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let run = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(code), "SIG{name}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted by SIG{name}")),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read_dir(&out_dir).unwrap().count(),
            0,
            "SIG{name} left files behind"
        );
    }
}
