//! One conversion, end to end: open and hash the source, run the guest,
//! validate its output, apply the user's policy choices, publish atomically.

use crate::error::{Error, Kind, Result};
use crate::output::{self, Pending};
use crate::policy::Policy;
use crate::receipt::{ReceiptInput, SourceFile};
use crate::sandbox::{Entry, Sandbox};
use crate::sink::{Cores, OutputSink};
use crate::trust::statement::{ReceiptReport, Sha256Hex};
use crate::validate;
use decant_abi::{Outcome, Report};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: PathBuf,
    /// Defaults to [`default_output`].
    pub output: Option<PathBuf>,
    /// Refuse instead of dropping non-tensor entries.
    pub strict: bool,
    /// Replace an existing output.
    pub force: bool,
}

/// A finished conversion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    #[serde(serialize_with = "crate::render::lossy_path")]
    pub source: PathBuf,
    pub source_sha256: String,
    pub source_bytes: u64,
    #[serde(serialize_with = "crate::render::lossy_path")]
    pub output: PathBuf,
    pub output_sha256: String,
    pub output_bytes: u64,
    /// Tensor data bytes in the output (its size less the header).
    pub data_bytes: u64,
    pub report: Report,
    #[serde(skip)]
    pub started: SystemTime,
    #[serde(skip)]
    pub finished: SystemTime,
}

/// `pytorch_model*.bin` becomes `model*.safetensors` (Hugging Face's naming);
/// anything else gets its extension replaced.
pub fn default_output(source: &Path) -> PathBuf {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match name
        .strip_prefix("pytorch_model")
        .and_then(|rest| rest.strip_suffix(".bin"))
    {
        Some(middle) => format!("model{middle}.safetensors"),
        None => Path::new(&name)
            .with_extension("safetensors")
            .to_string_lossy()
            .into_owned(),
    };
    source.with_file_name(renamed)
}

/// sha256 of a whole file, read independently of the guest.
pub fn sha256_file(file: &File) -> std::io::Result<String> {
    let mut f = file.try_clone()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        match buf.get(..n) {
            Some([]) | None => return Ok(hex::encode(h.finalize())),
            Some(chunk) => h.update(chunk),
        }
    }
}

fn refused(r: decant_abi::Refusal) -> Error {
    Error::new(Kind::Refused, format!("refused: {}", r.message), r.hint)
}

/// Runs `inspect` in the sandbox.
pub fn inspect(sandbox: &Sandbox, source: &Path) -> Result<Report> {
    let file = crate::open::regular_file(source)?;
    match sandbox.run(Entry::Inspect, file, None)?.0 {
        Outcome::Done(report) => {
            apply_policy(sandbox, &report)?;
            Ok(report)
        }
        Outcome::Refused(r) => Err(refused(r)),
    }
}

/// Refusals that depend on the policy's allowlist narrowing.
fn apply_policy(sandbox: &Sandbox, report: &Report) -> Result<()> {
    if let Some(allowed) = &sandbox.policy().limits.allowed_globals {
        if let Some(g) = report.globals.iter().find(|g| !allowed.contains(g)) {
            return Err(Error::new(
                Kind::Refused,
                format!("refused: global {g} is not allowed by the sandbox policy"),
                format!(
                    "policy {} narrows the allowlist; use a policy that allows it",
                    sandbox.policy().origin
                ),
            ));
        }
    }
    Ok(())
}

/// A validated conversion whose output is still a temp file beside OUT.
/// Dropping it deletes the temp file.
pub struct Prepared {
    pending: Pending,
    pub converted: Converted,
    force: bool,
}

impl Prepared {
    /// Renames the output into place.
    pub fn publish(self) -> Result<Converted> {
        self.pending.publish(self.force)?;
        Ok(self.converted)
    }

    /// The staged output and what it holds, for publishing with others.
    pub fn into_parts(self) -> (Pending, Converted) {
        (self.pending, self.converted)
    }
}

/// Where to sign a receipt for a conversion.
pub struct Signing {
    pub key: SigningKey,
    /// The key file, which nothing may be written over.
    pub key_file: PathBuf,
    /// The receipt's path (file mode; a directory's receipt is always
    /// `OUT/decant.intoto.jsonl`).
    pub receipt: Option<PathBuf>,
}

