//! The RocketMQ-aware proxy: a name-server face that rewrites broker addresses to the proxy's
//! own listeners (one port per real broker), and a relay per client connection on those ports.

pub mod access;
pub mod config;
mod namesrv;
pub mod policy;
mod relay;
pub mod stats;
pub mod topics;
mod upstream;

use crate::sync::{lock, Swap};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::net::client::FailoverClient;
use crate::net::frames::{FrameBudget, ReadLimits};
use crate::net::io;
pub use config::{ProxyConfig, TopicRouter};
/// The relay's decision step run from a script and checked against a model (the `relay`
/// fuzz target).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use relay::script::run as fuzz_relay_script;
use stats::ProxyStats;

/// The config and everything built from it that a reload replaces as a whole: connections
/// take what they need from the current one, requests on the name-server face look at it for
/// each request.
pub(crate) struct Live {
    pub config: ProxyConfig,
    pub router: TopicRouter,
    /// One failover client per configured cluster, in config order.
    pub namesrvs: Vec<FailoverClient>,
    /// Which client requests are relayed (`policy`, `policy_default`).
    pub policy: Arc<policy::Policy>,
    /// TLS toward brokers and name servers (`upstream_tls`).
    pub upstream_tls: Option<Arc<crate::net::tls::Tls>>,
    /// TLS toward clients (`tls_cert_file`, `tls_key_file`, `tls_mode`), read from its files
    /// when the config was loaded: a reload picks up renewed certificates.
    client_tls: Option<io::ServerTls>,
}

impl Live {
    /// Builds everything from a config; errors name the field at fault (a certificate file
    /// that cannot be read, a policy rule that does not compile).
    fn build(config: ProxyConfig, stats: &Arc<ProxyStats>) -> Result<Live, String> {
        config.validate()?;
        let router = TopicRouter::new(&config)?;
        let upstream_tls = config.upstream_tls()?;
        let client_tls = config.client_tls()?;
        let policy = Arc::new(policy::Policy::new(&config.policy, &config.policy_default)?);
        let namesrvs = config
            .clusters
            .iter()
            .map(|c| {
                upstream::namesrv_client(
                    c.namesrv.clone(),
                    config.connect_timeout(),
                    upstream_tls.clone(),
                    config.max_frame_size,
                    stats.clone(),
                )
            })
            .collect();
        Ok(Live {
            config,
            router,
            namesrvs,
            policy,
            upstream_tls,
            client_tls,
        })
    }

    pub fn cluster_name(&self, idx: usize) -> &str {
        self.config
            .clusters
            .get(idx)
            .map(|c| c.name.as_str())
            .unwrap_or("?")
    }

    fn relay_settings(&self) -> relay::RelaySettings {
        relay::RelaySettings {
            limits: relay::limits(&self.config),
            policy: self.policy.clone(),
        }
    }
}

/// The fields a reload cannot change in a running proxy (they size the runtime, the
/// connection limit and the frame budget, or are already in every route clients hold); a
/// reload keeps their running values and names them.
pub const RESTART_ONLY: [&str; 6] = [
    "worker_threads",
    "max_connections",
    "frame_memory_budget",
    "advertise_host",
    "broker_bind_host",
    "broker_port_base",
];

/// Sets `new`'s restart-only fields to `running`'s, returning the names of those that differed.
fn keep_restart_only(new: &mut ProxyConfig, running: &ProxyConfig) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($f:ident),*) => {$(
            if new.$f != running.$f {
                kept.push(stringify!($f));
                new.$f = running.$f.clone();
            }
        )*};
    }
    keep!(
        worker_threads,
        max_connections,
        frame_memory_budget,
        advertise_host,
        broker_bind_host,
        broker_port_base
    );
    kept
}

