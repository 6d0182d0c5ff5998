//! The relay's I/O loops over in-memory pipes (`tokio::io::duplex`): a test client on one
//! side, a fake broker on the other, the real `serve` between them.

use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::*;
use crate::codec::codes::{request as rc, response as resp};
use crate::codec::{RemotingCommand, SerializeType};

/// Long enough that no answer a test waits for times out, however loaded the machine.
const LIMITS: Limits = Limits {
    request_timeout: Duration::from_secs(30),
    drain_timeout: Duration::from_secs(30),
    idle_timeout: None,
};

/// Each connection the relay opens to the "broker" shows up here as the broker's end.
type BrokerEnds = mpsc::UnboundedReceiver<DuplexStream>;

struct Harness {
    client: DuplexStream,
    brokers: BrokerEnds,
    stats: Arc<ProxyStats>,
    shutdown: watch::Sender<bool>,
    served: tokio::task::JoinHandle<()>,
    /// What a reload replaces: storing here reaches the open connection.
    settings: Arc<Swap<RelaySettings>>,
}

fn split(s: DuplexStream) -> (BoxRead, BoxWrite) {
    let (r, w) = tokio::io::split(s);
    (Box::new(r), Box::new(w))
}

/// Starts `serve` for one client; the connector hands out duplex pipes, or fails with
/// `refuse` when given.
fn start(refuse: Option<&'static str>) -> Harness {
    start_with(refuse, LIMITS)
}

fn start_with(refuse: Option<&'static str>, limits: Limits) -> Harness {
    start_guarded(refuse, limits, Duration::from_secs(30))
}

