#!/usr/bin/python3
"""Benchmark: what a retention sweep costs, per hour of recording swept.

    bench/retention_sweep.py [--channels 100] [--minutes 10] [--batch 1000]

A fresh Garage (in $LIVEBUCKET_BENCH_DIR/retention-garage) gets, per channel,
`--minutes` of 2 s fragments `CHANNEL/<13-digit ms>.ts` (188-byte bodies:
only listing and deleting matter here) from 2023, and one session manifest
`.livebucket/index/CHANNEL/<start ms>-<recording>.json` listing them, as
livebucket writes them. `livebucket serve` runs with `[retention]
default_period_secs = 86400` (everything is older) and reaches Garage through
a counting proxy in this script, which classes every S3 request it relays
(LIST, DeleteObjects, GET, PUT, DELETE, HEAD, other). One sweep is asked for
on the operator listener (`POST /retention/sweep`); measured: its wall time,
livebucket's CPU seconds during it (utime + stime from /proc), and the
requests by class. Figures are given per channel-hour of recording swept.
Results go to $LIVEBUCKET_BENCH_DIR/results/ as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import log  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

BUCKET = "ret"
T0_MS = 1_700_000_000_000
FRAGMENT_MS = 2_000
BODY = b"\x47\x1f\xff\x10" + b"\xff" * 184


class CountingProxy:
    """HTTP/1.1 from livebucket to Garage, relayed byte for byte; each
    request's line is classed as it passes."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def classify(line: str) -> str:
        method, target = (line.split(" ") + ["", ""])[:2]
        query = target.partition("?")[2]
        if method == "GET" and "list-type=2" in query:
            return "LIST"
        if method == "GET" and target.split("?")[0] == "/":
            return "ListBuckets"
        if method == "POST" and query.startswith("delete"):
            return "DeleteObjects"
        return method

    def _accept(self):
        while True:
            client, _ = self.sock.accept()
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _down(self, server, client):
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()

    def _up(self, client, server):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for h in lines[1:]:
                    name, _, value = h.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                with self.lock:
                    self.counts[self.classify(lines[0])] += 1
                while len(rest) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    rest += data
                server.sendall(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
        except OSError:
            pass
        finally:
            server.close()


def client(endpoint: str, key_id: str, secret: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=common.REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=40, retries={"max_attempts": 5}),
    )


def fill(s3, channels: int, fragments: int) -> float:
    t0 = time.time()
    keys = [
        f"ch{c:03d}/{T0_MS + i * FRAGMENT_MS:013d}.ts" for c in range(channels) for i in range(fragments)
    ]

    def put(key):
        s3.put_object(Bucket=BUCKET, Key=key, Body=BODY, ContentType="video/mp2t", Metadata={"extinf": "2.000"})

    log(f"uploading {len(keys)} fragments (32 threads)")
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, keys))
    for c in range(channels):
        rec = f"{c:032x}"
        body = {
            "version": 1, "session": rec, "channel": f"ch{c:03d}", "started_ms": T0_MS, "ended": True,
            "fragments": [{"k": T0_MS + i * FRAGMENT_MS, "d": FRAGMENT_MS} for i in range(fragments)],
        }
        s3.put_object(
            Bucket=BUCKET, Key=f".livebucket/index/ch{c:03d}/{T0_MS:013d}-{rec}.json",
            Body=json.dumps(body, separators=(",", ":")).encode(), ContentType="application/json",
        )
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=100)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    fragments = args.minutes * 60_000 // FRAGMENT_MS
    header = common.machine()
    command = " ".join(sys.argv)
    garage_dir = common.BENCH_DIR / "retention-garage"
    shutil.rmtree(garage_dir, ignore_errors=True)
    g = common.Garage(garage_dir)
    lb = None
    try:
        g.create_bucket(BUCKET)
        s3 = client(g.endpoint, g.key_id, g.secret)
        fill_s = fill(s3, args.channels, fragments)
        log(f"filled in {fill_s:.1f} s")
        host, port = g.endpoint.removeprefix("http://").rsplit(":", 1)
        proxy = CountingProxy((host, int(port)))
        ports = common.LivebucketPorts.free()
        hls = garage_dir / "hls"
        hls.mkdir(parents=True, exist_ok=True)
        cfg = garage_dir / "livebucket-retention.toml"
        cfg.write_text(common.livebucket_config(
            ports, garage_dir / "lb-state", hls, f"http://127.0.0.1:{proxy.port}", g.key_id, g.secret,
            extra=f"[retention]\ndefault_period_secs = 86400\ninterval_secs = 86400\nbatch_size = {args.batch}\n",
        ))
        lb = common.Proc("livebucket", [str(common.LIVEBUCKET_BIN), "serve", "--config", str(cfg)],
                         garage_dir / "livebucket.log")
        common.wait_until("livebucket", lambda: common.port_open(ports.operator), timeout=30)
        proxy.counts.clear()
        load = common.loadavg()
        cpu0, t0 = lb.cpu_seconds(), time.time()
        req = urllib.request.Request(f"http://127.0.0.1:{ports.operator}/retention/sweep", method="POST")
        with urllib.request.urlopen(req, timeout=3600) as resp:
            report = json.loads(resp.read())
        wall, cpu = time.time() - t0, lb.cpu_seconds() - cpu0
        left = sum(1 for _ in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                   for _ in _.get("Contents", []))
    finally:
        if lb:
            lb.stop()
        g.stop()
    hours = args.channels * fragments * FRAGMENT_MS / 3_600_000
    counts = dict(proxy.counts)
    result = {
        "channels": args.channels, "fragments_per_channel": fragments, "channel_hours": hours,
        "batch_size": args.batch, "objects_deleted": report["objects"], "errors": report["errors"],
        "objects_left": left, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "requests": counts,
        "per_channel_hour": {
            "cpu_ms": round(cpu * 1000 / hours, 1),
            **{k: round(v / hours, 1) for k, v in counts.items()},
        },
        "load": load, "fill_s": round(fill_s, 1),
    }
    md = (
        f"# Retention sweep: {args.channels} channels x {args.minutes} min ({hours:.1f} channel-hours)\n\n"
        f"`{command}`; {header}\n\n"
        f"| objects deleted | left | wall s | CPU s | requests | per channel-hour |\n|---|---|---|---|---|---|\n"
        f"| {report['objects']} | {left} | {wall:.2f} | {cpu:.2f} | "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + " | "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["per_channel_hour"].items()))
        + " |\n"
    )
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"retention-{time.strftime('%Y%m%d-%H%M%S')}"
    base.with_suffix(".json").write_text(json.dumps({"machine": header, "command": command, "result": result}, indent=1))
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


if __name__ == "__main__":
    main()
