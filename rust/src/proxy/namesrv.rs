//! The name-server face: clients use the proxy as their name server.
//!
//! Route lookups (GET_ROUTEINFO_BY_TOPIC) go to the cluster the topic routes to, cluster info
//! (GET_BROKER_CLUSTER_INFO) is gathered from every cluster, and in both answers every broker
//! address is replaced by the proxy's listener for that broker. Route answers are cached and
//! served from the cache while every name server of the cluster is down. Other name-server
//! requests are relayed to the cluster named by their `topic` field, else the default cluster.

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::access::{Outcome, Peer, Reason, RequestInfo};
use super::policy::{Listener, Request as PolicyRequest};
use super::stats::ProxyStats;
use crate::codec::codes::{request as rc, response as resp};
use crate::codec::frame::FrameView;
use crate::codec::route::{BrokerAddrs, ClusterInfo, TopicRouteData};
use crate::codec::{RemotingCommand, SerializeType};

use super::relay::{count_local, local_reply, write_counted, LocalReason};
use super::{Live, Shared};
use crate::net::frames::FrameReader;
use crate::net::io::{BoxRead, BoxWrite};

/// A route answer as the proxy last gave it (addresses already rewritten).
#[derive(Clone)]
pub(crate) struct CachedAnswer {
    pub cmd: RemotingCommand,
    pub at: Instant,
}

/// Serves one client connection on the name-server listener.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    client: (BoxRead, BoxWrite),
    _permit: OwnedSemaphorePermit,
    who: super::policy::Client,
    peer: Peer,
) {
    let stats = shared.stats.clone();
    ProxyStats::gauge(&stats.c.connections_active, 1);
    ProxyStats::gauge(&stats.c.connections_namesrv_active, 1);
    let (rd, mut wr) = client;
    // Limits of the config current when the client connected.
    let live = shared.live();
    let (tx, mut rx) = mpsc::channel::<Bytes>(live.config.max_buffered_frames.max(1));

    let wstats = stats.clone();
    let writer = tokio::spawn(async move {
        let mut out = std::collections::VecDeque::new();
        while let Some(f) = rx.recv().await {
            out.push_back(f);
            while let Ok(f) = rx.try_recv() {
                out.push_back(f);
            }
            if !write_counted(&mut wr, &mut out, &wstats.c.bytes_proxy_to_client).await {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });

    // At most this many requests of this connection are being answered at once; the next one
    // waits for a permit, and the connection is not read meanwhile (back-pressure, as on the
    // broker ports: a client that pipelines lookups without reading answers stalls itself).
    let in_flight = Arc::new(Semaphore::new(live.config.max_buffered_frames.max(1)));
    let mut rd = FrameReader::guarded(rd, live.config.max_frame_size, shared.read_limits(&live));
    let mut shutdown = shared.shutdown.clone();
    let idle = live.config.idle_timeout();
    drop(live);
    // Activity is a whole frame: bytes trickled into one that never completes do not keep
    // the connection from its idle timeout.
    let mut last_frame = tokio::time::Instant::now();
    'read: loop {
        let read = rd.read();
        let n = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = async {
                match idle {
                    Some(t) => tokio::time::timeout_at(last_frame + t, read).await.map_err(|_| ()),
                    None => Ok(read.await),
                }
            } => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(()) => {
                    ProxyStats::add(&stats.c.connections_idle_closed, 1);
                    break;
                }
            },
        };
        ProxyStats::add(&stats.c.bytes_client_to_proxy, n as u64);
        loop {
            let frame = match rd.next_frame() {
                Ok(Some(frame)) => {
                    last_frame = tokio::time::Instant::now();
                    frame
                }
                Ok(None) => break,
                Err(_) => {
                    ProxyStats::add(&stats.c.request_decoding_error, 1);
                    break 'read;
                }
            };
            let cmd = match RemotingCommand::decode(&frame) {
                Ok(c) => c,
                Err(_) => {
                    ProxyStats::add(&stats.c.request_decoding_error, 1);
                    break 'read;
                }
            };
            if cmd.is_response() {
                // Name servers send clients no requests, so there is nothing to answer.
                ProxyStats::add(&stats.c.request_decoding_success, 1);
                continue;
            }
            stats.on_request(cmd.code, cmd.is_oneway());
            let pending = if shared.access.enabled() {
                let info = RequestInfo::of_command(&cmd, frame.len());
                shared.access.begin_fields(&peer, &info)
            } else {
                None
            };
            let ext = |k: &str| cmd.ext(k).map(str::to_owned);
            // Each request is decided by the config current when it arrives.
            let live = shared.live();
            let refused = live.policy.check(&PolicyRequest {
                code: cmd.code,
                listener: Listener::Namesrv,
                client: &who,
                ext: &ext,
            });
            if let Some(remark) = refused {
                stats.on_denied(cmd.code);
                let reply = (!cmd.is_oneway())
                    .then(|| local_reply(cmd.opaque, resp::NO_PERMISSION, remark));
                if let Some(p) = pending {
                    let sent = reply.as_ref().map(|r| (resp::NO_PERMISSION, r.len()));
                    let outcome = Outcome::local(Reason::Denied, sent, std::time::Duration::ZERO);
                    shared.access.finish(p, outcome);
                }
                if let Some(reply) = reply {
                    stats.on_response(resp::NO_PERMISSION);
                    if tx.send(reply).await.is_err() {
                        break 'read;
                    }
                }
                continue;
            }
            let permit = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    // Closed unanswered: the client retries elsewhere.
                    if let Some(p) = pending {
                        let outcome = Outcome::local(Reason::Shutdown, None, std::time::Duration::ZERO);
                        shared.access.finish(p, outcome);
                    }
                    break 'read;
                }
                p = in_flight.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let shared = shared.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let oneway = cmd.is_oneway();
                let code = cmd.code;
                let start = Instant::now();
                if !oneway {
                    shared.stats.begin(code);
                }
                let (reply, local) = handle(&shared, &live, cmd).await;
                if !oneway {
                    shared.stats.end(code, start.elapsed());
                }
                if let Some(p) = pending {
                    shared
                        .access
                        .finish(p, outcome(reply.as_ref(), local, start.elapsed()));
                }
                if let Some(reply) = reply {
                    let _ = tx.send(reply).await;
                }
            });
        }
    }
    drop(tx);
    let _ = writer.await;
    ProxyStats::gauge(&stats.c.connections_active, -1);
    ProxyStats::gauge(&stats.c.connections_namesrv_active, -1);
}

