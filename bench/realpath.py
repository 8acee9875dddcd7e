#!/usr/bin/python3
"""The real path: ffmpeg publishers → nginx-rtmp → livebucket → Garage.

    bench/realpath.py [--channels 50] [--duration 60] [--warmup 8] [--low-latency off|on|both]

A short clip (640x360, 25 fps, keyframe every second, ~1.5 Mbit/s with AAC,
FLV) is encoded once and cached; each channel is then an ffmpeg that loops it
without re-encoding (`-re -stream_loop -1 -i clip.flv -c copy -f flv`) to
`rtmp://127.0.0.1:PORT/live/<channel>?<signed push query>`, started a little
apart. nginx-rtmp is configured by scripts/render-nginx-conf, as in the tests
and in production: it calls livebucket's hooks, relays each approved push to
its HLS application under a session id and writes 2 s fragments into a tmpfs.

Timing: bench/closewatch.py (inotify IN_CLOSE_WRITE) logs when nginx closes
each fragment; the observing proxy in front of Garage (common.Observer) logs
when the fragment's PUT and the first playlist PUT listing it were answered
(as in pipeline_latency.py). Fragments closed during the measuring window
(after `--warmup` seconds) count. Also: livebucket's and nginx's CPU over the
window, livebucket's peak RSS, and every S3 request to the bucket in the
window by method (PUTs and requests per channel-hour; part PUTs and DELETEs,
keys under CHANNEL/.ll/, apart).

`--low-latency on` runs livebucket with its LL-HLS parts on (`[live]
low_latency = true`, each part a PUT of its own while the fragment grows);
`both` runs off, then on, each with its own bucket and livebucket, and adds
what the parts cost per channel-hour (on − off). A livebucket without that
setting runs with parts off only, and the report says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import pipeline_latency as pl  # noqa: E402
from common import log  # noqa: E402

HERE = Path(__file__).resolve().parent


def clip(cache: Path) -> Path:
    """10 s of 640x360 H.264 (keyframe every second) + AAC in FLV, made once."""
    path = cache / "clip-640x360-10s.flv"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.flv")
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25,noise=alls=20:allf=t",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
                "-sc_threshold", "0", "-b:v", "1400k", "-maxrate", "1400k", "-bufsize", "1400k",
                "-c:a", "aac", "-b:a", "96k", "-f", "flv", str(tmp),
            ],
            check=True,
        )
        tmp.rename(path)
    return path


def start_nginx(run_dir: Path, hooks_port: int, hls: Path, rtmp_port: int, stat_port: int) -> common.Proc:
    prefix = run_dir / "nginx"
    prefix.mkdir()
    env = dict(
        os.environ,
        PREFIX=str(prefix),
        RTMP_LISTEN=f"127.0.0.1:{rtmp_port}",
        HOOKS_URL=f"http://127.0.0.1:{hooks_port}",
        HOOKS_SECRET=common.HOOKS_SECRET,
        HLS_DIR=str(hls),
        STAT_LISTEN=f"127.0.0.1:{stat_port}",
    )
    conf = subprocess.run(
        [str(common.ROOT / "scripts/render-nginx-conf")], env=env, capture_output=True, text=True, check=True
    ).stdout
    (prefix / "nginx.conf").write_text(conf)
    proc = common.Proc(
        "nginx-rtmp",
        ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf"),
         "-g", "daemon off;"],
        prefix / "nginx.stderr.log",
    )
    common.wait_until("nginx-rtmp", lambda: (proc.assert_running(), common.port_open(rtmp_port))[1], timeout=10)
    return proc


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (nginx's worker)."""
    total = common.cpu_seconds(pid)
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for k in kids:
        try:
            total += common.cpu_seconds(int(k))
        except OSError:
            pass
    return total


def log_tag(session: str) -> str:
    """How livebucket's log names a session (src/session.rs `log_tag`): the
    first 8 hex digits of its recording id, SHA-256 over a label and the
    session id, which names the stream's directory."""
    return hashlib.sha256(b"livebucket recording id\0" + session.encode()).hexdigest()[:8]


SESSION_RE = re.compile(r"session=(\S+).*?channel=(\S+)")


