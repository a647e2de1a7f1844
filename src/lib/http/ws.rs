//! The widget socket: `GET /v1/ws?token=WS_TOKEN`.
//!
//! The token (signed, short-lived) names tenant, visitor and conversation; the
//! `Origin` must be exactly one of the tenant's allowed origins. Buffers are small
//! (see [`READ_BUFFER_BYTES`]) so idle sockets cost little; messages over the limit
//! close with 1009.
//! Outgoing frames wait in the hub's bounded per-socket queue: a reader that stops
//! reading is dropped instead of slowing anyone else.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, rejection::WebSocketUpgradeRejection},
    },
    http::HeaderMap,
    response::Response,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::chat::{Known, MessagesPerDay, Sender, Visitor};
use crate::domain::{ConversationId, now_ms};
use crate::error::{Error, ErrorCode};
use crate::http::{
    AppState,
    client_ip::ClientIp,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{Query, check_origin, origin},
};
use crate::limits::{Limit, retry_after_secs};
use crate::quota::Exceeded;
use crate::realtime::{
    ClientFrame, Delivery, HubEvent, ServerFrame, SocketSlot, Subscription, WsClaims,
};
use crate::telegram::typing::TYPING_EVERY;
use crate::tenancy;

/// The socket's read buffer, allocated (and zero-filled) for every socket, idle or
/// not. Client frames are small JSON; a larger one (up to `max_message_bytes`) is read
/// in steps of this size while the buffer grows.
const READ_BUFFER_BYTES: usize = 512;

/// Close codes used by the server.
pub mod close_code {
    /// Normal closure (idle timeout).
    pub const NORMAL: u16 = 1000;
    /// Server going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Policy violation (binary frames; the oldest socket of a visitor who opened
    /// more than `ws.max_sockets_per_visitor`; every socket of a visitor whose data
    /// was erased).
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Try again later: the socket fell behind and was dropped.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Socket parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct WsParams {
    /// The `ws_token` from a session or conversation response.
    pub token: String,
}

/// Open the widget socket.
///
/// A client address may hold `ws.max_sockets_per_ip` sockets (429 `too_many_sockets`
/// beyond); a visitor `ws.max_sockets_per_visitor` — one more closes the visitor's
/// oldest socket with 1008. An erased visitor's token is refused (401), and their open
/// sockets are closed with 1008 on every node.
#[utoipa::path(get, path = "/v1/ws", tag = "widget", params(WsParams),
    responses((status = 101, description = "Switching protocols"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, description = "Too many sockets from this address (`too_many_sockets`)", body = ErrorBody)))]
pub async fn ws_upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(params): Query<WsParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let claims = state.chat.signer().verify(&params.token, now_ms())?;
    tracing::Span::current().record("tenant", claims.t.as_str());
    // Before anything costs a database read; given back if the upgrade never happens.
    let slot = state.sockets.reserve(ip)?;
    // The origins of the visitor's environment: a staging visitor's socket opens only
    // from staging origins.
    let tenant = tenancy::tenant_in(&state.db, &claims.t, claims.e)
        .await
        .map_err(|_| Error::unauthorized("invalid or expired ws token"))?;
    let origin = origin(&headers)
        .ok_or_else(|| Error::new(ErrorCode::OriginNotAllowed, "an Origin header is required"))?;
    check_origin(&tenant, origin)?;
    let visitor = Visitor {
        id: claims.v.clone(),
        tenant_id: claims.t.clone(),
        environment: claims.e,
    };
    // A ws token issued before its visitor was erased opens nothing.
    state.chat.check_socket_visitor(&visitor).await?;
    let opened = ConversationId::from(claims.c.as_str());
    let mut last_seq = 0;
    if !claims.c.is_empty() {
        last_seq = state
            .chat
            .conversation(&visitor.tenant_id, Some(&visitor.id), &opened)
            .await?
            .last_seq;
    }
    let upgrade =
        upgrade.map_err(|e| ApiError(Error::new(ErrorCode::ValidationFailed, e.to_string())))?;
    let ws = &state.settings.ws;
    let max = ws.max_message_bytes;
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        // The session is boxed before the upgrade: the callback then captures one
        // pointer, not the session's fields, which would otherwise keep their room in
        // the socket's task next to the running session for as long as it is open.
        .on_upgrade({
            let session = Box::new(SocketSession::new(
                state.socket.clone(),
                visitor,
                claims,
                last_seq,
                slot,
            ));
            move |socket| {
                let panics = session.ctx.panics.clone();
                panics.watch("widget socket", session.run(socket))
            }
        }))
}

