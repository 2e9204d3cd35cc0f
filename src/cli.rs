//! The command line: parses arguments, calls the library, renders the
//! result ([`crate::render`]) and maps it to an exit status. Nothing else:
//! every decision lives in the library, where tests reach it.

use crate::convert::{self, Options, Signing};
use crate::error::{Error, Kind, Result};
use crate::policy::Policy;
use crate::render;
use crate::sandbox::Sandbox;
use crate::trust::keys;
use crate::trust::manifest::Severity;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
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
    /// Create a signing key: KEYFILE (PKCS#8 PEM, 0600) and KEYFILE.pub (SPKI PEM).
    Keygen {
        /// Where to write the private key; never overwritten.
        keyfile: PathBuf,
        /// ed25519 signs receipts and manifests (--key); p256 (ECDSA) signs model.sig (--oms-key).
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
    },
    /// Convert a checkpoint, or every checkpoint in a model directory, to safetensors.
    Convert {
        /// The checkpoint (.bin, .pt, .pth, .ckpt) or a model directory; with --shard, one or more model directories.
        #[arg(required = true, value_name = "SRC")]
        srcs: Vec<PathBuf>,
        /// Output path [default: SRC with .safetensors; pytorch_model*.bin -> model*.safetensors].
        /// For a directory: the output directory [default: SRC itself].
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        out: Option<PathBuf>,
        /// A Hugging Face cache repository (models--ORG--NAME): the branch, tag or commit to convert [default: main].
        #[arg(long, value_name = "REF")]
        revision: Option<String>,
        /// Directory mode: cores to keep busy, one conversion on each [default: the number of cores].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: Option<u16>,
        /// Sign a receipt for the conversion with this private key (PKCS#8 PEM).
        #[arg(long, value_name = "KEYFILE")]
        key: Option<PathBuf>,
        /// Where to write the receipt [default: OUT.intoto.jsonl]; needs --key.
        #[arg(long, value_name = "PATH", requires = "key")]
        receipt: Option<PathBuf>,
        /// Directory mode: also write OUTDIR/model.sig, an OpenSSF model signature, with this ECDSA P-256 key; needs --key.
        #[arg(long = "oms-key", value_name = "KEYFILE", requires = "key")]
        oms_key: Option<PathBuf>,
        /// Sandbox policy file [default: the built-in sandbox-policy/default.json].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Directory mode: also write a CycloneDX 1.6 ML-BOM here (outside the model directories).
        #[arg(long, value_name = "PATH")]
        cyclonedx: Option<PathBuf>,
        /// Refuse the checkpoint instead of dropping non-tensor entries.
        #[arg(long)]
        strict: bool,
        /// Convert only shard I of N of the batch `decant plan SRC... --shards N` shows (numbered from 1).
        #[arg(long, value_name = "I/N")]
        shard: Option<crate::batch::Shard>,
        /// Replace OUT if it exists (and OUTDIR/model.sig, with --oms-key).
        #[arg(long)]
        force: bool,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Split a batch of model directories into N shards balanced by bytes, for `convert --shard I/N`.
    Plan {
        /// The model directories of the batch.
        #[arg(required = true, value_name = "SRC")]
        srcs: Vec<PathBuf>,
        /// How many shards (machines) to split the work into.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=crate::batch::MAX_SHARDS as i64))]
        shards: u32,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a receipt before promoting an artifact: exit 0 verified, 1 not verified.
    Verify {
        /// The converted file (.safetensors).
        artifact: PathBuf,
        /// The receipt (DSSE envelope, .intoto.jsonl); for a directory converted with --shard, every shard's receipt.
        #[arg(long, value_name = "PATH", required = true, num_args = 1..)]
        receipt: Vec<PathBuf>,
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
        /// With a bundle manifest: require this binding (and, with =VALUE, this value); repeatable.
        #[arg(long = "require", value_name = "NAME[=VALUE]")]
        require: Vec<String>,
        /// With a bundle manifest: fail if it records a finding at or above this level.
        #[arg(long = "fail-on", value_name = "LEVEL", default_value = "high")]
        fail_on: Severity,
        /// Write a signed SLSA verification summary (VSA v1) of the result here, passed or failed; needs --key.
        #[arg(long, value_name = "PATH", requires = "key")]
        vsa: Option<PathBuf>,
        /// The private key (PKCS#8 PEM) that signs the VSA; needs --vsa.
        #[arg(long, value_name = "KEYFILE", requires = "vsa")]
        key: Option<PathBuf>,
        /// The VSA's resourceUri [default: the file: URI of ARTIFACT]; needs --vsa.
        #[arg(long, value_name = "URI", requires = "vsa")]
        resource_uri: Option<String>,
        /// Replace an existing VSA; needs --vsa.
        #[arg(long, requires = "vsa")]
        force: bool,
        /// Print one JSON object with every check on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Classify every file of a bundle, with findings: exit 0 if none is at or above --fail-on, 1 otherwise.
    Audit {
        /// The bundle's directory.
        dir: PathBuf,
        /// A public key (SPKI PEM) whose conversion receipts in the bundle count as proof; repeatable.
        #[arg(long = "trusted-key", value_name = "PUB")]
        trusted_keys: Vec<PathBuf>,
        /// Fail (exit 1) on a finding at or above this level: info, low, medium, high, critical.
        #[arg(long = "fail-on", value_name = "LEVEL", default_value = "high")]
        fail_on: Severity,
        /// Sandbox policy file (limits for scanning each file).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign a manifest of a bundle: every file and digest, the audit's findings, and bindings.
    Attest {
        /// The bundle's directory.
        dir: PathBuf,
        /// The private key to sign with (PKCS#8 PEM).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// Bind what the bundle is promoted with (evaluation run, approval, upstream revision...); repeatable.
        #[arg(long = "bind", value_name = "NAME=VALUE")]
        bind: Vec<String>,
        /// Record this binding's revision even though it can move (a branch or tag); repeatable.
        #[arg(long = "allow-mutable", value_name = "NAME")]
        allow_mutable: Vec<String>,
        /// A public key whose conversion receipts in the bundle count as proof; repeatable.
        #[arg(long = "trusted-key", value_name = "PUB")]
        trusted_keys: Vec<PathBuf>,
        /// Where to write the manifest [default: DIR/decant.bundle.intoto.jsonl].
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        out: Option<PathBuf>,
        /// Also write DIR/model.sig, an OpenSSF model signature, with this ECDSA P-256 key.
        #[arg(long = "oms-key", value_name = "KEYFILE")]
        oms_key: Option<PathBuf>,
        /// Sandbox policy file (limits for scanning each file).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Also write a CycloneDX 1.6 ML-BOM of the bundle here (outside DIR).
        #[arg(long, value_name = "PATH")]
        cyclonedx: Option<PathBuf>,
        /// Replace an existing manifest (and BOM, and DIR/model.sig with --oms-key).
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

/// The kinds of key `decant keygen` makes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    /// Ed25519, for receipts and manifests (--key).
    Ed25519,
    /// ECDSA P-256, for OpenSSF model signatures (--oms-key).
    P256,
}

/// Runs the command line; returns the process exit status.
pub fn main() -> ExitCode {
    run_args(std::env::args_os().collect())
}

/// [`main`] for the given arguments (the first is the program name).
pub fn run_args(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e, &args),
    };
    if let Err(e) = crate::output::clean_up_on_signals() {
        render::error(&e, false);
        return ExitCode::from(e.kind.exit_code());
    }
    let json = match &cli.command {
        Command::Convert { json, .. }
        | Command::Inspect { json, .. }
        | Command::Verify { json, .. }
        | Command::Audit { json, .. }
        | Command::Attest { json, .. }
        | Command::Plan { json, .. } => *json,
        Command::Keygen { .. } => false,
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            render::error(&e, json);
            ExitCode::from(e.kind.exit_code())
        }
    }
}

/// Help and version go to stdout as clap writes them; every other argument
/// error becomes a usage error in decant's own format (`decant:` what,
/// `hint:` what to do; one JSON object with `--json`), exit 2.
fn argument_error(e: &clap::Error, args: &[OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        render::emit(&e.render().to_string());
        return ExitCode::SUCCESS;
    }
    let json = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    let err = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        Error::new(
            Kind::Usage,
            "no command given",
            "usage: decant <COMMAND>; run decant --help to see the commands",
        )
    } else {
        usage_error(&e.render().to_string(), subcommand(args))
    };
    render::error(&err, json);
    ExitCode::from(err.kind.exit_code())
}

