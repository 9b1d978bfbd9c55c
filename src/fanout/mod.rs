//! `iomodels fanout`: one sender, N receivers, the same messages to all of them by N × TCP,
//! N × UDP, one multicast send or one broadcast send, and what each way costs the sender (CPU
//! and send calls per message, packets on the wire) and gives the receivers (delivery, latency,
//! multicast joins and leaves).
//!
//! This module checks every input before anything runs, starts the receivers (threads, or
//! child processes through [`children`], optionally in another network namespace), runs the
//! [`sender`] on a thread of its own (so its CPU is its own), stops everything within bounded
//! waits, and turns what it got into an [`iomodels::record::fanout::FanoutRecord`], a table and
//! optionally a JSON file. It does not create namespaces (`scripts/netns.sh` does).

mod children;
mod receiver;
mod sender;
mod sys;
mod wire;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets};
use iomodels::record::fanout::{
    FANOUT_SCHEMA, FanoutLatency, FanoutRecord, ReceiverTally, SenderCpu, lost,
};
use loadgen::Stop;

use crate::exit::{CliError, CliResult, INTERRUPTED};
use crate::interrupt::Interrupt;
use crate::units::{CpuList, parse_bytes, parse_cpus, parse_duration};
use children::ChildReceiver;
use receiver::{ReceiverConfig, ReceiverReport};
use sender::SenderConfig;
use sys::Iface;

/// How the sender reaches its receivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// N TCP connections, one write per receiver per message.
    Tcp,
    /// N unicast UDP sends per message from one socket.
    Udp,
    /// One send per message to a multicast group the receivers joined.
    Multicast,
    /// One send per message to the interface's broadcast address.
    Broadcast,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Udp => "udp",
            Mode::Multicast => "multicast",
            Mode::Broadcast => "broadcast",
        }
    }
}

/// Largest UDP payload over IPv4 (65,535 − 8 − 20).
const MAX_UDP: usize = 65_507;
/// Largest TCP message fanout sends (one buffer per receiver).
const MAX_TCP: usize = 16 << 20;
/// The most receivers fanout starts (threads or processes).
const MAX_RECEIVERS: usize = 1000;
/// After the last send: time for datagrams still in flight to arrive.
const GRACE: Duration = Duration::from_millis(200);
/// Bound on a receiver getting ready, and on receivers reporting after the stop.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of `iomodels fanout`.
#[derive(Args, Debug)]
pub struct FanoutArgs {
    /// Receivers to start.
    #[arg(long, short = 'n')]
    receivers: usize,
    /// How the sender reaches them.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Messages per second (each to every receiver).
    #[arg(long, short = 'R', default_value_t = 1000.0)]
    rate: f64,
    /// Message size, header (24 B) included; at most 65,507 B in the UDP modes.
    #[arg(long, short = 's', default_value = "64", value_parser = parse_bytes)]
    size: usize,
    /// How long the sender sends.
    #[arg(short = 't', long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Receivers as child processes (this binary) instead of threads.
    #[arg(long)]
    processes: bool,
    /// Multicast group (224.0.0.0/4).
    #[arg(long, default_value = "239.255.77.77")]
    group: Ipv4Addr,
    /// The sender's interface: its IPv4 address is the source (and IP_MULTICAST_IF), its
    /// broadcast address the broadcast destination, its tx_packets the wire count.
    #[arg(long, default_value = sys::DEFAULT_INTERFACE, value_name = "IF")]
    interface: String,
    /// The receivers' interface (unicast binds its address, multicast joins on it), looked up
    /// where the receivers run [default: --interface].
    #[arg(long, value_name = "IF")]
    receiver_interface: Option<String>,
    /// Run each receiver as a process inside this network namespace (`ip netns exec`; implies
    /// --processes; root). scripts/netns.sh sets this up.
    #[arg(long, value_name = "NS")]
    receivers_netns: Option<String>,
    /// Multicast: every receiver leaves the group and rejoins every this long (staggered).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    churn: Option<Duration>,
    /// Pin the sending thread to this CPU (then receivers pinned elsewhere cannot share its
    /// core's caches and time).
    #[arg(long, value_name = "CPU")]
    sender_cpu: Option<usize>,
    /// Pin receiver i (thread or process) to the i-th CPU of this list, round robin.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    receiver_cpus: Option<CpuList>,
    /// Write the record (iomodels.fanout/1) here, atomically.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Broadcast without SO_BROADCAST, to show the kernel's refusal (EACCES).
    #[arg(long, hide = true)]
    without_so_broadcast: bool,
}

