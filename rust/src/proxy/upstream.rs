//! The proxy's own calls to name servers (route lookups, cluster info, relayed admin
//! requests): one `net::client::FailoverClient` per cluster, counted in the proxy's stats.

use std::sync::Arc;
use std::time::Duration;

use super::stats::ProxyStats;
use crate::net::client::{ConnHooks, FailoverClient};
use crate::net::tls::Tls;

/// Upstream connections as the proxy's stats count them.
struct UpstreamHooks(Arc<ProxyStats>);

impl ConnHooks for UpstreamHooks {
    fn opened(&self) {
        ProxyStats::gauge(&self.0.c.upstream_connections_active, 1);
    }
    fn closed(&self) {
        ProxyStats::gauge(&self.0.c.upstream_connections_active, -1);
    }
    fn bytes_in(&self, n: usize) {
        ProxyStats::add(&self.0.c.bytes_upstream_to_proxy, n as u64);
    }
    fn bytes_out(&self, n: usize) {
        ProxyStats::add(&self.0.c.bytes_proxy_to_upstream, n as u64);
    }
    fn bad_frame(&self) {
        ProxyStats::add(&self.0.c.response_decoding_error, 1);
    }
}

/// A failover client over one cluster's name servers.
pub(crate) fn namesrv_client(
    addrs: Vec<String>,
    connect_timeout: Duration,
    tls: Option<Arc<Tls>>,
    max_frame_size: usize,
    stats: Arc<ProxyStats>,
) -> FailoverClient {
    let failures = stats.clone();
    FailoverClient::new(
        addrs,
        connect_timeout,
        tls,
        max_frame_size,
        Arc::new(UpstreamHooks(stats)),
        Box::new(move || ProxyStats::add(&failures.c.upstream_connect_failure, 1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::codes::{request as rc, response as resp};
    use crate::codec::{RemotingCommand, SerializeType};
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn upstream_connections_show_in_the_proxys_stats() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = live.accept().await.unwrap();
            let (rd, mut wr) = s.into_split();
            let mut rd = crate::net::frames::FrameReader::new(rd, 1 << 20);
            while matches!(rd.read().await, Ok(n) if n > 0) {
                while let Ok(Some(f)) = rd.next_frame() {
                    let req = RemotingCommand::decode(&f).unwrap();
                    let r = RemotingCommand::response_to(req.opaque, resp::SUCCESS, None);
                    wr.write_all(&r.encode(SerializeType::Json).unwrap())
                        .await
                        .unwrap();
                }
            }
        });
        let stats = Arc::new(ProxyStats::default());
        let client = namesrv_client(
            vec![dead_addr, live_addr],
            Duration::from_secs(2),
            None,
            1 << 20,
            stats.clone(),
        );
        let r = client
            .request(
                RemotingCommand::request(rc::GET_BROKER_CLUSTER_INFO),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.code, resp::SUCCESS);
        let c = &stats.c;
        assert_eq!(c.upstream_connect_failure.load(Relaxed), 1);
        assert_eq!(c.upstream_connections_active.load(Relaxed), 1);
        assert!(c.bytes_proxy_to_upstream.load(Relaxed) > 0);
        assert!(c.bytes_upstream_to_proxy.load(Relaxed) > 0);
        drop(client);
        assert_eq!(c.upstream_connections_active.load(Relaxed), 0);
    }
}
