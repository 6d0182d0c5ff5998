//! The broker face: one client connection relayed to its own connection to one real broker.
//!
//! Frames are forwarded as their original bytes. Each is only *viewed* (code, flag, opaque);
//! what happens to it is decided by `state::Relay` (in-flight tracking, deadlines, local
//! replies, draining, idle), and the two tasks here, one per direction, only move bytes and
//! carry out those decisions, so a peer that stops reading can never block the other
//! direction.

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod script;
mod state;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify, Semaphore};

use super::stats::ProxyStats;
use crate::codec::frame::FrameView;
use crate::net::frames::{write_frames, FrameReader, ReadLimits};
use crate::net::io::{BoxRead, BoxWrite};
use crate::sync::{lock, Local, Swap};

pub(crate) use state::Limits;
pub(crate) use state::{count_local, local_reply, LocalReason, RelaySettings};
use state::{long_poll_hold, BrokerStep, ClientStep, Relay};

/// Opens the connection to the broker (plain or TLS): the real one, or a test's.
pub(crate) type Connector = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<(BoxRead, BoxWrite), String>> + Send>>
        + Send
        + Sync,
>;

/// What one relayed connection needs from the proxy.
pub(crate) struct RelayEnv {
    pub broker: Arc<str>,
    pub connect: Connector,
    pub stats: Arc<ProxyStats>,
    /// Limits and request policy; a reload replaces them on open connections too.
    pub settings: Arc<Swap<RelaySettings>>,
    pub max_frame_size: usize,
    /// Frame deadline and memory budget for the client's frames.
    pub read_limits: ReadLimits,
    pub max_buffered_frames: usize,
    /// Who the client is (address, certificate subject), for the policy's rules.
    pub client: super::policy::Client,
    /// Becomes true when the proxy starts draining.
    pub shutdown: watch::Receiver<bool>,
    /// The access log, and the client, listener and broker its lines name.
    pub access: Arc<super::access::AccessLog>,
    pub peer: super::access::Peer,
}

/// `write_frames`, counting the bytes written in `counter`; false if the write failed.
pub(crate) async fn write_counted<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut VecDeque<Bytes>,
    counter: &AtomicU64,
) -> bool {
    match write_frames(w, out).await {
        Some(n) => {
            ProxyStats::add(counter, n as u64);
            true
        }
        None => false,
    }
}

/// The limits of a relayed connection from the proxy's config.
pub(crate) fn limits(config: &super::ProxyConfig) -> Limits {
    Limits {
        request_timeout: config.request_timeout(),
        drain_timeout: config.drain_timeout(),
        idle_timeout: config.idle_timeout(),
    }
}

/// What the two tasks of one relayed connection share (one allocation, nothing more until
/// it is used: an idle connection's cost is mostly its two tasks).
struct Conn {
    relay: Mutex<Relay>,
    /// Local replies, queued by task A for task B to write.
    replies: Mutex<VecDeque<Bytes>>,
    /// Free places in `replies` (`max_buffered_frames`): task A waits for one when it is full,
    /// so a client that sends refused requests without reading stalls itself.
    reply_room: Semaphore,
    /// The read half of a new broker connection, from task A to task B.
    upstream: Mutex<Option<BoxRead>>,
    /// Wakes task B: a reply queued or a broker connection handed over.
    wake: Notify,
    /// Set when either task ends; `ended` wakes the other.
    over: AtomicBool,
    ended: Notify,
}

impl Conn {
    fn end(&self) {
        self.over.store(true, Ordering::Release);
        self.ended.notify_waiters();
    }

    /// Resolves once `end` was called (at once if it already was).
    async fn ending(&self) {
        let ended = self.ended.notified();
        if self.over.load(Ordering::Acquire) {
            return;
        }
        ended.await;
    }

