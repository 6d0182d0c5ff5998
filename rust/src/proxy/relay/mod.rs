//! The broker face: one client connection relayed to its own connection to one real broker.
//!
//! Frames are forwarded as their original bytes. Each is only *viewed* (code, flag, opaque) for
//! stats, in-flight tracking and timeouts; long-poll requests also have their header decoded to
//! learn how long the broker may hold them. Two tasks per connection, one per direction, so a
//! peer that stops reading can never block the other direction.

use crate::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use super::stats::ProxyStats;
use crate::codec::codes::{request as rc, response as resp};
use crate::codec::frame::{split, FrameView};
use crate::codec::{HeaderRef, RemotingCommand, SerializeType};

use super::Shared;
use crate::net::io::{connect_split, BoxRead, BoxWrite};

/// A request waiting for its response.
#[derive(Debug, Clone, Copy)]
struct Inflight {
    code: i32,
    start: Instant,
    deadline: Instant,
}

/// State both directions of one relayed connection share.
struct ConnState {
    inflight: Mutex<HashMap<i32, Inflight>>,
    /// Milliseconds since `epoch` of the last frame in either direction.
    last_activity_ms: AtomicU64,
    epoch: Instant,
}

impl ConnState {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }
}

/// Reasons the proxy answers a request itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LocalReason {
    Timeout,
    Unavailable,
    Shutdown,
}

/// Builds a local reply: a RocketMQ response with the request's opaque and a remark saying why.
pub(crate) fn local_reply(opaque: i32, code: i32, remark: String) -> Bytes {
    let cmd = RemotingCommand::response_to(opaque, code, Some(remark));
    // A JSON header with a short remark always encodes.
    Bytes::from(cmd.encode(SerializeType::Json).unwrap_or_default())
}

pub(crate) fn count_local(stats: &ProxyStats, reason: LocalReason, response_code: i32) {
    let c = &stats.c;
    let counter = match reason {
        LocalReason::Timeout => &c.local_reply_timeout,
        LocalReason::Unavailable => &c.local_reply_upstream_unavailable,
        LocalReason::Shutdown => &c.local_reply_shutdown,
    };
    ProxyStats::add(counter, 1);
    stats.on_response(response_code);
}

fn code_name(code: i32) -> String {
    crate::codec::codes::request_name(code)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("request code {code}"))
}

/// How long the broker may legitimately hold a long-poll request before answering.
fn long_poll_hold(code: i32, frame: &[u8], view: &FrameView) -> Duration {
    let key = match code {
        rc::PULL_MESSAGE | rc::LITE_PULL_MESSAGE => "suspendTimeoutMillis",
        rc::POP_MESSAGE | rc::NOTIFICATION | rc::PEEK_MESSAGE => "pollTime",
        _ => return Duration::ZERO,
    };
    // Borrowed decode: one field is needed, so nothing is copied (the body included).
    HeaderRef::decode(frame, view)
        .ok()
        .and_then(|c| c.ext(key).and_then(|v| v.parse::<u64>().ok()))
        .map(Duration::from_millis)
        .unwrap_or(Duration::ZERO)
}

