//! Client-supplied text in logs. A callback body, a query or a file name may
//! hold a newline or an escape sequence; written raw, it would forge a log
//! line or drive the operator's terminal. [`Esc`] writes such a string on one
//! line: control characters, quotes and backslashes escaped as Rust does
//! (`\n`, `\u{1b}`), the rest as is, and at most [`MAX_CHARS`] characters.

use std::fmt;

/// Longest text logged from one field; the rest is cut and marked `…`.
pub(crate) const MAX_CHARS: usize = 256;

/// Displays a client-supplied string escaped; see the module doc.
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_CHARS {
                return f.write_str("…");
            }
            if c.is_control() || c == '"' || c == '\\' || is_invisible(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Line and paragraph separators and bidi overrides: not control characters
/// to Rust, but they break or reorder a line in a viewer.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_what_breaks_a_line() {
        assert_eq!(Esc("cam1").to_string(), "cam1");
        assert_eq!(Esc("a\nb\r\u{1b}[31m").to_string(), "a\\nb\\r\\u{1b}[31m");
        assert_eq!(Esc("x\u{2028}y").to_string(), "x\\u{2028}y");
        assert_eq!(
            Esc(&"z".repeat(300)).to_string().chars().count(),
            MAX_CHARS + 1
        );
    }

    proptest! {
        #[test]
        fn never_a_line_break(s in any::<String>()) {
            let out = Esc(&s).to_string();
            prop_assert!(!out.chars().any(|c| c.is_control() || is_invisible(c)), "{out:?}");
        }
    }
}