/// What an open socket uses of the server: built once with the [`AppState`] and
/// shared, so each socket holds one pointer instead of its own copy of the state.
pub struct SocketContext {
    /// Chat use cases (with the hub).
    pub chat: crate::chat::Chat,
    /// The database.
    pub db: crate::db::Db,
    /// Telegram bots per tenant (typing actions).
    pub bots: Arc<crate::telegram::Bots>,
    /// Rate limits (visitor messages).
    pub limiter: Arc<crate::limits::Limiter>,
    /// Whether agents are online, per tenant.
    pub presence: Arc<crate::presence::Presence>,
    /// Plan quotas (their clock dates a `limit` frame's retry).
    pub quotas: Arc<crate::quota::Quotas>,
    /// Visitors' typing on its way to Telegram.
    pub typing: Arc<crate::telegram::typing::Typing>,
    /// Effective settings.
    pub settings: Arc<crate::config::Settings>,
    /// Cancelled when the server shuts down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Counters (open sockets).
    pub metrics: Arc<crate::http::Metrics>,
    /// Panics caught in sockets and the tasks they spawn.
    pub panics: crate::tasks::Panics,
}

/// Per-socket flood control: a token bucket of client frames.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    const BURST: f64 = 20.0;
    const PER_SEC: f64 = 5.0;

    fn new() -> Self {
        Bucket {
            tokens: Self::BURST,
            last: Instant::now(),
        }
    }

    /// `Ok` if a frame may pass; `Err(seconds)` to wait otherwise.
    fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * Self::PER_SEC)
            .min(Self::BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / Self::PER_SEC).ceil().max(1.0) as u64)
        }
    }
}