/// State shared by every listener and connection of one proxy.
pub(crate) struct Shared {
    live: Swap<Live>,
    /// The relay's part of `live`, which open connections follow (see `relay::RelaySettings`).
    relay_settings: Arc<Swap<relay::RelaySettings>>,
    pub stats: Arc<ProxyStats>,
    pub shutdown: watch::Receiver<bool>,
    pub route_cache: Mutex<HashMap<String, namesrv::CachedAnswer>>,
    /// Real broker address → the proxy address clients are given for it.
    brokers: tokio::sync::Mutex<HashMap<String, String>>,
    broker_list: Mutex<Vec<(String, String)>>,
    next_port: AtomicU32,
    conns: Arc<Semaphore>,
    self_ref: Mutex<std::sync::Weak<Shared>>,
    /// Memory for client frames being read (`frame_memory_budget`).
    frame_budget: Arc<FrameBudget>,
    /// The access log (`access_log*`); a reload changes it in place (`AccessLog::apply`).
    pub access: Arc<access::AccessLog>,
}

impl Shared {
    /// Everything the listeners share, from a validated config; `shutdown` turns true when
    /// the proxy starts draining.
    pub fn new(
        config: ProxyConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Shared>, String> {
        let stats = Arc::new(ProxyStats::default());
        stats.topics.set_max(config.metrics_max_topics);
        let live = Live::build(config, &stats)?;
        let access = Arc::new(access::AccessLog::new(&live.config, stats.clone()));
        let shared = Arc::new(Shared {
            conns: Arc::new(Semaphore::new(live.config.max_connections)),
            frame_budget: FrameBudget::new(live.config.frame_memory_budget),
            relay_settings: Arc::new(Swap::new(live.relay_settings())),
            live: Swap::new(live),
            stats,
            shutdown,
            route_cache: Mutex::new(HashMap::new()),
            brokers: tokio::sync::Mutex::new(HashMap::new()),
            broker_list: Mutex::new(Vec::new()),
            next_port: AtomicU32::new(0),
            self_ref: Mutex::new(std::sync::Weak::new()),
            access,
        });
        *lock(&shared.self_ref) = Arc::downgrade(&shared);
        Ok(shared)
    }

    /// The current config and what is built from it.
    pub fn live(&self) -> Arc<Live> {
        self.live.load()
    }

    /// Builds `config` (whole, or not at all) and puts it in place of the running one, keeping
    /// the restart-only fields (returned by name when they differed).
    fn reload(&self, mut config: ProxyConfig) -> Result<Vec<&'static str>, String> {
        let old = self.live();
        let kept = keep_restart_only(&mut config, &old.config);
        let live = Live::build(config, &self.stats)?;
        let clusters_changed = live
            .config
            .clusters
            .iter()
            .map(|c| (&c.name, &c.namesrv))
            .ne(old.config.clusters.iter().map(|c| (&c.name, &c.namesrv)));
        self.stats.topics.set_max(live.config.metrics_max_topics);
        self.access.apply(&live.config);
        self.relay_settings.store(live.relay_settings());
        self.live.store(live);
        if clusters_changed {
            // Cached answers are keyed by cluster position and came from the old name servers.
            lock(&self.route_cache).clear();
        }
        Ok(kept)
    }

    /// The limits of a reader of client frames: frame deadline, shared frame budget.
    pub fn read_limits(&self, live: &Live) -> ReadLimits {
        ReadLimits {
            frame_timeout: Some(live.config.frame_timeout()),
            budget: Some(self.frame_budget.clone()),
            events: self.stats.clone(),
        }
    }

