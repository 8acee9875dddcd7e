#!/usr/bin/python3
"""Glass to glass: what a viewer in Chromium sees, behind the camera.

    bench/glass.py [--fragments 2,1] [--warmup 10] [--window 30]

The stamped encoder (tests/player/stamp_push.py: 320x240 25 fps pictures,
each carrying the wall-clock time it was made as a grid of black and white
cells with a CRC; libx264 veryfast zerolatency, a keyframe every fragment,
400 kbit/s, AAC) pushes one channel at a time, and hls.js in headless
Chromium (tests/player/play.cjs) reads the stamp back from every picture it
presents: glass to glass = the page's Date.now() - the stamp (one machine,
one clock). hls.js's own `latency` and `targetLatency` are shown beside it.

For each fragment length, in the same run, one after the other:
  (a) livebucket `/play`, hls.js with lowLatencyMode off (a plain player);
  (b) livebucket `/play`, hls.js's defaults (lowLatencyMode on; with
      livebucket's LL-HLS it loads parts, without it plays plain HLS);
  (c) the floor: nginx-rtmp serving its own HLS from the tmpfs over nginx's
      http (no S3, the same fragment length, the same encoder), plain hls.js.
livebucket runs with nginx-rtmp (scripts/render-nginx-conf), Garage behind
the observing proxy, a channel per length created with that FragDuration.
Each player starts once a viewer joining would start inside the stream (not
at the session's first segment; see `joinable`) and watches
`--warmup` + `--window` seconds; the percentiles are over the pictures
presented in the window. livebucket's LL-HLS (`[live] low_latency`) is on
when the binary has it (`--low-latency auto|on|off`), so (a) is a player
that ignores parts on the same LL playlist. `--lb-extra` adds config tables
to livebucket's (e.g. `[live]` settings).

Needs Chromium, node, and puppeteer-core + hls.js from
tests/console/package.json (scripts/install-deps; CONSOLE_TEST_NODE_MODULES
overrides where they are).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import pipeline_latency as pl  # noqa: E402
import realpath  # noqa: E402
from common import log  # noqa: E402

STAMP_PUSH = common.ROOT / "tests/player/stamp_push.py"
PLAY = common.ROOT / "tests/player/play.cjs"
NODE_MODULES = Path(
    os.environ.get("CONSOLE_TEST_NODE_MODULES")
    or Path.home() / ".cache/livebucket/console-test-node/node_modules"
)
BUCKET = "glass"
# How long a player may take to show its first picture (play.cjs).
START_SECONDS = 30

FLOOR_CONF = """load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
user www-data www-data;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/http-body;
    proxy_temp_path {prefix}/http-proxy;
    fastcgi_temp_path {prefix}/http-fastcgi;
    uwsgi_temp_path {prefix}/http-uwsgi;
    scgi_temp_path {prefix}/http-scgi;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{http_port};
        location / {{
            root {hls};
            add_header Access-Control-Allow-Origin * always;
            add_header Cache-Control no-cache;
        }}
    }}
}}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
{apps}
    }}
}}
"""

FLOOR_APP = """        application floor{n}s {{
            live on;
            hls on;
            hls_path {hls}/floor{n}s;
            hls_nested on;
            hls_fragment {n}s;
            hls_playlist_length {length}s;
        }}"""


def start_floor(run_dir: Path, shm: Path, fragments: list[int]) -> tuple[common.Proc, int, int]:
    """nginx-rtmp writing HLS into the tmpfs and serving it over http, one
    application per fragment length (`floor<N>s`); no callbacks, no S3."""
    prefix = run_dir / "floor-nginx"
    prefix.mkdir()
    hls = shm / "floor-hls"
    hls.mkdir()
    # The worker runs as www-data and writes (and serves) here.
    shutil.chown(hls, user="www-data", group="www-data")
    rtmp_port, http_port = common.free_port(), common.free_port()
    apps = "\n".join(FLOOR_APP.format(n=n, hls=hls, length=max(10, 6 * n)) for n in fragments)
    conf = prefix / "nginx.conf"
    conf.write_text(FLOOR_CONF.format(prefix=prefix, hls=hls, http_port=http_port, rtmp_port=rtmp_port, apps=apps))
    proc = common.Proc(
        "floor-nginx",
        ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf), "-g", "daemon off;"],
        prefix / "nginx.stderr.log",
    )
    common.wait_until("the floor's nginx", lambda: (proc.assert_running(), common.port_open(rtmp_port))[1], timeout=10)
    return proc, rtmp_port, http_port


def livebucket_cli(cfg: Path, *args: str) -> str:
    out = subprocess.run(
        [str(common.LIVEBUCKET_BIN), *args[:2], "--config", str(cfg), *args[2:]],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"livebucket {' '.join(args[:2])} failed: {out.stdout}{out.stderr}")
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def allow_any_origin(garage: common.Garage) -> None:
    """Bucket CORS for GET from any origin: the player's page is on its own
    origin, and /play's segment URIs point into the bucket."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3", endpoint_url=garage.endpoint, region_name=common.REGION,
        aws_access_key_id=garage.key_id, aws_secret_access_key=garage.secret,
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 600,
    }]})