def livebucket_supports_low_latency() -> bool:
    """Whether this livebucket binary has `[live] low_latency` (LL-HLS parts,
    issue 21): `sign push` loads the config, and refuses unknown fields."""
    probe = common.BENCH_DIR / "low-latency-probe.toml"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(common.livebucket_config(
        common.LivebucketPorts.free(), common.BENCH_DIR, common.BENCH_DIR, "http://127.0.0.1:1",
        "GK" + "0" * 24, "0" * 64, extra=LOW_LATENCY_CONFIG,
    ))
    try:
        out = subprocess.run(
            [str(common.LIVEBUCKET_BIN), "sign", "push", "--config", str(probe), "--bucket", "probe",
             "--channel", "probe", "--endpoint", "rtmp://127.0.0.1/live", "--expires-in", "60"],
            capture_output=True, text=True,
        )
    finally:
        probe.unlink()
    if out.returncode == 0:
        return True
    if "unknown field `low_latency`" in out.stderr:
        return False
    raise RuntimeError(f"livebucket sign push refused the probe config: {out.stderr}")


# livebucket's LL-HLS parts on, at its default part target.
LOW_LATENCY_CONFIG = "[live]\nlow_latency = true\n"
# Said outright, since parts are on by default.
LOW_LATENCY_OFF_CONFIG = "[live]\nlow_latency = false\n"


def low_latency_config(on: bool) -> str:
    """The `[live]` table for parts on or off (nothing for a binary without the setting)."""
    if on:
        return LOW_LATENCY_CONFIG
    return LOW_LATENCY_OFF_CONFIG if livebucket_supports_low_latency() else ""