/// A published single-file conversion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileConverted {
    pub conversion: Converted,
    #[serde(serialize_with = "crate::render::lossy_opt_path")]
    pub receipt: Option<PathBuf>,
}

/// Converts one checkpoint and, with a key, signs its receipt: output and
/// receipt are both staged before either is published, so an output never
/// appears without its receipt.
pub fn convert_file(
    sandbox: &Sandbox,
    opts: &Options,
    signing: Option<&Signing>,
) -> Result<FileConverted> {
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| default_output(&opts.source));
    let receipt_path = signing.map(|s| {
        s.receipt
            .clone()
            .unwrap_or_else(|| crate::receipt::default_path(&output))
    });
    let mut writes: Vec<(&str, &Path)> = vec![("OUT", &output)];
    if let Some(path) = &receipt_path {
        writes.push(("the receipt", path));
    }
    let mut reads: Vec<(&str, &Path)> = vec![("SRC", &opts.source)];
    if let Some(s) = signing {
        reads.push(("the key", &s.key_file));
    }
    let policy = sandbox.policy();
    if policy.origin != crate::policy::DEFAULT_ORIGIN {
        reads.push(("the policy", Path::new(&policy.origin)));
    }
    output::refuse_aliases(&writes, &reads)?;
    if let Some(path) = &receipt_path {
        output::check_receipt_target(path, opts.force)?;
    }
    let opts = Options {
        output: Some(output),
        ..opts.clone()
    };
    let prepared = prepare(sandbox, &opts)?;
    let staged = match (signing, &receipt_path) {
        (Some(s), Some(path)) => Some(crate::receipt::StagedReceipt::stage(
            &receipt_input(&prepared.converted, sandbox.policy(), opts.strict),
            &s.key,
            path,
            opts.force,
        )?),
        _ => None,
    };
    let (pending, conversion) = prepared.into_parts();
    let receipt = crate::receipt::publish_all(vec![pending], opts.force, staged, None)?;
    Ok(FileConverted {
        conversion,
        receipt,
    })
}

fn receipt_input<'a>(c: &Converted, policy: &'a Policy, strict: bool) -> ReceiptInput<'a> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    ReceiptInput {
        subjects: vec![(
            name(&c.output),
            Sha256Hex::from_computed(c.output_sha256.clone()),
        )],
        sources: vec![SourceFile {
            name: name(&c.source),
            sha256: Sha256Hex::from_computed(c.source_sha256.clone()),
            bytes: c.source_bytes,
        }],
        copied: vec![],
        excluded: vec![],
        source_param: name(&c.source),
        origin: None,
        converter_sha256: crate::guest::sha256(),
        policy,
        strict,
        reports: vec![(
            crate::receipt::REPORT_NAME.into(),
            ReceiptReport::from_report(&c.report),
        )],
        started: c.started,
        finished: c.finished,
        shard: None,
    }
}

/// Converts one checkpoint and publishes the output. On any error nothing is
/// left at the output path and no temp file remains.
pub fn convert(sandbox: &Sandbox, opts: &Options) -> Result<Converted> {
    prepare(sandbox, opts)?.publish()
}

/// Runs and validates a conversion without publishing it, so that whatever
/// must accompany the output (a receipt) can be made ready first.
pub fn prepare(sandbox: &Sandbox, opts: &Options) -> Result<Prepared> {
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| default_output(&opts.source));
    output::check_target(&output, opts.force)?;
    let file = crate::open::regular_file(&opts.source)?;
    let pending = Pending::new(&output)?;
    let job = Job {
        source: file,
        source_shown: opts.source.clone(),
        output_shown: output,
        strict: opts.strict,
        force: opts.force,
        cores: Cores::available(),
    };
    prepare_job(sandbox, job, pending)
}

/// One conversion's inputs once files are open: directory mode opens them
/// through its own directory handles.
pub struct Job {
    pub source: File,
    /// How the source and output are named in messages and reports.
    pub source_shown: PathBuf,
    pub output_shown: PathBuf,
    pub strict: bool,
    pub force: bool,
    /// Whether hashing and writing may run on threads of their own.
    pub cores: Cores,
}

