#!/usr/bin/python3
"""Logs when nginx closes each HLS fragment: an inotify observer
(watchdog, IN_CLOSE_WRITE) on the HLS directory and its stream
directories, writing one line per closed `*.ts`:

    <unix time, s> <stream directory name> <file name>

The time is taken when the event reaches this process, so it is at or just
after nginx's close; a latency measured from it is, if anything, a little
short. Used by bench/realpath.py; stops on SIGTERM.

    bench/closewatch.py HLS_DIR OUT_FILE
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from watchdog.events import FileClosedEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver


class Closed(FileSystemEventHandler):
    def __init__(self, out):
        self.out = out

    def on_closed(self, event: FileClosedEvent) -> None:
        t = time.time()
        path = os.fsdecode(event.src_path)
        if event.is_directory or not path.endswith(".ts"):
            return
        stream, name = path.rsplit("/", 2)[-2:]
        self.out.write(f"{t:.6f} {stream} {name}\n")


def main() -> None:
    hls, out_path = sys.argv[1], sys.argv[2]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open(out_path, "a", buffering=1) as out:
        observer = InotifyObserver()
        observer.schedule(Closed(out), hls, recursive=True)
        observer.start()
        print("watching", hls, flush=True)
        stop.wait()
        observer.stop()
        observer.join(5)


if __name__ == "__main__":
    main()
