//! The one multiplexed remoting client: many requests in flight on one connection (plain TCP
//! or TLS), responses matched by opaque, with its own error type.
//!
//! `MuxConn` is one connection with a reader and a writer task; what to count is left to the
//! owner through `ConnHooks`. `FailoverClient` keeps one `MuxConn` to the first server of a
//! list that answers and moves on when it fails (the proxy's name-server lookups). The
//! producer keeps a `MuxConn` per broker and name server address.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::frames::FrameReader;
use super::tls::{is_certificate_error, Tls};
use crate::codec::{RemotingCommand, SerializeType};
use crate::sync::lock;

/// What went wrong with a remoting call, as far as the network is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetErrorKind {
    /// The TCP connection (or the TLS handshake, for another reason than the certificate)
    /// could not be made.
    Connect,
    /// The peer's TLS certificate was refused (or none was presented).
    Certificate,
    /// The connection closed before the response arrived.
    Closed,
    /// No response (or no connection) within the deadline.
    Timeout,
    /// The request could not be encoded.
    Encode,
}

/// A failed remoting call: the kind, and a message naming the peer and what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    pub kind: NetErrorKind,
    pub message: String,
}

impl NetError {
    pub fn new(kind: NetErrorKind, message: impl Into<String>) -> Self {
        NetError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NetError {}

/// What a connection reports to its owner's statistics. Every method has an empty default.
pub trait ConnHooks: Send + Sync + 'static {
    /// The connection is up (after the TLS handshake, when there is one).
    fn opened(&self) {}
    /// The connection is gone; called once per opened connection.
    fn closed(&self) {}
    /// Bytes read from the peer.
    fn bytes_in(&self, _n: usize) {}
    /// Bytes written to the peer.
    fn bytes_out(&self, _n: usize) {}
    /// The peer sent bytes that are not a remoting frame; the connection is closed.
    fn bad_frame(&self) {}
    /// A TLS handshake failed.
    fn tls_failed(&self) {}
}

/// Hooks that count nothing.
pub struct NoHooks;
impl ConnHooks for NoHooks {}

/// One frame to write: the encoded header part and the body, which may be a shared slice.
struct Outgoing {
    head: Vec<u8>,
    body: Bytes,
}

type Waiters = Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>;

/// State shared by a connection handle and its reader and writer tasks.
struct ConnShared {
    waiters: Waiters,
    alive: AtomicBool,
    /// Whether `closed` is still owed to the hooks.
    open: AtomicBool,
    /// Milliseconds since `epoch` when bytes last arrived.
    last_rx_ms: AtomicU64,
    epoch: Instant,
    hooks: Arc<dyn ConnHooks>,
}

impl ConnShared {
    /// Marks the connection dead and wakes every waiter (their senders are dropped).
    fn die(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if self.open.swap(false, Ordering::SeqCst) {
            self.hooks.closed();
        }
        lock(&self.waiters).clear();
    }
}

/// Removes a waiter when its request finishes or is abandoned (timeout, cancellation).
struct WaiterGuard<'a> {
    shared: &'a ConnShared,
    opaque: i32,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.waiters).remove(&self.opaque);
    }
}

/// One live connection to a name server or broker.
pub struct MuxConn {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<ConnShared>,
    tasks: [AbortHandle; 2],
    peer: String,
}

