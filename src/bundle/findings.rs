//! Findings and their severities: the one place that says how bad each
//! kind of thing found in a bundle is.
//!
//! The levels, from worst (README, "Auditing a bundle", repeats them):
//!
//! - `critical`: loading the bundle runs code nobody opted into: a pickle
//!   naming a global that executes code (`os.system`, `builtins.eval`,
//!   `subprocess.*`, ...), or hiding which globals it names.
//! - `high`: code can run, or a file is not what it claims: a pickle naming
//!   globals outside torch's weights-only allowlist (a plain `torch.load`
//!   imports and may call them), `auto_map` wiring repository code into
//!   `from_pretrained`, a pickle or safetensors file that cannot be read as
//!   its format or that decant refuses as corrupt or ambiguous, an entry
//!   that is not a regular file.
//! - `medium`: nothing runs, but the bundle is not pinned or not proven: a
//!   weights-only pickle still served (the next loader may not be
//!   weights-only), a `.py` file, an adapter whose base model is not pinned
//!   to a commit, a Modelfile `FROM` a mutable tag, safetensors that no
//!   trusted receipt covers.
//! - `low`: a file audit does not recognise.
//! - `info`: facts for the record: a chat template's digest, a GGUF
//!   header, which receipt covers which file, an OpenSSF model signature
//!   (`model.sig`) left out of the files.

use serde::{Deserialize, Serialize};

pub use crate::trust::manifest::Severity;

/// What kind of thing was found: a stable code scripts can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A pickle naming a global that executes code.
    PickleCodeExecution,
    /// A pickle hiding which globals it names (computed STACK_GLOBAL).
    PickleHiddenGlobal,
    /// A pickle naming globals outside the weights-only allowlist.
    PickleUnsafeGlobal,
    /// A pickle that only names allowlisted globals: weights-only loadable.
    PickleWeightsOnly,
    /// A pickle-based file whose pickles could not all be scanned.
    PickleUnreadable,
    /// A pickle-based file decant refuses as corrupt or ambiguous.
    PickleAmbiguous,
    /// `auto_map` in a config: `trust_remote_code=True` imports this code.
    RemoteCode,
    /// A `.py` file.
    PythonFile,
    /// A safetensors file whose header is not valid.
    SafetensorsDamaged,
    /// A safetensors file no trusted receipt in the bundle covers.
    SafetensorsUnproven,
    /// A safetensors file a trusted receipt covers.
    SafetensorsProven,
    /// A receipt in the bundle that does not verify with a trusted key.
    ReceiptUnverified,
    /// Shard receipts (`convert --shard`) of one directory that do not add
    /// up: a shard missing, or receipts of different plans or directories.
    ShardSetIncomplete,
    /// A chat template (tokenizer config, `.jinja`, GGUF metadata).
    ChatTemplate,
    /// A PEFT adapter whose base model is not pinned to a commit.
    AdapterUnpinnedBase,
    /// A PEFT adapter and the base it names.
    Adapter,
    /// A GGUF file's header.
    Gguf,
    /// A GGUF file whose header is not valid.
    GgufDamaged,
    /// A Modelfile `FROM` a mutable reference.
    ModelfileMutableBase,
    /// A config that could not be read as JSON.
    ConfigUnreadable,
    /// Something that is not a regular file (symlink, FIFO, device) or has
    /// a name that is not UTF-8.
    NotARegularFile,
    /// A file that could not be scanned (a sandbox limit).
    Unscannable,
    /// A file audit does not recognise.
    Unrecognised,
    /// The root `model.sig`: an OpenSSF model signature, a side file left
    /// out of the files it signs.
    ModelSignature,
}

/// One thing found, in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    /// Path relative to the bundle, `/`-separated.
    pub file: String,
    /// One line, for people.
    pub message: String,
}

impl FindingKind {
    /// The stable code (what `--json` and manifests carry).
    pub fn code(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl Finding {
    pub fn new(
        severity: Severity,
        kind: FindingKind,
        file: &str,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity,
            kind,
            file: file.to_string(),
            message: message.into(),
        }
    }
}

/// The worst severity among `findings`.
pub fn highest(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

/// Globals whose call executes code or reaches the file system, network or
/// interpreter: naming one is `critical`. Modules are matched as a whole
/// and by prefix (`os` covers `os.path`); Python 2 spellings included.
const CODE_EXECUTION_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "runpy",
    "importlib",
    "imp",
    "pty",
    "commands",
    "socket",
    "shutil",
    "ctypes",
    "multiprocessing",
    "code",
    "codeop",
    "pdb",
    "bdb",
    "timeit",
    "webbrowser",
    "httplib",
    "http",
    "urllib",
    "urllib2",
    "requests",
    "asyncio",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "marshal",
    "types",
    "torch.hub",
    "torch.jit",
    "torch._C",
    "torch.utils.cpp_extension",
    "numpy.testing",
    "platform",
    "signal",
    "tempfile",
    "glob",
    "pathlib",
    "io",
    "_io",
    "fileinput",
    "zipimport",
    "operator",
    "functools",
    "pip",
    "setuptools",
    "distutils",
    "builtins.__import__",
];

/// `builtins` (and Python 2's `__builtin__`) names that execute code or
/// reach attributes, files or the interpreter.
const CODE_EXECUTION_BUILTINS: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "compile",
    "__import__",
    "open",
    "file",
    "getattr",
    "setattr",
    "delattr",
    "globals",
    "locals",
    "vars",
    "input",
    "raw_input",
    "breakpoint",
    "apply",
    "reload",
    "memoryview",
    "help",
    "exit",
    "quit",
];

/// Whether naming `global` is naming code execution. `global` is
/// `module.name`, or `module:qual.name` for a dotted name (STACK_GLOBAL),
/// whose attribute chain can reach a module of its own (`torch:os.system`
/// is `os.system`, through torch's module attribute `os`).
pub fn executes_code(global: &str) -> bool {
    if let Some((module, qualname)) = global.split_once(':') {
        return executes_code(&format!("{module}.{}", first(qualname)))
            || (qualname.contains('.') && executes_code(qualname));
    }
    let (module, name) = global.rsplit_once('.').unwrap_or((global, ""));
    if matches!(module, "builtins" | "__builtin__" | "__builtins__") {
        return CODE_EXECUTION_BUILTINS.contains(&name);
    }
    CODE_EXECUTION_MODULES.iter().any(|m| {
        module == *m
            || module
                .strip_prefix(m)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

fn first(qualname: &str) -> &str {
    qualname.split('.').next().unwrap_or(qualname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
        assert!("severe".parse::<Severity>().is_err());
    }

    #[test]
    fn code_execution_globals_are_named_by_module_and_builtin() {
        for g in [
            "os.system",
            "posix.system",
            "nt.system",
            "subprocess.Popen",
            "builtins.eval",
            "__builtin__.eval",
            "builtins.getattr",
            "os.path.join",
            "runpy._run_code",
            "torch.hub.load",
            "pathlib:os.system",
            "torch:os.system",
            "asyncio.unix_events:_UnixSubprocessTransport._start",
            "builtins:getattr",
        ] {
            assert!(executes_code(g), "{g}");
        }
        for g in [
            "collections.OrderedDict",
            "torch._utils._rebuild_tensor_v2",
            "builtins.set",
            "osx.thing",
            "numpy.core.multiarray._reconstruct",
            "collections:OrderedDict.fromkeys",
        ] {
            assert!(!executes_code(g), "{g}");
        }
    }
}
