//! What a directory conversion shows while it runs: a progress bar (bytes,
//! files, ETA) on a terminal, one line per file otherwise, nothing but the
//! final JSON object with `--json`.

use crate::model_dir::Event;
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
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(format!("0/{files} files"));
                }
            }
            Event::Converted(c) => {
                self.step(c.source_bytes);
                if self.lines {
                    crate::render::dir_file_converted(c);
                }
            }
            Event::Reused { output, bytes } => {
                self.step(bytes);
                if self.lines {
                    crate::render::dir_file_reused(output);
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