impl Drop for MuxConn {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl MuxConn {
    /// Connects to `addr` (TCP_NODELAY) and runs the TLS handshake when `tls` is given. No
    /// timeout of its own: callers bound it. `peer` names the server in error messages.
    pub async fn open(
        addr: &str,
        peer: &str,
        tls: Option<&Tls>,
        max_frame_size: usize,
        hooks: Arc<dyn ConnHooks>,
    ) -> Result<MuxConn, NetError> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            NetError::new(
                NetErrorKind::Connect,
                format!("cannot connect to {peer}: {e}"),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        let shared = Arc::new(ConnShared {
            waiters: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            open: AtomicBool::new(true),
            last_rx_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            hooks: hooks.clone(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = match tls {
            None => {
                let (rd, wr) = tcp.into_split();
                spawn(rd, wr, rx, shared.clone(), max_frame_size)
            }
            Some(tls) => {
                let stream = tls.connect(addr, tcp).await.map_err(|e| {
                    hooks.tls_failed();
                    let kind = if is_certificate_error(&e) {
                        NetErrorKind::Certificate
                    } else {
                        NetErrorKind::Connect
                    };
                    NetError::new(kind, format!("TLS handshake with {peer} failed: {e}"))
                })?;
                let (rd, wr) = tokio::io::split(stream);
                spawn(rd, wr, rx, shared.clone(), max_frame_size)
            }
        };
        hooks.opened();
        Ok(MuxConn {
            tx,
            shared,
            tasks,
            peer: peer.to_owned(),
        })
    }

    /// Whether the connection can still carry requests.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Closes the socket: both tasks stop, pending requests fail.
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.die();
    }

    fn closed(&self, when: &str) -> NetError {
        NetError::new(
            NetErrorKind::Closed,
            format!("connection to {} closed{when}", self.peer),
        )
    }

    /// Writes one request (`head` is the frame up to the body) and waits for the response
    /// with the same opaque. No timeout here: the caller bounds the whole exchange.
    pub async fn request(
        &self,
        head: Vec<u8>,
        body: Bytes,
        opaque: i32,
    ) -> Result<RemotingCommand, NetError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiters).insert(opaque, tx);
        let _guard = WaiterGuard {
            shared: &self.shared,
            opaque,
        };
        // die() clears waiters after flipping `alive`, so a waiter inserted after the clear
        // is caught here instead of waiting for the timeout.
        if !self.is_alive() {
            return Err(self.closed(""));
        }
        self.tx
            .send(Outgoing { head, body })
            .map_err(|_| self.closed(""))?;
        rx.await
            .map_err(|_| self.closed(" before the response arrived"))
    }

    /// Writes a request nobody answers (oneway).
    pub fn send(&self, head: Vec<u8>, body: Bytes) -> Result<(), NetError> {
        if !self.is_alive() {
            return Err(self.closed(""));
        }
        self.tx
            .send(Outgoing { head, body })
            .map_err(|_| self.closed(""))
    }

    /// Whether nothing has arrived on this connection since `since` (a stalled peer, as
    /// opposed to a busy one).
    pub fn silent_since(&self, since: Instant) -> bool {
        let since_ms = since
            .saturating_duration_since(self.shared.epoch)
            .as_millis() as u64;
        self.shared.last_rx_ms.load(Ordering::Relaxed) <= since_ms
    }
}

fn spawn<R, W>(
    rd: R,
    wr: W,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<ConnShared>,
    max_frame_size: usize,
) -> [AbortHandle; 2]
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let reader = tokio::spawn(read_loop(
        FrameReader::new(rd, max_frame_size),
        shared.clone(),
    ));
    let writer = tokio::spawn(write_loop(wr, rx, shared));
    [reader.abort_handle(), writer.abort_handle()]
}

