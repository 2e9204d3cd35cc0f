//! What the host reads itself in a bundle: JSON configs (`auto_map`, chat
//! templates, PEFT adapters) and Ollama Modelfiles. These are small text
//! files found by name, read through a cap and parsed strictly; model
//! files' bytes (pickles, safetensors, GGUF) are only read by the guest.

use super::findings::{Finding, FindingKind, Severity};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The most bytes of a config or Modelfile read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Configs whose `auto_map` `from_pretrained(..., trust_remote_code=True)`
/// follows: the model's, the tokenizer's, and the processors'.
const AUTO_MAP_CONFIGS: &[&str] = &[
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
    "video_preprocessor_config.json",
];

/// Which host-read file `name` (the last path component) is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// One of [`AUTO_MAP_CONFIGS`] (the tokenizer's also holds
    /// `chat_template`).
    Loader,
    /// `adapter_config.json`.
    Adapter,
    /// `Modelfile` (Ollama).
    Modelfile,
    /// Another `.json` file.
    OtherJson,
}

pub fn kind_of(name: &str) -> Option<ConfigKind> {
    if AUTO_MAP_CONFIGS.contains(&name) {
        Some(ConfigKind::Loader)
    } else if name == "adapter_config.json" {
        Some(ConfigKind::Adapter)
    } else if name == "Modelfile" || name.ends_with(".Modelfile") {
        Some(ConfigKind::Modelfile)
    } else if name.ends_with(".json") {
        Some(ConfigKind::OtherJson)
    } else {
        None
    }
}

