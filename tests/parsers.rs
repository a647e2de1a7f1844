//! Property tests (the project's fuzzing on stable Rust) of the two parsers that read
//! bytes from strangers before anything else looks at them:
//!
//! - the Telegram webhook's update parser, `telegram::webhook::parse_update` — what
//!   `POST /v1/telegram/webhook/{slug}` runs on the raw body once the secret matched;
//! - the widget socket's frame decoder, `realtime::ClientFrame::decode` — what the
//!   socket loop runs on every text frame.
//!
//! Inputs are arbitrary bytes and strings, and mutations (byte-level and JSON-level)
//! of the seed corpus checked in under `tests/corpus/`: `valid/` holds real-shaped
//! inputs that must parse, `invalid/` inputs that must be refused. Properties: no
//! panic; a refusal is the clean stable error (`invalid_json`, `invalid_frame`) that
//! echoes nothing; what parses keeps the parser's promises (agent texts are not blank,
//! hold no NUL, fit our limit; a frame re-encodes to itself).

use std::path::{Path, PathBuf};

use chatorical::{
    chat::MAX_TEXT_CHARS,
    domain::text::is_blank,
    error::ErrorCode,
    realtime::{ClientFrame, InvalidFrame, ServerFrame},
    telegram::webhook::{ParsedUpdate, parse_update},
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// The tenant's forum group and bot in the corpus.
const GROUP: i64 = -1_001_234_567_890;
const BOT: i64 = 7_000_001;

fn corpus_dir(parts: &[&str]) -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for p in parts {
        dir = dir.join(p);
    }
    dir
}

/// `(file name, bytes)` of every file in `tests/corpus/<kind>/<class>`, sorted.
fn seeds(kind: &str, class: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(&[kind, class]);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn all_seed_bytes(kind: &str) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = seeds(kind, "valid").into_iter().map(|(_, b)| b).collect();
    all.extend(seeds(kind, "invalid").into_iter().map(|(_, b)| b));
    all
}

// ---------------------------------------------------------------------------
// What must hold for any input
// ---------------------------------------------------------------------------

/// The webhook parser on `body`: either a clean `invalid_json` that echoes nothing of
/// the input, or an update whose agent text keeps every promise.
fn check_update(body: &[u8]) -> Option<ParsedUpdate> {
    match parse_update(body, GROUP, BOT) {
        Ok(parsed) => {
            assert!(parsed.update_id >= 0, "update ids are unsigned");
            if let Some(agent) = &parsed.agent {
                assert!(!is_blank(&agent.text), "blank agent text {:?}", agent.text);
                assert!(!agent.text.contains('\0'), "NUL in {:?}", agent.text);
                assert!(!agent.author.contains('\0'), "NUL in {:?}", agent.author);
                assert_eq!(agent.text.trim(), agent.text, "text is trimmed");
                assert!(agent.text.chars().count() <= MAX_TEXT_CHARS);
            }
            Some(parsed)
        }
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidJson, "{e:?}");
            assert_eq!(e.message, "not a Telegram update");
            assert!(e.details.is_none(), "no details echoed: {e:?}");
            None
        }
    }
}

/// The frame decoder on `text`: a clean `invalid_frame`, or a frame that encodes back
/// to itself (nothing lost or invented on the way in).
fn check_frame(text: &str) -> Option<ClientFrame> {
    match ClientFrame::decode(text) {
        Ok(frame) => {
            let again = serde_json::to_string(&frame).expect("a frame encodes");
            assert_eq!(ClientFrame::decode(&again), Ok(frame.clone()), "{again}");
            Some(frame)
        }
        Err(invalid) => {
            assert_eq!(invalid, InvalidFrame);
            match invalid.to_frame() {
                ServerFrame::Error { code, message } => {
                    assert_eq!(code, "invalid_frame");
                    assert!(
                        text.len() < 8 || !message.contains(text),
                        "the input is not echoed"
                    );
                }
                other => panic!("not an error frame: {other:?}"),
            }
            None
        }
    }
}