def joinable(url: str) -> str | None:
    """None once a player joining now starts inside the stream rather than
    at its first segment, as a viewer of a running stream does (hls.js starts
    three target durations behind the live edge, so the playlist must list a
    target duration more than that, or have dropped its first segment);
    else what is still missing."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode(errors="replace")
    except OSError as e:
        return f"no playlist: {e}"
    target, sequence, listed = 0.0, 0, 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            listed += float(line.split(":", 1)[1].split(",", 1)[0])
    if target > 0 and (sequence > 0 or listed >= 4 * target):
        return None
    return f"{listed:.1f} s listed from the first segment, target duration {target:g} s"


def push(url: str, fragment: int, log_path: Path) -> common.Proc:
    return common.Proc(
        "stamp-push", ["/usr/bin/python3", str(STAMP_PUSH), url, "--fragment", str(fragment)], log_path,
    )


def play(run_dir: Path, url: str, mode: str, seconds: float, name: str) -> dict:
    """One player: play.cjs's RESULT, or raises with its output."""
    profile = run_dir / f"chromium-{name}"
    profile.mkdir()
    out = run_dir / f"player-{name}.log"
    proc = common.Proc(f"player-{name}", ["node", str(PLAY)], out, env={
        "PLAY_URL": url, "PLAY_MODE": mode, "PLAY_SECONDS": str(seconds), "PLAY_PROFILE": str(profile),
        "PLAY_START_SECONDS": str(START_SECONDS), "PLAY_NODE_MODULES": str(NODE_MODULES),
    })
    deadline = time.time() + START_SECONDS + seconds + 60
    while proc.running() and time.time() < deadline:
        time.sleep(0.5)
    # play.cjs closes Chromium itself; past the deadline SIGTERM makes
    # puppeteer close it.
    proc.stop()
    text = out.read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"the player ({mode}) gave no result:\n{text[-3000:]}")


def summarize(r: dict, warmup: float, window: float) -> dict:
    lo, hi = warmup * 1000, (warmup + window) * 1000
    glass = [ms for t, ms in r["glass"] if lo <= t <= hi]
    hls = [lat * 1000 for t, lat, _ in r["latency"] if lo <= t <= hi and lat is not None]
    targets = [tgt * 1000 for t, _, tgt in r["latency"] if lo <= t <= hi and tgt is not None]
    pct = common.percentile
    level = r.get("level") or {}
    return {
        "hls_version": r["hlsVersion"],
        "startup_ms": r["startupMs"],
        "stamps": len(glass),
        "unreadable": r["unreadable"],
        "glass_p50_ms": pct(glass, 50), "glass_p95_ms": pct(glass, 95), "glass_max_ms": max(glass, default=None),
        "hls_latency_p50_ms": pct(hls, 50), "target_latency_ms": targets[-1] if targets else None,
        "stalls": len([t for t in r["stalls"] if t is not None]) + len(r["waiting"]),
        "max_frame_gap_ms": r["maxFrameGapMs"],
        "frags_loaded": r["fragsLoaded"], "parts_loaded": r["partsLoaded"],
        "target_duration": level.get("targetDuration"), "part_target": level.get("partTarget"),
        "fatal": r["fatal"],
    }


