//! Everything decant prints, through one writer.
//!
//! Output is data for scripts as much as text for people, so it goes
//! through [`emit`] and [`emit_err`], which never panic: a closed stdout
//! (`decant verify ... | head -1`) makes a write fail, and a failed write
//! is dropped, because printing happens after the work and must never
//! change what was converted, published or decided, nor the exit status.
//! Names that come from the input are passed through [`one_line`], so they
//! cannot forge lines or carry terminal escapes.

use crate::convert::{Converted, FileConverted};
use crate::error::{one_line, Error};
use crate::gate::Outcome;
use crate::model_dir::DirConverted;
use decant_abi::Report;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

/// Serialises a path as a string, lossily where it is not UTF-8 (serde_json
/// refuses such a path, and output must not fail after the work is done).
pub(crate) fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// [`lossy_path`] for an optional path.
pub(crate) fn lossy_opt_path<S: serde::Serializer>(
    p: &Option<std::path::PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// Writes `text` to stdout; a failed write (a closed pipe) is ignored.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes `text` to stderr; a failed write is ignored.
pub fn emit_err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// One JSON object on one line of stdout.
pub fn emit_json<T: Serialize>(value: &T) {
    // Every value rendered here is built from plain structs and strings.
    let mut line = serde_json::to_string(value).unwrap_or_else(|e| {
        serde_json::json!({"status": "error", "kind": "internal", "message": e.to_string()})
            .to_string()
    });
    line.push('\n');
    emit(&line);
}

/// An error: `decant: what` and `hint: what to do` on stderr, or with
/// `--json` one object on stdout.
pub fn error(e: &Error, json: bool) {
    if json {
        emit_json(&serde_json::json!({
            "status": if e.kind.exit_code() == 1 { "refused" } else { "error" },
            "kind": e.kind,
            "message": e.message,
            "hint": e.hint,
        }));
    } else {
        emit_err(&format!("decant: {}\nhint: {}\n", e.message, e.hint));
    }
}

/// `decant keygen`.
pub fn keygen(private: &Path, public: &Path, keyid: &str, fingerprint: &str) {
    emit(&format!(
        "wrote {} (private, mode 0600) and {}\n  keyid {keyid}\n  fingerprint (sha256 of the SPKI DER) {fingerprint}\n",
        private.display(),
        public.display()
    ));
}

/// `decant keygen --type p256`.
pub fn keygen_p256(private: &Path, public: &Path, fingerprint: &str, hint: &str) {
    emit(&format!(
        "wrote {} (private, mode 0600) and {}\n  ECDSA P-256, for --oms-key (OpenSSF model signatures, model.sig)\n  fingerprint (sha256 of the SPKI DER) {fingerprint}\n  model_signing key hint (sha256 of the SPKI PEM) {hint}\n",
        private.display(),
        public.display()
    ));
}

/// `decant convert FILE`.
pub fn converted(done: &FileConverted, json: bool) {
    if json {
        emit_json(&serde_json::json!({
            "status": "converted",
            "conversion": done.conversion,
            "receipt": done.receipt.as_ref().map(|p| p.to_string_lossy()),
        }));
        return;
    }
    let c = &done.conversion;
    let r = &c.report;
    let mut out = String::new();
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
    aliases(&mut out, r, " (recorded in __metadata__)");
    if r.dropped_total > 0 {
        let _ = writeln!(out, "  dropped {} non-tensor entries:", r.dropped_total);
        for d in &r.dropped {
            let _ = writeln!(out, "    {} ({})", one_line(&d.name), d.kind);
        }
    }
    if !r.ignored.is_empty() {
        let _ = writeln!(
            out,
            "  converted only state_dict; ignored top-level entries: {}",
            one_line(&r.ignored.join(", "))
        );
    }
    if let Some(path) = &done.receipt {
        let _ = writeln!(out, "  receipt: {}", path.display());
    }
    emit(&out);
}

/// One line per file as a directory conversion goes (without a terminal).
pub fn dir_file_converted(c: &Converted) {
    emit(&format!(
        "converted {} -> {} ({} tensors, sha256 {})\n",
        one_line(&c.source.display().to_string()),
        one_line(&c.output.display().to_string()),
        c.report.tensors,
        c.output_sha256
    ));
}

/// One line for an output an earlier receipt already vouches for.
pub fn dir_file_reused(output: &str) {
    emit(&format!(
        "unchanged {} (its receipt already vouches for it)\n",
        one_line(output)
    ));
}

/// Serialises a value by its `Display`.
pub(crate) fn display<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The summary after a directory conversion.
pub fn dir_converted(d: &DirConverted, json: bool) {
    if json {
        emit_json(&serde_json::json!({"status": "converted", "directory": d}));
        return;
    }
    emit(&dir_summary(d));
}

/// `decant convert SRC... --shard I/N`: each directory's summary.
pub fn shard_converted(c: &crate::batch::ShardConverted, json: bool) {
    if json {
        emit_json(&serde_json::json!({"status": "converted", "shard": c}));
        return;
    }
    let mut out = format!(
        "shard {} of plan {}: {} director{} with work\n",
        c.shard,
        c.plan,
        c.directories.len(),
        if c.directories.len() == 1 { "y" } else { "ies" }
    );
    for d in &c.directories {
        out.push_str(&dir_summary(d));
    }
    emit(&out);
}

/// `decant plan`: each shard's units.
pub fn batch_plan(p: &crate::batch::BatchPlan, json: bool) {
    let loads = p.loads();
    if json {
        let shards: Vec<serde_json::Value> = (1..=p.count)
            .map(|shard| {
                let units: Vec<serde_json::Value> = p
                    .sources
                    .iter()
                    .enumerate()
                    .flat_map(|(i, src)| {
                        p.units_in(i, shard).map(move |u| {
                            serde_json::json!({
                                "source": src.name,
                                "kind": u.kind.as_str(),
                                "files": u.files,
                                "bytes": u.bytes,
                            })
                        })
                    })
                    .collect();
                let (bytes, _) = loads.get(shard as usize - 1).copied().unwrap_or_default();
                serde_json::json!({"shard": format!("{shard}/{}", p.count), "bytes": bytes, "units": units})
            })
            .collect();
        let sources: Vec<serde_json::Value> = p
            .sources
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "path": s.path.to_string_lossy(), "units": s.units.len()}))
            .collect();
        emit_json(&serde_json::json!({
            "status": "planned",
            "plan": p.sha256,
            "count": p.count,
            "sources": sources,
            "shards": shards,
        }));
        return;
    }
    let units: usize = loads.iter().map(|l| l.1).sum();
    let bytes: u64 = loads.iter().map(|l| l.0).sum();
    let mut out = format!(
        "plan {}: {} source{}, {units} units, {bytes} bytes in {} shard{}\n",
        p.sha256,
        p.sources.len(),
        if p.sources.len() == 1 { "" } else { "s" },
        p.count,
        if p.count == 1 { "" } else { "s" },
    );
    for shard in 1..=p.count {
        let (bytes, n) = loads.get(shard as usize - 1).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "shard {shard}/{}: {n} unit{}, {bytes} bytes",
            p.count,
            if n == 1 { "" } else { "s" }
        );
        for (i, src) in p.sources.iter().enumerate() {
            for u in p.units_in(i, shard) {
                let _ = writeln!(
                    out,
                    "  {}/{} ({}, {} bytes{})",
                    one_line(&src.name),
                    one_line(u.files.first().map_or("", String::as_str)),
                    u.kind.as_str(),
                    u.bytes,
                    match u.files.len() {
                        1 => String::new(),
                        n => format!(", {n} files"),
                    }
                );
            }
        }
    }
    emit(&out);
}