def run_once(ctx, args, source: Path, low_latency: bool) -> dict:
    """One run: the publishers, nginx-rtmp and livebucket (with LL-HLS parts
    on or off), measured over the window."""
    name = "realpath-ll" if low_latency else "realpath"
    publishers: list[common.Proc] = []
    try:
        run_dir, shm = ctx.work / name, ctx.shm / name
        run_dir.mkdir()
        hls = shm / "hls"
        hls.mkdir(parents=True)
        # As deploy/ lays it out: livebucket makes each stream's directory,
        # nginx's worker (www-data) writes there through the group hls/
        # passes on (setgid).
        os.chmod(shm, 0o755)
        shutil.chown(hls, group="www-data")
        os.chmod(hls, 0o2770)
        g = ctx.garage
        bucket = name
        g.create_bucket(bucket)
        rtmp_port, stat_port = common.free_port(), common.free_port()
        extra = f'relay_url = "rtmp://127.0.0.1:{rtmp_port}/hls"\nstat_url = "http://127.0.0.1:{stat_port}/stat"'
        lb, port = pl.start_livebucket(ctx, run_dir, hls, run_dir / "state", nginx_extra=extra,
                                       extra=low_latency_config(low_latency))
        nginx = start_nginx(run_dir, port.hooks, hls, rtmp_port, stat_port)
        closes = run_dir / "closed.txt"
        watch = common.Proc("closewatch", ["/usr/bin/python3", str(HERE / "closewatch.py"), str(hls), str(closes)],
                            run_dir / "closewatch.log")
        common.wait_until("closewatch", lambda: (watch.assert_running(), "watching" in watch.log_path.read_text())[1])
        channels = [f"cam{i:03d}" for i in range(args.channels)]
        log(f"real path: {args.channels} ffmpeg -c copy publishers; load {common.loadavg()}")
        for ch in channels:
            url = f"rtmp://127.0.0.1:{rtmp_port}/live/{ch}?{common.push_query(bucket, ch, g.key_id, g.secret)}"
            publishers.append(common.Proc(
                f"ffmpeg-{ch}",
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
                 "-i", str(source), "-c", "copy", "-f", "flv", url],
                run_dir / "ffmpeg" / f"{ch}.log",
            ))
            # Spread the publishers over a fragment period, as real ones are.
            time.sleep(2.0 / args.channels)
        time.sleep(args.warmup)
        for p in publishers:
            p.assert_running()
        obs_start = ctx.obs.offset()
        load_start = common.loadavg()
        t0 = time.time()
        lb_cpu0, ngx_cpu0, g_cpu0 = lb.cpu_seconds(), tree_cpu(nginx.pid), g.proc.cpu_seconds()
        rss = []
        perf = None
        if args.perf:
            perf = common.Proc(
                "perf",
                ["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(lb.pid),
                 "-o", str(run_dir / "perf.data")],
                run_dir / "perf.log",
                stop_signal=signal.SIGINT,
            )
        while time.time() < t0 + args.duration:
            time.sleep(1.0)
            rss.append(lb.status_kb("VmRSS"))
        t1 = time.time()
        if perf:
            perf.stop(timeout=60)
        lb_cpu1, ngx_cpu1, g_cpu1 = lb.cpu_seconds(), tree_cpu(nginx.pid), g.proc.cpu_seconds()
        load_end = common.loadavg()
        hwm = lb.status_kb("VmHWM")
        alive = sum(1 for p in publishers if p.running())
        for p in publishers:
            p.stop()
        # Until every fragment closed in the window is listed, or 30 s.
        sessions: dict[str, str] = {}
        for line in lb.log_path.read_text(errors="replace").splitlines():
            if "push approved" in line:
                m = SESSION_RE.search(line)
                if m:
                    sessions[m.group(1)] = m.group(2)
        events = []
        for line in closes.read_text().splitlines():
            t, stream, name = line.split()
            t = float(t)
            ch = sessions.get(log_tag(stream))
            if t0 <= t < t1 and ch:
                events.append({"ch": ch, "name": name, "size": None, "t_close": t})
        wanted = {(e["ch"], e["name"]) for e in events}

        def drained() -> bool:
            listed = set()
            for r in ctx.obs.read(obs_start):
                if r["bucket"] == bucket and r["method"] == "PUT" and r["key"].endswith(".m3u8"):
                    ch = r["key"].split("/", 1)[0]
                    listed.update((ch, x) for x in r["body"].splitlines() if x.endswith(".ts"))
            return wanted <= listed

        try:
            common.wait_until("every fragment to be listed", drained, timeout=30, interval=0.5)
        except RuntimeError as e:
            log(str(e))
        watch.stop()
        nginx.stop()
        lb.stop()
        records = [r for r in ctx.obs.read(obs_start) if r["bucket"] == bucket]
        res = pl.analyze(events, records)
        window = t1 - t0
        res.update(
            channels=args.channels,
            publishers_alive=alive,
            sessions=len(sessions),
            window_s=round(window, 1),
            livebucket_cpu_s=round(lb_cpu1 - lb_cpu0, 2),
            livebucket_cpu_s_per_channel_hour=round((lb_cpu1 - lb_cpu0) / (args.channels * window / 3600), 2),
            nginx_cpu_s=round(ngx_cpu1 - ngx_cpu0, 2),
            garage_cpu_s=round(g_cpu1 - g_cpu0, 2),
            peak_rss_kb=hwm,
            rss_max_window_kb=max(rss) if rss else None,
            load_start=load_start,
            load_end=load_end,
        )
        # Every request to the bucket in the window, by method: with parts
        # on, each part is a PUT of its own.
        window_records = [r for r in records if t0 <= r["t"] < t1]
        requests: dict[str, int] = {}
        for r in window_records:
            requests[r["method"]] = requests.get(r["method"], 0) + 1
        channel_hours = args.channels * window / 3600
        # Part objects live under CHANNEL/.ll/<recording>/ (src/llhls).
        parts = [r for r in window_records if "/.ll/" in r["key"]]
        res.update(
            low_latency=low_latency,
            s3_requests=requests,
            puts_per_channel_hour=round(requests.get("PUT", 0) / channel_hours),
            s3_requests_per_channel_hour=round(sum(requests.values()) / channel_hours),
            part_puts_per_channel_hour=round(sum(r["method"] == "PUT" for r in parts) / channel_hours),
            part_deletes_per_channel_hour=round(sum(r["method"] == "DELETE" for r in parts) / channel_hours),
        )
        return res
    finally:
        for p in publishers:
            p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="measuring window, seconds (default 60)")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds after the last publisher starts")
    ap.add_argument(
        "--low-latency", choices=["off", "on", "both"], default="off",
        help="livebucket's LL-HLS parts ([live] low_latency): off (default), on, or both, one run each",
    )
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--perf", action="store_true",
        help="perf record livebucket over the window (run_dir/perf.data; implies --keep)",
    )
    args = ap.parse_args()
    command = "bench/realpath.py " + " ".join(sys.argv[1:])
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: build it (bench/run does)")
    header = common.machine()
    header["load_start"] = common.loadavg()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.low_latency]
    header["note"] = ""
    if True in modes and not livebucket_supports_low_latency():
        header["note"] = (
            f"`--low-latency {args.low_latency}` asked for, but this livebucket has no `[live] low_latency`: "
            "ran with parts off only."
        )
        log(header["note"])
        modes = [False]
    ctx = pl.Ctx(args)
    source = clip(common.BENCH_DIR / "cache")
    results = []
    try:
        for low_latency in modes:
            results.append(run_once(ctx, args, source, low_latency))
    finally:
        ctx.close(args.keep or args.perf)
    header["load_end"] = common.loadavg()
    md = markdown(results, header, command)
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"realpath-{ctx.stamp}"
    base.with_suffix(".json").write_text(
        json.dumps({"machine": header, "command": command, "results": results}, indent=1)
    )
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