struct SocketSession {
    ctx: Arc<SocketContext>,
    visitor: Visitor,
    conversation_id: Option<ConversationId>,
    last_seq: i64,
    sub: Option<Subscription>,
    bucket: Bucket,
    /// The agents' presence last told to this client.
    agents_online: Option<bool>,
    /// When this socket's visitor typing was last passed on (a cheap first filter;
    /// the conversation's throttle and the Telegram budgets follow).
    typing_at: Option<Instant>,
    /// This socket's place in the per-visitor and per-address caps.
    slot: SocketSlot,
    /// The plan's daily message limit as this socket's last send read it: the next send
    /// takes its quota against it while the plan is read again (see
    /// [`Chat::take_message_ahead`](crate::chat::Chat::take_message_ahead)).
    messages_per_day: Option<MessagesPerDay>,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

async fn next_delivery(sub: &mut Option<Subscription>) -> Option<Delivery> {
    match sub {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl SocketSession {
    fn new(
        ctx: Arc<SocketContext>,
        visitor: Visitor,
        claims: WsClaims,
        last_seq: i64,
        slot: SocketSlot,
    ) -> Self {
        let conversation_id = (!claims.c.is_empty()).then(|| ConversationId::from(claims.c));
        SocketSession {
            ctx,
            visitor,
            conversation_id,
            last_seq,
            sub: None,
            bucket: Bucket::new(),
            agents_online: None,
            typing_at: None,
            slot,
            messages_per_day: None,
        }
    }

    fn subscribe(&mut self) {
        if let Some(c) = &self.conversation_id {
            self.sub = Some(
                self.ctx
                    .chat
                    .hub()
                    .subscribe(c, self.ctx.settings.ws.send_queue),
            );
        }
    }

    /// Send a `presence` frame when the agents' presence changed since the last one.
    async fn refresh_presence(&mut self, socket: &mut WebSocket) -> Result<(), ()> {
        let online = self.ctx.presence.online(&self.visitor.tenant_id).await;
        if self.agents_online == Some(online) {
            return Ok(());
        }
        self.agents_online = Some(online);
        send(
            socket,
            ServerFrame::Presence {
                agents_online: online,
            }
            .to_json(),
            Duration::from_secs(10),
        )
        .await
    }

    /// Forward a hub event. Message events carry their seq: one already sent is
    /// skipped, and a gap is filled from the database first.
    async fn forward(&mut self, socket: &mut WebSocket, event: HubEvent) -> Result<(), ()> {
        let Some(seq) = event.seq else {
            return send(socket, event.frame, Duration::from_secs(10)).await;
        };
        if seq <= self.last_seq {
            return Ok(());
        }
        if seq > self.last_seq + 1 {
            // Boxed: a rare path, kept out of every idle socket's resident future.
            Box::pin(self.backfill(socket)).await?;
            if seq <= self.last_seq {
                return Ok(());
            }
        }
        send(socket, event.frame, Duration::from_secs(10)).await?;
        self.last_seq = seq;
        Ok(())
    }

    /// Send every stored message after `last_seq` (after a gap or a Redis outage).
    async fn backfill(&mut self, socket: &mut WebSocket) -> Result<(), ()> {
        let Some(conv) = self.conversation_id.clone() else {
            return Ok(());
        };
        loop {
            let page = self
                .ctx
                .chat
                .history(
                    &self.visitor.tenant_id,
                    Some(&self.visitor.id),
                    &conv,
                    self.last_seq,
                    500,
                )
                .await
                .map_err(|_| ())?;
            let n = page.messages.len();
            for message in page.messages {
                let seq = message.seq;
                send(
                    socket,
                    ServerFrame::Message { message }.to_json(),
                    Duration::from_secs(10),
                )
                .await?;
                self.last_seq = seq;
            }
            if n < 500 {
                return Ok(());
            }
        }
    }

    /// The socket loop. Not an `async fn`: the block captures `self` and `socket` and
    /// uses them in place (an `async fn` moves its arguments into locals, and the
    /// state machine then keeps room for both copies).
    #[allow(clippy::manual_async_fn)]
    fn run(
        mut self: Box<Self>,
        mut socket: WebSocket,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let (ping_every, idle) = {
                let ws = &self.ctx.settings.ws;
                (
                    Duration::from_secs(ws.ping_interval_secs.max(1)),
                    Duration::from_secs(ws.idle_timeout_secs),
                )
            };
            // Cancelled on shutdown, or when this visitor opens a socket too many and
            // this one is the oldest.
            let close = self.ctx.shutdown.child_token();
            self.slot.join_visitor(&self.visitor.id, close.clone());
            self.subscribe();
            // Read the position after subscribing, so nothing falls in between.
            // The futures of rarely taken paths (database reads, presence, client frames)
            // are boxed: an idle socket's task keeps only the select loop resident, not
            // the largest future any branch could hold.
            if let Some(conv) = self.conversation_id.clone()
                && let Ok(c) = Box::pin(self.ctx.chat.conversation(
                    &self.visitor.tenant_id,
                    Some(&self.visitor.id),
                    &conv,
                ))
                .await
            {
                self.last_seq = c.last_seq;
            }
            self.ctx
                .metrics
                .sockets_open
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let hello = ServerFrame::Hello {
                conversation_id: self.conversation_id.clone().map(String::from),
                last_seq: self.last_seq,
            }
            .to_json();
            let send_timeout = Duration::from_secs(10);
            let mut ping = tokio::time::interval(ping_every);
            ping.tick().await;
            let mut last_heard = Instant::now();

            let mut outcome = match Box::pin(send(&mut socket, hello, send_timeout)).await {
                Ok(()) => None,
                Err(()) => Some(None),
            };
            if outcome.is_none() && Box::pin(self.refresh_presence(&mut socket)).await.is_err() {
                outcome = Some(None);
            }
            while outcome.is_none() {
                tokio::select! {
                    _ = close.cancelled() => outcome = Some(Some(if self.ctx.shutdown.is_cancelled() {
                        (close_code::GOING_AWAY, "server shutting down")
                    } else if self.slot.closed_for_erasure() {
                        (close_code::POLICY, "the visitor's data was erased")
                    } else {
                        (close_code::POLICY, "too many sockets for this visitor: closed the oldest")
                    })),
                    delivery = next_delivery(&mut self.sub) => match delivery {
                        Some(Delivery::Event(event)) => {
                            // Boxed too: the send path would add ~250 bytes to every
                            // idle socket; one allocation per delivery costs less.
                            if Box::pin(self.forward(&mut socket, event)).await.is_err() {
                                outcome = Some(None);
                            }
                        }
                        Some(Delivery::Resync) => {
                            if Box::pin(self.backfill(&mut socket)).await.is_err() {
                                outcome = Some(None);
                            }
                        }
                        None => {
                            let lagged = self.sub.as_ref().is_some_and(Subscription::lagged);
                            outcome = Some(Some(if lagged {
                                (close_code::TRY_AGAIN_LATER, "too slow: reconnect and backfill")
                            } else {
                                (close_code::GOING_AWAY, "subscription ended")
                            }));
                        }
                    },
                    msg = socket.recv() => {
                        last_heard = Instant::now();
                        outcome = match msg {
                            None | Some(Ok(Message::Close(_))) => Some(None),
                            Some(Err(e)) => Some(too_big(e).then_some((close_code::TOO_BIG, "message too big"))),
                            Some(Ok(Message::Text(text))) => match Box::pin(self.on_text(&mut socket, text.as_str())).await {
                                Flow::Continue => None,
                                Flow::Close(code, why) => Some(Some((code, why))),
                            },
                            Some(Ok(Message::Binary(_))) => Some(Some((close_code::POLICY, "binary frames are not supported"))),
                            Some(Ok(_)) => None,
                        };
                    }
                    _ = ping.tick() => {
                        if Box::pin(self.refresh_presence(&mut socket)).await.is_err() {
                            outcome = Some(None);
                        } else if last_heard.elapsed() >= idle {
                            outcome = Some(Some((close_code::NORMAL, "idle timeout")));
                        } else if Box::pin(tokio::time::timeout(send_timeout, socket.send(Message::Ping(Default::default())))).await.map_or(true, |r| r.is_err()) {
                            outcome = Some(None);
                        }
                    }
                }
            }
            if let Some(Some((code, reason))) = outcome {
                let frame = Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }));
                let _ = Box::pin(tokio::time::timeout(
                    Duration::from_secs(2),
                    socket.send(frame),
                ))
                .await;
            }
            self.ctx
                .metrics
                .sockets_open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The visitor is typing: passed on at most once per [`TYPING_EVERY`] from this
    /// socket, then to the conversation's other sockets and its Telegram topic within
    /// the conversation's throttle and the Telegram budgets
    /// ([`Typing`](crate::telegram::typing::Typing)).
    fn on_typing(&mut self) {
        let Some(conv) = self.conversation_id.clone() else {
            return;
        };
        let now = Instant::now();
        if self
            .typing_at
            .is_some_and(|t| now.duration_since(t) < TYPING_EVERY)
        {
            return;
        }
        self.typing_at = Some(now);
        let ctx = self.ctx.clone();
        let visitor = self.visitor.clone();
        let panics = ctx.panics.clone();
        panics.spawn("typing action", async move {
            ctx.typing
                .visitor_typing(&ctx.chat, &ctx.db, &ctx.bots, &visitor, &conv)
                .await;
        });
    }

    async fn on_text(&mut self, socket: &mut WebSocket, text: &str) -> Flow {
        metrics::counter!("chatorical_ws_frames_total", "direction" => "in").increment(1);
        let frame = match ClientFrame::decode(text) {
            Ok(f) => f,
            Err(invalid) => return reply(socket, invalid.to_frame()).await,
        };
        if let Err(retry_after) = self.bucket.take() {
            return reply(
                socket,
                ServerFrame::Limit {
                    code: "rate_limited".into(),
                    retry_after,
                    client_msg_id: None,
                    details: None,
                },
            )
            .await;
        }
        match frame {
            ClientFrame::Ping => reply(socket, ServerFrame::Pong).await,
            ClientFrame::Typing => {
                self.on_typing();
                Flow::Continue
            }
            // Widgets up to this release sent read receipts; still accepted, unused.
            ClientFrame::Read { .. } => Flow::Continue,
            ClientFrame::Send {
                client_msg_id,
                text,
            } => {
                // The visitor's message budget is shared with HTTP sends (and nodes).
                // The plan's daily limit (for the quota) is read meanwhile, and from the
                // second send on the day's quota is taken meanwhile too, against the
                // limit the last send read (kept only if the plan still has it): with
                // Redis the round trips overlap instead of adding up.
                let chat = self.ctx.chat.clone();
                let environment = self.visitor.environment;
                let limit = Limit::MessagesPerVisitor;
                let counts = environment.counts_against_quotas();
                let expected = self.messages_per_day.filter(|_| counts);
                let tenant_id = &self.visitor.tenant_id;
                let (allowed, messages_per_day, ahead) = tokio::join!(
                    self.ctx.limiter.check(limit, &self.visitor.id),
                    async {
                        if counts {
                            chat.messages_per_day(tenant_id).await.map(Some)
                        } else {
                            Ok(None)
                        }
                    },
                    async {
                        match expected {
                            Some(e) => Some(chat.take_message_ahead(tenant_id, e).await),
                            None => None,
                        }
                    }
                );
                if let Ok(Some(m)) = &messages_per_day {
                    self.messages_per_day = Some(*m);
                }
                // Refused here, a quota taken ahead is given back (dropped).
                if let Err(wait) = allowed {
                    let frame = ServerFrame::Limit {
                        code: "rate_limited".into(),
                        retry_after: retry_after_secs(wait),
                        client_msg_id: Some(client_msg_id),
                        details: None,
                    };
                    return reply(socket, frame).await;
                }
                let messages_per_day = match messages_per_day {
                    Ok(m) => m,
                    Err(e) => {
                        let now = self.ctx.quotas.clock().now();
                        return reply(socket, error_frame(&e, Some(client_msg_id), now)).await;
                    }
                };
                if self.conversation_id.is_none() {
                    match chat.open_conversation(&self.visitor).await {
                        Ok((conv, _)) => {
                            self.conversation_id = Some(conv.conversation.id.into());
                            self.subscribe();
                        }
                        Err(e) => {
                            let now = self.ctx.quotas.clock().now();
                            return reply(socket, error_frame(&e, Some(client_msg_id), now)).await;
                        }
                    }
                }
                let Some(conv) = self.conversation_id.clone() else {
                    return Flow::Continue;
                };
                let result = chat
                    .post_message_known(
                        &self.visitor.tenant_id,
                        &conv,
                        Known {
                            environment: Some(environment),
                            messages_per_day,
                            ahead,
                        },
                        Sender::Visitor(&self.visitor.id),
                        &text,
                        Some(&client_msg_id),
                    )
                    .await;
                match result {
                    Ok((message, _)) => {
                        reply(
                            socket,
                            ServerFrame::Ack {
                                client_msg_id,
                                message,
                            },
                        )
                        .await
                    }
                    Err(e) => {
                        let now = self.ctx.quotas.clock().now();
                        reply(socket, error_frame(&e, Some(client_msg_id), now)).await
                    }
                }
            }
        }
    }
}

/// The frame for a failed `send` (`client_msg_id`): a `limit` frame for a plan quota
/// (`retry_after` counted from `now` on the quotas' clock), else an `error` frame.
fn error_frame(e: &Error, client_msg_id: Option<String>, now: i64) -> ServerFrame {
    if let Some(exceeded) = Exceeded::from_error(e) {
        return ServerFrame::Limit {
            code: e.code.as_str().into(),
            retry_after: exceeded.retry_after_secs(now),
            client_msg_id,
            details: e.details.clone(),
        };
    }
    if e.is_internal() {
        tracing::error!(code = %e.code, cause = ?e.source.as_ref().map(ToString::to_string), "socket frame failed");
    }
    ServerFrame::Error {
        code: e.code.as_str().into(),
        message: e.message.clone(),
    }
}

async fn reply(socket: &mut WebSocket, frame: ServerFrame) -> Flow {
    match send(socket, frame.to_json(), Duration::from_secs(10)).await {
        Ok(()) => Flow::Continue,
        Err(()) => Flow::Close(close_code::GOING_AWAY, "send failed"),
    }
}

async fn send(socket: &mut WebSocket, frame: Arc<str>, timeout: Duration) -> Result<(), ()> {
    metrics::counter!("chatorical_ws_frames_total", "direction" => "out").increment(1);
    match tokio::time::timeout(timeout, socket.send(Message::Text((&*frame).into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Whether a read error is the size limit (answered with close code 1009).
fn too_big(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast::<tungstenite::Error>().map(|b| *b),
        Ok(tungstenite::Error::Capacity(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a two-argument async function returns, without calling it.
    fn future_size<A, B, Fut, F: FnOnce(A, B) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every idle socket keeps its `run` future resident; the rare paths (sends,
    /// backfill, presence, opening a conversation) are boxed so they do not inflate it.
    #[test]
    fn idle_socket_future_is_small() {
        let size = future_size(&SocketSession::run);
        assert!(size <= 1024, "SocketSession::run future is {size} bytes");
    }
}
