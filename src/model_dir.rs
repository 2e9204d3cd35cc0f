//! Model directories: every checkpoint in a Hugging Face-style directory,
//! converted as one unit.
//!
//! - `pytorch_model.bin` becomes `model.safetensors`, shards
//!   `pytorch_model-0000K-of-0000N.bin` become `model-0000K-of-0000N.safetensors`,
//!   other `*.bin`, `*.pt`, `*.pth`, `*.ckpt` their `.safetensors` names;
//!   `pytorch_model.bin.index.json` becomes `model.safetensors.index.json`
//!   (weight_map renamed, `metadata.total_size` recomputed, everything else
//!   kept). Other files are left alone and listed.
//! - Every path resolves through a cap-std [`Dir`] handle, and names taken
//!   from the index must be plain file names: `../x`, an absolute path, a
//!   subdirectory or a symlink leading out is refused.
//! - All or nothing: files convert in parallel into temp files; if any
//!   fails, every failure is listed and nothing is published.
//! - One receipt (`decant.intoto.jsonl`) covers every output; a rerun with
//!   the same key reuses outputs the existing receipt already vouches for.

use crate::convert::{self, default_output, sha256_file, Converted, Job, Prepared};
use crate::error::{Error, Kind, Result};
use crate::guest;
use crate::output::{self, Pending};
use crate::policy::Policy;
use crate::receipt::{self, SourceFile, StagedReceipt};
use crate::sandbox::Sandbox;
use crate::trust::dsse::MAX_RECEIPT_BYTES;
use crate::trust::statement::{ReceiptReport, Sha256Hex};
use crate::trust::verify::{self, Trust};
use cap_std::fs::Dir;
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

/// The sharded-checkpoint index Hugging Face writes next to `.bin` shards.
pub const INDEX: &str = "pytorch_model.bin.index.json";
/// Its safetensors counterpart.
pub const OUT_INDEX: &str = "model.safetensors.index.json";
/// The directory's receipt, in the output directory.
pub const RECEIPT: &str = "decant.intoto.jsonl";
/// A directory receipt's report byproduct for an output is `<output>` + this.
const REPORT_SUFFIX: &str = ".report.json";
const CHECKPOINT_EXTENSIONS: [&str; 4] = ["bin", "pt", "pth", "ckpt"];
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// What the user asked for.
pub struct Options {
    pub source: PathBuf,
    /// Defaults to the source directory.
    pub output: Option<PathBuf>,
    pub strict: bool,
    pub force: bool,
    /// Conversions run at once.
    pub jobs: usize,
    /// Sign a receipt with this key.
    pub key: Option<SigningKey>,
}

/// One checkpoint of the directory.
#[derive(Debug, Clone)]
pub struct FilePlan {
    pub source: String,
    pub output: String,
    pub bytes: u64,
    /// The source's (device, inode), so that no output can be it.
    pub id: (u64, u64),
}

/// What the directory holds and what each file becomes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub files: Vec<FilePlan>,
    /// The parsed `pytorch_model.bin.index.json`, if present.
    pub index: Option<SourceIndex>,
    /// Other files (configs, tokenizer files, README, licence, code):
    /// copied unchanged into OUT and vouched for as copied.
    pub copied: Vec<String>,
    /// Subdirectories (`name/`), and files a conversion writes in their
    /// place (an existing `model.safetensors` beside `pytorch_model.bin`,
    /// an earlier receipt, decant's temp files): not copied.
    pub left_alone: Vec<String>,
    /// Pickles training tools write that are not weights: not converted.
    pub excluded: Vec<Excluded>,
}

/// A checkpoint-looking file that is not weights, and why it is skipped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Excluded {
    pub name: String,
    pub reason: &'static str,
}

