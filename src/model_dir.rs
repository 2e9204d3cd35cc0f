//! Model directories: every checkpoint of a model repository, converted as
//! one unit into a repository its loaders open unchanged.
//!
//! - Weights are converted and named as Hugging Face names them, in every
//!   subfolder (diffusers' `unet/`, `vae/`, sentence-transformers modules):
//!   `pytorch_model*.bin` -> `model*.safetensors`, `adapter_model.bin` ->
//!   `adapter_model.safetensors`, `diffusion_pytorch_model*.bin` ->
//!   `diffusion_pytorch_model*.safetensors`, other `*.bin`, `*.pt`,
//!   `*.pth`, `*.ckpt` the same name with `.safetensors`. Each index
//!   (`<checkpoint>.index.json`, `<checkpoint>.index.<variant>.json`) is
//!   rewritten beside it: `weight_map` renamed, `metadata.total_size`
//!   recomputed.
//! - Every other file is copied unchanged and vouched for as copied;
//!   training state (`training_args.bin`, optimizer, scheduler, scaler, RNG
//!   state) is excluded and listed, or refused with `--strict`.
//! - The source is read through [`SourceTree`]: a plain directory beneath a
//!   cap-std handle, or a Hugging Face cache snapshot through only the
//!   links huggingface_hub makes. Names taken from an index must be plain
//!   file names beside it: `../x`, an absolute path or a subdirectory is
//!   refused.
//! - All or nothing: files convert in parallel into temp files; if any
//!   fails, every failure is listed and nothing is published (not even the
//!   output subdirectories).
//! - One receipt (`decant.intoto.jsonl`) covers every output; a rerun with
//!   the same key reuses outputs the existing receipt already vouches for.

use crate::convert::{self, default_output, sha256_file, Converted, Job, Prepared};
use crate::error::{Error, Kind, Result};
use crate::guest;
use crate::output::{self, Pending};
use crate::policy::Policy;
use crate::receipt::{self, SourceFile, StagedReceipt};
use crate::sandbox::Sandbox;
use crate::sink::Cores;
use crate::source_tree::{FileId, Listing, SourceTree, TreeFile};
use crate::trust::dsse::MAX_RECEIPT_BYTES;
use crate::trust::oms;
use crate::trust::statement::{ReceiptReport, RevisionPurl, Sha256Hex};
use crate::trust::verify::{self, Trust};
use cap_fs_ext::DirExt as _;
use cap_std::fs::Dir;
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The directory's receipt, in the output directory.
pub const RECEIPT: &str = "decant.intoto.jsonl";
/// A directory receipt's report byproduct for an output is `<output>` + this.
const REPORT_SUFFIX: &str = ".report.json";
const CHECKPOINT_EXTENSIONS: [&str; 4] = ["bin", "pt", "pth", "ckpt"];
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// What the user asked for.
pub struct Options {
    pub source: PathBuf,
    /// For a Hugging Face cache repository directory: the branch, tag or
    /// commit to convert (`main` if not given).
    pub revision: Option<String>,
    /// Defaults to the source directory (required for a cache snapshot).
    pub output: Option<PathBuf>,
    pub strict: bool,
    pub force: bool,
    /// Conversions run at once.
    pub jobs: usize,
    /// Sign a receipt with this key.
    pub key: Option<SigningKey>,
    /// `--shard I/N`: convert only this shard's part of the directory, and
    /// write the shard's receipt instead of [`RECEIPT`].
    pub shard: Option<crate::batch::ShardWork>,
    /// Write a CycloneDX ML-BOM of the conversion here (outside the source
    /// and output directories), published with the outputs.
    pub cyclonedx: Option<PathBuf>,
    /// Also write an OpenSSF model signature (`model.sig`) with this key
    /// (needs `key`: it covers the receipt too).
    pub oms_key: Option<p256::ecdsa::SigningKey>,
}

/// One checkpoint of the directory.
#[derive(Debug, Clone)]
pub struct FilePlan {
    pub source: TreeFile,
    /// Its output's path in OUT.
    pub output: String,
}

/// One sharded-checkpoint index and its rewrite.
#[derive(Debug, Clone)]
pub struct IndexPlan {
    pub source: TreeFile,
    pub output: String,
    pub index: SourceIndex,
    /// The shard file names its `weight_map` values name (plain names,
    /// beside the index), each once.
    pub shards: BTreeSet<String>,
    /// Of the bytes parsed.
    pub sha256: Sha256Hex,
}

