//! What a directory conversion shows while it runs: a progress bar (bytes,
//! files, ETA) on a terminal, one line per file otherwise, nothing but the
//! final JSON object with `--json`.

use crate::model_dir::{DirConverted, Event};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    files: OnceLock<usize>,
    done: AtomicUsize,
}

impl Progress {
    pub fn new(json: bool) -> Self {
        let terminal = std::io::stderr().is_terminal() && !json;
        Progress {
            bar: terminal
                .then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())),
            lines: !terminal && !json,
            files: OnceLock::new(),
            done: AtomicUsize::new(0),
        }
    }

    pub fn event(&self, e: Event<'_>) {
        match e {
            Event::Started { files, bytes } => {
                let _ = self.files.set(files);
                if let Some(bar) = &self.bar {
                    bar.set_length(bytes);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} (ETA {eta})",
                        )
                        .expect("a valid template"),
                    );
                    bar.set_message(format!("0/{files} files"));
                }
            }
            Event::Converted(c) => {
                self.step(c.source_bytes);
                if self.lines {
                    println!(
                        "converted {} -> {} ({} tensors, sha256 {})",
                        c.source.display(),
                        c.output.display(),
                        c.report.tensors,
                        c.output_sha256
                    );
                }
            }
            Event::Reused { output, bytes } => {
                self.step(bytes);
                if self.lines {
                    println!("unchanged {output} (its receipt already vouches for it)");
                }
            }
        }
    }

    fn step(&self, bytes: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            bar.set_message(format!(
                "{done}/{} files",
                self.files.get().copied().unwrap_or(0)
            ));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The summary after a directory conversion.
pub fn print_dir(d: &DirConverted, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"status": "converted", "directory": d})
        );
        return;
    }
    println!(
        "converted {} checkpoints in {} -> {}{}",
        d.converted.len() + d.reused.len(),
        d.source.display(),
        d.output.display(),
        if d.reused.is_empty() {
            String::new()
        } else {
            format!(" ({} unchanged)", d.reused.len())
        }
    );
    if let Some(index) = &d.index {
        println!("  index: {index}");
    }
    for c in &d.converted {
        let n = c.report.aliases.len();
        if n > 0 {
            println!(
                "  {}: {n} tied names recorded in __metadata__",
                c.output.display()
            );
        }
        if c.report.dropped_total > 0 {
            println!(
                "  {}: dropped {} non-tensor entries",
                c.source.display(),
                c.report.dropped_total
            );
        }
    }
    if !d.left_alone.is_empty() {
        println!(
            "  left alone (not checkpoints): {}",
            crate::error::one_line(&d.left_alone.join(", "))
        );
    }
    if let Some(r) = &d.receipt {
        println!("  receipt: {}", r.display());
    }
}
