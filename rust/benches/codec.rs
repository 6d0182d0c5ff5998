//! Codec micro-benchmarks: `cargo bench --bench codec` (figures recorded in bench/RESULTS.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rmqfast::codec::frame::split;
use rmqfast::codec::route::{BrokerAddrs, TopicRouteData};
use rmqfast::codec::{
    FrameView, HeaderRef, LanguageCode, RemotingCommand, SerializeType, DEFAULT_MAX_FRAME_SIZE,
};

/// A SEND_MESSAGE_V2 request as the Java producer sends it, with a 1 KiB body.
fn send_v2() -> RemotingCommand {
    let mut c = RemotingCommand::request(310);
    c.language = LanguageCode::JAVA;
    c.opaque = 123_456;
    for (k, v) in [
        ("a", "benchmark_producer_group"),
        ("b", "BenchmarkTest"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "2"),
        ("f", "0"),
        ("g", "1732190000000"),
        ("h", "0"),
        (
            "i",
            "KEYS\u{1}key-000001\u{2}UNIQ_KEY\u{1}7F0000010B2D18B4AAC2795A6A4C0000\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}",
        ),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
        ("n", "broker-a"),
    ] {
        c.ext_fields.insert(k.into(), v.into());
    }
    c.body = vec![b'x'; 1024];
    c
}

const ROUTE: &[u8] = br#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false},{"brokerAddrs":{"0":"127.0.0.1:10931"},"brokerName":"broker-b","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8},{"brokerName":"broker-b","perm":6,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8}]}"#;

fn frames(c: &mut Criterion) {
    let cmd = send_v2();
    for st in [SerializeType::Json, SerializeType::RocketMq] {
        let frame = cmd.encode(st).unwrap();
        let name = st.name().to_ascii_lowercase();
        let mut g = c.benchmark_group(format!("send_v2_1k_{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("split_and_view", |b| {
            b.iter(|| {
                let f = black_box(&frame[..]);
                let n = split(f, DEFAULT_MAX_FRAME_SIZE).unwrap().unwrap();
                black_box(FrameView::parse(&f[..n]).unwrap())
            })
        });
        let view = FrameView::parse(&frame).unwrap();
        let header_only = {
            // Decode cost of the header alone: the body copy is measured separately below.
            let mut h = cmd.clone();
            h.body.clear();
            h.encode(st).unwrap()
        };
        g.bench_function("decode_header", |b| {
            b.iter(|| black_box(RemotingCommand::decode(black_box(&header_only)).unwrap()))
        });
        g.bench_function("decode_header_ref", |b| {
            b.iter(|| {
                let f = black_box(&frame[..]);
                let v = FrameView::parse(f).unwrap();
                black_box(HeaderRef::decode(f, &v).unwrap())
            })
        });
        g.bench_function("decode_full_frame", |b| {
            b.iter(|| {
                black_box(RemotingCommand::decode_with_view(black_box(&frame), &view).unwrap())
            })
        });
        let mut no_body = cmd.clone();
        no_body.body.clear();
        g.bench_function("encode_header", |b| {
            b.iter(|| black_box(black_box(&no_body).encode(st).unwrap()))
        });
        g.finish();
    }
}

fn route(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic_route");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| black_box(TopicRouteData::from_json(black_box(ROUTE)).unwrap()))
    });
    g.bench_function("parse_rewrite_serialize", |b| {
        b.iter(|| {
            let mut r = TopicRouteData::from_json(black_box(ROUTE)).unwrap();
            r.rewrite_broker_addrs(&mut |_, _, addr| {
                Some(match addr {
                    "127.0.0.1:10911" => "127.0.0.1:30001".to_string(),
                    "127.0.0.1:10921" => "127.0.0.1:30002".to_string(),
                    _ => "127.0.0.1:30003".to_string(),
                })
            });
            black_box(r.to_json())
        })
    });
    g.finish();
}

/// Float text as Python's repr writes it (`json_text::write_f64`, zmij's digits) against std's
/// shortest round-trip formatting (`{:e}`, what the encoder used before; it breaks ties the
/// other way), on the same 1,000 doubles of every magnitude.
fn floats(c: &mut Criterion) {
    use std::io::Write as _;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let values: Vec<f64> = std::iter::from_fn(|| {
        // xorshift64*: random bit patterns, finite ones kept.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        Some(f64::from_bits(x.wrapping_mul(0x2545_F491_4F6C_DD1D)))
    })
    .filter(|v| v.is_finite())
    .take(1000)
    .collect();
    let mut g = c.benchmark_group("float_text_1000");
    g.throughput(Throughput::Elements(values.len() as u64));
    let mut out = Vec::with_capacity(32 * 1024);
    g.bench_function("write_f64_python_repr", |b| {
        b.iter(|| {
            out.clear();
            for v in &values {
                rmqfast::json_text::write_f64(&mut out, *v).unwrap();
            }
            black_box(out.len())
        })
    });
    g.bench_function("std_shortest_exp", |b| {
        b.iter(|| {
            out.clear();
            for v in &values {
                write!(out, "{v:e}").unwrap();
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, frames, route, floats);
criterion_main!(benches);
