//! Files embedded in the binary at build time: the widget script and the demo page.

use crate::domain::sha256_hex;

/// The widget script (`GET /widget.js`, `chatorical widget release`).
pub(crate) const WIDGET_JS: &str = include_str!("../../widget/widget.js");

/// The demo page served at `/` on the embedded default.
pub(crate) const DEMO_HTML: &str = include_str!("../../widget/demo.html");

/// Content hash of the widget script (its `?v=` and ETag).
pub(crate) fn widget_version() -> String {
    sha256_hex(WIDGET_JS)[..16].to_string()
}
