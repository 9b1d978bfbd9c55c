#!/usr/bin/env bash
# Fan-out on a wire of its own: two network namespaces joined by a veth pair, the fanout sender
# in one, its receivers (child processes) in the other, and the sender's veth counting packets.
#
#   scripts/netns.sh [--bin PATH] -- FANOUT_ARGS...   one `iomodels fanout` across the pair
#   scripts/netns.sh [--bin PATH] --compare [--rounds K] [--rate R] [--size S] [-t DUR] [--out DIR]
#                    [--rx-cpu]
#                                                      tcp, udp, multicast, broadcast at
#                                                      N = 1, 10, 50: sender CPU and wire packets
#                                                      per message against N
#
# Both ends of a veth pair share one kernel: by default the receivers' side of the network
# stack (demultiplexing to N sockets, waking N receivers) runs inside the sender's send call and
# is charged to the sender's CPU. --rx-cpu steers it to the receivers' CPUs (RPS on their
# veth: the send call only queues the packet to another CPU's backlog), as another host would
# take it; the sender's CPU is then closer to its own send path.
#
# Root only (ip netns, veth). Everything it creates (two namespaces, the veth pair, a temporary
# folder unless --out) is removed at exit, also on Ctrl-C or SIGTERM. Addresses: sender
# 10.77.0.1/24, receivers 10.77.0.2/24, broadcast 10.77.0.255, multicast 224.0.0.0/4 routed on
# the veth in both namespaces. Not a tool for several hosts, and it adds no delay or loss
# (`tc netem` is absent here).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=""
compare=0
rounds=3
rate=500
size=64
duration=2s
out=""
rx_cpu=0
fanout_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=$2; shift 2 ;;
        --compare) compare=1; shift ;;
        --rounds) rounds=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        -t) duration=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --rx-cpu) rx_cpu=1; shift ;;
        --) shift; fanout_args=("$@"); break ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "netns.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "netns.sh: needs root (it creates network namespaces and a veth pair); run it as root or with sudo" >&2
    exit 2
fi
command -v ip >/dev/null || { echo "netns.sh: needs iproute2's ip" >&2; exit 2; }
if [ -z "$bin" ]; then
    for b in "$here/target/release/iomodels" "$here/target/debug/iomodels"; do
        [ -x "$b" ] && { bin=$b; break; }
    done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "netns.sh: no iomodels binary; cargo build --release, or --bin PATH" >&2; exit 2; }
if [ $compare = 0 ] && [ ${#fanout_args[@]} = 0 ]; then
    echo "netns.sh: give --compare, or -- and fanout's arguments (e.g. -- -n 10 --mode multicast)" >&2
    exit 2
fi

tag=$$
ns_s="iomfan-s-$tag"
ns_r="iomfan-r-$tag"
veth_s="iomfs$tag"   # interface names: 15 characters at most
veth_r="iomfr$tag"
made_out=0
created=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for ns in "${created[@]}"; do
        # Deleting a namespace deletes the veth end in it, and with it the pair.
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ $made_out = 1 ]; then rm -rf "$out"; fi
    exit $rc
}
# A signal stops the running fanout first (it stops its receivers and writes what it measured),
# then cleans up: waiting in `wait` lets the trap run at once instead of after the command.
child=0
on_signal() {
    if [ "$child" != 0 ]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

ip netns add "$ns_s"; created+=("$ns_s")
ip netns add "$ns_r"; created+=("$ns_r")
ip link add "$veth_s" netns "$ns_s" type veth peer name "$veth_r" netns "$ns_r"
in_s() { ip netns exec "$ns_s" "$@"; }
in_r() { ip netns exec "$ns_r" "$@"; }
in_s ip link set lo up
in_r ip link set lo up
in_s ip addr add 10.77.0.1/24 broadcast + dev "$veth_s"
in_r ip addr add 10.77.0.2/24 broadcast + dev "$veth_r"
in_s ip link set "$veth_s" up
in_r ip link set "$veth_r" up
in_s ip route add 224.0.0.0/4 dev "$veth_s"
in_r ip route add 224.0.0.0/4 dev "$veth_r"


# Two CPUs or more: the sender on the first, the receivers on the others,
# so N receivers waking do not share the sender's core (its caches, its time slices).
pin=()
cpus=$(nproc)
if [ "$cpus" -lt 2 ] && [ $rx_cpu = 1 ]; then
    echo "netns.sh: --rx-cpu needs two CPUs or more" >&2
    exit 2
fi
if [ "$cpus" -ge 2 ]; then
    pin=(--sender-cpu 0 --receiver-cpus "1-$((cpus - 1))")
    if [ $rx_cpu = 1 ]; then
        # RPS on the receivers' veth: what the sender's veth hands over is queued to the
        # receivers' CPUs' backlog and processed there (an IPI), not inside the send call.
        printf '%x' $(( (1 << cpus) - 2 )) | in_r tee "/sys/class/net/$veth_r/queues/rx-0/rps_cpus" >/dev/null
        echo "netns.sh: receive processing steered to CPUs 1-$((cpus - 1)) (RPS on $veth_r)" >&2
    fi
    echo "netns.sh: sender pinned to CPU 0, receivers to 1-$((cpus - 1))" >&2
fi

tx() { in_s cat "/sys/class/net/$veth_s/statistics/tx_packets"; }

# One fanout run across the pair; prints fanout's table and the veth's own count around it
# (connection set-up and ARP included, unlike fanout's wire_packets, which covers the window).
fanout() {
    local before after
    before=$(tx)
    # `ip netns exec` execs the binary: $! is fanout itself.
    ip netns exec "$ns_s" "$bin" fanout --interface "$veth_s" --receiver-interface "$veth_r" \
        --receivers-netns "$ns_r" "${pin[@]}" "$@" &
    child=$!
    local rc=0
    wait "$child" || rc=$?
    child=0
    [ $rc = 0 ] || { echo "netns.sh: fanout exited $rc" >&2; exit $rc; }
    after=$(tx)
    echo "netns.sh: $veth_s tx_packets over the whole command: $((after - before))"
}

if [ $compare = 0 ]; then
    fanout "${fanout_args[@]}"
    exit 0
fi

if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/iomodels-fanout.XXXXXX)
    made_out=1
