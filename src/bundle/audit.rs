//! `decant audit DIR`: every file of a bundle classified, with its digest
//! and findings, and a verdict against `--fail-on`.
//!
//! What a file is comes from its bytes, read in the sandbox
//! ([`Sandbox::scan`]): a pickle named `model.safetensors` is a pickle.
//! Names matter only for what loaders find by name: configs with
//! `auto_map` or a chat template, `adapter_config.json`, Modelfiles,
//! `.py` and `.jinja` files, receipts.

use super::configs::{self, ConfigKind, MAX_CONFIG_BYTES};
use super::findings::{executes_code, highest, Finding, FindingKind, Severity};
use crate::convert::sha256_file;
use crate::error::{one_line, Result};
use crate::sandbox::Sandbox;
use crate::served;
use crate::trust::manifest;
use crate::trust::statement::Sha256Hex;
use crate::trust::verify::{self, Trust};
use decant_abi::{FileScan, ScanFormat};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What audit takes.
pub struct Options<'a> {
    pub dir: &'a Path,
    pub trusted_keys: &'a [VerifyingKey],
    pub fail_on: Severity,
    /// A file under DIR to leave out (the manifest `attest` is writing).
    pub except: Option<served::FileId>,
}

/// What a file is, for people and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileClass {
    /// Pickle-based (torch zip or legacy, any pickle), by content.
    Pickle,
    Safetensors,
    Gguf,
    /// A decant conversion receipt (`*.intoto.jsonl`).
    Receipt,
    /// A decant bundle manifest.
    BundleManifest,
    /// A JSON config, or another JSON file.
    Config,
    /// Python source.
    Python,
    /// A `.jinja` chat template.
    ChatTemplate,
    /// An Ollama Modelfile.
    Modelfile,
    /// A file loaders read as data: tokenizer vocabularies, README,
    /// licence, images for the model card.
    Data,
    /// Anything else.
    Unrecognised,
}

/// One file of the bundle.
#[derive(Debug, Clone, Serialize)]
pub struct AuditedFile {
    pub path: String,
    pub sha256: Sha256Hex,
    pub bytes: u64,
    pub class: FileClass,
    /// What the sandbox read in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<FileScan>,
    /// For a pickle-based file: what `decant convert` would do with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
}

/// Whether `decant convert` takes a pickle-based file: `decant inspect`
/// run in its own sandbox, so a file that exhausts a limit there is still
/// scanned (the scan is linear; reading a checkpoint whole may not be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Conversion {
    Converts {
        tensors: u64,
    },
    Refused {
        /// The guest's refusal kind; none for a sandbox limit.
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<decant_abi::RefusalKind>,
        message: String,
    },
}

impl Conversion {
    fn note(&self) -> String {
        match self {
            Conversion::Converts { .. } => "decant converts it to safetensors".into(),
            Conversion::Refused { message, .. } => format!("decant refuses it ({message})"),
        }
    }
}

/// What `decant convert` makes of the pickle-based file `file`.
fn conversion(sandbox: &Sandbox, file: &File) -> std::io::Result<Conversion> {
    Ok(
        match sandbox.run(crate::sandbox::Entry::Inspect, file.try_clone()?, None) {
            Ok((decant_abi::Outcome::Done(r), _)) => Conversion::Converts { tensors: r.tensors },
            Ok((decant_abi::Outcome::Refused(r), _)) => Conversion::Refused {
                kind: Some(r.kind),
                message: one_line(&r.message),
            },
            Err(e) => Conversion::Refused {
                kind: None,
                message: one_line(&e.message),
            },
        },
    )
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    #[serde(serialize_with = "crate::render::lossy_path")]
    pub dir: PathBuf,
    pub files: Vec<AuditedFile>,
    /// Worst first, then by file.
    pub findings: Vec<Finding>,
    pub highest: Option<Severity>,
    pub fail_on: Severity,
    /// Receipts that verified, with what they cover.
    pub receipts: Vec<manifest::VerifiedReceipt>,
    /// What each of those receipts says its files were converted from:
    /// the pedigree of a BOM (`attest --cyclonedx`). Not printed, and not
    /// in the manifest, which records the receipts by digest.
    #[serde(skip)]
    pub receipt_sources: Vec<ReceiptSources>,
    pub trusted_key_fingerprints: Vec<String>,
    /// Signature side files left out of `files` (the root `model.sig`,
    /// see [`crate::served`]).
    pub side_files: Vec<String>,
}