/// Pickles that training tools (Hugging Face Trainer, PyTorch Lightning)
/// write next to the weights and no loader needs: converting them would
/// fail (they pickle arbitrary classes) and copying them would serve a
/// pickle. They are excluded and listed; `--strict` refuses instead.
pub fn training_leftover(name: &str) -> Option<&'static str> {
    match name {
        "training_args.bin" => Some("Trainer's pickled TrainingArguments, not weights"),
        "optimizer.pt" | "optimizer.bin" => Some("optimizer state, not weights"),
        "scheduler.pt" => Some("learning-rate scheduler state, not weights"),
        "scaler.pt" => Some("mixed-precision grad scaler state, not weights"),
        _ if name.starts_with("rng_state") && name.ends_with(".pth") => {
            Some("random number generator state, not weights")
        }
        _ => None,
    }
}

impl Plan {
    /// Every name a conversion of this plan writes in OUT: the outputs, the
    /// new index and the receipt.
    fn written(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .map(|f| f.output.as_str())
            .chain([OUT_INDEX, RECEIPT])
    }
}

/// Progress events for the command line.
pub enum Event<'a> {
    Started { files: usize, bytes: u64 },
    Converted(&'a Converted),
    Reused { output: &'a str, bytes: u64 },
}

/// A published directory conversion.
#[derive(Debug, serde::Serialize)]
pub struct DirConverted {
    #[serde(serialize_with = "crate::render::lossy_path")]
    pub source: PathBuf,
    #[serde(serialize_with = "crate::render::lossy_path")]
    pub output: PathBuf,
    pub converted: Vec<Converted>,
    /// Outputs an existing receipt already vouched for, left as they were.
    pub reused: Vec<String>,
    pub index: Option<String>,
    pub left_alone: Vec<String>,
    /// Files copied unchanged (or already there, identical).
    pub copied: Vec<String>,
    /// Copied files a loader may run: `.py` files, and configs with an
    /// `auto_map` (which `trust_remote_code=True` follows).
    pub code: Vec<String>,
    /// Training state not converted, with why.
    pub excluded: Vec<Excluded>,
    #[serde(serialize_with = "crate::render::lossy_opt_path")]
    pub receipt: Option<PathBuf>,
}

fn refused(message: String, hint: &str) -> Error {
    Error::new(Kind::Refused, format!("refused: {message}"), hint)
}

/// A name that stays in the directory: no separators, no `.`/`..`, no NUL.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn is_checkpoint(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| CHECKPOINT_EXTENSIONS.contains(&e.to_string_lossy().as_ref()))
}

fn output_name(source: &str) -> String {
    default_output(Path::new(source))
        .to_string_lossy()
        .into_owned()
}

