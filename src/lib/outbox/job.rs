//! What an outbox item asks for: one tagged enum shared by every producer and the
//! delivery code, so a renamed field fails to compile instead of dead-lettering at run
//! time. Stored as before: the tag in the `kind` column, the fields as the JSON
//! `payload`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{ConversationId, MessageId};
use crate::error::{Error, Result};

/// An outbox job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload")]
pub enum Job {
    /// Deliver a stored visitor message (or one part of a long one) into its
    /// conversation's forum topic.
    #[serde(rename = "telegram.send_message")]
    SendMessage(MessageJob),
    /// Close a conversation's forum topic.
    #[serde(rename = "telegram.close_topic")]
    CloseTopic {
        /// The conversation whose topic to close.
        conversation_id: ConversationId,
    },
    /// Give a conversation's forum topic its current name (read when delivered: see
    /// [`crate::telegram::topic::topic_name`]). Nothing to do while it has no topic.
    #[serde(rename = "telegram.rename_topic")]
    RenameTopic {
        /// The conversation whose topic to rename.
        conversation_id: String,
    },
    /// Delete a forum topic with all its messages (`deleteForumTopic`): queued by
    /// retention (when the tenant opted in) in the transaction that deletes the topic's
    /// conversation, so it carries the chat and the topic itself — the conversation
    /// row is gone by the time it is delivered. It names no conversation
    /// ([`Job::conversation_id`] is `None`): items found by a conversation are that
    /// conversation's own work, which retention deletes and erasure cancels, and this
    /// item must outlive the conversation it was queued for.
    #[serde(rename = "telegram.delete_topic")]
    DeleteTopic {
        /// The forum group the topic is in.
        chat_id: i64,
        /// The topic's thread id.
        topic_id: i64,
    },
    /// Send an operator's text into the group (into a topic, or the default topic).
    #[serde(rename = "telegram.send_text")]
    SendText {
        /// The text (at most one Telegram message; longer texts are queued as parts).
        text: String,
        /// The topic, if any.
        topic_id: Option<i64>,
    },
}

/// A visitor message for Telegram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageJob {
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The stored message.
    pub message_id: MessageId,
    /// Which part of a message too long for one Telegram message this item carries
    /// (absent: the whole message).
    #[serde(flatten)]
    pub part: Option<Part>,
}

/// One part of a long message: `part` of `parts` (from 1), bytes `start..end` of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// This part's number, from 1.
    pub part: usize,
    /// How many parts there are.
    pub parts: usize,
    /// Start byte in the message text.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
}

impl Job {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::SendMessage(_) => "telegram.send_message",
            Job::CloseTopic { .. } => "telegram.close_topic",
            Job::RenameTopic { .. } => "telegram.rename_topic",
            Job::DeleteTopic { .. } => "telegram.delete_topic",
            Job::SendText { .. } => "telegram.send_text",
        }
    }

    /// The conversation the job is about (`None` for an operator's text, and for a
    /// topic deletion, which outlives its conversation: see [`Job::DeleteTopic`]).
    pub fn conversation_id(&self) -> Option<&str> {
        match self {
            Job::SendMessage(m) => Some(&m.conversation_id),
            Job::CloseTopic { conversation_id } => Some(conversation_id),
            Job::RenameTopic { conversation_id } => Some(conversation_id),
            Job::DeleteTopic { .. } | Job::SendText { .. } => None,
        }
    }

    /// The `payload` column (the job's fields as JSON).
    pub fn payload(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("payload").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Read a stored item back: `validation_failed` for an unknown kind or a payload
    /// that does not fit it.
    pub fn parse(kind: &str, payload: &str) -> Result<Job> {
        let payload: Value = serde_json::from_str(payload)
            .map_err(|e| Error::validation("payload", format!("unreadable payload: {e}")))?;
        serde_json::from_value(serde_json::json!({ "kind": kind, "payload": payload }))
            .map_err(|e| Error::validation("payload", format!("`{kind}` item: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_is_unchanged_and_round_trips() {
        let whole = Job::SendMessage(MessageJob {
            conversation_id: "cv_1".into(),
            message_id: "msg_1".into(),
            part: None,
        });
        assert_eq!(whole.kind(), "telegram.send_message");
        assert_eq!(
            whole.payload(),
            serde_json::json!({"conversation_id": "cv_1", "message_id": "msg_1"})
        );
        let part = Job::SendMessage(MessageJob {
            conversation_id: "cv_1".into(),
            message_id: "msg_1".into(),
            part: Some(Part {
                part: 2,
                parts: 2,
                start: 10,
                end: 20,
            }),
        });
        assert_eq!(
            part.payload(),
            serde_json::json!({"conversation_id": "cv_1", "message_id": "msg_1", "part": 2, "parts": 2, "start": 10, "end": 20})
        );
        let text = Job::SendText {
            text: "hi".into(),
            topic_id: None,
        };
        assert_eq!(
            text.payload(),
            serde_json::json!({"text": "hi", "topic_id": null})
        );
        let close = Job::CloseTopic {
            conversation_id: "cv_9".into(),
        };
        let rename = Job::RenameTopic {
            conversation_id: "cv_8".into(),
        };
        assert_eq!(rename.kind(), "telegram.rename_topic");
        assert_eq!(
            rename.payload(),
            serde_json::json!({"conversation_id": "cv_8"})
        );
        let delete = Job::DeleteTopic {
            chat_id: -100_123,
            topic_id: 42,
        };
        assert_eq!(delete.kind(), "telegram.delete_topic");
        assert_eq!(
            delete.payload(),
            serde_json::json!({"chat_id": -100_123, "topic_id": 42})
        );
        assert_eq!(delete.conversation_id(), None);
        for job in [whole, part, text, close, rename, delete] {
            let back = Job::parse(job.kind(), &job.payload().to_string()).expect("parses");
            assert_eq!(back, job);
        }
    }

    #[test]
    fn unknown_kinds_and_wrong_payloads_are_errors() {
        assert!(Job::parse("telegram.nope", "{}").is_err());
        assert!(Job::parse("telegram.send_text", r#"{"txt": "renamed"}"#).is_err());
        assert!(Job::parse("telegram.close_topic", "not json").is_err());
    }
}