async fn read_loop<R: AsyncRead + Unpin>(mut rd: FrameReader<R>, shared: Arc<ConnShared>) {
    'read: loop {
        match rd.read().await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                shared.hooks.bytes_in(n);
                let ms = shared.epoch.elapsed().as_millis() as u64;
                shared.last_rx_ms.store(ms, Ordering::Relaxed);
            }
        }
        loop {
            let frame = match rd.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    shared.hooks.bad_frame();
                    break 'read;
                }
            };
            match RemotingCommand::decode(&frame) {
                Ok(cmd) if cmd.is_response() => {
                    let waiter = lock(&shared.waiters).remove(&cmd.opaque);
                    if let Some(w) = waiter {
                        let _ = w.send(cmd);
                    }
                }
                // Requests from the server (transaction checks, consumer notices) are for
                // clients that heartbeat; the callers of this client send none.
                Ok(_) => {}
                Err(_) => {
                    shared.hooks.bad_frame();
                    break 'read;
                }
            }
        }
    }
    shared.die();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<ConnShared>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Coalesce whatever is already queued into as few writes as possible.
        while let Some(o) = next.take() {
            if w.write_all(&o.head).await.is_err() || w.write_all(&o.body).await.is_err() {
                shared.die();
                return;
            }
            shared.hooks.bytes_out(o.head.len() + o.body.len());
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            shared.die();
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// A client over a list of servers (name servers, say): one connection to the first that
/// works, kept until it fails or times out, then the next.
pub struct FailoverClient {
    addrs: Vec<String>,
    current: AtomicUsize,
    conn: tokio::sync::Mutex<Option<Arc<MuxConn>>>,
    next_opaque: AtomicI32,
    connect_timeout: Duration,
    tls: Option<Arc<Tls>>,
    max_frame_size: usize,
    hooks: Arc<dyn ConnHooks>,
    /// Called for each server that could not be reached.
    on_connect_failure: Box<dyn Fn() + Send + Sync>,
}

impl FailoverClient {
    /// A client that tries `addrs` in order, sticking to the first that works; over TLS when
    /// `tls` is given.
    pub fn new(
        addrs: Vec<String>,
        connect_timeout: Duration,
        tls: Option<Arc<Tls>>,
        max_frame_size: usize,
        hooks: Arc<dyn ConnHooks>,
        on_connect_failure: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        FailoverClient {
            addrs,
            current: AtomicUsize::new(0),
            conn: tokio::sync::Mutex::new(None),
            next_opaque: AtomicI32::new(1),
            connect_timeout,
            tls,
            max_frame_size,
            hooks,
            on_connect_failure,
        }
    }

    async fn connection(&self, skip_current: bool) -> Result<Arc<MuxConn>, NetError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.is_alive() && !skip_current {
                return Ok(c.clone());
            }
        }
        *guard = None;
        let n = self.addrs.len();
        let start = self.current.load(Ordering::Relaxed) + usize::from(skip_current);
        let mut errors = Vec::new();
        let mut kind = NetErrorKind::Connect;
        for i in 0..n {
            let idx = (start + i) % n;
            let addr = &self.addrs[idx];
            let open = MuxConn::open(
                addr,
                addr,
                self.tls.as_deref(),
                self.max_frame_size,
                self.hooks.clone(),
            );
            let result = match tokio::time::timeout(self.connect_timeout, open).await {
                Ok(r) => r,
                Err(_) => Err(NetError::new(
                    NetErrorKind::Timeout,
                    format!(
                        "connect to {addr} timed out after {} ms",
                        self.connect_timeout.as_millis()
                    ),
                )),
            };
            match result {
                Ok(c) => {
                    self.current.store(idx, Ordering::Relaxed);
                    let c = Arc::new(c);
                    *guard = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    (self.on_connect_failure)();
                    if e.kind == NetErrorKind::Certificate {
                        kind = e.kind;
                    }
                    errors.push(e.message);
                }
            }
        }
        Err(NetError::new(kind, errors.join("; ")))
    }

    fn encode(&self, cmd: &mut RemotingCommand) -> Result<Vec<u8>, NetError> {
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        cmd.encode(cmd.serialize_type)
            .or_else(|_| cmd.encode(SerializeType::Json))
            .map_err(|e| NetError::new(NetErrorKind::Encode, e.to_string()))
    }

    /// Sends `cmd` (its opaque is replaced) and waits for the response. One deadline covers
    /// the whole call: a second attempt, on the next server or a fresh connection, gets only
    /// the time that is left.
    pub async fn request(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_err = NetError::new(NetErrorKind::Timeout, "no attempt was made");
        for attempt in 0..2 {
            if attempt > 0 && tokio::time::Instant::now() >= deadline {
                break;
            }
            let conn = match tokio::time::timeout_at(deadline, self.connection(attempt > 0)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    last_err = NetError::new(
                        NetErrorKind::Timeout,
                        format!(
                            "no connection to {} within {} ms",
                            self.addrs.join(", "),
                            timeout.as_millis()
                        ),
                    );
                    break;
                }
            };
            let frame = self.encode(&mut cmd)?;
            match tokio::time::timeout_at(deadline, conn.request(frame, Bytes::new(), cmd.opaque))
                .await
            {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => last_err = e,
                Err(_) => {
                    last_err = NetError::new(
                        NetErrorKind::Timeout,
                        format!(
                            "{} did not answer within {} ms",
                            conn.peer,
                            timeout.as_millis()
                        ),
                    );
                    // A server that times out is abandoned, and the next call starts with the
                    // next server (only the first request to notice moves it on).
                    if conn.is_alive() {
                        let n = self.addrs.len().max(1);
                        let next = (self.current.load(Ordering::Relaxed) + 1) % n;
                        self.current.store(next, Ordering::Relaxed);
                        conn.shutdown();
                    }
                }
            }
        }
        Err(last_err)
    }

    /// Sends a oneway request without waiting.
    pub async fn oneway(&self, mut cmd: RemotingCommand) -> Result<(), NetError> {
        let conn = self.connection(false).await?;
        let frame = self.encode(&mut cmd)?;
        conn.send(frame, Bytes::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[derive(Default)]
    struct Counts {
        opened: AtomicUsize,
        closed: AtomicUsize,
        bad: AtomicUsize,
    }
    impl ConnHooks for Counts {
        fn opened(&self) {
            self.opened.fetch_add(1, Ordering::SeqCst);
        }
        fn closed(&self) {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
        fn bad_frame(&self) {
            self.bad.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A server answering each request with its code as the response code, in reverse order
    /// of arrival per batch of `batch` requests (so responses cross), or not at all when
    /// `answer` is false. Returns its address.
    async fn server(answer: bool, batch: usize) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (rd, mut wr) = s.into_split();
                    let mut rd = FrameReader::new(rd, 1 << 20);
                    let mut pending = Vec::new();
                    while matches!(rd.read().await, Ok(n) if n > 0) {
                        while let Ok(Some(f)) = rd.next_frame() {
                            pending.push(RemotingCommand::decode(&f).unwrap());
                        }
                        if answer && pending.len() >= batch {
                            for req in pending.drain(..).rev() {
                                let r = RemotingCommand::response_to(req.opaque, req.code, None);
                                let bytes = r.encode(SerializeType::Json).unwrap();
                                wr.write_all(&bytes).await.unwrap();
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn head(code: i32, opaque: i32) -> Vec<u8> {
        let mut c = RemotingCommand::request(code);
        c.opaque = opaque;
        c.encode(SerializeType::Json).unwrap()
    }

    #[tokio::test]
    async fn responses_are_matched_by_opaque_whatever_their_order() {
        let addr = server(true, 3).await;
        let counts = Arc::new(Counts::default());
        let c = MuxConn::open(&addr, "test server", None, 1 << 20, counts.clone())
            .await
            .unwrap();
        let (a, b, d) = tokio::join!(
            c.request(head(101, 1), Bytes::new(), 1),
            c.request(head(102, 2), Bytes::new(), 2),
            c.request(head(103, 3), Bytes::new(), 3),
        );
        assert_eq!(
            (a.unwrap().code, b.unwrap().code, d.unwrap().code),
            (101, 102, 103)
        );
        assert_eq!(counts.opened.load(Ordering::SeqCst), 1);
        c.shutdown();
        c.shutdown();
        assert_eq!(
            counts.closed.load(Ordering::SeqCst),
            1,
            "closed is reported once"
        );
        let e = c.request(head(1, 4), Bytes::new(), 4).await.unwrap_err();
        assert_eq!(e.kind, NetErrorKind::Closed);
        assert!(e.message.contains("test server"), "{e}");
    }

    #[tokio::test]
    async fn a_peer_that_closes_fails_the_waiting_requests() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1];
            let _ = s.read(&mut b).await; // the request's first byte arrived: hang up
        });
        let c = MuxConn::open(&addr, &addr, None, 1 << 20, Arc::new(NoHooks))
            .await
            .unwrap();
        let e = c.request(head(10, 1), Bytes::new(), 1).await.unwrap_err();
        assert_eq!(e.kind, NetErrorKind::Closed, "{e}");
        assert!(!c.is_alive());
    }

    #[tokio::test]
    async fn garbage_from_the_peer_closes_the_connection_and_is_reported() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
            let mut b = [0u8; 64];
            while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
        });
        let counts = Arc::new(Counts::default());
        let c = MuxConn::open(&addr, &addr, None, 1 << 20, counts.clone())
            .await
            .unwrap();
        let e = c.request(head(10, 1), Bytes::new(), 1).await.unwrap_err();
        assert_eq!(e.kind, NetErrorKind::Closed);
        assert_eq!(counts.bad.load(Ordering::SeqCst), 1);
        assert_eq!(counts.closed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failover_moves_past_a_dead_and_a_silent_server() {
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let silent = server(false, 1).await;
        let good = server(true, 1).await;
        let failures = Arc::new(AtomicUsize::new(0));
        let f = failures.clone();
        let client = FailoverClient::new(
            vec![dead.clone(), silent.clone(), good.clone()],
            Duration::from_secs(2),
            None,
            1 << 20,
            Arc::new(NoHooks),
            Box::new(move || {
                f.fetch_add(1, Ordering::SeqCst);
            }),
        );
        // The dead one is skipped; the silent one takes the first call's whole deadline.
        let e = client
            .request(RemotingCommand::request(105), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(e.kind, NetErrorKind::Timeout, "{e}");
        assert!(e.message.contains(&silent), "{e}");
        assert_eq!(failures.load(Ordering::SeqCst), 1);
        // The silent server was abandoned: the next call goes to the good one.
        let r = client
            .request(RemotingCommand::request(105), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(r.code, 105);
        assert!(r.is_response());
    }

    #[tokio::test]
    async fn no_server_reachable_names_every_one() {
        let addrs: Vec<String> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let client = FailoverClient::new(
            addrs.clone(),
            Duration::from_secs(1),
            None,
            1 << 20,
            Arc::new(NoHooks),
            Box::new(|| {}),
        );
        let e = client
            .request(RemotingCommand::request(105), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(e.kind, NetErrorKind::Connect);
        assert!(addrs.iter().all(|a| e.message.contains(a)), "{e}");
    }
}