def measure(run_dir: Path, name: str, push_url: str, play_url: str, fragment: int, modes: list[str],
            warmup: float, window: float) -> list[dict]:
    """Pushes to `push_url`, waits until `play_url` is joinable, then plays
    it once per mode, one after the other."""
    label = f"{name}-{fragment}s"
    pusher = push(push_url, fragment, run_dir / f"push-{label}.log")
    try:
        deadline = time.time() + 90
        while (missing := joinable(play_url)) is not None:
            pusher.assert_running()
            if time.time() > deadline:
                raise RuntimeError(f"{label}: the playlist was not joinable within 90 s: {missing}")
            time.sleep(0.25)
        rows = []
        for mode in modes:
            log(f"{label}: hls.js {mode} for {warmup + window:.0f} s; load {common.loadavg()}")
            load = common.loadavg().split()[0]
            res = summarize(play(run_dir, play_url, mode, warmup + window, f"{label}-{mode}"), warmup, window)
            res.update(system=name, mode=mode, fragment=fragment, load=f"{load}→{common.loadavg().split()[0]}")
            rows.append(res)
        return rows
    finally:
        # stamp_push.py ends ffmpeg's input and waits for it (up to 10 s).
        pusher.stop(timeout=15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fragments", default="2,1", help="fragment lengths in whole seconds (default 2,1)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of play before the window (default 10)")
    ap.add_argument("--window", type=float, default=30.0, help="measuring window, seconds (default 30)")
    ap.add_argument("--lb-extra", default="", help="config tables added to livebucket's, e.g. '[live]\\n...'")
    ap.add_argument(
        "--low-latency", choices=["auto", "on", "off"], default="auto",
        help="livebucket's LL-HLS ([live] low_latency): auto (default) = on when the binary has it",
    )
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, Chromium profiles)")
    args = ap.parse_args()
    command = "bench/glass.py " + " ".join(sys.argv[1:])
    fragments = [int(x) for x in args.fragments.split(",")]
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: build it (bench/run does)")
    for package in ("puppeteer-core", "hls.js"):
        if not (NODE_MODULES / package).is_dir():
            sys.exit(f"{NODE_MODULES} has no {package}: run scripts/install-deps")
    header = common.machine()
    header["load_start"] = common.loadavg()
    supported = realpath.livebucket_supports_low_latency()
    if args.low_latency == "on" and not supported:
        sys.exit("--low-latency on: this livebucket has no [live] low_latency")
    low_latency = args.low_latency == "on" or (args.low_latency == "auto" and supported)
    header["low_latency"] = "on" if low_latency else "off" if supported else "off (this livebucket has no such setting)"
    ctx = pl.Ctx(args)
    rows: list[dict] = []
    failed = True
    try:
        run_dir, shm = ctx.work / "glass", ctx.shm / "glass"
        run_dir.mkdir()
        hls = shm / "hls"
        hls.mkdir(parents=True)
        os.chmod(shm, 0o755)
        shutil.chown(hls, group="www-data")
        os.chmod(hls, 0o2770)
        g = ctx.garage
        g.create_bucket(BUCKET)
        allow_any_origin(g)
        rtmp_port, stat_port = common.free_port(), common.free_port()
        nginx_extra = f'relay_url = "rtmp://127.0.0.1:{rtmp_port}/hls"\nstat_url = "http://127.0.0.1:{stat_port}/stat"'
        extra = '[http]\ncors_origins = ["*"]\n'
        extra += realpath.low_latency_config(low_latency)
        extra += args.lb_extra.replace("\\n", "\n")
        lb, port = pl.start_livebucket(ctx, run_dir, hls, run_dir / "state", nginx_extra=nginx_extra, extra=extra)
        nginx = realpath.start_nginx(run_dir, port.hooks, hls, rtmp_port, stat_port)
        floor, floor_rtmp, floor_http = start_floor(run_dir, shm, fragments)
        cfg = run_dir / "livebucket.toml"
        lb_url = f"http://127.0.0.1:{port.public}"
        for n in fragments:
            channel = f"glass{n}s"
            livebucket_cli(cfg, "channel", "create", "--bucket", BUCKET, "--channel", channel,
                           "--frag-duration", str(n), "--frag-count", "6", "--playlist-name", "index.m3u8")
            push_url = f"rtmp://127.0.0.1:{rtmp_port}/live/{channel}?" + common.push_query(
                BUCKET, channel, g.key_id, g.secret)
            play_url = livebucket_cli(cfg, "sign", "play", "--bucket", BUCKET, "--key-name",
                                      f"{channel}/index.m3u8", "--via-livebucket", lb_url, "--expires-in", "3600")
            rows += measure(run_dir, "livebucket", push_url, play_url, n, ["plain", "low-latency"],
                            args.warmup, args.window)
            rows += measure(run_dir, "floor", f"rtmp://127.0.0.1:{floor_rtmp}/floor{n}s/glass",
                            f"http://127.0.0.1:{floor_http}/floor{n}s/glass/index.m3u8", n, ["plain"],
                            args.warmup, args.window)
        for p in (floor, nginx, lb):
            p.assert_running()
            p.stop()
        failed = False
    finally:
        if failed:
            log("kept the failed run's directory", ctx.work)
        ctx.close(args.keep or failed)
    header["load_end"] = common.loadavg()
    md = markdown(rows, header, command, args)
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"glass-{ctx.stamp}"
    base.with_suffix(".json").write_text(json.dumps({"machine": header, "command": command, "rows": rows}, indent=1))
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