impl Audit {
    /// Nothing at or above `fail_on`.
    pub fn passed(&self) -> bool {
        self.highest.is_none_or(|h| h < self.fail_on)
    }
}

/// The sources a verified receipt in the bundle names.
#[derive(Debug, Clone)]
pub struct ReceiptSources {
    /// The receipt's path in the bundle.
    pub receipt: String,
    /// `externalParameters.source`: the source file's or directory's name.
    pub source: String,
    /// The Hugging Face revision the sources were read from, if any.
    pub origin: Option<crate::trust::statement::RevisionPurl>,
    /// Each source file, by name, with its sha256.
    pub files: Vec<(String, Sha256Hex)>,
}

/// File names (or suffixes) of data files loaders read, which need no
/// finding: tokenizer vocabularies and models, the model card and licence.
const DATA_SUFFIXES: &[&str] = &[
    ".txt",
    ".md",
    ".model",
    ".tiktoken",
    ".bpe",
    ".vocab",
    ".spm",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".webp",
    ".csv",
    ".yaml",
    ".yml",
    ".gitattributes",
    ".gitignore",
];
const DATA_NAMES: &[&str] = &[
    "LICENSE",
    "LICENCE",
    "NOTICE",
    "COPYING",
    "README",
    "USE_POLICY",
];

fn is_data(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    DATA_SUFFIXES.iter().any(|s| lower.ends_with(s))
        || DATA_NAMES.iter().any(|n| {
            name == *n || name.starts_with(&format!("{n}.")) || name.starts_with(&format!("{n}-"))
        })
}

/// What the walk keeps of each file.
struct Seen {
    sha256: Sha256Hex,
    bytes: u64,
    scan: std::result::Result<FileScan, String>,
    conversion: Option<Conversion>,
    /// The bytes of a small file audit reads itself (configs, Modelfiles,
    /// receipts, templates).
    text: Option<Vec<u8>>,
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn dir_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..=i])
}

fn host_reads(name: &str) -> Option<u64> {
    if name.ends_with(".intoto.jsonl") {
        Some(manifest::MAX_MANIFEST_BYTES as u64)
    } else if configs::kind_of(name).is_some() || name.ends_with(".jinja") {
        Some(MAX_CONFIG_BYTES)
    } else {
        None
    }
}

