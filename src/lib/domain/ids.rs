//! Ids: opaque, time-ordered text with a readable prefix (`tn_…`, `cv_…`). Each kind of
//! id is its own type in the library's functions, so a conversation id cannot be passed
//! where a tenant id is meant; the database stores the same text.

use std::{fmt, ops::Deref};

use serde::{Deserialize, Serialize};

/// A new opaque, time-ordered id with a readable prefix, e.g. `cv_0192…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix new ids of this kind get.
            pub const PREFIX: &'static str = $prefix;

            /// A new id of this kind.
            pub fn generate() -> Self {
                $name(new_id($prefix))
            }

            /// The id as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The stored text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            /// An id read from storage or a request (not checked: an unknown id is
            /// simply not found).
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        /// Repository functions take `&str`: an id reference coerces to it.
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant's id (`tn_…`).
    TenantId,
    "tn"
);
id_type!(
    /// A conversation's id (`cv_…`).
    ConversationId,
    "cv"
);
id_type!(
    /// A message's id (`msg_…`).
    MessageId,
    "msg"
);
id_type!(
    /// A visitor's id (`vis_…`).
    VisitorId,
    "vis"
);
id_type!(
    /// An API key's id (`key_…`; not the secret).
    KeyId,
    "key"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_serialize_as_text() {
        let id = ConversationId::generate();
        assert!(id.starts_with("cv_"), "{id}");
        assert_eq!(serde_json::to_string(&id).ok(), Some(format!("\"{id}\"")));
        let back: ConversationId = serde_json::from_str(&format!("\"{id}\"")).expect("parse");
        assert_eq!(back, id);
        assert_eq!(TenantId::from("tn_1"), "tn_1");
    }
}
