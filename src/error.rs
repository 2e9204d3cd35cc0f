//! Errors as users see them: what happened, what to do, and an exit status.
//!
//! Every failure maps to exactly one of three statuses (README, "Exit status"): 1 when the
//! input was refused (unsafe, unsupported or corrupt) or a verification
//! failed, 2 for usage, I/O and internal errors.

use std::fmt;

/// Exit status classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The input was refused (exit 1).
    Refused,
    /// A sandbox limit stopped the conversion (exit 1).
    Limit,
    /// Bad arguments or a refused overwrite (exit 2).
    Usage,
    /// Reading or writing a file failed (exit 2).
    Io,
    /// A bug in decant or a misbehaving guest (exit 2).
    Internal,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Refused | Kind::Limit => 1,
            Kind::Usage | Kind::Io | Kind::Internal => 2,
        }
    }
}

/// A user-facing error: one line of what, one line of hint.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error {
            kind,
            message: one_line(&message.into()),
            hint: one_line(&hint.into()),
        }
    }

    pub fn io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        Error::new(
            Kind::Io,
            format!("{what}: {err}"),
            "check the path and its permissions",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(
            Kind::Internal,
            message,
            "this is a bug in decant; please report it (see SECURITY.md)",
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Keeps messages on one line and free of terminal control sequences and
/// bidirectional overrides: parts of them (names) come from the input.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if decant_abi::is_deceptive_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cannot_carry_escape_sequences() {
        let e = Error::new(Kind::Refused, "global os\x1b[2J.system\nsecond line", "h");
        assert!(!e.message.contains('\x1b'));
        assert!(!e.message.contains('\n'));
        assert_eq!(one_line("\u{202e}gnp.exe"), "\\u{202e}gnp.exe");
    }
}
