//! The name-server face over an in-memory client pipe (`tokio::io::duplex`), against a fake
//! name server on loopback.

use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::codec::route::BrokerAddrs;
use crate::net::frames::FrameReader;
use crate::proxy::ProxyConfig;

const ROUTE: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.1.2.3:10911"},"brokerName":"broker-a","cluster":"C"}],"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

/// A name server that answers `answers` route lookups with ROUTE, then closes the connection
/// and stops listening.
async fn name_server(answers: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        drop(l);
        let (rd, mut wr) = s.into_split();
        let mut rd = FrameReader::new(rd, 1 << 20);
        let mut left = answers;
        while left > 0 && matches!(rd.read().await, Ok(n) if n > 0) {
            while let Ok(Some(f)) = rd.next_frame() {
                let req = RemotingCommand::decode(&f).unwrap();
                let mut r = RemotingCommand::response_to(req.opaque, resp::SUCCESS, None);
                r.body = ROUTE.as_bytes().to_vec();
                wr.write_all(&r.encode(SerializeType::Json).unwrap())
                    .await
                    .unwrap();
                left -= 1;
            }
        }
    });
    addr
}

/// A name server that answers route lookups in turn with the codes in `script` (SUCCESS with
/// ROUTE), then reads on and answers nothing more (a frozen name server).
async fn scripted_name_server(script: Vec<i32>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (rd, mut wr) = s.into_split();
        let mut rd = FrameReader::new(rd, 1 << 20);
        let mut script = script.into_iter();
        while matches!(rd.read().await, Ok(n) if n > 0) {
            while let Ok(Some(f)) = rd.next_frame() {
                let req = RemotingCommand::decode(&f).unwrap();
                let Some(code) = script.next() else { continue };
                let mut r = RemotingCommand::response_to(req.opaque, code, None);
                if code == resp::SUCCESS {
                    r.body = ROUTE.as_bytes().to_vec();
                }
                wr.write_all(&r.encode(SerializeType::Json).unwrap())
                    .await
                    .unwrap();
            }
        }
    });
    addr
}

/// The proxy's shared state, and the sender of its shutdown signal (which must outlive the
/// connections: a dropped sender reads as shutdown).
fn shared(namesrv: &str, ttl_s: u64) -> (Arc<Shared>, watch::Sender<bool>) {
    let config = ProxyConfig::from_json(&format!(
        r#"{{"listen":"127.0.0.1:0","clusters":[{{"name":"c","namesrv":["{namesrv}"]}}],
            "route_cache_ttl_s":{ttl_s},"request_timeout_ms":30000,"connect_timeout_ms":5000}}"#
    ))
    .unwrap();
    let (tx, rx) = watch::channel(false);
    (Shared::new(config, rx).unwrap(), tx)
}

/// Serves one client over a pipe; returns the client's end.
fn client(shared: &Arc<Shared>) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(theirs);
    let permit = shared.conns.clone().try_acquire_owned().unwrap();
    tokio::spawn(serve(
        shared.clone(),
        (Box::new(r), Box::new(w)),
        permit,
        crate::proxy::policy::Client {
            addr: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            subject: None,
        },
        crate::proxy::access::Peer::unknown(),
    ));
    ours
}

async fn lookup(c: &mut DuplexStream, topic: &str, opaque: i32) -> RemotingCommand {
    let mut req = RemotingCommand::request(rc::GET_ROUTEINFO_BY_TOPIC);
    req.opaque = opaque;
    req.ext_fields.insert("topic".into(), topic.into());
    c.write_all(&req.encode(SerializeType::RocketMq).unwrap())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Ok(Some(n)) = crate::codec::frame::split(&buf, 1 << 20) {
                return RemotingCommand::decode(&buf[..n]).unwrap();
            }
            let mut chunk = [0u8; 4096];
            let n = c.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the proxy closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("an answer within 5 s")
}

