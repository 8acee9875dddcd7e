#!/usr/bin/python3
"""Refusals under load: how many requests livebucket must refuse it answers
per second on each surface, beside a floor, and what a genuine on_publish
costs meanwhile.

    bench/refusals.py [--duration 10] [--connections 64]

For each load, wrk (2 threads, `--latency`) keeps `--connections`
connections busy for `--duration` s with requests that must be refused:

- `hooks forged`: on_update at a wrong hooks secret on the TCP hooks
  listener (403; livebucket closes the connection after each answer, so wrk
  reconnects for every request, as an attacker then must);
- `play forged`: `/play` with a wrong signature (403);
- `vod forged`: a GET VOD link with a wrong signature (403).

The floor, in the same run and under the same wrk load: an nginx of its own
(one worker, nothing else to do) answering every request with a fixed 403
without reading it. While each load runs, a probe times a genuine signed
on_publish on livebucket's hooks listener every 200 ms (HTTP/1.0 on a new
connection, as nginx-rtmp calls it; each followed by its on_publish_done), and
the same probe runs once with no load: the cost a flood puts on the
streamers' own callbacks. `--connections` is at most the public listener's
per-peer cap (64 by default), since wrk is one peer.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import pipeline_latency as pl  # noqa: E402
from common import log  # noqa: E402

PROBE_EVERY_S = 0.2


def wrk_lua(path: Path, method: str, body: str) -> Path:
    path.write_text(
        f"wrk.method = {json.dumps(method)}\n"
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
    )
    return path


def parse_wrk(out: str) -> dict:
    """Requests/s, latency percentiles (ms) and non-2xx/3xx count from wrk's
    `--latency` report."""

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    pct = {m.group(1): ms(m.group(2)) for m in re.finditer(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))
    total = int(re.search(r"^\s+(\d+) requests in", out, re.M).group(1))
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "per_s": rps,
        "requests": total,
        "non_2xx_3xx": int(refused.group(1)) if refused else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "p50_ms": pct.get("50"),
        "p90_ms": pct.get("90"),
        "p99_ms": pct.get("99"),
    }


def run_wrk(run_dir: Path, name: str, url: str, lua: Path | None, connections: int, duration: int) -> dict:
    argv = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s", "--latency"]
    if lua is not None:
        argv += ["-s", str(lua)]
    argv.append(url)
    log_path = run_dir / f"wrk-{name}.log"
    proc = common.Proc(f"wrk-{name}", argv, log_path)
    code = proc.popen.wait(timeout=duration + 30)
    proc.stop()
    out = log_path.read_text()
    if code != 0:
        raise RuntimeError(f"wrk failed: {out}")
    return parse_wrk(out)


class Probe:
    """A genuine signed on_publish (then its on_publish_done) every
    PROBE_EVERY_S on livebucket's hooks listener, timed from connect to the
    end of the answer."""

    def __init__(self, port: common.LivebucketPorts, garage: common.Garage, bucket: str, tag: str):
        self.port, self.garage, self.bucket, self.tag = port, garage, bucket, tag
        self.times: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        k = 0
        path = f"/hooks/{common.HOOKS_SECRET}/on_publish"
        while not self.stopping.is_set():
            k += 1
            channel = f"probe-{self.tag}-{k}"
            body = common.publish_body(k, self.bucket, channel, self.garage.key_id, self.garage.secret)
            ms, status = common.timed_callback(self.port.hooks, path, body)
            if status != 302:
                raise RuntimeError(f"probe on_publish answered {status}")
            self.times.append(ms)
            common.publish_done(self.port, k, channel)
            self.stopping.wait(PROBE_EVERY_S)

    def stop(self) -> dict:
        self.stopping.set()
        self.thread.join(timeout=15)
        t = self.times
        return {
            "probes": len(t),
            "probe_p50_ms": common.percentile(t, 50),
            "probe_p99_ms": common.percentile(t, 99),
            "probe_max_ms": max(t) if t else None,
        }


def markdown(rows: list[dict], idle: dict, header: dict, command: str, connections: int) -> str:
    f = common.fmt_ms
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average (1/5/15 min) at start: "
        f"{header['load_start']}, at end: {header['load_end']}  ",
        f"wrk: 2 threads, {connections} connections, client-side latency. The probe: a genuine signed on_publish "
        f"every {PROBE_EVERY_S * 1000:.0f} ms on livebucket's hooks listener, connect to end of answer; with no load: "
        f"p50 {f(idle['probe_p50_ms'] / 1000)} / p99 {f(idle['probe_p99_ms'] / 1000)} ms over {idle['probes']} calls.",
        "",
        "| load | server | answers/s | refused (non-2xx/3xx) | socket errors | p50 ms | p99 ms "
        "| probe on_publish p50 / p99 / max ms (probes) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        probe = (
            f"{f(r['probe_p50_ms'] / 1000)} / {f(r['probe_p99_ms'] / 1000)} / {f(r['probe_max_ms'] / 1000)} ({r['probes']})"
            if "probes" in r
            else "–"
        )
        out.append(
            f"| {r['load']} | {r['server']} | {r['per_s']:.0f} | {r['non_2xx_3xx']} | {r['socket_errors']} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {probe} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per load (default 10)")
    ap.add_argument("--connections", type=int, default=64, help="wrk's connections (default 64, the per-peer cap)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    command = "bench/refusals.py " + " ".join(sys.argv[1:])
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: build it (bench/run does)")
    header = common.machine()
    header["load_start"] = common.loadavg()
    ctx = pl.Ctx(args)
    floor = None
    try:
        run_dir, shm = ctx.work / "refusals", ctx.shm / "refusals"
        run_dir.mkdir()
        hls = shm / "hls"
        hls.mkdir(parents=True)
        g = ctx.garage
        bucket = "refusals"
        g.create_bucket(bucket)
        proc, port = pl.start_livebucket(ctx, run_dir, hls, run_dir / "state")

        floor_port = common.free_port()
        (run_dir / "floor").mkdir()
        floor = common.start_nginx(
            "nginx-refusal-floor",
            run_dir / "floor",
            4096,
            f"""
    server {{
        listen 127.0.0.1:{floor_port};
        location / {{ return 403; }}
    }}