/// What the directory holds and what each file becomes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub files: Vec<FilePlan>,
    pub indexes: Vec<IndexPlan>,
    /// Other files (configs, tokenizer files, README, licence, code):
    /// copied unchanged into OUT and vouched for as copied.
    pub copied: Vec<TreeFile>,
    /// Directories not walked, and files a conversion writes in their
    /// place (an existing `model.safetensors` beside `pytorch_model.bin`,
    /// an earlier receipt, decant's temp files): not copied.
    pub left_alone: Vec<String>,
    /// Pickles training tools write that are not weights: not converted.
    pub excluded: Vec<(TreeFile, &'static str)>,
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
    /// Every path a conversion of this plan writes in OUT: the outputs, the
    /// new indexes and the receipt.
    fn written(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .map(|f| f.output.as_str())
            .chain(self.indexes.iter().map(|i| i.output.as_str()))
            .chain([RECEIPT])
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
    /// The repository revision read, for a Hugging Face cache snapshot.
    pub origin: Option<RevisionPurl>,
    #[serde(serialize_with = "crate::render::lossy_path")]
    pub output: PathBuf,
    pub converted: Vec<Converted>,
    /// Outputs an existing receipt already vouched for, left as they were.
    pub reused: Vec<String>,
    /// The rewritten indexes.
    pub indexes: Vec<String>,
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
    /// The CycloneDX ML-BOM written, if asked for.
    #[serde(serialize_with = "crate::render::lossy_opt_path")]
    pub cyclonedx: Option<PathBuf>,
    /// The OpenSSF model signature written, with `--oms-key`.
    #[serde(serialize_with = "crate::render::lossy_opt_path")]
    pub model_signature: Option<PathBuf>,
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

/// `dir/name`, or `name` at the top.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The rewritten name of an index, if `name` is one: `<checkpoint>.index.json`
/// or, for a variant, `<checkpoint>.index.<variant>.json` (transformers'
/// `_add_variant`), with the checkpoint's output name in front.
fn index_output(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".json")?;
    let (checkpoint, variant) = match stem.rsplit_once(".index.") {
        Some((c, v)) if !v.is_empty() && !v.contains('.') => (c, Some(v)),
        _ => (stem.strip_suffix(".index")?, None),
    };
    if !is_checkpoint(checkpoint) {
        return None;
    }
    let out = output_name(checkpoint);
    Some(match variant {
        Some(v) => format!("{out}.index.{v}.json"),
        None => format!("{out}.index.json"),
    })
}

/// Reads the directory and decides what each file becomes.
pub fn plan(tree: &SourceTree, listing: Listing) -> Result<Plan> {
    let mut plan = Plan {
        left_alone: listing.left_alone,
        ..Plan::default()
    };
    let mut candidates = Vec::new();
    for f in listing.files {
        let name = f.name().to_string();
        if let Some(reason) = training_leftover(&name) {
            plan.excluded.push((f, reason));
        } else if let Some(out) = index_output(&name) {
            let (index, sha256) = read_index(tree, &f)?;
            let shards = index_shards(&index)?
                .into_iter()
                .map(str::to_string)
                .collect();
            plan.indexes.push(IndexPlan {
                output: join(f.dir(), &out),
                source: f,
                index,
                shards,
                sha256,
            });
        } else if is_checkpoint(&name) {
            plan.files.push(FilePlan {
                output: join(f.dir(), &output_name(&name)),
                source: f,
            });
        } else {
            candidates.push(f);
        }
    }
    // What a conversion writes is not copied over: the outputs, the new
    // indexes, the receipt, and decant's own temp files. Nor is a root
    // model.sig: it signs the source's files, so it cannot vouch for the
    // converted ones (and decant verify leaves that name out).
    let written: BTreeSet<&str> = plan.written().collect();
    let (copied, not): (Vec<TreeFile>, Vec<TreeFile>) = candidates.into_iter().partition(|f| {
        !written.contains(f.path.as_str())
            && !f.name().starts_with(crate::output::TEMP_PREFIX)
            && !crate::batch::is_shard_receipt(&f.path)
            && f.path != oms::SIGNATURE_FILE
    });
    plan.copied = copied;
    plan.left_alone.extend(not.into_iter().map(|f| f.path));
    plan.left_alone.sort();
    // Two sources must not become one output.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (output, source) in plan
        .files
        .iter()
        .map(|f| (&f.output, &f.source.path))
        .chain(plan.indexes.iter().map(|i| (&i.output, &i.source.path)))
    {
        if let Some(other) = seen.insert(output, source) {
            return Err(refused(
                format!("{other} and {source} would both become {output}"),
                "keep one of them in the directory, or convert them one by one with -o",
            ));
        }
    }
    for ix in &plan.indexes {
        for shard in &ix.shards {
            let path = join(ix.source.dir(), shard);
            if !plan.files.iter().any(|f| f.source.path == path) {
                let what = if plan.copied.iter().any(|f| f.path == path)
                    || plan.excluded.iter().any(|(f, _)| f.path == path)
                {
                    format!(
                        "{} names {shard}, which is not a checkpoint file",
                        ix.source.path
                    )
                } else {
                    format!(
                        "{} names shard {shard}, which is not in {}",
                        ix.source.path,
                        match ix.source.dir() {
                            "" => tree.shown().to_path_buf(),
                            dir => tree.shown().join(dir),
                        }
                        .display()
                    )
                };
                return Err(refused(
                    what,
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
                tree.shown().display()
            ),
            "point decant at a model directory or a checkpoint file",
        ));
    }
    Ok(plan)
}

/// The part of a sharded-checkpoint index decant reads. Everything else in
/// it (other keys, `metadata`) is skipped unread, so parsing costs memory
/// in proportion to the tensor names kept, and is not carried over: the new
/// index holds `weight_map` (renamed) and `metadata.total_size`
/// (recomputed), which is what loaders read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SourceIndex {
    /// Tensor name -> shard file name.
    pub weight_map: BTreeMap<String, String>,
}

/// Parses an index and digests the same bytes (checked against the cache's
/// blob name), so the receipt names what was read.
fn read_index(tree: &SourceTree, f: &TreeFile) -> Result<(SourceIndex, Sha256Hex)> {
    let at = tree.shown_path(f);
    let bad = |why: String| {
        refused(
            format!("{}: {why}", at.display()),
            "the sharded checkpoint's index is damaged or was altered",
        )
    };
    let file = tree.open_file(f)?;
    let bytes =
        crate::open::read_bounded(file, MAX_INDEX_BYTES, &at, "a sharded checkpoint's index")
            .map_err(|e| {
                if e.kind == Kind::Limit {
                    bad(format!("larger than {MAX_INDEX_BYTES} bytes"))
                } else {
                    e
                }
            })?;
    let sha = Sha256Hex::of(&bytes);
    tree.confirm(f, &sha)?;
    let index: SourceIndex = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            bad(format!("not JSON ({e})"))
        } else {
            bad(format!("not a sharded-checkpoint index ({e})"))
        }
    })?;
    drop(bytes);
    Ok((index, sha))
}

