//! The JSON frames of the widget socket. Every frame is an object with a `type`.

use serde::{Deserialize, Serialize};

use crate::chat::MessageView;

/// Server → client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame: where the conversation stands (`null` until one is started).
    Hello {
        /// The bound conversation, if any.
        conversation_id: Option<String>,
        /// Highest seq stored; backfill anything above what the client has.
        last_seq: i64,
    },
    /// A new message (either direction).
    Message {
        /// The message.
        message: MessageView,
    },
    /// A message's text changed.
    MessageEdited {
        /// The message after the edit.
        message: MessageView,
    },
    /// The client's `send` was stored (or had been stored before).
    Ack {
        /// The id the client chose.
        client_msg_id: String,
        /// The stored message.
        message: MessageView,
    },
    /// Someone is typing.
    Typing {
        /// `agent` or `visitor`.
        from: String,
    },
    /// Whether agents are online.
    Presence {
        /// Agents seen recently.
        agents_online: bool,
    },
    /// The conversation was closed.
    ConversationClosed {
        /// Which conversation.
        conversation_id: String,
    },
    /// A limit was hit: a rate limit (`rate_limited`; wait `retry_after` seconds) or a
    /// quota of the tenant's plan (`quota_exceeded`, with `details {quota, limit, used,
    /// resets_at}`; `retry_after` counts to `resets_at`, 0 for the open-conversation
    /// cap). The `send` it refused (`client_msg_id`) was not stored.
    Limit {
        /// Stable code.
        code: String,
        /// Seconds.
        retry_after: u64,
        /// The refused `send`, when a send was refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        /// What limit, for a plan quota.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
    /// A frame could not be handled.
    Error {
        /// Stable code.
        code: String,
        /// Human-readable.
        message: String,
    },
    /// Answer to a client `ping`.
    Pong,
}

impl ServerFrame {
    /// Serialize once for fan-out.
    pub fn to_json(&self) -> std::sync::Arc<str> {
        serde_json::to_string(self)
            .unwrap_or_else(|_| {
                "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"\"}".into()
            })
            .into()
    }
}

/// Client → server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message (idempotent by `client_msg_id`).
    Send {
        /// Client-chosen id, unique per conversation.
        client_msg_id: String,
        /// Message text.
        text: String,
    },
    /// The visitor is typing.
    Typing,
    /// The visitor has read up to `seq`.
    Read {
        /// Highest seq read.
        seq: i64,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
}

/// A text frame that is not a client frame: not JSON, not an object, an unknown
/// `type`, or missing or mistyped fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidFrame;

impl InvalidFrame {
    /// The stable code sent back in the `error` frame.
    pub const CODE: &'static str = "invalid_frame";

    /// The `error` frame the socket answers with (the input is never echoed).
    pub fn to_frame(self) -> ServerFrame {
        ServerFrame::Error {
            code: Self::CODE.into(),
            message: "frames are JSON objects with a known `type`".into(),
        }
    }
}

impl ClientFrame {
    /// Decode one text frame from the widget, as the socket loop does. Never panics,
    /// whatever the input (property-tested in `tests/parsers.rs` against a checked-in
    /// corpus).
    pub fn decode(text: &str) -> Result<ClientFrame, InvalidFrame> {
        serde_json::from_str(text).map_err(|_| InvalidFrame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_type_field() {
        let v: serde_json::Value =
            serde_json::from_str(&ServerFrame::Pong.to_json()).expect("json");
        assert_eq!(v["type"], "pong");
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"send","client_msg_id":"a","text":"hi"}"#)
                .expect("parse");
        assert_eq!(
            f,
            ClientFrame::Send {
                client_msg_id: "a".into(),
                text: "hi".into()
            }
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
    }
}
