"""subscribe_events throughput: events per second one process moves from the simulator into Redis,
with 1 chain and with 20 chains, and the process's peak memory. Baseline in the same run: the
original ctop's way, one unpipelined XADD per event.

    .venv/bin/python -m benchmarks.bench_subscriber [--seconds 15] [--validators 100]

The simulator offers a fixed load in its own process; on a 2-core machine it competes with the
subscriber for CPU, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import websocket

from benchmarks._setup import ROOT

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def free_port_block(n: int) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n < 65000:
            return base


def env() -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "true",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ctop_bench"),
    }


def start_simulator(chains: int, validators: int, port: int, block_time: float) -> subprocess.Popen:
    # Output to a file, never to a pipe nobody reads: a full pipe would freeze the simulator.
    log = tempfile.NamedTemporaryFile("w+", prefix="ctop-bench-sim-", suffix=".log", delete=False)  # noqa: SIM115
    args = [
        "simulate_chain",
        "--chains",
        str(chains),
        "--validators",
        str(validators),
        "--block-time",
        f"{block_time * 1000:.1f}ms",
    ]
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args, "--port", str(port)],
        cwd=ROOT,
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "watch them with" in Path(log.name).read_text():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"simulator did not start; see {log.name}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


_LINE = re.compile(r"^(\S+ \S+) INFO ctop.subscriber chain=(\S+) .* events=(\d+) ")


def run_subscriber(networks: str, seconds: float) -> tuple[float, int]:
    """Events/s (steady state, from the per-chain log lines) and peak RSS in bytes."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "subscribe_events",
            "--networks",
            networks,
            "--duration",
            f"{seconds}s",
            "--log-interval",
            "2s",
            # The simulator makes hundreds of heights a second here (real chains make at most a few):
            # widen the plausible window so the load is measured, not refused.
            "--plausible-heights",
            "1000000",
        ],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = 0
    lines = []
    for line in proc.stdout:
        lines.append(line)
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for row in f:
                    if row.startswith("VmHWM:"):
                        peak = max(peak, int(row.split()[1]) * 1024)
        except OSError:
            pass
    proc.wait()
    samples: dict[str, list[tuple[float, int]]] = {}
    for line in lines:
        m = _LINE.match(line)
        if m:
            t = time.mktime(time.strptime(m.group(1).split(",")[0], "%Y-%m-%d %H:%M:%S"))
            t += int(m.group(1).split(",")[1]) / 1000
            samples.setdefault(m.group(2), []).append((t, int(m.group(3))))
    # Steady state: from the second log round to the last.
    total = 0.0
    for rows in samples.values():
        if len(rows) >= 3:
            (t0, e0), (t1, e1) = rows[1], rows[-1]
            total += (e1 - e0) / (t1 - t0)
    return total, peak


def baseline(url: str, seconds: float) -> float:
    """The original's hand-off: one XADD round trip per received event."""
    client = redis.Redis.from_url(REDIS_URL)
    ws = websocket.create_connection(url.replace("http", "ws") + "/websocket", skip_utf8_validation=True, timeout=5)
    for i, q in enumerate(("NewRound", "NewRoundStep", "Vote")):
        ws.send(f'{{"jsonrpc":"2.0","method":"subscribe","id":{i},"params":{{"query":"tm.event=\'{q}\'"}}}}')
    n, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        frame = ws.recv()
        if '"error":' in frame[:60]:
            break  # the simulator gave up on a reader this slow
        client.xadd("bench:baseline", {"c": "sim-1", "t": time.time_ns(), "p": frame})
        n += 1
    ws.close()
    client.delete("bench:baseline")
    return n / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--validators", type=int, default=100)
    parser.add_argument("--offered", type=float, default=45_000, help="Events per second the simulator offers.")
    args = parser.parse_args()
    redis.Redis.from_url(REDIS_URL).flushdb()
    # The subscriber command needs the schema (it reads chains from the database).
    from benchmarks._setup import setup_django

    setup_django()
    results = []
    per_height = 2 * args.validators + 8  # votes and step events of one height
    for chains in (1, 20):
        # Offer a fixed load (not flat out: a flat-out simulator starves its own event loop).
        block_time = chains * per_height / args.offered
        port = free_port_block(chains)
        sim = start_simulator(chains, args.validators, port, block_time)
        try:
            networks = ",".join(f"sim-{k + 1},http://127.0.0.1:{port + k}" for k in range(chains))
            rate, peak = run_subscriber(networks, args.seconds)
        finally:
            stop(sim)
        base = None
        if chains == 1:
            sim = start_simulator(1, args.validators, port, block_time)
            try:
                base = baseline(f"http://127.0.0.1:{port}", 5)
            finally:
                stop(sim)
        redis.Redis.from_url(REDIS_URL).flushdb()
        results.append((chains, rate, peak, base))
    print(
        f"subscribe_events, {args.validators} validators per chain, simulator offering {args.offered:,.0f} "
        "events/s on the same 2 cores"
    )
    print(f"{'chains':>6} {'events/s':>10} {'peak RSS':>10}  baseline (1 XADD per event)")
    for chains, rate, peak, base in results:
        extra = f"{base:,.0f}/s -> ctop is {rate / base:.1f}x" if base else ""
        print(f"{chains:>6} {rate:>10,.0f} {peak / 2**20:>8.0f}MB  {extra}")


if __name__ == "__main__":
    main()