/// The subcommand named on the command line, if it is one of decant's.
fn subcommand(args: &[OsString]) -> Option<&'static str> {
    let first = args.get(1)?.to_str()?;
    [
        "keygen", "convert", "verify", "inspect", "audit", "attest", "plan",
    ]
    .into_iter()
    .find(|c| *c == first)
}

/// clap's rendered error as one line of what and one of hint: the message
/// paragraph joined into one line, clap's tips and the usage line as the
/// hint (or where to read the usage).
fn usage_error(rendered: &str, subcommand: Option<&str>) -> Error {
    let mut message = Vec::new();
    let mut tips = Vec::new();
    let mut usage = None;
    let mut in_message = true;
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            in_message = false;
            continue;
        }
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_string());
        } else if let Some(t) = line.strip_prefix("tip: ") {
            tips.push(t.to_string());
        } else if line.starts_with("For more information") {
        } else if in_message {
            message.push(line.strip_prefix("error: ").unwrap_or(line).to_string());
        }
    }
    let mut hint = tips.join("; ");
    if let Some(u) = usage {
        if !hint.is_empty() {
            hint.push_str("; ");
        }
        hint.push_str(&format!("usage: {u}"));
    }
    if hint.is_empty() {
        hint = match subcommand {
            Some(c) => format!("run decant {c} --help"),
            None => "run decant --help".into(),
        };
    }
    Error::new(Kind::Usage, message.join(" "), hint)
}