/// Serves one client connection accepted on the listener for `broker`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    client: (BoxRead, BoxWrite),
    broker: Arc<str>,
    _permit: OwnedSemaphorePermit,
) {
    let stats = shared.stats.clone();
    ProxyStats::gauge(&stats.c.connections_active, 1);
    ProxyStats::gauge(&stats.c.connections_broker_active, 1);
    let (crd, cwr) = client;
    let state = Arc::new(ConnState {
        inflight: Mutex::new(HashMap::new()),
        last_activity_ms: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let (reply_tx, reply_rx) = mpsc::channel::<Bytes>(shared.config.max_buffered_frames.max(1));
    let (up_tx, up_rx) = mpsc::channel::<BoxRead>(1);
    let (done_tx, done_rx) = watch::channel(false);
    let done_tx = Arc::new(done_tx);

    let b = tokio::spawn(upstream_to_client(
        shared.clone(),
        state.clone(),
        broker.clone(),
        cwr,
        reply_rx,
        up_rx,
        done_tx.clone(),
        done_rx.clone(),
    ));
    client_to_upstream(shared.clone(), state, broker, crd, reply_tx, up_tx, done_rx).await;
    let _ = done_tx.send(true);
    let _ = b.await;
    ProxyStats::gauge(&stats.c.connections_active, -1);
    ProxyStats::gauge(&stats.c.connections_broker_active, -1);
}

async fn connect_upstream(shared: &Shared, broker: &str) -> Result<(BoxRead, BoxWrite), String> {
    let tls = shared.upstream_tls.as_deref();
    connect_split(broker, shared.config.connect_timeout(), tls).await
}

/// Reads client frames and forwards them to the broker (task A).
async fn client_to_upstream(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    broker: Arc<str>,
    mut crd: BoxRead,
    reply_tx: mpsc::Sender<Bytes>,
    up_tx: mpsc::Sender<BoxRead>,
    mut done: watch::Receiver<bool>,
) {
    let stats = &shared.stats;
    let max = shared.config.max_frame_size;
    let mut shutdown = shared.shutdown.clone();
    let mut upstream: Option<BoxWrite> = None;
    let mut last_failure: Option<(Instant, String)> = None;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Frames ready to forward, each a zero-copy slice of `buf`.
    let mut out: VecDeque<Bytes> = VecDeque::with_capacity(16);

    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let n = tokio::select! {
            biased;
            _ = done.changed() => break,
            r = crd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        ProxyStats::add(&stats.c.bytes_client_to_proxy, n as u64);
        state.touch();
        let shutting_down = *shutdown.borrow_and_update();

        loop {
            let len = match split(&buf, max) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(_) => {
                    ProxyStats::add(&stats.c.request_decoding_error, 1);
                    flush(&mut upstream, &mut out, stats).await;
                    return;
                }
            };
            let frame = buf.split_to(len).freeze();
            let view = match FrameView::parse(&frame) {
                Ok(v) => v,
                Err(_) => {
                    ProxyStats::add(&stats.c.request_decoding_error, 1);
                    flush(&mut upstream, &mut out, stats).await;
                    return;
                }
            };
            if view.is_response() {
                // The client answering a broker's request (transaction check, running info).
                ProxyStats::add(&stats.c.request_decoding_success, 1);
                if upstream.is_some() {
                    out.push_back(frame);
                }
                continue;
            }
            let oneway = view.is_oneway();
            stats.on_request(view.code, oneway);

            if shutting_down {
                if !oneway {
                    count_local(stats, LocalReason::Shutdown, resp::SYSTEM_BUSY);
                    let remark = "rmqfast: the proxy is shutting down; retry on another broker";
                    let _ = reply_tx
                        .send(local_reply(view.opaque, resp::SYSTEM_BUSY, remark.into()))
                        .await;
                }
                continue;
            }

            if upstream.is_none() {
                let retry_after = Duration::from_millis(500);
                let may_try = match &last_failure {
                    Some((at, _)) => at.elapsed() >= retry_after,
                    None => true,
                };
                if may_try {
                    stats.pending(view.code, 1);
                    let r = connect_upstream(&shared, &broker).await;
                    stats.pending(view.code, -1);
                    match r {
                        Ok((rd, wr)) => {
                            ProxyStats::gauge(&stats.c.upstream_connections_active, 1);
                            upstream = Some(wr);
                            last_failure = None;
                            if up_tx.send(rd).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            ProxyStats::add(&stats.c.upstream_connect_failure, 1);
                            last_failure = Some((Instant::now(), e));
                        }
                    }
                }
                if upstream.is_none() {
                    if !oneway {
                        count_local(stats, LocalReason::Unavailable, resp::SYSTEM_ERROR);
                        let why = last_failure.as_ref().map(|f| f.1.as_str()).unwrap_or("");
                        let remark = format!(
                            "rmqfast: {} not sent: broker {broker} is unreachable ({why})",
                            code_name(view.code)
                        );
                        let _ = reply_tx
                            .send(local_reply(view.opaque, resp::SYSTEM_ERROR, remark))
                            .await;
                    }
                    continue;
                }
            }

            if !oneway {
                let now = Instant::now();
                let hold = long_poll_hold(view.code, &frame, &view);
                let deadline = now + hold + shared.config.request_timeout();
                stats.begin(view.code);
                let prev = lock(&state.inflight).insert(
                    view.opaque,
                    Inflight {
                        code: view.code,
                        start: now,
                        deadline,
                    },
                );
                if let Some(p) = prev {
                    // A client reusing an opaque still in flight: the first is orphaned.
                    stats.end(p.code, p.start.elapsed());
                }
            }
            out.push_back(frame);
        }
        if !flush(&mut upstream, &mut out, stats).await {
            // The broker went away; task B sees the close and ends the connection.
            upstream = None;
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
        Some(w) => write_frames(w, out, &stats.c.bytes_proxy_to_upstream).await,
        None => {
            out.clear();
            true
        }
    }
}

/// Relays broker frames and local replies to the client, and enforces timeouts (task B).
#[allow(clippy::too_many_arguments)]
async fn upstream_to_client(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    broker: Arc<str>,
    mut cwr: BoxWrite,
    mut reply_rx: mpsc::Receiver<Bytes>,
    mut up_rx: mpsc::Receiver<BoxRead>,
    done_tx: Arc<watch::Sender<bool>>,
    mut done: watch::Receiver<bool>,
) {
    let stats = &shared.stats;
    let max = shared.config.max_frame_size;
    let mut shutdown = shared.shutdown.clone();
    let mut upstream: Option<BoxRead> = None;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out: VecDeque<Bytes> = VecDeque::with_capacity(16);
    let tick_every = Duration::from_millis(50)
        .max(shared.config.request_timeout() / 20)
        .min(Duration::from_millis(250));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_deadline: Option<Instant> = None;
    let idle = shared.config.idle_timeout();

    'main: loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            biased;
            _ = done.changed() => break,
            Some(reply) = reply_rx.recv() => {
                out.push_back(reply);
                while let Ok(r) = reply_rx.try_recv() {
                    out.push_back(r);
                }
            }
            Some(rd) = up_rx.recv() => {
                upstream = Some(rd);
                buf.clear();
                continue;
            }
            r = async {
                match upstream.as_mut() {
                    Some(rd) => rd.read_buf(&mut buf).await,
                    None => std::future::pending().await,
                }
            } => {
                match r {
                    Ok(0) | Err(_) => {
                        // The broker closed: end the client connection too, as a direct
                        // connection would, so the client fails its requests fast and reconnects.
                        ProxyStats::gauge(&stats.c.upstream_connections_active, -1);
                        upstream = None;
                        break 'main;
                    }
                    Ok(n) => {
                        ProxyStats::add(&stats.c.bytes_upstream_to_proxy, n as u64);
                        state.touch();
                    }
                }
                loop {
                    let len = match split(&buf, max) {
                        Ok(Some(len)) => len,
                        Ok(None) => break,
                        Err(_) => {
                            ProxyStats::add(&stats.c.response_decoding_error, 1);
                            break 'main;
                        }
                    };
                    let frame = buf.split_to(len).freeze();
                    let view = match FrameView::parse(&frame) {
                        Ok(v) => v,
                        Err(_) => {
                            ProxyStats::add(&stats.c.response_decoding_error, 1);
                            break 'main;
                        }
                    };
                    ProxyStats::add(&stats.c.response_decoding_success, 1);
                    if view.is_response() {
                        let entry = lock(&state.inflight).remove(&view.opaque);
                        match entry {
                            Some(req) => {
                                stats.end(req.code, req.start.elapsed());
                                stats.on_response(view.code);
                                out.push_back(frame);
                            }
                            None => ProxyStats::add(&stats.c.late_response, 1),
                        }
                    } else {
                        ProxyStats::add(&stats.c.broker_request, 1);
                        out.push_back(frame);
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let expired: Vec<(i32, Inflight)> = {
                    let mut map = lock(&state.inflight);
                    let keys: Vec<i32> = map
                        .iter()
                        .filter(|(_, v)| v.deadline <= now)
                        .map(|(k, _)| *k)
                        .collect();
                    keys.into_iter().filter_map(|k| map.remove(&k).map(|v| (k, v))).collect()
                };
                for (opaque, req) in expired {
                    let waited = req.start.elapsed();
                    stats.end(req.code, waited);
                    count_local(stats, LocalReason::Timeout, resp::SYSTEM_BUSY);
                    let remark = format!(
                        "rmqfast: broker {broker} did not answer {} within {} ms",
                        code_name(req.code),
                        waited.as_millis()
                    );
                    out.push_back(local_reply(opaque, resp::SYSTEM_BUSY, remark));
                }
                let empty = lock(&state.inflight).is_empty();
                if *shutdown.borrow_and_update() {
                    let d = *drain_deadline.get_or_insert(now + shared.config.drain_timeout());
                    if empty || now >= d {
                        write_out(&mut cwr, &mut out, stats).await;
                        break 'main;
                    }
                }
                if let Some(idle) = idle {
                    let last = Duration::from_millis(state.last_activity_ms.load(Ordering::Relaxed));
                    if empty && state.epoch.elapsed().saturating_sub(last) >= idle {
                        ProxyStats::add(&stats.c.connections_idle_closed, 1);
                        write_out(&mut cwr, &mut out, stats).await;
                        break 'main;
                    }
                }
            }
        }
        if !write_out(&mut cwr, &mut out, stats).await {
            break;
        }
    }
    // Requests still in flight leave with the connection.
    let left: Vec<Inflight> = state
        .inflight
        .lock()
        .unwrap()
        .drain()
        .map(|(_, v)| v)
        .collect();
    for req in left {
        stats.end(req.code, req.start.elapsed());
    }
    if upstream.is_some() {
        ProxyStats::gauge(&stats.c.upstream_connections_active, -1);
    }
    let _ = cwr.shutdown().await;
    let _ = done_tx.send(true);
}

async fn write_out(cwr: &mut BoxWrite, out: &mut VecDeque<Bytes>, stats: &ProxyStats) -> bool {
    write_frames(cwr, out, &stats.c.bytes_proxy_to_client).await
}

/// Writes every queued frame with vectored writes (one syscall for many small frames).
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut VecDeque<Bytes>,
    counter: &AtomicU64,
) -> bool {
    if out.is_empty() {
        return true;
    }
    let total: usize = out.iter().map(Bytes::len).sum();
    // The queue is the connection's own and is reused: no allocation per write.
    let mut frames = Frames {
        parts: out,
        remaining: total,
    };
    let ok = w.write_all_buf(&mut frames).await.is_ok();
    frames.parts.clear();
    if ok {
        ProxyStats::add(counter, total as u64);
    }
    ok
}

/// A queue of byte slices seen as one `Buf`, so tokio can write them vectored.
struct Frames<'a> {
    parts: &'a mut VecDeque<Bytes>,
    remaining: usize,
}

impl Buf for Frames<'_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map(|b| &b[..]).unwrap_or(&[])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(self.parts.iter()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        self.remaining = self.remaining.saturating_sub(cnt);
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }
}