/// Flags of the hidden `fanout-receiver` command (one receiver process).
#[derive(Args, Debug)]
pub struct ReceiverArgs {
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long)]
    index: usize,
    #[arg(long)]
    receivers: usize,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    interface: String,
    #[arg(long)]
    group: Ipv4Addr,
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long)]
    run_id: u64,
    #[arg(long, value_parser = parse_duration)]
    churn: Option<Duration>,
    #[arg(long)]
    cpu: Option<usize>,
}

/// The validated plan.
struct Setup {
    mode: Mode,
    receivers: usize,
    rate: f64,
    size: usize,
    duration: Duration,
    processes: bool,
    netns: Option<String>,
    group: Ipv4Addr,
    send_iface: Iface,
    /// The receivers' interface: resolved here when they share this namespace.
    recv_iface_name: String,
    recv_iface: Option<Iface>,
    churn: Option<Duration>,
    json: Option<PathBuf>,
    so_broadcast: bool,
    sender_cpu: Option<usize>,
    receiver_cpus: Option<Vec<usize>>,
}

impl Setup {
    /// The CPU receiver `index` is pinned to, if any.
    fn receiver_cpu(&self, index: usize) -> Option<usize> {
        self.receiver_cpus.as_ref().map(|c| c[index % c.len()])
    }
}

/// Pin the calling thread to `cpu` (a no-op for `None`).
fn pin(cpu: Option<usize>) -> anyhow::Result<()> {
    match cpu {
        Some(id) if !core_affinity::set_for_current(core_affinity::CoreId { id }) => {
            Err(anyhow!("cannot pin to CPU {id}"))
        }
        _ => Ok(()),
    }
}

/// Every CPU in `cpus` is one this process may use.
fn check_cpus(flag: &str, cpus: &[usize]) -> anyhow::Result<()> {
    let have: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    match cpus.iter().find(|c| !have.contains(c)) {
        Some(c) => Err(anyhow!(
            "{flag}: CPU {c} is not one this process may use ({have:?})"
        )),
        None => Ok(()),
    }
}

