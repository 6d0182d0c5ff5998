//! The RocketMQ-aware proxy: a name-server face that rewrites broker addresses to the proxy's
//! own listeners (one port per real broker), and a relay per client connection on those ports.

pub mod config;
mod namesrv;
mod relay;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::stats::ProxyStats;
pub use config::{ProxyConfig, TopicRouter};
use upstream::UpstreamClient;

/// State shared by every listener and connection of one proxy.
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub stats: Arc<ProxyStats>,
    pub shutdown: watch::Receiver<bool>,
    pub router: TopicRouter,
    /// One failover client per configured cluster, in config order.
    pub namesrvs: Vec<UpstreamClient>,
    pub route_cache: Mutex<HashMap<String, namesrv::CachedAnswer>>,
    /// Real broker address → the proxy address clients are given for it.
    brokers: tokio::sync::Mutex<HashMap<String, String>>,
    broker_list: Mutex<Vec<(String, String)>>,
    next_port: AtomicU32,
    conns: Arc<Semaphore>,
    self_ref: Mutex<std::sync::Weak<Shared>>,
}

impl Shared {
    pub fn cluster_name(&self, idx: usize) -> &str {
        self.config
            .clusters
            .get(idx)
            .map(|c| c.name.as_str())
            .unwrap_or("?")
    }

    /// The proxy address for a real broker address, opening its listener the first time.
    pub async fn broker_listener(&self, real: &str) -> Result<String, String> {
        let mut map = self.brokers.lock().await;
        if let Some(a) = map.get(real) {
            return Ok(a.clone());
        }
        let host = self.config.broker_bind_host();
        let port = match self.config.broker_port_base {
            0 => 0,
            base => {
                let n = self.next_port.fetch_add(1, Ordering::Relaxed);
                u16::try_from(u32::from(base) + n)
                    .map_err(|_| format!("broker_port_base: no port left for broker {real}"))?
            }
        };
        let bind = format!("{}:{port}", bracket(&host));
        let listener = TcpListener::bind(&bind)
            .await
            .map_err(|e| format!("cannot open the listener for broker {real} on {bind}: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("listener for broker {real}: {e}"))?;
        let advertised = format!(
            "{}:{}",
            bracket(&self.config.advertise_host()),
            local.port()
        );
        let me = self
            .self_ref
            .lock()
            .unwrap()
            .upgrade()
            .ok_or_else(|| "the proxy is stopping".to_string())?;
        tokio::spawn(accept_loop_boxed(me, listener, Some(Arc::from(real))));
        map.insert(real.to_owned(), advertised.clone());
        self.broker_list
            .lock()
            .unwrap()
            .push((real.to_owned(), advertised.clone()));
        ProxyStats::add(&self.stats.c.broker_listener_added, 1);
        ProxyStats::gauge(&self.stats.c.broker_listeners, 1);
        Ok(advertised)
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `accept_loop` behind a named type: the name-server face opens broker listeners, whose
/// connections may reach the name-server face again, and the boxed type ends that cycle.
fn accept_loop_boxed(
    shared: Arc<Shared>,
    listener: TcpListener,
    broker: Option<Arc<str>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(accept_loop(shared, listener, broker))
}

/// Accepts client connections; `broker` is None for the name-server listener.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, broker: Option<Arc<str>>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of file descriptors and the like: let connections close, then go on.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        ProxyStats::add(&shared.stats.c.connections_total, 1);
        let Ok(permit) = shared.conns.clone().try_acquire_owned() else {
            ProxyStats::add(&shared.stats.c.connections_rejected, 1);
            drop(stream);
            continue;
        };
        let s = shared.clone();
        match &broker {
            Some(b) => {
                tokio::spawn(relay::serve(s, stream, b.clone(), permit));
            }
            None => {
                tokio::spawn(namesrv::serve(s, stream, permit));
            }
        }
    }
    if broker.is_some() {
        ProxyStats::gauge(&shared.stats.c.broker_listeners, -1);
    }
}

/// A running proxy: its own tokio runtime, listeners and stats.
pub struct ProxyServer {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    namesrv_addr: SocketAddr,
}

impl ProxyServer {
    /// Builds the runtime and opens the name-server listener; errors if the port cannot be bound.
    pub fn start(config: ProxyConfig) -> Result<ProxyServer, String> {
        config.validate()?;
        let router = TopicRouter::new(&config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .thread_name("rmqfast-proxy")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the proxy runtime: {e}"))?;
        let stats = Arc::new(ProxyStats::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let namesrvs = config
            .clusters
            .iter()
            .map(|c| {
                UpstreamClient::new(
                    c.namesrv.clone(),
                    config.connect_timeout(),
                    config.max_frame_size,
                    stats.clone(),
                )
            })
            .collect();
        let listen = config.listen.clone();
        let shared = Arc::new(Shared {
            conns: Arc::new(Semaphore::new(config.max_connections)),
            config,
            stats,
            shutdown: shutdown_rx,
            router,
            namesrvs,
            route_cache: Mutex::new(HashMap::new()),
            brokers: tokio::sync::Mutex::new(HashMap::new()),
            broker_list: Mutex::new(Vec::new()),
            next_port: AtomicU32::new(0),
            self_ref: Mutex::new(std::sync::Weak::new()),
        });
        *shared.self_ref.lock().unwrap() = Arc::downgrade(&shared);
        let listener = runtime
            .block_on(TcpListener::bind(&listen))
            .map_err(|e| format!("listen: cannot bind {listen}: {e}"))?;
        let namesrv_addr = listener.local_addr().map_err(|e| format!("listen: {e}"))?;
        runtime.spawn(accept_loop(shared.clone(), listener, None));
        Ok(ProxyServer {
            runtime: Some(runtime),
            shared,
            shutdown_tx,
            namesrv_addr,
        })
    }

    /// The address clients use as their name server.
    pub fn namesrv_addr(&self) -> SocketAddr {
        self.namesrv_addr
    }

    /// The live statistics.
    pub fn stats(&self) -> &ProxyStats {
        &self.shared.stats
    }

    /// A handle on the statistics that outlives the server.
    pub fn stats_handle(&self) -> Arc<ProxyStats> {
        self.shared.stats.clone()
    }

    /// (real broker address, proxy address) for every broker listener opened so far.
    pub fn broker_listeners(&self) -> Vec<(String, String)> {
        self.shared.broker_list.lock().unwrap().clone()
    }

    /// Whether `stop` has not been called yet.
    pub fn is_running(&self) -> bool {
        self.runtime.is_some()
    }

    /// Opens the listener for a broker ahead of any route lookup (returns its proxy address).
    pub fn open_broker(&self, real: &str) -> Result<String, String> {
        let rt = self.runtime.as_ref().ok_or("the proxy is stopped")?;
        rt.block_on(self.shared.broker_listener(real))
    }

    /// Graceful stop: stop accepting, let in-flight requests finish until `timeout`, then close.
    pub fn stop(&mut self, timeout: Duration) {
        let Some(rt) = self.runtime.take() else {
            return;
        };
        let _ = self.shutdown_tx.send(true);
        let deadline = Instant::now() + timeout;
        let stats = self.shared.stats.clone();
        while Instant::now() < deadline
            && stats
                .c
                .connections_active
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        rt.shutdown_timeout(Duration::from_millis(200));
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(0));
    }
}
