//! Multiplexed remoting connections (plain TCP or TLS): many requests in flight on one socket,
//! responses matched by opaque, one connection per address, reconnect on demand.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::stats::ProducerStats;
use super::{ErrorKind, ProducerError};
use crate::codec::frame::split;
use crate::codec::RemotingCommand;
use crate::net::tls::{is_certificate_error, Tls};

/// One frame to write: the encoded header part and the body, which may be a shared slice.
struct Outgoing {
    head: Vec<u8>,
    body: Bytes,
}

type Waiters = Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>;

/// State shared by a connection handle and its reader and writer tasks.
struct Shared {
    waiters: Waiters,
    alive: AtomicBool,
    /// Whether this connection still counts in the `connections` gauge.
    counted: AtomicBool,
    /// Milliseconds since `epoch` when the last bytes arrived.
    last_rx_ms: AtomicU64,
    epoch: Instant,
    stats: Arc<ProducerStats>,
}

impl Shared {
    /// Marks the connection dead and wakes every waiter (their senders are dropped).
    fn die(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if self.counted.swap(false, Ordering::SeqCst) {
            self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        }
        lock(&self.waiters).clear();
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// A live connection to one name server or broker.
pub(crate) struct Conn {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
    tasks: [AbortHandle; 2],
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes a waiter when its request finishes or is abandoned (timeout, cancellation).
struct WaiterGuard<'a> {
    shared: &'a Shared,
    opaque: i32,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.waiters).remove(&self.opaque);
    }
}

fn conn_error(message: String) -> ProducerError {
    ProducerError::new(ErrorKind::Connection, None, message)
}

impl Conn {
    /// Connects (and runs the TLS handshake when `tls` is set).
    async fn open(
        addr: &str,
        peer: &str,
        tls: Option<&Tls>,
        stats: Arc<ProducerStats>,
        max_frame_size: usize,
    ) -> Result<Conn, ProducerError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| conn_error(format!("cannot connect to {peer}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let shared = Arc::new(Shared {
            waiters: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            counted: AtomicBool::new(true),
            last_rx_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            stats: stats.clone(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = match tls {
            None => {
                let (rd, wr) = tcp.into_split();
                Self::spawn(rd, wr, rx, shared.clone(), max_frame_size)
            }
            Some(tls) => {
                let stream = tls.connect(addr, tcp).await.map_err(|e| {
                    ProducerStats::add(&stats.tls_handshake_failures, 1);
                    let kind = if is_certificate_error(&e) {
                        ErrorKind::Certificate
                    } else {
                        ErrorKind::Connection
                    };
                    ProducerError::new(kind, None, format!("TLS handshake with {peer} failed: {e}"))
                })?;
                let (rd, wr) = tokio::io::split(stream);
                Self::spawn(rd, wr, rx, shared.clone(), max_frame_size)
            }
        };
        ProducerStats::add(&stats.connects, 1);
        stats.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Conn { tx, shared, tasks })
    }

    fn spawn<R, W>(
        rd: R,
        wr: W,
        rx: mpsc::UnboundedReceiver<Outgoing>,
        shared: Arc<Shared>,
        max_frame_size: usize,
    ) -> [AbortHandle; 2]
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let reader = tokio::spawn(read_loop(rd, shared.clone(), max_frame_size));
        let writer = tokio::spawn(write_loop(wr, rx, shared));
        [reader.abort_handle(), writer.abort_handle()]
    }

    fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Closes the socket: both tasks stop, pending requests fail.
    fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.die();
    }

    /// Writes one request and waits for the response with the same opaque (no timeout here:
    /// the caller bounds the whole exchange).
    async fn request(
        &self,
        head: Vec<u8>,
        body: Bytes,
        opaque: i32,
        peer: &str,
    ) -> Result<RemotingCommand, ProducerError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiters).insert(opaque, tx);
        let _guard = WaiterGuard {
            shared: &self.shared,
            opaque,
        };
        // die() clears waiters after flipping `alive`, so a waiter inserted after the clear
        // is caught here instead of waiting for the timeout.
        if !self.is_alive() {
            return Err(conn_error(format!("connection to {peer} closed")));
        }
        self.tx
            .send(Outgoing { head, body })
            .map_err(|_| conn_error(format!("connection to {peer} closed")))?;
        rx.await.map_err(|_| {
            conn_error(format!(
                "connection to {peer} closed before the response arrived"
            ))
        })
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, shared: Arc<Shared>, max_frame_size: usize) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                ProducerStats::add(&shared.stats.bytes_received, n as u64);
                shared.last_rx_ms.store(shared.now_ms(), Ordering::Relaxed);
            }
        }
        loop {
            match split(&buf, max_frame_size) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n);
                    match RemotingCommand::decode(&frame) {
                        Ok(cmd) if cmd.is_response() => {
                            let waiter = lock(&shared.waiters).remove(&cmd.opaque);
                            if let Some(w) = waiter {
                                let _ = w.send(cmd);
                            }
                        }
                        // Requests from the server (transaction checks, consumer notices) are
                        // for clients that heartbeat; a plain producer ignores them.
                        Ok(_) => {}
                        Err(_) => break 'read,
                    }
                }
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
    }
    shared.die();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
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
            ProducerStats::add(
                &shared.stats.bytes_sent,
                (o.head.len() + o.body.len()) as u64,
            );
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            shared.die();
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// One connection per address, opened on first use and again after it dies.
pub(crate) struct Pool {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    connecting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tls: Option<Tls>,
    stats: Arc<ProducerStats>,
    max_frame_size: usize,
    closed: AtomicBool,
}