fn validate(a: &FanoutArgs) -> anyhow::Result<Setup> {
    let udp_like = a.mode != Mode::Tcp;
    if a.receivers == 0 {
        return Err(anyhow!("--receivers 0: give at least 1 receiver"));
    }
    if a.receivers > MAX_RECEIVERS {
        return Err(anyhow!(
            "--receivers {}: at most {MAX_RECEIVERS}",
            a.receivers
        ));
    }
    if !(a.rate.is_finite() && a.rate > 0.0) {
        return Err(anyhow!(
            "--rate {}: give a positive number of messages per second",
            a.rate
        ));
    }
    if a.duration.is_zero() {
        return Err(anyhow!("-t 0: give a positive duration (e.g. 3s)"));
    }
    if a.size < wire::HEADER {
        return Err(anyhow!(
            "--size {}: at least {} B (the header: run id, sequence, timestamp)",
            a.size,
            wire::HEADER
        ));
    }
    if udp_like && a.size > MAX_UDP {
        return Err(anyhow!(
            "--size {}: a UDP datagram over IPv4 carries at most {MAX_UDP} B; use a smaller size or --mode tcp",
            a.size
        ));
    }
    if a.size > MAX_TCP {
        return Err(anyhow!("--size {}: at most {MAX_TCP} B", a.size));
    }
    if !a.group.is_multicast() {
        return Err(anyhow!(
            "--group {}: not a multicast address (224.0.0.0/4); use e.g. 239.255.77.77",
            a.group
        ));
    }
    if a.churn.is_some() && a.mode != Mode::Multicast {
        return Err(anyhow!(
            "--churn applies to --mode multicast only (joins and leaves)"
        ));
    }
    if a.churn.is_some_and(|c| c < Duration::from_millis(10)) {
        return Err(anyhow!("--churn: at least 10ms"));
    }
    if a.receivers_netns.is_some() && !cfg!(target_os = "linux") {
        return Err(anyhow!("--receivers-netns needs Linux network namespaces"));
    }
    if let Some(c) = a.sender_cpu {
        check_cpus("--sender-cpu", &[c])?;
    }
    if let Some(CpuList(c)) = &a.receiver_cpus {
        if c.is_empty() {
            return Err(anyhow!("--receiver-cpus: give at least one CPU"));
        }
        check_cpus("--receiver-cpus", c)?;
    }
    let send_iface =
        sys::lookup_interface(&a.interface).map_err(|e| anyhow!("--interface: {e}"))?;
    if a.mode == Mode::Broadcast && send_iface.broadcast.is_none() {
        return Err(anyhow!(
            "broadcast needs an interface with a broadcast address; {} has none (name one with --interface, or use scripts/netns.sh)",
            send_iface.name
        ));
    }
    let recv_iface_name = a
        .receiver_interface
        .clone()
        .unwrap_or_else(|| a.interface.clone());
    let recv_iface = match a.receivers_netns {
        // Looked up by each receiver inside its namespace.
        Some(_) => None,
        None => Some(
            sys::lookup_interface(&recv_iface_name)
                .map_err(|e| anyhow!("--receiver-interface: {e}"))?,
        ),
    };
    Ok(Setup {
        mode: a.mode,
        receivers: a.receivers,
        rate: a.rate,
        size: a.size,
        duration: a.duration,
        processes: a.processes || a.receivers_netns.is_some(),
        netns: a.receivers_netns.clone(),
        group: a.group,
        send_iface,
        recv_iface_name,
        recv_iface,
        churn: a.churn,
        json: a.json.clone(),
        so_broadcast: !a.without_so_broadcast,
        sender_cpu: a.sender_cpu,
        receiver_cpus: a.receiver_cpus.clone().map(|c| c.0),
    })
}

/// A run id: distinct per run (time and pid), so receivers ignore other runs' datagrams.
fn run_id() -> u64 {
    let t = sys::clock_ns();
    t ^ (u64::from(std::process::id()) << 40) ^ 0x9e37_79b9_7f4a_7c15
}

/// The receivers of a run, as threads or processes.
enum Receivers {
    Threads {
        stop: Stop,
        handles: Vec<std::thread::JoinHandle<std::io::Result<ReceiverReport>>>,
    },
    Processes(Vec<ChildReceiver>),
}