def markdown(results: list[dict], header: dict, command: str) -> str:
    f = common.fmt_ms
    r0 = results[0]
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average (1/5/15 min) at start: "
        f"{header['load_start']}, at end: {header['load_end']}  ",
        f"{r0['channels']} ffmpeg `-c copy` publishers per run, {r0['window_s']:.0f} s window. Latency from nginx's "
        "close (IN_CLOSE_WRITE) to stored / to listed; S3 requests are every request to the run's bucket in the "
        "window (through the observing proxy).",
    ]
    if header.get("note"):
        out.append(f"Note: {header['note']}")
    out += [
        "",
        "| LL-HLS parts | fragments | stored | listed | (a) stored p50 / p90 / p99 / max ms "
        "| (b) in playlist p50 / p90 / p99 / max ms | lag p99 / max ms | early | livebucket CPU s per ch-h "
        "| PUTs per ch-h | of which parts / part DELETEs | S3 requests per ch-h (by method in the window) "
        "| nginx CPU s | Garage CPU s | livebucket peak RSS MiB | load 1-min |",
        "|---|---:|---:|---:|---|---|---|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        methods = ", ".join(f"{m} {n}" for m, n in sorted(r["s3_requests"].items()))
        out.append(
            f"| {'on' if r['low_latency'] else 'off'} ({r['publishers_alive']}/{r['channels']} publishers, "
            f"{r['sessions']} sessions) | {r['fragments']} | {r['stored']} | {r['listed']} "
            f"| {f(r['stored_p50_s'])} / {f(r['stored_p90_s'])} / {f(r['stored_p99_s'])} / {f(r['stored_max_s'])} "
            f"| {f(r['listed_p50_s'])} / {f(r['listed_p90_s'])} / {f(r['listed_p99_s'])} / {f(r['listed_max_s'])} "
            f"| {f(r['lag_p99_s'])} / {f(r['lag_max_s'])} | {r['listed_before_stored']} "
            f"| {r['livebucket_cpu_s_per_channel_hour']:.1f} | {r['puts_per_channel_hour']} "
            f"| {r['part_puts_per_channel_hour']} / {r['part_deletes_per_channel_hour']} "
            f"| {r['s3_requests_per_channel_hour']} ({methods}) | {r['nginx_cpu_s']:.1f} | {r['garage_cpu_s']:.1f} "
            f"| {r['peak_rss_kb'] / 1024:.1f} | {r['load_start'].split()[0]}→{r['load_end'].split()[0]} |"
        )
    off = [r for r in results if not r["low_latency"]]
    on = [r for r in results if r["low_latency"]]
    if off and on:
        a, b = off[0], on[0]
        out += [
            "",
            f"What the parts cost, per channel-hour: {b['puts_per_channel_hour'] - a['puts_per_channel_hour']:+d} "
            f"PUTs, {b['s3_requests_per_channel_hour'] - a['s3_requests_per_channel_hour']:+d} S3 requests, "
            f"{b['livebucket_cpu_s_per_channel_hour'] - a['livebucket_cpu_s_per_channel_hour']:+.1f} livebucket "
            "CPU-s (on − off, one run each: CPU on a shared machine drifts between runs).",
        ]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
