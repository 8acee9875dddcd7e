#!/usr/bin/python3
"""The alternative operators write today: a small Python script that watches
nginx-rtmp's HLS directory and uploads each file with boto3.

It is written the way such scripts usually are, with the two things they get
right when they are careful: it uploads a fragment on IN_CLOSE_WRITE (not on
create/modify, which would upload half-written files), and it uploads nginx's
playlist when nginx renames it into place. One `put_object` per file, from a
pool of worker threads (a single-threaded script would fall behind sooner).
What it does not do, like most such scripts: order the playlist after the
fragments it lists, retry, or keep anything on disk for a restart.

    pywatcher.py --hls DIR --endpoint URL --bucket B --key-id K --secret S

Keys are the paths below DIR: `CHANNEL/<epoch-ms>.ts`, `CHANNEL/index.m3u8`
(nginx's `hls_nested on` writes one directory per stream name).
"""

import argparse
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hls", required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key-id", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    ap.add_argument("--secret", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    ap.add_argument("--region", default="garage")
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()

    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=args.key_id,
        aws_secret_access_key=args.secret,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=args.workers),
    )
    pool = ThreadPoolExecutor(args.workers)
    hls = os.path.abspath(args.hls)

    def key_of(path: str) -> str:
        return os.path.relpath(path, hls)

    def put(key: str, body: bytes, content_type: str) -> None:
        try:
            s3.put_object(Bucket=args.bucket, Key=key, Body=body, ContentType=content_type)
        except Exception as e:  # noqa: BLE001 - a script like this logs and moves on
            print(f"upload of {key} failed: {e}", file=sys.stderr, flush=True)

    def upload_file(path: str, content_type: str) -> None:
        try:
            with open(path, "rb") as f:
                body = f.read()
        except FileNotFoundError:
            return
        put(key_of(path), body, content_type)

    class Handler(FileSystemEventHandler):
        def on_closed(self, event):  # IN_CLOSE_WRITE
            if not event.is_directory and event.src_path.endswith(".ts"):
                pool.submit(upload_file, event.src_path, "video/mp2t")

        def on_moved(self, event):  # index.m3u8.bak renamed to index.m3u8
            if not event.is_directory and event.dest_path.endswith(".m3u8"):
                pool.submit(upload_file, event.dest_path, "application/vnd.apple.mpegurl")

    observer = Observer()
    observer.schedule(Handler(), hls, recursive=True)
    observer.start()
    print("watching", hls, flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    observer.stop()
    observer.join()
    pool.shutdown(wait=True)


if __name__ == "__main__":
    main()