impl Receivers {
    /// Start all, each ready (bound, joined) before this returns; their endpoints in order.
    fn start(s: &Setup, run_id: u64) -> anyhow::Result<(Self, Vec<SocketAddr>)> {
        let mut endpoints = Vec::with_capacity(s.receivers);
        let mut port = 0u16;
        let shared_port = matches!(s.mode, Mode::Multicast | Mode::Broadcast);
        if s.processes {
            let exe = std::env::current_exe()
                .map_err(|e| anyhow!("cannot find this program to start receivers: {e}"))?;
            let mut kids = Vec::with_capacity(s.receivers);
            for index in 0..s.receivers {
                let mut args = vec![
                    format!("--mode={}", s.mode.name()),
                    format!("--index={index}"),
                    format!("--receivers={}", s.receivers),
                    format!("--size={}", s.size),
                    format!("--interface={}", s.recv_iface_name),
                    format!("--group={}", s.group),
                    format!("--port={port}"),
                    format!("--run-id={run_id}"),
                ];
                if let Some(c) = s.churn {
                    args.push(format!("--churn={}ms", c.as_millis()));
                }
                if let Some(c) = s.receiver_cpu(index) {
                    args.push(format!("--cpu={c}"));
                }
                let k =
                    ChildReceiver::spawn(index, &exe, s.netns.as_deref(), &args, READY_TIMEOUT)?;
                if shared_port {
                    port = k.endpoint.port();
                }
                endpoints.push(k.endpoint);
                kids.push(k);
            }
            return Ok((Self::Processes(kids), endpoints));
        }
        let stop = Stop::new();
        let mut handles = Vec::with_capacity(s.receivers);
        let iface = s
            .recv_iface
            .clone()
            .ok_or_else(|| anyhow!("receiver threads need the receivers' interface"))?;
        for index in 0..s.receivers {
            let cfg = ReceiverConfig {
                mode: s.mode,
                index,
                receivers: s.receivers,
                size: s.size,
                iface: iface.clone(),
                group: s.group,
                port,
                run_id,
                churn: s.churn,
                accept_timeout: READY_TIMEOUT,
            };
            let bound = receiver::bind(&cfg).map_err(|e| anyhow!("receiver {index}: {e}"))?;
            if shared_port {
                port = bound.endpoint.port();
            }
            endpoints.push(bound.endpoint);
            let stop = stop.clone();
            let cpu = s.receiver_cpu(index);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("receiver-{index}"))
                    .spawn(move || {
                        pin(cpu).map_err(std::io::Error::other)?;
                        bound.run(&cfg, &stop)
                    })
                    .map_err(|e| anyhow!("cannot start receiver thread {index}: {e}"))?,
            );
        }
        Ok((Self::Threads { stop, handles }, endpoints))
    }

    /// Stop all and collect their reports (in index order), each wait bounded.
    fn finish(self) -> anyhow::Result<Vec<ReceiverReport>> {
        match self {
            Receivers::Threads { stop, handles } => {
                stop.stop();
                handles
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| {
                        h.join()
                            .map_err(|_| anyhow!("receiver {i} panicked"))?
                            .map_err(|e| anyhow!("receiver {i}: {e}"))
                    })
                    .collect()
            }
            Receivers::Processes(mut kids) => {
                for k in kids.iter_mut() {
                    k.stop();
                }
                let deadline = Instant::now() + REPORT_TIMEOUT;
                kids.into_iter().map(|k| k.report(deadline)).collect()
            }
        }
    }
}

