//! The report's files: JSON round-trips through serde with the contract keys, and the `.hlog`
//! reads back with HdrHistogram's own interval-log parser, its intervals summing to `requests`.

mod common;

use std::time::Duration;

use common::{Behavior, TestServer, options, run};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use loadgen::Report;

fn hlog_counts(text: &[u8]) -> (u64, u64, usize) {
    let (mut corrected, mut uncorrected, mut headers) = (0, 0, 0);
    for e in IntervalLogIterator::new(text) {
        match e.expect("parsable hlog") {
            LogEntry::StartTime(_) | LogEntry::BaseTime(_) => headers += 1,
            LogEntry::Interval(iv) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(iv.encoded_histogram())
                    .unwrap();
                let h: hdrhistogram::Histogram<u64> = Deserializer::new()
                    .deserialize(&mut std::io::Cursor::new(bytes))
                    .unwrap();
                match iv.tag().map(|t| t.as_str()) {
                    Some("corrected") => corrected += h.len(),
                    Some("uncorrected") => uncorrected += h.len(),
                    other => panic!("unexpected tag {other:?}"),
                }
            }
        }
    }
    (corrected, uncorrected, headers)
}

#[test]
fn json_round_trips_with_contract_keys() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.duration = Some(Duration::from_millis(300));
    let r = run(o);
    let dir = std::env::temp_dir().join(format!("loadgen-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.json");
    r.write_json(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for k in [
        "schema",
        "tool_version",
        "host",
        "pinning",
        "workload",
        "requests",
        "duration_s",
        "throughput_rps",
        "latency_us",
        "errors",
        "client_cpu",
        "saturated",
        "interrupted",
        "warnings",
        "histogram",
    ] {
        assert!(v.get(k).is_some(), "missing key {k}");
    }
    assert_eq!(v["schema"], "iomodels.result/1.3");
    for k in [
        "p50", "p90", "p99", "p99_9", "p99_99", "max", "mean", "stdev",
    ] {
        assert!(v["latency_us"][k].is_f64(), "latency_us.{k}");
    }
    for k in [
        "total",
        "refused",
        "reset",
        "timeout",
        "mismatch",
        "addr_unavailable",
        "other",
    ] {
        assert!(v["errors"][k].is_u64(), "errors.{k}");
    }
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), v);
    assert_eq!(back.latency_histogram().unwrap().len(), r.requests);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hlog_reads_back_and_sums_to_requests() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.duration = Some(Duration::from_millis(2500));
    o.rate = Some(300.0);
    let r = run(o);
    assert!(r.requests > 0);
    let dir = std::env::temp_dir().join(format!("loadgen-hlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.hlog");
    r.write_hlog(&path).unwrap();
    let text = std::fs::read(&path).unwrap();
    let (corrected, uncorrected, headers) = hlog_counts(&text);
    assert_eq!(headers, 2, "StartTime and BaseTime");
    assert_eq!(corrected, r.requests);
    assert_eq!(uncorrected, r.requests);
    assert_eq!(
        r.intervals.len(),
        3,
        "2.5 s = two whole intervals and a half"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn closed_loop_hlog_is_corrected_only() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.duration = Some(Duration::from_millis(300));
    let r = run(o);
    let (corrected, uncorrected, _) = hlog_counts(&r.hlog().unwrap());
    assert_eq!((corrected, uncorrected), (r.requests, 0));
}
