#!/usr/bin/python3
"""Adaptive bitrate: what a rendition costs, and what happens past the CPU.

    bench/renditions.py [--window 30] [--warmup 10] [--presets veryfast,superfast]
                        [--overload 3] [--skip exec_push,overload]

A 1080p30 clip (H.264 ~4.5 Mbit/s, keyframe every 2 s, AAC, FLV) is encoded
once and cached; each channel is an ffmpeg that loops it without
re-encoding (`-re -stream_loop -1 -c copy`) into nginx-rtmp's public
application, rendered by scripts/render-nginx-conf as in the tests and in
production, with livebucket and Garage behind it. The ladder is two rungs,
720p (2500 kbit/s) and 360p (800 kbit/s), AAC 96/64 kbit/s, each one ffmpeg
that livebucket supervises (`[renditions]`). Runs, one after the other:

- `floor`: one channel, no ladder: livebucket + nginx CPU for the source.
- `livebucket <preset>` (each of `--presets`): one channel with the ladder;
  each transcoder's CPU (utime + stime from /proc/PID/stat over the window,
  told apart by its `scale=-2:H`), livebucket's and nginx's.
- `exec_push <preset>`: what an operator would otherwise run: nginx-rtmp
  alone, its `exec_push` starting the same ffmpeg command lines (read from
  livebucket's transcoders in the run before, input and output URLs
  changed, `-progress` dropped) into an application with `hls on`. The same
  ffmpeg work without livebucket's supervision.
- `overload`: `--overload` channels with the first preset's ladder, more
  than the machine transcodes in real time: which rungs livebucket dropped
  (its log and `livebucket_rendition_dropped_total`), which transcoders
  were still running at the end, and whether every fragment nginx closed
  for a source was stored (closewatch against the observing proxy's PUTs).

Channels per core: 1 / (the rungs' CPU + livebucket's and nginx's CPU above
the floor), in cores per channel. Hardware encoders (`/dev/dri`, `ffmpeg
-encoders`) are detected and reported, not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import pipeline_latency as pl  # noqa: E402
import realpath  # noqa: E402
from common import log  # noqa: E402

HERE = Path(__file__).resolve().parent

RUNGS = [("720p", 720, 2500, 96), ("360p", 360, 800, 64)]


def ladder_config(preset: str) -> str:
    rungs = "".join(
        f'\n[[renditions.rungs]]\nname = "{n}"\nheight = {h}\nvideo_kbps = {v}\naudio_kbps = {a}\n'
        for n, h, v, a in RUNGS
    )
    names = ", ".join(f'"{n}"' for n, *_ in RUNGS)
    # A lag limit long enough that only a machine that cannot keep up drops.
    return f'[renditions]\npreset = "{preset}"\ndefault = [{names}]\n{rungs}'


def clip(cache: Path) -> Path:
    """10 s of 1920x1080 30 fps H.264 (keyframe every 2 s) + AAC in FLV, made once."""
    path = cache / "clip-1920x1080-10s.flv"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.flv")
        log("encoding the 1080p30 source clip once (cached in", cache, ")")
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
                "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-b:v", "4500k", "-maxrate", "4500k",
                "-bufsize", "9000k", "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(tmp),
            ],
            check=True,
        )
        tmp.rename(path)
    return path


def ppid_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def ffmpegs_under(parents: set[int]) -> dict[int, list[str]]:
    """Every ffmpeg whose parent is one of `parents`: pid → argv."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "ffmpeg" and ppid_of(pid) in parents:
            argv = cmdline(pid)
            if argv:
                out[pid] = argv
    return out


def rung_of(argv: list[str]) -> str:
    """The rung a transcoder makes, from its `scale=-2:H` filter."""
    for a in argv:
        m = re.search(r"scale=-2:(\d+)", a)
        if m:
            return f"{m.group(1)}p"
    return "audio" if "-vn" in argv else "?"


