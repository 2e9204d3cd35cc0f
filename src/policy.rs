//! The sandbox policy: limits the host enforces on the guest, and an optional
//! narrowing of the pickle allowlist.
//!
//! The file's sha256 goes into receipts, so the exact bytes matter; unknown
//! fields are rejected rather than silently ignored.

use crate::error::{Error, Kind, Result};
use crate::trust::statement::Sha256Hex;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// [`Policy::origin`] of the built-in policy; any other is the path given.
pub const DEFAULT_ORIGIN: &str = "default";

/// Largest policy file read (the shipped one is under 1 KB).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// The policy shipped with decant, used without `--policy`.
pub const DEFAULT_POLICY: &str = include_str!("../sandbox-policy/default.json");

/// Limits and allowlist narrowing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Guest linear memory ceiling in bytes (StoreLimits).
    pub memory_bytes: u64,
    /// Deterministic CPU budget: fuel = fuel_base + fuel_per_source_byte x
    /// source length.
    pub fuel_base: u64,
    pub fuel_per_source_byte: u64,
    /// Wall-clock deadline (epoch interruption), in seconds.
    pub timeout_seconds: u64,
    /// Largest output file in bytes.
    pub max_output_bytes: u64,
    /// Largest wasm stack in bytes.
    pub max_wasm_stack_bytes: u64,
    /// If set, only these pickle globals (`module.name`) are accepted, a
    /// subset of what the guest implements. It can only narrow: a global the
    /// guest does not implement is refused by the guest whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_globals: Option<Vec<String>>,
}

/// A loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub limits: Limits,
    /// sha256 of the policy file's bytes.
    pub sha256: Sha256Hex,
    /// Where it came from (`default` or the path given).
    pub origin: String,
}

impl Policy {
    /// The built-in policy (a unit test keeps it valid).
    pub fn default_policy() -> Result<Self> {
        Self::parse(DEFAULT_POLICY.as_bytes(), DEFAULT_ORIGIN)
    }

    /// The built-in policy, or the file the user named.
    pub fn from_option(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None => Self::default_policy(),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let file = crate::open::regular_file(path)?;
        let bytes = crate::open::read_bounded(file, MAX_POLICY_BYTES, path, "a sandbox policy")?;
        Self::parse(&bytes, &path.display().to_string())
    }

    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::new(
                Kind::Usage,
                format!("invalid sandbox policy {origin}: {why}"),
                "start from sandbox-policy/default.json; every field is required",
            )
        };
        let limits: Limits = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if limits.memory_bytes < (2 << 20) || limits.memory_bytes > (4 << 30) {
            return Err(bad("memory_bytes must be between 2 MiB and 4 GiB".into()));
        }
        if limits.timeout_seconds == 0 {
            return Err(bad("timeout_seconds must be positive".into()));
        }
        if limits.max_wasm_stack_bytes < (64 << 10) || limits.max_wasm_stack_bytes > (64 << 20) {
            return Err(bad(
                "max_wasm_stack_bytes must be between 64 KiB and 64 MiB".into(),
            ));
        }
        if let Some(g) = &limits.allowed_globals {
            if let Some(bad_name) = g.iter().find(|n| !n.contains('.')) {
                return Err(bad(format!(
                    "allowed_globals entry {bad_name:?} is not module.name"
                )));
            }
        }
        Ok(Policy {
            limits,
            sha256: Sha256Hex::of(bytes),
            origin: origin.to_string(),
        })
    }

    /// The fuel for a source of `len` bytes.
    pub fn fuel_for(&self, len: u64) -> u64 {
        self.limits
            .fuel_base
            .saturating_add(self.limits.fuel_per_source_byte.saturating_mul(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policy_parses() {
        let p = Policy::default_policy().unwrap();
        assert!(p.limits.memory_bytes >= 64 << 20);
        assert_eq!(p.sha256.as_str().len(), 64);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        // A typo must not silently fall back to a default limit.
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_POLICY).unwrap();
        v["memory_byte"] = 1.into();
        let e = Policy::parse(v.to_string().as_bytes(), "t").unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }
}
