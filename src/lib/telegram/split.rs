//! Texts too long for one Telegram message go as ordered parts, each marked `(i/n)`.
//!
//! Telegram takes at most 4,096 characters per `sendMessage` (after entity parsing; we
//! send plain text, so nothing shrinks). Lengths here are counted in UTF-16 code units,
//! which is never less than what Telegram counts: a character outside the Basic
//! Multilingual Plane (most emoji) counts twice. Every part keeps room for its marker.
//!
//! A long text is cut at the last line break in the second half of the room a part
//! has, else at the last space there, else at the last grapheme boundary that fits —
//! never inside a grapheme cluster (an emoji with its modifiers, a letter with its
//! combining marks) and never inside a surrogate pair. Only a single grapheme longer
//! than a whole part is cut inside, at a character boundary. Whitespace around a cut
//! is dropped (as Telegram drops it around a message); blank parts are not sent.
//!
//! Parts are byte ranges of the original text, so an outbox item can name its part
//! once and for all ([`render`] turns a range back into the marked text).

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;

/// Longest text of one Telegram message, in UTF-16 code units.
pub(crate) const MAX_MESSAGE_UTF16: usize = 4096;

/// Room kept in every part of a split text for its `(i/n) ` marker (12 units would
/// do up to 9,999 parts).
pub(crate) const MARKER_ROOM: usize = 16;

/// The length of `s` in UTF-16 code units.
pub(crate) fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Whether `s` fits in one Telegram message as it is.
#[cfg(test)]
fn fits(s: &str) -> bool {
    utf16_len(s) <= MAX_MESSAGE_UTF16
}

/// The parts of `text` for Telegram, as byte ranges: the whole text when it fits in one
/// message, else parts that fit together with their markers.
pub(crate) fn split(text: &str) -> Vec<Range<usize>> {
    split_within(text, MAX_MESSAGE_UTF16)
}

/// [`split`] for messages of at most `max_units` UTF-16 code units (more than
/// [`MARKER_ROOM`] + 1).
pub(crate) fn split_within(text: &str, max_units: usize) -> Vec<Range<usize>> {
    if utf16_len(text) <= max_units {
        return std::iter::once(0..text.len()).collect();
    }
    let room = max_units.saturating_sub(MARKER_ROOM).max(2);
    let mut parts = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        if utf16_len(rest) <= room {
            push_part(&mut parts, text, pos..text.len());
            break;
        }
        let hard = hard_end(rest, room);
        let (end, next) = cut(rest, hard);
        push_part(&mut parts, text, pos..pos + end);
        pos += next;
    }
    if parts.is_empty() {
        // Only whitespace (callers refuse blank texts; still, never send nothing).
        parts.push(0..text.len());
    }
    parts
}

/// The text of part `index` (1-based) of `count`: marked when there are several.
pub(crate) fn render(part: &str, index: usize, count: usize) -> String {
    if count <= 1 {
        part.to_string()
    } else {
        format!("({index}/{count}) {part}")
    }
}

/// Every part of `text`, marked: what the `sendMessage` calls carry, in order.
pub(crate) fn rendered_parts(text: &str) -> Vec<String> {
    let ranges = split(text);
    let n = ranges.len();
    ranges
        .into_iter()
        .enumerate()
        .map(|(i, r)| render(&text[r], i + 1, n))
        .collect()
}

/// Keep `range` of `text` without its leading and trailing whitespace (Telegram drops
/// it anyway); nothing when that leaves nothing.
fn push_part(parts: &mut Vec<Range<usize>>, text: &str, range: Range<usize>) {
    let slice = &text[range.clone()];
    let start = range.start + (slice.len() - slice.trim_start().len());
    let end = range.start + slice.trim_end().len();
    if start < end {
        parts.push(start..end);
    }
}

/// The largest prefix of `rest` (in bytes) of at most `room` UTF-16 units that ends on a
/// grapheme boundary; a character boundary when even the first grapheme is longer.
/// Never 0: `rest` is longer than `room` and `room` holds any one character.
fn hard_end(rest: &str, room: usize) -> usize {
    let mut units = 0;
    let mut end = 0;
    for (i, g) in rest.grapheme_indices(true) {
        let u = utf16_len(g);
        if units + u > room {
            break;
        }
        units += u;
        end = i + g.len();
    }
    if end == 0 {
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > room {
                break;
            }
            units += c.len_utf16();
            end = i + c.len_utf8();
        }
    }
    end
}