// ---------------------------------------------------------------------------
// The corpus itself
// ---------------------------------------------------------------------------

#[test]
fn valid_webhook_seeds_parse_and_invalid_ones_are_refused() {
    for (name, body) in seeds("webhook", "valid") {
        assert!(check_update(&body).is_some(), "{name} must parse");
    }
    for (name, body) in seeds("webhook", "invalid") {
        assert!(check_update(&body).is_none(), "{name} must be refused");
    }
}

#[test]
fn webhook_seeds_say_what_the_route_stores() {
    let parsed = |name: &str| {
        let body = std::fs::read(corpus_dir(&["webhook", "valid", name])).expect(name);
        check_update(&body).unwrap_or_else(|| panic!("{name} parses"))
    };
    let answer = parsed("topic_text.json");
    assert_eq!(answer.update_id, 100_000_001);
    let agent = answer.agent.expect("an agent's answer");
    assert_eq!(
        (agent.topic, agent.telegram_message_id, agent.edited),
        (42, 9001, false)
    );
    assert_eq!(
        (agent.text.as_str(), agent.author.as_str()),
        ("It ships today.", "Ana Lima")
    );
    let edit = parsed("topic_text_edited.json").agent.expect("an edit");
    assert_eq!(
        (edit.telegram_message_id, edit.edited, edit.text.as_str()),
        (9001, true, "It ships tomorrow, sorry!")
    );
    let padded = parsed("text_with_nul_and_padding.json");
    assert_eq!(
        padded.agent.map(|a| a.text),
        Some("Your code is 1234".to_string())
    );
    assert_eq!(
        parsed("large_ids.json").update_id,
        4_294_967_295,
        "the whole u32 range of update ids"
    );
    // Acknowledged and ignored: nothing for the visitor.
    for name in [
        "topic_created_by_bot.json",
        "general_topic_text.json",
        "private_chat.json",
        "bot_own_echo.json",
        "other_group.json",
        "photo_with_caption.json",
        "invisible_only.json",
        // Visible only after our 8,000-character limit: blank once cut.
        "invisible_padding_over_the_limit.json",
        "callback_query.json",
        "my_chat_member_promoted.json",
        "unknown_update_kind.json",
    ] {
        assert_eq!(parsed(name).agent, None, "{name} stores nothing");
    }
}

#[test]
fn valid_frame_seeds_decode_and_invalid_ones_are_refused() {
    for (name, bytes) in seeds("frames", "valid") {
        let text = String::from_utf8(bytes).expect("UTF-8 seed");
        assert!(check_frame(&text).is_some(), "{name} must decode");
    }
    for (name, bytes) in seeds("frames", "invalid") {
        let text = String::from_utf8(bytes).expect("UTF-8 seed");
        assert!(check_frame(&text).is_none(), "{name} must be refused");
    }
    assert_eq!(
        check_frame(r#"{"type":"read","seq":17}"#),
        Some(ClientFrame::Read { seq: 17 })
    );
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    // Far deeper than any recursion limit; must be an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    assert!(check_update(deep.as_bytes()).is_none());
    assert!(check_frame(&deep).is_none());
    let in_a_field = format!(
        r#"{{"update_id":1,"message":{{"message_id":1,"date":0,"chat":{{"id":1,"type":"private"}},"text":{}}}}}"#,
        deep
    );
    check_update(in_a_field.as_bytes());
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

/// One byte-level edit; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Repeat { at: usize, len: usize, times: u8 },
    Truncate { at: usize },
}

/// Bytes a JSON parser cares about, and some that break UTF-8.
const INTERESTING: &[u8] = b"{}[]\":,\\0-+.eE \t\n\x00\x7f\x80\xbf\xc0\xed\xf0\xff";

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let byte = prop_oneof![
        3 => prop::sample::select(INTERESTING),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip { at, bit }),
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| ByteEdit::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(byte, 1..8))
            .prop_map(|(at, bytes)| ByteEdit::Insert { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| ByteEdit::Delete { at, len }),
        (any::<usize>(), 1usize..64, 2u8..16).prop_map(|(at, len, times)| ByteEdit::Repeat {
            at,
            len,
            times
        }),
        any::<usize>().prop_map(|at| ByteEdit::Truncate { at }),
    ]
}