fn dir_summary(d: &DirConverted) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "converted {} checkpoints in {} -> {}{}",
        d.converted.len() + d.reused.len(),
        one_line(&d.source.display().to_string()),
        one_line(&d.output.display().to_string()),
        if d.reused.is_empty() {
            String::new()
        } else {
            format!(" ({} unchanged)", d.reused.len())
        }
    );
    if let Some(origin) = &d.origin {
        let _ = writeln!(out, "  source revision: {origin}");
    }
    for index in &d.indexes {
        let _ = writeln!(out, "  index: {}", one_line(index));
    }
    for c in &d.converted {
        let n = c.report.aliases.len();
        if n > 0 {
            let _ = writeln!(
                out,
                "  {}: {n} tied names recorded in __metadata__",
                one_line(&c.output.display().to_string())
            );
        }
        if c.report.dropped_total > 0 {
            let _ = writeln!(
                out,
                "  {}: dropped {} non-tensor entries",
                one_line(&c.source.display().to_string()),
                c.report.dropped_total
            );
        }
    }
    if !d.copied.is_empty() {
        let _ = writeln!(
            out,
            "  copied unchanged: {}",
            one_line(&d.copied.join(", "))
        );
    }
    if !d.code.is_empty() {
        let _ = writeln!(
            out,
            "  code a loader may run (review before serving): {}",
            one_line(&d.code.join(", "))
        );
    }
    if !d.excluded.is_empty() {
        let listed: Vec<String> = d
            .excluded
            .iter()
            .map(|e| format!("{} ({})", e.name, e.reason))
            .collect();
        let _ = writeln!(
            out,
            "  excluded (training state, not converted, not copied): {}",
            one_line(&listed.join(", "))
        );
    }
    if !d.left_alone.is_empty() {
        let _ = writeln!(
            out,
            "  not copied (not part of the model, or replaced by what decant writes): {}",
            one_line(&d.left_alone.join(", "))
        );
    }
    if let Some(r) = &d.receipt {
        let _ = writeln!(out, "  receipt: {}", one_line(&r.display().to_string()));
    }
    if let Some(m) = &d.model_signature {
        let _ = writeln!(
            out,
            "  model signature (OpenSSF model_signing, covers the receipt too): {}",
            one_line(&m.display().to_string())
        );
    }
    if let Some(b) = &d.cyclonedx {
        let _ = writeln!(
            out,
            "  CycloneDX ML-BOM: {}",
            one_line(&b.display().to_string())
        );
    }
    out
}