/// Where to end this part and where the next one starts (bytes into `rest`): at a line
/// break, else a space, in the second half of `rest[..hard]` (or right at `hard`),
/// else at `hard` itself.
fn cut(rest: &str, hard: usize) -> (usize, usize) {
    let from = hard / 2;
    let mut line = None;
    let mut space = None;
    let window = rest[..hard].grapheme_indices(true);
    // The grapheme right after the hard end counts too: a line break there is ideal.
    let after = rest[hard..].graphemes(true).next().map(|g| (hard, g));
    for (i, g) in window.chain(after) {
        if i < from {
            continue;
        }
        if g.chars().all(|c| c == '\n' || c == '\r') {
            line = Some((i, i + g.len()));
        } else if g.chars().all(char::is_whitespace) {
            space = Some((i, i + g.len()));
        }
    }
    line.or(space).unwrap_or((hard, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str, max: usize) -> Vec<String> {
        let ranges = split_within(text, max);
        let n = ranges.len();
        ranges
            .into_iter()
            .enumerate()
            .map(|(i, r)| render(&text[r], i + 1, n))
            .collect()
    }

    #[test]
    fn a_text_that_fits_is_one_unmarked_part() {
        let text = "x".repeat(MAX_MESSAGE_UTF16);
        assert_eq!(split(&text), vec![0..MAX_MESSAGE_UTF16]);
        assert_eq!(rendered_parts("hello"), vec!["hello".to_string()]);
    }

    #[test]
    fn six_thousand_characters_make_two_parts_that_fit() {
        let words: Vec<String> = (0..1200).map(|i| format!("w{i:03}")).collect();
        let text = words.join(" ");
        let text = &text[..6000];
        let parts = rendered_parts(text);
        assert_eq!(
            parts.len(),
            2,
            "{:?}",
            parts.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        assert!(parts[0].starts_with("(1/2) w000 "));
        assert!(parts[1].starts_with("(2/2) w"));
        for p in &parts {
            assert!(fits(p), "{} units", utf16_len(p));
        }
        // Cut at a space: no word is broken, and nothing is lost but that space.
        let rejoined = format!("{} {}", &parts[0][6..], &parts[1][6..]);
        assert_eq!(rejoined, text);
    }

    #[test]
    fn line_breaks_are_preferred_to_spaces() {
        let text = format!("{}\n{} {}", "a".repeat(30), "b".repeat(10), "c".repeat(15));
        let p = parts(&text, 16 + 40);
        assert_eq!(
            p,
            vec![
                format!("(1/2) {}", "a".repeat(30)),
                format!("(2/2) {} {}", "b".repeat(10), "c".repeat(15))
            ]
        );
    }

    #[test]
    fn emoji_count_twice_and_are_never_split() {
        // 3,000 astral characters: 3,000 chars but 6,000 UTF-16 units.
        let text = "😀".repeat(3000);
        let parts = rendered_parts(&text);
        assert_eq!(parts.len(), 2);
        for p in &parts {
            assert!(fits(p), "{} units", utf16_len(p));
        }
        let total: usize = parts
            .iter()
            .map(|p| {
                p.trim_start_matches(|c: char| c != ' ')
                    .trim_start()
                    .chars()
                    .count()
            })
            .sum();
        assert_eq!(total, 3000, "every emoji arrives whole");
    }

    #[test]
    fn grapheme_clusters_stay_whole() {
        // A family emoji is 7 code points (11 UTF-16 units) joined by ZWJ; a flag is two
        // regional indicators; "é" here is e + a combining accent.
        for unit in ["👨‍👩‍👧‍👦", "🇩🇪", "e\u{301}"] {
            let text = unit.repeat(200);
            let ranges = split_within(&text, 16 + 50);
            assert!(ranges.len() > 1);
            for r in &ranges {
                let part = &text[r.clone()];
                assert!(
                    part.len() % unit.len() == 0,
                    "{unit:?} cut inside: {part:?}"
                );
                assert!(utf16_len(part) <= 50);
            }
            let joined: String = ranges.iter().map(|r| &text[r.clone()]).collect();
            assert_eq!(joined, text, "nothing lost between parts without spaces");
        }
    }

    #[test]
    fn one_huge_grapheme_is_cut_at_a_character_boundary() {
        let text = format!("a{}", "\u{301}".repeat(100));
        let ranges = split_within(&text, 16 + 30);
        assert!(ranges.len() >= 4);
        let joined: String = ranges.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        for r in &ranges {
            assert!(utf16_len(&text[r.clone()]) <= 30);
        }
    }

    #[test]
    fn blank_stretches_make_no_empty_parts() {
        let text = format!("start{}end", " ".repeat(200));
        let p = parts(&text, 16 + 40);
        assert_eq!(p, vec!["(1/2) start".to_string(), "(2/2) end".to_string()]);
    }
}