/// The first `cap` bytes of `file` from its start (a clone shares the
/// file position, which hashing has moved to the end), or `None` if it is
/// longer.
fn read_capped(file: &File, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    f.take(cap + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

/// Audits `opts.dir`.
pub fn audit(sandbox: &Sandbox, opts: &Options<'_>) -> Result<Audit> {
    let dir = crate::output::open_dir(opts.dir)?;
    let visited = served::visit(&dir, opts.dir, opts.except.as_slice(), &mut |rel, file| {
        let sha256 = Sha256Hex::from_computed(sha256_file(file)?);
        let bytes = file.metadata()?.len();
        let scan = sandbox
            .scan(file.try_clone()?)
            .map_err(|e| one_line(&e.message));
        let pickled = scan.as_ref().is_ok_and(|s| s.format.is_pickle_based());
        let conversion = if pickled {
            Some(conversion(sandbox, file)?)
        } else {
            None
        };
        let text = match host_reads(last_component(rel)) {
            Some(cap) => read_capped(file, cap)?,
            None => None,
        };
        Ok(Seen {
            sha256,
            bytes,
            scan,
            conversion,
            text,
        })
    })?;
    let present: BTreeSet<String> = visited.files.iter().map(|(p, _)| p.clone()).collect();
    let mut findings = Vec::new();
    for problem in &visited.problems {
        findings.push(Finding::new(
            Severity::High,
            FindingKind::NotARegularFile,
            &problem.path,
            format!(
                "{}: a loader would serve what it points to, which is not in the bundle",
                problem.what
            ),
        ));
    }
    for side in &visited.side_files {
        findings.push(Finding::new(
            Severity::Info,
            FindingKind::ModelSignature,
            side,
            "an OpenSSF model signature (model_signing): a side file, not one of the files audited or attested, since it signs them; check it with model_signing verify key",
        ));
    }
    let trust_converters = [crate::guest::sha256()];
    let trust = Trust {
        keys: opts.trusted_keys,
        converters: &trust_converters,
    };
    let digests: BTreeMap<&str, &Sha256Hex> = visited
        .files
        .iter()
        .map(|(p, s)| (p.as_str(), &s.sha256))
        .collect();
    let mut receipts = Vec::new();
    let mut receipt_sources = Vec::new();
    let mut covered: BTreeMap<String, String> = BTreeMap::new();
    let mut shard_sets: BTreeMap<
        String,
        Vec<(String, verify::Verified<crate::trust::statement::Statement>)>,
    > = BTreeMap::new();
    let mut files = Vec::new();
    for (path, seen) in &visited.files {
        let name = last_component(path);
        let dir_prefix = dir_of(path);
        let mut class = FileClass::Unrecognised;
        match &seen.scan {
            Err(why) => findings.push(Finding::new(
                Severity::High,
                FindingKind::Unscannable,
                path,
                format!("could not be scanned in the sandbox: {why}"),
            )),
            Ok(scan) => match scan.format {
                ScanFormat::TorchZip | ScanFormat::ZipWithPickles | ScanFormat::Pickle => {
                    class = FileClass::Pickle;
                    let note = seen
                        .conversion
                        .as_ref()
                        .map_or_else(String::new, Conversion::note);
                    pickle_findings(path, scan, &note, &mut findings);
                    if let Some(Conversion::Refused {
                        kind: Some(decant_abi::RefusalKind::Corrupt),
                        message,
                    }) = &seen.conversion
                    {
                        findings.push(Finding::new(
                            Severity::High,
                            FindingKind::PickleAmbiguous,
                            path,
                            format!(
                                "decant refuses it as corrupt or ambiguous ({message}): readers may disagree about what it holds, and no scan can vouch for what they load"
                            ),
                        ));
                    }
                }
                ScanFormat::Safetensors => {
                    class = FileClass::Safetensors;
                    if let Some(why) = &scan.damaged {
                        findings.push(Finding::new(
                            Severity::High,
                            FindingKind::SafetensorsDamaged,
                            path,
                            format!("not a valid safetensors file: {why}"),
                        ));
                    }
                }
                ScanFormat::Gguf => {
                    class = FileClass::Gguf;
                    gguf_findings(path, scan, &mut findings);
                }
                ScanFormat::Other => {}
            },
        }
        if class == FileClass::Unrecognised {
            class = by_name(path, name, dir_prefix, seen, &present, &mut findings);
        }
        if class == FileClass::Receipt {
            if let Some(bytes) = &seen.text {
                if manifest::claims_bundle_predicate(bytes) {
                    class = FileClass::BundleManifest;
                } else if let Some((r, sources, shard)) =
                    verified_receipt(path, dir_prefix, bytes, &seen.sha256, trust, &digests)
                {
                    if let Some(statement) = shard {
                        shard_sets
                            .entry(dir_prefix.to_string())
                            .or_default()
                            .push((path.clone(), statement));
                    }
                    for f in &r.covers {
                        covered.insert(f.clone(), path.clone());
                    }
                    receipts.push(r);
                    receipt_sources.push(sources);
                } else {
                    findings.push(Finding::new(
                        if opts.trusted_keys.is_empty() { Severity::Info } else { Severity::Medium },
                        FindingKind::ReceiptUnverified,
                        path,
                        if opts.trusted_keys.is_empty() {
                            "a receipt, not checked: no --trusted-key given".to_string()
                        } else {
                            "a receipt that does not verify with any trusted key (or covers no file here)".to_string()
                        },
                    ));
                }
            }
        }
        if class == FileClass::Unrecognised {
            findings.push(Finding::new(
                Severity::Low,
                FindingKind::Unrecognised,
                path,
                "a file audit does not recognise: check what loads it",
            ));
        }
        files.push(AuditedFile {
            path: path.clone(),
            sha256: seen.sha256.clone(),
            bytes: seen.bytes,
            class,
            scan: seen.scan.as_ref().ok().cloned(),
            conversion: seen.conversion.clone(),
        });
    }
    // Shard receipts vouch for a directory only together: one that is
    // missing leaves files nobody converted looking proven.
    for set in shard_sets.values() {
        let labelled: Vec<(&str, _)> = set.iter().map(|(p, s)| (p.as_str(), s.clone())).collect();
        let check = crate::trust::shards::shards_check(&labelled);
        if !check.passed {
            findings.push(Finding::new(
                Severity::High,
                FindingKind::ShardSetIncomplete,
                labelled.first().map_or("", |l| l.0),
                format!(
                    "the shard receipts here are not a complete set: {}",
                    check.detail
                ),
            ));
        }
    }
    for f in files.iter().filter(|f| f.class == FileClass::Safetensors) {
        if f.scan.as_ref().is_some_and(|s| s.damaged.is_some()) {
            continue;
        }
        findings.push(match covered.get(&f.path) {
            Some(receipt) => Finding::new(
                Severity::Info,
                FindingKind::SafetensorsProven,
                &f.path,
                format!("covered by receipt {receipt}, signed by a trusted key"),
            ),
            None => Finding::new(
                Severity::Medium,
                FindingKind::SafetensorsUnproven,
                &f.path,
                "no receipt in the bundle that verifies with a trusted key covers it: how it was made is not proven",
            ),
        });
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.message.cmp(&b.message))
    });
    Ok(Audit {
        dir: opts.dir.to_path_buf(),
        highest: highest(&findings),
        files,
        findings,
        fail_on: opts.fail_on,
        receipts,
        receipt_sources,
        trusted_key_fingerprints: opts
            .trusted_keys
            .iter()
            .map(crate::trust::keys::fingerprint)
            .collect(),
        side_files: visited.side_files,
    })
}

