//! [`EventBus`] over Redis: broadcast events by pub/sub, anycast events by a stream with consumer groups.
//!
//! # Layout
//!
//! Names start with `backend.ai:<namespace>:` (the same prefix as
//! [`RedisLiveState`](crate::live::redis::RedisLiveState)'s keys):
//!
//! | name | Redis type | carries |
//! | --- | --- | --- |
//! | `events:broadcast` | pub/sub channel | every broadcast [`Event`], one message each |
//! | `events:anycast` | stream, trimmed with `MAXLEN ~` | every anycast [`Event`], one entry each, in field `event` |
//!
//! The stream keeps about [`DEFAULT_MAX_STREAM_LEN`] entries (see [`RedisEventBus::with_max_stream_len`]).
//!
//! Each event is the serde JSON of [`Event`]. [`EventBus::consume`] creates the consumer group (named as given)
//! on the stream with `XGROUP CREATE ... $ MKSTREAM`, so the group receives what is published after it first
//! exists; each consumer is a `XREADGROUP GROUP <group> <random consumer name> COUNT 1 BLOCK` loop that
//! acknowledges (`XACK`) each entry as it reads it and then yields it. A consumer reads only while its stream is
//! polled, so an idle consumer leaves events to the busy ones' peers.
//!
//! # Outages
//!
//! A subscription ([`EventBus::subscribe`]) or consumer ([`EventBus::consume`]) stream never ends and never
//! panics because Redis went away: it logs the loss, reconnects with backoff (50 ms doubling to 2 s), and carries
//! on. A closed connection is noticed at once; a silently dead one (a network partition) within about 20 s (a
//! subscription pings every 15 s, a consumer's blocking read times out after 10 s). While Redis is unreachable:
//! - [`EventBus::publish`] returns [`Error::Unavailable`] to the caller; nothing is queued for later.
//! - Broadcast events are lost for every subscriber that is disconnected when they are published (pub/sub keeps
//!   nothing); a subscriber receives what is published after it has resubscribed.
//! - Anycast events already in the stream stay there if Redis kept them (a Redis that was only unreachable, or
//!   one that persists its data): the group resumes after the last entry it read. A Redis restarted without
//!   persistence (our test server runs with `--save '' --appendonly no`) has lost the stream and its groups: on
//!   reconnecting, a consumer recreates its group at the start of the new stream (`0`), so it receives every
//!   anycast event published since the restart, including those published before it reconnected.
//! - An entry read (and acknowledged) by a consumer whose stream is dropped before it yields the entry is lost:
//!   delivery is at most once.

