use std::fmt;

use crate::error::{Error, Result};

/// What an API key scope is about. Declared in alphabetical order: scopes sort (and
/// are stored and shown) by resource name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// The audit log.
    Audit,
    /// Billing.
    Billing,
    /// Conversations and messages.
    Conversations,
    /// API keys.
    Keys,
    /// The outbox.
    Outbox,
    /// Plans.
    Plans,
    /// Tenant settings and identity verification.
    Settings,
    /// The Telegram connection.
    Telegram,
    /// Widget texts.
    Templates,
    /// Tenants (platform keys only).
    Tenants,
    /// Usage counters.
    Usage,
    /// Visitors' personal data (export and erasure).
    Visitors,
}

impl Resource {
    /// Every resource, in name order.
    pub const ALL: [Resource; 12] = [
        Resource::Audit,
        Resource::Billing,
        Resource::Conversations,
        Resource::Keys,
        Resource::Outbox,
        Resource::Plans,
        Resource::Settings,
        Resource::Telegram,
        Resource::Templates,
        Resource::Tenants,
        Resource::Usage,
        Resource::Visitors,
    ];

    /// The name used in scopes (`outbox` in `outbox:read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Tenants => "tenants",
            Resource::Keys => "keys",
            Resource::Settings => "settings",
            Resource::Conversations => "conversations",
            Resource::Telegram => "telegram",
            Resource::Outbox => "outbox",
            Resource::Templates => "templates",
            Resource::Plans => "plans",
            Resource::Usage => "usage",
            Resource::Billing => "billing",
            Resource::Audit => "audit",
            Resource::Visitors => "visitors",
        }
    }
}

/// Read or write access (`write` includes `read` of the same resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeAccess {
    /// `<resource>:read`.
    Read,
    /// `<resource>:write`.
    Write,
    /// `outbox:reveal`: see payloads unredacted.
    Reveal,
}

/// One scope, `<resource>:<read|write>` (plus `outbox:reveal`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scope {
    resource: Resource,
    access: ScopeAccess,
}

impl Scope {
    /// Parse `resource:access`, naming what is wrong.
    pub fn parse(s: &str) -> Result<Self> {
        let (res, acc) = s.split_once(':').ok_or_else(|| {
            Error::validation(
                "scopes",
                format!("scope `{s}` must look like resource:read or resource:write"),
            )
        })?;
        let resource = Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == res)
            .ok_or_else(|| {
                Error::validation("scopes", format!("unknown resource `{res}` in scope `{s}`"))
            })?;
        let access = match (resource, acc) {
            (_, "read") => ScopeAccess::Read,
            (_, "write") => ScopeAccess::Write,
            (Resource::Outbox, "reveal") => ScopeAccess::Reveal,
            _ => {
                return Err(Error::validation(
                    "scopes",
                    format!("unknown access `{acc}` in scope `{s}`"),
                ));
            }
        };
        Ok(Scope { resource, access })
    }

    /// A scope from parts known at compile time.
    pub const fn new(resource: Resource, access: ScopeAccess) -> Self {
        Scope { resource, access }
    }

    /// The resource name.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// Whether holding `self` grants `needed`.
    pub fn grants(&self, needed: &Scope) -> bool {
        self.resource == needed.resource
            && (self.access == needed.access
                || (self.access == ScopeAccess::Write && needed.access == ScopeAccess::Read))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let acc = match self.access {
            ScopeAccess::Read => "read",
            ScopeAccess::Write => "write",
            ScopeAccess::Reveal => "reveal",
        };
        write!(f, "{}:{acc}", self.resource.as_str())
    }
}

/// A set of scopes, stored space-separated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parse a list; empty lists are refused.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        let mut scopes = Vec::new();
        for item in items {
            for part in item.as_ref().split([' ', ',']).filter(|p| !p.is_empty()) {
                scopes.push(Scope::parse(part)?);
            }
        }
        if scopes.is_empty() {
            return Err(Error::validation(
                "scopes",
                "at least one scope is required",
            ));
        }
        scopes.sort();
        scopes.dedup();
        Ok(Scopes(scopes))
    }
    /// Parse the stored form (space-separated).
    pub fn from_stored(s: &str) -> Self {
        Scopes(s.split(' ').filter_map(|p| Scope::parse(p).ok()).collect())
    }
    /// The stored form.
    pub fn to_stored(&self) -> String {
        self.0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
    /// Whether any scope grants `needed`.
    pub fn grants(&self, needed: &Scope) -> bool {
        self.0.iter().any(|s| s.grants(needed))
    }
    /// The scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
    /// The scopes as strings.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_grants_read_but_not_the_reverse() {
        let w = Scope::parse("keys:write").expect("valid");
        let r = Scope::parse("keys:read").expect("valid");
        assert!(w.grants(&r));
        assert!(!r.grants(&w));
        assert!(!w.grants(&Scope::parse("settings:read").expect("valid")));
    }

    #[test]
    fn bad_scopes_are_named() {
        let e = Scope::parse("kees:read").expect_err("unknown");
        assert!(e.message.contains("kees"));
        assert!(Scope::parse("keys:admin").is_err());
        assert!(Scope::parse("keys").is_err());
        assert!(Scope::parse("keys:reveal").is_err());
        assert!(Scope::parse("outbox:reveal").is_ok());
    }

    #[test]
    fn resources_sort_by_name() {
        let names: Vec<&str> = Resource::ALL.iter().map(|r| r.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        let mut ordered = Resource::ALL;
        ordered.sort();
        assert_eq!(ordered, Resource::ALL);
    }

    #[test]
    fn stored_form_round_trips() {
        let s =
            Scopes::parse_list(&["keys:write conversations:read", "keys:write"]).expect("valid");
        assert_eq!(Scopes::from_stored(&s.to_stored()), s);
    }
}