/// Whether `s` names one exact revision: a 40-hex git commit, a 64-hex
/// digest, or `sha256:` and 64 hex.
pub fn is_immutable_revision(s: &str) -> bool {
    let hex = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit());
    hex(s, 40) || hex(s, 64) || s.strip_prefix("sha256:").is_some_and(|d| hex(d, 64))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Findings for a loader config at `path` (in directory `dir`, with the
/// bundle's file paths `present`).
pub fn loader_config(
    path: &str,
    dir: &str,
    bytes: &[u8],
    present: &BTreeSet<String>,
) -> Vec<Finding> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return vec![Finding::new(
                Severity::High,
                FindingKind::ConfigUnreadable,
                path,
                format!("not valid JSON ({e}): a loader may read it differently or fail"),
            )]
        }
    };
    let mut out = Vec::new();
    if let Some(map) = value.get("auto_map").and_then(Value::as_object) {
        for (auto_class, target) in map {
            // A target is "module.Class", "org/repo--module.Class", or a
            // list of those (the tokenizer's slow and fast classes) with
            // nulls.
            let targets: Vec<&str> = match target {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for t in targets {
                out.push(auto_map_finding(path, dir, auto_class, t, present));
            }
        }
    }
    match value.get("chat_template") {
        Some(Value::String(t)) => out.push(template_finding(path, "chat_template", t.as_bytes())),
        Some(Value::Array(items)) => {
            for item in items {
                if let (Some(name), Some(t)) = (
                    item.get("name").and_then(Value::as_str),
                    item.get("template").and_then(Value::as_str),
                ) {
                    out.push(template_finding(
                        path,
                        &format!("chat_template {name:?}"),
                        t.as_bytes(),
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

fn auto_map_finding(
    path: &str,
    dir: &str,
    auto_class: &str,
    target: &str,
    present: &BTreeSet<String>,
) -> Finding {
    let (repo, reference) = match target.split_once("--") {
        Some((repo, rest)) => (Some(repo), rest),
        None => (None, target),
    };
    let module = reference.rsplit_once('.').map_or(reference, |(m, _)| m);
    let file = format!("{dir}{}.py", module.replace('.', "/"));
    let where_ = match repo {
        Some(repo) => {
            format!("code from another repository, {repo} (not in the bundle; fetched when loaded)")
        }
        None if present.contains(&file) => format!("{file}, present"),
        None => format!("{file}, missing (a loader would fail, or fetch it from the Hub)"),
    };
    Finding::new(
        Severity::High,
        FindingKind::RemoteCode,
        path,
        format!(
            "auto_map {auto_class} -> {target}: from_pretrained(..., trust_remote_code=True) runs {where_}"
        ),
    )
}

/// An info finding naming a chat template by size and digest.
pub fn template_finding(path: &str, what: &str, bytes: &[u8]) -> Finding {
    Finding::new(
        Severity::Info,
        FindingKind::ChatTemplate,
        path,
        format!(
            "{what}: {} bytes, sha256 {} (part of what the model is served with)",
            bytes.len(),
            sha256_hex(bytes)
        ),
    )
}

/// Findings for a PEFT `adapter_config.json`.
pub fn adapter_config(path: &str, bytes: &[u8]) -> Vec<Finding> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return vec![Finding::new(
                Severity::High,
                FindingKind::ConfigUnreadable,
                path,
                format!("not valid JSON ({e}): the adapter's base model is unknown"),
            )]
        }
    };
    let base = value
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .unwrap_or("");
    let revision = value.get("revision").and_then(Value::as_str);
    match revision {
        Some(r) if is_immutable_revision(r) => vec![Finding::new(
            Severity::Info,
            FindingKind::Adapter,
            path,
            format!("PEFT adapter on base model {base:?} pinned to revision {r}"),
        )],
        _ => vec![Finding::new(
            Severity::Medium,
            FindingKind::AdapterUnpinnedBase,
            path,
            format!(
                "PEFT adapter on base model {base:?} with {}: the base it is served with can change under it",
                match revision {
                    Some(r) => format!("revision {r:?}, not a commit"),
                    None => "no revision".into(),
                }
            ),
        )],
    }
}

/// Findings for an Ollama Modelfile: every `FROM` (and `ADAPTER`) must name
/// a file in the bundle or a digest, not a tag that can move.
pub fn modelfile(path: &str, dir: &str, bytes: &[u8], present: &BTreeSet<String>) -> Vec<Finding> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((instruction, arg)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let instruction = instruction.to_ascii_uppercase();
        if instruction != "FROM" && instruction != "ADAPTER" {
            continue;
        }
        let arg = arg.trim();
        let local = arg.strip_prefix("./").unwrap_or(arg);
        let in_bundle = present.contains(&format!("{dir}{local}"));
        let digest = arg
            .rsplit_once('@')
            .is_some_and(|(_, d)| is_immutable_revision(d));
        if in_bundle || digest {
            continue;
        }
        out.push(Finding::new(
            Severity::Medium,
            FindingKind::ModelfileMutableBase,
            path,
            format!(
                "{instruction} {arg}: neither a file in the bundle nor a digest, so what it names can change"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_immutable_only_as_commits_or_digests() {
        assert!(is_immutable_revision(&"a".repeat(40)));
        assert!(is_immutable_revision(&format!("sha256:{}", "0".repeat(64))));
        for r in ["main", "v1.0", "latest", &"a".repeat(39), "refs/pr/1"] {
            assert!(!is_immutable_revision(r), "{r}");
        }
    }

    #[test]
    fn auto_map_names_the_file_and_whether_it_is_present() {
        let present: BTreeSet<String> = ["sub/modeling_x.py".to_string()].into();
        let f = loader_config(
            "sub/config.json",
            "sub/",
            br#"{"auto_map": {"AutoModel": "modeling_x.XModel", "AutoConfig": "configuration_x.XConfig",
                 "AutoTokenizer": ["tokenization_x.T", null], "AutoProcessor": "org/other--proc.P"}}"#,
            &present,
        );
        let msgs: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(f.len(), 4, "{msgs:?}");
        assert!(f
            .iter()
            .all(|f| f.kind == FindingKind::RemoteCode && f.severity == Severity::High));
        assert!(
            msgs.iter()
                .any(|m| m.contains("sub/modeling_x.py, present")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("sub/configuration_x.py, missing")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("sub/tokenization_x.py, missing")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("another repository, org/other")),
            "{msgs:?}"
        );
    }

    #[test]
    fn modelfile_from_a_tag_is_mutable_and_from_a_file_is_not() {
        let present: BTreeSet<String> = ["m.gguf".to_string()].into();
        let f = modelfile(
            "Modelfile",
            "",
            format!("FROM ./m.gguf\nFROM llama3:8b\nfrom x@sha256:{}\nADAPTER lora:latest\nPARAMETER temperature 1\n", "1".repeat(64)).as_bytes(),
            &present,
        );
        let msgs: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("FROM llama3:8b"), "{msgs:?}");
        assert!(msgs[1].starts_with("ADAPTER lora:latest"), "{msgs:?}");
    }
}
