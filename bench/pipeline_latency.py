#!/usr/bin/python3
"""Benchmark 1: segment-to-S3 latency, CPU and memory of livebucket's upload
pipeline, against a bare PUT and the alternatives operators use today.

    bench/pipeline_latency.py run     [--channels 1,10,100] [--systems ...] [--duration S] [--perf] [--hog N] [--probe-publishes R]
    bench/pipeline_latency.py soak    [--channels 10] [--duration 600] [--sample 10]
    bench/pipeline_latency.py session [--fragments 20000] [--rate 50]

A synthetic writer does exactly nginx-rtmp's file operations for N channels,
staggered over the 2 s fragment period: it opens `<epoch-ms>.ts` in the
stream's directory, writes real MPEG-TS bytes in 4 writes 0.5 s apart, closes
it right after the last one, writes `index.m3u8.bak` (nginx's format, a 10 s
window) and renames it to `index.m3u8`, then opens the next fragment. Every
fragment is the same 2 s 320x240 ffmpeg fragment plus one MPEG-TS null packet
that makes its bytes unique (so Garage cannot deduplicate it).

Systems, each on its own bucket, one after the other on one Garage:
- `baseline`: at each close the writer itself PUTs the fragment with boto3,
  then nginx's playlist; the floor for "readable in S3";
- `rawput`: the same with a minimal client (http.client, SigV4 by hand);
- `livebucket`: target/release/livebucket, sessions approved through a
  signed `POST /hooks/on_publish`, stream directories `<hls>/<session id>/`,
  state_dir on disk; `livebucket-tmpfs`: the same with state_dir on tmpfs;
  `livebucket-sdk`: the same with every PUT through the AWS SDK
  (`[s3] direct_put = false`); `livebucket-https`: the same against the
  observing proxy's TLS port (its own CA in `[s3] ca_file`);
  `livebucket-main`: the binary in $LIVEBUCKET_MAIN_BIN (e.g. main's build),
  to compare two builds in one run;
- `pywatcher`: bench/pywatcher.py (watchdog IN_CLOSE_WRITE + boto3);
- `rclone`: `rclone copy --update --use-server-modtime HLS :s3:BUCKET`, again
  1 s after each run ends.
For the alternatives the writer also deletes fragments 20 s after they close,
as nginx's `hls_cleanup on` would (livebucket runs with `hls_cleanup off` and
deletes them itself).

Timing: every S3 request goes through an nginx reverse proxy in front of
Garage that logs when each response was sent (see common.Observer); the
writer logs when it closed each fragment. (a) = first complete PUT of the
fragment answered − close; (b) = first PUT of the channel's playlist that
lists the fragment answered − close. Nothing polls S3, so the measurement
puts no load of its own on Garage.

CPU: utime+stime of the system's processes over the writing window (for
rclone, of every `rclone copy` started in it), per channel-hour. Memory: peak
RSS (VmHWM; for rclone the largest ru_maxrss of one run) and, in `soak`,
livebucket's RSS sampled over the run. `session` runs livebucket alone on one
channel whose session is written faster than real time (fragments named 2 s
apart, written `--rate` per second, small bodies) and samples RSS and CPU per
stored fragment as the session grows. `--hog N` keeps N busy loops running
(CPU contention); `--perf` records livebucket with perf; `--probe-publishes R`
sends R signed on_publish calls per second for new channels, one at a time,
while livebucket's channels stream, and times them (their CPU counts too).

Results go to $LIVEBUCKET_BENCH_DIR/results/ (default /var/tmp/livebucket-bench)
as JSON and as a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import log  # noqa: E402

PERIOD = 2.0  # nginx hls_fragment
CHUNKS = 4  # writes per fragment
WINDOW = 5  # fragments in nginx's playlist (hls_playlist_length 10s)
CLEANUP_AFTER = 20.0  # hls_cleanup removes fragments older than twice the playlist length
# The bare-PUT floors: the writer PUTs the fragment, then the playlist, itself.
BASELINES = {"baseline": "boto3", "rawput": "raw"}


# ------------------------------------------------------------------ writer


def base_fragment(cache: Path) -> bytes:
    """2 s of 320x240 video + AAC audio as MPEG-TS, made once with ffmpeg."""
    path = cache / "fragment-320x240-2s.ts"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.ts")
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30,noise=alls=30:allf=t",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                "-t", "2", "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                "-b:v", "1100k", "-maxrate", "1100k", "-bufsize", "1100k",
                "-c:a", "aac", "-b:a", "96k", "-f", "mpegts", str(tmp),
            ],
            check=True,
        )
        tmp.rename(path)
    return path.read_bytes()


def null_packet(uid: bytes) -> bytes:
    """An MPEG-TS null packet (PID 0x1FFF, ignored by players) carrying `uid`."""
    payload = uid[:184].ljust(184, b"\xff")
    return b"\x47\x1f\xff\x10" + payload


def nginx_playlist(seq: int, names: list[str]) -> bytes:
    """What nginx-rtmp 1.2.2 writes (ngx_rtmp_hls_write_playlist)."""
    out = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-MEDIA-SEQUENCE:{seq}",
        "#EXT-X-TARGETDURATION:2",
    ]
    for n in names:
        out += ["#EXTINF:2.000,", n]
    return ("\n".join(out) + "\n").encode()


class Chan:
    def __init__(self, name: str, dir: str):
        self.name = name
        self.dir = dir
        self.file = None
        self.frag = ""
        self.body = b""
        self.count = 0
        self.closed: list[tuple[str, float]] = []
        self.queue: queue.Queue | None = None


def writer_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    base = Path(spec["base_ts"]).read_bytes()
    chans = [Chan(c["name"], c["dir"]) for c in spec["channels"]]
    n = len(chans)
    frags = spec["fragments"]
    cleanup = spec["cleanup"]
    events: list[dict] = []
    threads = []

    if spec.get("baseline"):
        b = spec["baseline"]
        if b["client"] == "boto3":
            import boto3
            from botocore.config import Config

            s3 = boto3.client(
                "s3",
                endpoint_url=b["endpoint"],
                region_name=common.REGION,
                aws_access_key_id=b["key_id"],
                aws_secret_access_key=b["secret"],
                config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(10, n)),
            )

            def put_fn():
                def put(key, body, content_type):
                    s3.put_object(Bucket=b["bucket"], Key=key, Body=body, ContentType=content_type)

                return put
        else:

            def put_fn():
                raw = common.RawS3(b["endpoint"], b["key_id"], b["secret"])
                return lambda key, body, content_type: raw.put(b["bucket"], key, body, content_type)

        def put_worker(q: queue.Queue) -> None:
            put = put_fn()
            while True:
                job = q.get()
                if job is None:
                    return
                key, body, pkey, ptext = job
                put(key, body, "video/mp2t")
                put(pkey, ptext, "application/vnd.apple.mpegurl")

        for c in chans:
            c.queue = queue.Queue()
            t = threading.Thread(target=put_worker, args=(c.queue,), daemon=True)
            t.start()
            threads.append(t)

    def open_next(c: Chan) -> None:
        ms = int(time.time() * 1000)
        c.frag = f"{ms}.ts"
        c.body = base + null_packet(f"{c.name}/{ms}/{os.urandom(8).hex()}".encode())
        c.file = open(os.path.join(c.dir, c.frag), "wb", buffering=0)

    # Each channel: open a fragment, write a quarter of it every 0.5 s, and
    # right after the last write close it and write the playlist (nginx cuts
    # a fragment when a packet arrives past its end, writes that packet to
    # the next one, and never leaves a complete fragment open).
    start = spec["start_at"]
    step_s = PERIOD / CHUNKS
    heap = [(start + i * PERIOD / n + step_s, i, 1) for i in range(n)]
    heapq.heapify(heap)
    while heap:
        t, i, k = heapq.heappop(heap)
        c = chans[i]
        delay = t - time.time()
        if delay > 0:
            time.sleep(delay)
        if c.file is None:
            open_next(c)
        part = len(c.body) // CHUNKS
        lo = (k - 1) * part
        hi = len(c.body) if k == CHUNKS else lo + part
        c.file.write(c.body[lo:hi])
        if k < CHUNKS:
            heapq.heappush(heap, (t + step_s, i, k + 1))
            continue
        # Fragment boundary: close, then the playlist (.bak + rename).
        c.file.close()
        t_close = time.time()
        c.file = None
        c.count += 1
        c.closed.append((c.frag, t_close))
        names = [f for f, _ in c.closed[-WINDOW:]]
        seq = max(0, c.count - WINDOW)
        text = nginx_playlist(seq, names)
        bak = os.path.join(c.dir, "index.m3u8.bak")
        with open(bak, "wb", buffering=0) as f:
            f.write(text)
        os.rename(bak, os.path.join(c.dir, "index.m3u8"))
        t_rename = time.time()
        events.append({"ch": c.name, "name": c.frag, "size": len(c.body), "t_close": t_close, "t_rename": t_rename})
        if c.queue is not None:
            c.queue.put((f"{c.name}/{c.frag}", c.body, f"{c.name}/index.m3u8", text))
        if cleanup:
            while c.closed and c.closed[0][1] < t_close - CLEANUP_AFTER:
                old, _ = c.closed.pop(0)
                try:
                    os.unlink(os.path.join(c.dir, old))
                except FileNotFoundError:
                    pass
        if c.count < frags:
            open_next(c)
            heapq.heappush(heap, (t + step_s, i, 1))

    for c in chans:
        if c.queue is not None:
            c.queue.put(None)
    for t in threads:
        t.join()
    Path(spec["events_out"]).write_text(json.dumps(events))


def fast_writer_main(spec_path: str) -> None:
    """One long session, faster than real time: fragment i is named
    `T0 + 2000·i ms` (2 s apart, as if live) but written every 1/rate s,
    with a small body, so hours of a session pass in minutes. Same file
    operations as nginx: write, close, playlist .bak + rename."""
    spec = json.loads(Path(spec_path).read_text())
    d = spec["dir"]
    rate, count, t0_ms = spec["rate"], spec["fragments"], spec["t0_ms"]
    body = null_packet(b"") * spec["packets"]
    start = time.time()
    names: list[str] = []
    for i in range(count):
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        name = f"{t0_ms + 2000 * i}.ts"
        with open(os.path.join(d, name), "wb", buffering=0) as f:
            f.write(body)
        names.append(name)
        bak = os.path.join(d, "index.m3u8.bak")
        with open(bak, "wb", buffering=0) as f:
            f.write(nginx_playlist(max(0, len(names) - WINDOW), names[-WINDOW:]))
        os.rename(bak, os.path.join(d, "index.m3u8"))


def session_run(ctx, fragments: int, rate: float, sample_s: float) -> dict:
    """livebucket alone, one channel, one session of `fragments` fragments."""
    run_dir, shm = ctx.work / "session", ctx.shm / "session"
    run_dir.mkdir()
    hls = shm / "hls"
    hls.mkdir(parents=True)
    bucket = f"session-{ctx.seq()}"
    g = ctx.garage
    g.create_bucket(bucket)
    proc, port = start_livebucket(ctx, run_dir, hls, run_dir / "state")
    sid = common.publish(port, 1, bucket, "long", g.key_id, g.secret)
    # livebucket makes an approved session's directory before it answers.
    (hls / sid).mkdir(exist_ok=True)
    time.sleep(0.5)
    spec = {
        "dir": str(hls / sid), "rate": rate, "fragments": fragments,
        "t0_ms": 1_700_000_000_000, "packets": 10,
    }
    spec_path = run_dir / "writer.json"
    spec_path.write_text(json.dumps(spec))
    obs_start = ctx.obs.offset()
    load_start = common.loadavg()
    writer = common.Proc("writer", ["/usr/bin/python3", __file__, "fastwriter", str(spec_path)], run_dir / "writer.log")
    t_start = time.time()
    samples = []
    prev_cpu, prev_up = sum(common.cpu_split(proc.pid)), 0.0

    def sample():
        nonlocal prev_cpu, prev_up
        cpu = sum(common.cpu_split(proc.pid))
        up = metric(port, "livebucket_fragments_uploaded_total")
        samples.append({
            "t": round(time.time() - t_start, 1), "uploaded": int(up), "rss_kb": proc.status_kb("VmRSS"),
            "cpu_s": round(cpu - prev_cpu, 2),
            "cpu_ms_per_fragment": round((cpu - prev_cpu) * 1000 / (up - prev_up), 2) if up > prev_up else None,
        })
        prev_cpu, prev_up = cpu, up

    while writer.running():
        time.sleep(sample_s)
        sample()
    writer.stop()
    common.wait_until(
        "every fragment uploaded", lambda: metric(port, "livebucket_fragments_uploaded_total") >= fragments,
        timeout=120, interval=1,
    )
    if not samples or samples[-1]["uploaded"] < fragments:
        sample()
    load_end = common.loadavg()
    hwm = proc.status_kb("VmHWM")
    journal_bytes = sum(f.stat().st_size for f in (run_dir / "state").rglob("journal"))
    common.publish_done(port, 1, "long")
    time.sleep(5)
    proc.stop()
    manifests = [
        (r["t"] - t_start, r["length"]) for r in ctx.obs.read(obs_start)
        if r["bucket"] == bucket and r["method"] == "PUT" and r["key"].endswith(".json")
    ]
    return {
        "fragments": fragments, "rate": rate, "samples": samples, "peak_rss_kb": hwm,
        "manifest_puts": len(manifests), "manifest_bytes_total": sum(n or 0 for _, n in manifests),
        "manifest_last_bytes": manifests[-1][1] if manifests else None,
        "journal_bytes": journal_bytes,
        "load_start": load_start, "load_end": load_end,
    }


def rss_growth_line(samples: list[dict]) -> str:
    """RSS growth per stored fragment over the second half of the session
    (least squares), the number that says whether memory is flat."""
    pts = [(smp["uploaded"], smp["rss_kb"] * 1024) for smp in samples[len(samples) // 2 :]]
    if len(pts) < 2:
        return "Too few samples for an RSS trend."
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts) or 1
    slope = sum((x - mx) * (y - my) for x, y in pts) / den
    first, last = samples[0], samples[-1]
    return (
        f"RSS {first['rss_kb'] / 1024:.1f} MiB at {first['uploaded']} fragments, {last['rss_kb'] / 1024:.1f} MiB at "
        f"{last['uploaded']}; second-half trend **{slope:+.0f} B per fragment** "
        f"(× 43,200 fragments = {slope * 43200 / 1e6:+.1f} MB per channel-day)."
    )


def markdown_session(r: dict, header: dict, command: str) -> str:
    hours = r["fragments"] * 2 / 3600
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average at start: {r['load_start']}, at end: {r['load_end']}  ",
        f"One channel, one session of {r['fragments']} fragments ({hours:.1f} h of 2 s fragments) "
        f"written {r['rate']:.0f}× per second (small bodies: this measures bookkeeping, not bytes). "
        f"Peak RSS {r['peak_rss_kb'] / 1024:.1f} MiB; {r['manifest_puts']} manifest PUTs, "
        f"{r['manifest_bytes_total'] / 1e6:.1f} MB in all, the last {r['manifest_last_bytes'] / 1e6:.2f} MB; "
        f"journal {r['journal_bytes'] / 1e6:.1f} MB.",
        "",
        rss_growth_line(r["samples"]),
        "",
        "| t (s) | fragments stored | session hours | RSS MiB | CPU ms per fragment (interval) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for smp in r["samples"]:
        per = "–" if smp["cpu_ms_per_fragment"] is None else f"{smp['cpu_ms_per_fragment']:.2f}"
        out.append(
            f"| {smp['t']:.0f} | {smp['uploaded']} | {smp['uploaded'] * 2 / 3600:.1f} "
            f"| {smp['rss_kb'] / 1024:.1f} | {per} |"
        )
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ rclone


class RcloneLoop:
    """`rclone copy` of the HLS directory, again 1 s after each run ends."""

    def __init__(self, hls: Path, bucket: str, endpoint: str, key_id: str, secret: str, run_dir: Path):
        self.argv = [
            "rclone", "copy", str(hls), f":s3:{bucket}",
            "--s3-provider", "Other", "--s3-endpoint", endpoint, "--s3-region", common.REGION,
            "--s3-force-path-style=true", "--s3-no-check-bucket",
            # rclone's S3 docs' way to avoid a HEAD per already-copied object
            # on every run: compare the local mtime with the upload time from
            # the listing. (`--size-only` would be cheaper still, but never
            # re-uploads nginx's playlist, whose size rarely changes.)
            "--update", "--use-server-modtime",
        ]
        (run_dir / "rclone.conf").write_text("")
        self.env = {
            "RCLONE_CONFIG": str(run_dir / "rclone.conf"),
            "RCLONE_S3_ACCESS_KEY_ID": key_id,
            "RCLONE_S3_SECRET_ACCESS_KEY": secret,
        }
        self.log_path = run_dir / "rclone.log"
        self.runs: list[dict] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            t0 = time.time()
            # rclone's AWS SDK refuses AWS_CA_BUNDLE with its own HTTP
            # transport ("LoadCustomCABundleError"); the endpoint is plain http.
            p = common.Proc("rclone", self.argv, self.log_path, env=self.env, unset=("AWS_CA_BUNDLE",))
            _, status, ru = os.wait4(p.pid, 0)
            p.popen.returncode = os.waitstatus_to_exitcode(status)
            p.stop()
            self.runs.append(
                {
                    "start": t0,
                    "end": time.time(),
                    "cpu": ru.ru_utime + ru.ru_stime,
                    "maxrss_kb": ru.ru_maxrss,
                    "rc": p.popen.returncode,
                }
            )
            self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(120)


# ------------------------------------------------------------------ driver


def start_livebucket(
    ctx,
    run_dir: Path,
    hls: Path,
    state_dir: Path,
    nginx_extra: str = "",
    s3_extra: str = "",
    binary: Path | None = None,
    endpoint: str | None = None,
    extra: str = "",
) -> tuple[common.Proc, common.LivebucketPorts]:
    port = common.LivebucketPorts.free()
    cfg = run_dir / "livebucket.toml"
    g = ctx.garage
    cfg.write_text(
        common.livebucket_config(
            port, state_dir, hls, endpoint or ctx.obs.endpoint, g.key_id, g.secret, nginx_extra, s3_extra, extra
        )
    )
    proc = common.Proc(
        "livebucket",
        [str(binary or common.LIVEBUCKET_BIN), "serve", "--config", str(cfg)],
        run_dir / "livebucket.log",
        env={"NO_COLOR": "1"},
    )
    common.wait_until(
        "livebucket's /healthz", lambda: (proc.assert_running(), common.http_get(port.operator, "/healthz")[0] == 200)[1]
    )
    return proc, port


def metric(port: common.LivebucketPorts, series: str) -> float:
    _, body = common.http_get(port.operator, "/metrics")
    for line in body.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


LB_SYSTEMS = ("livebucket", "livebucket-tmpfs", "livebucket-sdk", "livebucket-https", "livebucket-main")


def main_binary() -> Path:
    """The other build `livebucket-main` runs: $LIVEBUCKET_MAIN_BIN."""
    path = os.environ.get("LIVEBUCKET_MAIN_BIN")
    if not path or not Path(path).exists():
        sys.exit("livebucket-main needs LIVEBUCKET_MAIN_BIN, the path of another release build")
    return Path(path)


class Run:
    """One system × one channel count."""

    def __init__(
        self,
        ctx,
        system: str,
        n: int,
        duration: float,
        sample_s: float,
        perf: bool = False,
        drain_s: float = 30.0,
        probe_rate: float = 0.0,
    ):
        self.ctx, self.system, self.n, self.duration, self.sample_s = ctx, system, n, duration, sample_s
        self.perf = perf
        # livebucket: new publishes per second (each its own channel, one at
        # a time, ended at once) while the writer runs, timed client-side.
        self.probe_rate = probe_rate
        # How long to wait after the writer for every fragment to be listed:
        # past the knee the floor itself is tens of seconds behind.
        self.drain_s = drain_s
        # `livebucket-tmpfs`: livebucket with its state_dir on the tmpfs, which
        # takes the cost of its fsyncs out (an A/B for the disk default).
        # `livebucket-sdk`: every PUT through the AWS SDK (`direct_put =
        # false`), the path https stores take: an A/B for the direct PUT.
        # `livebucket-https`: to the observing proxy's TLS port, trusting its
        # CA; `livebucket-main`: another build ($LIVEBUCKET_MAIN_BIN).
        self.is_lb = system in LB_SYSTEMS
        self.state_on_tmpfs = system == "livebucket-tmpfs"
        self.s3_extra = {
            "livebucket-sdk": "direct_put = false",
            "livebucket-https": f'ca_file = "{ctx.obs.ca_file}"',
        }.get(system, "")
        self.endpoint = ctx.obs.tls_endpoint if system == "livebucket-https" else None
        self.binary = main_binary() if system == "livebucket-main" else None
        self.bucket = f"lat-{system}-{n}-{ctx.seq()}"
        self.run_dir = ctx.work / f"{system}-{n}"
        self.shm = ctx.shm / f"{system}-{n}"
        for d in (self.run_dir, self.shm):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        self.hls = self.shm / "hls"
        self.hls.mkdir()

    def execute(self) -> dict:
        ctx, n = self.ctx, self.n
        g = ctx.garage
        g.create_bucket(self.bucket)
        channels = [f"ch{i:03d}" for i in range(n)]
        proc = None
        rclone = None
        dirs = []
        lb_port = None
        if self.is_lb:
            state = (self.shm if self.state_on_tmpfs else self.run_dir) / "state"
            proc, lb_port = start_livebucket(
                ctx, self.run_dir, self.hls, state, s3_extra=self.s3_extra, binary=self.binary, endpoint=self.endpoint
            )
            for i, ch in enumerate(channels):
                sid = common.publish(lb_port, i + 1, self.bucket, ch, g.key_id, g.secret)
                dirs.append(self.hls / sid)
        else:
            dirs = [self.hls / ch for ch in channels]
        for d in dirs:
            # livebucket makes an approved session's directory itself.
            d.mkdir(exist_ok=True)
        if self.system == "pywatcher":
            proc = common.Proc(
                "pywatcher",
                [
                    "/usr/bin/python3", str(Path(__file__).resolve().parent / "pywatcher.py"),
                    "--hls", str(self.hls), "--endpoint", ctx.obs.endpoint, "--bucket", self.bucket,
                ],
                self.run_dir / "pywatcher.log",
                env={"AWS_ACCESS_KEY_ID": g.key_id, "AWS_SECRET_ACCESS_KEY": g.secret},
            )
            common.wait_until(
                "pywatcher to watch", lambda: (proc.assert_running(), "watching" in proc.log_path.read_text())[1]
            )
        time.sleep(0.5)  # livebucket: the new directories' watches are in place

        fragments = max(1, int(self.duration / PERIOD))
        spec = {
            "base_ts": str(ctx.base_ts),
            "channels": [{"name": ch, "dir": str(d)} for ch, d in zip(channels, dirs)],
            "fragments": fragments,
            "cleanup": self.system in ("pywatcher", "rclone"),
            "start_at": time.time() + 1.0,
            "events_out": str(self.run_dir / "events.json"),
        }
        if self.system in BASELINES:
            spec["baseline"] = {
                "endpoint": ctx.obs.endpoint, "key_id": g.key_id, "secret": g.secret, "bucket": self.bucket,
                "client": BASELINES[self.system],
            }
        spec_path = self.run_dir / "writer.json"
        spec_path.write_text(json.dumps(spec))

        obs_start = ctx.obs.offset()
        load_start = common.loadavg()
        g_cpu0 = g.proc.cpu_seconds()
        split0 = common.cpu_split(proc.pid) if proc else (0.0, 0.0)
        rss_samples = []
        perf = None
        if self.perf and proc:
            perf = common.Proc(
                "perf",
                ["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(proc.pid), "-o", str(self.run_dir / "perf.data")],
                self.run_dir / "perf.log",
                stop_signal=signal.SIGINT,
            )
        if self.system == "rclone":
            # Started with the writer, as a cron-like loop would already be running.
            rclone = RcloneLoop(self.hls, self.bucket, ctx.obs.endpoint, g.key_id, g.secret, self.run_dir)
        writer = common.Proc(
            "writer", ["/usr/bin/python3", __file__, "writer", str(spec_path)], self.run_dir / "writer.log"
        )
        t_start = spec["start_at"]
        next_sample = t_start

        pending = []

        def sample_rss() -> None:
            nonlocal next_sample
            now = time.time()
            if proc and now >= next_sample:
                rss_samples.append((round(now - t_start, 1), proc.status_kb("VmRSS")))
                if lb_port:
                    # Uploads queued or in flight (fragments, playlists,
                    # manifests): where a backlog builds up under overload.
                    pending.append(metric(lb_port, "livebucket_uploads_pending"))
                next_sample += self.sample_s

        floor = common.CallbackFloor(self.run_dir / "callback-floor") if self.is_lb and self.probe_rate else None
        probe = PublishProbe(lb_port, self.bucket, g, self.probe_rate, t_start, floor) if floor else None
        # The writer's own CPU: for the bare-PUT floors it includes the PUTs,
        # so the floor's client cost is it minus a writer that only writes.
        writer_cpu = common.wait_with_usage(writer, on_tick=sample_rss)
        probe_first, probe_again, probe_floor = probe.stop() if probe else ([], [], [])
        probe_server = probe.server_side() if probe else {}
        if floor:
            floor.stop()
        writer.stop()
        if writer.popen.returncode != 0:
            raise RuntimeError(f"writer failed: {common.tail(writer.log_path)}")
        t_end = time.time()
        split1 = common.cpu_split(proc.pid) if proc else (0.0, 0.0)
        if perf:
            perf.stop(timeout=60)
        g_cpu1 = g.proc.cpu_seconds()
        hwm = proc.status_kb("VmHWM") if proc else None
        rss_end = proc.status_kb("VmRSS") if proc else None
        load_end = common.loadavg()

        if self.is_lb:
            for i, ch in enumerate(channels):
                common.publish_done(lb_port, i + 1, ch)

        events = json.loads(Path(spec["events_out"]).read_text())
        # Drain: until every fragment is listed by a stored playlist, or 30 s.
        wanted = {(e["ch"], e["name"]) for e in events}

        def drained() -> bool:
            listed = set()
            for r in ctx.obs.read(obs_start):
                if r["bucket"] == self.bucket and r["method"] == "PUT" and r["key"].endswith(".m3u8"):
                    ch = r["key"].split("/", 1)[0]
                    listed.update((ch, line) for line in r["body"].splitlines() if line.endswith(".ts"))
            return wanted <= listed

        try:
            common.wait_until("every fragment to be listed", drained, timeout=self.drain_s, interval=0.5)
        except RuntimeError as e:
            log(f"{self.system} n={n}: {e}")
        if rclone:
            rclone.stop()
        if self.is_lb:
            # Give the sessions their end (ENDLIST playlist, final manifest).
            time.sleep(4)
            _, metrics = common.http_get(lb_port.operator, "/metrics")
            (self.run_dir / "metrics.txt").write_text(metrics)
        if proc:
            proc.stop()

        records = [r for r in ctx.obs.read(obs_start) if r["bucket"] == self.bucket]
        result = analyze(events, records)
        run_s = t_end - t_start
        if rclone:
            runs = [r for r in rclone.runs if t_start <= r["start"] < t_end]
            cpu = sum(r["cpu"] for r in runs)
            hwm = max((r["maxrss_kb"] for r in rclone.runs), default=None)
            result["rclone_runs"] = len(runs)
            result["rclone_run_s_p50"] = common.percentile([r["end"] - r["start"] for r in runs], 50)
            result["rclone_failed_runs"] = sum(1 for r in runs if r["rc"] != 0)
        else:
            cpu = sum(split1) - sum(split0)
            result["utime_s"] = round(split1[0] - split0[0], 2)
            result["stime_s"] = round(split1[1] - split0[1], 2)
        result.update(
            system=self.system,
            channels=n,
            run_s=round(run_s, 1),
            fragments_per_channel=fragments,
            cpu_s=round(cpu, 2) if self.system not in BASELINES else None,
            cpu_s_per_channel_hour=round(cpu / (n * run_s / 3600), 2) if self.system not in BASELINES else None,
            peak_rss_kb=hwm,
            rss_end_kb=rss_end,
            rss_samples=rss_samples,
            garage_cpu_s=round(g_cpu1 - g_cpu0, 2),
            writer_cpu_s=round(writer_cpu, 2),
            uploads_pending_max=max(pending) if pending else None,
            uploads_pending_p50=common.percentile(pending, 50),
            load_start=load_start,
            load_end=load_end,
        )
        if probe:
            result.update(probe_rate=self.probe_rate, probe_server=probe_server)
            for name, ms in (("first", probe_first), ("again", probe_again), ("floor", probe_floor)):
                result[f"probe_{name}"] = {
                    "calls": len(ms),
                    "p50_ms": common.percentile(ms, 50),
                    "p99_ms": common.percentile(ms, 99),
                    "max_ms": max(ms, default=None),
                }
        shutil.rmtree(self.shm, ignore_errors=True)
        return result


class PublishProbe:
    """Signed on_publish calls at `rate` per second, one at a time, each on a
    new connection as nginx-rtmp makes them, while the channels of the run
    stream; each approved push is ended at once. The calls cycle over
    PROBE_NAMES channels of their own: the first call for a name is a
    channel livebucket has not seen (its record is looked up in the bucket),
    the others a streamer coming back (record cached). Times (ms) are from
    connecting to reading the whole answer (`common.timed_callback`: the
    request is built before the clock starts)."""

    def __init__(self, port, bucket: str, garage, rate: float, start_at: float, floor):
        self.first: list[float] = []
        self.again: list[float] = []
        # The same requests to `floor` (common.CallbackFloor), one before
        # each call to livebucket.
        self.floor_port = floor.port
        self.floor: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(port, bucket, garage, rate, start_at), daemon=True
        )
        self.thread.start()

    def _run(self, port, bucket, garage, rate, start_at):
        time.sleep(max(0.0, start_at + 2 * PERIOD - time.time()))  # streams under way
        self.port = port
        self.server_before = {}
        k = 0
        next_at = time.time()
        while not self.stopping.is_set():
            k += 1
            if k == PROBE_NAMES + 1:
                # Server-side times of the cached calls: livebucket's
                # histogram from here on, less what the channels' own
                # publishes and the first lookups put in it.
                self.server_before = hook_histogram(port)
            clientid = 100_000 + k
            channel = f"probe{k % PROBE_NAMES:03d}"
            body = common.publish_body(clientid, bucket, channel, garage.key_id, garage.secret)
            # The floor first: what livebucket does after it answered (the
            # pipeline's wake-up) would fall on a call that follows it.
            floor_ms, _ = common.timed_callback(self.floor_port, f"/hooks/{common.HOOKS_SECRET}/on_publish", body)
            self.floor.append(floor_ms)
            ms, status = common.timed_callback(port.hooks, f"/hooks/{common.HOOKS_SECRET}/on_publish", body)
            if status != 302:
                raise RuntimeError(f"probe on_publish for {bucket}/{channel} answered {status}")
            (self.first if k <= PROBE_NAMES else self.again).append(ms)
            common.publish_done(port, clientid, channel)
            next_at += 1 / rate
            self.stopping.wait(max(0.0, next_at - time.time()))

    def stop(self) -> tuple[list[float], list[float], list[float]]:
        self.stopping.set()
        self.thread.join(timeout=15)
        return self.first, self.again, self.floor

    def server_side(self) -> dict:
        """The probe's cached on_publish answers as livebucket timed them
        (accept to answer written): calls, the share within 1 and 2 ms, and
        the histogram bucket bound the 99th percentile falls under."""
        if not self.server_before:
            return {"calls": 0}
        after = hook_histogram(self.port)
        diff = {le: n - self.server_before.get(le, 0) for le, n in after.items()}
        count = diff.get(float("inf"), 0)
        if not count:
            return {"calls": 0}
        return {
            "calls": count,
            "within_1ms": diff.get(0.001, 0) / count,
            "within_2ms": diff.get(0.002, 0) / count,
            "p50_le_ms": 1000 * min(le for le, n in diff.items() if n >= 0.5 * count),
            "p99_le_ms": 1000 * min(le for le, n in diff.items() if n >= 0.99 * count),
        }


def hook_histogram(port) -> dict[float, int]:
    """`livebucket_hook_seconds` for on_publish: upper bound (s) →
    answers at or under it (cumulative, as Prometheus has it)."""
    _, body = common.http_get(port.operator, "/metrics")
    prefix = 'livebucket_hook_seconds_bucket{call="on_publish",le="'
    out = {}
    for line in body.splitlines():
        if line.startswith(prefix):
            le, n = line[len(prefix) :].split('"} ')
            out[float(le)] = int(n)
    return out


PROBE_NAMES = 20


def analyze(events: list[dict], records: list[dict]) -> dict:
    size = {(e["ch"], e["name"]): e["size"] for e in events}
    stored: dict[tuple[str, str], float] = {}
    put_dur: dict[tuple[str, str], float] = {}
    listed: dict[tuple[str, str], float] = {}
    target = 0
    partial = 0
    methods = Counter()
    for r in sorted(records, key=lambda r: r["t"]):
        methods[r["method"]] += 1
        if r["method"] != "PUT" or r["status"] != 200:
            continue
        ch, _, name = r["key"].rpartition("/")
        if name.endswith(".ts"):
            want = size.get((ch, name))
            if want is not None and r["length"] is not None and r["length"] != want:
                partial += 1
                continue
            if (ch, name) not in stored:
                stored[(ch, name)] = r["t"]
                put_dur[(ch, name)] = r["dur"]
        elif name.endswith(".m3u8"):
            for line in r["body"].splitlines():
                if line.startswith("#EXT-X-TARGETDURATION:"):
                    target = max(target, int(line.split(":", 1)[1] or 0))
                if line.endswith(".ts") and not line.startswith("#"):
                    listed.setdefault((ch, line.rsplit("/", 1)[-1]), r["t"])
    a, b, wait, dur = [], [], [], []
    # How far each playlist trails its own fragments: first listed − stored.
    lag = []
    early = 0
    for e in events:
        k = (e["ch"], e["name"])
        if k in stored:
            a.append(stored[k] - e["t_close"])
            # Close → the client starts sending the fragment; then the PUT.
            wait.append(stored[k] - put_dur[k] - e["t_close"])
            dur.append(put_dur[k])
        if k in listed:
            b.append(listed[k] - e["t_close"])
            if k not in stored or listed[k] < stored[k]:
                early += 1
            elif k in stored:
                lag.append(listed[k] - stored[k])
    pct = common.percentile
    return {
        "fragments": len(events),
        "stored": len(a),
        "listed": len(b),
        "stored_p50_s": pct(a, 50),
        "stored_p90_s": pct(a, 90),
        "stored_p99_s": pct(a, 99),
        "stored_max_s": max(a) if a else None,
        "listed_p50_s": pct(b, 50),
        "listed_p90_s": pct(b, 90),
        "listed_p99_s": pct(b, 99),
        "listed_max_s": max(b) if b else None,
        "listed_before_stored": early,
        "lost": len(events) - len(a),
        "never_listed": len(events) - len(b),
        "target_duration_s": target or None,
        "lag_p50_s": pct(lag, 50),
        "lag_p99_s": pct(lag, 99),
        "lag_max_s": max(lag) if lag else None,
        "lag_over_target": sum(1 for x in lag if target and x > target),
        "put_start_p50_s": pct(wait, 50),
        "put_start_p99_s": pct(wait, 99),
        "put_dur_p50_s": pct(dur, 50),
        "put_dur_p99_s": pct(dur, 99),
        "partial_uploads": partial,
        "requests": dict(methods),
    }


class Ctx:
    def __init__(self, args):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.stamp = stamp
        self.work = common.BENCH_DIR / f"pipeline-{stamp}"
        self.shm = common.SHM_DIR / f"pipeline-{stamp}"
        self.work.mkdir(parents=True)
        self.shm.mkdir(parents=True)
        self.base_ts = common.BENCH_DIR / "cache" / "fragment-320x240-2s.ts"
        base_fragment(self.base_ts.parent)
        log("starting Garage and the observing proxy in", self.work)
        self.garage = common.Garage(self.work / "garage")
        self.obs = common.Observer(self.work / "observer", self.garage.s3_port)
        self._seq = 0

    def seq(self) -> int:
        self._seq += 1
        return self._seq

    def close(self, keep: bool) -> None:
        self.obs.stop()
        self.garage.stop()
        shutil.rmtree(self.shm, ignore_errors=True)
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)


def markdown_run(results: list[dict], header: dict, command: str) -> str:
    f = common.fmt_ms
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average (1/5/15 min) at start: {header['load_start']}, at end: {header['load_end']}  ",
        f"Fragments: {header['fragment_bytes']} bytes each (2 s, ~{header['fragment_bytes'] * 8 / 2 / 1e6:.1f} Mbit/s), 2 s per channel, channels staggered.",
        "",
        "| channels | system | fragments | (a) stored p50 / p99 / max ms | (b) in playlist p50 / p99 / max ms | playlist before fragment | partial PUTs | CPU s per channel-hour | peak RSS MiB | Garage CPU s | load 1-min start→end |",
        "|---:|---|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        rss = "–" if r["peak_rss_kb"] is None else f"{r['peak_rss_kb'] / 1024:.1f}"
        cpu = "–" if r["cpu_s_per_channel_hour"] is None else f"{r['cpu_s_per_channel_hour']:.1f}"
        missing = ""
        if r["stored"] < r["fragments"] or r["listed"] < r["fragments"]:
            missing = f" (stored {r['stored']}, listed {r['listed']})"
        out.append(
            f"| {r['channels']} | {r['system']} | {r['fragments']}{missing} "
            f"| {f(r['stored_p50_s'])} / {f(r['stored_p99_s'])} / {f(r['stored_max_s'])} "
            f"| {f(r['listed_p50_s'])} / {f(r['listed_p99_s'])} / {f(r['listed_max_s'])} "
            f"| {r['listed_before_stored']} | {r['partial_uploads']} | {cpu} | {rss} | {r['garage_cpu_s']:.1f} "
            f"| {r['load_start'].split()[0]}→{r['load_end'].split()[0]} |"
        )
    out += [
        "",
        "Where (a) goes: from the close to the client starting the fragment's PUT (nginx's `$request_time` subtracted), "
        "and the PUT itself (ms, p50 / p99; nginx logs in whole ms):",
        "",
        "| channels | system | close → PUT starts | PUT duration | utime / stime s |",
        "|---:|---|---|---|---|",
    ]
    for r in results:
        cpu = f"{r['utime_s']:.1f} / {r['stime_s']:.1f}" if "utime_s" in r else "–"
        out.append(
            f"| {r['channels']} | {r['system']} | {f(r['put_start_p50_s'])} / {f(r['put_start_p99_s'])} "
            f"| {f(r['put_dur_p50_s'])} / {f(r['put_dur_p99_s'])} | {cpu} |"
        )
    out.append("")
    by = {(r["system"], r["channels"]): r for r in results}
    lines = []
    for n in sorted({r["channels"] for r in results}):
        lb = by.get(("livebucket", n))
        for floor in BASELINES:
            base = by.get((floor, n))
            if base and lb and base["stored_p50_s"] is not None and lb["stored_p50_s"] is not None:
                lines.append(
                    f"- {n} channel(s): livebucket − {floor} (bare PUT), fragment readable: p50 "
                    f"{f(lb['stored_p50_s'] - base['stored_p50_s'])} ms, p99 {f(lb['stored_p99_s'] - base['stored_p99_s'])} ms; "
                    f"in the playlist: p50 {f(lb['listed_p50_s'] - base['listed_p50_s'])} ms, "
                    f"p99 {f(lb['listed_p99_s'] - base['listed_p99_s'])} ms"
                )
        for alt in ("pywatcher", "rclone"):
            a = by.get((alt, n))
            if a and lb and a["cpu_s_per_channel_hour"] and lb["cpu_s_per_channel_hour"] and a["stored_p50_s"] and a["listed_p50_s"]:
                lines.append(
                    f"- {n} channel(s): {alt} / livebucket CPU per channel: "
                    f"{a['cpu_s_per_channel_hour'] / lb['cpu_s_per_channel_hour']:.1f}×; "
                    f"p50 latency to stored {a['stored_p50_s'] / lb['stored_p50_s']:.1f}×, to listed "
                    f"{a['listed_p50_s'] / lb['listed_p50_s']:.1f}×"
                )
    return "\n".join(out + lines + cpu_lines(results)) + "\n"


def floor_client_cpu(results: list[dict], system: str, n: int) -> float | None:
    """CPU-s per channel-hour of a bare-PUT floor's client: its writer's CPU
    minus that of a writer that only writes files (the median over the other
    systems' runs at the same channel count)."""
    own = next((r for r in results if r["system"] == system and r["channels"] == n), None)
    plain = [r["writer_cpu_s"] for r in results if r["channels"] == n and r["system"] not in BASELINES]
    if own is None or not plain:
        return None
    extra = own["writer_cpu_s"] - common.percentile(plain, 50)
    return round(extra / (n * own["run_s"] / 3600), 2)


def cpu_lines(results: list[dict]) -> list[str]:
    """CPU per channel-hour: livebucket against the Python watcher and the
    bare-PUT floor's client, per channel count."""
    out = []
    for n in sorted({r["channels"] for r in results}):
        row = {r["system"]: r for r in results if r["channels"] == n}
        parts = []
        for system in (*LB_SYSTEMS, "pywatcher", "rclone"):
            if system in row and row[system]["cpu_s_per_channel_hour"] is not None:
                parts.append(f"{system} {row[system]['cpu_s_per_channel_hour']:.1f}")
        for floor in BASELINES:
            c = floor_client_cpu(results, floor, n)
            if c is not None:
                parts.append(f"{floor} client {c:.1f} (writer CPU minus a writer that only writes)")
        if parts:
            out.append(f"- {n} channel(s), CPU-s per channel-hour: " + "; ".join(parts))
        for system in ("livebucket", "livebucket-tmpfs"):
            out += ["- " + line for line in probe_lines(row.get(system, {}))]
    return out


def probe_lines(r: dict) -> list[str]:
    """The on_publish probe's figures of one run, if it had one."""
    out = []
    for name, what in (
        ("again", "a channel seen before (record cached)"),
        ("first", "a channel not seen before"),
        ("floor", "the floor (nginx answering a fixed 302, called before each of those)"),
    ):
        p = r.get(f"probe_{name}")
        if p and p["calls"]:
            out.append(
                f"{r['system']}: on_publish while {r['channels']} channels stream, {what}: {p['calls']} calls"
                f" ({r['probe_rate']:g}/s, one at a time, new connection each), client-side"
                f" p50/p99/max {p['p50_ms']:.2f}/{p['p99_ms']:.2f}/{p['max_ms']:.2f} ms"
            )
    s = r.get("probe_server")
    if s and s.get("calls"):
        out.append(
            f"{r['system']}: the same calls for a channel seen before, as livebucket timed them (accept to answer,"
            f" `livebucket_hook_seconds`): {s['calls']} calls, {100 * s['within_1ms']:.1f} % within 1 ms,"
            f" {100 * s['within_2ms']:.1f} % within 2 ms; p50 ≤ {s['p50_le_ms']:g} ms, p99 ≤ {s['p99_le_ms']:g} ms"
        )
    return out


def floor_keeps_up(r: dict) -> bool:
    """The floor keeps up when it stores every fragment and its p99 stays
    within one fragment period (nothing queues behind the next fragment)."""
    return r["lost"] == 0 and r["stored_p99_s"] is not None and r["stored_p99_s"] <= PERIOD


def markdown_knee(results: list[dict], header: dict, command: str, floor: str = "rawput") -> str:
    f = common.fmt_ms
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average (1/5/15 min) at start: "
        f"{header['load_start']}, at end: {header['load_end']}  ",
        f"Fragments: {header['fragment_bytes']} bytes each (2 s, ~{header['fragment_bytes'] * 8 / 2 / 1e6:.1f} Mbit/s) "
        "per channel. \"lag\" = first PUT of the channel's playlist listing a fragment − that fragment's first "
        "complete PUT (how far the playlist trails its stored fragments); \"lost\" = never stored by the end of the "
        "drain; \"early\" = listed in a playlist PUT answered before the fragment's.",
        "",
        "| channels | system | fragments | stored p50 / p99 / max ms | in playlist p50 / p99 / max ms "
        "| lag p50 / p99 / max ms | target s | lag > target | lost | early | CPU s per ch-h | peak RSS MiB "
        "| uploads pending p50 / max | Garage CPU s | load 1-min |",
        "|---:|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        rss = "–" if r["peak_rss_kb"] is None else f"{r['peak_rss_kb'] / 1024:.1f}"
        cpu = "–" if r["cpu_s_per_channel_hour"] is None else f"{r['cpu_s_per_channel_hour']:.1f}"
        pend = "–"
        if r.get("uploads_pending_max") is not None:
            pend = f"{r['uploads_pending_p50']:.0f} / {r['uploads_pending_max']:.0f}"
        out.append(
            f"| {r['channels']} | {r['system']} | {r['fragments']} "
            f"| {f(r['stored_p50_s'])} / {f(r['stored_p99_s'])} / {f(r['stored_max_s'])} "
            f"| {f(r['listed_p50_s'])} / {f(r['listed_p99_s'])} / {f(r['listed_max_s'])} "
            f"| {f(r['lag_p50_s'])} / {f(r['lag_p99_s'])} / {f(r['lag_max_s'])} "
            f"| {r['target_duration_s'] or '–'} | {r['lag_over_target']} | {r['lost']} | {r['listed_before_stored']} "
            f"| {cpu} | {rss} | {pend} | {r['garage_cpu_s']:.1f} "
            f"| {r['load_start'].split()[0]}→{r['load_end'].split()[0]} |"
        )
    out.append("")
    by = {(r["system"], r["channels"]): r for r in results}
    steps = sorted({r["channels"] for r in results})
    kept = [n for n in steps if (floor, n) in by and floor_keeps_up(by[(floor, n)])]
    knee = max(kept) if kept else None
    lines = []
    if knee is None:
        lines.append(f"- Knee: the floor ({floor}) kept up at none of the steps {steps} (p99 ≤ {PERIOD:.0f} s, 0 lost).")
    else:
        lines.append(
            f"- Knee: **{knee} channels**, the largest step where the floor ({floor}) stored every fragment with "
            f"p99 ≤ {PERIOD:.0f} s (kept up at {kept} of {steps})."
        )
        lb, fl = by.get(("livebucket", knee)), by[(floor, knee)]
        if lb and lb["stored_p99_s"] and fl["stored_p99_s"]:
            ratio = lb["stored_p99_s"] / fl["stored_p99_s"]
            lines.append(
                f"- At the knee: livebucket stored p99 {f(lb['stored_p99_s'])} ms vs floor {f(fl['stored_p99_s'])} ms "
                f"= **{ratio:.2f}×** (goal ≤ 1.5×: {'met' if ratio <= 1.5 else 'missed'}); in playlist p99 "
                f"{f(lb['listed_p99_s'])} ms vs {f(fl['listed_p99_s'])} ms."
            )
    for n in steps:
        if knee is not None and n <= knee:
            continue
        lb, fl = by.get(("livebucket", n)), by.get((floor, n))
        if not lb:
            continue
        rss = lb["peak_rss_kb"] / 1024 if lb["peak_rss_kb"] else None
        verdict = [
            f"lag max {f(lb['lag_max_s'])} ms against a target duration of {lb['target_duration_s']} s "
            f"({lb['lag_over_target']} fragments listed more than one target duration after they were stored)",
            f"lost {lb['lost']}",
            f"playlists ahead of their fragments {lb['listed_before_stored']}",
            f"peak RSS {rss:.1f} MiB" + (" (goal ≤ 64 MB at 500)" if n == 500 else "") if rss else "peak RSS –",
        ]
        if fl and fl["stored_p99_s"] and lb["stored_p99_s"]:
            verdict.insert(
                0,
                f"stored p50/p99 {f(lb['stored_p50_s'])}/{f(lb['stored_p99_s'])} ms vs floor "
                f"{f(fl['stored_p50_s'])}/{f(fl['stored_p99_s'])} ms",
            )
        lines.append(f"- Past the knee, {n} channels, livebucket: " + "; ".join(verdict) + ".")
    return "\n".join(out + lines) + "\n"


def markdown_soak(r: dict, header: dict, command: str) -> str:
    samples = r["rss_samples"]
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average at start: {r['load_start']}, at end: {r['load_end']}  ",
        f"{r['channels']} channels for {r['run_s']:.0f} s ({r['fragments']} fragments): "
        f"CPU {r['cpu_s']:.1f} s = {r['cpu_s_per_channel_hour']:.1f} s per channel-hour; "
        f"peak RSS (VmHWM) {r['peak_rss_kb'] / 1024:.1f} MiB; "
        f"fragment stored p50/p99 {common.fmt_ms(r['stored_p50_s'])}/{common.fmt_ms(r['stored_p99_s'])} ms, "
        f"listed p50/p99 {common.fmt_ms(r['listed_p50_s'])}/{common.fmt_ms(r['listed_p99_s'])} ms.",
        "",
    ]
    if samples:
        half = len(samples) // 2
        first = [kb for _, kb in samples[:half]] or [0]
        second = [kb for _, kb in samples[half:]] or [0]
        # Least-squares slope over the second half, kB per minute.
        xs = [t for t, _ in samples[half:]]
        ys = second
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs) or 1
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60
        out.append(
            f"RSS every {r['sample_s']:.0f} s: first half max {max(first) / 1024:.1f} MiB, "
            f"second half min/max {min(second) / 1024:.1f}/{max(second) / 1024:.1f} MiB, "
            f"second-half trend {slope:+.0f} kB/min."
        )
        out.append("")
        out.append("| t (s) | " + " | ".join(f"{t:.0f}" for t, _ in samples[:: max(1, len(samples) // 20)]) + " |")
        out.append("|---|" + "---:|" * len(samples[:: max(1, len(samples) // 20)]))
        out.append(
            "| RSS MiB | " + " | ".join(f"{kb / 1024:.1f}" for _, kb in samples[:: max(1, len(samples) // 20)]) + " |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        writer_main(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "fastwriter":
        fast_writer_main(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="latency, CPU and peak memory per system and channel count")
    r.add_argument("--channels", default="1,10,100")
    r.add_argument("--systems", default="baseline,rawput,livebucket,pywatcher,rclone")
    r.add_argument("--perf", action="store_true", help="perf record livebucket (run_dir/perf.data; implies --keep)")
    r.add_argument("--hog", type=int, default=0, help="busy-loop processes running during each run (CPU contention)")
    r.add_argument(
        "--probe-publishes",
        type=float,
        default=0.0,
        help="livebucket: new publishes per second, one at a time, timed while the channels stream (adds their CPU)",
    )
    r.add_argument("--duration", type=float, default=40.0, help="seconds of writing per run (default 40)")
    r.add_argument("--duration-1", type=float, default=60.0, help="seconds for the 1-channel runs (default 60)")
    r.add_argument("--keep", action="store_true", help="keep Garage's data and the logs")
    s = sub.add_parser("soak", help="livebucket alone for a long run, RSS sampled")
    s.add_argument("--channels", type=int, default=10)
    s.add_argument("--duration", type=float, default=600.0)
    s.add_argument("--sample", type=float, default=10.0)
    s.add_argument("--keep", action="store_true")
    k = sub.add_parser("knee", help="step the channel count up to overload: the floor's knee, livebucket past it")
    k.add_argument("--steps", default="100,200,300,400,500")
    k.add_argument("--systems", default="rawput,livebucket")
    k.add_argument("--duration", type=float, default=20.0, help="seconds of writing per step (default 20)")
    k.add_argument("--drain", type=float, default=90.0, help="seconds to wait for the backlog after writing")
    k.add_argument("--keep", action="store_true")
    ls = sub.add_parser("session", help="livebucket, one channel, one long session written faster than real time")
    ls.add_argument("--fragments", type=int, default=20_000)
    ls.add_argument("--rate", type=float, default=50.0, help="fragments written per second (default 50)")
    ls.add_argument("--sample", type=float, default=15.0)
    ls.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    command = "bench/pipeline_latency.py " + " ".join(sys.argv[1:])

    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: run bench/install (cargo build --release)")
    header = common.machine()
    header["load_start"] = common.loadavg()
    log("machine:", header["cpu"], f"{header['cores']} cores;", "load", header["load_start"])
    ctx = Ctx(args)
    results = []
    try:
        if args.cmd == "run":
            for n in [int(x) for x in args.channels.split(",")]:
                for system in args.systems.split(","):
                    duration = args.duration_1 if n == 1 else args.duration
                    log(f"{system}, {n} channel(s), {duration:.0f} s; load {common.loadavg()}")
                    hogs = [
                        common.Proc("hog", ["/usr/bin/python3", "-c", "while True: pass"], ctx.work / "hog.log")
                        for _ in range(args.hog)
                    ]
                    try:
                        res = Run(
                            ctx, system, n, duration, sample_s=1.0, perf=args.perf, probe_rate=args.probe_publishes
                        ).execute()
                    finally:
                        for h in hogs:
                            h.stop()
                    results.append(res)
                    for line in probe_lines(res):
                        log("  " + line)
                    log(
                        f"  stored p50/p99 {common.fmt_ms(res['stored_p50_s'])}/{common.fmt_ms(res['stored_p99_s'])} ms,"
                        f" listed p50/p99 {common.fmt_ms(res['listed_p50_s'])}/{common.fmt_ms(res['listed_p99_s'])} ms,"
                        f" cpu/ch-h {res['cpu_s_per_channel_hour']}, fragments {res['fragments']}"
                        f" stored {res['stored']} listed {res['listed']}"
                    )
        elif args.cmd == "knee":
            for n in [int(x) for x in args.steps.split(",")]:
                for system in args.systems.split(","):
                    log(f"knee: {system}, {n} channels, {args.duration:.0f} s; load {common.loadavg()}")
                    res = Run(ctx, system, n, args.duration, sample_s=1.0, drain_s=args.drain).execute()
                    results.append(res)
                    log(
                        f"  stored p50/p99 {common.fmt_ms(res['stored_p50_s'])}/{common.fmt_ms(res['stored_p99_s'])} ms,"
                        f" lag p99 {common.fmt_ms(res['lag_p99_s'])} ms, lost {res['lost']},"
                        f" rss {res['peak_rss_kb']} kB"
                    )
        elif args.cmd == "session":
            log(f"session: {args.fragments} fragments at {args.rate}/s; load {common.loadavg()}")
            results.append(session_run(ctx, args.fragments, args.rate, args.sample))
        else:
            log(f"soak: livebucket, {args.channels} channels, {args.duration:.0f} s; load {common.loadavg()}")
            res = Run(ctx, "livebucket", args.channels, args.duration, sample_s=args.sample).execute()
            res["sample_s"] = args.sample
            results.append(res)
    finally:
        ctx.close(getattr(args, "keep", False) or getattr(args, "perf", False))
    header["load_end"] = common.loadavg()
    header["fragment_bytes"] = ctx.base_ts.stat().st_size + 188
    if args.cmd == "run":
        md = markdown_run(results, header, command)
    elif args.cmd == "knee":
        md = markdown_knee(results, header, command)
    elif args.cmd == "session":
        md = markdown_session(results[0], header, command)
    else:
        md = markdown_soak(results[0], header, command)
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"pipeline-{args.cmd}-{ctx.stamp}"
    base.with_suffix(".json").write_text(json.dumps({"machine": header, "command": command, "results": results}, indent=1))
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


if __name__ == "__main__":
    main()