/// The shard files an index names, each checked to be a plain name.
fn index_shards(index: &SourceIndex) -> Result<BTreeSet<&str>> {
    let mut shards = BTreeSet::new();
    for (tensor, file) in &index.weight_map {
        if !plain_name(file) {
            return Err(refused(
                format!(
                    "the index maps {} to {}, which is not a file directly beside the index",
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
fn has_auto_map(tree: &SourceTree, f: &TreeFile) -> bool {
    let Ok(file) = tree.open_file(f) else {
        return false;
    };
    let Ok(bytes) = crate::open::read_bounded(file, 16 << 20, &tree.shown_path(f), "a config")
    else {
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
    name: &str,
    key: &SigningKey,
    policy: &Policy,
    strict: bool,
) -> Option<Previous> {
    let file = crate::open::regular_file_in(out, name, Path::new(name))
        .ok()?
        .ok()?;
    let bytes =
        crate::open::read_bounded(file, MAX_RECEIPT_BYTES as u64, Path::new(name), "a receipt")
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

/// sha256 of a regular file beneath `dir`; `None` if there is no such
/// name, an error for anything but a readable regular file.
pub fn file_sha256(dir: &Dir, name: &str, shown: &Path) -> Result<Option<Sha256Hex>> {
    if dir.symlink_metadata(name).is_err() {
        return Ok(None);
    }
    let f = open_out(dir, name, shown)?;
    sha256_file(&f)
        .map(|h| Some(Sha256Hex::from_computed(h)))
        .map_err(|e| Error::io(format!("cannot read {}", shown.join(name).display()), &e))
}

/// Opens a file already in OUT (an earlier output), beneath its handle.
fn open_out(dir: &Dir, name: &str, shown: &Path) -> Result<std::fs::File> {
    crate::open::regular_file_in(dir, name, shown)
        .map_err(|e| Error::io(format!("cannot open {}", shown.join(name).display()), &e))?
}

/// (device, inode) of a file beneath a directory handle.
fn file_id(meta: &cap_std::fs::Metadata) -> FileId {
    use cap_std::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Tensor data bytes of an existing safetensors file.
fn data_bytes(dir: &Dir, name: &str, shown: &Path) -> Result<u64> {
    let f = open_out(dir, name, shown)?;
    let len = f
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {name}"), &e))?
        .len();
    let summary = crate::validate::safetensors_file(&f, len)?;
    Ok(len - 8 - summary.header_len)
}

/// The output directory and the subdirectories a run creates in it. Until
/// [`OutDirs::keep`], dropping it removes every directory it created that
/// is still empty, so a failed run leaves OUT as it was.
struct OutDirs {
    path: PathBuf,
    root: Arc<Dir>,
    handles: BTreeMap<String, Arc<Dir>>,
    /// Subdirectories of OUT created by this run, parents first.
    created: Vec<String>,
    /// OUT and its parents, created by this run, parents first.
    made: Vec<PathBuf>,
    kept: bool,
}

impl OutDirs {
    /// Creates OUT and any missing parents, one at a time, recording each;
    /// then refuses it if it turned out to be inside the source's cache.
    fn open(path: &Path, tree: &SourceTree) -> Result<OutDirs> {
        let mut missing = Vec::new();
        let mut at = path.to_path_buf();
        while at.symlink_metadata().is_err() {
            missing.push(at.clone());
            if !at.pop() || at.as_os_str().is_empty() {
                break;
            }
        }
        let mut made: Vec<PathBuf> = Vec::new();
        let undo = |made: &[PathBuf]| {
            for dir in made.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        };
        for dir in missing.iter().rev() {
            match std::fs::create_dir(dir) {
                Ok(()) => made.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    undo(&made);
                    return Err(Error::io(format!("cannot create {}", dir.display()), &e));
                }
            }
        }
        if let (Some(cache), Ok(resolved)) = (tree.cache_root(), path.canonicalize()) {
            if resolved.starts_with(cache) {
                undo(&made);
                return Err(output_in_cache(path, cache));
            }
        }
        let root = match output::open_dir(path) {
            Ok(root) => Arc::new(root),
            Err(e) => {
                undo(&made);
                return Err(e);
            }
        };
        Ok(OutDirs {
            path: path.to_path_buf(),
            handles: BTreeMap::from([(String::new(), Arc::clone(&root))]),
            root,
            created: Vec::new(),
            made,
            kept: false,
        })
    }

    /// The handle for `dir` (a `/`-separated path in OUT), creating it.
    fn dir(&mut self, dir: &str) -> Result<Arc<Dir>> {
        if let Some(h) = self.handles.get(dir) {
            return Ok(Arc::clone(h));
        }
        let mut at = String::new();
        for part in dir.split('/') {
            at = join(&at, part);
            if self.handles.contains_key(&at) {
                continue;
            }
            let shown = self.path.join(&at);
            match self.root.create_dir(&at) {
                Ok(()) => self.created.push(at.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("cannot create {}", shown.display()), &e)),
            }
            let handle = self
                .root
                .open_dir_nofollow(&at)
                .map_err(|e| Error::io(format!("cannot open {}", shown.display()), &e))?;
            self.handles.insert(at.clone(), Arc::new(handle));
        }
        self.handles
            .get(dir)
            .map(Arc::clone)
            .ok_or_else(|| Error::internal("an output directory was not opened"))
    }

    /// The handle for a directory already opened by [`OutDirs::dir`].
    fn opened(&self, dir: &str) -> Result<&Arc<Dir>> {
        self.handles
            .get(dir)
            .ok_or_else(|| Error::internal("an output directory was not prepared"))
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for OutDirs {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for dir in self.created.iter().rev() {
            let _ = self.root.remove_dir(dir);
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The error for an OUT inside the source's cache.
fn output_in_cache(out_path: &Path, cache: &Path) -> Error {
    Error::new(
        Kind::Usage,
        format!(
            "{} is inside the Hugging Face cache {}",
            out_path.display(),
            cache.display()
        ),
        "decant never writes into the cache; choose an output directory outside it with -o",
    )
}

/// Where OUT may not be: inside the cache the source is read from (decant
/// never writes into a cache). Judged before anything is created, on the
/// nearest part of OUT that exists, resolved. A `..` in OUT is refused
/// outright: after a part that does not exist yet it would resolve only
/// once created. [`OutDirs::open`] checks the created directory again.
fn refuse_output_in_cache(tree: &SourceTree, out_path: &Path) -> Result<()> {
    let Some(cache) = tree.cache_root() else {
        return Ok(());
    };
    if out_path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Error::new(
            Kind::Usage,
            format!("the output directory {} contains ..", out_path.display()),
            "converting from a cache, give the output directory without .. so it is clear it lies outside the cache",
        ));
    }
    let mut existing = std::path::absolute(out_path)
        .map_err(|e| Error::io(format!("cannot resolve {}", out_path.display()), &e))?;
    let resolved = loop {
        if let Ok(p) = existing.canonicalize() {
            break p;
        }
        if !existing.pop() {
            return Err(output_in_cache(out_path, cache));
        }
    };
    if resolved.starts_with(cache) {
        return Err(output_in_cache(out_path, cache));
    }
    Ok(())
}

/// Converts a model directory.
pub fn convert_dir(
    sandbox: &Sandbox,
    opts: &Options,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Result<DirConverted> {
    let started = SystemTime::now();
    let tree = SourceTree::open(&opts.source, opts.revision.as_deref())?;
    let shown = tree.shown().to_path_buf();
    let out_path = match (&opts.output, tree.is_cache()) {
        (Some(out), _) => out.clone(),
        (None, false) => opts.source.clone(),
        (None, true) => {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "{} is in a Hugging Face cache, and decant never writes into the cache",
                    shown.display()
                ),
                "give an output directory outside the cache with -o OUT",
            ))
        }
    };
    refuse_output_in_cache(&tree, &out_path)?;
    if let Some(bom) = &opts.cyclonedx {
        refuse_bom_path(bom, &tree, &opts.source, &out_path, opts.force)?;
    }
    // An output directory inside the source is not part of the model.
    let out_id = std::fs::metadata(&out_path).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    let skip = out_id.filter(|id| Some(*id) != tree.root_id());
    let mut plan = plan(&tree, tree.list(skip)?)?;
    if let (true, Some((first, reason))) = (opts.strict, plan.excluded.first()) {
        return Err(Error::new(
            Kind::Refused,
            format!(
                "refused (--strict): {} is not weights ({reason}); {} such file{} in {}",
                tree.shown_path(first).display(),
                plan.excluded.len(),
                if plan.excluded.len() == 1 { "" } else { "s" },
                shown.display()
            ),
            "remove the training state from the directory, or run without --strict to exclude it",
        ));
    }
    let receipt_name = match &opts.shard {
        Some(work) => {
            plan = shard_part(plan, work, &shown)?;
            work.receipt_name()
        }
        None => RECEIPT.to_string(),
    };
    let mut dirs = OutDirs::open(&out_path, &tree)?;
    let out = Arc::clone(&dirs.root);

    // Outputs an existing receipt (verified with our key) vouches for, made
    // from the same source bytes, are kept as they are.
    let previous = opts
        .key
        .as_ref()
        .and_then(|k| previous_receipt(&out, &receipt_name, k, sandbox.policy(), opts.strict));
    let mut reused: BTreeMap<String, Reused> = BTreeMap::new();
    if let Some(prev) = &previous {
        for f in &plan.files {
            let (Some(src_sha), Some(out_sha), Some(report)) = (
                prev.sources.get(&f.source.path),
                prev.subjects.get(&f.output),
                prev.reports.get(&f.output),
            ) else {
                continue;
            };
            // Anything unreadable or different is simply converted again
            // (and refused then, if it is not a regular file).
            let unchanged = tree.sha256(&f.source).ok().as_ref() == Some(src_sha)
                && file_sha256(&out, &f.output, &out_path)
                    .ok()
                    .flatten()
                    .as_ref()
                    == Some(out_sha);
            if unchanged {
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
    let sources: BTreeMap<FileId, &str> = plan
        .files
        .iter()
        .map(|f| &f.source)
        .chain(plan.indexes.iter().map(|i| &i.source))
        .map(|f| (f.id, f.path.as_str()))
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
                    shown.join(source).display()
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
        output::check_in_dir(
            &out,
            &receipt_name,
            &out_path.join(&receipt_name),
            opts.force,
        )?;
    }
    if opts.oms_key.is_some() {
        check_signed_dir(&out, &out_path, &plan, opts.force)?;
    }

    // Files copied unchanged: hashed now (and checked against the cache's
    // blob name), and a different file already at the target needs
    // --force. Converting in place copies nothing (the files are already
    // there) but vouches for them all the same.
    let same_dir = out_id.is_some() && out_id == tree.root_id();
    let mut copies: Vec<(&TreeFile, Sha256Hex, bool)> = Vec::new();
    let mut code = Vec::new();
    for f in &plan.copied {
        let sha = tree.sha256(f)?;
        let write = !same_dir
            && match file_sha256(&out, &f.path, &out_path) {
                Ok(Some(existing)) if existing == sha => false,
                Ok(None) => true,
                _ => {
                    output::check_in_dir(&out, &f.path, &out_path.join(&f.path), opts.force)?;
                    true
                }
            };
        if f.name().ends_with(".py") {
            code.push(f.path.clone());
        } else if matches!(f.name(), "config.json" | "tokenizer_config.json")
            && has_auto_map(&tree, f)
        {
            code.push(format!(
                "{} (auto_map: trust_remote_code runs repository code)",
                f.path
            ));
        }
        copies.push((f, sha, write));
    }
    let mut excluded = Vec::new();
    for (f, reason) in &plan.excluded {
        excluded.push((f.path.clone(), tree.sha256(f)?, reason.to_string()));
    }

    // Every directory something is written to, created now (and removed
    // again if the run fails).
    for dir in todo
        .iter()
        .map(|f| &f.output)
        .chain(plan.indexes.iter().map(|i| &i.output))
        .chain(copies.iter().filter(|c| c.2).map(|c| &c.0.path))
        .map(|p| p.rsplit_once('/').map_or("", |(d, _)| d))
        .collect::<BTreeSet<&str>>()
    {
        dirs.dir(dir)?;
    }

    on_event(Event::Started {
        files: plan.files.len(),
        bytes: plan.files.iter().map(|f| f.source.bytes).sum(),
    });
    for (name, r) in &reused {
        on_event(Event::Reused {
            output: name,
            bytes: r.file.source.bytes,
        });
    }

    // Convert in parallel into temp files; each worker takes the next file
    // and keeps its own results, so no lock is shared.
    let next = AtomicUsize::new(0);
    let mut results: BTreeMap<usize, Result<Prepared>> = BTreeMap::new();
    let workers = opts.jobs.clamp(1, todo.len().max(1));
    let spare = SpareCores(AtomicUsize::new(opts.jobs.saturating_sub(workers)));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = todo.get(i) else { return mine };
                        let extra = spare.take();
                        let cores = if extra.is_some() {
                            Cores::Several
                        } else {
                            Cores::One
                        };
                        let r = convert_one(sandbox, opts, &tree, &dirs, &out_path, f, cores);
                        drop(extra);
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
    let mut prepared: Vec<(&FilePlan, Prepared)> = Vec::new();
    let mut failures = Vec::new();
    for (i, f) in todo.iter().enumerate() {
        match results.remove(&i) {
            Some(Ok(p)) => prepared.push((f, p)),
            Some(Err(e)) => failures.push((f.source.path.clone(), e)),
            None => failures.push((
                f.source.path.clone(),
                Error::internal("the conversion thread stopped unexpectedly"),
            )),
        }
    }
    if let Some((_, first)) = failures.first() {
        // Dropping `prepared` deletes every temp file and `dirs` every
        // directory created: nothing is published.
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
                shown.display(),
                listed.join("; ")
            ),
            first.hint.clone(),
        ));
    }

    // The indexes, from the outputs' actual tensor bytes.
    let mut subjects: Vec<(String, Sha256Hex)> = Vec::new();
    let mut data: BTreeMap<&str, u64> = BTreeMap::new();
    for (f, p) in &prepared {
        subjects.push((
            f.output.clone(),
            Sha256Hex::from_computed(p.converted.output_sha256.clone()),
        ));
        data.insert(&f.output, p.converted.data_bytes);
    }
    for (name, r) in &reused {
        subjects.push((name.clone(), r.output_sha256.clone()));
        data.insert(name, data_bytes(&out, name, &out_path)?);
    }
    let mut index_pending = Vec::new();
    for ix in &plan.indexes {
        let mut total: u64 = 0;
        for shard in &ix.shards {
            let output = join(ix.source.dir(), &output_name(shard));
            total += data.get(output.as_str()).copied().unwrap_or(0);
        }
        let bytes = new_index(&ix.index, total);
        let sha = Sha256Hex::of(&bytes);
        let unchanged = file_sha256(&out, &ix.output, &out_path)
            .ok()
            .flatten()
            .as_ref()
            == Some(&sha);
        if !unchanged {
            let target = out_path.join(&ix.output);
            output::check_in_dir(&out, &ix.output, &target, opts.force)?;
            let pending = pending_in(&dirs, &ix.output, &target)?;
            pending
                .file()?
                .write_all(&bytes)
                .map_err(|e| Error::io("cannot write the index", &e))?;
            index_pending.push(pending);
        }
        subjects.push((ix.output.clone(), sha));
    }
    subjects.sort();

    // The copies, staged like every output and checked against the digest
    // taken above, so the receipt vouches for the bytes that were copied.
    let mut copy_pending = Vec::new();
    for (f, sha, write) in &copies {
        if !*write {
            continue;
        }
        let target = out_path.join(&f.path);
        let mut pending = pending_in(&dirs, &f.path, &target)?;
        let mut from = tree.open_file(f)?;
        let io = |e: std::io::Error| Error::io(format!("cannot copy to {}", target.display()), &e);
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
                    tree.shown_path(f).display()
                ),
                "convert a directory nothing else is writing",
            ));
        }
        pending.close()?;
        copy_pending.push(pending);
    }
    let copied_subjects: Vec<(String, Sha256Hex)> = copies
        .iter()
        .map(|(f, sha, _)| (f.path.clone(), sha.clone()))
        .collect();
    let origin = tree.origin().map(|o| o.purl.clone());

    // Every file read as a source: what the receipt and the BOM name.
    let mut sources: Vec<SourceFile> = prepared
        .iter()
        .map(|(f, p)| SourceFile {
            name: f.source.path.clone(),
            sha256: Sha256Hex::from_computed(p.converted.source_sha256.clone()),
            bytes: p.converted.source_bytes,
        })
        .collect();
    for r in reused.values() {
        sources.push(SourceFile {
            name: r.file.source.path.clone(),
            sha256: r.source_sha256.clone(),
            bytes: r.file.source.bytes,
        });
    }
    for ix in &plan.indexes {
        sources.push(SourceFile {
            name: ix.source.path.clone(),
            sha256: ix.sha256.clone(),
            bytes: ix.source.bytes,
        });
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let dir_name = match tree.origin() {
        Some(o) => o.repo_id.clone(),
        None => opts
            .source
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| ".".into()),
    };
    let finished = SystemTime::now();

    // The receipt, staged before anything is published.
    let receipt_pending = match &opts.key {
        Some(key) => {
            let mut reports: Vec<(String, ReceiptReport)> = prepared
                .iter()
                .map(|(f, p)| {
                    (
                        format!("{}{REPORT_SUFFIX}", f.output),
                        ReceiptReport::from_report(&p.converted.report),
                    )
                })
                .collect();
            for (name, r) in &reused {
                reports.push((format!("{name}{REPORT_SUFFIX}"), r.report.clone()));
            }
            reports.sort_by(|a, b| a.0.cmp(&b.0));
            let input = receipt::ReceiptInput {
                subjects: subjects.clone(),
                copied: copied_subjects.clone(),
                sources: sources.clone(),
                excluded,
                source_param: dir_name.clone(),
                origin: origin.clone(),
                converter_sha256: guest::sha256(),
                policy: sandbox.policy(),
                strict: opts.strict,
                reports,
                started,
                finished,
                shard: opts.shard.as_ref().map(|w| w.parameters.clone()),
            };
            // Replacing our own earlier receipt is the point of a rerun.
            Some(StagedReceipt::stage_in_dir(
                &input,
                key,
                &out,
                &receipt_name,
                &out_path.join(&receipt_name),
                opts.force || previous.is_some(),
            )?)
        }
        None => None,
    };

    // The model signature, staged like the receipt: it covers everything
    // the receipt does and the receipt (check_signed_dir made sure nothing
    // else is in OUT).
    let signature_pending = match (&opts.oms_key, &receipt_pending) {
        (Some(oms_key), Some(staged)) => {
            let mut files: Vec<(String, Sha256Hex)> = subjects.clone();
            files.extend(copied_subjects.iter().cloned());
            files.push((receipt_name.clone(), staged.sha256().clone()));
            let name = model_name(&out_path)?;
            let line = oms::sign(&oms::statement(&name, &files)?, oms_key)?;
            let shown = out_path.join(oms::SIGNATURE_FILE);
            let pending = Pending::in_dir(&out, oms::SIGNATURE_FILE, &shown)?
                .with_exists_hint(SIGNATURE_EXISTS_HINT);
            pending
                .file()?
                .write_all(line.as_bytes())
                .map_err(|e| Error::io(format!("cannot write {}", shown.display()), &e))?;
            Some((pending, opts.force, shown))
        }
        (Some(_), None) => {
            return Err(Error::internal(
                "a model signature was asked for without a receipt",
            ))
        }
        (None, _) => None,
    };

    // The BOM, staged last: it references the receipt by digest.
    let bom_pending = match &opts.cyclonedx {
        Some(path) => {
            let model_name = match tree.origin() {
                Some(o) => o.repo_id.clone(),
                None => out_path
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| dir_name.clone()),
            };
            let indexes: BTreeSet<&str> = plan.indexes.iter().map(|i| i.output.as_str()).collect();
            let mut outputs: Vec<(String, Sha256Hex, &'static str)> = subjects
                .iter()
                .map(|(name, sha)| {
                    let role = if indexes.contains(name.as_str()) {
                        "index"
                    } else {
                        "converted"
                    };
                    (name.clone(), sha.clone(), role)
                })
                .collect();
            outputs.extend(
                copied_subjects
                    .iter()
                    .map(|(name, sha)| (name.clone(), sha.clone(), "copied")),
            );
            let config = plan.copied.iter().find(|f| f.path == "config.json");
            let bom = crate::bom::conversion(&crate::bom::ConversionBom {
                model_name,
                source_name: dir_name.clone(),
                origin: origin.as_ref(),
                sources: sources
                    .iter()
                    .map(|s| (s.name.clone(), s.sha256.clone()))
                    .collect(),
                outputs,
                receipt: receipt_pending
                    .as_ref()
                    .map(|r| (receipt_name.clone(), r.sha256().clone())),
                model_parameters: config.and_then(|f| config_parameters(&tree, f)),
                converter_sha256: guest::sha256(),
                policy_sha256: sandbox.policy().sha256.clone(),
                strict: opts.strict,
                started,
                finished,
            });
            Some(crate::bom::stage(&bom, path)?)
        }
        None => None,
    };

    // Publish: outputs, indexes, copies, then the receipt that covers them,
    // the model signature that covers them all, and the BOM.
    let mut converted = Vec::new();
    let mut pending = Vec::new();
    for (_, p) in prepared {
        let (file, c) = p.into_parts();
        pending.push(file);
        converted.push(c);
    }
    pending.extend(index_pending);
    pending.extend(copy_pending);
    let (mut last, model_signature) = match signature_pending {
        Some((p, replace, shown)) => (vec![(p, replace)], Some(shown)),
        None => (Vec::new(), None),
    };
    last.extend(bom_pending.map(|b| (b, opts.force)));
    let receipt_path = receipt::publish_all_then(pending, opts.force, receipt_pending, last)?;
    dirs.keep();
    converted.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(DirConverted {
        source: shown,
        origin,
        output: out_path,
        converted,
        reused: reused.into_keys().collect(),
        indexes: plan.indexes.iter().map(|i| i.output.clone()).collect(),
        left_alone: plan.left_alone,
        copied: plan.copied.iter().map(|f| f.path.clone()).collect(),
        code,
        excluded: plan
            .excluded
            .iter()
            .map(|(f, reason)| Excluded {
                name: f.path.clone(),
                reason,
            })
            .collect(),
        receipt: receipt_path,
        cyclonedx: opts.cyclonedx.clone(),
        model_signature,
    })
}

/// The part of the directory's plan a shard does. The directory is
/// planned again here, so it must be exactly as it was when the batch was
/// planned: otherwise the shards' parts would not add up to the directory.
fn shard_part(plan: Plan, work: &crate::batch::ShardWork, shown: &Path) -> Result<Plan> {
    if crate::batch::units(&plan) != work.units {
        return Err(Error::new(
            Kind::Refused,
            format!(
                "refused: {} changed between planning the batch and converting it",
                shown.display()
            ),
            "convert a directory nothing else is writing, with the same contents on every machine",
        ));
    }
    let keep = |path: &str| work.files.contains(path);
    Ok(Plan {
        files: plan
            .files
            .into_iter()
            .filter(|f| keep(&f.source.path))
            .collect(),
        indexes: plan
            .indexes
            .into_iter()
            .filter(|i| keep(&i.source.path))
            .collect(),
        copied: plan.copied.into_iter().filter(|f| keep(&f.path)).collect(),
        left_alone: plan.left_alone,
        excluded: plan
            .excluded
            .into_iter()
            .filter(|(f, _)| keep(&f.path))
            .collect(),
    })
}

/// What the model's `config.json` says it is, for the BOM's model card;
/// nothing if it cannot be read.
fn config_parameters(tree: &SourceTree, f: &TreeFile) -> Option<crate::bom::ModelParameters> {
    let file = tree.open_file(f).ok()?;
    let bytes = crate::open::read_bounded(file, 16 << 20, &tree.shown_path(f), "a config").ok()?;
    crate::bom::model_parameters(&bytes)
}

/// Where `--cyclonedx` may not write: inside the output directory (a file
/// no receipt lists, which `decant verify DIR` refuses), inside the source
/// directory (which may be the output, and is a model someone will
/// convert or serve), or into a Hugging Face cache; and not over an
/// existing file without `--force`.
fn refuse_bom_path(
    bom: &Path,
    tree: &SourceTree,
    source: &Path,
    out_path: &Path,
    force: bool,
) -> Result<()> {
    output::refuse_inside(
        bom,
        out_path,
        "the BOM",
        "the output directory",
        "--cyclonedx",
    )?;
    output::refuse_inside(
        bom,
        source,
        "the BOM",
        "the source directory",
        "--cyclonedx",
    )?;
    if let Some(cache) = tree.cache_root() {
        output::refuse_inside(
            bom,
            cache,
            "the BOM",
            "the Hugging Face cache",
            "--cyclonedx",
        )?;
    }
    // Checked now, not when the BOM is written after every conversion.
    let parent = match bom.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::new(
            Kind::Usage,
            format!("--cyclonedx: {} is not a directory", parent.display()),
            "write the BOM into a directory that exists, outside the model",
        ));
    }
    output::check_target_hinted(bom, force, output::BOM_EXISTS_HINT)
}