def children(pid: int) -> set[int]:
    try:
        return {int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


class Window:
    """CPU seconds of chosen processes over a window, from /proc/PID/stat."""

    def __init__(self, pids: dict[str, int]):
        self.start = {name: self._cpu(pid) for name, pid in pids.items()}
        self.pids = pids
        self.t0 = time.time()

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            return common.cpu_seconds(pid)
        except OSError:
            return None

    def end(self) -> tuple[float, dict[str, float | None]]:
        t = time.time() - self.t0
        out = {}
        for name, pid in self.pids.items():
            a, b = self.start[name], self._cpu(pid)
            # A process that died in the window has no end figure.
            out[name] = None if a is None or b is None else b - a
        return t, out


def start_publishers(run_dir: Path, rtmp_port: int, source: Path, channels: list[str], query) -> list[common.Proc]:
    pubs = []
    for ch in channels:
        url = f"rtmp://127.0.0.1:{rtmp_port}/live/{ch}"
        q = query(ch)
        if q:
            url += "?" + q
        pubs.append(common.Proc(
            f"ffmpeg-{ch}",
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
             "-i", str(source), "-c", "copy", "-f", "flv", url],
            run_dir / "publishers" / f"{ch}.log",
        ))
        time.sleep(2.0 / max(1, len(channels)))
    return pubs


def livebucket_run(ctx, args, source: Path, name: str, channels: int, ladder: str | None) -> dict:
    """One run through livebucket: `channels` publishers, with `ladder` (a
    `[renditions]` table) or none."""
    publishers: list[common.Proc] = []
    run_dir, shm = ctx.work / name, ctx.shm / name
    run_dir.mkdir()
    hls = shm / "hls"
    hls.mkdir(parents=True)
    os.chmod(shm, 0o755)
    shutil.chown(hls, group="www-data")
    os.chmod(hls, 0o2770)
    g = ctx.garage
    bucket = re.sub(r"[^a-z0-9-]", "-", name)
    g.create_bucket(bucket)
    rtmp_port, stat_port = common.free_port(), common.free_port()
    extra = f'relay_url = "rtmp://127.0.0.1:{rtmp_port}/hls"\nstat_url = "http://127.0.0.1:{stat_port}/stat"'
    lb, port = pl.start_livebucket(ctx, run_dir, hls, run_dir / "state", nginx_extra=extra, extra=ladder or "")
    nginx = realpath.start_nginx(run_dir, port.hooks, hls, rtmp_port, stat_port)
    closes = run_dir / "closed.txt"
    watch = common.Proc("closewatch", ["/usr/bin/python3", str(HERE / "closewatch.py"), str(hls), str(closes)],
                        run_dir / "closewatch.log")
    try:
        common.wait_until("closewatch", lambda: (watch.assert_running(), "watching" in watch.log_path.read_text())[1])
        names = [f"cam{i:02d}" for i in range(channels)]
        log(f"{name}: {channels} channel(s), ladder {'on' if ladder else 'off'}; load {common.loadavg()}")
        publishers = start_publishers(
            run_dir, rtmp_port, source, names, lambda ch: common.push_query(bucket, ch, g.key_id, g.secret)
        )
        time.sleep(args.warmup)
        obs_start = ctx.obs.offset()
        load_start = common.loadavg()
        workers = children(nginx.pid)
        coders = ffmpegs_under({lb.pid})
        pids = {"livebucket": lb.pid, "nginx": nginx.pid, **{f"nginx-worker-{w}": w for w in workers}}
        pids.update({f"ffmpeg-{pid}": pid for pid in coders})
        win = Window(pids)
        t0 = time.time()
        time.sleep(args.window)
        t1 = time.time()
        window, cpu = win.end()
        load_end = common.loadavg()
        still = ffmpegs_under({lb.pid})
        dropped_metric = metric_sum(port, "livebucket_rendition_dropped_total")
        restarts_metric = metric_sum(port, "livebucket_rendition_restarts_total")
        for p in publishers:
            p.stop()
        sessions: dict[str, str] = {}
        for line in lb.log_path.read_text(errors="replace").splitlines():
            if "push approved" in line:
                m = realpath.SESSION_RE.search(line)
                if m:
                    sessions[m.group(1)] = m.group(2)
        # Source fragments closed in the window (a source's channel has no
        # `/`; a rendition session's is CHANNEL/RUNG) and whether each was
        # stored.
        events = []
        for line in closes.read_text().splitlines():
            t, stream, fname = line.split()
            ch = sessions.get(realpath.log_tag(stream))
            if ch and "/" not in ch and t0 <= float(t) < t1:
                events.append({"ch": ch, "name": fname, "size": None, "t_close": float(t)})
        wanted = {f"{e['ch']}/{e['name']}" for e in events}

        def stored() -> set[str]:
            return {
                r["key"] for r in ctx.obs.read(obs_start)
                if r["bucket"] == bucket and r["method"] == "PUT" and r["status"] == 200
            }

        try:
            common.wait_until("every source fragment to be stored", lambda: wanted <= stored(), timeout=60,
                              interval=0.5)
        except RuntimeError as e:
            log(str(e))
        missing = sorted(wanted - stored())
        drops = [
            line for line in lb.log_path.read_text(errors="replace").splitlines()
            if "WARN" in line and ("drop" in line or "lag" in line)
        ]
        lb_cpu = cpu["livebucket"]
        ngx_cpu = sum(v or 0.0 for k, v in cpu.items() if k.startswith("nginx"))
        rungs: dict[str, list[float]] = {}
        died = []
        for pid, argv in coders.items():
            c = cpu[f"ffmpeg-{pid}"]
            if c is None or pid not in still:
                died.append(rung_of(argv))
                continue
            rungs.setdefault(rung_of(argv), []).append(c / window)
        return {
            "name": name,
            "channels": channels,
            "ladder": bool(ladder),
            "window_s": round(window, 1),
            "livebucket_cores": round((lb_cpu or 0.0) / window, 4),
            "nginx_cores": round(ngx_cpu / window, 4),
            # Per rung: the cores of each of its transcoders over the window.
            "rung_cores": {r: [round(x, 4) for x in v] for r, v in sorted(rungs.items())},
            "transcoders_started": len(coders),
            "transcoders_died_in_window": died,
            "transcoders_alive_at_end": sorted(rung_of(a) for a in still.values()),
            "dropped_metric": dropped_metric,
            "restarts_metric": restarts_metric,
            "drop_log": drops[:20],
            "source_fragments": len(wanted),
            "source_missing": missing,
            # One command line per rung, for the exec_push run.
            "argv": {rung_of(a): a for a in coders.values()},
            "load_start": load_start,
            "load_end": load_end,
        }
    finally:
        for p in publishers:
            p.stop()
        watch.stop()
        nginx.stop()
        lb.stop()