use crate::error::{Error, Result};
use crate::events::{Event, EventBus, EventStream};
use crate::live::redis::{connect_pool, key_prefix, unavailable};
use async_trait::async_trait;
use deadpool_redis::Pool;
use futures::StreamExt;
use redis::aio::{MultiplexedConnection, PubSub};
use redis::streams::{StreamMaxlen, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// The default cap on the anycast stream's length (approximate, as `MAXLEN ~` trims).
pub const DEFAULT_MAX_STREAM_LEN: usize = 10_000;

/// How long one `XREADGROUP` blocks before it asks again.
const BLOCK: Duration = Duration::from_secs(5);
/// How often an idle subscription checks that its connection is alive.
const PING_EVERY: Duration = Duration::from_secs(15);
/// How long to wait for a connection (or a ping's answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Broadcast events buffered for a slow local subscriber before it misses some.
const FANOUT_CAPACITY: usize = 65_536;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The event bus in Redis (see the module docs for the layout and outage behaviour).
#[derive(Clone)]
pub struct RedisEventBus {
    client: Client,
    pool: Pool,
    channel: String,
    stream: String,
    max_stream_len: usize,
    /// The one pub/sub subscription of this bus (and its clones), fanned out to local subscribers.
    fanout: Arc<tokio::sync::Mutex<Weak<broadcast::Sender<Event>>>>,
}

impl RedisEventBus {
    /// Connects to the Redis server at `url` (`redis://host:port/db`) and checks that it answers. Names are kept
    /// under `backend.ai:<namespace>:`, so several clusters (or tests) can share one server.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let pool = connect_pool(url).await?;
        Self::from_pool(url, pool, namespace)
    }

    /// Uses an existing connection pool to `url` for publishing (for example one shared with
    /// [`RedisLiveState`](crate::live::redis::RedisLiveState)); subscribers and consumers open their own
    /// connections to `url`.
    pub fn from_pool(url: &str, pool: Pool, namespace: &str) -> Result<Self> {
        let client = Client::open(url).map_err(|e| Error::InvalidParams { msg: format!("Redis URL {url:?}: {e}") })?;
        let prefix = key_prefix(namespace);
        Ok(Self {
            client,
            pool,
            channel: format!("{prefix}events:broadcast"),
            stream: format!("{prefix}events:anycast"),
            max_stream_len: DEFAULT_MAX_STREAM_LEN,
            fanout: Arc::default(),
        })
    }

    /// Caps the anycast stream at about `len` entries (older ones are trimmed, read or not).
    pub fn with_max_stream_len(mut self, len: usize) -> Self {
        self.max_stream_len = len.max(1);
        self
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    async fn publish(&self, event: Event) -> Result<()> {
        let json = serde_json::to_string(&event).map_err(Error::internal)?;
        let mut conn = self.pool.get().await.map_err(|e| unavailable("publishing an event", e))?;
        if event.is_anycast() {
            let _: String = conn
                .xadd_maxlen(&self.stream, StreamMaxlen::Approx(self.max_stream_len), "*", &[("event", json)])
                .await
                .map_err(|e| unavailable("publishing an anycast event", e))?;
        } else {
            let _: i64 =
                conn.publish(&self.channel, json).await.map_err(|e| unavailable("publishing a broadcast event", e))?;
        }
        Ok(())
    }

    /// One pipeline: the events go in one round trip, in order.
    async fn publish_all(&self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in &events {
            let json = serde_json::to_string(event).map_err(Error::internal)?;
            if event.is_anycast() {
                pipe.xadd_maxlen(&self.stream, StreamMaxlen::Approx(self.max_stream_len), "*", &[("event", json)])
                    .ignore();
            } else {
                pipe.publish(&self.channel, json).ignore();
            }
        }
        let mut conn = self.pool.get().await.map_err(|e| unavailable("publishing events", e))?;
        let () = pipe.query_async(&mut *conn).await.map_err(|e| unavailable("publishing events", e))?;
        Ok(())
    }

    /// Subscribers of one bus (and its clones) share one pub/sub connection: the first opens it, later ones join
    /// its local fan-out, and it closes when the last subscription is dropped. A subscriber that falls more than
    /// 65,536 events behind misses the oldest (logged), as with the in-process bus.
    async fn subscribe(&self) -> Result<EventStream> {
        let mut fanout = self.fanout.lock().await;
        let sender = match fanout.upgrade() {
            Some(sender) => sender,
            None => {
                let pubsub =
                    subscribed(&self.client, &self.channel).await.map_err(|e| unavailable("subscribing", e))?;
                let (tx, mut rx) = mpsc::unbounded_channel();
                tokio::spawn(forward_broadcasts(self.client.clone(), self.channel.clone(), pubsub, tx));
                let sender = Arc::new(broadcast::channel(FANOUT_CAPACITY).0);
                let weak = Arc::downgrade(&sender);
                // Ends (closing the connection) once every subscription's sender handle is gone.
                tokio::spawn(async move {
                    while let Some(ev) = rx.recv().await {
                        let Some(sender) = weak.upgrade() else { return };
                        let _ = sender.send(ev);
                    }
                });
                *fanout = Arc::downgrade(&sender);
                sender
            }
        };
        let rx = sender.subscribe();
        // Each subscription keeps the shared sender alive while it is held.
        Ok(Box::pin(futures::stream::unfold((rx, sender), |(mut rx, sender)| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, (rx, sender))),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a slow subscriber missed broadcast events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    async fn consume(&self, group: &str) -> Result<EventStream> {
        let mut conn = reader_connection(&self.client).await.map_err(|e| unavailable("joining a consumer group", e))?;
        create_group(&mut conn, &self.stream, group, "$")
            .await
            .map_err(|e| unavailable("creating a consumer group", e))?;
        let reader = GroupReader {
            client: self.client.clone(),
            stream: self.stream.clone(),
            group: group.to_owned(),
            consumer: format!("consumer-{}", uuid::Uuid::new_v4().simple()),
            conn: Some(conn),
            backoff: FIRST_BACKOFF,
        };
        Ok(Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            let ev = reader.next_event().await;
            Some((ev, reader))
        })))
    }
}