/// The hint when `model.sig` exists.
pub const SIGNATURE_EXISTS_HINT: &str =
    "pass --force to replace it; decant never replaces a model signature otherwise";

/// The name a model signature gives its directory (model_signing records
/// the directory's own name; it is informative only).
pub fn model_name(dir: &Path) -> Result<String> {
    let full = dir
        .canonicalize()
        .map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), &e))?;
    Ok(full
        .file_name()
        .map_or_else(|| "/".into(), |n| n.to_string_lossy().into_owned()))
}

/// With `--oms-key`, before any work: `model.sig` signs what decant's
/// receipt vouches for and nothing else, and `model_signing verify`
/// requires every file of the directory to be signed. So OUT may hold only
/// files this conversion writes or vouches for (an earlier run's included),
/// and an existing `model.sig` needs `--force`.
fn check_signed_dir(out: &Dir, out_path: &Path, plan: &Plan, force: bool) -> Result<()> {
    let shown = out_path.join(oms::SIGNATURE_FILE);
    if !force && out.symlink_metadata(oms::SIGNATURE_FILE).is_ok() {
        return Err(Error::new(
            Kind::Usage,
            format!("{} already exists", shown.display()),
            SIGNATURE_EXISTS_HINT,
        ));
    }
    let expected: BTreeSet<&str> = plan
        .written()
        .chain(plan.copied.iter().map(|f| f.path.as_str()))
        .collect();
    let listed = crate::served::visit(out, out_path, &[], &mut |_, _| Ok(()))?;
    let foreign = listed
        .problems
        .iter()
        .map(|p| p.to_string())
        .chain(
            listed
                .files
                .iter()
                .map(|(p, ())| p)
                .filter(|p| !expected.contains(p.as_str()) && !oms::is_ignored(p))
                .map(|p| format!("{p} is not one of the conversion's files")),
        )
        .next();
    if let Some(what) = foreign {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "--oms-key: {} would sign {}, but {what}",
                oms::SIGNATURE_FILE,
                out_path.display()
            ),
            "convert into a new output directory with -o OUTDIR: model.sig signs what the receipt vouches for, and nothing else may be there",
        ));
    }
    Ok(())
}

