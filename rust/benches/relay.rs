//! Relay overhead: pipelined SEND_MESSAGE_V2-sized requests against an instant fake broker,
//! direct, through a plain TCP relay (tokio `copy_bidirectional`), and through the rmqfast proxy,
//! in the same run. `cargo bench --bench relay` (figures recorded in bench/RESULTS.md).
use rmqfast::codec::{frame::split, RemotingCommand, SerializeType};
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
                        let opaque = i32::from_be_bytes(f[8 + 5..8 + 9].try_into().unwrap());
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

fn run(addr: &str, n: usize, window: usize) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = RemotingCommand::request(310);
    req.body = vec![b'x'; 128];
    for (k, v) in [("a", "g"), ("b", "T"), ("n", "broker-a")] {
        req.ext_fields.insert(k.into(), v.into());
    }
    let frame = req.encode(SerializeType::RocketMq).unwrap();
    let t = Instant::now();
    let mut sent = 0;
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0;
    while got < n {
        let mut out = Vec::new();
        while sent < n && sent - got < window {
            let mut f = frame.clone();
            f[13..17].copy_from_slice(&(sent as i32).to_be_bytes());
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

fn main() {
    let broker = fake_broker();
    let cfg = ProxyConfig::from_json(
        r#"{"listen":"127.0.0.1:0","clusters":[{"name":"c","namesrv":["127.0.0.1:1"]}],"worker_threads":1}"#,
    )
    .unwrap();
    let proxy = ProxyServer::start(cfg).unwrap();
    let proxied = proxy.open_broker(&broker).unwrap();
    let relay = plain_relay(broker.clone());
    let n = 100_000;
    println!("| in flight | direct req/s | plain relay req/s | rmqfast req/s | rmqfast/direct | rmqfast/relay |");
    println!("|---|---|---|---|---|---|");
    for window in [1, 16, 128] {
        let (mut d, mut r, mut p) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            d.push(n as f64 / run(&broker, n, window).as_secs_f64());
            r.push(n as f64 / run(&relay, n, window).as_secs_f64());
            p.push(n as f64 / run(&proxied, n, window).as_secs_f64());
        }
        let (d, r, p) = (median(d), median(r), median(p));
        println!(
            "| {window} | {d:.0} | {r:.0} | {p:.0} | {:.2} | {:.2} |",
            p / d,
            p / r
        );
    }
}