fn apply_bytes(mut input: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for edit in edits {
        let n = input.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % n };
        match edit {
            ByteEdit::Flip { at, bit } if n > 0 => input[pos(*at)] ^= 1 << bit,
            ByteEdit::Set { at, byte } if n > 0 => input[pos(*at)] = *byte,
            ByteEdit::Insert { at, bytes } => {
                let p = if n == 0 { 0 } else { at % (n + 1) };
                input.splice(p..p, bytes.iter().copied());
            }
            ByteEdit::Delete { at, len } if n > 0 => {
                let p = pos(*at);
                input.drain(p..(p + len).min(n));
            }
            ByteEdit::Repeat { at, len, times } if n > 0 => {
                let p = pos(*at);
                let piece = input[p..(p + len).min(n)].to_vec();
                for _ in 1..*times {
                    input.splice(p..p, piece.iter().copied());
                }
            }
            ByteEdit::Truncate { at } => input.truncate(pos(*at)),
            _ => {}
        }
    }
    input
}

/// Values that stress a typed decoder: type confusion, range edges, odd strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0i128,
            -1,
            i128::from(i32::MAX) + 1,
            i128::from(u32::MAX) + 1,
            i128::from(i64::MIN),
            i128::from(u64::MAX),
            9_007_199_254_740_993,
        ])
        .prop_map(|n| serde_json::from_str::<Value>(&n.to_string()).unwrap_or(Value::Null)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec![
            "",
            " ",
            "\u{0}",
            "\u{200b}",
            "supergroup",
            "private",
            "send",
            "typing",
            "read",
            "ping",
            "-1001234567890",
            "💬",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// One JSON-level edit at the `at`-th node (pre-order, modulo the number of nodes).
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace { at: usize, with: Value },
    Remove { at: usize },
    AddField { at: usize, key: String, with: Value },
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "type",
            "text",
            "update_id",
            "message",
            "edited_message",
            "chat",
            "from",
            "message_thread_id",
            "is_bot",
            "seq",
            "client_msg_id",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,10}",
    ];
    prop_oneof![
        (any::<usize>(), json_value()).prop_map(|(at, with)| JsonEdit::Replace { at, with }),
        any::<usize>().prop_map(|at| JsonEdit::Remove { at }),
        (any::<usize>(), key, json_value()).prop_map(|(at, key, with)| JsonEdit::AddField {
            at,
            key,
            with
        }),
    ]
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `n`-th node in pre-order (0 = the root).
fn nth_node(v: &mut Value, n: usize) -> Option<&mut Value> {
    if n == 0 {
        return Some(v);
    }
    let mut rest = n - 1;
    let children: Box<dyn Iterator<Item = &mut Value>> = match v {
        Value::Array(a) => Box::new(a.iter_mut()),
        Value::Object(o) => Box::new(o.values_mut()),
        _ => return None,
    };
    for child in children {
        let size = count_nodes(child);
        if rest < size {
            return nth_node(child, rest);
        }
        rest -= size;
    }
    None
}

fn apply_json(mut root: Value, edits: &[JsonEdit]) -> Value {
    for edit in edits {
        let total = count_nodes(&root);
        match edit {
            JsonEdit::Remove { at } => remove_nth(&mut root, at % total),
            JsonEdit::Replace { at, with } => {
                if let Some(node) = nth_node(&mut root, at % total) {
                    *node = with.clone();
                }
            }
            JsonEdit::AddField { at, key, with } => {
                if let Some(Value::Object(o)) = nth_node(&mut root, at % total) {
                    o.insert(key.clone(), with.clone());
                }
            }
        }
    }
    root
}

