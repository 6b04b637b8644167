//! [`LiveState`] in Redis, shared by every manager and agent of a cluster.
//!
//! Every key starts with `backend.ai:<namespace>:`; below that:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `agents:last-seen` | hash | agent id → last-seen time (RFC 3339, nanoseconds) |
//! | `stat:<key>` | string | `{"until_us": <expiry, µs since the epoch>, "value": <the stat>}`, with a Redis TTL |
//! | `ratelimit:<access key>` | sorted set | one member per hit, scored by its time in µs since the epoch |
//!
//! The trait passes `now` explicitly, so expiry is decided against the stored deadline, exactly as
//! [`LocalLiveState`](super::LocalLiveState) decides it; the Redis TTL (the stat's `ttl`, the rate-limit `window`,
//! counted from the real clock) only makes Redis forget keys nobody reads any more. A rate-limit hit is one Lua
//! script (trim the window, add the hit, count, refresh the TTL), so hits from any number of connections or
//! processes are each counted once.

use crate::error::{Error, Result};
use crate::ids::AgentId;
use crate::live::LiveState;
use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use deadpool_redis::{Pool, Runtime};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// Trims the window, counts this hit, and answers the number of hits left in the window.
/// KEYS[1] the sorted set; ARGV: cutoff score (inclusive), this hit's score, a unique member, TTL in ms.
const HIT_SCRIPT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return n
";

/// Live state in Redis (see the module docs for the key layout).
#[derive(Clone)]
pub struct RedisLiveState {
    pool: Pool,
    prefix: String,
    hit_script: redis::Script,
}

#[derive(Serialize, Deserialize)]
struct StoredStat {
    until_us: i64,
    value: serde_json::Value,
}

impl RedisLiveState {
    /// Connects to the Redis server at `url` (`redis://host:port/db`) and checks that it answers. Keys are kept
    /// under `backend.ai:<namespace>:`, so several clusters (or tests) can share one server.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let pool = connect_pool(url).await?;
        Ok(Self::from_pool(pool, namespace))
    }

    /// Uses an existing connection pool (for example one shared with
    /// [`RedisEventBus`](crate::events::redis::RedisEventBus)).
    pub fn from_pool(pool: Pool, namespace: &str) -> Self {
        Self { pool, prefix: key_prefix(namespace), hit_script: redis::Script::new(HIT_SCRIPT) }
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection> {
        self.pool.get().await.map_err(|e| unavailable("getting a Redis connection", e))
    }

    fn last_seen_key(&self) -> String {
        format!("{}agents:last-seen", self.prefix)
    }
}

/// `backend.ai:<namespace>:`, the start of every Redis key and channel of a namespace.
pub(crate) fn key_prefix(namespace: &str) -> String {
    format!("backend.ai:{namespace}:")
}

/// A pool of connections to `url`, checked with a `PING` so that an unreachable server fails here.
pub(crate) async fn connect_pool(url: &str) -> Result<Pool> {
    let pool = deadpool_redis::Config::from_url(url)
        .create_pool(Some(Runtime::Tokio1))
        .map_err(|e| Error::InvalidParams { msg: format!("Redis URL {url:?}: {e}") })?;
    let mut conn = pool.get().await.map_err(|e| unavailable(&format!("connecting to Redis at {url}"), e))?;
    let _: String =
        redis::cmd("PING").query_async(&mut conn).await.map_err(|e| unavailable(&format!("Redis at {url}"), e))?;
    Ok(pool)
}

/// A Redis failure as the SDK's error: the store is unavailable.
pub(crate) fn unavailable(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable { msg: format!("{context}: {e}") }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A duration in whole milliseconds, at least 1 (Redis refuses a TTL of 0).
fn ttl_ms(d: Duration) -> i64 {
    d.num_milliseconds().max(1)
}

#[async_trait]
impl LiveState for RedisLiveState {
    async fn touch_agent(&self, agent: &AgentId, at: DateTime<Utc>) -> Result<()> {
        let mut conn = self.conn().await?;
        let at = at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let _: () = conn
            .hset(self.last_seen_key(), agent.to_string(), at)
            .await
            .map_err(|e| unavailable("recording an agent's last-seen time", e))?;
        Ok(())
    }

    async fn agent_last_seen(&self, agent: &AgentId) -> Result<Option<DateTime<Utc>>> {
        let mut conn = self.conn().await?;
        let at: Option<String> = conn
            .hget(self.last_seen_key(), agent.to_string())
            .await
            .map_err(|e| unavailable("reading an agent's last-seen time", e))?;
        at.map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| Error::internal(format!("bad last-seen time {s:?} in Redis: {e}")))
        })
        .transpose()
    }

    async fn set_stat(&self, key: &str, value: serde_json::Value, ttl: Duration, now: DateTime<Utc>) -> Result<()> {
        let stored = StoredStat { until_us: micros(now + ttl), value };
        let text = serde_json::to_string(&stored).map_err(Error::internal)?;
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(format!("{}stat:{key}", self.prefix))
            .arg(text)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable("storing a stat", e))?;
        Ok(())
    }

    async fn stat(&self, key: &str, now: DateTime<Utc>) -> Result<Option<serde_json::Value>> {
        let mut conn = self.conn().await?;
        let text: Option<String> =
            conn.get(format!("{}stat:{key}", self.prefix)).await.map_err(|e| unavailable("reading a stat", e))?;
        let Some(text) = text else { return Ok(None) };
        let stored: StoredStat =
            serde_json::from_str(&text).map_err(|e| Error::internal(format!("bad stat {key:?} in Redis: {e}")))?;
        Ok((stored.until_us > micros(now)).then_some(stored.value))
    }

    async fn hit_rate_limit(&self, access_key: &str, now: DateTime<Utc>, window: Duration) -> Result<u64> {
        let now_us = micros(now);
        // Two hits in the same microsecond are two hits: the member is made unique.
        let member = format!("{now_us}-{}", uuid::Uuid::new_v4().simple());
        let mut conn = self.conn().await?;
        self.hit_script
            .key(format!("{}ratelimit:{access_key}", self.prefix))
            .arg(micros(now - window))
            .arg(now_us)
            .arg(member)
            .arg(ttl_ms(window))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("counting a rate-limit hit", e))
    }
}