    /// Queues a local reply, waiting for room; false if the connection is over.
    async fn reply(&self, reply: Bytes) -> bool {
        let room = tokio::select! {
            biased;
            _ = self.ending() => return false,
            p = self.reply_room.acquire() => p,
        };
        match room {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        lock(&self.replies).push_back(reply);
        self.wake.notify_one();
        true
    }
}

/// Ends a connection's relay when its task ends, also when the task is dropped unfinished (the
/// runtime shut down after `drain_timeout_ms`): its requests in flight get their access-log
/// lines (`closed`) and the gauges come down.
struct Ending {
    conn: Arc<Conn>,
    stats: Arc<ProxyStats>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        lock(&self.conn.relay).close(Instant::now());
        ProxyStats::gauge(&self.stats.c.connections_active, -1);
        ProxyStats::gauge(&self.stats.c.connections_broker_active, -1);
    }
}

/// Serves one client connection accepted on a broker listener.
pub(crate) async fn serve(env: RelayEnv, client: (BoxRead, BoxWrite)) {
    let stats = env.stats.clone();
    ProxyStats::gauge(&stats.c.connections_active, 1);
    ProxyStats::gauge(&stats.c.connections_broker_active, 1);
    let (crd, cwr) = client;
    let env = Arc::new(env);
    let limits = env.settings.load().limits;
    let conn = Arc::new(Conn {
        relay: Mutex::new(
            Relay::new(env.broker.clone(), limits, stats.clone(), Instant::now())
                .with_settings(Local::new(env.settings.clone()), env.client.clone())
                .with_access(env.access.clone(), env.peer.clone()),
        ),
        replies: Mutex::new(VecDeque::new()),
        reply_room: Semaphore::new(env.max_buffered_frames.max(1)),
        upstream: Mutex::new(None),
        wake: Notify::new(),
        over: AtomicBool::new(false),
        ended: Notify::new(),
    });

    let _ending = Ending {
        conn: conn.clone(),
        stats,
    };
    let b = tokio::spawn(upstream_to_client(env.clone(), conn.clone(), cwr));
    client_to_upstream(&env, &conn, crd).await;
    conn.end();
    let _ = b.await;
}

/// Reads client frames and forwards them to the broker (task A).
async fn client_to_upstream(env: &RelayEnv, conn: &Conn, crd: BoxRead) {
    let stats = &env.stats;
    let relay = &conn.relay;
    let mut crd = FrameReader::guarded(crd, env.max_frame_size, env.read_limits.clone());
    let mut shutdown = env.shutdown.clone();
    let mut upstream: Option<BoxWrite> = None;
    // Frames ready to forward, each a zero-copy slice of the read buffer.
    let mut out: VecDeque<Bytes> = VecDeque::new();

    loop {
        let n = tokio::select! {
            biased;
            _ = conn.ending() => break,
            r = crd.read() => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        ProxyStats::add(&stats.c.bytes_client_to_proxy, n as u64);
        let now = Instant::now();
        let shutting_down = *shutdown.borrow_and_update();
        // Activity is a whole frame: bytes trickled into one that never completes do not
        // keep the connection from its idle timeout.
        let mut touched = false;

        loop {
            let frame = match crd.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    ProxyStats::add(&stats.c.request_decoding_error, 1);
                    flush(&mut upstream, &mut out, stats).await;
                    return;
                }
            };
            let Ok(view) = FrameView::parse(&frame) else {
                ProxyStats::add(&stats.c.request_decoding_error, 1);
                flush(&mut upstream, &mut out, stats).await;
                return;
            };
            let hold = long_poll_hold(&frame, &view);
            let mut step = {
                let mut r = lock(relay);
                if !touched {
                    r.touch(now);
                    touched = true;
                }
                r.on_client_frame(&frame, &view, hold, now, shutting_down)
            };
            if step == ClientStep::Connect {
                stats.pending(view.code, 1);
                let r = (env.connect)().await;
                stats.pending(view.code, -1);
                step = match r {
                    Ok((rd, wr)) => {
                        upstream = Some(wr);
                        *lock(&conn.upstream) = Some(rd);
                        conn.wake.notify_one();
                        lock(relay).connected(&view, hold, Instant::now())
                    }
                    Err(e) => lock(relay).unreachable(&view, e, Instant::now()),
                };
            }
            match step {
                ClientStep::Forward => out.push_back(frame),
                ClientStep::Reply(reply) => {
                    if !conn.reply(reply).await {
                        return;
                    }
                }
                ClientStep::Drop | ClientStep::Connect => {}
            }
        }
        if !flush(&mut upstream, &mut out, stats).await {
            // The broker went away; task B sees the close and ends the connection.
            upstream = None;
            lock(relay).upstream_lost();
        }
    }
    if let Some(mut w) = upstream {
        let _ = w.shutdown().await;
    }
}