/// Reads the directory and decides what each file becomes.
pub fn plan(dir: &Dir, shown: &Path) -> Result<Plan> {
    let io = |e: std::io::Error| Error::io(format!("cannot read {}", shown.display()), &e);
    let mut names = Vec::new();
    for entry in dir.entries().map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map_err(io)?.is_dir();
        names.push((name, is_dir));
    }
    names.sort();
    let mut plan = Plan::default();
    for (name, is_dir) in names {
        if is_dir {
            plan.left_alone.push(format!("{name}/"));
        } else if let Some(reason) = training_leftover(&name) {
            plan.excluded.push(Excluded { name, reason });
        } else if name == INDEX {
            plan.index = Some(read_index(dir, shown)?);
        } else if is_checkpoint(&name) {
            let meta = open_checked(dir, &name, shown)?.metadata().map_err(io)?;
            if !meta.is_file() {
                return Err(refused(
                    format!("{} is not a regular file", shown.join(&name).display()),
                    "a model directory holds plain checkpoint files",
                ));
            }
            plan.files.push(FilePlan {
                output: output_name(&name),
                source: name,
                bytes: meta.len(),
                id: (
                    std::os::unix::fs::MetadataExt::dev(&meta),
                    std::os::unix::fs::MetadataExt::ino(&meta),
                ),
            });
        } else {
            plan.copied.push(name);
        }
    }
    // What a conversion writes is not copied over: the outputs, the new
    // index, the receipt, and decant's own temp files.
    let candidates = std::mem::take(&mut plan.copied);
    let written: BTreeSet<&str> = plan.written().collect();
    let (copied, not): (Vec<String>, Vec<String>) = candidates
        .into_iter()
        .partition(|n| !written.contains(n.as_str()) && !n.starts_with(crate::output::TEMP_PREFIX));
    plan.copied = copied;
    plan.left_alone.extend(not);
    plan.left_alone.sort();
    // Two sources must not become one output.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &plan.files {
        if let Some(other) = seen.insert(&f.output, &f.source) {
            return Err(refused(
                format!("{other} and {} would both become {}", f.source, f.output),
                "keep one of them in the directory, or convert them one by one with -o",
            ));
        }
    }
    if let Some(index) = &plan.index {
        for shard in index_shards(index)? {
            if !plan.files.iter().any(|f| f.source == shard) {
                let exists = dir.symlink_metadata(shard).is_ok();
                return Err(refused(
                    if exists {
                        format!("the index names {shard}, which is not a checkpoint file")
                    } else {
                        format!(
                            "the index names shard {shard}, which is not in {}",
                            shown.display()
                        )
                    },
                    "the sharded checkpoint is incomplete or its index was altered",
                ));
            }
        }
    }
    if plan.files.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "{} holds no checkpoint (.bin, .pt, .pth, .ckpt)",
                shown.display()
            ),
            "point decant at a model directory or a checkpoint file",
        ));
    }
    Ok(plan)
}

/// Opens a regular file beneath `dir` without blocking; a symlink that
/// leads outside, or anything but a regular file, is a refusal.
fn open_checked(dir: &Dir, name: &str, shown: &Path) -> Result<std::fs::File> {
    crate::open::regular_file_in(dir, name, shown).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied
            && dir.symlink_metadata(name).is_ok_and(|m| m.is_symlink())
        {
            refused(
                format!("{} is a symlink leading outside the model directory", shown.join(name).display()),
                "copy the files into the directory (e.g. download with --local-dir) instead of linking outside it",
            )
        } else {
            Error::io(format!("cannot open {}", shown.join(name).display()), &e)
        }
    })?
}

/// The part of `pytorch_model.bin.index.json` decant reads. Everything
/// else in it (other keys, `metadata`) is skipped unread, so parsing costs
/// memory in proportion to the tensor names kept, and is not carried over:
/// the new index holds `weight_map` (renamed) and `metadata.total_size`
/// (recomputed), which is what loaders read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SourceIndex {
    /// Tensor name -> shard file name.
    pub weight_map: BTreeMap<String, String>,
}

fn read_index(dir: &Dir, shown: &Path) -> Result<SourceIndex> {
    let at = shown.join(INDEX);
    let bad = |why: String| {
        refused(
            format!("{}: {why}", at.display()),
            "the sharded checkpoint's index is damaged or was altered",
        )
    };
    let file = open_checked(dir, INDEX, shown)?;
    let bytes =
        crate::open::read_bounded(file, MAX_INDEX_BYTES, &at, "a sharded checkpoint's index")
            .map_err(|e| {
                if e.kind == Kind::Limit {
                    bad(format!("larger than {MAX_INDEX_BYTES} bytes"))
                } else {
                    e
                }
            })?;
    let index: SourceIndex = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            bad(format!("not JSON ({e})"))
        } else {
            bad(format!("not a sharded-checkpoint index ({e})"))
        }
    })?;
    drop(bytes);
    index_shards(&index)?;
    Ok(index)
}

/// The shard files an index names, each checked to be a plain name.
fn index_shards(index: &SourceIndex) -> Result<BTreeSet<&str>> {
    let mut shards = BTreeSet::new();
    for (tensor, file) in &index.weight_map {
        if !plain_name(file) {
            return Err(refused(
                format!(
                    "the index maps {} to {}, which is not a file directly in the model directory",
                    crate::error::one_line(tensor),
                    crate::error::one_line(file)
                ),
                "an index may only name shards beside it; this one tries to reach other files",
            ));
        }
        shards.insert(file.as_str());
    }
    Ok(shards)
}

