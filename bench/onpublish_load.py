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
import signal
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
    return [common.publish_body(first_clientid + i, bucket, ch, key_id, secret) for i, ch in enumerate(channels)]


def phase(ctx, port, kind: str, run_dir: Path, lines: list[bytes], want: int, concurrency: int, bucket: str) -> dict:
    name = f"{kind}-c{concurrency}"
    threads = min(THREADS, concurrency)
    path = run_dir / f"bodies-{name}.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    obs_start = ctx.obs.offset()
    accepted0 = pl.metric(port, "livebucket_push_accepted_total")
    load_start = common.loadavg()
    argv = [
        "wrk", "-t", str(threads), "-c", str(concurrency), "-d", "300s", "--timeout", "10s",
        "-s", str(LUA), f"http://127.0.0.1:{port.hooks}",
        "--", f"/hooks/{common.HOOKS_SECRET}/on_publish", str(threads), str(path), str(want // threads),
        str(run_dir / f"done-{name}-"),
    ]
    t0 = time.time()
    wrk_log = run_dir / f"wrk-{name}.log"
    wrk = common.Proc("wrk", argv, wrk_log, stop_signal=signal.SIGINT)
    # wrk runs until its -d duration or SIGINT; each thread marks when it got
    # its share of answers, and SIGINT then makes wrk report (done()).
    common.wait_until(
        "wrk's threads",
        lambda: (wrk.assert_running(), all((run_dir / f"done-{name}-{i}").exists() for i in range(threads)))[1],
        timeout=300, interval=0.05,
    )
    wall = time.time() - t0
    wrk.stop(timeout=30)
    out = wrk_log.read_text()
    if wrk.popen.returncode != 0:
        raise RuntimeError(f"wrk failed: {out}")
    # One WRK-RESULT line per wrk process (done() runs once, in the main thread).
    line = next(x for x in out.splitlines() if x.startswith("WRK-RESULT "))
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
        phase=kind,
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
        "wrk (2 threads; 1 for one connection) keeps the given number of connections busy, every request a different "
        f"channel's signed on_publish; client-side latency. livebucket: state_dir on {extra['state']}, "
        f"peak RSS {extra['peak_rss_kb'] / 1024:.1f} MiB, CPU {extra['cpu_s']:.1f} s over all phases. "
        "\"302s\" is livebucket's count of approved pushes, which includes the requests still in flight when "
        "wrk stopped; \"record GETs\" are the GETs under `.livebucket/channels/` that reached Garage.",
        "",
        "| phase | connections | channel record | requests | 302s | record GETs to S3 | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| answers/s | non-3xx / socket errors | load 1-min |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    what = {"first": "first time (GET, 404)", "cached": "cached"}
    for r in results:
        sock = r["errors_connect"] + r["errors_read"] + r["errors_write"] + r["errors_timeout"]
        out.append(
            f"| {r['phase']} | {r['concurrency']} | {what.get(r['phase'], r['phase'])} | {r['requests']} | {r['accepted']} "
            f"| {r['record_gets']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | **{r['p99_ms']:.2f}** "
            f"| {r['p999_ms']:.2f} | {r['max_ms']:.2f} | {r['per_s']:.0f} | {r['errors_status']} / {sock} "
            f"| {r['load_start'].split()[0]}→{r['load_end'].split()[0]} |"
        )
    out.append("")
    for r in results:
        ok = r["p99_ms"] < 2.0
        out.append(
            f"- {r['phase']}, {r['concurrency']} connection(s): p99 {r['p99_ms']:.2f} ms "
            f"(goal p99 < 2 ms: {'met' if ok else 'missed'}); {r['per_s']:.0f} answers/s, so with "
            f"{r['concurrency']} always in flight a request waits about {r['concurrency'] / max(r['per_s'], 1) * 1000:.1f} ms "
            "(Little's law)."
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishes", type=int, default=3000, help="measured publishes per phase (default 3000)")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--serial", type=int, default=300, help="publishes per phase with one connection (default 300)")
    ap.add_argument(
        "--state", choices=("disk", "tmpfs"), default="disk",
        help="where livebucket's state_dir is: on disk (/var/tmp, as deployed) or on the tmpfs, "
        "an A/B for the cost of the session's durable write (default disk)",
    )
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
        state = (shm if args.state == "tmpfs" else run_dir) / "state"
        proc, port = pl.start_livebucket(ctx, run_dir, hls, state)
        cpu0 = proc.cpu_seconds()
        clientid = 0
        # (kind, connections, publishes): each "first" on channels never seen
        # before, each "cached" on the channels of the "first" before it; the
        # one-connection phases give the service time without queueing.
        plan = [("first", args.concurrency, args.publishes), ("cached", args.concurrency, args.publishes),
                ("first", 1, args.serial), ("cached", 1, args.serial)]
        channels: list[str] = []
        for n, (kind, conc, count) in enumerate(plan):
            if kind == "first":
                # Spares: a thread stops after its share of answers, with at
                # most one request per connection still in flight, each a
                # fresh channel.
                channels = [f"p{n}-{i:05d}" for i in range(count + conc + THREADS)]
            lines = bodies(bucket, channels, clientid + 1, g.key_id, g.secret)
            log(f"{kind}: {count} publishes, {conc} connection(s); load {common.loadavg()}")
            results.append(phase(ctx, port, kind, run_dir, lines, count, conc, bucket))
            # End every session of the phase, so the channels may publish again.
            for i, ch in enumerate(channels):
                common.publish_done(port, clientid + 1 + i, ch)
            clientid += len(channels)
        extra = {"peak_rss_kb": proc.status_kb("VmHWM"), "cpu_s": proc.cpu_seconds() - cpu0, "state": args.state}
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