/// A pub/sub connection subscribed to `channel` (the server has confirmed the subscription).
async fn subscribed(client: &Client, channel: &str) -> std::result::Result<PubSub, String> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, RedisError>(pubsub)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Forwards broadcast events to `tx` until its receiver is dropped, resubscribing whenever the connection is lost.
async fn forward_broadcasts(client: Client, channel: String, pubsub: PubSub, tx: mpsc::UnboundedSender<Event>) {
    let mut pubsub = Some(pubsub);
    loop {
        if let Some(p) = pubsub.take() {
            let (mut sink, mut messages) = p.split();
            let mut probe = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
            loop {
                let msg = tokio::select! {
                    _ = tx.closed() => return,
                    msg = messages.next() => msg,
                    _ = probe.tick() => {
                        // A silently dropped connection (no reset, e.g. a network partition) shows up only here.
                        match tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await {
                            Ok(Ok(_)) => continue,
                            Ok(Err(e)) => tracing::warn!(error = %e, channel, "Redis pub/sub ping failed"),
                            Err(_) => tracing::warn!(channel, "Redis pub/sub ping unanswered"),
                        }
                        None
                    }
                };
                let Some(msg) = msg else { break };
                match serde_json::from_slice::<Event>(msg.get_payload_bytes()) {
                    Ok(ev) => {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, channel, "undecodable broadcast event skipped"),
                }
            }
            tracing::warn!(channel, "lost the Redis pub/sub connection; resubscribing");
        }
        let mut backoff = FIRST_BACKOFF;
        while pubsub.is_none() {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            match subscribed(&client, &channel).await {
                Ok(p) => {
                    tracing::info!(channel, "resubscribed to Redis pub/sub");
                    pubsub = Some(p);
                }
                Err(e) => {
                    tracing::debug!(error = %e, channel, "Redis still unreachable");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A connection for blocking reads: its response timeout outlasts [`BLOCK`].
async fn reader_connection(client: &Client) -> std::result::Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Creates consumer group `group` on `stream` starting after entry `start` (`$`: the end, `0`: the beginning),
/// creating the stream if needed; a group that exists is left as it is.
async fn create_group(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    start: &str,
) -> std::result::Result<(), RedisError> {
    match conn.xgroup_create_mkstream::<_, _, _, ()>(stream, group, start).await {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// One consumer of a group: reads one entry at a time, reconnecting (and recreating the group) as needed.
struct GroupReader {
    client: Client,
    stream: String,
    group: String,
    consumer: String,
    conn: Option<MultiplexedConnection>,
    backoff: Duration,
}

impl GroupReader {
    /// The next event for this consumer; waits (through outages) until there is one.
    async fn next_event(&mut self) -> Event {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                self.reconnect().await;
                continue;
            };
            let options = StreamReadOptions::default()
                .group(&self.group, &self.consumer)
                .count(1)
                .block(BLOCK.as_millis() as usize);
            let read: std::result::Result<Option<StreamReadReply>, _> =
                conn.xread_options(&[&self.stream], &[">"], &options).await;
            match read {
                Ok(reply) => {
                    let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                    let mut found = None;
                    for entry in entries {
                        let acked: std::result::Result<i64, _> =
                            conn.xack(&self.stream, &self.group, &[&entry.id]).await;
                        if let Err(e) = acked {
                            // The entry stays pending for this consumer; carry on rather than deliver it twice.
                            tracing::warn!(error = %e, id = entry.id, "could not acknowledge an anycast event");
                        }
                        match entry.get::<String>("event").map(|json| serde_json::from_str::<Event>(&json)) {
                            Some(Ok(ev)) => found = Some(ev),
                            Some(Err(e)) => tracing::warn!(error = %e, id = entry.id, "undecodable anycast event"),
                            None => tracing::warn!(id = entry.id, "anycast entry without an event field"),
                        }
                    }
                    self.backoff = FIRST_BACKOFF;
                    if let Some(ev) = found {
                        return ev;
                    }
                }
                Err(e) if e.code() == Some("NOGROUP") => {
                    // The stream or the group vanished (deleted, or Redis restarted without its data): whatever is
                    // in the stream now was published after the loss.
                    tracing::warn!(group = self.group, "consumer group vanished; recreating it");
                    if let Err(e) = create_group(conn, &self.stream, &self.group, "0").await {
                        tracing::warn!(error = %e, group = self.group, "could not recreate the consumer group");
                        self.conn = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, group = self.group, "lost the Redis stream connection; reconnecting");
                    self.conn = None;
                }
            }
        }
    }

    /// Waits out the backoff, then reconnects and makes sure the group exists (at the stream's start if it has to
    /// be recreated, see the module docs).
    async fn reconnect(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        let mut conn = match reader_connection(&self.client).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "Redis still unreachable");
                return;
            }
        };
        match create_group(&mut conn, &self.stream, &self.group, "0").await {
            Ok(()) => {
                tracing::info!(group = self.group, "reconnected to the Redis stream");
                self.conn = Some(conn);
            }
            Err(e) => tracing::debug!(error = %e, "could not ensure the consumer group"),
        }
    }
}