#[tokio::test]
async fn a_route_comes_back_with_the_proxys_broker_address() {
    let (s, _shutdown) = shared(&name_server(1).await, 5);
    let mut c = client(&s);
    let answer = lookup(&mut c, "T", 7).await;
    assert_eq!((answer.opaque, answer.code), (7, resp::SUCCESS));
    let mut route = TopicRouteData::from_json(&answer.body).unwrap();
    let [addr] = &route.broker_addr_list()[..] else {
        panic!("{route:?}")
    };
    let listeners = lock(&s.broker_list).clone();
    assert_eq!(listeners, [("10.1.2.3:10911".to_string(), addr.clone())]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(s.stats.c.route_rewrite.load(Relaxed), 1);
    // Within the TTL the next lookup is the cached answer, under its own opaque.
    let again = lookup(&mut c, "T", 8).await;
    assert_eq!((again.opaque, again.body), (8, answer.body));
}

#[tokio::test]
async fn a_cached_route_is_served_while_the_name_server_is_down() {
    let (s, _shutdown) = shared(&name_server(1).await, 0);
    let mut c = client(&s);
    let first = lookup(&mut c, "T", 1).await;
    assert_eq!(first.code, resp::SUCCESS);
    // TTL 0: every lookup asks upstream, which is gone now.
    let second = lookup(&mut c, "T", 2).await;
    assert_eq!((second.opaque, second.code), (2, resp::SUCCESS));
    assert_eq!(second.body, first.body);
    assert_eq!(s.stats.c.route_cache_served.load(Relaxed), 1);
    // A topic never looked up has nothing cached: a local SYSTEM_ERROR naming the cluster.
    let other = lookup(&mut c, "U", 3).await;
    assert_eq!((other.opaque, other.code), (3, resp::SYSTEM_ERROR));
    assert!(other.remark.unwrap().contains("cluster c"));
}

#[tokio::test]
async fn a_frozen_name_server_is_hedged_with_the_cached_route() {
    // request_timeout_ms is 30 s: only the hedge (500 ms) can answer within lookup's 5 s.
    let (s, _shutdown) = shared(&scripted_name_server(vec![resp::SUCCESS]).await, 0);
    let mut c = client(&s);
    let first = lookup(&mut c, "T", 1).await;
    assert_eq!(first.code, resp::SUCCESS);
    let t0 = std::time::Instant::now();
    let second = lookup(&mut c, "T", 2).await;
    assert_eq!((second.opaque, second.code), (2, resp::SUCCESS));
    assert_eq!(second.body, first.body);
    assert!(
        t0.elapsed() >= s.live().config.route_hedge(),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(s.stats.c.route_cache_hedged.load(Relaxed), 1);
}

#[tokio::test]
async fn a_name_server_restarted_empty_does_not_hide_a_known_route() {
    let script = vec![resp::SUCCESS, resp::TOPIC_NOT_EXIST];
    let (s, _shutdown) = shared(&scripted_name_server(script).await, 0);
    let mut c = client(&s);
    let first = lookup(&mut c, "T", 1).await;
    let second = lookup(&mut c, "T", 2).await;
    assert_eq!((second.opaque, second.code), (2, resp::SUCCESS));
    assert_eq!(second.body, first.body);
    // Counted when the name server's answer is in (on a loaded machine it may come after the
    // hedge has answered the client, from the lookup's own task).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.stats.c.route_cache_kept.load(Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "TOPIC_NOT_EXIST never seen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(s.stats.c.route_cache_kept.load(Relaxed), 1);
}

#[tokio::test]
async fn route_lookups_are_in_the_access_log_answered_or_not() {
    let (s, _shutdown) = shared(&name_server(1).await, 0);
    let on = ProxyConfig::from_json(
        r#"{"clusters":[{"name":"c","namesrv":["127.0.0.1:1"]}],"access_log":"stdout"}"#,
    )
    .unwrap();
    s.access.apply(&on);
    let mut c = client(&s);
    assert_eq!(lookup(&mut c, "T", 1).await.code, resp::SUCCESS);
    assert_eq!(lookup(&mut c, "U", 2).await.code, resp::SYSTEM_ERROR);
    let text = String::from_utf8(s.access.take(std::time::Duration::ZERO)).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let [ok, failed] = &lines[..] else {
        panic!("{text}")
    };
    for (l, topic, opaque) in [(ok, "T", 1), (failed, "U", 2)] {
        assert_eq!(l["request"], "GET_ROUTEINFO_BY_TOPIC");
        assert_eq!((&l["topic"], &l["opaque"]), (&topic.into(), &opaque.into()));
        assert_eq!(l["broker"], serde_json::Value::Null, "the name-server face");
        assert!(l["bytes_out"].as_u64().unwrap() > 0);
    }
    assert_eq!(ok["response_code"], resp::SUCCESS);
    assert_eq!(ok["local_reply"], serde_json::Value::Null);
    assert_eq!(failed["response_code"], resp::SYSTEM_ERROR);
    assert_eq!(failed["local_reply"], "unavailable");
}