/// Remove the `n`-th node (pre-order) from its parent; the root is kept.
fn remove_nth(root: &mut Value, n: usize) {
    fn walk(v: &mut Value, n: &mut usize) -> bool {
        match v {
            Value::Array(a) => {
                for i in 0..a.len() {
                    if *n == 0 {
                        a.remove(i);
                        return true;
                    }
                    *n -= 1;
                    if walk(&mut a[i], n) {
                        return true;
                    }
                }
                false
            }
            Value::Object(o) => {
                let keys: Vec<String> = o.keys().cloned().collect();
                for k in keys {
                    if *n == 0 {
                        o.remove(&k);
                        return true;
                    }
                    *n -= 1;
                    if let Some(child) = o.get_mut(&k)
                        && walk(child, n)
                    {
                        return true;
                    }
                }
                false
            }
            _ => false,
        }
    }
    if n > 0 {
        let mut left = n - 1;
        walk(root, &mut left);
    }
}

fn valid_json_seeds(kind: &str) -> Vec<Value> {
    seeds(kind, "valid")
        .into_iter()
        .map(|(name, bytes)| {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name} is JSON: {e}"))
        })
        .collect()
}

proptest! {
    #[test]
    fn webhook_parser_takes_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_update(&body);
    }

    #[test]
    fn webhook_parser_takes_byte_mutations_of_the_corpus(
        seed in prop::sample::select(all_seed_bytes("webhook")),
        edits in prop::collection::vec(byte_edit(), 1..6),
    ) {
        check_update(&apply_bytes(seed, &edits));
    }

    #[test]
    fn webhook_parser_takes_json_mutations_of_the_corpus(
        seed in prop::sample::select(valid_json_seeds("webhook")),
        edits in prop::collection::vec(json_edit(), 1..5),
    ) {
        let body = serde_json::to_vec(&apply_json(seed, &edits)).expect("encodes");
        check_update(&body);
    }

    #[test]
    fn agent_texts_keep_their_promises_whatever_the_text(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec!['\u{0}', ' ', '\n', '\u{200b}', '\u{2060}', '\u{feff}', '\u{3164}', 'a', 'é', '👋']),
                0..64,
            ).prop_map(|c| c.into_iter().collect::<String>()),
            (0usize..3, any::<char>()).prop_map(|(k, c)| {
                // Longer than our limit: invisible padding before the visible part.
                let pad = ["\u{200b}", " ", "x"][k].repeat(MAX_TEXT_CHARS);
                format!("{pad}{c}")
            }),
        ],
        author in any::<String>(),
    ) {
        let mut update: Value = serde_json::from_slice(
            &std::fs::read(corpus_dir(&["webhook", "valid", "topic_text.json"])).expect("seed"),
        ).expect("JSON");
        update["message"]["text"] = Value::String(text.clone());
        update["message"]["from"]["first_name"] = Value::String(author);
        let body = serde_json::to_vec(&update).expect("encodes");
        let parsed = check_update(&body).expect("still an update");
        let kept: String = text.replace('\0', "").trim().chars().take(MAX_TEXT_CHARS).collect();
        prop_assert_eq!(parsed.agent.is_some(), !is_blank(kept.trim_end()));
    }

    #[test]
    fn frame_decoder_takes_any_string(text in any::<String>()) {
        check_frame(&text);
    }

    #[test]
    fn frame_decoder_takes_byte_mutations_of_the_corpus(
        seed in prop::sample::select(all_seed_bytes("frames")),
        edits in prop::collection::vec(byte_edit(), 1..6),
    ) {
        let bytes = apply_bytes(seed, &edits);
        // A WebSocket text frame is UTF-8 (tungstenite refuses anything else).
        check_frame(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn frame_decoder_takes_json_mutations_of_the_corpus(
        seed in prop::sample::select(valid_json_seeds("frames")),
        edits in prop::collection::vec(json_edit(), 1..4),
    ) {
        check_frame(&apply_json(seed, &edits).to_string());
    }
}