fn start_guarded(refuse: Option<&'static str>, limits: Limits, frame_timeout: Duration) -> Harness {
    let (ends_tx, brokers) = mpsc::unbounded_channel();
    let connect: Connector = Arc::new(move || {
        let ends_tx = ends_tx.clone();
        Box::pin(async move {
            if let Some(why) = refuse {
                return Err(why.to_string());
            }
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            ends_tx.send(theirs).map_err(|_| "test over".to_string())?;
            Ok(split(ours))
        })
    });
    let stats = Arc::new(ProxyStats::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let settings = Arc::new(Swap::new(RelaySettings {
        limits,
        policy: Arc::new(crate::proxy::policy::Policy::data_path()),
    }));
    let env = RelayEnv {
        broker: Arc::from("broker-a:10911"),
        connect,
        stats: stats.clone(),
        settings: settings.clone(),
        max_frame_size: 1 << 20,
        read_limits: ReadLimits {
            frame_timeout: Some(frame_timeout),
            budget: Some(crate::net::frames::FrameBudget::new(1 << 20)),
            events: stats.clone(),
        },
        max_buffered_frames: 64,
        client: Default::default(),
        shutdown: shutdown_rx,
        access: Arc::new(crate::proxy::access::AccessLog::off(stats.clone())),
        peer: crate::proxy::access::Peer::unknown(),
    };
    let (client, proxy_side) = tokio::io::duplex(1 << 16);
    let served = tokio::spawn(serve(env, split(proxy_side)));
    Harness {
        client,
        brokers,
        stats,
        shutdown,
        served,
        settings,
    }
}

fn request(code: i32, opaque: i32, oneway: bool) -> Vec<u8> {
    let mut c = RemotingCommand::request(code);
    c.opaque = opaque;
    c.flag = if oneway { 2 } else { 0 };
    c.body = b"payload".to_vec();
    c.encode(SerializeType::RocketMq).unwrap()
}

fn response(opaque: i32, code: i32) -> Vec<u8> {
    RemotingCommand::response_to(opaque, code, None)
        .encode(SerializeType::Json)
        .unwrap()
}

/// The next frame from `s`, within 5 s; None when `s` closed.
async fn next(s: &mut DuplexStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let read = async {
        loop {
            if let Ok(Some(n)) = crate::codec::frame::split(buf, 1 << 20) {
                return Some(buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a frame or a close within 5 s")
}

async fn next_cmd(s: &mut DuplexStream, buf: &mut Vec<u8>) -> Option<RemotingCommand> {
    next(s, buf)
        .await
        .map(|f| RemotingCommand::decode(&f).unwrap())
}

async fn broker(h: &mut Harness) -> DuplexStream {
    tokio::time::timeout(Duration::from_secs(5), h.brokers.recv())
        .await
        .expect("the relay connects within 5 s")
        .expect("a broker connection")
}

#[tokio::test]
async fn frames_go_through_unchanged_both_ways() {
    let mut h = start(None);
    let (mut cbuf, mut bbuf) = (Vec::new(), Vec::new());
    let send = request(rc::SEND_MESSAGE_V2, 41, false);
    h.client.write_all(&send).await.unwrap();
    let mut b = broker(&mut h).await;
    assert_eq!(
        next(&mut b, &mut bbuf).await.unwrap(),
        send,
        "the original bytes"
    );
    // The broker asks the client something (a transaction check) and answers the send.
    let check = request(rc::CHECK_TRANSACTION_STATE, 900, false);
    b.write_all(&check).await.unwrap();
    b.write_all(&response(41, resp::SUCCESS)).await.unwrap();
    assert_eq!(next(&mut h.client, &mut cbuf).await.unwrap(), check);
    let answer = next_cmd(&mut h.client, &mut cbuf).await.unwrap();
    assert_eq!((answer.opaque, answer.code), (41, resp::SUCCESS));
    // The client's answer to the check goes back to the broker.
    let check_answer = response(900, resp::SUCCESS);
    h.client.write_all(&check_answer).await.unwrap();
    assert_eq!(next(&mut b, &mut bbuf).await.unwrap(), check_answer);
    let c = &h.stats.c;
    assert_eq!(c.send_message_v2.load(Relaxed), 1);
    assert_eq!(c.broker_request.load(Relaxed), 1);
    assert_eq!(c.upstream_connections_active.load(Relaxed), 1);
    assert_eq!(c.request_active.load(Relaxed), 0);
    // The client leaves: the broker connection closes and every gauge is back to zero.
    drop(h.client);
    assert!(next(&mut b, &mut bbuf).await.is_none());
    h.served.await.unwrap();
    assert_eq!(c.upstream_connections_active.load(Relaxed), 0);
    assert_eq!(c.connections_active.load(Relaxed), 0);
}

#[tokio::test]
async fn a_broker_that_closes_closes_the_client() {
    let mut h = start(None);
    let mut cbuf = Vec::new();
    h.client
        .write_all(&request(rc::HEART_BEAT, 1, false))
        .await
        .unwrap();
    drop(broker(&mut h).await);
    assert!(next(&mut h.client, &mut cbuf).await.is_none());
    h.served.await.unwrap();
    assert_eq!(h.stats.c.upstream_connections_active.load(Relaxed), 0);
}

#[tokio::test]
async fn an_unreachable_broker_answers_system_error_and_nothing_for_oneway() {
    let mut h = start(Some("connection refused"));
    let mut cbuf = Vec::new();
    h.client
        .write_all(&request(rc::END_TRANSACTION, 5, true))
        .await
        .unwrap();
    h.client
        .write_all(&request(rc::HEART_BEAT, 6, false))
        .await
        .unwrap();
    let r = next_cmd(&mut h.client, &mut cbuf).await.unwrap();
    assert_eq!((r.opaque, r.code), (6, resp::SYSTEM_ERROR));
    assert!(r.remark.unwrap().contains("connection refused"));
    assert_eq!(h.stats.c.local_reply_upstream_unavailable.load(Relaxed), 1);
    assert_eq!(h.stats.c.upstream_connect_failure.load(Relaxed), 1);
}

#[tokio::test]
async fn a_silent_broker_gets_the_client_system_busy_and_its_late_answer_is_dropped() {
    let mut h = start_with(
        None,
        Limits {
            request_timeout: Duration::from_millis(300),
            ..LIMITS
        },
    );
    let (mut cbuf, mut bbuf) = (Vec::new(), Vec::new());
    h.client
        .write_all(&request(rc::SEND_MESSAGE_V2, 77, false))
        .await
        .unwrap();
    let mut b = broker(&mut h).await;
    next(&mut b, &mut bbuf).await.unwrap();
    let busy = next_cmd(&mut h.client, &mut cbuf).await.unwrap();
    assert_eq!((busy.opaque, busy.code), (77, resp::SYSTEM_BUSY));
    // The broker answers after all, then asks the client something. Frames from the broker
    // are handled in order, so the question arriving means the late answer was dropped.
    b.write_all(&response(77, resp::SUCCESS)).await.unwrap();
    let check = request(rc::CHECK_TRANSACTION_STATE, 900, false);
    b.write_all(&check).await.unwrap();
    assert_eq!(next(&mut h.client, &mut cbuf).await.unwrap(), check);
    assert_eq!(h.stats.c.late_response.load(Relaxed), 1);
    assert_eq!(h.stats.c.local_reply_timeout.load(Relaxed), 1);
}

#[tokio::test]
async fn draining_answers_new_requests_busy_and_closes_after_the_last_answer() {
    let mut h = start(None);
    let (mut cbuf, mut bbuf) = (Vec::new(), Vec::new());
    h.client
        .write_all(&request(rc::SEND_MESSAGE_V2, 1, false))
        .await
        .unwrap();
    let mut b = broker(&mut h).await;
    next(&mut b, &mut bbuf).await.unwrap();
    h.shutdown.send(true).unwrap();
    h.client
        .write_all(&request(rc::SEND_MESSAGE_V2, 2, false))
        .await
        .unwrap();
    let busy = next_cmd(&mut h.client, &mut cbuf).await.unwrap();
    assert_eq!((busy.opaque, busy.code), (2, resp::SYSTEM_BUSY));
    b.write_all(&response(1, resp::SUCCESS)).await.unwrap();
    let r = next_cmd(&mut h.client, &mut cbuf).await.unwrap();
    assert_eq!((r.opaque, r.code), (1, resp::SUCCESS));
    assert!(
        next(&mut h.client, &mut cbuf).await.is_none(),
        "closed once drained"
    );
    h.served.await.unwrap();
}

#[tokio::test]
async fn garbage_from_the_client_closes_its_connection() {
    let mut h = start(None);
    let mut cbuf = Vec::new();
    h.client.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
    assert!(next(&mut h.client, &mut cbuf).await.is_none());
    h.served.await.unwrap();
    assert_eq!(h.stats.c.request_decoding_error.load(Relaxed), 1);
    assert!(
        h.brokers.try_recv().is_err(),
        "no broker connection was opened"
    );
}

#[tokio::test]
async fn a_frame_not_complete_within_frame_timeout_closes_the_connection() {
    let mut h = start_guarded(None, LIMITS, Duration::from_millis(200));
    let mut cbuf = Vec::new();
    let send = request(rc::SEND_MESSAGE_V2, 1, false);
    // All of the frame but its last byte, and then nothing.
    h.client.write_all(&send[..send.len() - 1]).await.unwrap();
    assert!(next(&mut h.client, &mut cbuf).await.is_none());
    h.served.await.unwrap();
    assert_eq!(h.stats.c.frame_timeout.load(Relaxed), 1);
    assert!(h.brokers.try_recv().is_err(), "nothing was forwarded");
}

#[tokio::test]
async fn bytes_that_never_complete_a_frame_do_not_hold_off_the_idle_timeout() {
    let mut h = start_guarded(
        None,
        Limits {
            idle_timeout: Some(Duration::from_millis(300)),
            ..LIMITS
        },
        Duration::from_secs(30),
    );
    // A frame announcing 1000 bytes, then one byte every 20 ms: the connection is closed by
    // the idle timeout although bytes keep coming (the frame timeout is far away).
    h.client.write_all(&1000i32.to_be_bytes()).await.unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if h.client.write_all(&[0]).await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("closed within 5 s");
    h.served.await.unwrap();
    assert_eq!(h.stats.c.connections_idle_closed.load(Relaxed), 1);
    assert_eq!(h.stats.c.frame_timeout.load(Relaxed), 0);
}

#[tokio::test]
async fn clients_that_send_one_request_and_leave_leave_no_upstream_connection_counted() {
    for i in 0..20 {
        let mut h = start(None);
        h.client
            .write_all(&request(rc::HEART_BEAT, i, false))
            .await
            .unwrap();
        let b = broker(&mut h).await;
        // The client leaves at once; every other time the broker goes first.
        if i % 2 == 1 {
            drop(b);
            drop(h.client);
        } else {
            drop(h.client);
            drop(b);
        }
        h.served.await.unwrap();
        let c = &h.stats.c;
        assert_eq!(c.upstream_connections_active.load(Relaxed), 0, "round {i}");
        assert_eq!(c.connections_active.load(Relaxed), 0, "round {i}");
        assert_eq!(c.request_active.load(Relaxed), 0, "round {i}");
    }
}

#[tokio::test]
async fn a_reloaded_policy_applies_to_a_connection_already_open() {
    let mut h = start(None);
    let (mut cbuf, mut bbuf) = (Vec::new(), Vec::new());
    let send = request(rc::SEND_MESSAGE_V2, 1, false);
    h.client.write_all(&send).await.unwrap();
    let mut b = broker(&mut h).await;
    assert_eq!(next(&mut b, &mut bbuf).await.unwrap(), send);
    b.write_all(&response(1, resp::SUCCESS)).await.unwrap();
    assert_eq!(
        next_cmd(&mut h.client, &mut cbuf).await.unwrap().code,
        resp::SUCCESS
    );
    // A reload denies sends: the same connection's next send is refused, not forwarded.
    let rules: Vec<crate::proxy::policy::RuleConfig> =
        serde_json::from_str(r#"[{"action":"deny","codes":["SEND_MESSAGE_V2"]}]"#).unwrap();
    h.settings.store(RelaySettings {
        limits: LIMITS,
        policy: Arc::new(crate::proxy::policy::Policy::new(&rules, "data-path").unwrap()),
    });
    h.client
        .write_all(&request(rc::SEND_MESSAGE_V2, 2, false))
        .await
        .unwrap();
    let refused = next_cmd(&mut h.client, &mut cbuf).await.unwrap();
    assert_eq!((refused.opaque, refused.code), (2, resp::NO_PERMISSION));
    // A heartbeat still goes through on the same broker connection.
    let beat = request(rc::HEART_BEAT, 3, false);
    h.client.write_all(&beat).await.unwrap();
    assert_eq!(next(&mut b, &mut bbuf).await.unwrap(), beat);
    assert_eq!(h.stats.c.upstream_connect_failure.load(Relaxed), 0);
}
