#!/usr/bin/python3
"""Stream events at 100 channels: what `[events]` adds to livebucket's CPU,
to its on_publish answer, and in requests.

    bench/events.py [--channels 100] [--rounds 5]

Two runs on one Garage, each with a livebucket of its own (state_dir on
disk, as deployed): `off` without `[events]`, `on` with one endpoint, a
receiver of this script's own (Python's ThreadingHTTPServer, answering 204
and counting POSTs by type). Each run does `--rounds` bursts: `--channels`
signed on_publish callbacks one after another (HTTP/1.0 on a new connection,
as nginx-rtmp calls, each timed from connect to the end of the answer), then
an on_publish_done for each. The sessions send no media, so each emits
`stream.started` and `stream.ended` (no `recording.ready`: nothing was
stored). The run ends when the pipeline has finished every session (their
HLS directories are gone) and, with events on, every event was received and
none is queued.

Reported per run: livebucket's CPU seconds over the run, on_publish p50/p99,
POSTs received, and the mean time of one event's durable write (file and
directory fsync'd, `livebucket_events_write_seconds`) that the callback
waits for.
"""

from __future__ import annotations

import argparse
import collections
import http.server
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import pipeline_latency as pl  # noqa: E402
from common import log  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """Counts POSTs by the body's `type`; answers 204."""

    def __init__(self):
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kind = json.loads(body).get("type", "?")
                with outer.lock:
                    outer.counts[kind] += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def stop(self) -> None:
        self.server.shutdown()


def write_seconds(port) -> tuple[float, float]:
    """(sum, count) of livebucket_events_write_seconds over every type."""
    _, body = common.http_get(port.operator, "/metrics")
    total, count = 0.0, 0.0
    for line in body.splitlines():
        if line.startswith("livebucket_events_write_seconds_sum"):
            total += float(line.split()[-1])
        elif line.startswith("livebucket_events_write_seconds_count"):
            count += float(line.split()[-1])
    return total, count


def one_run(ctx, name: str, channels: int, rounds: int, with_events: bool) -> dict:
    run_dir, shm = ctx.work / name, ctx.shm / name
    run_dir.mkdir()
    hls = shm / "hls"
    hls.mkdir(parents=True)
    g = ctx.garage
    bucket = f"events-{name}"
    g.create_bucket(bucket)
    receiver = Receiver() if with_events else None
    extra = ""
    if receiver:
        extra = (
            f'[events]\nsecret = "{SECRET}"\n'
            f'[[events.endpoints]]\nname = "bench"\nurl = "http://127.0.0.1:{receiver.port}/events"\n'
        )
    proc, port = pl.start_livebucket(ctx, run_dir, hls, run_dir / "state", extra=extra)
    cpu0 = proc.cpu_seconds()
    t0 = time.monotonic()
    latencies: list[float] = []
    clientid = 0
    for r in range(rounds):
        names = [f"r{r}-c{i:03d}" for i in range(channels)]
        first = clientid + 1
        for i, ch in enumerate(names):
            body = common.publish_body(first + i, bucket, ch, g.key_id, g.secret)
            ms, status = common.timed_callback(port.hooks, f"/hooks/{common.HOOKS_SECRET}/on_publish", body)
            if status != 302:
                raise RuntimeError(f"on_publish {ch} answered {status}")
            latencies.append(ms)
        for i, ch in enumerate(names):
            common.publish_done(port, first + i, ch)
        clientid += channels
    want = 2 * channels * rounds

    def settled():
        # A session's HLS directory goes when the pipeline finished it.
        finished = not any(hls.iterdir())
        if receiver is None:
            return finished
        return finished and receiver.total() >= want and pl.metric(port, "livebucket_events_queued") == 0

    common.wait_until("every session ended and its events received", settled, timeout=300, interval=0.2)
    elapsed = time.monotonic() - t0
    cpu = proc.cpu_seconds() - cpu0
    wsum, wcount = write_seconds(port) if receiver else (0.0, 0.0)
    proc.stop()
    result = {
        "run": name,
        "events": with_events,
        "channels": channels,
        "rounds": rounds,
        "cpu_s": round(cpu, 3),
        "elapsed_s": round(elapsed, 1),
        "on_publish_p50_ms": common.percentile(latencies, 50),
        "on_publish_p99_ms": common.percentile(latencies, 99),
        "posts": receiver.total() if receiver else 0,
        "posts_by_type": dict(receiver.counts) if receiver else {},
        "write_mean_ms": (wsum / wcount * 1000) if wcount else None,
    }
    if receiver:
        receiver.stop()
    log(name, result)
    return result


def markdown(results: list[dict], header: dict, command: str) -> str:
    def f(v):
        return "–" if v is None else f"{v:.2f}"

    out = [
        "### Stream events at 100 channels",
        "",
        f"`{command}` on {header.get('cpu', '?')}, load {header.get('load_start', '?')}.",
        "",
        "| run | livebucket CPU s | on_publish p50 ms | p99 ms | POSTs to the receiver | event write (fsync'd) mean ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        out.append(
            f"| {r['run']} | {r['cpu_s']:.2f} | {f(r['on_publish_p50_ms'])} | {f(r['on_publish_p99_ms'])} "
            f"| {r['posts']} | {f(r['write_mean_ms'])} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    command = "bench/events.py " + " ".join(sys.argv[1:])
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: build it (bench/run does)")
    header = common.machine()
    header["load_start"] = common.loadavg()
    ctx = pl.Ctx(args)
    results = []
    try:
        for name, on in (("off", False), ("on", True)):
            results.append(one_run(ctx, name, args.channels, args.rounds, on))
    finally:
        ctx.close(args.keep)
    md = markdown(results, header, command)
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"events-{ctx.stamp}"
    base.with_suffix(".json").write_text(json.dumps({"machine": header, "command": command, "results": results}, indent=1))
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


if __name__ == "__main__":
    main()