impl Pool {
    pub(crate) fn new(tls: Option<Tls>, stats: Arc<ProducerStats>, max_frame_size: usize) -> Self {
        Pool {
            conns: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
            tls,
            stats,
            max_frame_size,
            closed: AtomicBool::new(false),
        }
    }

    fn live(&self, addr: &str) -> Option<Arc<Conn>> {
        let conns = lock(&self.conns);
        conns.get(addr).filter(|c| c.is_alive()).cloned()
    }

    async fn get(&self, addr: &str, peer: &str) -> Result<Arc<Conn>, ProducerError> {
        if let Some(c) = self.live(addr) {
            return Ok(c);
        }
        let connecting = {
            let mut m = lock(&self.connecting);
            m.entry(addr.to_owned()).or_default().clone()
        };
        // One connect per address at a time; the others wait for its result.
        let _g = connecting.lock().await;
        if let Some(c) = self.live(addr) {
            return Ok(c);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(ProducerError::closed());
        }
        let conn = Arc::new(
            Conn::open(
                addr,
                peer,
                self.tls.as_ref(),
                self.stats.clone(),
                self.max_frame_size,
            )
            .await?,
        );
        let mut conns = lock(&self.conns);
        if self.closed.load(Ordering::SeqCst) {
            conn.shutdown();
            return Err(ProducerError::closed());
        }
        conns.insert(addr.to_owned(), conn.clone());
        Ok(conn)
    }

    /// Sends a request frame to `addr` and waits for its response; connecting, writing and
    /// waiting together take at most `timeout`. `what` names the request in errors.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call(
        &self,
        addr: &str,
        peer: &str,
        what: &str,
        head: Vec<u8>,
        body: Bytes,
        opaque: i32,
        timeout: Duration,
    ) -> Result<RemotingCommand, ProducerError> {
        let start = Instant::now();
        let mut used: Option<Arc<Conn>> = None;
        let exchange = async {
            let conn = self.get(addr, peer).await?;
            used = Some(conn.clone());
            conn.request(head, body, opaque, peer).await
        };
        let result = tokio::time::timeout(timeout, exchange).await;
        match result {
            Ok(r) => {
                if let Err(e) = &r {
                    if e.kind == ErrorKind::Connection || e.kind == ErrorKind::Certificate {
                        ProducerStats::add(&self.stats.connection_errors, 1);
                    }
                }
                r
            }
            Err(_) => {
                ProducerStats::add(&self.stats.timeouts, 1);
                if let Some(conn) = used {
                    // Like Java's closeSocketIfTimeout, but only when the socket has been
                    // silent since the request went out: a stalled peer gets a fresh
                    // connection, a busy one keeps its other requests.
                    let sent_at = conn.shared.epoch.elapsed().saturating_sub(start.elapsed());
                    if conn.shared.last_rx_ms.load(Ordering::Relaxed) <= sent_at.as_millis() as u64
                    {
                        self.drop_conn(addr, &conn);
                    }
                }
                Err(ProducerError::new(
                    ErrorKind::Timeout,
                    None,
                    format!(
                        "{peer} did not answer {what} within {} ms",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }

    fn drop_conn(&self, addr: &str, conn: &Arc<Conn>) {
        conn.shutdown();
        let mut conns = lock(&self.conns);
        if conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(addr);
        }
    }

    /// Closes every connection; later calls fail with the producer-closed error.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let conns: Vec<Arc<Conn>> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in conns {
            c.shutdown();
        }
    }

    /// Whether certificate verification is off.
    pub(crate) fn tls_insecure(&self) -> bool {
        self.tls.as_ref().is_some_and(Tls::insecure)
    }
}
