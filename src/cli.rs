//! The command line: argument parsing, human and `--json` output, exit
//! statuses. Everything else lives in the library.

use crate::convert::{self, Converted, Options};
use crate::error::{Error, Result};
use crate::keys;
use crate::output;
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
    /// Create an Ed25519 signing key: KEYFILE (PKCS#8 PEM, 0600) and KEYFILE.pub (SPKI PEM).
    Keygen {
        /// Where to write the private key; never overwritten.
        keyfile: PathBuf,
    },
    /// Convert a checkpoint, or every checkpoint in a model directory, to safetensors.
    Convert {
        /// The checkpoint (.bin, .pt, .pth, .ckpt) or a model directory.
        src: PathBuf,
        /// Output path [default: SRC with .safetensors; pytorch_model*.bin -> model*.safetensors].
        /// For a directory: the output directory [default: SRC itself].
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        out: Option<PathBuf>,
        /// Directory mode: conversions to run at once [default: the number of cores].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: Option<u16>,
        /// Sign a receipt for the conversion with this private key (PKCS#8 PEM).
        #[arg(long, value_name = "KEYFILE")]
        key: Option<PathBuf>,
        /// Where to write the receipt [default: OUT.intoto.jsonl]; needs --key.
        #[arg(long, value_name = "PATH", requires = "key")]
        receipt: Option<PathBuf>,
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
    /// Check a receipt before promoting an artifact: exit 0 verified, 1 not verified.
    Verify {
        /// The converted file (.safetensors).
        artifact: PathBuf,
        /// The receipt (DSSE envelope, .intoto.jsonl).
        #[arg(long, value_name = "PATH")]
        receipt: PathBuf,
        /// A trusted public key (SPKI PEM); repeat for rotation (any one may sign).
        #[arg(long = "trusted-key", value_name = "PUB", required = true)]
        trusted_keys: Vec<PathBuf>,
        /// Require the receipt to name this source file (by sha256).
        #[arg(long, value_name = "FILE", conflicts_with = "source_sha256")]
        source: Option<PathBuf>,
        /// Require the receipt to name a source with this sha256.
        #[arg(long, value_name = "HEX")]
        source_sha256: Option<String>,
        /// Require the receipt's sandbox policy to have this sha256.
        #[arg(long, value_name = "HEX")]
        policy_sha256: Option<String>,
        /// Also trust this converter guest digest (the embedded one is always trusted).
        #[arg(long = "allow-converter", value_name = "HEX")]
        allow_converters: Vec<String>,
        /// Re-run the conversion of --source in the sandbox and require the artifact's exact bytes.
        #[arg(long, requires = "source")]
        reproduce: bool,
        /// Policy file for --reproduce, when the receipt names a policy other than the built-in one.
        #[arg(long, value_name = "FILE", requires = "reproduce")]
        policy: Option<PathBuf>,
        /// Print one JSON object with every check on stdout.
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
        Command::Convert { json, .. }
        | Command::Inspect { json, .. }
        | Command::Verify { json, .. } => *json,
        Command::Keygen { .. } => false,
    };
    match run(cli.command) {
        Ok(code) => code,
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

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Keygen { keyfile } => {
            let public = keys::generate(&keyfile)?;
            println!(
                "wrote {} (private, mode 0600) and {}",
                keyfile.display(),
                keys::public_path(&keyfile).display()
            );
            println!("  keyid {}", keys::keyid(&public));
            println!(
                "  fingerprint (sha256 of the SPKI DER) {}",
                keys::fingerprint(&public)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert {
            src,
            out,
            jobs,
            key,
            receipt,
            policy,
            strict,
            force,
            json,
        } => {
            // Everything that can fail before the conversion is checked first.
            let signing = key.as_deref().map(keys::load_signing_key).transpose()?;
            if src.is_dir() {
                if receipt.is_some() {
                    return Err(Error::new(
                        crate::error::Kind::Usage,
                        "--receipt does not apply to a directory",
                        "a directory's receipt is always OUTDIR/decant.intoto.jsonl",
                    ));
                }
                let jobs = jobs
                    .map(usize::from)
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                let sandbox = sandbox(policy)?;
                let opts = crate::model_dir::Options {
                    source: src,
                    output: out,
                    strict,
                    force,
                    jobs,
                    key: signing,
                };
                let progress = crate::progress::Progress::new(json);
                let done = crate::model_dir::convert_dir(&sandbox, &opts, &|e| progress.event(e));
                progress.finish();
                let done = done?;
                crate::progress::print_dir(&done, json);
                return Ok(ExitCode::SUCCESS);
            }
            if jobs.is_some() {
                return Err(Error::new(
                    crate::error::Kind::Usage,
                    "--jobs applies to model directories",
                    "a single checkpoint is converted by one job",
                ));
            }
            let opts = Options {
                output: Some(out.unwrap_or_else(|| convert::default_output(&src))),
                source: src,
                strict,
                force,
            };
            let receipt_path = signing.as_ref().map(|_| {
                receipt.unwrap_or_else(|| {
                    crate::receipt::default_path(opts.output.as_deref().expect("set above"))
                })
            });
            if let Some(path) = &receipt_path {
                output::check_target(path, force)?;
            }
            let sandbox = sandbox(policy)?;
            let prepared = convert::prepare(&sandbox, &opts)?;
            // The receipt is staged before the output is published, so an
            // output never appears without its receipt for lack of space.
            let staged = match (&signing, &receipt_path) {
                (Some(key), Some(path)) => {
                    let env = crate::receipt::sign_statement(
                        &crate::receipt::statement(&receipt_input(
                            &prepared.converted,
                            &sandbox,
                            strict,
                        )),
                        key,
                    );
                    Some((crate::receipt::stage(path, &env)?, path.clone()))
                }
                _ => None,
            };
            let done = prepared.publish()?;
            let receipt_written = match staged {
                Some((pending, path)) => {
                    crate::receipt::publish(pending, force)?;
                    Some(path)
                }
                None => None,
            };
            print_converted(&done, receipt_written.as_deref(), json);
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            artifact,
            receipt,
            trusted_keys,
            source,
            source_sha256,
            policy_sha256,
            allow_converters,
            reproduce,
            policy,
            json,
        } => {
            let args = crate::gate::Args {
                artifact,
                receipt,
                trusted_keys,
                source,
                source_sha256,
                policy_sha256,
                allow_converters,
                reproduce,
                policy,
            };
            let outcome = crate::gate::run(&args)?;
            outcome.print(&args, json);
            Ok(if outcome.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn receipt_input<'a>(
    c: &'a Converted,
    sandbox: &'a Sandbox,
    strict: bool,
) -> crate::receipt::ReceiptInput<'a> {
    let name = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    crate::receipt::ReceiptInput {
        subjects: vec![(name(&c.output), c.output_sha256.clone())],
        sources: vec![crate::receipt::SourceFile {
            name: name(&c.source),
            sha256: c.source_sha256.clone(),
            bytes: c.source_bytes,
        }],
        source_param: name(&c.source),
        converter_sha256: crate::guest::sha256(),
        policy: sandbox.policy(),
        strict,
        reports: vec![(crate::receipt::REPORT_NAME.into(), &c.report)],
        started: c.started,
        finished: c.finished,
    }
}

fn print_converted(c: &Converted, receipt: Option<&std::path::Path>, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"status": "converted", "conversion": c, "receipt": receipt})
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
    print_aliases(&mut out, r, " (recorded in __metadata__)");
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
    if let Some(path) = receipt {
        let _ = writeln!(out, "  receipt: {}", path.display());
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
    print_aliases(&mut out, r, "");
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

/// Most tied-weight lines printed; the rest are counted (the output's
/// `__metadata__` and `--json` have them all).
const MAX_PRINTED_ALIASES: usize = 20;

fn print_aliases(out: &mut impl Write, r: &decant_abi::Report, suffix: &str) {
    for (removed, kept) in r.aliases.iter().take(MAX_PRINTED_ALIASES) {
        let _ = writeln!(
            out,
            "  tied: {} = {}{suffix}",
            crate::error::one_line(removed),
            crate::error::one_line(kept)
        );
    }
    if r.aliases.len() > MAX_PRINTED_ALIASES {
        let _ = writeln!(
            out,
            "  ... and {} more tied names",
            r.aliases.len() - MAX_PRINTED_ALIASES
        );
    }
}