/// The new index: `weight_map` renamed and `metadata.total_size` the tensor
/// bytes now stored, nothing else; formatted like Python's
/// `json.dumps(indent=2, sort_keys=True)`.
fn new_index(index: &SourceIndex, total_size: u64) -> Vec<u8> {
    let weight_map: BTreeMap<&str, String> = index
        .weight_map
        .iter()
        .map(|(tensor, file)| (tensor.as_str(), output_name(file)))
        .collect();
    let v = serde_json::json!({
        "metadata": {"total_size": total_size},
        "weight_map": weight_map,
    });
    // Serialising strings and a number cannot fail.
    let mut bytes = serde_json::to_vec_pretty(&v).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes through to `inner`, hashing what was written.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, buf.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether a copied config has an `auto_map`, which makes
/// `from_pretrained(..., trust_remote_code=True)` import repository code.
fn has_auto_map(dir: &Dir, name: &str, shown: &Path) -> bool {
    let Ok(file) = open_checked(dir, name, shown) else {
        return false;
    };
    let Ok(bytes) = crate::open::read_bounded(file, 16 << 20, &shown.join(name), "a config") else {
        return false;
    };
    #[derive(serde::Deserialize)]
    struct Probe {
        auto_map: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(&bytes).is_ok_and(|p| p.auto_map.is_some())
}

/// An output kept from an earlier run, with what its receipt said.
struct Reused {
    file: FilePlan,
    source_sha256: Sha256Hex,
    report: ReceiptReport,
    output_sha256: Sha256Hex,
}

/// What an earlier receipt for this output directory vouches for, if a
/// fresh run would vouch for the same: it authenticates with the current
/// key and names this binary's converter, the current policy and the
/// current strictness. Outputs it names, from the same source bytes, are
/// then reused. A receipt made under another key, converter, policy or
/// strictness vouches for nothing here (a narrower policy or `--strict` may
/// refuse what the earlier run converted).
struct Previous {
    sources: BTreeMap<String, Sha256Hex>,
    subjects: BTreeMap<String, Sha256Hex>,
    reports: BTreeMap<String, ReceiptReport>,
}

fn previous_receipt(
    out: &Dir,
    key: &SigningKey,
    policy: &Policy,
    strict: bool,
) -> Option<Previous> {
    let file = crate::open::regular_file_in(out, RECEIPT, Path::new(RECEIPT))
        .ok()?
        .ok()?;
    let bytes = crate::open::read_bounded(
        file,
        MAX_RECEIPT_BYTES as u64,
        Path::new(RECEIPT),
        "a receipt",
    )
    .ok()?;
    let keys = [key.verifying_key()];
    let converters = [guest::sha256()];
    let s = verify::authenticate(
        &bytes,
        Trust {
            keys: &keys,
            converters: &converters,
        },
    )?;
    if *s.policy_sha256() != policy.sha256 || s.strict() != strict {
        return None;
    }
    Some(Previous {
        sources: s
            .sources()
            .map(|(d, _)| (d.name.clone(), d.digest.sha256.clone()))
            .collect(),
        subjects: s
            .subject
            .iter()
            .map(|sub| (sub.name.clone(), sub.digest.sha256.clone()))
            .collect(),
        reports: s
            .predicate
            .run_details
            .byproducts
            .iter()
            .filter_map(|b| {
                let output = b.name.strip_suffix(REPORT_SUFFIX)?;
                Some((output.to_string(), b.annotations.clone()))
            })
            .collect(),
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// sha256 of a regular file beneath `dir`; `None` if there is no such
/// name, an error for anything but a readable regular file.
pub fn file_sha256(dir: &Dir, name: &str, shown: &Path) -> Result<Option<Sha256Hex>> {
    if dir.symlink_metadata(name).is_err() {
        return Ok(None);
    }
    let f = open_checked(dir, name, shown)?;
    sha256_file(&f)
        .map(|h| Some(Sha256Hex::from_computed(h)))
        .map_err(|e| Error::io(format!("cannot read {}", shown.join(name).display()), &e))
}

/// sha256 of a file the plan listed, which must still be there.
fn planned_file_sha256(dir: &Dir, name: &str, shown: &Path) -> Result<Sha256Hex> {
    file_sha256(dir, name, shown)?.ok_or_else(|| {
        Error::io(
            format!("cannot read {}", shown.join(name).display()),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

/// (device, inode) of a file beneath a directory handle.
fn file_id(meta: &cap_std::fs::Metadata) -> (u64, u64) {
    use cap_std::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Tensor data bytes of an existing safetensors file.
fn data_bytes(dir: &Dir, name: &str, shown: &Path) -> Result<u64> {
    let f = open_checked(dir, name, shown)?;
    let len = f
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {name}"), &e))?
        .len();
    let summary = crate::validate::safetensors_file(&f, len)?;
    Ok(len - 8 - summary.header_len)
}

/// Converts a model directory.
pub fn convert_dir(
    sandbox: &Sandbox,
    opts: &Options,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Result<DirConverted> {
    let started = SystemTime::now();
    let src = output::open_dir(&opts.source)?;
    let plan = plan(&src, &opts.source)?;
    if let (true, Some(first)) = (opts.strict, plan.excluded.first()) {
        return Err(Error::new(
            Kind::Refused,
            format!(
                "refused (--strict): {} is not weights ({}); {} such file{} in {}",
                opts.source.join(&first.name).display(),
                first.reason,
                plan.excluded.len(),
                if plan.excluded.len() == 1 { "" } else { "s" },
                opts.source.display()
            ),
            "remove the training state from the directory, or run without --strict to exclude it",
        ));
    }
    let out_path = opts.output.clone().unwrap_or_else(|| opts.source.clone());
    std::fs::create_dir_all(&out_path)
        .map_err(|e| Error::io(format!("cannot create {}", out_path.display()), &e))?;
    let out = std::sync::Arc::new(output::open_dir(&out_path)?);

    // Outputs an existing receipt (verified with our key) vouches for, made
    // from the same source bytes, are kept as they are.
    let previous = opts
        .key
        .as_ref()
        .and_then(|k| previous_receipt(&out, k, sandbox.policy(), opts.strict));
    let mut reused: BTreeMap<String, Reused> = BTreeMap::new();
    // Anything unreadable is simply converted again (and refused then, if
    // it is not a regular file).
    let unchanged = |dir: &Dir, name: &str, shown: &Path, want: &Sha256Hex| {
        file_sha256(dir, name, shown).ok().flatten().as_ref() == Some(want)
    };
    if let Some(prev) = &previous {
        for f in &plan.files {
            let (Some(src_sha), Some(out_sha), Some(report)) = (
                prev.sources.get(&f.source),
                prev.subjects.get(&f.output),
                prev.reports.get(&f.output),
            ) else {
                continue;
            };
            if unchanged(&src, &f.source, &opts.source, src_sha)
                && unchanged(&out, &f.output, &out_path, out_sha)
            {
                reused.insert(
                    f.output.clone(),
                    Reused {
                        file: f.clone(),
                        source_sha256: src_sha.clone(),
                        report: report.clone(),
                        output_sha256: out_sha.clone(),
                    },
                );
            }
        }
    }
    let todo: Vec<&FilePlan> = plan
        .files
        .iter()
        .filter(|f| !reused.contains_key(&f.output))
        .collect();

    // Nothing decant writes may be a file it reads (an output that is a
    // hard link or symlink to a source), --force or not.
    let sources: BTreeMap<(u64, u64), &str> = plan
        .files
        .iter()
        .map(|f| (f.id, f.source.as_str()))
        .collect();
    for name in plan.written() {
        let Ok(meta) = out.metadata(name) else {
            continue;
        };
        if let Some(source) = sources.get(&file_id(&meta)) {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "{} is the same file as the source {}",
                    out_path.join(name).display(),
                    opts.source.join(source).display()
                ),
                "choose another output directory: decant never writes over a file it reads",
            ));
        }
    }

    // Refuse existing outputs before doing any work.
    for f in &todo {
        output::check_in_dir(&out, &f.output, &out_path.join(&f.output), opts.force)?;
    }
    if opts.key.is_some() && previous.is_none() {
        output::check_in_dir(&out, RECEIPT, &out_path.join(RECEIPT), opts.force)?;
    }

    // Files copied unchanged: hashed now, and a different file already at
    // the target needs --force. Converting in place copies nothing (the
    // files are already there) but vouches for them all the same.
    let same_dir = match (src.dir_metadata(), out.dir_metadata()) {
        (Ok(a), Ok(b)) => file_id(&a) == file_id(&b),
        _ => false,
    };
    let mut copies: Vec<(String, Sha256Hex, bool)> = Vec::new();
    let mut code = Vec::new();
    for name in &plan.copied {
        let sha = planned_file_sha256(&src, name, &opts.source)?;
        let write = !same_dir
            && match file_sha256(&out, name, &out_path) {
                Ok(Some(existing)) if existing == sha => false,
                Ok(None) => true,
                _ => {
                    output::check_in_dir(&out, name, &out_path.join(name), opts.force)?;
                    true
                }
            };
        if name.ends_with(".py") {
            code.push(name.clone());
        } else if matches!(name.as_str(), "config.json" | "tokenizer_config.json")
            && has_auto_map(&src, name, &opts.source)
        {
            code.push(format!(
                "{name} (auto_map: trust_remote_code runs repository code)"
            ));
        }
        copies.push((name.clone(), sha, write));
    }

    on_event(Event::Started {
        files: plan.files.len(),
        bytes: plan.files.iter().map(|f| f.bytes).sum(),
    });
    for (name, r) in &reused {
        on_event(Event::Reused {
            output: name,
            bytes: r.file.bytes,
        });
    }

    // Convert in parallel into temp files; each worker takes the next file
    // and keeps its own results, so no lock is shared.
    let next = AtomicUsize::new(0);
    let mut results: BTreeMap<usize, Result<Prepared>> = BTreeMap::new();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.jobs.clamp(1, todo.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = todo.get(i) else { return mine };
                        let r = convert_one(sandbox, opts, &src, &out, &out_path, f);
                        if let Ok(p) = &r {
                            on_event(Event::Converted(&p.converted));
                        }
                        mine.push((i, r));
                    }
                })
            })
            .collect();
        for worker in workers {
            // A worker that panicked loses its results; the files it took
            // are reported as failed below.
            results.extend(worker.join().unwrap_or_default());
        }
    });
    let mut prepared = Vec::new();
    let mut failures = Vec::new();
    for (i, f) in todo.iter().enumerate() {
        match results.remove(&i) {
            Some(Ok(p)) => prepared.push(p),
            Some(Err(e)) => failures.push((f.source.clone(), e)),
            None => failures.push((
                f.source.clone(),
                Error::internal("the conversion thread stopped unexpectedly"),
            )),
        }
    }
    if let Some((_, first)) = failures.first() {
        // Dropping `prepared` deletes every temp file: nothing is published.
        let kind = if failures.iter().all(|(_, e)| e.kind.exit_code() == 1) {
            Kind::Refused
        } else {
            first.kind
        };
        let listed: Vec<String> = failures
            .iter()
            .map(|(name, e)| format!("{name}: {}", e.message))
            .collect();
        return Err(Error::new(
            kind,
            format!(
                "{} of {} checkpoints in {} failed, so nothing was written: {}",
                failures.len(),
                plan.files.len(),
                opts.source.display(),
                listed.join("; ")
            ),
            first.hint.clone(),
        ));
    }

    // The index, from the outputs' actual tensor bytes.
    let mut index_pending = None;
    let mut subjects: Vec<(String, Sha256Hex)> = Vec::new();
    for p in &prepared {
        subjects.push((
            file_name(&p.converted.output),
            Sha256Hex::from_computed(p.converted.output_sha256.clone()),
        ));
    }
    for (name, r) in &reused {
        subjects.push((name.clone(), r.output_sha256.clone()));
    }
    if let Some(index) = &plan.index {
        let mut total: u64 = prepared.iter().map(|p| p.converted.data_bytes).sum();
        for name in reused.keys() {
            total += data_bytes(&out, name, &out_path)?;
        }
        let bytes = new_index(index, total);
        let sha = Sha256Hex::of(&bytes);
        let unchanged = file_sha256(&out, OUT_INDEX, &out_path)
            .ok()
            .flatten()
            .as_ref()
            == Some(&sha);
        if !unchanged {
            output::check_in_dir(&out, OUT_INDEX, &out_path.join(OUT_INDEX), opts.force)?;
            let pending = Pending::in_dir(&out, OUT_INDEX, &out_path.join(OUT_INDEX))?;
            pending
                .file()?
                .write_all(&bytes)
                .map_err(|e| Error::io("cannot write the index", &e))?;
            index_pending = Some(pending);
        }
        subjects.push((OUT_INDEX.to_string(), sha));
    }
    subjects.sort();

    // The copies, staged like every output and checked against the digest
    // taken above, so the receipt vouches for the bytes that were copied.
    let mut copy_pending = Vec::new();
    for (name, sha, write) in &copies {
        if !*write {
            continue;
        }
        let shown = out_path.join(name);
        let mut pending = Pending::in_dir(&out, name, &shown)?;
        let mut from = open_checked(&src, name, &opts.source)?;
        let io = |e: std::io::Error| Error::io(format!("cannot copy to {}", shown.display()), &e);
        // Hashed as it is copied: the digest is of the bytes written.
        let mut to = HashingWriter {
            inner: pending.file()?,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
        };
        std::io::copy(&mut from, &mut to).map_err(io)?;
        let copied = hex::encode(sha2::Digest::finalize(to.hasher));
        if copied != sha.as_str() {
            return Err(Error::new(
                Kind::Io,
                format!(
                    "{} changed while it was being copied",
                    opts.source.join(name).display()
                ),
                "convert a directory nothing else is writing",
            ));
        }
        pending.close()?;
        copy_pending.push(pending);
    }
    let copied_subjects: Vec<(String, Sha256Hex)> = copies
        .iter()
        .map(|(name, sha, _)| (name.clone(), sha.clone()))
        .collect();

    // The receipt, staged before anything is published.
    let receipt_pending = match &opts.key {
        Some(key) => {
            let mut sources: Vec<SourceFile> = prepared
                .iter()
                .map(|p| SourceFile {
                    name: file_name(&p.converted.source),
                    sha256: Sha256Hex::from_computed(p.converted.source_sha256.clone()),
                    bytes: p.converted.source_bytes,
                })
                .collect();
            for r in reused.values() {
                sources.push(SourceFile {
                    name: r.file.source.clone(),
                    sha256: r.source_sha256.clone(),
                    bytes: r.file.bytes,
                });
            }
            if plan.index.is_some() {
                let f = open_checked(&src, INDEX, &opts.source)?;
                sources.push(SourceFile {
                    name: INDEX.into(),
                    sha256: Sha256Hex::from_computed(
                        sha256_file(&f).map_err(|e| Error::io("cannot read the index", &e))?,
                    ),
                    bytes: f.metadata().map(|m| m.len()).unwrap_or(0),
                });
            }
            sources.sort_by(|a, b| a.name.cmp(&b.name));
            let mut reports: Vec<(String, ReceiptReport)> = prepared
                .iter()
                .map(|p| {
                    (
                        format!("{}{REPORT_SUFFIX}", file_name(&p.converted.output)),
                        ReceiptReport::from_report(&p.converted.report),
                    )
                })
                .collect();
            for (name, r) in &reused {
                reports.push((format!("{name}{REPORT_SUFFIX}"), r.report.clone()));
            }
            reports.sort_by(|a, b| a.0.cmp(&b.0));
            let dir_name = opts
                .source
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| ".".into());
            let mut excluded = Vec::new();
            for e in &plan.excluded {
                let sha = planned_file_sha256(&src, &e.name, &opts.source)?;
                excluded.push((e.name.clone(), sha, e.reason.to_string()));
            }
            let input = receipt::ReceiptInput {
                subjects: subjects.clone(),
                copied: copied_subjects.clone(),
                sources,
                excluded,
                source_param: dir_name,
                converter_sha256: guest::sha256(),
                policy: sandbox.policy(),
                strict: opts.strict,
                reports,
                started,
                finished: SystemTime::now(),
            };
            // Replacing our own earlier receipt is the point of a rerun.
            Some(StagedReceipt::stage_in_dir(
                &input,
                key,
                &out,
                RECEIPT,
                &out_path.join(RECEIPT),
                opts.force || previous.is_some(),
            )?)
        }
        None => None,
    };

    // Publish: outputs, index, then the receipt that covers them.
    let mut converted = Vec::new();
    let mut pending = Vec::new();
    for p in prepared {
        let (file, c) = p.into_parts();
        pending.push(file);
        converted.push(c);
    }
    pending.extend(index_pending);
    pending.extend(copy_pending);
    let receipt_path = receipt::publish_all(pending, opts.force, receipt_pending)?;
    converted.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(DirConverted {
        source: opts.source.clone(),
        output: out_path,
        converted,
        reused: reused.into_keys().collect(),
        index: plan.index.as_ref().map(|_| OUT_INDEX.to_string()),
        left_alone: plan.left_alone,
        copied: plan.copied.clone(),
        code,
        excluded: plan.excluded,
        receipt: receipt_path,
    })
}

fn convert_one(
    sandbox: &Sandbox,
    opts: &Options,
    src: &Dir,
    out: &std::sync::Arc<Dir>,
    out_path: &Path,
    f: &FilePlan,
) -> Result<Prepared> {
    let source = open_checked(src, &f.source, &opts.source)?;
    let shown_out = out_path.join(&f.output);
    let pending = Pending::in_dir(out, &f.output, &shown_out)?;
    convert::prepare_job(
        sandbox,
        Job {
            source,
            source_shown: opts.source.join(&f.source),
            output_shown: shown_out,
            strict: opts.strict,
            force: opts.force,
        },
        pending,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_in_the_directory() {
        for bad in [
            "",
            ".",
            "..",
            "../x.bin",
            "/etc/passwd",
            "sub/model.bin",
            "a\\b",
            "x\0y",
        ] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert!(plain_name("pytorch_model-00001-of-00003.bin"));
    }

    /// Issue 10: the rewritten index carries `weight_map` (renamed) and
    /// `metadata.total_size` (recomputed), nothing else, and whatever else
    /// the source index holds is skipped unread.
    #[test]
    fn index_is_renamed_and_total_size_recomputed() {
        let source = serde_json::json!({
            "metadata": {"total_size": 999, "format": "pt"},
            "weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"},
            "junk": [[[1, 2, 3]], {"x": "y".repeat(1000)}]
        });
        let index: SourceIndex = serde_json::from_value(source).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&new_index(&index, 42)).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "metadata": {"total_size": 42},
                "weight_map": {
                    "a": "model-00001-of-00002.safetensors",
                    "b": "model-00002-of-00002.safetensors"
                }
            })
        );
    }
}
