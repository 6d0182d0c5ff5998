//! Relay overhead: pipelined SEND_MESSAGE_V2-sized requests against an instant fake broker,
//! direct, through a plain TCP relay (tokio `copy_bidirectional`), and through the rmqfast proxy
//! with per-topic metrics off and on, and with the access log on (every request logged, the
//! lines drained by a thread that discards them), in the same run, for binary (ROCKETMQ) and
//! JSON headers.
//! `cargo bench --bench relay` (figures recorded in bench/RESULTS.md).
mod common;

use rmqfast::codec::frame::{split, FrameView};
use rmqfast::codec::{RemotingCommand, SerializeType};
use rmqfast::proxy::{ProxyConfig, ProxyServer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn fake_broker() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                s.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 1 << 20];
                let mut have = 0;
                let resp_tmpl = RemotingCommand::response_to(0, 0, None);
                loop {
                    let n = match s.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have += n;
                    let mut start = 0;
                    let mut out = Vec::new();
                    while let Ok(Some(len)) = split(&buf[start..have], 1 << 24) {
                        let f = &buf[start..start + len];
                        let opaque = match FrameView::parse(f) {
                            Ok(v) => v.opaque,
                            Err(e) => panic!("{e:?} in {:?}", String::from_utf8_lossy(f)),
                        };
                        let mut r = resp_tmpl.clone();
                        r.opaque = opaque;
                        out.extend(r.encode(SerializeType::RocketMq).unwrap());
                        start += len;
                    }
                    buf.copy_within(start..have, 0);
                    have -= start;
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    a
}

fn run(addr: &str, n: usize, window: usize, st: SerializeType) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = RemotingCommand::request(310);
    req.body = vec![b'x'; 128];
    // The fields a Java producer's SEND_MESSAGE_V2 header carries.
    for (k, v) in common::JAVA_SEND_V2_FIELDS {
        req.ext_fields.insert(k.into(), v.into());
    }
    // Each request gets its own opaque, patched into a copy of one encoded frame: four bytes
    // of a binary header, or ten fixed-width digits of a JSON one.
    req.opaque = 1_000_000_000;
    let frame = req.encode(st).unwrap();
    let json_at = memchr_find(&frame, b"\"opaque\":1000000000").map(|i| i + 9);
    let t = Instant::now();
    let mut sent = 0;
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0;
    while got < n {
        let mut out = Vec::new();
        while sent < n && sent - got < window {
            let mut f = frame.clone();
            match (st, json_at) {
                (SerializeType::Json, Some(at)) => {
                    let digits = (1_000_000_000 + sent).to_string();
                    f[at..at + 10].copy_from_slice(digits.as_bytes());
                }
                _ => f[13..17].copy_from_slice(&(sent as i32).to_be_bytes()),
            }
            out.extend(f);
            sent += 1;
        }
        if !out.is_empty() {
            s.write_all(&out).unwrap();
        }
        let k = s.read(&mut buf[have..]).unwrap();
        have += k;
        let mut start = 0;
        while let Ok(Some(len)) = split(&buf[start..have], 1 << 24) {
            start += len;
            got += 1;
        }
        buf.copy_within(start..have, 0);
        have -= start;
    }
    t.elapsed()
}

/// The baseline: a byte relay that knows nothing about frames.
fn plain_relay(upstream: String) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let a = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        rt.block_on(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let up = upstream.clone();
                tokio::spawn(async move {
                    let _ = c.set_nodelay(true);
                    let mut u = tokio::net::TcpStream::connect(up).await.unwrap();
                    let _ = u.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                });
            }
        })
    });
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn proxy(metrics_max_topics: usize, access_log: bool, broker: &str) -> (ProxyServer, String) {
    let access = if access_log {
        r#","access_log":"stdout","access_log_sample":1"#
    } else {
        ""
    };
    let cfg = ProxyConfig::from_json(&format!(
        r#"{{"listen":"127.0.0.1:0","clusters":[{{"name":"c","namesrv":["127.0.0.1:1"]}}],"worker_threads":1,"metrics_max_topics":{metrics_max_topics}{access}}}"#
    ))
    .unwrap();
    let proxy = ProxyServer::start(cfg).unwrap();
    if access_log {
        // Python's drain thread (ProxyServer.access_log_take), with a sink that discards.
        let log = proxy.access_log();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            loop {
                log.take_into(&mut lines, Duration::from_millis(250));
                std::hint::black_box(&lines);
            }
        });
    }
    let addr = proxy.open_broker(broker).unwrap();
    (proxy, addr)
}

fn main() {
    let broker = fake_broker();
    let (_off, proxied_off) = proxy(0, false, &broker);
    let (_on, proxied_on) = proxy(1000, false, &broker);
    let (logged, proxied_logged) = proxy(0, true, &broker);
    let relay = plain_relay(broker.clone());
    println!(
        "| header | in flight | direct req/s | plain relay req/s | rmqfast req/s (per-topic off) | \
         rmqfast req/s (per-topic on) | rmqfast/direct | rmqfast/relay | on/off | per-topic ns/request | \
         rmqfast req/s (access log on) | access log/off | access log ns/request |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for st in [SerializeType::RocketMq, SerializeType::Json] {
        for window in [1, 16, 128] {
            let n = if window == 1 { 20_000 } else { 100_000 };
            let (mut d, mut r, mut off, mut on, mut log) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let targets = [&broker, &relay, &proxied_off, &proxied_on, &proxied_logged];
            for round in 0..5 {
                // The order turns every round, so no target always runs right after another
                // (on a noisy machine the position alone moved a ratio by 25 %).
                let mut rates = [0.0; 5];
                for k in 0..targets.len() {
                    let i = (k + round) % targets.len();
                    rates[i] = n as f64 / run(targets[i], n, window, st).as_secs_f64();
                }
                let [rd, rr, roff, ron, rlog] = rates;
                d.push(rd);
                r.push(rr);
                off.push(roff);
                on.push(ron);
                log.push(rlog);
            }
            let (d, r, off, on, log) = (median(d), median(r), median(off), median(on), median(log));
            println!(
                "| {st:?} | {window} | {d:.0} | {r:.0} | {off:.0} | {on:.0} | {:.2} | {:.2} | {:.3} | {:.0} | {log:.0} | {:.3} | {:.0} |",
                on / d,
                on / r,
                on / off,
                (1.0 / on - 1.0 / off) * 1e9,
                log / off,
                (1.0 / log - 1.0 / off) * 1e9
            );
        }
    }
    let c = &logged.stats().c;
    let lines = c
        .access_log_lines
        .load(std::sync::atomic::Ordering::Relaxed);
    let dropped = c
        .access_log_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("\naccess log: {lines} lines buffered and drained, {dropped} dropped");
}