def metric_sum(port: common.LivebucketPorts, family: str) -> dict[str, float]:
    """Every series of a counter family, by its labels."""
    try:
        _, body = common.http_get(port.operator, "/metrics")
    except OSError:
        return {}
    out = {}
    for line in body.splitlines():
        if line.startswith(family) and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series[len(family):] or "{}"] = float(value)
    return out


def exec_push_argv(argv: list[str], src: str, dst: str) -> list[str]:
    """A livebucket transcoder's command line with another input and output,
    without `-progress` (nobody reads it under exec_push)."""
    out = []
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "-progress":
            skip = True
            continue
        if i > 0 and argv[i - 1] == "-i":
            a = src
        out.append(a)
    out[-1] = dst
    out[0] = shutil.which(out[0]) or out[0]
    return out


def exec_push_run(ctx, args, source: Path, preset: str, argvs: dict[str, list[str]]) -> dict:
    """nginx-rtmp alone: `exec_push` runs the same transcoders for the
    publish into `live`; every stream (source and rungs) written as HLS."""
    name = f"exec-push-{preset}"
    run_dir, shm = ctx.work / name, ctx.shm / name
    prefix = run_dir / "nginx"
    prefix.mkdir(parents=True)
    hls = shm / "hls"
    hls.mkdir(parents=True)
    os.chmod(shm, 0o755)
    os.chmod(hls, 0o777)
    rtmp_port = common.free_port()
    pushes = []
    for rung, argv in sorted(argvs.items()):
        cmd = exec_push_argv(argv, f"rtmp://127.0.0.1:{rtmp_port}/live/$name",
                             f"rtmp://127.0.0.1:{rtmp_port}/out/$name_{rung}")
        pushes.append("            exec_push " + " ".join(cmd) + ";")
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 1024; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            hls on;
            hls_path {hls}/live;
            hls_nested on;
            hls_fragment 2s;
            hls_fragment_naming system;
{chr(10).join(pushes)}
        }}
        application out {{
            live on;
            allow publish 127.0.0.1;
            deny publish all;
            hls on;
            hls_path {hls}/out;
            hls_nested on;
            hls_fragment 2s;
            hls_fragment_naming system;
        }}
    }}
}}
""")
    nginx = common.Proc(
        "nginx-exec-push",
        ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf), "-g", "daemon off;"],
        prefix / "nginx.stderr.log",
    )
    publishers: list[common.Proc] = []
    try:
        common.wait_until("nginx-rtmp", lambda: (nginx.assert_running(), common.port_open(rtmp_port))[1],
                          timeout=10)
        log(f"{name}: 1 channel, exec_push ladder; load {common.loadavg()}")
        publishers = start_publishers(run_dir, rtmp_port, source, ["cam00"], lambda ch: "")
        time.sleep(args.warmup)
        load_start = common.loadavg()
        workers = children(nginx.pid)
        coders = ffmpegs_under(workers)
        pids = {"nginx": nginx.pid, **{f"nginx-worker-{w}": w for w in workers}}
        pids.update({f"ffmpeg-{pid}": pid for pid in coders})
        win = Window(pids)
        time.sleep(args.window)
        window, cpu = win.end()
        load_end = common.loadavg()
        rungs: dict[str, list[float]] = {}
        for pid, argv in coders.items():
            c = cpu[f"ffmpeg-{pid}"]
            if c is not None:
                rungs.setdefault(rung_of(argv), []).append(c / window)
        ngx_cpu = sum(v or 0.0 for k, v in cpu.items() if k.startswith("nginx"))
        return {
            "name": name,
            "channels": 1,
            "ladder": True,
            "window_s": round(window, 1),
            "livebucket_cores": 0.0,
            "nginx_cores": round(ngx_cpu / window, 4),
            "rung_cores": {r: [round(x, 4) for x in v] for r, v in sorted(rungs.items())},
            "transcoders_started": len(coders),
            "load_start": load_start,
            "load_end": load_end,
        }
    finally:
        for p in publishers:
            p.stop()
        nginx.stop()


def hardware() -> str:
    """What hardware encoding this machine offers."""
    dri = sorted(p.name for p in Path("/dev/dri").iterdir()) if Path("/dev/dri").is_dir() else []
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    built = [e for e in ("h264_vaapi", "h264_nvenc", "h264_qsv") if re.search(rf"\b{e}\b", encoders)]
    nvidia = Path("/dev/nvidia0").exists()
    return (
        f"ffmpeg is built with {', '.join(built) or 'no H.264 hardware encoder'}; "
        f"/dev/dri: {', '.join(dri) or 'absent'}; /dev/nvidia0: {'present' if nvidia else 'absent'}. "
        + ("No hardware encoder is usable here: software (libx264) only."
           if not dri and not nvidia else "A device is present: measure it with `encoder = ...`.")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=30.0, help="measuring window, seconds (default 30)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after the publishers start")
    ap.add_argument("--presets", default="veryfast,superfast")
    ap.add_argument("--overload", type=int, default=4, help="channels in the overload run (default 4)")
    ap.add_argument("--skip", default="", help="comma-separated: floor, exec_push, overload")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    command = "bench/renditions.py " + " ".join(sys.argv[1:])
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: build it (bench/run does)")
    header = common.machine()
    header["load_start"] = common.loadavg()
    header["hardware"] = hardware()
    presets = [p for p in args.presets.split(",") if p]
    ctx = pl.Ctx(args)
    source = clip(common.BENCH_DIR / "cache")
    results = []
    try:
        if "floor" not in skip:
            results.append(livebucket_run(ctx, args, source, "floor", 1, None))
        for preset in presets:
            r = livebucket_run(ctx, args, source, f"livebucket-{preset}", 1, ladder_config(preset))
            results.append(r)
            if "exec_push" not in skip and r.get("argv"):
                results.append(exec_push_run(ctx, args, source, preset, r["argv"]))
        if "overload" not in skip and presets:
            results.append(livebucket_run(ctx, args, source, "overload", args.overload, ladder_config(presets[0])))
    finally:
        ctx.close(args.keep)
    header["load_end"] = common.loadavg()
    md = markdown(results, header, command)
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"renditions-{ctx.stamp}"
    base.with_suffix(".json").write_text(json.dumps({"machine": header, "command": command, "results": results},
                                                    indent=1))
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


def markdown(results: list[dict], header: dict, command: str) -> str:
    floor = next((r for r in results if r["name"] == "floor"), None)
    base = (floor["livebucket_cores"] + floor["nginx_cores"]) if floor else 0.0
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; {header['cores']} × {header['cpu']}; "
        f"load average (1/5/15 min) at start: {header['load_start']}, at end: {header['load_end']}  ",
        "Source: 1920x1080 30 fps H.264 4.5 Mbit/s + AAC, looped with `-c copy`. Ladder: "
        + ", ".join(f"{n} ({v} kbit/s video, {a} kbit/s audio)" for n, _, v, a in RUNGS)
        + ". CPU in cores (CPU seconds / window seconds) from /proc/PID/stat.  ",
        f"Hardware encoders: {header['hardware']}",
        "",
        "| run | channels | " + " | ".join(f"{n} cores" for n, *_ in RUNGS)
        + " | livebucket cores | nginx cores | above the floor | cores per channel | channels per core "
        "| load 1-min |",
        "|---|---:|" + "---:|" * len(RUNGS) + "---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r["name"] == "overload":
            continue
        per_rung = []
        total = 0.0
        for n, *_ in RUNGS:
            v = r["rung_cores"].get(n, [])
            avg = sum(v) / len(v) if v else None
            per_rung.append("–" if avg is None else f"{avg:.3f}")
            total += avg or 0.0
        mine = r["livebucket_cores"] + r["nginx_cores"]
        above = mine - base if floor else None
        per_channel = total + (above or 0.0) if r["ladder"] else mine
        out.append(
            f"| {r['name']} | {r['channels']} | " + " | ".join(per_rung)
            + f" | {r['livebucket_cores']:.3f} | {r['nginx_cores']:.3f} "
            f"| {'–' if above is None or not r['ladder'] else f'{above:+.3f}'} | {per_channel:.3f} "
            f"| {(1 / per_channel if per_channel else 0):.1f} "
            f"| {r['load_start'].split()[0]}→{r['load_end'].split()[0]} |"
        )
    over = next((r for r in results if r["name"] == "overload"), None)
    if over:
        out += [
            "",
            f"Overload: {over['channels']} channels × {len(RUNGS)} rungs "
            f"({over['transcoders_started']} transcoders at the window's start) on {header['cores']} cores. "
            f"Alive at the end: {', '.join(over['transcoders_alive_at_end']) or 'none'}; "
            f"died in the window: {', '.join(over['transcoders_died_in_window']) or 'none'}; "
            f"`livebucket_rendition_dropped_total`: {over['dropped_metric'] or 'none'}; "
            f"`livebucket_rendition_restarts_total`: {over['restarts_metric'] or 'none'}. "
            f"Source fragments closed in the window: {over['source_fragments']}, "
            f"not stored: {len(over['source_missing'])}"
            + (f" ({', '.join(over['source_missing'][:10])})" if over["source_missing"] else "")
            + ".",
        ]
        if over["drop_log"]:
            out += ["", "livebucket's warnings:", "```", *over["drop_log"][:8], "```"]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
