//! The name of a conversation's forum topic: what agents see in the topic list. One
//! function names a topic when it is created and when it is renamed.

use unicode_segmentation::UnicodeSegmentation;

use crate::db::models::{ConversationRow, VisitorRow};
use crate::domain::Environment;
use crate::domain::text::{escape_controls, is_blank};

/// Longest forum topic name Telegram takes (1–128 characters). Counted here in UTF-16
/// code units, so that a name with characters outside the BMP is never too long for
/// Telegram, however it counts.
pub const MAX_TOPIC_NAME: usize = 128;

/// What a staging conversation's topic name starts with, so agents tell it from
/// production's in the same group.
pub const STAGING_PREFIX: &str = "[staging] ";

/// The topic name of `conv`: its subject if it has one, else the visitor's name and
/// email (either alone when only one is known), else `Visitor 3f2a1b · cv 9c0d11`
/// (recognisable, and unique per conversation); a staging conversation's starts with
/// [`STAGING_PREFIX`]. Control characters are written as visible `\u{…}` escapes; a
/// name too long for Telegram is cut at a grapheme boundary and ends with `…`.
pub fn topic_name(conv: &ConversationRow, visitor: Option<&VisitorRow>) -> String {
    let given = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !is_blank(s))
            .map(str::to_string)
    };
    let subject = given(conv.subject.as_deref());
    let name = given(visitor.and_then(|v| v.name.as_deref()));
    let email = given(visitor.and_then(|v| v.email.as_deref()));
    let wanted = match (subject, name, email) {
        (Some(subject), _, _) => subject,
        (None, Some(name), Some(email)) => format!("{name} \u{b7} {email}"),
        (None, Some(one), None) | (None, None, Some(one)) => one,
        (None, None, None) => anonymous_name(&conv.id, &conv.visitor_id),
    };
    let prefix = match Environment::from_stored(&conv.environment) {
        Environment::Production => "",
        Environment::Staging => STAGING_PREFIX,
    };
    fit(&format!("{prefix}{}", escape_controls(&wanted)))
}

/// `Visitor 3f2a1b · cv 9c0d11`: the name of a topic whose visitor said nothing about
/// themselves.
pub fn anonymous_name(conversation_id: &str, visitor_id: &str) -> String {
    format!(
        "Visitor {} \u{b7} cv {}",
        short_id(visitor_id),
        short_id(conversation_id)
    )
}

fn short_id(id: &str) -> &str {
    let start = id.char_indices().rev().nth(5).map_or(0, |(i, _)| i);
    &id[start..]
}

/// `name` cut to [`MAX_TOPIC_NAME`] UTF-16 code units at a grapheme boundary, ending
/// with `…` when cut.
fn fit(name: &str) -> String {
    if name.encode_utf16().count() <= MAX_TOPIC_NAME {
        return name.to_string();
    }
    let room = MAX_TOPIC_NAME - 1; // the ellipsis
    let mut out = String::new();
    let mut used = 0;
    for g in name.graphemes(true) {
        let units = g.encode_utf16().count();
        if used + units > room {
            break;
        }
        used += units;
        out.push_str(g);
    }
    let out = out.trim_end();
    format!("{out}\u{2026}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(subject: Option<&str>) -> ConversationRow {
        ConversationRow {
            id: "cv_0123456789abcdef".into(),
            tenant_id: "tn_1".into(),
            visitor_id: "vis_00000000fedcba".into(),
            status: "open".into(),
            last_seq: 0,
            created_at: 0,
            updated_at: 0,
            closed_at: None,
            telegram_topic_id: None,
            telegram_topic_closed: false,
            subject: subject.map(str::to_string),
            telegram_topic_name: None,
            environment: "production".into(),
        }
    }

    fn visitor(name: Option<&str>, email: Option<&str>) -> VisitorRow {
        VisitorRow {
            id: "vis_00000000fedcba".into(),
            tenant_id: "tn_1".into(),
            token_hash: "h".into(),
            locale: None,
            created_at: 0,
            last_seen_at: 0,
            page_url: None,
            external_user_id: None,
            name: name.map(str::to_string),
            email: email.map(str::to_string),
            environment: "production".into(),
        }
    }

    #[test]
    fn staging_topics_are_prefixed_and_still_fit() {
        let staging = ConversationRow {
            environment: "staging".into(),
            ..conv(Some("Refund"))
        };
        assert_eq!(topic_name(&staging, None), "[staging] Refund");
        assert_eq!(topic_name(&conv(Some("Refund")), None), "Refund");
        let long = ConversationRow {
            subject: Some("x".repeat(200)),
            ..staging
        };
        let name = topic_name(&long, None);
        assert!(name.starts_with(STAGING_PREFIX), "{name}");
        assert_eq!(name.encode_utf16().count(), MAX_TOPIC_NAME);
    }

    #[test]
    fn subject_first_then_name_and_email_then_ids() {
        let v = visitor(Some("Ada Lovelace"), Some("ada@example.com"));
        assert_eq!(topic_name(&conv(Some("Refund")), Some(&v)), "Refund");
        assert_eq!(
            topic_name(&conv(None), Some(&v)),
            "Ada Lovelace \u{b7} ada@example.com"
        );
        let only_name = visitor(Some("Ada"), None);
        assert_eq!(topic_name(&conv(None), Some(&only_name)), "Ada");
        let only_email = visitor(None, Some("ada@example.com"));
        assert_eq!(
            topic_name(&conv(None), Some(&only_email)),
            "ada@example.com"
        );
        let anonymous = "Visitor fedcba \u{b7} cv abcdef";
        assert_eq!(topic_name(&conv(None), None), anonymous);
        assert_eq!(
            topic_name(&conv(Some(" \u{200b} ")), Some(&visitor(Some("  "), None))),
            anonymous,
            "blank values count as not given"
        );
    }

    #[test]
    fn controls_are_escaped_and_long_names_cut_for_telegram() {
        assert_eq!(
            topic_name(&conv(Some("a\u{1b}[2Jb\nc")), None),
            "a\\u{1b}[2Jb\\u{a}c"
        );
        let exact = "x".repeat(MAX_TOPIC_NAME);
        assert_eq!(topic_name(&conv(Some(&exact)), None), exact);
        let long = topic_name(&conv(Some(&"y".repeat(300))), None);
        assert_eq!(long.chars().count(), MAX_TOPIC_NAME);
        assert!(long.ends_with("y\u{2026}"), "{long}");
        // Characters outside the BMP are two UTF-16 units each; a family emoji (one
        // grapheme of several code points) is never split.
        let emoji = topic_name(&conv(Some(&"👨‍👩‍👧".repeat(40))), None);
        assert!(emoji.encode_utf16().count() <= MAX_TOPIC_NAME, "{emoji}");
        assert!(
            emoji.trim_end_matches('\u{2026}').ends_with("👧"),
            "{emoji}"
        );
        // Escapes count: a name of controls only still fits.
        let escaped = topic_name(&conv(Some(&"\u{7}".repeat(100))), None);
        assert!(escaped.encode_utf16().count() <= MAX_TOPIC_NAME);
    }
}
