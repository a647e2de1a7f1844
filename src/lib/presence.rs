//! Whether a tenant's agents are online: someone answered (Telegram messages in the
//! group, admin API replies) within the configured window. Shared across nodes
//! through Redis when configured; sockets ask at connect and on every ping tick and
//! send a `presence` frame when the answer changes.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::cluster::Cluster;
use crate::domain::TenantId;
use crate::domain::now_ms;

/// How long a node trusts its cached answer before asking Redis again.
const CACHE_FOR: Duration = Duration::from_secs(2);

/// Agent presence per tenant.
pub struct Presence {
    cluster: Option<Cluster>,
    window_ms: i64,
    /// Last agent activity per tenant (epoch ms), on the embedded default.
    local: Mutex<HashMap<String, i64>>,
    /// Cached answers per tenant, when Redis holds the truth.
    cache: Mutex<HashMap<String, (Instant, bool)>>,
}

impl Presence {
    /// Presence with a `window` of activity, shared through `cluster` when given.
    pub fn new(cluster: Option<Cluster>, window: Duration) -> Self {
        Presence {
            cluster,
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2),
            local: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Record agent activity for a tenant now.
    pub async fn touch(&self, tenant_id: &TenantId) {
        let now = now_ms();
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant_id.to_string(), now);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant_id.to_string(), (Instant::now(), true));
        if let Some(cluster) = &self.cluster {
            let mut conn = cluster.conn();
            let ttl = u64::try_from(self.window_ms / 1000).unwrap_or(300).max(1);
            let set: Result<(), _> = redis::cmd("SET")
                .arg(cluster.key(&["presence", tenant_id]))
                .arg(now)
                .arg("EX")
                .arg(ttl)
                .query_async(&mut conn)
                .await;
            if set.is_err() {
                tracing::debug!("presence not shared: Redis unavailable");
            }
        }
    }

    /// Whether the tenant's agents were active within the window.
    pub async fn online(&self, tenant_id: &TenantId) -> bool {
        let Some(cluster) = &self.cluster else {
            let last = self
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(tenant_id.as_str())
                .copied();
            return last.is_some_and(|t| now_ms() - t < self.window_ms);
        };
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant_id.as_str())
            .copied();
        if let Some((at, v)) = cached
            && at.elapsed() < CACHE_FOR
        {
            return v;
        }
        let mut conn = cluster.conn();
        let got: Result<Option<i64>, _> = redis::cmd("GET")
            .arg(cluster.key(&["presence", tenant_id]))
            .query_async(&mut conn)
            .await;
        let online = match got {
            Ok(v) => v.is_some_and(|t| now_ms() - t < self.window_ms),
            // Redis down: fall back to what this node saw itself.
            Err(_) => self
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(tenant_id.as_str())
                .is_some_and(|t| now_ms() - *t < self.window_ms),
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant_id.to_string(), (Instant::now(), online));
        online
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn activity_makes_agents_online_for_the_window() {
        let p = Presence::new(None, Duration::from_millis(200));
        assert!(!p.online(&"tn_a".into()).await);
        p.touch(&"tn_a".into()).await;
        assert!(p.online(&"tn_a".into()).await);
        assert!(!p.online(&"tn_b".into()).await, "per tenant");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!p.online(&"tn_a".into()).await, "the window passed");
    }
}