else
    mkdir -p "$out"
fi
modes=(tcp udp multicast broadcast)
# Rounds alternate the order of modes (A B C D, D C B A, ...), so drift in the machine's load
# does not favour one mode.
for n in 1 10 50; do
    for k in $(seq 1 "$rounds"); do
        order=("${modes[@]}")
        if [ $((k % 2)) = 0 ]; then order=(broadcast multicast udp tcp); fi
        for m in "${order[@]}"; do
            echo "netns.sh: N=$n $m round $k" >&2
            fanout --mode "$m" -n "$n" --rate "$rate" --size "$size" -t "$duration" \
                --json "$out/$m-$n-r$k.json" >/dev/null
        done
    done
done

python3 - "$out" "$rounds" "$rx_cpu" <<'PY'
import json, sys, glob, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
rx = "receive work steered to the receivers' CPUs (RPS)" if sys.argv[3] == "1" else "receive work charged to the sender"
modes = ["tcp", "udp", "multicast", "broadcast"]
base = {}
print(f"fanout across a veth pair ({rx}); least CPU of {rounds} rounds; wire = veth tx_packets in the window")
print("thread = the sending thread's CPU per message (pacing sleeps included); in-send = its CPU inside the send calls only")
hdr = (f"{'N':>3} {'mode':<10} {'sent':>6} {'deliv':>7} {'thread us':>10} {'in-send us':>11} {'(rounds)':>15}"
       f" {'x N=1':>6} {'calls/msg':>9} {'wire/msg':>8} {'p99 us':>8}")
print(hdr)
print("-" * len(hdr))
for n in (1, 10, 50):
    for m in modes:
        docs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{m}-{n}-r*.json"))]
        if not docs:
            continue
        cpu = min(d["sender_cpu"]["us_per_message"] for d in docs)
        ins = [d["sender_cpu"].get("in_send_us_per_message") for d in docs]
        ins = [x for x in ins if x is not None] or [float("nan")]
        least = min(ins)
        if n == 1:
            base[m] = least
        wire = statistics.median(d["wire_packets_per_message"] for d in docs)
        calls = statistics.median(d["sender_syscalls_per_message"] for d in docs)
        ratio = min(d["delivered_ratio"] for d in docs)
        p99 = statistics.median(d["latency_us"]["p99"] for d in docs)
        x = least / base[m] if base.get(m) else float("nan")
        rng = f"{min(ins):.2f}-{max(ins):.2f}"
        print(f"{n:>3} {m:<10} {docs[0]['sent']:>6} {ratio:>7.4f} {cpu:>10.2f} {least:>11.2f} {rng:>15}"
              f" {x:>6.2f} {calls:>9.2f} {wire:>8.2f} {p99:>8.1f}")
PY
echo "netns.sh: JSON records in $out$( [ $made_out = 1 ] && echo ' (removed at exit; pass --out DIR to keep them)')"
