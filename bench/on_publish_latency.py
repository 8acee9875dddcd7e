#!/usr/bin/env python3
"""on_publish latency with cluster mode off and on (run by hand, never in CI).

livebucket (release build) answers signed `POST /hooks/SECRET/on_publish`
calls, one after the other, each for a new channel, as nginx-rtmp posts them;
each approved push is ended with `on_publish_done`. The time is from sending
the request to reading the whole 302. Off: no `[cluster]` section. On: the
same config plus `[cluster]` pointing at a 3-member etcd (Debian's
etcd-server) on 127.0.0.1, so each call also takes the channel's key in etcd
(a read and a transaction) and reads the channel's playlist from the bucket
(a 404 for a new channel). Garage is single-node on 127.0.0.1 as in the other
benchmarks. Every process is stopped by its PID at the end.

Usage: bench/on_publish_latency.py [--calls 300]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import common
from common import log


def start_etcd(work: Path) -> list[str]:
    ports = [(common.free_port(), common.free_port()) for _ in range(3)]
    initial = ",".join(f"e{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
    token = f"bench-{time.time_ns()}"
    endpoints = []
    for i, (client, peer) in enumerate(ports):
        common.Proc(
            f"etcd e{i}",
            [
                "etcd", "--name", f"e{i}", "--data-dir", str(work / f"etcd-e{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", token, "--log-level", "warn",
            ],
            work / f"etcd-e{i}.log",
        )
        endpoints.append(f"http://127.0.0.1:{client}")

    def healthy() -> bool:
        for client, _ in ports:
            try:
                status, body = common.http_get(client, "/health")
            except OSError:
                return False
            if status != 200 or "true" not in body:
                return False
        return True

    common.wait_until("etcd healthy", healthy, timeout=30)
    return endpoints


def measure(garage: common.Garage, work: Path, name: str, extra: str, calls: int) -> dict:
    run = work / name
    hls = common.SHM_DIR / f"onpublish-{name}-{time.time_ns()}"
    hls.mkdir(parents=True)
    ports = common.LivebucketPorts.free()
    cfg = run / "livebucket.toml"
    run.mkdir(parents=True)
    cfg.write_text(
        common.livebucket_config(ports, run / "state", hls, garage.endpoint, garage.key_id, garage.secret) + extra
    )
    proc = common.Proc("livebucket", [str(common.LIVEBUCKET_BIN), "serve", "--config", str(cfg)], run / "livebucket.log",
                       env={"NO_COLOR": "1", "RUST_LOG": "warn"})
    try:
        common.wait_until(
            "livebucket's /healthz",
            lambda: (proc.assert_running(), common.http_get(ports.operator, "/healthz")[0] == 200)[1],
        )
        # Warm-up: connections to S3 and etcd are open before timing.
        for i in range(10):
            common.publish(ports, 100000 + i, "bench", f"warm{name}{i}", garage.key_id, garage.secret)
            common.publish_done(ports, 100000 + i, f"warm{name}{i}")
        times = []
        for i in range(calls):
            channel = f"{name}{i}"
            t0 = time.perf_counter()
            common.publish(ports, i + 1, "bench", channel, garage.key_id, garage.secret)
            times.append(time.perf_counter() - t0)
            common.publish_done(ports, i + 1, channel)
    finally:
        proc.stop()
        shutil.rmtree(hls, ignore_errors=True)
    return {
        "system": name,
        "calls": calls,
        "p50_ms": common.percentile(times, 50) * 1000,
        "p90_ms": common.percentile(times, 90) * 1000,
        "p99_ms": common.percentile(times, 99) * 1000,
        "max_ms": max(times) * 1000,
        "mean_ms": sum(times) / len(times) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: run bench/install (cargo build --release)")
    header = common.machine()
    header["load_start"] = common.loadavg()
    work = common.BENCH_DIR / f"onpublish-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    garage = common.Garage(work / "garage")
    garage.create_bucket("bench")
    endpoints = start_etcd(work)
    cluster = (
        "\n[cluster]\nendpoints = [" + ", ".join(f'"{e}"' for e in endpoints) + ']\nnode_id = "bench"\n'
    )
    results = []
    for name, extra in [("off", ""), ("on", cluster)]:
        log(f"cluster {name}: {args.calls} calls; load {common.loadavg()}")
        r = measure(garage, work, name, extra, args.calls)
        log(f"  p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
        results.append(r)
    header["load_end"] = common.loadavg()
    garage.stop()
    out = [
        f"`bench/on_publish_latency.py --calls {args.calls}`; commit {header['commit']}, {header['date']},"
        f" load {header['load_start']} → {header['load_end']}",
        "",
        "| cluster | calls | p50 ms | p90 ms | p99 ms | max ms | mean ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        out.append(
            f"| {r['system']} | {r['calls']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f}"
            f" | {r['max_ms']:.2f} | {r['mean_ms']:.2f} |"
        )
    text = "\n".join(out) + "\n"
    results_dir = common.BENCH_DIR / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"onpublish-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
