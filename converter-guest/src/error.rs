//! Refusals raised inside the guest.
//!
//! Every failure the guest can detect becomes a [`Refusal`] carrying a
//! one-line message and a one-line hint; the host prints both. There is no
//! other error path: the guest never panics on bad input (a panic would abort
//! the wasm instance, which the host reports as an internal error).

pub use decant_abi::{Refusal, RefusalKind};

/// Result type used throughout the guest.
pub type Result<T> = core::result::Result<T, Refusal>;

/// A corrupt, truncated or ambiguous input.
pub fn corrupt(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Corrupt,
        message: message.into(),
        hint: "the file is damaged or was crafted; re-save it with torch.save from a trusted copy"
            .into(),
    }
}

/// A well-formed construct that has no safetensors equivalent.
pub fn unsupported(message: impl Into<String>, hint: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Unsupported,
        message: message.into(),
        hint: hint.into(),
    }
}

/// A guest-side bound was reached.
pub fn limit(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Limit,
        message: message.into(),
        hint: "the checkpoint exceeds a bound decant enforces against resource attacks".into(),
    }
}

/// Not a format decant reads.
pub fn format(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Format,
        message: message.into(),
        hint:
            "decant reads torch.save checkpoints (zip format, torch >= 1.6, or the legacy format)"
                .into(),
    }
}

/// A pickle global outside the allowlist.
pub fn global(name: &str, at: &str) -> Refusal {
    Refusal {
        kind: RefusalKind::Global,
        message: format!("global {} at {at} is not on the allowlist", printable(name)),
        hint: "this pickle would import and call code when loaded; obtain the weights as safetensors or from a trusted source".into(),
    }
}

/// Renders attacker-chosen text safely for a one-line message: control and
/// non-ASCII characters are escaped, and the length is capped.
pub fn printable(s: &str) -> String {
    const MAX: usize = 120;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_terminal_controls() {
        // Guards against a global name carrying ANSI escapes to the user's terminal.
        assert_eq!(printable("os\x1b[2Jsystem"), "os\\u{1b}[2Jsystem");
        assert_eq!(printable(&"a".repeat(200)).len(), 123);
    }
}