/// Audit and attest take a bundle's directory.
fn require_dir(dir: &std::path::Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::new(
        Kind::Usage,
        format!("{} is not a directory", dir.display()),
        "give the directory of the bundle that will be served",
    ))
}

fn sandbox(policy: Option<PathBuf>) -> Result<Sandbox> {
    Sandbox::new(Policy::from_option(policy.as_deref())?)
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Keygen {
            keyfile,
            key_type: KeyType::Ed25519,
        } => {
            let public = keys::generate(&keyfile)?;
            render::keygen(
                &keyfile,
                &keys::public_path(&keyfile),
                &keys::keyid(&public),
                &keys::fingerprint(&public),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen {
            keyfile,
            key_type: KeyType::P256,
        } => {
            let public = keys::generate_p256(&keyfile)?;
            render::keygen_p256(
                &keyfile,
                &keys::public_path(&keyfile),
                &keys::p256_fingerprint(&public)?,
                &crate::trust::oms::key_hint(&public.into())?,
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert {
            srcs,
            out,
            revision,
            jobs,
            key,
            receipt,
            oms_key,
            policy,
            cyclonedx,
            strict,
            shard,
            force,
            json,
        } => {
            if let Some(shard) = shard {
                if let Some(flag) = [
                    ("--cyclonedx", cyclonedx.is_some()),
                    ("--oms-key", oms_key.is_some()),
                ]
                .iter()
                .find(|(_, given)| *given)
                .map(|(flag, _)| flag)
                {
                    return Err(Error::new(
                        Kind::Usage,
                        format!("{flag} does not apply with --shard"),
                        "a shard converts part of each directory; sign or describe the gathered directory with decant attest (--oms-key, --cyclonedx)",
                    ));
                }
                return convert_shard(
                    srcs, shard, out, revision, jobs, key, receipt, policy, strict, force, json,
                );
            }
            let src = match <[PathBuf; 1]>::try_from(srcs) {
                Ok([src]) => src,
                Err(_) => {
                    return Err(Error::new(
                        Kind::Usage,
                        "convert takes one SRC",
                        "give one checkpoint or model directory; several model directories are converted with --shard I/N (see decant plan)",
                    ))
                }
            };
            if !src.is_dir() && cyclonedx.is_some() {
                return Err(Error::new(
                    Kind::Usage,
                    "--cyclonedx applies to model directories",
                    "a single file's receipt records its source and output; convert the model's directory for an ML-BOM",
                ));
            }
            if let Some(bom) = &cyclonedx {
                let reads: Vec<(&str, &std::path::Path)> = key
                    .iter()
                    .map(|k| ("the key", k.as_path()))
                    .chain(policy.iter().map(|p| ("the policy", p.as_path())))
                    .collect();
                crate::output::refuse_aliases(&[("the BOM", bom)], &reads)?;
            }
            if !src.is_dir() && oms_key.is_some() {
                return Err(Error::new(
                    Kind::Usage,
                    "--oms-key applies to model directories",
                    "an OpenSSF model signature (model.sig) signs a directory: convert the directory, or sign a bundle with decant attest DIR --oms-key",
                ));
            }
            if src.is_dir() && receipt.is_some() {
                return Err(Error::new(
                    Kind::Usage,
                    "--receipt does not apply to a directory",
                    "a directory's receipt is always OUTDIR/decant.intoto.jsonl",
                ));
            }
            if !src.is_dir() && revision.is_some() {
                return Err(Error::new(
                    Kind::Usage,
                    "--revision applies to a Hugging Face cache repository directory",
                    "give the cache's models--ORG--NAME directory as SRC",
                ));
            }
            if !src.is_dir() && jobs.is_some() {
                return Err(Error::new(
                    Kind::Usage,
                    "--jobs applies to model directories",
                    "a single checkpoint is converted by one job",
                ));
            }
            // Everything that can fail before the conversion is checked first.
            let key_file = key.clone();
            let key = key.as_deref().map(keys::load_signing_key).transpose()?;
            let oms_key = oms_key
                .as_deref()
                .map(keys::load_oms_signing_key)
                .transpose()?;
            let sandbox = sandbox(policy)?;
            if src.is_dir() {
                let opts = crate::model_dir::Options {
                    source: src,
                    revision,
                    output: out,
                    strict,
                    force,
                    jobs: jobs.map(usize::from).unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(1, |n| n.get())
                    }),
                    key,
                    shard: None,
                    cyclonedx,
                    oms_key,
                };
                let progress = crate::progress::Progress::new(json);
                let done = crate::model_dir::convert_dir(&sandbox, &opts, &|e| progress.event(e));
                progress.finish();
                render::dir_converted(&done?, json);
                return Ok(ExitCode::SUCCESS);
            }
            let opts = Options {
                source: src,
                output: out,
                strict,
                force,
            };
            let signing = key.zip(key_file).map(|(key, key_file)| Signing {
                key,
                key_file,
                receipt,
            });
            let done = convert::convert_file(&sandbox, &opts, signing.as_ref())?;
            render::converted(&done, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            dir,
            trusted_keys,
            fail_on,
            policy,
            json,
        } => {
            let keys = keys::load_public_keys(&trusted_keys)?;
            require_dir(&dir)?;
            let audit = crate::bundle::audit::audit(
                &sandbox(policy)?,
                &crate::bundle::audit::Options {
                    dir: &dir,
                    trusted_keys: &keys,
                    fail_on,
                    except: None,
                },
            )?;
            render::audit(&audit, json);
            Ok(verdict_status(audit.passed()))
        }
        Command::Attest {
            dir,
            key,
            bind,
            allow_mutable,
            trusted_keys,
            out,
            oms_key,
            policy,
            cyclonedx,
            force,
            json,
        } => {
            let signing = keys::load_signing_key(&key)?;
            let oms_signing = oms_key
                .as_deref()
                .map(keys::load_oms_signing_key)
                .transpose()?;
            let keys = keys::load_public_keys(&trusted_keys)?;
            require_dir(&dir)?;
            if let Some(bom) = &cyclonedx {
                let reads: Vec<(&str, &std::path::Path)> = trusted_keys
                    .iter()
                    .map(|k| ("a trusted key", k.as_path()))
                    .chain(policy.iter().map(|p| ("the policy", p.as_path())))
                    .collect();
                crate::output::refuse_aliases(&[("the BOM", bom)], &reads)?;
            }
            let done = crate::bundle::attest::attest(
                &sandbox(policy)?,
                &crate::bundle::attest::Options {
                    dir: &dir,
                    key: &signing,
                    key_file: &key,
                    bindings: &bind,
                    allow_mutable: &allow_mutable,
                    trusted_keys: &keys,
                    output: out.as_deref(),
                    cyclonedx: cyclonedx.as_deref(),
                    force,
                    oms_key: oms_signing.as_ref().zip(oms_key.as_deref()),
                },
            )?;
            render::attested(&done, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { srcs, shards, json } => {
            let plan = crate::batch::plan(&srcs, shards)?;
            render::batch_plan(&plan, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { src, policy, json } => {
            let report = convert::inspect(&sandbox(policy)?, &src)?;
            render::inspection(&src, &report, json);
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
            require,
            fail_on,
            vsa,
            key,
            resource_uri,
            force,
            json,
        } => {
            let vsa = match (vsa, &key) {
                (Some(path), Some(key)) => {
                    let mut reads = vec![("the artifact", artifact.as_path())];
                    reads.extend(receipt.iter().map(|r| ("the receipt", r.as_path())));
                    reads.extend(trusted_keys.iter().map(|k| ("a trusted key", k.as_path())));
                    reads.extend(source.iter().map(|s| ("the source", s.as_path())));
                    reads.extend(policy.iter().map(|p| ("the policy", p.as_path())));
                    Some(crate::gate::VsaOutput::prepare(
                        path,
                        key,
                        resource_uri,
                        force,
                        &artifact,
                        &reads,
                    )?)
                }
                _ => None,
            };
            // A directory's one receipt is read now to tell a shard receipt
            // (checked as a set) from the rest; an unreadable one is
            // reported by the path that reads it below.
            let first = match (receipt.as_slice(), artifact.is_dir()) {
                ([only], true) => crate::gate::ReceiptFile::read(only).ok(),
                _ => None,
            };
            let set = receipt.len() > 1 || first.as_ref().is_some_and(|r| r.is_shard_receipt());
            if set {
                let pins = [
                    ("--source", source.is_some()),
                    ("--source-sha256", source_sha256.is_some()),
                    ("--reproduce", reproduce),
                    ("--require", !require.is_empty()),
                ];
                if let Some((flag, _)) = pins.iter().find(|(_, given)| *given) {
                    return Err(Error::new(
                        Kind::Usage,
                        format!("{flag} does not apply to a directory verified with shard receipts"),
                        "verify the gathered directory with every shard's receipt and --trusted-key (and --policy-sha256, --allow-converter)",
                    ));
                }
                let receipts = match first {
                    Some(r) => vec![r],
                    None => receipt
                        .iter()
                        .map(|r| crate::gate::ReceiptFile::read(r))
                        .collect::<Result<Vec<_>>>()?,
                };
                if let Some(m) = receipts.iter().find(|r| r.is_bundle_manifest()) {
                    return Err(Error::new(
                        Kind::Usage,
                        format!(
                            "{} is a bundle manifest, which is verified on its own",
                            m.path.display()
                        ),
                        "give a bundle manifest as the only --receipt",
                    ));
                }
                let mut outcome = crate::gate::run_set(&crate::gate::SetArgs {
                    dir: artifact,
                    receipts,
                    trusted_keys,
                    policy_sha256,
                    allow_converters,
                })?;
                if let Some(vsa) = &vsa {
                    vsa.write_conversion(&mut outcome)?;
                }
                render::verification(&outcome, json);
                return Ok(verdict_status(outcome.passed()));
            }
            let receipt = match (first, receipt.first()) {
                (Some(r), _) => r,
                (None, Some(r)) => crate::gate::ReceiptFile::read(r)?,
                (None, None) => {
                    return Err(Error::new(
                        Kind::Usage,
                        "no --receipt was given",
                        "give the receipt with --receipt PATH",
                    ))
                }
            };
            if receipt.is_bundle_manifest() {
                let pins = [
                    ("--source", source.is_some()),
                    ("--source-sha256", source_sha256.is_some()),
                    ("--policy-sha256", policy_sha256.is_some()),
                    ("--allow-converter", !allow_converters.is_empty()),
                    ("--reproduce", reproduce),
                ];
                if let Some((flag, _)) = pins.iter().find(|(_, given)| *given) {
                    return Err(Error::new(
                        Kind::Usage,
                        format!("{flag} applies to conversion receipts, and {} is a bundle manifest", receipt.path.display()),
                        "a manifest is checked with --require and --fail-on; verify conversion receipts with their own --receipt",
                    ));
                }
                let mut outcome = crate::gate::run_bundle(&crate::gate::BundleArgs {
                    dir: artifact,
                    manifest: receipt,
                    trusted_keys,
                    required: require,
                    fail_on,
                })?;
                if let Some(vsa) = &vsa {
                    vsa.write_bundle(&mut outcome)?;
                }
                render::bundle_verification(&outcome, json);
                return Ok(verdict_status(outcome.passed()));
            }
            if !require.is_empty() {
                return Err(Error::new(
                    Kind::Usage,
                    format!(
                        "--require applies to bundle manifests, and {} is not one",
                        receipt.path.display()
                    ),
                    "bindings are made with decant attest; verify its manifest with --require",
                ));
            }
            let mut outcome = crate::gate::run(&crate::gate::Args {
                artifact,
                receipt,
                trusted_keys,
                source,
                source_sha256,
                policy_sha256,
                allow_converters,
                reproduce,
                policy,
            })?;
            if let Some(vsa) = &vsa {
                vsa.write_conversion(&mut outcome)?;
            }
            render::verification(&outcome, json);
            Ok(verdict_status(outcome.passed()))
        }
    }
}

/// `decant convert SRC... --shard I/N`.
#[allow(clippy::too_many_arguments)]
fn convert_shard(
    srcs: Vec<PathBuf>,
    shard: crate::batch::Shard,
    out: Option<PathBuf>,
    revision: Option<String>,
    jobs: Option<u16>,
    key: Option<PathBuf>,
    receipt: Option<PathBuf>,
    policy: Option<PathBuf>,
    strict: bool,
    force: bool,
    json: bool,
) -> Result<ExitCode> {
    if revision.is_some() || receipt.is_some() {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "{} does not apply with --shard",
                if revision.is_some() { "--revision" } else { "--receipt" }
            ),
            "give each source as a directory (a cache snapshot's snapshots/<commit>); each shard's receipt is OUT/decant.shard-I-of-N.intoto.jsonl",
        ));
    }
    let key = key.as_deref().map(keys::load_signing_key).transpose()?;
    let sandbox = sandbox(policy)?;
    let opts = crate::batch::ShardOptions {
        sources: srcs,
        output: out,
        shard,
        strict,
        force,
        jobs: jobs
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        key,
    };
    let progress = crate::progress::Progress::new(json);
    let done = crate::batch::convert_shard(&sandbox, &opts, &|e| progress.event(e));
    progress.finish();
    render::shard_converted(&done?, json);
    Ok(ExitCode::SUCCESS)
}

/// 0 when every check passed, 1 when one failed (not verified, or a
/// finding at or above --fail-on).
fn verdict_status(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
