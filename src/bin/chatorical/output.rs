//! Printing: tables for people, JSON for scripts.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// A table with the house style.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// Print a value as pretty JSON.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `-` for an absent value.
pub(crate) fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

/// Text from the database or another party, made safe to print: control characters
/// (terminal escape sequences, carriage returns, bidi overrides) are shown as `\u{…}`
/// escapes instead of acting on the terminal.
pub(crate) fn safe(v: &str) -> String {
    chatorical::domain::text::escape_controls(v).into_owned()
}

/// Print a table with every control character of its cells (other than the line
/// breaks comfy-table lays out) shown as an escape: names and texts in the database
/// cannot move the cursor, clear the screen or hide rows.
pub(crate) fn print_table(t: &Table) {
    let text = t.to_string();
    let shown: String = text.split('\n').map(safe).collect::<Vec<_>>().join("\n");
    println!("{shown}");
}