/// How a name-server request ended, for the access log.
fn outcome(reply: Option<&Bytes>, local: Option<Reason>, elapsed: std::time::Duration) -> Outcome {
    let sent = reply.and_then(|b| FrameView::parse(b).ok().map(|v| (v.code, b.len())));
    match (local, sent) {
        (Some(reason), sent) => Outcome::local(reason, sent, elapsed),
        (None, Some((code, len))) => Outcome::response(code, len, elapsed),
        (None, None) => Outcome::no_answer(),
    }
}

/// Answers one request (`None` for oneway requests), and why if the proxy answers it itself.
async fn handle(
    shared: &Arc<Shared>,
    live: &Arc<Live>,
    cmd: RemotingCommand,
) -> (Option<Bytes>, Option<Reason>) {
    let opaque = cmd.opaque;
    let oneway = cmd.is_oneway();
    let stats = &shared.stats;
    let result = match cmd.code {
        rc::GET_ROUTEINFO_BY_TOPIC => route(shared, live, cmd).await,
        rc::GET_BROKER_CLUSTER_INFO => cluster_info(shared, live, cmd).await,
        _ => relay(live, cmd).await,
    };
    match result {
        Ok(Some(mut answer)) => {
            answer.opaque = opaque;
            stats.on_response(answer.code);
            let st = answer.serialize_type;
            let frame = answer
                .encode(st)
                .or_else(|_| answer.encode(SerializeType::Json))
                .ok();
            (frame.map(Bytes::from), None)
        }
        Ok(None) => (None, None),
        Err(why) if !oneway => {
            count_local(stats, LocalReason::Unavailable, resp::SYSTEM_ERROR);
            let reply = local_reply(opaque, resp::SYSTEM_ERROR, format!("rmqfast: {why}"));
            (Some(reply), Some(Reason::Unavailable))
        }
        Err(_) => (None, Some(Reason::Unavailable)),
    }
}