    /// The proxy address for a real broker address, opening its listener the first time.
    pub async fn broker_listener(&self, real: &str) -> Result<String, String> {
        let mut map = self.brokers.lock().await;
        if let Some(a) = map.get(real) {
            return Ok(a.clone());
        }
        // Restart-only fields: every reload keeps them as they were at start.
        let config = &self.live().config;
        let host = config.broker_bind_host();
        let port = match config.broker_port_base {
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
        let advertised = format!("{}:{}", bracket(&config.advertise_host()), local.port());
        let me = lock(&self.self_ref)
            .upgrade()
            .ok_or_else(|| "the proxy is stopping".to_string())?;
        tokio::spawn(accept_loop_boxed(me, listener, Some(Arc::from(real))));
        map.insert(real.to_owned(), advertised.clone());
        lock(&self.broker_list).push((real.to_owned(), advertised.clone()));
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
    Box::pin(accept_loop(shared, listener, broker, None))
}

/// What a connection on the listener for `broker` needs to relay it.
fn relay_env(
    shared: &Arc<Shared>,
    live: &Live,
    broker: Arc<str>,
    client: policy::Client,
    peer: access::Peer,
) -> relay::RelayEnv {
    let s = shared.clone();
    let b = broker.clone();
    let connect: relay::Connector = Arc::new(move || {
        let s = s.clone();
        let b = b.clone();
        Box::pin(async move {
            // The upstream settings of the config current when the connection is made.
            let live = s.live();
            let tls = live.upstream_tls.as_deref();
            io::connect_split(&b, live.config.connect_timeout(), tls).await
        })
    });
    relay::RelayEnv {
        broker,
        connect,
        stats: shared.stats.clone(),
        settings: shared.relay_settings.clone(),
        max_frame_size: live.config.max_frame_size,
        read_limits: shared.read_limits(live),
        client,
        max_buffered_frames: live.config.max_buffered_frames,
        shutdown: shared.shutdown.clone(),
        access: shared.access.clone(),
        peer,
    }
}

/// Accepts client connections; `broker` is None for the name-server listener.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    broker: Option<Arc<str>>,
    retire: Option<oneshot::Receiver<()>>,
) {
    let mut shutdown = shared.shutdown.clone();
    let local = listener.local_addr().ok();
    let retire = async move {
        match retire {
            // A send or a dropped sender: either way this listener is done.
            Some(r) => {
                let _ = r.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(retire);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = &mut retire => {
                // Replaced by a reload: clients already in the backlog are served, not reset.
                while let Ok(Ok((stream, peer))) =
                    tokio::time::timeout(Duration::ZERO, listener.accept()).await
                {
                    let who = access::Peer::new(Some(peer), local, broker.clone());
                    serve_accepted(&shared, stream, who, broker.clone());
                }
                break;
            }
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let who = access::Peer::new(Some(peer), local, broker.clone());
                serve_accepted(&shared, stream, who, broker.clone())
            }
            Err(_) => {
                // Out of file descriptors and the like: let connections close, then go on.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    if broker.is_some() {
        ProxyStats::gauge(&shared.stats.c.broker_listeners, -1);
    }
}

/// Serves one accepted client on a task of its own (if the connection limit allows).
fn serve_accepted(
    shared: &Arc<Shared>,
    stream: tokio::net::TcpStream,
    who: access::Peer,
    broker: Option<Arc<str>>,
) {
    ProxyStats::add(&shared.stats.c.connections_total, 1);
    let Ok(permit) = shared.conns.clone().try_acquire_owned() else {
        ProxyStats::add(&shared.stats.c.connections_rejected, 1);
        drop(stream);
        return;
    };
    let s = shared.clone();
    tokio::spawn(async move {
        // The TLS handshake runs on the connection's own task, never in the accept loop,
        // with the certificates of the config current when the client connected.
        let live = s.live();
        let timeout = live.config.connect_timeout();
        let accepted = match io::accept_split(stream, live.client_tls.as_ref(), timeout).await {
            Ok(a) => a,
            Err(_) => {
                ProxyStats::add(&s.stats.c.tls_handshake_failure, 1);
                return;
            }
        };
        let client = policy::Client {
            addr: who.client_ip(),
            subject: accepted.subject,
        };
        match broker {
            Some(b) => {
                let env = relay_env(&s, &live, b, client, who);
                drop(live);
                relay::serve(env, accepted.halves).await;
                drop(permit);
            }
            None => {
                drop(live);
                namesrv::serve(s, accepted.halves, permit, client, who).await
            }
        }
    });
}

/// A running proxy: its own tokio runtime, listeners and stats.
pub struct ProxyServer {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    /// The name-server listener's address, and what retires its accept loop (a reload may
    /// move it).
    namesrv: Mutex<(SocketAddr, oneshot::Sender<()>)>,
}

impl ProxyServer {
    /// Builds the runtime and opens the name-server listener; errors if the port cannot be bound.
    pub fn start(config: ProxyConfig) -> Result<ProxyServer, String> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .thread_name("rmqfast-proxy")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the proxy runtime: {e}"))?;
        let listen = config.listen.clone();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Shared::new(config, shutdown_rx)?;
        let listener = runtime
            .block_on(TcpListener::bind(&listen))
            .map_err(|e| format!("listen: cannot bind {listen}: {e}"))?;
        let namesrv_addr = listener.local_addr().map_err(|e| format!("listen: {e}"))?;
        let (retire, retired) = oneshot::channel();
        runtime.spawn(accept_loop(shared.clone(), listener, None, Some(retired)));
        Ok(ProxyServer {
            runtime: Some(runtime),
            shared,
            shutdown_tx,
            namesrv: Mutex::new((namesrv_addr, retire)),
        })
    }

    /// The address clients use as their name server.
    pub fn namesrv_addr(&self) -> SocketAddr {
        lock(&self.namesrv).0
    }

    /// Puts a new config in place without closing a connection: clusters, topic routes,
    /// timeouts, the request policy and metrics limits change at once (open connections
    /// included); TLS certificates are read again and, like a new `listen` address, apply to
    /// connections accepted from now on. The config is taken whole or not at all: on an error
    /// (naming the field) the running one stays. Returns the restart-only fields (`RESTART_ONLY`)
    /// that differed and were kept. Counted in `config_reloads` / `config_reload_failures`.
    pub fn reload(&self, config: ProxyConfig) -> Result<Vec<&'static str>, String> {
        let result = self.try_reload(config);
        let c = &self.shared.stats.c;
        let counter = match result {
            Ok(_) => &c.config_reloads,
            Err(_) => &c.config_reload_failures,
        };
        ProxyStats::add(counter, 1);
        result
    }

    /// The access log, to drain its lines (`AccessLog::take_into`); a reload changes its
    /// settings (`AccessLog::apply`). It outlives the server.
    pub fn access_log(&self) -> Arc<access::AccessLog> {
        self.shared.access.clone()
    }

    /// Counts a reload rejected before it reached the data path (a file that does not parse).
    pub fn note_reload_failure(&self) {
        ProxyStats::add(&self.shared.stats.c.config_reload_failures, 1);
    }

    fn try_reload(&self, config: ProxyConfig) -> Result<Vec<&'static str>, String> {
        let rt = self.runtime.as_ref().ok_or("the proxy is stopped")?;
        config.validate()?;
        let mut namesrv = lock(&self.namesrv);
        let moved = config.listen != self.shared.live().config.listen;
        // Bound before anything changes, so a port in use rejects the whole reload.
        let listener = if moved {
            let l = rt
                .block_on(TcpListener::bind(&config.listen))
                .map_err(|e| format!("listen: cannot bind {}: {e}", config.listen))?;
            let addr = l.local_addr().map_err(|e| format!("listen: {e}"))?;
            Some((l, addr))
        } else {
            None
        };
        let kept = self.shared.reload(config)?;
        if let Some((l, addr)) = listener {
            // The old listener closes; connections it accepted go on.
            let (retire, retired) = oneshot::channel();
            rt.spawn(accept_loop(self.shared.clone(), l, None, Some(retired)));
            let (_, old) = std::mem::replace(&mut *namesrv, (addr, retire));
            let _ = old.send(());
        }
        Ok(kept)
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
        lock(&self.shared.broker_list).clone()
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
        if !timeout.is_zero() {
            // Every connection holds one of these permits until it has closed, so holding all
            // of them means no connection is left.
            let all = u32::try_from(self.shared.live().config.max_connections).unwrap_or(u32::MAX);
            let conns = self.shared.conns.clone();
            rt.block_on(async move {
                let _ = tokio::time::timeout(timeout, conns.acquire_many_owned(all)).await;
            });
        }
        rt.shutdown_timeout(Duration::from_millis(200));
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::codes::{request as rc, response as resp};
    use crate::codec::{FrameDecoder, RemotingCommand, SerializeType};
    use std::io::{Read, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Instant;

    fn config(namesrv: &str, request_timeout_ms: u64) -> ProxyConfig {
        ProxyConfig::from_json(&format!(
            r#"{{"listen":"127.0.0.1:0","clusters":[{{"name":"c","namesrv":["{namesrv}"]}}],
                "request_timeout_ms":{request_timeout_ms},"connect_timeout_ms":500,"worker_threads":1}}"#
        ))
        .unwrap()
    }

