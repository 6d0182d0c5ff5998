//! The producer's connections: one `net::client::MuxConn` per address (name server or broker),
//! opened on first use and again after it dies, counted in the producer's stats.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::stats::ProducerStats;
use super::{ErrorKind, ProducerError};
use crate::codec::RemotingCommand;
use crate::net::client::{ConnHooks, MuxConn, NetError, NetErrorKind};
use crate::net::tls::Tls;

impl ConnHooks for ProducerStats {
    fn opened(&self) {
        ProducerStats::add(&self.connects, 1);
        self.connections.fetch_add(1, Ordering::Relaxed);
    }
    fn closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
    fn bytes_in(&self, n: usize) {
        ProducerStats::add(&self.bytes_received, n as u64);
    }
    fn bytes_out(&self, n: usize) {
        ProducerStats::add(&self.bytes_sent, n as u64);
    }
    fn tls_failed(&self) {
        ProducerStats::add(&self.tls_handshake_failures, 1);
    }
}

impl From<NetError> for ProducerError {
    fn from(e: NetError) -> Self {
        let kind = match e.kind {
            NetErrorKind::Certificate => ErrorKind::Certificate,
            NetErrorKind::Timeout => ErrorKind::Timeout,
            NetErrorKind::Connect | NetErrorKind::Closed | NetErrorKind::Encode => {
                ErrorKind::Connection
            }
        };
        ProducerError::new(kind, None, e.message)
    }
}

/// One connection per address, opened on first use and again after it dies.
pub(crate) struct Pool {
    conns: Mutex<HashMap<String, Arc<MuxConn>>>,
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

    fn live(&self, addr: &str) -> Option<Arc<MuxConn>> {
        let conns = lock(&self.conns);
        conns.get(addr).filter(|c| c.is_alive()).cloned()
    }

    async fn get(&self, addr: &str, peer: &str) -> Result<Arc<MuxConn>, ProducerError> {
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
        let hooks: Arc<dyn ConnHooks> = self.stats.clone();
        let conn = Arc::new(
            MuxConn::open(addr, peer, self.tls.as_ref(), self.max_frame_size, hooks).await?,
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
        let mut used: Option<Arc<MuxConn>> = None;
        let exchange = async {
            let conn = self.get(addr, peer).await?;
            used = Some(conn.clone());
            conn.request(head, body, opaque)
                .await
                .map_err(ProducerError::from)
        };
        match tokio::time::timeout(timeout, exchange).await {
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
                    if conn.silent_since(start) {
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

    fn drop_conn(&self, addr: &str, conn: &Arc<MuxConn>) {
        conn.shutdown();
        let mut conns = lock(&self.conns);
        if conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(addr);
        }
    }

    /// Closes every connection; later calls fail with the producer-closed error.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let conns: Vec<Arc<MuxConn>> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in conns {
            c.shutdown();
        }
    }

    /// Whether certificate verification is off.
    pub(crate) fn tls_insecure(&self) -> bool {
        self.tls.as_ref().is_some_and(Tls::insecure)
    }
}