/// Classifies a file the sandbox found no model format in, by name.
fn by_name(
    path: &str,
    name: &str,
    dir_prefix: &str,
    seen: &Seen,
    present: &BTreeSet<String>,
    findings: &mut Vec<Finding>,
) -> FileClass {
    if name.ends_with(".intoto.jsonl") {
        return FileClass::Receipt;
    }
    if name.ends_with(".py") {
        findings.push(Finding::new(
            Severity::Medium,
            FindingKind::PythonFile,
            path,
            "Python source: runs if a loader imports it (trust_remote_code=True, or a custom pipeline)",
        ));
        return FileClass::Python;
    }
    let text = seen.text.as_deref();
    if name.ends_with(".jinja") {
        if let Some(t) = text {
            findings.push(configs::template_finding(path, "chat template", t));
        }
        return FileClass::ChatTemplate;
    }
    let Some(kind) = configs::kind_of(name) else {
        return if is_data(name) {
            FileClass::Data
        } else {
            FileClass::Unrecognised
        };
    };
    let Some(bytes) = text else {
        findings.push(Finding::new(
            Severity::High,
            FindingKind::ConfigUnreadable,
            path,
            format!("larger than the {MAX_CONFIG_BYTES} bytes audit reads of a config"),
        ));
        return FileClass::Config;
    };
    match kind {
        ConfigKind::Loader => {
            findings.extend(configs::loader_config(path, dir_prefix, bytes, present))
        }
        ConfigKind::Adapter => findings.extend(configs::adapter_config(path, bytes)),
        ConfigKind::Modelfile => {
            findings.extend(configs::modelfile(path, dir_prefix, bytes, present));
            return FileClass::Modelfile;
        }
        ConfigKind::OtherJson => {}
    }
    FileClass::Config
}

/// How many names one finding lists.
const NAMED: usize = 8;

/// How a name found only by reading on past a damaged stream's damage is
/// marked (`GlobalRef::possible`).
const POSSIBLY: &str = "possibly referenced: damaged stream";

fn names(list: &[String], total: u64) -> String {
    let mut s = list
        .iter()
        .take(NAMED)
        .map(|n| one_line(n))
        .collect::<Vec<_>>()
        .join(", ");
    let shown = list.len().min(NAMED) as u64;
    if total > shown {
        s.push_str(&format!(" and {} more", total - shown));
    }
    s
}