/// Writes queued frames to the broker; false if the write failed.
async fn flush(
    upstream: &mut Option<BoxWrite>,
    out: &mut VecDeque<Bytes>,
    stats: &ProxyStats,
) -> bool {
    match upstream.as_mut() {
        Some(w) => write_counted(w, out, &stats.c.bytes_proxy_to_upstream).await,
        None => {
            out.clear();
            true
        }
    }
}

/// Relays broker frames and local replies to the client, and ticks the clock (task B).
async fn upstream_to_client(env: Arc<RelayEnv>, conn: Arc<Conn>, mut cwr: BoxWrite) {
    let stats = &env.stats;
    let mut shutdown = env.shutdown.clone();
    let mut upstream: Option<FrameReader<BoxRead>> = None;
    let mut out: VecDeque<Bytes> = VecDeque::new();
    let tick_every = Duration::from_millis(50)
        .max(env.settings.load().limits.request_timeout / 20)
        .min(Duration::from_millis(250));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    'main: loop {
        tokio::select! {
            biased;
            _ = conn.ending() => break,
            _ = conn.wake.notified() => {
                {
                    let mut replies = lock(&conn.replies);
                    conn.reply_room.add_permits(replies.len());
                    out.extend(replies.drain(..));
                }
                if let Some(rd) = lock(&conn.upstream).take() {
                    upstream = Some(FrameReader::new(rd, env.max_frame_size));
                }
            }
            r = async {
                match upstream.as_mut() {
                    Some(rd) => rd.read().await,
                    None => std::future::pending().await,
                }
            } => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        // The broker closed: end the client connection too, as a direct
                        // connection would, so the client fails its requests fast and reconnects.
                        lock(&conn.relay).upstream_lost();
                        break 'main;
                    }
                    Ok(n) => n,
                };
                ProxyStats::add(&stats.c.bytes_upstream_to_proxy, n as u64);
                let now = Instant::now();
                // Only a read that returned bytes gets here, so the reader is there.
                let Some(rd) = upstream.as_mut() else { continue };
                let mut relay = lock(&conn.relay);
                loop {
                    let frame = match rd.next_frame() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(_) => {
                            ProxyStats::add(&stats.c.response_decoding_error, 1);
                            break 'main;
                        }
                    };
                    let Ok(view) = FrameView::parse(&frame) else {
                        ProxyStats::add(&stats.c.response_decoding_error, 1);
                        break 'main;
                    };
                    relay.touch(now);
                    if relay.on_broker_frame(&frame, &view, now) == BrokerStep::Forward {
                        out.push_back(frame);
                    }
                }
            }
            _ = tick.tick() => {
                let t = lock(&conn.relay).on_tick(Instant::now(), *shutdown.borrow_and_update());
                out.extend(t.replies);
                if t.close {
                    write_counted(&mut cwr, &mut out, &stats.c.bytes_proxy_to_client).await;
                    break 'main;
                }
            }
        }
        if !write_counted(&mut cwr, &mut out, &stats.c.bytes_proxy_to_client).await {
            break;
        }
    }
    let _ = cwr.shutdown().await;
    conn.end();
}
