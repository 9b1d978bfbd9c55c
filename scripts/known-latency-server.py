#!/usr/bin/env python3
"""Known-latency echo server: an independent check of `iomodels load`, stdlib only.

Written outside the Rust project on purpose, so a bug shared by the generator and its Rust test
servers cannot hide. It is not a benchmark target: it is slow on purpose, and it is exact only
about *when* it answers.

  --delay-ms D              answer every read D ms after it arrived (one read = one message at
                            depth 1; pipelined messages read together share one delay)
  --stall-ms S --every-ms E hold every answer during the first S ms of each E ms period
                            (measured from server start), then answer everything held

Prints `listening HOST:PORT` on stdout once ready; stops on SIGINT/SIGTERM or after --max-s.
"""

import argparse
import signal
import socket
import sys
import os
import threading
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--stall-ms", type=float, default=0.0)
    ap.add_argument("--every-ms", type=float, default=1000.0)
    ap.add_argument("--max-s", type=float, default=600.0, help="exit after this long no matter what")
    a = ap.parse_args()

    delay = a.delay_ms / 1000.0
    stall = a.stall_ms / 1000.0
    every = a.every_ms / 1000.0
    t0 = time.monotonic()

    def hold_until():
        """If now is inside a stall window, the time the window ends; else None."""
        if stall <= 0:
            return None
        now = time.monotonic() - t0
        phase = now % every
        if phase < stall:
            return t0 + now - phase + stall
        return None

    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                arrived = time.monotonic()
                if delay > 0:
                    left = arrived + delay - time.monotonic()
                    if left > 0:
                        time.sleep(left)
                until = hold_until()
                if until is not None:
                    time.sleep(max(0.0, until - time.monotonic()))
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(1024)
    host, port = ls.getsockname()
    print(f"listening {host}:{port}", flush=True)

    def bye(*_):
        # os._exit: sys.exit would wait for the non-daemon --max-s timer thread.
        os._exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    threading.Timer(a.max_s, lambda: ls.close()).start()
    ls.settimeout(1.0)
    deadline = time.monotonic() + a.max_s
    while time.monotonic() < deadline:
        try:
            conn, _ = ls.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    # Timer thread is non-daemon; exit hard so it does not keep us alive.
    os._exit(0)


if __name__ == "__main__":
    main()