fn pickle_findings(path: &str, scan: &FileScan, convert: &str, out: &mut Vec<Finding>) {
    let Some(p) = &scan.pickle else {
        out.push(Finding::new(
            Severity::High,
            FindingKind::PickleUnreadable,
            path,
            "pickle-based, but the scan reported no pickle",
        ));
        return;
    };
    let mut executing = Vec::new();
    let mut unsafe_globals = Vec::new();
    let mut outside_total = 0;
    let mut unlisted = 0u64;
    let mut hidden = 0;
    let mut damaged = Vec::new();
    // A name is listed once per file, although every pickle of a zip that
    // names it lists it (a TorchScript archive's code and constants each
    // name `torch.jit._pickle.build_intlist`); a name some stream names
    // for certain is not listed again as only possibly referenced.
    let certain: BTreeSet<&str> = p
        .streams
        .iter()
        .flat_map(|s| &s.globals)
        .filter(|g| !g.allowlisted && !g.possible)
        .map(|g| g.name.as_str())
        .collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for s in &p.streams {
        outside_total += s.outside_total;
        hidden += s.unresolved;
        let outside = s.globals.iter().filter(|g| !g.allowlisted);
        // Names this stream counted but did not list (the scan's caps).
        unlisted += s
            .outside_total
            .saturating_sub(outside.clone().count() as u64);
        for g in outside {
            if g.possible && certain.contains(g.name.as_str()) {
                continue;
            }
            // A name only a resynchronising reading of a damaged stream
            // found is judged as any other, and marked.
            let shown = if g.possible {
                format!("{} ({POSSIBLY})", g.name)
            } else {
                g.name.clone()
            };
            if !seen.insert(shown.clone()) {
                continue;
            }
            if executes_code(&g.name) {
                executing.push(shown);
            } else {
                unsafe_globals.push(shown);
            }
        }
        if let Some(why) = &s.damaged {
            damaged.push(format!("{}: {why}", s.location));
        }
    }
    if !executing.is_empty() {
        out.push(Finding::new(
            Severity::Critical,
            FindingKind::PickleCodeExecution,
            path,
            format!(
                "a pickle naming {}, which runs code when a plain torch.load or pickle.load reads it; {convert}",
                names(&executing, executing.len() as u64)
            ),
        ));
    }
    if hidden > 0 {
        out.push(Finding::new(
            Severity::Critical,
            FindingKind::PickleHiddenGlobal,
            path,
            format!("a pickle computing {hidden} of the names it imports, so they cannot be read without running it; {convert}"),
        ));
    }
    if !unsafe_globals.is_empty() || unlisted > 0 {
        out.push(Finding::new(
            Severity::High,
            FindingKind::PickleUnsafeGlobal,
            path,
            format!(
                "a pickle naming {} outside the weights-only allowlist (torch's globals for state dicts): a plain torch.load imports and may call them; {convert}",
                names(&unsafe_globals, unsafe_globals.len() as u64 + unlisted)
            ),
        ));
    }
    if !damaged.is_empty() || p.streams_total > p.streams.len() as u64 {
        let mut why = damaged.join("; ");
        if p.streams_total > p.streams.len() as u64 {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str(&format!(
                "{} pickles, {} scanned",
                p.streams_total,
                p.streams.len()
            ));
        }
        out.push(Finding::new(
            Severity::High,
            FindingKind::PickleUnreadable,
            path,
            format!(
                "a pickle-based file not fully scanned ({}), so what it imports is not known",
                one_line(&why)
            ),
        ));
    }
    if executing.is_empty() && hidden == 0 && outside_total == 0 && damaged.is_empty() {
        out.push(Finding::new(
            Severity::Medium,
            FindingKind::PickleWeightsOnly,
            path,
            format!(
                "a pickle naming only allowlisted globals: torch.load(weights_only=True) reads it without running code, but every loader of the bundle must; {convert}"
            ),
        ));
    }
}

fn gguf_findings(path: &str, scan: &FileScan, out: &mut Vec<Finding>) {
    if let Some(why) = &scan.damaged {
        out.push(Finding::new(
            Severity::High,
            FindingKind::GgufDamaged,
            path,
            format!("not a valid GGUF file: {}", one_line(why)),
        ));
    }
    let Some(g) = &scan.gguf else {
        return;
    };
    out.push(Finding::new(
        Severity::Info,
        FindingKind::Gguf,
        path,
        format!(
            "GGUF v{}, architecture {}, file type {}, {} tensors, {} metadata entries",
            g.version,
            g.architecture.as_deref().map_or("unknown".into(), one_line),
            g.file_type.map_or("unknown".into(), |t| t.to_string()),
            g.tensor_count,
            g.metadata_count
        ),
    ));
    if let Some(t) = &g.chat_template {
        out.push(Finding::new(
            Severity::Info,
            FindingKind::ChatTemplate,
            path,
            format!(
                "embedded chat template (tokenizer.chat_template): {} bytes, sha256 {} (part of what the model is served with)",
                t.bytes, t.sha256
            ),
        ));
    }
}