async fn relay(live: &Live, cmd: RemotingCommand) -> Result<Option<RemotingCommand>, String> {
    let cluster = match cmd.ext("topic") {
        Some(t) => live.router.cluster_for(t),
        None => live.router.default_cluster(),
    };
    let client = &live.namesrvs[cluster];
    if cmd.is_oneway() {
        client.oneway(cmd).await.map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let resp = client
        .request(cmd, live.config.request_timeout())
        .await
        .map_err(|e| {
            format!(
                "no name server of cluster {} answered: {e}",
                live.cluster_name(cluster)
            )
        })?;
    Ok(Some(resp))
}

async fn route(
    shared: &Arc<Shared>,
    live: &Arc<Live>,
    cmd: RemotingCommand,
) -> Result<Option<RemotingCommand>, String> {
    let topic = cmd.ext("topic").unwrap_or("").to_owned();
    let cluster = live.router.cluster_for(&topic);
    let key = format!("{cluster}\u{0}{topic}");
    let ttl = live.config.route_cache_ttl();
    let cached = lock(&shared.route_cache).get(&key).cloned();
    if let Some(hit) = &cached {
        if !ttl.is_zero() && hit.at.elapsed() < ttl {
            return Ok(Some(hit.cmd.clone()));
        }
    }
    // The lookup runs on its own task, so that it can outlive a hedged answer and refresh the
    // cache when it completes.
    let l = live.clone();
    let timeout = live.config.request_timeout();
    let mut upstream = tokio::spawn(async move { l.namesrvs[cluster].request(cmd, timeout).await });
    let usable = cached
        .as_ref()
        .filter(|c| c.at.elapsed() < live.config.route_stale_limit());
    if let Some(hit) = usable {
        match tokio::time::timeout(live.config.route_hedge(), &mut upstream).await {
            Ok(joined) => {
                let r = joined.map_err(|e| format!("route lookup task: {e}"))?;
                return answer_route(shared, live, key, &topic, cluster, r, usable).await;
            }
            Err(_) => {
                // The name server is slow or frozen: the client gets the route it got last,
                // well within its own timeout, and the lookup still refreshes the cache.
                ProxyStats::add(&shared.stats.c.route_cache_hedged, 1);
                let s = shared.clone();
                let l = live.clone();
                let hit_for_task = hit.clone();
                tokio::spawn(async move {
                    if let Ok(r) = upstream.await {
                        let hit = Some(&hit_for_task);
                        let _ = answer_route(&s, &l, key, &topic, cluster, r, hit).await;
                    }
                });
                return Ok(Some(hit.cmd.clone()));
            }
        }
    }
    let r = upstream
        .await
        .map_err(|e| format!("route lookup task: {e}"))?;
    answer_route(shared, live, key, &topic, cluster, r, usable).await
}

/// The answer to a route lookup from what the name server said (`upstream`): rewritten and
/// cached on success; the cached route when no name server answered, or when one answers
/// TOPIC_NOT_EXIST while a route younger than `route_stale_limit_s` is known (a name server
/// restarted empty forgets every topic until the brokers register again).
async fn answer_route(
    shared: &Arc<Shared>,
    live: &Live,
    key: String,
    topic: &str,
    cluster: usize,
    upstream: Result<RemotingCommand, crate::net::client::NetError>,
    usable: Option<&CachedAnswer>,
) -> Result<Option<RemotingCommand>, String> {
    let mut answer = match upstream {
        Ok(a) => a,
        Err(e) => {
            return cached_or_error(shared, &key, || {
                format!(
                    "no name server of cluster {} answered the route lookup for topic {topic:?} \
                     and no cached route exists: {e}",
                    live.cluster_name(cluster)
                )
            });
        }
    };
    if answer.code == resp::TOPIC_NOT_EXIST {
        if let Some(hit) = usable {
            ProxyStats::add(&shared.stats.c.route_cache_kept, 1);
            return Ok(Some(hit.cmd.clone()));
        }
    }
    if answer.code == resp::SUCCESS {
        let data = TopicRouteData::from_json(&answer.body)
            .map_err(|e| format!("route for topic {topic:?} from the name server: {e}"))?;
        answer = rewrite_and_remember(shared, key, answer, data).await?;
    }
    Ok(Some(answer))
}

/// No name server answered: the last answer given for `key`, or the error.
fn cached_or_error(
    shared: &Shared,
    key: &str,
    why: impl FnOnce() -> String,
) -> Result<Option<RemotingCommand>, String> {
    ProxyStats::add(&shared.stats.c.maintenance_failure, 1);
    let cached = lock(&shared.route_cache).get(key).cloned();
    match cached {
        Some(c) => {
            ProxyStats::add(&shared.stats.c.route_cache_served, 1);
            Ok(Some(c.cmd))
        }
        None => Err(why()),
    }
}

/// Replaces every broker address with the proxy's listener for it (opening listeners for new
/// brokers), puts the result in the answer's body and caches the answer under `key`.
async fn rewrite_and_remember<T: BrokerAddrs + Send>(
    shared: &Arc<Shared>,
    key: String,
    mut answer: RemotingCommand,
    mut data: T,
) -> Result<RemotingCommand, String> {
    let real: HashSet<String> = data.broker_addr_list().into_iter().collect();
    let mapping = map_brokers(shared, real).await?;
    data.rewrite_broker_addrs(&mut |_, _, addr| mapping.get(addr).cloned());
    answer.body = data.to_json();
    ProxyStats::add(&shared.stats.c.route_rewrite, 1);
    lock(&shared.route_cache).insert(
        key,
        CachedAnswer {
            cmd: answer.clone(),
            at: Instant::now(),
        },
    );
    Ok(answer)
}

async fn map_brokers(
    shared: &Arc<Shared>,
    real: HashSet<String>,
) -> Result<HashMap<String, String>, String> {
    let mut mapping = HashMap::with_capacity(real.len());
    for addr in real {
        let proxied = shared.broker_listener(&addr).await?;
        mapping.insert(addr, proxied);
    }
    Ok(mapping)
}

async fn cluster_info(
    shared: &Arc<Shared>,
    live: &Live,
    cmd: RemotingCommand,
) -> Result<Option<RemotingCommand>, String> {
    let key = "\u{0}cluster-info".to_string();
    let timeout = live.config.request_timeout();
    let lookups = live
        .namesrvs
        .iter()
        .map(|c| c.request(cmd.clone(), timeout));
    let results = futures_join_all(lookups).await;
    let mut merged: Option<(RemotingCommand, ClusterInfo)> = None;
    let mut errors = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(a) if a.code == resp::SUCCESS => {
                let info = ClusterInfo::from_json(&a.body).map_err(|e| {
                    format!("cluster info from cluster {}: {e}", live.cluster_name(i))
                })?;
                match &mut merged {
                    None => merged = Some((a, info)),
                    Some((_, m)) => m.merge(info),
                }
            }
            Ok(a) => errors.push(format!(
                "cluster {} answered code {}",
                live.cluster_name(i),
                a.code
            )),
            Err(e) => errors.push(format!("cluster {}: {e}", live.cluster_name(i))),
        }
    }
    let Some((answer, info)) = merged else {
        return cached_or_error(shared, &key, || {
            format!(
                "no cluster answered GET_BROKER_CLUSTER_INFO: {}",
                errors.join("; ")
            )
        });
    };
    Ok(Some(rewrite_and_remember(shared, key, answer, info).await?))
}

/// Awaits every future concurrently, keeping their order.
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out = Vec::with_capacity(futs.len());
    // Few clusters: polling them in turn inside one join keeps this dependency-free.
    let mut pending: Vec<_> = futs.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

#[cfg(test)]
#[path = "namesrv_tests.rs"]
mod tests;
