//! The producer against fake name servers and brokers on loopback (plain TCP and TLS).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::codec::frame::split;
use crate::codec::message::decode_batch;
use crate::codec::properties::find_property;

type Handler = dyn Fn(&RemotingCommand) -> Option<RemotingCommand> + Send + Sync;
type Requests = Arc<Mutex<Vec<RemotingCommand>>>;

/// A remoting server on loopback that records requests and answers through a handler
/// (`None`: never answer).
struct FakeServer {
    addr: String,
    requests: Requests,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeServer {
    async fn start(handler: Arc<Handler>, tls: Option<TlsAcceptor>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests: Requests = Arc::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (reqs, ts) = (requests.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (reqs, handler, tls) = (reqs.clone(), handler.clone(), tls.clone());
                let conn = tokio::spawn(async move {
                    match tls {
                        None => serve(sock, reqs, handler).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(sock).await {
                                serve(stream, reqs, handler).await;
                            }
                        }
                    }
                });
                ts.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        FakeServer {
            addr,
            requests,
            tasks,
        }
    }

    /// Closes the listener and every connection: the port now refuses connections.
    fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn requests(&self) -> Vec<RemotingCommand> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self, code: i32) -> usize {
        self.requests().iter().filter(|r| r.code == code).count()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    reqs: Requests,
    handler: Arc<Handler>,
) {
    let mut buf = BytesMut::new();
    loop {
        match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some(n)) = split(&buf, 64 << 20) {
            let frame = buf.split_to(n);
            let cmd = RemotingCommand::decode(&frame).unwrap();
            reqs.lock().unwrap().push(cmd.clone());
            if let Some(mut resp) = handler(&cmd) {
                resp.opaque = cmd.opaque;
                resp.flag |= 1;
                let out = resp.encode(SerializeType::Json).unwrap();
                if sock.write_all(&out).await.is_err() || sock.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

fn route_json(brokers: &[(&str, &str)]) -> String {
    let bds: Vec<String> = brokers
        .iter()
        .map(|(name, addr)| {
            format!(r#"{{"brokerAddrs":{{"0":"{addr}"}},"brokerName":"{name}","cluster":"C"}}"#)
        })
        .collect();
    let qds: Vec<String> = brokers
        .iter()
        .map(|(name, _)| {
            format!(r#"{{"brokerName":"{name}","perm":6,"readQueueNums":2,"writeQueueNums":2}}"#)
        })
        .collect();
    format!(
        r#"{{"brokerDatas":[{}],"queueDatas":[{}]}}"#,
        bds.join(","),
        qds.join(",")
    )
}

/// A name server answering every topic with `route` (shared so tests can change it), and 17
/// for topics starting with "missing".
async fn fake_namesrv(route: Arc<Mutex<String>>, tls: Option<TlsAcceptor>) -> FakeServer {
    let handler = move |cmd: &RemotingCommand| {
        assert_eq!(cmd.code, request::GET_ROUTEINFO_BY_TOPIC);
        let topic = cmd.ext("topic").unwrap_or_default();
        if topic.starts_with("missing") {
            return Some(RemotingCommand::response_to(
                0,
                response::TOPIC_NOT_EXIST,
                Some(format!(
                    "No topic route info in name server for the topic: {topic}"
                )),
            ));
        }
        let mut r = RemotingCommand::response_to(0, 0, None);
        r.body = route.lock().unwrap().clone().into_bytes();
        Some(r)
    };
    FakeServer::start(Arc::new(handler), tls).await
}

/// A broker answering every send with `code`, counting queue offsets.
async fn fake_broker(code: i32, tls: Option<TlsAcceptor>) -> FakeServer {
    let offset = Arc::new(AtomicUsize::new(0));
    let handler = move |cmd: &RemotingCommand| {
        let n = if cmd.code == request::SEND_BATCH_MESSAGE {
            decode_batch(&cmd.body).unwrap().len()
        } else {
            1
        };
        let first = offset.fetch_add(n, Ordering::SeqCst);
        let mut r = RemotingCommand::response_to(0, code, Some("fake".into()));
        r.ext_fields.insert("msgId".into(), "OFFSETID".into());
        r.ext_fields
            .insert("queueId".into(), cmd.ext("e").unwrap_or("0").into());
        r.ext_fields.insert("queueOffset".into(), first.to_string());
        Some(r)
    };
    FakeServer::start(Arc::new(handler), tls).await
}

async fn silent_server() -> FakeServer {
    FakeServer::start(Arc::new(|_: &RemotingCommand| None), None).await
}

/// A name server and brokers named broker-a, broker-b... answering with the given codes.
async fn cluster(codes: &[i32]) -> (FakeServer, Vec<FakeServer>, Arc<Mutex<String>>) {
    let mut brokers = Vec::new();
    for &c in codes {
        brokers.push(fake_broker(c, None).await);
    }
    let names: Vec<String> = (0..codes.len())
        .map(|i| format!("broker-{}", (b'a' + i as u8) as char))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .zip(&brokers)
        .map(|(n, b)| (n.as_str(), b.addr.as_str()))
        .collect();
    let route = Arc::new(Mutex::new(route_json(&pairs)));
    let ns = fake_namesrv(route.clone(), None).await;
    (ns, brokers, route)
}

fn config(nameservers: Vec<String>) -> ProducerConfig {
    ProducerConfig {
        nameservers,
        timeout: Duration::from_millis(500),
        ..Default::default()
    }
}

fn producer(cfg: ProducerConfig) -> Producer {
    Producer::new(cfg, &tokio::runtime::Handle::current()).unwrap()
}

fn stat(p: &Producer, name: &str) -> i64 {
    p.stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or(0)
}

fn msg(p: &Producer, body: &'static [u8]) -> Message {
    p.message(
        Bytes::from_static(body),
        Some("k1"),
        Some("t1"),
        [("color", "blue")],
    )
    .unwrap()
}

/// A port nothing listens on.
async fn refused_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[tokio::test]
async fn send_builds_a_v2_request_and_reads_the_result() {
    let (ns, brokers, _) = cluster(&[0]).await;
    let p = producer(config(vec![ns.addr.clone()]));
    let m = msg(&p, b"hello");
    let r = p.send("T1", &m).await.unwrap();
    assert_eq!(r.broker_name, "broker-a");
    assert_eq!(r.topic, "T1");
    assert_eq!(r.msg_id, m.uniq_id);
    assert_eq!(r.offset_msg_id, "OFFSETID");
    assert_eq!(r.queue_offset, 0);
    assert_eq!(r.status, 0);
    let reqs = brokers[0].requests();
    assert_eq!(reqs.len(), 1);
    let q = &reqs[0];
    assert_eq!(q.code, request::SEND_MESSAGE_V2);
    assert_eq!(q.body, b"hello");
    let expect = [
        ("a", "rmqfast_producer"),
        ("b", "T1"),
        ("c", "TBW102"),
        ("d", "4"),
        ("f", "0"),
        ("h", "0"),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
        ("n", "broker-a"),
    ];
    for (k, v) in expect {
        assert_eq!(q.ext(k), Some(v), "{k}");
    }
    assert_eq!(q.ext("e"), Some(r.queue_id.to_string().as_str()));
    let g: u64 = q.ext("g").unwrap().parse().unwrap();
    assert!(g.abs_diff(message::now_ms()) < 60_000);
    let props = q.ext("i").unwrap();
    assert_eq!(find_property(props, "KEYS"), Some("k1"));
    assert_eq!(find_property(props, "TAGS"), Some("t1"));
    assert_eq!(find_property(props, "WAIT"), Some("true"));
    assert_eq!(find_property(props, "color"), Some("blue"));
    assert_eq!(find_property(props, "UNIQ_KEY"), Some(m.uniq_id.as_str()));
    assert_eq!(q.language, LanguageCode::PYTHON);
    assert!(!q.ext_fields.contains_key("AccessKey"));
    assert_eq!(stat(&p, "requests"), 1);
    assert_eq!(stat(&p, "messages_sent"), 1);
    assert_eq!(stat(&p, "route_lookups"), 1);
    assert_eq!(stat(&p, "connections"), 2);
    p.close();
    assert_eq!(stat(&p, "connections"), 0);
}

#[tokio::test]
async fn round_robin_over_queues_of_all_brokers() {
    let (ns, brokers, _) = cluster(&[0, 0]).await;
    let p = producer(config(vec![ns.addr.clone()]));
    let mut seen = Vec::new();
    for _ in 0..8 {
        let r = p.send("T", &msg(&p, b"x")).await.unwrap();
        seen.push((r.broker_name, r.queue_id));
    }
    // 4 queues in order a0 a1 b0 b1, starting anywhere: a cycle of 4.
    for w in 0..4 {
        assert_eq!(seen[w], seen[w + 4]);
    }
    let mut distinct = seen[..4].to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4);
    assert_eq!(brokers[0].requests().len(), 4);
    assert_eq!(brokers[1].requests().len(), 4);
}

#[tokio::test]
async fn retryable_code_moves_to_another_broker() {
    let (ns, brokers, _) = cluster(&[response::SYSTEM_BUSY, 0]).await;
    let p = producer(config(vec![ns.addr.clone()]));
    for _ in 0..4 {
        let r = p.send("T", &msg(&p, b"x")).await.unwrap();
        assert_eq!(r.broker_name, "broker-b");
    }
    // Every attempt on broker-a was followed by exactly one retry on broker-b.
    let busy = brokers[0].requests().len() as i64;
    assert!(busy > 0);
    assert_eq!(stat(&p, "retries"), busy);
    assert_eq!(stat(&p, "errors_code_2"), busy);
    assert_eq!(brokers[1].requests().len(), 4);
}

#[tokio::test]
async fn non_retryable_code_fails_at_once() {
    let (ns, brokers, _) = cluster(&[response::MESSAGE_ILLEGAL]).await;
    let p = producer(config(vec![ns.addr.clone()]));
    let e = p.send("T", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Response);
    assert_eq!(e.code, Some(13));
    assert!(!e.retryable());
    assert!(e.message.contains("13 MESSAGE_ILLEGAL"), "{}", e.message);
    assert!(e.message.contains("broker-a"), "{}", e.message);
    assert_eq!(brokers[0].requests().len(), 1);
    assert_eq!(stat(&p, "retries"), 0);
}

#[tokio::test]
async fn retries_are_bounded_on_a_single_broker() {
    let (ns, brokers, _) = cluster(&[response::NO_PERMISSION]).await;
    let p = producer(ProducerConfig {
        retry_times: 3,
        ..config(vec![ns.addr.clone()])
    });
    let e = p.send("T", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.code, Some(16));
    assert!(e.retryable());
    assert!(e.message.contains("after 4 attempts"), "{}", e.message);
    assert_eq!(brokers[0].requests().len(), 4);
    assert_eq!(stat(&p, "retries"), 3);
    assert_eq!(stat(&p, "send_failures"), 1);
}

#[tokio::test]
async fn stored_but_not_flushed_counts_as_sent() {
    let (ns, _brokers, _) = cluster(&[response::FLUSH_DISK_TIMEOUT]).await;
    let p = producer(config(vec![ns.addr.clone()]));
    let r = p.send("T", &msg(&p, b"x")).await.unwrap();
    assert_eq!(r.status, 10);
    assert_eq!(stat(&p, "sent_flush_disk_timeout"), 1);
    assert_eq!(stat(&p, "retries"), 0);
}

#[tokio::test]
async fn timeout_names_the_broker_and_retries_elsewhere() {
    let silent = silent_server().await;
    let route = Arc::new(Mutex::new(route_json(&[("broker-a", &silent.addr)])));
    let ns = fake_namesrv(route.clone(), None).await;
    let p = producer(ProducerConfig {
        retry_times: 0,
        timeout: Duration::from_millis(200),
        ..config(vec![ns.addr.clone()])
    });
    let started = std::time::Instant::now();
    let e = p.send("T", &msg(&p, b"x")).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.code, None);
    assert!(e.retryable());
    assert!(e.message.contains("broker-a"), "{}", e.message);
    assert!(e.message.contains(&silent.addr), "{}", e.message);
    assert!(e.message.contains("200 ms"), "{}", e.message);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(stat(&p, "timeouts"), 1);

    // With a second broker, the retry lands there.
    let ok = fake_broker(0, None).await;
    *route.lock().unwrap() = route_json(&[("broker-a", &silent.addr), ("broker-b", &ok.addr)]);
    let p = producer(ProducerConfig {
        retry_times: 1,
        timeout: Duration::from_millis(200),
        ..config(vec![ns.addr.clone()])
    });
    for _ in 0..3 {
        let r = p.send("T", &msg(&p, b"x")).await.unwrap();
        assert_eq!(r.broker_name, "broker-b");
    }
}

#[tokio::test]
async fn namesrv_failover_when_the_first_refuses() {
    let (ns, brokers, _) = cluster(&[0]).await;
    let dead = refused_addr().await;
    let p = producer(config(vec![dead.clone(), ns.addr.clone()]));
    let (r, stale) = p.route("T").await.unwrap();
    assert!(!stale);
    assert_eq!(r.publish.brokers[0].addr, brokers[0].addr);
    assert_eq!(stat(&p, "namesrv_failovers"), 1);
    // The name server that worked is remembered: the next lookup goes straight to it.
    p.route("T2").await.unwrap();
    assert_eq!(stat(&p, "namesrv_failovers"), 1);
    assert_eq!(ns.count(request::GET_ROUTEINFO_BY_TOPIC), 2);

    // All name servers down and nothing cached: a retryable connection error naming them.
    let p = producer(config(vec![dead.clone(), refused_addr().await]));
    let e = p.send("T", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connection);
    assert!(e.retryable());
    assert!(e.message.contains(&dead), "{}", e.message);
    assert_eq!(stat(&p, "route_lookup_failures"), 1);
}

#[tokio::test]
async fn unknown_topic_is_final() {
    let (ns, _brokers, _) = cluster(&[0]).await;
    let p = producer(config(vec![ns.addr.clone()]));
    let e = p.send("missing_topic", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NameServer);
    assert_eq!(e.code, Some(17));
    assert!(!e.retryable());
    // What is missing, what to do, and what the name server said.
    for part in [
        "topic \"missing_topic\" does not exist: create it (mqadmin updateTopic), or enable \
         auto_create_topic if the brokers have autoCreateTopicEnable=true; ",
        &format!("name server {} answered 17 TOPIC_NOT_EXIST", ns.addr),
    ] {
        assert!(e.message.contains(part), "{part:?} not in {:?}", e.message);
    }
    // Without auto_create_topic, TBW102 is never asked for.
    assert_eq!(stat(&p, "default_topic_routes"), 0);
    // Invalid topic names never reach the network.
    let e = p.send("bad topic", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert_eq!(ns.requests().len(), 1);
}

#[tokio::test]
async fn routes_refresh_and_survive_name_server_outage() {
    let (ns, brokers, route) = cluster(&[0, 0]).await;
    *route.lock().unwrap() = route_json(&[("broker-a", &brokers[0].addr)]);
    let p = producer(ProducerConfig {
        route_refresh_interval: Duration::from_millis(100),
        ..config(vec![ns.addr.clone()])
    });
    let (r, _) = p.route("T").await.unwrap();
    assert_eq!(r.publish.brokers.len(), 1);

    // The background task picks up a new broker.
    *route.lock().unwrap() = route_json(&[
        ("broker-a", &brokers[0].addr),
        ("broker-b", &brokers[1].addr),
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (r, _) = p.route("T").await.unwrap();
        if r.publish.brokers.len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "route never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stat(&p, "route_refreshes") >= 1);

    // Name server gone: refreshes fail, the cached route keeps serving.
    ns.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stat(&p, "route_refresh_failures") == 0 {
        assert!(std::time::Instant::now() < deadline, "refresh never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (r, stale) = p.route("T").await.unwrap();
    assert!(stale);
    assert_eq!(r.publish.brokers.len(), 2);
    p.send("T", &msg(&p, b"x")).await.unwrap();
    assert!(stat(&p, "cached_route_served") >= 1);

    // close() stops the refresh task.
    p.close();
    let n = stat(&p, "route_refresh_failures");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(stat(&p, "route_refresh_failures"), n);
    let e = p.send("T", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed);
    assert!(!e.retryable());
}

#[tokio::test]
async fn batch_is_split_below_the_limit() {
    let (ns, brokers, _) = cluster(&[0]).await;
    let p = producer(ProducerConfig {
        max_message_size: 64 * 1024,
        ..config(vec![ns.addr.clone()])
    });
    let mut enc = p.batch_encoder(0);
    let body = vec![b'z'; 1000];
    for i in 0..300 {
        let key = format!("key-{i}");
        enc.push(&body, [("KEYS", key.as_str())]).unwrap();
    }
    let batch = enc.finish();
    let results = p.send_batch("T", &batch).await.unwrap();
    assert_eq!(results.len(), batch.chunks.len());
    assert!(results.len() >= 5, "{}", results.len());
    let reqs = brokers[0].requests();
    assert_eq!(reqs.len(), results.len());
    let mut keys = Vec::new();
    for (req, res) in reqs.iter().zip(&results) {
        assert_eq!(req.code, request::SEND_BATCH_MESSAGE);
        assert_eq!(req.ext("m"), Some("true"));
        assert!(req.body.len() <= 64 * 1024);
        assert_eq!(find_property(req.ext("i").unwrap(), "WAIT"), Some("true"));
        let msgs = decode_batch(&req.body).unwrap();
        assert_eq!(res.msg_id.split(',').count(), msgs.len());
        for m in msgs {
            assert_eq!(m.body.len(), 1000);
            keys.push(m.property("KEYS").unwrap().to_owned());
        }
    }
    let want: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    assert_eq!(keys, want);
    assert_eq!(stat(&p, "messages_sent"), 300);
}

#[tokio::test]
async fn requests_are_signed() {
    let (ns, brokers, _) = cluster(&[0]).await;
    let p = producer(ProducerConfig {
        credentials: Some(("ak".into(), "sk".into())),
        ..config(vec![ns.addr.clone()])
    });
    p.send("T", &msg(&p, b"signed body")).await.unwrap();
    let check = Credentials::new("ak", "sk");
    let all: Vec<RemotingCommand> = ns
        .requests()
        .into_iter()
        .chain(brokers[0].requests())
        .collect();
    assert_eq!(all.len(), 2);
    for req in all {
        assert_eq!(req.ext("AccessKey"), Some("ak"));
        // The signature survives the JSON round trip: recomputed from what arrived.
        assert_eq!(
            req.ext("Signature").unwrap(),
            check.signature(&req.ext_fields, &req.body)
        );
    }
}

#[tokio::test]
async fn many_requests_in_flight_on_one_connection() {
    let (ns, _brokers, _) = cluster(&[0]).await;
    let p = producer(config(vec![ns.addr.clone()]));
    let mut handles = Vec::new();
    for _ in 0..200 {
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let m = msg(&p, b"concurrent");
            p.send("T", &m).await.map(|r| (r.msg_id, m.uniq_id))
        }));
    }
    for h in handles {
        let (got, want) = h.await.unwrap().unwrap();
        assert_eq!(got, want);
    }
    assert_eq!(stat(&p, "connects"), 2);
    assert_eq!(stat(&p, "route_lookups"), 1);
}

#[tokio::test]
async fn config_errors_name_the_field() {
    let bad = |cfg: ProducerConfig| ProducerConfig::validate(&cfg).unwrap_err();
    assert!(bad(config(vec![])).starts_with("nameservers:"));
    assert!(bad(config(vec!["nohost".into()])).starts_with("nameservers[0]:"));
    assert!(bad(config(vec!["h:99999".into()])).starts_with("nameservers[0]:"));
    let ok = || config(vec!["127.0.0.1:9876".into()]);
    assert!(bad(ProducerConfig {
        producer_group: "a b".into(),
        ..ok()
    })
    .starts_with("producer_group:"));
    assert!(bad(ProducerConfig {
        timeout: Duration::ZERO,
        ..ok()
    })
    .starts_with("timeout:"));
    assert!(bad(ProducerConfig {
        max_message_size: 0,
        ..ok()
    })
    .starts_with("max_message_size:"));
    assert!(bad(ProducerConfig {
        credentials: Some(("".into(), "x".into())),
        ..ok()
    })
    .starts_with("access_key:"));
    assert!(ok().validate().is_ok());
}

const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/producer/testdata/ca.pem");

/// A TLS acceptor with the test server certificate (SAN IP:127.0.0.1, DNS:localhost), signed by
/// testdata/ca.pem.
fn test_acceptor() -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/producer/testdata");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

async fn tls_cluster() -> (FakeServer, FakeServer) {
    let acceptor = test_acceptor();
    let broker = fake_broker(0, Some(acceptor.clone())).await;
    let route = Arc::new(Mutex::new(route_json(&[("broker-a", &broker.addr)])));
    let ns = fake_namesrv(route, Some(acceptor)).await;
    (ns, broker)
}

fn tls_config(ns: &FakeServer, opts: TlsOptions) -> ProducerConfig {
    ProducerConfig {
        tls: Some(opts),
        ..config(vec![ns.addr.clone()])
    }
}

fn with_ca(server_name: Option<&str>) -> TlsOptions {
    TlsOptions {
        ca_file: Some(TEST_CA.into()),
        server_name: server_name.map(str::to_owned),
        ..Default::default()
    }
}

#[tokio::test]
async fn tls_verifies_against_the_given_ca() {
    let (ns, broker) = tls_cluster().await;
    let p = producer(tls_config(&ns, with_ca(None)));
    let r = p.send("T", &msg(&p, b"over tls")).await.unwrap();
    assert_eq!(r.broker_name, "broker-a");
    assert_eq!(broker.requests()[0].body, b"over tls");
    assert_eq!(stat(&p, "tls_insecure_skip_verify"), 0);

    // The DNS name in the certificate works as an override; a name it lacks does not.
    let p = producer(tls_config(&ns, with_ca(Some("localhost"))));
    p.send("T", &msg(&p, b"x")).await.unwrap();
    let p = producer(tls_config(&ns, with_ca(Some("mq.example.com"))));
    let e = p.send("T", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Certificate, "{e:?}");
    assert!(e.message.contains("not valid for name"), "{}", e.message);
}

#[tokio::test]
async fn tls_refuses_an_unknown_issuer_unless_told_not_to_verify() {
    let (ns, broker) = tls_cluster().await;
    // Default trust (Mozilla roots): the test CA is unknown. Not retryable: a retry cannot fix it.
    let p = producer(tls_config(&ns, TlsOptions::default()));
    let e = p.send("T", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Certificate, "{e:?}");
    assert!(!e.retryable());
    assert!(e.message.contains("UnknownIssuer"), "{}", e.message);
    assert!(e.message.contains(&ns.addr), "{}", e.message);
    assert_eq!(stat(&p, "tls_handshake_failures"), 1);
    assert!(broker.requests().is_empty());

    let p = producer(tls_config(
        &ns,
        TlsOptions {
            insecure_skip_verify: true,
            ..Default::default()
        },
    ));
    p.send("T", &msg(&p, b"unverified")).await.unwrap();
    assert_eq!(stat(&p, "tls_insecure_skip_verify"), 1);
    assert!(p.tls_insecure());

    // A plain-TCP client gets nowhere with a TLS server: a retryable failure.
    let p = producer(ProducerConfig {
        timeout: Duration::from_millis(300),
        ..config(vec![ns.addr.clone()])
    });
    let e = p.route("T").await.unwrap_err();
    assert!(e.retryable(), "{e:?}");
}

/// A name server that knows exactly the topics of `routes` (topic -> route JSON) and answers 17
/// for any other; a topic mapped to "" gets no answer at all.
async fn table_namesrv(routes: Arc<Mutex<HashMap<String, String>>>) -> FakeServer {
    let handler = move |cmd: &RemotingCommand| {
        assert_eq!(cmd.code, request::GET_ROUTEINFO_BY_TOPIC);
        let topic = cmd.ext("topic").unwrap_or_default();
        match routes.lock().unwrap().get(topic) {
            Some(json) if json.is_empty() => None,
            Some(json) => {
                let mut r = RemotingCommand::response_to(0, 0, None);
                r.body = json.clone().into_bytes();
                Some(r)
            }
            None => Some(RemotingCommand::response_to(
                0,
                response::TOPIC_NOT_EXIST,
                Some(format!(
                    "No topic route info in name server for the topic: {topic}"
                )),
            )),
        }
    };
    FakeServer::start(Arc::new(handler), None).await
}

fn topics_asked(ns: &FakeServer) -> Vec<String> {
    ns.requests()
        .iter()
        .map(|r| r.ext("topic").unwrap_or_default().to_owned())
        .collect()
}

fn auto_create(ns: &FakeServer) -> ProducerConfig {
    ProducerConfig {
        auto_create_topic: true,
        ..config(vec![ns.addr.clone()])
    }
}

#[tokio::test]
async fn auto_create_topic_sends_on_the_default_route_until_the_topic_is_routed() {
    let (a, b) = (fake_broker(0, None).await, fake_broker(0, None).await);
    // TBW102 as brokers with autoCreateTopicEnable register it (perm 7, 8 queues), except that
    // broker-b reads only 2: Java caps each broker at min(4, readQueueNums).
    let tbw102 = format!(
        r#"{{"brokerDatas":[
            {{"brokerAddrs":{{"0":"{}"}},"brokerName":"broker-a","cluster":"C"}},
            {{"brokerAddrs":{{"0":"{}"}},"brokerName":"broker-b","cluster":"C"}}],
          "queueDatas":[
            {{"brokerName":"broker-a","perm":7,"readQueueNums":8,"writeQueueNums":8}},
            {{"brokerName":"broker-b","perm":7,"readQueueNums":2,"writeQueueNums":8}}]}}"#,
        a.addr, b.addr
    );
    let routes = Arc::new(Mutex::new(HashMap::from([(
        DEFAULT_TOPIC.to_owned(),
        tbw102,
    )])));
    let ns = table_namesrv(routes.clone()).await;
    // No background refresh during the test: refresh_routes() is called by hand.
    let p = producer(ProducerConfig {
        route_refresh_interval: Duration::from_secs(3600),
        ..auto_create(&ns)
    });

    let mut seen = Vec::new();
    for _ in 0..6 {
        let r = p.send("NewTopic", &msg(&p, b"first")).await.unwrap();
        assert_eq!(r.topic, "NewTopic");
        seen.push((r.broker_name, r.queue_id));
    }
    seen.sort();
    let want: Vec<(String, i32)> = [("broker-a", 0..4), ("broker-b", 0..2)]
        .into_iter()
        .flat_map(|(n, qs)| qs.map(move |q| (n.to_owned(), q)))
        .collect();
    assert_eq!(seen, want);
    // The topic first, then TBW102; once: the borrowed route is cached.
    assert_eq!(topics_asked(&ns), ["NewTopic", DEFAULT_TOPIC]);
    // Each send names the topic and the default topic the broker creates it from.
    for req in a.requests().iter().chain(&b.requests()) {
        assert_eq!(req.ext("b"), Some("NewTopic"));
        assert_eq!(req.ext("c"), Some("TBW102"));
        assert_eq!(req.ext("d"), Some("4"));
    }
    let (r, stale) = p.route("NewTopic").await.unwrap();
    assert!(r.from_default_topic && !stale);
    let nums: Vec<_> = r
        .data
        .queue_datas
        .iter()
        .map(|q| (q.read_queue_nums, q.write_queue_nums))
        .collect();
    assert_eq!(nums, [(4, 4), (2, 2)]);
    assert_eq!(stat(&p, "default_topic_routes"), 1);
    assert_eq!(stat(&p, "route_lookups"), 1);

    // A refresh while the name server still does not know the topic: TBW102's route again.
    p.refresh_routes().await;
    assert_eq!(
        topics_asked(&ns)[2..],
        ["NewTopic".to_owned(), DEFAULT_TOPIC.to_owned()]
    );
    let (r, stale) = p.route("NewTopic").await.unwrap();
    assert!(r.from_default_topic && !stale);
    assert_eq!(stat(&p, "default_topic_routes"), 2);
    assert_eq!(stat(&p, "route_refreshes"), 1);

    // The brokers created the topic (broker-a alone here) and registered it: the next refresh
    // replaces the borrowed route with the topic's own, and TBW102 is no longer asked for.
    routes
        .lock()
        .unwrap()
        .insert("NewTopic".to_owned(), route_json(&[("broker-a", &a.addr)]));
    p.refresh_routes().await;
    let (r, stale) = p.route("NewTopic").await.unwrap();
    assert!(!r.from_default_topic && !stale);
    assert_eq!(r.publish.brokers.len(), 1);
    assert_eq!(r.publish.queues.len(), 2);
    assert_eq!(topics_asked(&ns).len(), 5);
    let before_b = b.requests().len();
    for _ in 0..4 {
        let r = p.send("NewTopic", &msg(&p, b"later")).await.unwrap();
        assert_eq!(r.broker_name, "broker-a");
    }
    assert_eq!(b.requests().len(), before_b);
    // Known now: later refreshes never fall back, even if the name server forgets it.
    routes.lock().unwrap().remove("NewTopic");
    p.refresh_routes().await;
    let (r, stale) = p.route("NewTopic").await.unwrap();
    assert!(!r.from_default_topic && stale);
    assert_eq!(stat(&p, "default_topic_routes"), 2);
}

#[tokio::test]
async fn auto_create_topic_for_a_topic_that_exists_uses_its_route() {
    let (ns, brokers, _) = cluster(&[0]).await;
    let p = producer(auto_create(&ns));
    let r = p.send("T", &msg(&p, b"x")).await.unwrap();
    assert_eq!(r.broker_name, "broker-a");
    assert!(!p.route("T").await.unwrap().0.from_default_topic);
    assert_eq!(ns.count(request::GET_ROUTEINFO_BY_TOPIC), 1);
    assert_eq!(brokers[0].requests().len(), 1);
    assert_eq!(stat(&p, "default_topic_routes"), 0);
}

#[tokio::test]
async fn auto_create_topic_without_a_default_topic_route_says_why() {
    // No broker has autoCreateTopicEnable: the name server routes neither topic.
    let ns = table_namesrv(Arc::default()).await;
    let p = producer(auto_create(&ns));
    let e = p.send("NewTopic", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NameServer);
    assert_eq!(e.code, Some(17));
    assert!(!e.retryable());
    for part in [
        "topic \"NewTopic\" does not exist and no broker offers auto-creation (TBW102 route \
         missing: autoCreateTopicEnable is off on every broker): create the topic (mqadmin \
         updateTopic) or set autoCreateTopicEnable=true on the brokers; ",
        &format!("name server {} answered 17 TOPIC_NOT_EXIST", ns.addr),
        "for the topic: TBW102",
    ] {
        assert!(e.message.contains(part), "{part:?} not in {:?}", e.message);
    }
    assert_eq!(topics_asked(&ns), ["NewTopic", DEFAULT_TOPIC]);
    // Nothing is cached: the next send asks again.
    let e2 = p.send("NewTopic", &msg(&p, b"x")).await.unwrap_err();
    assert_eq!(e2.message, e.message);
    assert_eq!(ns.requests().len(), 4);
    assert_eq!(stat(&p, "route_lookup_failures"), 2);
    assert_eq!(stat(&p, "default_topic_routes"), 0);
}

#[tokio::test]
async fn auto_create_topic_when_the_default_route_cannot_be_fetched() {
    // The name server answers 17 for the topic but never answers for TBW102: a lookup failure
    // like any other (retryable), saying what was being fetched.
    let routes = Arc::new(Mutex::new(HashMap::from([(
        DEFAULT_TOPIC.to_owned(),
        String::new(),
    )])));
    let ns = table_namesrv(routes).await;
    let p = producer(ProducerConfig {
        timeout: Duration::from_millis(200),
        ..auto_create(&ns)
    });
    let e = p.route("NewTopic").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connection, "{e:?}");
    assert!(e.retryable());
    assert!(e.message.contains("200 ms"), "{}", e.message);
    assert!(
        e.message.starts_with(
            "topic \"NewTopic\" does not exist and the route of TBW102, to create it from, \
             could not be fetched: "
        ),
        "{}",
        e.message
    );
}