/// The receipt at `path`, if it authenticates with a trusted key, with the
/// bundle files it vouches for (a subject whose digest matches the file of
/// that name beside the receipt) and the sources it names.
fn verified_receipt(
    path: &str,
    dir_prefix: &str,
    bytes: &[u8],
    sha256: &Sha256Hex,
    trust: Trust<'_>,
    digests: &BTreeMap<&str, &Sha256Hex>,
) -> Option<(
    manifest::VerifiedReceipt,
    ReceiptSources,
    Option<verify::Verified<crate::trust::statement::Statement>>,
)> {
    if trust.keys.is_empty() {
        return None;
    }
    let statement = verify::authenticate(bytes, trust)?;
    let covers: Vec<String> = statement
        .subject
        .iter()
        .filter_map(|s| {
            let file = format!("{dir_prefix}{}", s.name);
            (digests.get(file.as_str()) == Some(&&s.digest.sha256)).then_some(file)
        })
        .collect();
    if covers.is_empty() {
        return None;
    }
    let sources = ReceiptSources {
        receipt: path.to_string(),
        source: statement
            .predicate
            .build_definition
            .external_parameters
            .source
            .clone(),
        origin: statement.source_revisions().first().map(|o| (*o).clone()),
        files: statement
            .sources()
            .map(|(d, _)| (d.name.clone(), d.digest.sha256.clone()))
            .collect(),
    };
    let receipt = manifest::VerifiedReceipt {
        name: path.to_string(),
        digest: crate::trust::statement::DigestSet {
            sha256: sha256.clone(),
        },
        signer: trust
            .keys
            .get(statement.signer())
            .map(crate::trust::keys::fingerprint)
            .unwrap_or_default(),
        covers,
    };
    let shard = statement
        .predicate
        .build_definition
        .external_parameters
        .shard
        .is_some()
        .then(|| statement.clone());
    Some((receipt, sources, shard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use decant_abi::{GlobalRef, PickleScan, PickleStream, ScanFormat};

    fn stream(location: &str, globals: &[(&str, bool)], outside_total: u64) -> PickleStream {
        PickleStream {
            location: location.into(),
            protocol: 2,
            globals: globals
                .iter()
                .map(|&(name, possible)| GlobalRef {
                    name: name.into(),
                    allowlisted: false,
                    possible,
                })
                .collect(),
            outside_total,
            globals_total: outside_total,
            unresolved: 0,
            calls: 0,
            damaged: None,
        }
    }

    fn messages(streams: Vec<PickleStream>) -> Vec<String> {
        let scan = FileScan {
            format: ScanFormat::ZipWithPickles,
            pickle: Some(PickleScan {
                streams_total: streams.len() as u64,
                streams,
            }),
            safetensors: None,
            gguf: None,
            damaged: None,
        };
        let mut out = Vec::new();
        pickle_findings("m.pt", &scan, "decant refuses it", &mut out);
        out.into_iter().map(|f| f.message).collect()
    }

    /// Found by running audit on silero-vad's TorchScript archive: its
    /// three pickles each name `torch.jit._pickle.build_intlist`, and the
    /// finding listed the name three times.
    #[test]
    fn a_name_several_pickles_of_one_file_use_is_listed_once() {
        let intlist = "torch.jit._pickle.build_intlist";
        let m = messages(vec![
            stream("code", &[(intlist, false)], 1),
            stream(
                "constants",
                &[(intlist, false), ("argparse.Namespace", false)],
                2,
            ),
            stream("data", &[(intlist, false)], 1),
        ]);
        assert_eq!(
            m,
            [
                format!("a pickle naming {intlist}, which runs code when a plain torch.load or pickle.load reads it; decant refuses it"),
                "a pickle naming argparse.Namespace outside the weights-only allowlist (torch's globals for state dicts): a plain torch.load imports and may call them; decant refuses it".to_string(),
            ]
        );
    }

    /// Names a stream counted but could not list (its caps) are still
    /// counted per stream, and a name one stream names for certain is not
    /// repeated as only possibly referenced by another.
    #[test]
    fn unlisted_names_count_per_stream_and_certain_names_win() {
        let m = messages(vec![
            stream("a", &[("argparse.Namespace", false)], 3),
            stream("b", &[("argparse.Namespace", true)], 1),
        ]);
        assert_eq!(
            m,
            ["a pickle naming argparse.Namespace and 2 more outside the weights-only allowlist (torch's globals for state dicts): a plain torch.load imports and may call them; decant refuses it"]
        );
    }
}
