//! A multiplexed remoting client: many requests in flight on one connection, matched by opaque.
//!
//! Used for the proxy's own calls to name servers (route lookups), where requests from many
//! clients share a few upstream connections and opaques are the proxy's own.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::net::io::connect_split;
use crate::net::tls::Tls;

use super::stats::ProxyStats;
use crate::codec::frame::split;
use crate::codec::{RemotingCommand, SerializeType};

type Waiters = Arc<Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>>;

/// One live upstream connection with its reader task.
struct MuxConn {
    tx: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl MuxConn {
    async fn connect(
        addr: &str,
        connect_timeout: Duration,
        tls: Option<&Tls>,
        max_frame_size: usize,
        stats: Arc<ProxyStats>,
    ) -> Result<MuxConn, String> {
        let (mut rd, mut wr) = connect_split(addr, connect_timeout, tls).await?;
        let waiters: Waiters = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        ProxyStats::gauge(&stats.c.upstream_connections_active, 1);

        let wstats = stats.clone();
        let walive = alive.clone();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
                ProxyStats::add(&wstats.c.bytes_proxy_to_upstream, frame.len() as u64);
            }
            walive.store(false, Ordering::Relaxed);
            let _ = wr.shutdown().await;
        });

        let rwaiters = waiters.clone();
        let ralive = alive.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            'read: loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => ProxyStats::add(&stats.c.bytes_upstream_to_proxy, n as u64),
                }
                loop {
                    match split(&buf, max_frame_size) {
                        Ok(Some(n)) => {
                            let frame = buf.split_to(n);
                            match RemotingCommand::decode(&frame) {
                                Ok(cmd) if cmd.is_response() => {
                                    let w = lock(&rwaiters).remove(&cmd.opaque);
                                    if let Some(w) = w {
                                        let _ = w.send(cmd);
                                    }
                                }
                                // Name servers send no requests to clients; ignore any.
                                Ok(_) => {}
                                Err(_) => {
                                    ProxyStats::add(&stats.c.response_decoding_error, 1);
                                    break 'read;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            ProxyStats::add(&stats.c.response_decoding_error, 1);
                            break 'read;
                        }
                    }
                }
            }
            ralive.store(false, Ordering::Relaxed);
            // Dropping the senders wakes every waiter with an error.
            lock(&rwaiters).clear();
            ProxyStats::gauge(&stats.c.upstream_connections_active, -1);
        });
        Ok(MuxConn { tx, waiters, alive })
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed) && !self.tx.is_closed()
    }
}

/// A failover client over a list of name servers (or any remoting servers).
pub struct UpstreamClient {
    addrs: Vec<String>,
    current: AtomicUsize,
    conn: tokio::sync::Mutex<Option<Arc<MuxConn>>>,
    next_opaque: AtomicI32,
    connect_timeout: Duration,
    tls: Option<Arc<Tls>>,
    max_frame_size: usize,
    stats: Arc<ProxyStats>,
}

impl UpstreamClient {
    /// A client that tries `addrs` in order, sticking to the first that works; over TLS when
    /// `tls` is given.
    pub fn new(
        addrs: Vec<String>,
        connect_timeout: Duration,
        tls: Option<Arc<Tls>>,
        max_frame_size: usize,
        stats: Arc<ProxyStats>,
    ) -> Self {
        UpstreamClient {
            addrs,
            current: AtomicUsize::new(0),
            conn: tokio::sync::Mutex::new(None),
            next_opaque: AtomicI32::new(1),
            connect_timeout,
            tls,
            max_frame_size,
            stats,
        }
    }

    async fn connection(&self, skip_current: bool) -> Result<Arc<MuxConn>, String> {
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
        for i in 0..n {
            let idx = (start + i) % n;
            let addr = &self.addrs[idx];
            match MuxConn::connect(
                addr,
                self.connect_timeout,
                self.tls.as_deref(),
                self.max_frame_size,
                self.stats.clone(),
            )
            .await
            {
                Ok(c) => {
                    self.current.store(idx, Ordering::Relaxed);
                    let c = Arc::new(c);
                    *guard = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    ProxyStats::add(&self.stats.c.upstream_connect_failure, 1);
                    errors.push(e);
                }
            }
        }
        Err(errors.join("; "))
    }

    /// Sends `cmd` (its opaque is replaced) and waits for the response. One deadline covers
    /// the whole call: a second attempt, on the next server or a fresh connection, gets only
    /// the time that is left.
    pub async fn request(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_err = String::new();
        for attempt in 0..2 {
            if attempt > 0 && tokio::time::Instant::now() >= deadline {
                break;
            }
            let conn = match tokio::time::timeout_at(deadline, self.connection(attempt > 0)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    last_err = format!(
                        "no connection to {} within {} ms",
                        self.addrs.join(", "),
                        timeout.as_millis()
                    );
                    break;
                }
            };
            let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
            cmd.opaque = opaque;
            let frame = cmd
                .encode(cmd.serialize_type)
                .or_else(|_| cmd.encode(SerializeType::Json))
                .map_err(|e| e.to_string())?;
            let (tx, rx) = oneshot::channel();
            lock(&conn.waiters).insert(opaque, tx);
            if conn.tx.send(frame).await.is_err() {
                lock(&conn.waiters).remove(&opaque);
                last_err = format!("connection to {} closed", self.addrs_current());
                continue;
            }
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(_)) => {
                    last_err = format!("connection to {} closed", self.addrs_current());
                }
                Err(_) => {
                    lock(&conn.waiters).remove(&opaque);
                    last_err = format!(
                        "{} did not answer within {} ms",
                        self.addrs_current(),
                        timeout.as_millis()
                    );
                    // A server that times out is abandoned so the next call fails over.
                    conn.alive.store(false, Ordering::Relaxed);
                }
            }
        }
        Err(last_err)
    }

    /// Sends a oneway request without waiting.
    pub async fn oneway(&self, mut cmd: RemotingCommand) -> Result<(), String> {
        let conn = self.connection(false).await?;
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let frame = cmd.encode(cmd.serialize_type).map_err(|e| e.to_string())?;
        conn.tx
            .send(frame)
            .await
            .map_err(|_| format!("connection to {} closed", self.addrs_current()))
    }

    fn addrs_current(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.addrs.len().max(1);
        self.addrs.get(i).map(String::as_str).unwrap_or("")
    }
}
