//! What the nodes of one deployment share through Redis: a command connection that
//! reconnects by itself, and the client to open pub/sub connections from.
//!
//! Redis is only ever transport and short-lived state (limits, counters, presence);
//! the database stays the source of truth.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisSettings;
use crate::error::{Error, ErrorCode, Result};

/// A deployment's Redis.
#[derive(Clone)]
pub struct Cluster {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(prefix={})", self.prefix)
    }
}

impl Cluster {
    /// Connect (lazily: a Redis that is down at start is retried on first use).
    pub fn connect(settings: &RedisSettings) -> Result<Option<Self>> {
        let Some(url) = &settings.url else {
            return Ok(None);
        };
        let client = redis::Client::open(url.expose()).map_err(|e| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("invalid setting `redis.url`: {:?}", e.kind()),
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("redis: {:?}", e.kind())))?;
        Ok(Some(Cluster {
            client,
            conn,
            prefix: settings.key_prefix.clone(),
        }))
    }

    /// A command connection (cheap to clone; reconnects by itself).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, to open dedicated pub/sub connections.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A key or channel name under the deployment's prefix: `prefix:a:b`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// Whether Redis answers PING.
    pub async fn ping(&self) -> bool {
        let mut c = self.conn();
        matches!(
            tokio::time::timeout(
                Duration::from_secs(2),
                redis::cmd("PING").query_async::<String>(&mut c)
            )
            .await,
            Ok(Ok(_))
        )
    }
}

/// Redis calls that failed, for one user of Redis (rate limits, quotas): counted, and
/// a warning due at most once every ten seconds, so an outage is visible without
/// flooding the log.
#[derive(Debug, Default)]
pub(crate) struct RedisErrors {
    count: std::sync::atomic::AtomicU64,
    last_warning: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RedisErrors {
    const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// Count one failure; `Some(failures so far)` when a warning is due now.
    pub(crate) fn record(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let errors = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| at.elapsed() >= Self::WARN_EVERY) {
            *last = Some(std::time::Instant::now());
            Some(errors)
        } else {
            None
        }
    }

    /// Failures so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}
