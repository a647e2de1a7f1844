//! Coalescing: when a lane has a backlog, one Telegram message carries a
//! conversation's consecutive pending visitor messages, one entry each.
//!
//! **When.** A lane has a *backlog* when its pending items (queued or in flight, the
//! head included) outnumber the calls its group budget — `worker.per_group_per_min`,
//! the minute window — has room for right now: they cannot all go out as they are
//! before the window moves on. Only then does the delivery of a visitor message (a
//! whole one, not a part of a split long text) look for followers; otherwise it sends
//! the one message in one call, as without coalescing, and waits for nothing.
//!
//! **What.** The followers are the same conversation's next pending items in the lane
//! (other conversations' items in between stay where they are: every topic keeps its
//! own order), taken while they are whole visitor messages and the text fits in one
//! Telegram message (4,096 UTF-16 units); the first item of that conversation that is
//! anything else — a part of a long message, a rename, a close — ends the set, so
//! nothing overtakes it.
//!
//! **How it reads.** Each message is an entry `HH:MM:SS text` (its stored time, UTC);
//! further lines of a multi-line text are indented by two spaces, so every entry
//! starts at a time:
//!
//! ```text
//! 12:03:07 Hello?
//! 12:03:15 My order 4411 has not arrived.
//!   It was due Monday.
//! ```
//!
//! **Idempotency.** The set is recorded (`outbox_batches`) under the head's lease
//! before the call, so a retried head sends the same set again; the head and its
//! followers are marked delivered in one transaction after Telegram's answer. A crash
//! between the two re-sends that one combined message, once.
//!
//! **Replies.** Every message of the set gets the combined message's Telegram id. An
//! agent's reply to it answers the line it quotes (Telegram's `quote`: its position,
//! else its text, is looked up in the entries as rendered again from the messages),
//! else every message of the set ([`quoted_entry`]).

use std::ops::Range;

use super::split::{MAX_MESSAGE_UTF16, utf16_len};

/// At most this many messages in one combined Telegram message (each entry takes at
/// least eleven units with its line break: fewer than 373 fit).
pub(crate) const MAX_ENTRIES: usize = 400;

/// `HH:MM:SS` of epoch milliseconds, UTC.
pub(crate) fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// One message as an entry: its time, then its text; further lines indented.
pub(crate) fn entry(at_ms: i64, text: &str) -> String {
    let mut out = clock(at_ms);
    out.push(' ');
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\n  ");
        }
        out.push_str(line);
    }
    out
}

/// The combined text of `messages` (`(created_at ms, text)` in order) and where each
/// entry is in it, in UTF-16 units (the unit of Telegram's `quote.position`).
pub(crate) fn render(messages: &[(i64, &str)]) -> (String, Vec<Range<usize>>) {
    let mut text = String::new();
    let mut at = Vec::with_capacity(messages.len());
    let mut pos = 0;
    for (i, (ms, body)) in messages.iter().enumerate() {
        if i > 0 {
            text.push('\n');
            pos += 1;
        }
        let e = entry(*ms, body);
        let len = utf16_len(&e);
        text.push_str(&e);
        at.push(pos..pos + len);
        pos += len;
    }
    (text, at)
}

/// How many of `messages` (from the first) fit in one Telegram message as entries.
pub(crate) fn fitting(messages: &[(i64, &str)]) -> usize {
    let mut used = 0;
    for (i, (ms, body)) in messages.iter().enumerate().take(MAX_ENTRIES) {
        let len = utf16_len(&entry(*ms, body)) + usize::from(i > 0);
        if used + len > MAX_MESSAGE_UTF16 {
            return i;
        }
        used += len;
    }
    messages.len().min(MAX_ENTRIES)
}

/// Which entry of the combined message of `messages` an agent's quote of it names:
/// the entry at `position` when the quoted text is there (Telegram calls the position
/// approximate), else the one entry whose text holds the quote. `None` when it names
/// none for sure (the reply then answers the whole set).
pub(crate) fn quoted_entry(
    messages: &[(i64, &str)],
    quote: &str,
    position: usize,
) -> Option<usize> {
    let quote = quote.trim();
    if quote.is_empty() {
        return None;
    }
    let (_, at) = render(messages);
    let entries: Vec<String> = messages.iter().map(|(ms, b)| entry(*ms, b)).collect();
    let by_position = at.iter().position(|r| r.contains(&position));
    if let Some(i) = by_position
        && entries[i].contains(quote)
    {
        return Some(i);
    }
    let mut holding = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.contains(quote));
    match (holding.next(), holding.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_764_590_587_000; // 2025-12-01T12:03:07Z

    #[test]
    fn entries_carry_the_time_and_indent_further_lines() {
        assert_eq!(clock(T), "12:03:07");
        assert_eq!(entry(T, "Hello?"), "12:03:07 Hello?");
        assert_eq!(entry(T + 8_000, "one\ntwo"), "12:03:15 one\n  two");
        let (text, at) = render(&[(T, "a"), (T + 8_000, "b\nc")]);
        assert_eq!(text, "12:03:07 a\n12:03:15 b\n  c");
        assert_eq!(at, vec![0..10, 11..25]);
    }

    #[test]
    fn positions_are_utf16_units() {
        // An emoji is two units: the second entry starts two units further.
        let (text, at) = render(&[(T, "😀"), (T, "x")]);
        assert_eq!(utf16_len(&text), 22);
        assert_eq!(at, vec![0..11, 12..22]);
    }

    #[test]
    fn as_many_as_fit_in_4096_units() {
        let long = "x".repeat(2000);
        let msgs = vec![(T, long.as_str()); 3];
        // 9 + 2000 each; two fit (4018 + newline), a third does not.
        assert_eq!(fitting(&msgs), 2);
        // 11 units and a newline each: 341 entries are 4,091 units.
        let short: Vec<(i64, &str)> = vec![(T, "hi"); 1000];
        assert_eq!(fitting(&short), 341);
        let (text, _) = render(&short[..fitting(&short)]);
        assert!(utf16_len(&text) <= MAX_MESSAGE_UTF16);
        let huge = "y".repeat(4090);
        assert_eq!(
            fitting(&[(T, huge.as_str())]),
            0,
            "one entry over the limit"
        );
    }

    #[test]
    fn a_quote_names_its_line() {
        let msgs = [(T, "where is my order"), (T, "it is 4411"), (T, "thanks")];
        let (_, at) = render(&msgs);
        assert_eq!(quoted_entry(&msgs, "it is 4411", at[1].start + 9), Some(1));
        // An approximate position: found by the text alone when it is unique.
        assert_eq!(quoted_entry(&msgs, "4411", 0), Some(1));
        assert_eq!(quoted_entry(&msgs, "thanks", 9_999), Some(2));
        // The time of an entry is part of it.
        assert_eq!(quoted_entry(&msgs, "12:03:07 thanks", at[2].start), Some(2));
        // Text in two entries, position elsewhere: no line for sure.
        assert_eq!(quoted_entry(&msgs, "i", 9_999), None);
        assert_eq!(quoted_entry(&msgs, "not there", 0), None);
        assert_eq!(quoted_entry(&msgs, "  ", 0), None);
    }
}