/// `iomodels fanout`.
pub fn run(args: FanoutArgs) -> CliResult {
    let s = validate(&args).map_err(CliError::usage)?;
    let interrupt = Interrupt::install().map_err(CliError::runtime)?;
    let stop = interrupt.stop().clone();
    let id = run_id();
    let (receivers, endpoints) = Receivers::start(&s, id).map_err(CliError::runtime)?;
    let cfg = SenderConfig {
        mode: s.mode,
        size: s.size,
        rate: s.rate,
        duration: s.duration,
        iface: s.send_iface.clone(),
        loop_back: s.netns.is_none(),
        so_broadcast: s.so_broadcast,
        run_id: id,
    };
    let sender =
        sender::prepare(cfg, &endpoints).map_err(|e| CliError::runtime(anyhow!("sender: {e}")))?;
    let sending = stop.clone();
    let cpu = s.sender_cpu;
    let outcome = std::thread::Builder::new()
        .name("sender".into())
        .spawn(move || {
            pin(cpu).map_err(|e| sender::SendError::Pin(e.to_string()))?;
            sender.run(&sending)
        })
        .map_err(|e| CliError::runtime(anyhow!("cannot start the sender thread: {e}")))?
        .join()
        .map_err(|_| CliError::runtime(anyhow!("the sender panicked")))?
        .map_err(CliError::runtime)?;
    if !stop.is_stopped() {
        std::thread::sleep(GRACE);
    }
    let reports = receivers.finish().map_err(CliError::runtime)?;
    let record = build_record(&s, &outcome, &reports, stop.is_stopped());
    print_table(&record);
    if let Some(path) = &s.json {
        record
            .write(path)
            .map_err(|e| CliError::runtime(anyhow!("cannot write {}: {e}", path.display())))?;
    }
    if record.interrupted {
        eprintln!("iomodels: interrupted; the figures cover what ran");
        return Ok(std::process::ExitCode::from(INTERRUPTED));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `iomodels fanout-receiver` (hidden): one receiver process, see [`children`].
pub fn receiver_main(a: ReceiverArgs) -> CliResult {
    // Before any other thread exists, so the stdin watcher is pinned too.
    pin(a.cpu).map_err(CliError::usage)?;
    let iface = sys::lookup_interface(&a.interface)
        .map_err(|e| CliError::usage(anyhow!("--interface: {e}")))?;
    let cfg = ReceiverConfig {
        mode: a.mode,
        index: a.index,
        receivers: a.receivers,
        size: a.size,
        iface,
        group: a.group,
        port: a.port,
        run_id: a.run_id,
        churn: a.churn,
        accept_timeout: READY_TIMEOUT,
    };
    let bound = receiver::bind(&cfg).map_err(CliError::runtime)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", bound.endpoint)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::runtime(anyhow!("cannot tell the parent: {e}")))?;
    let stop = Stop::new();
    let on_eof = stop.clone();
    std::thread::spawn(move || {
        // EOF on stdin: the parent stopped us, or died.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        on_eof.stop();
    });
    let report = bound.run(&cfg, &stop).map_err(CliError::runtime)?;
    writeln!(
        out,
        "{}",
        serde_json::to_string(&report).unwrap_or_default()
    )
    .and_then(|()| out.flush())
    .map_err(|e| CliError::runtime(anyhow!("cannot report to the parent: {e}")))?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn build_record(
    s: &Setup,
    o: &sender::SendOutcome,
    reports: &[ReceiverReport],
    interrupted: bool,
) -> FanoutRecord {
    let mut all = receiver::latency_histogram();
    let mut warnings = Vec::new();
    let mut per_receiver = Vec::with_capacity(reports.len());
    for r in reports {
        let h = loadgen::decode_histogram(&r.histogram).unwrap_or_else(|e| {
            warnings.push(format!("receiver {}: unreadable histogram ({e})", r.index));
            receiver::latency_histogram()
        });
        let _ = all.add(&h);
        per_receiver.push(ReceiverTally {
            index: r.index,
            delivered: r.delivered,
            lost: lost(&r.spans, o.sent),
            joins: r.joins,
            leaves: r.leaves,
            latency_us: FanoutLatency::from_ns(&h),
        });
        if r.bad > 0 {
            warnings.push(format!(
                "receiver {}: {} short messages or read errors",
                r.index, r.bad
            ));
        }
    }
    if let Some(e) = &o.first_error {
        warnings.push(format!(
            "{} send calls failed; the first: {e}",
            o.send_errors
        ));
    }
    let delivered: u64 = per_receiver.iter().map(|r| r.delivered).sum();
    let owed: u64 = per_receiver.iter().map(|r| r.delivered + r.lost).sum();
    let secs = o.window.as_secs_f64();
    let cpu = (o.user + o.system).as_secs_f64() * 1e6;
    let per = |x: f64, n: u64| if n > 0 { x / n as f64 } else { 0.0 };
    let achieved_rate = if secs > 0.0 {
        o.sent as f64 / secs
    } else {
        0.0
    };
    if achieved_rate < 0.95 * s.rate && !interrupted {
        warnings.push(format!(
            "saturated: the sender achieved {achieved_rate:.0} of {:.0} messages/s",
            s.rate
        ));
    }
    if s.send_iface.name.starts_with("lo") && o.wire_packets.is_some() {
        warnings.push(format!(
            "wire_packets counts {} for the whole host (and counts TCP's ACKs too): use scripts/netns.sh for a wire of its own",
            s.send_iface.name
        ));
    }
    FanoutRecord {
        schema: FANOUT_SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        mode: s.mode.name().into(),
        receivers: s.receivers,
        processes: s.processes,
        interface: s.send_iface.name.clone(),
        size: s.size,
        rate: s.rate,
        achieved_rate,
        duration_s: secs,
        sent: o.sent,
        send_errors: o.send_errors,
        delivered_ratio: if owed > 0 {
            delivered as f64 / owed as f64
        } else {
            1.0
        },
        sender_cpu: SenderCpu {
            user_s: o.user.as_secs_f64(),
            system_s: o.system.as_secs_f64(),
            us_per_message: per(cpu, o.sent),
            us_per_delivery: per(cpu, delivered),
            in_send_us_per_message: o.in_send.map(|d| per(d.as_secs_f64() * 1e6, o.sent)),
        },
        sender_cpu_scope: sys::CPU_SCOPE.into(),
        sender_syscalls: o.calls,
        sender_syscalls_per_message: per(o.calls as f64, o.sent),
        sender_syscalls_per_s: if secs > 0.0 {
            o.calls as f64 / secs
        } else {
            0.0
        },
        wire_packets: o.wire_packets,
        wire_packets_per_message: o.wire_packets.map(|w| per(w as f64, o.sent)),
        latency_us: FanoutLatency::from_ns(&all),
        joins: per_receiver.iter().map(|r| r.joins).sum(),
        leaves: per_receiver.iter().map(|r| r.leaves).sum(),
        per_receiver,
        churn_s: s.churn.map(|c| c.as_secs_f64()),
        sender_cpu_pinned: s.sender_cpu,
        receiver_cpus_pinned: s.receiver_cpus.clone(),
        interrupted,
        warnings,
    }
}

/// Receivers listed one per row up to this many; past it, their range.
const RECEIVER_ROWS: usize = 10;

fn print_table(r: &FanoutRecord) {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    t.set_header(vec!["fanout", r.mode.as_str()]);
    let w = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.2}"));
    let rows: Vec<(&str, String)> = vec![
        (
            "receivers",
            format!(
                "{}{}",
                r.receivers,
                if r.processes {
                    " (processes)"
                } else {
                    " (threads)"
                }
            ),
        ),
        (
            "messages sent",
            format!("{} × {} B at {:.0}/s", r.sent, r.size, r.achieved_rate),
        ),
        ("delivered ratio", format!("{:.4}", r.delivered_ratio)),
        (
            "sender CPU µs / message",
            format!(
                "{:.2}  ({:.2} per delivery; {})",
                r.sender_cpu.us_per_message, r.sender_cpu.us_per_delivery, r.sender_cpu_scope
            ),
        ),
        (
            "  of which in send calls",
            r.sender_cpu
                .in_send_us_per_message
                .map_or("n/a".into(), |x| {
                    format!("{x:.2}  (without the pacing sleeps)")
                }),
        ),
        (
            "send calls / message",
            format!(
                "{:.2}  ({:.0}/s)",
                r.sender_syscalls_per_message, r.sender_syscalls_per_s
            ),
        ),
        (
            "wire packets / message",
            format!(
                "{}  ({} on {})",
                w(r.wire_packets_per_message),
                r.wire_packets.map_or("n/a".into(), |p| p.to_string()),
                r.interface
            ),
        ),
        (
            "latency µs p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1}",
                r.latency_us.p50, r.latency_us.p99, r.latency_us.max
            ),
        ),
        ("joins / leaves", format!("{} / {}", r.joins, r.leaves)),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{t}");
    if r.per_receiver.len() <= RECEIVER_ROWS {
        let mut p = Table::new();
        p.load_preset(presets::UTF8_FULL_CONDENSED);
        p.set_header(vec![
            "receiver",
            "delivered",
            "lost",
            "p50 µs",
            "p99 µs",
            "max µs",
            "joins",
            "leaves",
        ]);
        for x in &r.per_receiver {
            p.add_row(vec![
                x.index.to_string(),
                x.delivered.to_string(),
                x.lost.to_string(),
                format!("{:.1}", x.latency_us.p50),
                format!("{:.1}", x.latency_us.p99),
                format!("{:.1}", x.latency_us.max),
                x.joins.to_string(),
                x.leaves.to_string(),
            ]);
        }
        let _ = writeln!(out, "{p}");
    } else {
        let range = |f: fn(&ReceiverTally) -> f64| {
            let v = r.per_receiver.iter().map(f);
            let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
            format!("{lo:.1}–{hi:.1}")
        };
        let _ = writeln!(
            out,
            "per receiver: delivered {}, lost {}, p99 µs {} (every receiver in --json)",
            range(|x| x.delivered as f64),
            range(|x| x.lost as f64),
            range(|x| x.latency_us.p99)
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
}