""",
        )
        common.wait_until("the floor's nginx", lambda: common.port_open(floor_port), timeout=10)

        expires = int(time.time()) + 3600
        bad = urllib.parse.quote("A" * 27 + "=", safe="")
        forged_hooks = common.nginx_callback_body(
            "update_publish", 1, "cam", common.push_query(bucket, "cam", g.key_id, g.secret)
        ).decode()
        loads = [
            (
                "hooks forged",
                f"http://127.0.0.1:{port.hooks}/hooks/{'x' * 64}/on_update",
                wrk_lua(run_dir / "hooks.lua", "POST", forged_hooks),
            ),
            (
                "play forged",
                f"http://127.0.0.1:{port.public}/play/{bucket}/cam/index.m3u8"
                f"?AccessKeyId={g.key_id}&Expires={expires}&Signature={bad}",
                None,
            ),
            (
                "vod forged",
                f"http://127.0.0.1:{port.public}/api/v1/buckets/{bucket}/channels/cam/vod"
                f"?startTime=1&endTime=2&AccessKeyId={g.key_id}&Expires={expires}&Signature={bad}",
                None,
            ),
        ]

        log("probe with no load")
        idle_probe = Probe(port, g, bucket, "idle")
        time.sleep(args.duration)
        idle = idle_probe.stop()

        rows = []
        cpu0 = proc.cpu_seconds()
        for name, url, lua in loads:
            log(f"{name}: livebucket; load {common.loadavg()}")
            probe = Probe(port, g, bucket, name.split()[0])
            res = run_wrk(run_dir, name.replace(" ", "-"), url, lua, args.connections, args.duration)
            res.update(probe.stop(), load=name, server="livebucket")
            rows.append(res)
            floor_url = re.sub(r"^http://127\.0\.0\.1:\d+", f"http://127.0.0.1:{floor_port}", url)
            log(f"{name}: floor")
            res = run_wrk(run_dir, name.replace(" ", "-") + "-floor", floor_url, lua, args.connections, args.duration)
            res.update(load=name, server="floor: nginx, fixed 403")
            rows.append(res)
        header["livebucket_cpu_s"] = round(proc.cpu_seconds() - cpu0, 1)
        header["load_end"] = common.loadavg()
        md = markdown(rows, idle, header, command, args.connections)
        md += f"\nlivebucket's CPU over the {len(loads)} loads (probes included): {header['livebucket_cpu_s']} s.\n"
        out_dir = common.BENCH_DIR / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"refusals-{ctx.stamp}.json").write_text(json.dumps({"header": header, "idle": idle, "rows": rows}, indent=1))
        (out_dir / f"refusals-{ctx.stamp}.md").write_text(md)
        print(md)
        proc.stop()
    finally:
        if floor is not None:
            floor.stop()
        ctx.close(args.keep)


if __name__ == "__main__":
    main()