def markdown(rows: list[dict], header: dict, command: str, args) -> str:
    def ms(v):
        return "–" if v is None else f"{v:.0f}"

    def seconds(v):
        return "–" if v is None else f"{v:g}"

    versions = sorted({r["hls_version"] for r in rows})
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average (1/5/15 min) at start: "
        f"{header['load_start']}, at end: {header['load_end']}  ",
        f"hls.js {', '.join(versions)} in headless Chromium; each player joins once the playlist lists more "
        f"than its hold-back (not at the session's first segment), plays {args.warmup:g} s, then {args.window:g} s are measured. Stamped encoder: 320x240 25 fps, "
        "libx264 veryfast zerolatency, keyframe every fragment, 400 kbit/s, AAC 64 kbit/s. Glass to glass: the "
        "page's clock when Chromium presents a picture − the time written into that picture. livebucket's LL-HLS "
        f"(`[live] low_latency`): {header['low_latency']}.",
        "",
        "| fragment | server | hls.js | pictures | glass to glass p50 / p95 / max ms | hls.latency p50 ms "
        "| targetLatency ms | target duration / part target s | parts loaded | stalls | startup ms | load 1-min |",
        "|---:|---|---|---:|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        server = "livebucket `/play`" if r["system"] == "livebucket" else "floor: nginx-rtmp's own HLS"
        mode = "lowLatencyMode on" if r["mode"] == "low-latency" else "lowLatencyMode off"
        fatal = f" (fatal: {r['fatal']})" if r["fatal"] else ""
        out.append(
            f"| {r['fragment']} s | {server} | {mode}{fatal} | {r['stamps']} "
            f"| {ms(r['glass_p50_ms'])} / {ms(r['glass_p95_ms'])} / {ms(r['glass_max_ms'])} "
            f"| {ms(r['hls_latency_p50_ms'])} | {ms(r['target_latency_ms'])} "
            f"| {seconds(r['target_duration'])} / {seconds(r['part_target'] or None)} | {r['parts_loaded']} "
            f"| {r['stalls']} | {ms(r['startup_ms'])} | {r['load']} |"
        )
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
