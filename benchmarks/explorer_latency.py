"""Latency and throughput of the explorer's decode endpoint (z → 28×28 PNG) over loopback.

Starts `vaelab explore RUN --port 0` as its own process on 127.0.0.1, then runs clients (threads, one keep-alive
HTTP connection each, a fresh prior code per request) in three phases, each bounded by a request count and a
time limit:

- one client: requests back to back, one at a time (the latency of a decode with no queue);
- saturated: each of 8 clients sends its next request as soon as the previous answer is in (the throughput);
- paced: the clients send RATE requests per second between them (500/s: 62.5 each, about one per display frame,
  the rate a dragged slider fires input events), each at its own random phase, i.e. 8 people dragging sliders at
  once.

    python benchmarks/explorer_latency.py runs/demo [--clients 8] [--requests 4000] [--rate 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from machine import run_header

TIME_LIMIT_S = 60.0  # per phase: the benchmark stops by itself whatever the server does


def start_server(run: str) -> tuple[subprocess.Popen, str, int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "vaelab.cli", "explore", run, "--port", "0", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, text=True,
    )
    line = server.stdout.readline()  # "latent explorer for RUN: http://127.0.0.1:PORT/  (…)"
    url = urlsplit(line.split(": ", 1)[1].split()[0])
    return server, url.hostname, url.port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(host: str, port: int, codes: np.ndarray, clients: int, requests: int, rate: float | None):
    """Latencies in seconds of `requests` decodes spread over `clients` threads, and the wall time they took."""
    per_client = requests // clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    deadline = time.perf_counter() + TIME_LIMIT_S

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        headers = {"Content-Type": "application/json"}
        # Paced clients start at independent random phases, as people dragging sliders do, not in lockstep.
        start = time.perf_counter() + (np.random.default_rng(index).uniform(0, 1 / rate) if rate else 0.0)
        for i in range(per_client):
            if rate is not None:  # the i-th request is due at start + i / rate
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            if time.perf_counter() > deadline:
                break
            body = json.dumps({"z": codes[(index * per_client + i) % len(codes)].tolist()})
            sent = time.perf_counter()
            connection.request("POST", "/api/decode", body, headers)
            response = connection.getresponse()
            content = response.read()
            latencies[index].append(time.perf_counter() - sent)
            if response.status != 200 or not content.startswith(b"\x89PNG"):
                errors.append(f"{response.status} {content[:80]!r}")
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.concatenate([np.array(one) for one in latencies]), time.perf_counter() - began, errors


def measure(name: str, server: subprocess.Popen, *client_args) -> str:
    server_before, client_before = cpu_seconds(server.pid), time.process_time()
    latencies, seconds, errors = run_clients(*client_args)
    server_ms = (cpu_seconds(server.pid) - server_before) * 1000 / len(latencies)
    client_ms = (time.process_time() - client_before) * 1000 / len(latencies)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return (f"{name:9s} {len(latencies):5d} decodes in {seconds:5.2f} s: {len(latencies) / seconds:4.0f} decodes/s, "
            f"p50 {p50:5.2f} ms, p99 {p99:6.2f} ms, max {latencies.max() * 1000:6.2f} ms, errors {len(errors)}; "
            f"CPU per decode: server {server_ms:.2f} ms, clients {client_ms:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4000, help="Per phase.")
    parser.add_argument("--rate", type=float, default=500.0, help="Requests per second, all clients together, paced.")
    args = parser.parse_args()
    server, host, port = start_server(args.run)
    try:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", "/api/info")
        latent_dim = json.loads(connection.getresponse().read())["latent_dim"]
        connection.close()
        codes = np.random.default_rng(0).standard_normal((args.requests, latent_dim)).round(4)
        print(run_header(f"load average {os.getloadavg()[0]:.2f}, {args.run} ({latent_dim}-d), "
                         f"{args.clients} clients over loopback, POST /api/decode → PNG"))
        run_clients(host, port, codes, args.clients, min(400, args.requests), None)  # warm-up, not reported
        print(measure("1 client", server, host, port, codes, 1, args.requests // 4, None))
        print(measure("saturated", server, host, port, codes, args.clients, args.requests, None))
        paced = args.rate / args.clients
        print(measure(f"{args.rate:.0f}/s", server, host, port, codes, args.clients, args.requests, paced))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