/// Converts an open source into a pending output and validates it.
pub fn prepare_job(sandbox: &Sandbox, job: Job, pending: Pending) -> Result<Prepared> {
    let started = SystemTime::now();
    let shown = &job.source_shown;
    let before = job
        .source
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", shown.display()), &e))?;
    if !before.is_file() {
        return Err(Error::new(
            Kind::Usage,
            format!("{} is not a regular file", shown.display()),
            "point decant at a checkpoint file",
        ));
    }
    let sink = OutputSink::new(pending.file()?, job.cores)
        .map_err(|e| Error::io("cannot start the output writer", &e))?;
    let file = &job.source;
    let run = |sink| {
        file.try_clone()
            .map_err(|e| Error::io("cannot reopen the source", &e))
            .and_then(|f| sandbox.run(Entry::Convert, f, Some(sink)))
    };
    let (source_sha256, run) = match job.cores {
        Cores::One => (Ok(sha256_file(file)), run(sink)),
        // Hash the source on another core while the guest converts it.
        Cores::Several => std::thread::scope(|s| {
            let hasher = s.spawn(|| sha256_file(file));
            let run = run(sink);
            (hasher.join(), run)
        }),
    };
    let source_sha256 = source_sha256
        .map_err(|_| Error::internal("the hashing thread panicked"))?
        .map_err(|e| Error::io(format!("cannot read {}", shown.display()), &e))?;
    let (outcome, sink) = run?;
    let report = match outcome {
        Outcome::Done(r) => r,
        Outcome::Refused(r) => return Err(refused(r)),
    };
    let sink = sink.ok_or_else(|| Error::internal("the output sink was lost"))?;

    let after = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", shown.display()), &e))?;
    if after.len() != before.len() || after.modified().ok() != before.modified().ok() {
        return Err(Error::new(
            Kind::Io,
            format!("{} changed while it was being converted", shown.display()),
            "convert a file nothing else is writing",
        ));
    }

    apply_policy(sandbox, &report)?;
    if job.strict && report.dropped_total > 0 {
        let names: Vec<&str> = report
            .dropped
            .iter()
            .take(5)
            .map(|d| d.name.as_str())
            .collect();
        return Err(Error::new(
            Kind::Refused,
            format!(
                "refused (--strict): {} non-tensor entries would be dropped: {}{}",
                report.dropped_total,
                names.join(", "),
                if report.dropped_total > 5 {
                    ", ..."
                } else {
                    ""
                }
            ),
            "run without --strict to drop them (they are listed in the report)",
        ));
    }

    let written = sink
        .finish()
        .map_err(|e| crate::sink::write_failed(&e.to_string()))?;
    let summary = validate::safetensors_file(&pending.file()?, written.bytes)?;
    validate::matches_report(&summary, &report, written.bytes)?;
    let output_sha256 = hex::encode(written.sha256);
    let output_bytes = written.bytes;
    drop(written.file);
    // Synced and closed now: a staged output holds no descriptor while the
    // other files of a directory convert.
    let mut pending = pending;
    pending.close()?;
    Ok(Prepared {
        pending,
        converted: Converted {
            source: job.source_shown,
            source_sha256,
            source_bytes: before.len(),
            output: job.output_shown,
            output_sha256,
            output_bytes,
            data_bytes: output_bytes - 8 - summary.header_len,
            report,
            started,
            finished: SystemTime::now(),
        },
        force: job.force,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names() {
        let d = |s: &str| default_output(Path::new(s)).to_string_lossy().into_owned();
        assert_eq!(d("m/pytorch_model.bin"), "m/model.safetensors");
        assert_eq!(
            d("pytorch_model-00001-of-00003.bin"),
            "model-00001-of-00003.safetensors"
        );
        assert_eq!(d("x/last.ckpt"), "x/last.safetensors");
        assert_eq!(d("weights.pt"), "weights.safetensors");
        assert_eq!(d("noext"), "noext.safetensors");
    }
}
