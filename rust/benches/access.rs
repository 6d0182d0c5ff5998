//! The CPU cost of one access-log line on its own: `cargo bench --bench access` (figures in
//! bench/RESULTS.md). A Java producer's SEND_MESSAGE_V2 header is begun and finished, and the
//! buffer drained every 200 lines, as the proxy's writer thread would.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rmqfast::codec::{FrameView, RemotingCommand, SerializeType};
use rmqfast::proxy::access::{AccessLog, Outcome, Peer};
use rmqfast::proxy::config::ProxyConfig;
use rmqfast::proxy::stats::ProxyStats;

const SEND_MESSAGE_V2: i32 = 310;
const SUCCESS: i32 = 0;

fn send_v2(st: SerializeType) -> Vec<u8> {
    let mut c = RemotingCommand::request(SEND_MESSAGE_V2);
    c.opaque = 42;
    for (k, v) in common::JAVA_SEND_V2_FIELDS {
        c.ext_fields.insert(k.into(), v.into());
    }
    c.encode(st).expect("a small header encodes")
}

fn lines(c: &mut Criterion) {
    let config = ProxyConfig::from_json(
        r#"{"clusters":[{"name":"a","namesrv":["127.0.0.1:9876"]}],"access_log":"stdout"}"#,
    )
    .expect("the bench's config parses");
    let log = AccessLog::new(&config, Arc::new(ProxyStats::default()));
    let peer = Peer::new(
        Some("10.1.2.3:50123".parse().unwrap()),
        Some("127.0.0.1:30911".parse().unwrap()),
        Some(Arc::from("10.0.0.1:10911")),
    );
    let mut drained = Vec::new();
    for st in [SerializeType::RocketMq, SerializeType::Json] {
        let frame = send_v2(st);
        let view = FrameView::parse(&frame).expect("the frame parses");
        let mut g = c.benchmark_group(format!("access_log_{}", st.name().to_ascii_lowercase()));
        g.throughput(Throughput::Elements(200));
        g.bench_function("send_v2_200_lines_and_drain", |b| {
            b.iter(|| {
                for _ in 0..200 {
                    let pending = log.begin(&peer, black_box(&frame), &view);
                    let pending = pending.expect("the log is on and samples every request");
                    log.finish(
                        pending,
                        Outcome::response(SUCCESS, 50, Duration::from_millis(1)),
                    );
                }
                drained.clear();
                log.take_into(&mut drained, Duration::ZERO);
                black_box(drained.len())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, lines);
criterion_main!(benches);