/// `decant inspect`.
pub fn inspection(src: &Path, r: &Report, json: bool) {
    if json {
        emit_json(&serde_json::json!({
            "status": "inspected",
            "source": src.to_string_lossy(),
            "report": r,
        }));
        return;
    }
    let mut out = String::new();
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
            one_line(&t.name),
            t.dtype,
            t.shape,
            if t.strided { " (strided view)" } else { "" }
        );
    }
    aliases(&mut out, r, "");
    for d in &r.dropped {
        let _ = writeln!(out, "  not a tensor: {} ({})", one_line(&d.name), d.kind);
    }
    if !r.ignored.is_empty() {
        let _ = writeln!(
            out,
            "  outside state_dict: {}",
            one_line(&r.ignored.join(", "))
        );
    }
    let _ = writeln!(out, "  globals: {}", r.globals.join(", "));
    emit(&out);
}

/// Most tied-weight lines printed; the rest are counted (the output's
/// `__metadata__` and `--json` have them all).
const MAX_PRINTED_ALIASES: usize = 20;

fn aliases(out: &mut String, r: &Report, suffix: &str) {
    for (removed, kept) in r.aliases.iter().take(MAX_PRINTED_ALIASES) {
        let _ = writeln!(
            out,
            "  tied: {} = {}{suffix}",
            one_line(removed),
            one_line(kept)
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

/// `decant verify`: every check, then the verdict.
pub fn verification(o: &Outcome, json: bool) {
    let v = &o.verdict;
    if json {
        let mut out = serde_json::json!({
            "status": if o.passed() { "verified" } else { "not_verified" },
            "artifact": o.artifact.to_string_lossy(),
            "artifact_sha256": o.artifact_sha256,
            "receipt": o.receipt.to_string_lossy(),
            "receipts": o.receipts.iter().map(|r| r.0.to_string_lossy()).collect::<Vec<_>>(),
            "signer_fingerprint": o.signer_fingerprint(),
            "source_revisions": o.source_revisions(),
            "checks": v.checks(),
            "failed": v.failed(),
        });
        with_vsa(&mut out, o.vsa.as_deref());
        emit_json(&out);
        return;
    }
    let mut out = String::new();
    for c in v.checks() {
        let mark = if c.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {:<13} {}",
            c.name.as_str(),
            one_line(&c.detail)
        );
    }
    vsa_line(&mut out, o.vsa.as_deref(), o.passed());
    if o.passed() {
        let _ = writeln!(
            out,
            "verified: {} is vouched for by {} (signer {})",
            one_line(&o.artifact.display().to_string()),
            match o.receipts.len() {
                1 => one_line(&o.receipt.display().to_string()),
                n => format!("{n} shard receipts"),
            },
            o.signer_fingerprint().unwrap_or("?")
        );
        for revision in o.source_revisions() {
            let _ = writeln!(out, "  converted from {}", one_line(&revision));
        }
        emit(&out);
    } else {
        emit(&out);
        let failed: Vec<&str> = v.failed().iter().map(|n| n.as_str()).collect();
        emit_err(&format!(
            "decant: NOT verified: {} failed ({})\nhint: do not promote this artifact; each FAIL line above says what was expected and what was found\n",
            one_line(&o.artifact.display().to_string()),
            failed.join(", ")
        ));
    }
}

/// `"vsa": PATH` in verify's JSON, only when one was written (the object
/// is unchanged for scripts that do not ask for one).
fn with_vsa(out: &mut serde_json::Value, vsa: Option<&Path>) {
    if let (Some(p), Some(map)) = (vsa, out.as_object_mut()) {
        map.insert("vsa".into(), p.to_string_lossy().into());
    }
}

/// Where `--vsa` wrote the verification summary, and what it says.
fn vsa_line(out: &mut String, vsa: Option<&Path>, passed: bool) {
    if let Some(p) = vsa {
        let _ = writeln!(
            out,
            "verification summary ({}): {}",
            if passed { "PASSED" } else { "FAILED" },
            one_line(&p.display().to_string())
        );
    }
}

/// `decant audit`: findings worst first, then the verdict.
pub fn audit(a: &crate::bundle::audit::Audit, json: bool) {
    if json {
        emit_json(&serde_json::json!({
            "status": if a.passed() { "passed" } else { "failed" },
            "audit": a,
        }));
        return;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "audit of {}: {} files, {} findings",
        one_line(&a.dir.display().to_string()),
        a.files.len(),
        a.findings.len()
    );
    for f in &a.findings {
        let _ = writeln!(
            out,
            "  {:<8} {}: {}",
            f.severity.as_str(),
            one_line(&f.file),
            one_line(&f.message)
        );
    }
    let highest = a.highest.map_or("none", |h| h.as_str());
    emit(&out);
    if a.passed() {
        emit(&format!(
            "passed: highest finding {highest}, below --fail-on {}\n",
            a.fail_on
        ));
    } else {
        emit_err(&format!(
            "decant: audit failed: a finding at {highest}, at or above --fail-on {}\nhint: do not serve this bundle as it is; each line above names the file and what was found\n",
            a.fail_on
        ));
    }
}

/// `decant attest`.
pub fn attested(done: &crate::bundle::attest::Attested, json: bool) {
    if json {
        emit_json(&serde_json::json!({
            "status": "attested",
            "manifest": done.manifest.to_string_lossy(),
            "model_signature": done.model_signature.as_ref().map(|p| p.to_string_lossy()),
            "files": done.audit.files.len(),
            "findings": done.audit.findings,
            "highest": done.audit.highest,
            "receipts": done.audit.receipts,
            "bindings": done.bindings,
            "cyclonedx": done.cyclonedx.as_ref().map(|p| p.to_string_lossy()),
        }));
        return;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "attested {} -> {} ({} files, {} findings, highest {})",
        one_line(&done.audit.dir.display().to_string()),
        one_line(&done.manifest.display().to_string()),
        done.audit.files.len(),
        done.audit.findings.len(),
        done.audit.highest.map_or("none", |h| h.as_str())
    );
    if let Some(m) = &done.model_signature {
        let _ = writeln!(
            out,
            "  model signature (OpenSSF model_signing, covers the manifest too): {}",
            one_line(&m.display().to_string())
        );
    }
    for (name, b) in &done.bindings {
        let _ = writeln!(
            out,
            "  bound {name} = {}{}",
            one_line(&b.value),
            if b.mutable {
                " (mutable: --allow-mutable)"
            } else {
                ""
            }
        );
    }
    for r in &done.audit.receipts {
        let _ = writeln!(
            out,
            "  receipt {} verified (signer {}), covers {} files",
            one_line(&r.name),
            r.signer,
            r.covers.len()
        );
    }
    if let Some(b) = &done.cyclonedx {
        let _ = writeln!(
            out,
            "  CycloneDX ML-BOM: {}",
            one_line(&b.display().to_string())
        );
    }
    emit(&out);
}

/// `decant verify DIR --receipt MANIFEST`.
pub fn bundle_verification(o: &crate::gate::BundleOutcome, json: bool) {
    let v = &o.verdict;
    let failed: Vec<&str> = v
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    if json {
        let mut out = serde_json::json!({
            "status": if o.passed() { "verified" } else { "not_verified" },
            "artifact": o.dir.to_string_lossy(),
            "receipt": o.manifest.to_string_lossy(),
            "signer_fingerprint": o.signer_fingerprint(),
            "bindings": o.bindings(),
            "checks": v.checks,
            "failed": failed,
        });
        with_vsa(&mut out, o.vsa.as_deref());
        emit_json(&out);
        return;
    }
    let mut out = String::new();
    for c in &v.checks {
        let mark = if c.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {:<13} {}",
            c.name.as_str(),
            one_line(&c.detail)
        );
    }
    vsa_line(&mut out, o.vsa.as_deref(), o.passed());
    emit(&out);
    if o.passed() {
        emit(&format!(
            "verified: bundle {} is the one {} attests (signer {})\n",
            one_line(&o.dir.display().to_string()),
            one_line(&o.manifest.display().to_string()),
            o.signer_fingerprint().unwrap_or("?")
        ));
    } else {
        emit_err(&format!(
            "decant: NOT verified: bundle {} failed ({})\nhint: do not promote this bundle; each FAIL line above says what was expected and what was found\n",
            one_line(&o.dir.display().to_string()),
            failed.join(", ")
        ));
    }
}