    fn read_command(s: &mut StdStream, d: &mut FrameDecoder) -> Option<RemotingCommand> {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            if let Some((_, f)) = d.feed(&buf[..n]).ok()?.into_iter().next() {
                return RemotingCommand::decode(&f).ok();
            }
        }
    }

    fn request(code: i32, opaque: i32, oneway: bool) -> Vec<u8> {
        let mut c = RemotingCommand::request(code);
        c.opaque = opaque;
        if oneway {
            c.flag = 2;
        }
        c.encode(SerializeType::Json).unwrap()
    }

    #[test]
    fn silent_broker_gets_a_timely_system_busy_with_the_opaque() {
        // A "broker" that accepts and never answers.
        let silent = StdListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let hold = std::thread::spawn(move || {
            let (s, _) = silent.accept().unwrap();
            // Keep the connection open, unanswered, until the test is done with it.
            let _ = released.recv_timeout(Duration::from_secs(30));
            drop(s);
        });
        let mut p = ProxyServer::start(config("127.0.0.1:1", 300)).unwrap();
        let port = p.open_broker(&silent_addr).unwrap();
        let mut c = StdStream::connect(&port).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        c.write_all(&request(rc::SEND_MESSAGE_V2, 77, false))
            .unwrap();
        let mut d = FrameDecoder::new(1 << 20);
        let reply = read_command(&mut c, &mut d).expect("a local reply");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(reply.opaque, 77);
        assert_eq!(reply.code, resp::SYSTEM_BUSY);
        assert!(reply.is_response());
        let remark = reply.remark.unwrap();
        assert!(
            remark.contains(&silent_addr) && remark.contains("SEND_MESSAGE_V2"),
            "{remark}"
        );
        let s = p.stats();
        assert_eq!(s.c.local_reply_timeout.load(Relaxed), 1);
        assert_eq!(s.c.send_message_v2.load(Relaxed), 1);
        assert_eq!(s.c.request_active.load(Relaxed), 0);
        p.stop(Duration::from_millis(100));
        release.send(()).unwrap();
        hold.join().unwrap();
    }

    #[test]
    fn unreachable_broker_answers_system_error_but_nothing_for_oneway() {
        let dead = StdListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let mut p = ProxyServer::start(config("127.0.0.1:1", 1000)).unwrap();
        let port = p.open_broker(&dead_addr).unwrap();
        let mut c = StdStream::connect(&port).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&request(rc::END_TRANSACTION, 5, true)).unwrap();
        c.write_all(&request(rc::HEART_BEAT, 6, false)).unwrap();
        let mut d = FrameDecoder::new(1 << 20);
        let reply = read_command(&mut c, &mut d).expect("a local reply");
        // The oneway request got nothing: the first reply is the heartbeat's.
        assert_eq!(reply.opaque, 6);
        assert_eq!(reply.code, resp::SYSTEM_ERROR);
        assert!(reply.remark.unwrap().contains("unreachable"));
        let s = p.stats();
        assert_eq!(s.c.local_reply_upstream_unavailable.load(Relaxed), 1);
        assert_eq!(s.c.oneway_request.load(Relaxed), 1);
        assert!(s.c.upstream_connect_failure.load(Relaxed) >= 1);
        p.stop(Duration::from_millis(100));
    }

    #[test]
    fn garbage_closes_only_that_connection() {
        // An echo-less broker that answers every request with SUCCESS.
        let broker = StdListener::bind("127.0.0.1:0").unwrap();
        let broker_addr = broker.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for s in broker.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut d = FrameDecoder::new(1 << 20);
                    while let Some(req) = read_command(&mut s, &mut d) {
                        let r = RemotingCommand::response_to(req.opaque, 0, None);
                        if s.write_all(&r.encode(SerializeType::Json).unwrap())
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        let mut p = ProxyServer::start(config("127.0.0.1:1", 2000)).unwrap();
        let port = p.open_broker(&broker_addr).unwrap();
        let mut good = StdStream::connect(&port).unwrap();
        good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut bad = StdStream::connect(&port).unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut d = FrameDecoder::new(1 << 20);
        good.write_all(&request(rc::HEART_BEAT, 1, false)).unwrap();
        assert_eq!(read_command(&mut good, &mut d).unwrap().opaque, 1);

        bad.write_all(&[0, 0, 0, 2, 0xff, 0xff]).unwrap(); // length 2: invalid
        let mut buf = [0u8; 16];
        assert_eq!(
            bad.read(&mut buf).unwrap_or(0),
            0,
            "the bad connection is closed"
        );

        // An oversized frame announced by its length alone closes its connection too.
        let mut big = StdStream::connect(&port).unwrap();
        big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        big.write_all(&(64i32 << 20).to_be_bytes()).unwrap();
        assert_eq!(big.read(&mut buf).unwrap_or(0), 0);

        good.write_all(&request(rc::HEART_BEAT, 2, false)).unwrap();
        assert_eq!(read_command(&mut good, &mut d).unwrap().opaque, 2);
        let s = p.stats();
        assert_eq!(s.c.request_decoding_error.load(Relaxed), 2);
        assert_eq!(s.c.heartbeat.load(Relaxed), 2);
        assert_eq!(s.c.response_success.load(Relaxed), 2);
        p.stop(Duration::from_millis(100));
    }

    #[test]
    fn a_namesrv_connection_has_at_most_max_buffered_frames_requests_in_flight() {
        // A name server that reads every request (reporting its topic) and answers none.
        let ns = StdListener::bind("127.0.0.1:0").unwrap();
        let ns_addr = ns.local_addr().unwrap().to_string();
        let (seen_tx, seen) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for s in ns.incoming().flatten() {
                let seen_tx = seen_tx.clone();
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut d = FrameDecoder::new(1 << 20);
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        for (_, f) in d.feed(&buf[..n]).unwrap() {
                            let cmd = RemotingCommand::decode(&f).unwrap();
                            let _ = seen_tx.send(cmd.ext("topic").unwrap_or("").to_owned());
                        }
                    }
                });
            }
        });
        let mut cfg = config(&ns_addr, 30_000);
        cfg.max_buffered_frames = 4;
        let mut p = ProxyServer::start(cfg).unwrap();
        let lookup = |topic: &str| {
            let mut c = RemotingCommand::request(rc::GET_ROUTEINFO_BY_TOPIC);
            c.ext_fields.insert("topic".into(), topic.into());
            c.encode(SerializeType::Json).unwrap()
        };
        let next = || {
            seen.recv_timeout(Duration::from_secs(10))
                .expect("a request")
        };
        // One client pipelines 50 lookups in one write and reads nothing.
        let mut flood = StdStream::connect(p.namesrv_addr()).unwrap();
        let all: Vec<u8> = (0..50)
            .flat_map(|i| lookup(&format!("flood-{i}")))
            .collect();
        flood.write_all(&all).unwrap();
        // Each lookup is answered by a task of its own, so they reach upstream in any order.
        let mut first: Vec<String> = (0..4).map(|_| next()).collect();
        first.sort();
        assert_eq!(first, ["flood-0", "flood-1", "flood-2", "flood-3"]);
        // Another connection's lookup goes through: the cap is per connection, and the flood's
        // fifth lookup, read in the same write, did not get past it.
        let mut other = StdStream::connect(p.namesrv_addr()).unwrap();
        other.write_all(&lookup("other")).unwrap();
        assert_eq!(next(), "other");
        // Counted when read: the four in flight, the fifth waiting for a slot, and "other";
        // the sixth is never taken off the buffer while the fifth waits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.stats().c.get_topic_route.load(Relaxed) < 6 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(p.stats().c.get_topic_route.load(Relaxed), 6);
        p.stop(Duration::from_millis(100));
    }

    #[test]
    fn a_reload_is_taken_whole_or_not_at_all() {
        let p = ProxyServer::start(config("127.0.0.1:1", 1000)).unwrap();
        let live = || p.shared.live();
        assert!(p.stats().topics.enabled());
        // Restart-only fields keep their running values and are named; the rest apply.
        let mut next = config("127.0.0.1:2", 2000);
        next.worker_threads = 3;
        next.metrics_max_topics = 0;
        assert_eq!(p.reload(next).unwrap(), ["worker_threads"]);
        assert_eq!(live().config.worker_threads, 1);
        assert_eq!(live().config.request_timeout_ms, 2000);
        assert_eq!(live().config.clusters[0].namesrv, ["127.0.0.1:2"]);
        assert!(!p.stats().topics.enabled());
        assert_eq!(
            p.shared.relay_settings.load().limits.request_timeout,
            Duration::from_millis(2000)
        );
        // A certificate that cannot be read rejects everything else in the same config too.
        let mut bad = config("127.0.0.1:3", 3000);
        bad.tls_cert_file = Some("/nonexistent/cert.pem".into());
        bad.tls_key_file = Some("/nonexistent/key.pem".into());
        let err = p.reload(bad).unwrap_err();
        assert!(err.starts_with("tls_cert_file"), "{err}");
        assert_eq!(live().config.request_timeout_ms, 2000);
        assert_eq!(live().config.clusters[0].namesrv, ["127.0.0.1:2"]);
        // So does a listen address that cannot be bound.
        let taken = StdListener::bind("127.0.0.1:0").unwrap();
        let mut busy = config("127.0.0.1:3", 3000);
        busy.listen = taken.local_addr().unwrap().to_string();
        let err = p.reload(busy).unwrap_err();
        assert!(err.starts_with("listen: cannot bind"), "{err}");
        assert_eq!(live().config.request_timeout_ms, 2000);
        assert_eq!(p.stats().c.config_reloads.load(Relaxed), 1);
        assert_eq!(p.stats().c.config_reload_failures.load(Relaxed), 2);
    }

    #[test]
    fn a_new_listen_address_takes_new_clients_and_keeps_the_old_ones() {
        let mut p = ProxyServer::start(config("127.0.0.1:1", 1000)).unwrap();
        let old = p.namesrv_addr();
        let mut kept = StdStream::connect(old).unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let free = StdListener::bind("127.0.0.1:0").unwrap();
        let mut next = config("127.0.0.1:1", 1000);
        next.listen = free.local_addr().unwrap().to_string();
        drop(free);
        p.reload(next.clone()).unwrap();
        assert_eq!(p.namesrv_addr().to_string(), next.listen);
        assert!(StdStream::connect(p.namesrv_addr()).is_ok());
        let deadline = Instant::now() + Duration::from_secs(5);
        while StdStream::connect(old).is_ok() {
            assert!(Instant::now() < deadline, "the old listener still accepts");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The connection the old listener accepted is still served: its lookup gets an answer
        // (no name server at 127.0.0.1:1, so a local SYSTEM_ERROR), not a close.
        let mut c = RemotingCommand::request(rc::GET_ROUTEINFO_BY_TOPIC);
        c.ext_fields.insert("topic".into(), "T".into());
        kept.write_all(&c.encode(SerializeType::Json).unwrap())
            .unwrap();
        let reply = read_command(&mut kept, &mut FrameDecoder::new(1 << 20)).expect("an answer");
        assert_eq!(reply.code, resp::SYSTEM_ERROR);
        p.stop(Duration::from_millis(100));
    }

    #[test]
    fn connection_limit_refuses_extra_clients() {
        let mut cfg = config("127.0.0.1:1", 1000);
        cfg.max_connections = 1;
        let mut p = ProxyServer::start(cfg).unwrap();
        let addr = p.namesrv_addr();
        let _first = StdStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.stats().c.connections_active.load(Relaxed) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut second = StdStream::connect(addr).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            second.read(&mut buf).unwrap_or(0),
            0,
            "refused connections are closed"
        );
        assert_eq!(p.stats().c.connections_rejected.load(Relaxed), 1);
        p.stop(Duration::from_millis(100));
    }
}
