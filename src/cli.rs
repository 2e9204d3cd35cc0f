//! The command line: argument parsing, human and `--json` output, exit
//! statuses. Everything else lives in the library.

use crate::convert::{self, Converted, Options};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::sandbox::Sandbox;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "decant",
    version,
    about = "Convert pickle-based PyTorch checkpoints to safetensors in a wasm sandbox, executing nothing",
    after_help = "Exit status: 0 done, 1 refused (unsafe, unsupported or corrupt input), 2 usage, I/O or internal error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Convert a checkpoint to safetensors.
    Convert {
        /// The checkpoint (.bin, .pt, .pth, .ckpt).
        src: PathBuf,
        /// Output path [default: SRC with .safetensors; pytorch_model*.bin -> model*.safetensors].
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        out: Option<PathBuf>,
        /// Sandbox policy file [default: the built-in sandbox-policy/default.json].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Refuse the checkpoint instead of dropping non-tensor entries.
        #[arg(long)]
        strict: bool,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what a checkpoint contains, without converting it.
    Inspect {
        /// The checkpoint.
        src: PathBuf,
        /// Sandbox policy file.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line; returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match &cli.command {
        Command::Convert { json, .. } | Command::Inspect { json, .. } => *json,
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e, json);
            ExitCode::from(e.kind.exit_code())
        }
    }
}

fn report_error(e: &Error, json: bool) {
    if json {
        let v = serde_json::json!({
            "status": if e.kind.exit_code() == 1 { "refused" } else { "error" },
            "kind": e.kind,
            "message": e.message,
            "hint": e.hint,
        });
        println!("{v}");
    } else {
        eprintln!("decant: {}", e.message);
        eprintln!("hint: {}", e.hint);
    }
}

fn sandbox(policy: Option<PathBuf>) -> Result<Sandbox> {
    let policy = match policy {
        Some(p) => Policy::load(&p)?,
        None => Policy::default_policy(),
    };
    Sandbox::new(crate::guest::WASM, policy)
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Convert {
            src,
            out,
            policy,
            strict,
            force,
            json,
        } => {
            let sandbox = sandbox(policy)?;
            let done = convert::convert(
                &sandbox,
                &Options {
                    source: src,
                    output: out,
                    strict,
                    force,
                },
            )?;
            print_converted(&done, json);
            Ok(())
        }
        Command::Inspect { src, policy, json } => {
            let sandbox = sandbox(policy)?;
            let report = convert::inspect(&sandbox, &src)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"status": "inspected", "source": src, "report": report})
                );
            } else {
                print_inspection(&src, &report);
            }
            Ok(())
        }
    }
}

fn print_converted(c: &Converted, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"status": "converted", "conversion": c})
        );
        return;
    }
    let r = &c.report;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "converted {} -> {} ({} tensors, {} bytes, sha256 {})",
        c.source.display(),
        c.output.display(),
        r.tensors,
        c.output_bytes,
        c.output_sha256
    );
    let _ = writeln!(
        out,
        "  source: {} format, pickle protocol {}, {} byte order, sha256 {}",
        r.format, r.pickle_protocol, r.byteorder, c.source_sha256
    );
    for (removed, kept) in &r.aliases {
        let _ = writeln!(out, "  tied: {removed} = {kept} (recorded in __metadata__)");
    }
    if r.dropped_total > 0 {
        let _ = writeln!(out, "  dropped {} non-tensor entries:", r.dropped_total);
        for d in &r.dropped {
            let _ = writeln!(out, "    {} ({})", crate::error::one_line(&d.name), d.kind);
        }
    }
    if !r.ignored.is_empty() {
        let _ = writeln!(
            out,
            "  converted only state_dict; ignored top-level entries: {}",
            crate::error::one_line(&r.ignored.join(", "))
        );
    }
}

fn print_inspection(src: &std::path::Path, r: &decant_abi::Report) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: {} format, pickle protocol {}, {} byte order, {} tensors",
        src.display(),
        r.format,
        r.pickle_protocol,
        r.byteorder,
        r.tensors
    );
    for t in &r.tensor_list {
        let _ = writeln!(
            out,
            "  {} {} {:?}{}",
            crate::error::one_line(&t.name),
            t.dtype,
            t.shape,
            if t.strided { " (strided view)" } else { "" }
        );
    }
    for (removed, kept) in &r.aliases {
        let _ = writeln!(out, "  tied: {removed} = {kept}");
    }
    for d in &r.dropped {
        let _ = writeln!(
            out,
            "  not a tensor: {} ({})",
            crate::error::one_line(&d.name),
            d.kind
        );
    }
    if !r.ignored.is_empty() {
        let _ = writeln!(
            out,
            "  outside state_dict: {}",
            crate::error::one_line(&r.ignored.join(", "))
        );
    }
    let _ = writeln!(out, "  globals: {}", r.globals.join(", "));
}
