//! Rules for text people see: names shown to operators in terminals, and message texts
//! that must say something.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::error::{Error, Result};

/// Characters that change how a terminal or a text view shows the text around them
/// instead of being shown: C0/C1 controls (ESC starts terminal escape sequences, CR
/// overwrites a line), DEL, and the bidirectional overrides/isolates/marks that reorder
/// what follows them.
pub fn is_display_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Characters that show nothing on their own: whitespace, zero-width spaces and
/// joiners, invisible operators, the byte order mark, variation selectors, tag
/// characters, Hangul fillers, the Braille blank, and the display controls above.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || is_display_control(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Whether `text` has nothing visible in it (empty, or only invisible characters).
pub fn is_blank(text: &str) -> bool {
    text.chars().all(is_invisible)
}

/// Check an operator-visible name (key names, tenant names, agent names): at most
/// `max_chars` characters and no display controls. `field` names the field in the error.
pub fn check_name(field: &str, value: &str, max_chars: usize) -> Result<()> {
    if value.chars().count() > max_chars {
        return Err(Error::validation(
            field,
            format!("{field} must be at most {max_chars} characters"),
        ));
    }
    if let Some(c) = value.chars().find(|&c| is_display_control(c)) {
        return Err(Error::validation(
            field,
            format!(
                "{field} must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// `value` with every display control written as a visible `\u{…}` escape, for printing
/// text that came from elsewhere (old rows, Telegram names) to a terminal.
pub fn escape_controls(value: &str) -> Cow<'_, str> {
    if !value.chars().any(is_display_control) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if is_display_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_escape_sequences_are_refused() {
        let e = check_name("name", "ops\u{1b}[2Jhidden", 80).expect_err("ESC");
        assert!(e.message.contains("U+001B"), "{}", e.message);
        assert!(check_name("name", "a\u{202E}b", 80).is_err());
        assert!(check_name("name", "line\rover", 80).is_err());
        assert!(check_name("name", "Zoë – ops 🚀", 80).is_ok());
        assert!(check_name("name", &"x".repeat(81), 80).is_err());
    }

    #[test]
    fn escaping_makes_controls_visible() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(escape_controls("a\u{1b}[8mb"), "a\\u{1b}[8mb");
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn blank_means_nothing_visible() {
        for blank in [
            "",
            "  \n\t",
            "\u{200B}\u{200C}\u{200D}",
            "\u{FEFF}\u{2060}",
            "\u{3164}",
            "\u{2800} \u{E0041}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
        }
        for text in ["hi", "\u{200B}a", "👍", "\u{200D}👍", "ا"] {
            assert!(!is_blank(text), "{text:?}");
        }
    }
}
