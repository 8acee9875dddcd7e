#!/usr/bin/python3
"""Benchmark 2: how long a VOD playlist for a time range takes to build.

    bench/vod_build.py [--reps 5] [--slow-reps 1] [--fresh]

The bucket holds, per channel, 2 s fragments `CHANNEL/<13-digit ms>.ts` with
188-byte bodies (only listing and metadata matter here) and metadata
`extinf: 2.000`, exactly as livebucket stores them:
- `h1`: 1 h, 1,800 fragments, one session manifest
  `.livebucket/index/h1/<start ms>-<session>.json` (as livebucket writes it);
- `d1`: 24 h, 43,200 fragments, one 24 h session manifest (the largest one a
  day-long session produces);
- `h1-nomf`, `d1-nomf`: the same fragments without manifests (a bucket filled
  by another tool), for livebucket's listing fallback.
They are uploaded once (boto3, 32 threads) into a Garage kept in
$LIVEBUCKET_BENCH_DIR/vod-garage; later runs reuse it and upload only what is
missing. `--fresh` starts over.

Timed, for the whole range of each channel (1 h, 24 h):
- `livebucket vod ... --out /dev/null` on `h1`/`d1`: the index path;
- the same on `h1-nomf`/`d1-nomf`: livebucket's listing fallback (list, then
  a HEAD per fragment, 32 at a time);
- list + HEAD in Python (the seed setup's method): `list_objects_v2` over
  `CHANNEL/`, `head_object` on every fragment for its extinf, one after the
  other, then the playlist; and the same with 32 threads, for reference.
Wall time of the whole command, process start included. Results go to
$LIVEBUCKET_BENCH_DIR/results/ as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import log  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

BUCKET = "vod"
T0_MS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
CHANNELS = {"h1": 1_800, "d1": 43_200}
FRAGMENT_MS = 2_000
BODY = b"\x47\x1f\xff\x10" + b"\xff" * 184  # one MPEG-TS null packet


def client(endpoint: str, key_id: str, secret: str, pool: int = 10):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=common.REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool, retries={"max_attempts": 5}),
    )


def session_id(channel: str) -> str:
    return (channel.encode().hex() + "0" * 32)[:32]


def manifest(channel: str, count: int) -> tuple[str, bytes]:
    sid = session_id(channel)
    key = f".livebucket/index/{channel}/{T0_MS:013d}-{sid}.json"
    body = {
        "version": 1,
        "session": sid,
        "channel": channel,
        "started_ms": T0_MS,
        "ended": True,
        "fragments": [{"k": T0_MS + i * FRAGMENT_MS, "d": FRAGMENT_MS} for i in range(count)],
    }
    return key, json.dumps(body, separators=(",", ":")).encode()


def existing_keys(s3, prefix: str) -> set[str]:
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def fill(s3, garage_dir: Path) -> dict:
    marker = garage_dir / "filled.json"
    if marker.exists():
        return json.loads(marker.read_text())
    t0 = time.time()
    todo: list[tuple[str, str]] = []  # (key, session)
    for base, count in CHANNELS.items():
        for channel in (base, f"{base}-nomf"):
            have = existing_keys(s3, f"{channel}/")
            sid = session_id(base)
            todo += [
                (k, sid)
                for k in (f"{channel}/{T0_MS + i * FRAGMENT_MS:013d}.ts" for i in range(count))
                if k not in have
            ]
    log(f"uploading {len(todo)} fragments (32 threads)")
    done = 0

    def put(item):
        key, sid = item
        s3.put_object(
            Bucket=BUCKET, Key=key, Body=BODY, ContentType="video/mp2t",
            CacheControl="public, max-age=31536000, immutable", Metadata={"extinf": "2.000", "session": sid},
        )

    with ThreadPoolExecutor(32) as pool:
        for _ in pool.map(put, todo):
            done += 1
            if done % 5000 == 0:
                log(f"  {done}/{len(todo)} ({done / (time.time() - t0):.0f}/s)")
    sizes = {}
    for base, count in CHANNELS.items():
        key, body = manifest(base, count)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="application/json")
        sizes[base] = len(body)
    info = {
        "fragments": sum(CHANNELS.values()) * 2,
        "uploaded_now": len(todo),
        "fill_s": round(time.time() - t0, 1),
        "manifest_bytes": sizes,
    }
    marker.write_text(json.dumps(info))
    return info


def time_cmd(argv: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr}")
    return wall, out.stderr.strip()


def list_plus_head(s3, channel: str, start_s: int, end_s: int, threads: int) -> tuple[int, str]:
    """The seed setup's method: list CHANNEL/, HEAD each fragment in range for
    its extinf, write the playlist."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{channel}/"):
        for o in page.get("Contents", []):
            name = o["Key"].rsplit("/", 1)[1]
            if name.endswith(".ts") and start_s * 1000 <= int(name[:-3]) < end_s * 1000:
                keys.append(o["Key"])

    def extinf(key: str) -> str:
        return s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]["extinf"]

    if threads == 1:
        durations = [extinf(k) for k in keys]
    else:
        with ThreadPoolExecutor(threads) as pool:
            durations = list(pool.map(extinf, keys))
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-TARGETDURATION:2"]
    for k, d in zip(keys, durations):
        lines += [f"#EXTINF:{d},", k.rsplit("/", 1)[1]]
    lines.append("#EXT-X-ENDLIST")
    with open(os.devnull, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(keys), ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the fast methods (default 5)")
    ap.add_argument("--slow-reps", type=int, default=1, help="repetitions of the 24 h list+HEAD methods (default 1)")
    ap.add_argument("--fresh", action="store_true", help="delete the kept Garage and fill it again")
    ap.add_argument("--fill-only", action="store_true", help="fill the bucket (once) and stop")
    args = ap.parse_args()
    command = "bench/vod_build.py " + " ".join(sys.argv[1:])
    if not common.LIVEBUCKET_BIN.exists():
        sys.exit(f"no {common.LIVEBUCKET_BIN}: run bench/install (cargo build --release)")

    header = common.machine()
    header["load_start"] = common.loadavg()
    garage_dir = common.BENCH_DIR / "vod-garage"
    if args.fresh and garage_dir.exists():
        import shutil

        shutil.rmtree(garage_dir)
    keep = garage_dir.exists()
    log(("reusing" if keep else "starting a new") + " Garage in", garage_dir)
    g = common.Garage(garage_dir, keep=True)
    try:
        if not keep or not (garage_dir / "bucket-made").exists():
            g.create_bucket(BUCKET)
            (garage_dir / "bucket-made").write_text("")
        s3 = client(g.endpoint, g.key_id, g.secret, pool=40)
        fill_info = fill(s3, garage_dir)
        log("filled:", fill_info)
        if args.fill_only:
            return

        cfg = garage_dir / "livebucket-vod.toml"
        cfg.write_text(
            common.livebucket_config(
                common.LivebucketPorts.free(), garage_dir / "lb-state", Path("/nonexistent/hls"), g.endpoint, g.key_id, g.secret
            )
        )
        rows = []
        for base, count in CHANNELS.items():
            start_s = T0_MS // 1000
            end_s = start_s + count * FRAGMENT_MS // 1000
            span = "1 h" if count == 1_800 else "24 h"
            lb = [str(common.LIVEBUCKET_BIN), "vod", "--config", str(cfg), "--bucket", BUCKET,
                  "--start", str(start_s), "--end", str(end_s), "--out", "/dev/null"]
            slow_reps = args.reps if count == 1_800 else args.slow_reps
            methods = [
                ("livebucket vod, index", lambda: time_cmd(lb + ["--channel", base]), args.reps),
                ("livebucket vod, listing fallback", lambda: time_cmd(lb + ["--channel", f"{base}-nomf"]),
                 args.reps if count == 1_800 else max(2, args.slow_reps)),
                ("Python list + HEAD, sequential (seed method)",
                 lambda: timed(lambda: list_plus_head(s3, f"{base}-nomf", start_s, end_s, 1)), slow_reps),
                ("Python list + HEAD, 32 threads",
                 lambda: timed(lambda: list_plus_head(s3, f"{base}-nomf", start_s, end_s, 32)), slow_reps),
            ]
            for name, fn, reps in methods:
                walls, note = [], ""
                load = common.loadavg()
                for _ in range(reps):
                    w, note = fn()
                    walls.append(w)
                log(f"{span} {name}: {', '.join(f'{w:.3f}' for w in walls)} s  {note}")
                rows.append({
                    "span": span, "fragments": count, "method": name, "walls_s": walls,
                    "median_s": statistics.median(walls), "min_s": min(walls), "note": note, "load": load,
                })
    finally:
        g.stop()
    header["load_end"] = common.loadavg()
    md = markdown(rows, header, fill_info, command)
    out_dir = common.BENCH_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"vod-{time.strftime('%Y%m%d-%H%M%S')}"
    base.with_suffix(".json").write_text(
        json.dumps({"machine": header, "command": command, "fill": fill_info, "results": rows}, indent=1)
    )
    base.with_suffix(".md").write_text(md)
    print(md)
    log("results:", base.with_suffix(".json"), base.with_suffix(".md"))


def timed(fn) -> tuple[float, str]:
    t = time.perf_counter()
    n, note = fn()
    return time.perf_counter() - t, note or f"{n} segments"


def markdown(rows: list[dict], header: dict, fill_info: dict, command: str) -> str:
    out = [
        f"Command: `{command}`  ",
        f"Date: {header['date']}; commit {header['commit']}; load average (1/5/15 min) at start: {header['load_start']}, at end: {header['load_end']}  ",
        f"Manifest sizes: {', '.join(f'{k}: {v / 1024:.0f} KiB' for k, v in fill_info['manifest_bytes'].items())}",
        "",
        "| range | fragments | method | runs | median s | min s | load 1-min | vs index (median) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    index = {r["span"]: r["median_s"] for r in rows if r["method"].endswith("index")}
    for r in rows:
        ratio = r["median_s"] / index[r["span"]]
        out.append(
            f"| {r['span']} | {r['fragments']} | {r['method']} | {len(r['walls_s'])} | {r['median_s']:.3f} "
            f"| {r['min_s']:.3f} | {r['load'].split()[0]} | {ratio:.0f}× |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