/// A temp file for `path` (in OUT) in its directory's handle.
fn pending_in(dirs: &OutDirs, path: &str, shown: &Path) -> Result<Pending> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    Pending::in_dir(dirs.opened(dir)?, name, shown)
}

/// `--jobs N` is the number of cores a run may keep busy, as with `make
/// -j`: one per worker converting a file, and the rest (when there are
/// fewer files than N) lent to conversions, which then hash the source
/// and the output on threads of their own (about 1.6 cores each). So `--jobs 1` keeps one core busy, and `--jobs 2` on 8 files
/// runs two one-core conversions side by side.
struct SpareCores(AtomicUsize);

/// One core taken from [`SpareCores`], given back when dropped.
struct SpareCore<'a>(&'a SpareCores);

impl SpareCores {
    fn take(&self) -> Option<SpareCore<'_>> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| SpareCore(self))
    }
}

impl Drop for SpareCore<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_add(1, Ordering::AcqRel);
    }
}

fn convert_one(
    sandbox: &Sandbox,
    opts: &Options,
    tree: &SourceTree,
    dirs: &OutDirs,
    out_path: &Path,
    f: &FilePlan,
    cores: Cores,
) -> Result<Prepared> {
    let source = tree.open_file(&f.source)?;
    let shown_out = out_path.join(&f.output);
    let pending = pending_in(dirs, &f.output, &shown_out)?;
    let prepared = convert::prepare_job(
        sandbox,
        Job {
            source,
            source_shown: tree.shown_path(&f.source),
            output_shown: shown_out,
            strict: opts.strict,
            force: opts.force,
            cores,
        },
        pending,
    )?;
    // The bytes converted are the bytes the cache names.
    tree.confirm(
        &f.source,
        &Sha256Hex::from_computed(prepared.converted.source_sha256.clone()),
    )?;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--jobs` counts cores: a conversion gets a second one only while
    /// one is spare, and gives it back when done.
    #[test]
    fn spare_cores_are_lent_and_given_back() {
        let spare = SpareCores(AtomicUsize::new(1));
        let first = spare.take();
        assert!(first.is_some());
        assert!(spare.take().is_none(), "only one core was spare");
        drop(first);
        assert!(
            spare.take().is_some(),
            "a finished conversion gives it back"
        );
        assert!(SpareCores(AtomicUsize::new(0)).take().is_none());
    }

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

    /// Issue 11: indexes are found and renamed as transformers and
    /// diffusers name them, variants included.
    #[test]
    fn index_names_follow_the_checkpoint_names() {
        for (index, out) in [
            (
                "pytorch_model.bin.index.json",
                Some("model.safetensors.index.json"),
            ),
            (
                "pytorch_model.bin.index.fp16.json",
                Some("model.safetensors.index.fp16.json"),
            ),
            (
                "diffusion_pytorch_model.bin.index.json",
                Some("diffusion_pytorch_model.safetensors.index.json"),
            ),
            (
                "adapter_model.bin.index.json",
                Some("adapter_model.safetensors.index.json"),
            ),
            ("model.safetensors.index.json", None),
            ("tokenizer.json", None),
            ("foo.index.json", None),
            ("pytorch_model.bin.index..json", None),
        ] {
            assert_eq!(index_output(index).as_deref(), out, "{index}");
        }
        assert_eq!(
            output_name("pytorch_model.fp16-00001-of-00002.bin"),
            "model.fp16-00001-of-00002.safetensors"
        );
        assert_eq!(
            output_name("diffusion_pytorch_model.fp16.bin"),
            "diffusion_pytorch_model.fp16.safetensors"
        );
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
