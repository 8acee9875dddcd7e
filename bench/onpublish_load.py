#!/usr/bin/python3
"""on_publish under load: how fast livebucket answers nginx-rtmp's
on_publish callback when many publishers arrive at once.

    bench/onpublish_load.py [--publishes 3000] [--concurrency 100]

wrk (C, so the client adds little of its own) keeps `--concurrency`
connections busy against livebucket's hooks listener at
`/hooks/<secret>/on_publish`, each request a real nginx-rtmp 1.2.2 form body
(common.nginx_callback_body) carrying a validly signed push URL for a channel
no other request in the phase publishes (bench/onpublish_load.lua). The
latency is client-side: from wrk writing the request to the whole 302
answer. Two phases, on one livebucket with its state_dir on disk:

- `first`: channels livebucket has never seen, so each publish looks the
  channel record up in the bucket (`.livebucket/channels/<c>.json`, a GET to
  Garage that answers 404: `[channels] unknown = create`);
- `cached`: after every first-phase session got its on_publish_done, the
  same channels publish again with new client ids: the lookup is answered
  from livebucket's record cache.

The record GETs that reach Garage are counted per phase through the observing
proxy (common.Observer), which shows which phase did the lookups. Every
answer must be a 302 (checked with livebucket's push counters).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import pipeline_latency as pl  # noqa: E402
from common import log  # noqa: E402

LUA = Path(__file__).resolve().parent / "onpublish_load.lua"
THREADS = 2


def bodies(bucket: str, channels: list[str], first_clientid: int, key_id: str, secret: str) -> list[bytes]:
    return [
        common.nginx_callback_body(
            "publish", first_clientid + i, ch, common.push_query(bucket, ch, key_id, secret)
        )
        for i, ch in enumerate(channels)
    ]


def phase(ctx, port, name: str, run_dir: Path, lines: list[bytes], want: int, concurrency: int, bucket: str) -> dict:
    path = run_dir / f"bodies-{name}.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    obs_start = ctx.obs.offset()
    accepted0 = pl.metric(port, "livebucket_push_accepted_total")
    load_start = common.loadavg()
    argv = [
        "wrk", "-t", str(THREADS), "-c", str(concurrency), "-d", "300s", "--timeout", "10s",
        "-s", str(LUA), f"http://127.0.0.1:{port.hooks}",
        "--", f"/hooks/{common.HOOKS_SECRET}/on_publish", str(THREADS), str(path), str(want // THREADS),
    ]
    t0 = time.time()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=360)
    wall = time.time() - t0
    (run_dir / f"wrk-{name}.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stdout}{out.stderr}")
    # One WRK-RESULT line per wrk process (done() runs once, in the main thread).
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK-RESULT "))
    res = json.loads(line.split(" ", 1)[1])
    time.sleep(0.5)
    accepted = pl.metric(port, "livebucket_push_accepted_total") - accepted0
    lookups = sum(
        1
        for r in ctx.obs.read(obs_start)
        if r["bucket"] == bucket and r["method"] == "GET" and r["key"].startswith(".livebucket/channels/")
    )
    p = res["percentiles_us"]
    res.update(
        phase=name,
        concurrency=concurrency,
        accepted=int(accepted),
        record_gets=lookups,
        wall_s=round(wall, 1),
        per_s=round(res["requests"] / (res["duration_us"] / 1e6), 0),
        p50_ms=p["50"] / 1000,
        p90_ms=p["90"] / 1000,
        p99_ms=p["99"] / 1000,
        p999_ms=p["99.9"] / 1000,
        max_ms=res["max_us"] / 1000,
        load_start=load_start,
        load_end=common.loadavg(),
    )
    log(
        f"  {name}: {res['requests']} requests, p50/p99/max {res['p50_ms']:.2f}/{res['p99_ms']:.2f}/"
        f"{res['max_ms']:.2f} ms, {res['per_s']:.0f}/s, accepted {res['accepted']}, record GETs {lookups}"
    )
    return res


def markdown(results: list[dict], header: dict, command: str, extra: dict) -> str:
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average (1/5/15 min) at start: "
        f"{header['load_start']}, at end: {header['load_end']}  ",
        f"wrk {THREADS} threads, {results[0]['concurrency']} connections kept busy, every request a different "
        "channel's signed on_publish; client-side latency. livebucket: state_dir on disk, "
        f"peak RSS {extra['peak_rss_kb'] / 1024:.1f} MiB, CPU {extra['cpu_s']:.1f} s over both phases.",
        "",
        "| phase | channel record | requests | 302s | record GETs to S3 | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| answers/s | non-3xx / socket errors | load 1-min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    what = {"first": "first time (GET, 404)", "cached": "cached"}
    for r in results:
        sock = r["errors_connect"] + r["errors_read"] + r["errors_write"] + r["errors_timeout"]
        out.append(
            f"| {r['phase']} | {what.get(r['phase'], r['phase'])} | {r['requests']} | {r['accepted']} "
            f"| {r['record_gets']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | **{r['p99_ms']:.2f}** "
            f"| {r['p999_ms']:.2f} | {r['max_ms']:.2f} | {r['per_s']:.0f} | {r['errors_status']} / {sock} "
            f"| {r['load_start'].split()[0]}→{r['load_end'].split()[0]} |"
        )
    out.append("")
    for r in results:
        ok = r["p99_ms"] < 2.0
        out.append(f"- {r['phase']}: p99 {r['p99_ms']:.2f} ms — goal p99 < 2 ms {'met' if ok else 'missed'}.")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishes", type=int, default=3000, help="measured publishes per phase (default 3000)")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    command = "bench/onpublish_load.py " + " ".join(sys.argv[1:])
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: build it (bench/run does)")
    header = common.machine()
    header["load_start"] = common.loadavg()
    ctx = pl.Ctx(args)
    results = []
    try:
        run_dir, shm = ctx.work / "onpublish", ctx.shm / "onpublish"
        run_dir.mkdir()
        hls = shm / "hls"
        hls.mkdir(parents=True)
        g = ctx.garage
        bucket = "onpublish"
        g.create_bucket(bucket)
        proc, port = pl.start_livebucket(ctx, run_dir, hls, run_dir / "state")
        # Spares: a thread stops after its share of answers, with at most one
        # request per connection still in flight, each a fresh channel.
        total = args.publishes + args.concurrency + THREADS
        channels = [f"pub{i:05d}" for i in range(total)]
        cpu0 = proc.cpu_seconds()
        log(f"first: {args.publishes} publishes of new channels, {args.concurrency} at a time; load {common.loadavg()}")
        results.append(
            phase(ctx, port, "first", run_dir, bodies(bucket, channels, 1, g.key_id, g.secret),
                  args.publishes, args.concurrency, bucket)
        )
        log("ending every first-phase session (on_publish_done)")
        for i, ch in enumerate(channels):
            common.publish_done(port, 1 + i, ch)
        log(f"cached: the same channels again, new client ids; load {common.loadavg()}")
        results.append(
            phase(ctx, port, "cached", run_dir, bodies(bucket, channels, 1 + total, g.key_id, g.secret),
                  args.publishes, args.concurrency, bucket)
        )
        extra = {"peak_rss_kb": proc.status_kb("VmHWM"), "cpu_s": proc.cpu_seconds() - cpu0}
        proc.stop()
    finally:
        ctx.close(args.keep)
    header["load_end"] = common.loadavg()
    md = markdown(results, header, command, extra)
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"onpublish-{ctx.stamp}"
    base.with_suffix(".json").write_text(
        json.dumps({"machine": header, "command": command, "results": results, **extra}, indent=1)
    )
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


if __name__ == "__main__":
    main()
