#!/usr/bin/python3
"""The stamped encoder: a live stream whose every picture carries the wall
clock at which it was made, for glass-to-glass measurement.

    tests/player/stamp_push.py URL [--fragment 2] [--fps 25] [--seconds 0]

Generates gray 320x240 frames paced by the wall clock (`--fps`), each showing
its capture time (Unix ms) as the stamp below, pipes them raw into ffmpeg,
which encodes them the way a live encoder does (libx264 `-preset veryfast
-tune zerolatency`, a keyframe every `--fps` x `--fragment` frames, no scene
cut keyframes, CBR `--kbps`; AAC 64 kbit/s of a 440 Hz tone) and pushes FLV
to URL (rtmp://..., or a file for a self-check). The tone is not read with
`-re`: the pictures pace the stream, and a tone paced from ffmpeg's own start
held each picture back in ffmpeg's interleaving for as long as ffmpeg took
to start (0.3-0.8 s of latency a real encoder does not have). Runs `--seconds`
(0: until stopped); killing this script closes ffmpeg's input, and ffmpeg
then ends the push.

The stamp: 64 cells in an 8x8 grid over the whole picture, each 40x30 pixels
black (0) or white (1), row by row from the top left, most significant bit
first: 48 bits of the capture time in Unix milliseconds, then its 16-bit CRC
(CRC-16/CCITT-FALSE of the 6 time bytes, big-endian). Cells that large
survive x264 at a few hundred kbit/s; a reader samples the middle of each
cell, thresholds at mid-gray and keeps only stamps whose CRC matches
(tests/player/play.cjs does, in the browser).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

WIDTH, HEIGHT = 320, 240
COLS, ROWS = 8, 8
CELL_W, CELL_H = WIDTH // COLS, HEIGHT // ROWS


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def stamp_bits(ms: int) -> int:
    """The 64-bit stamp of a capture time: 48 bits of ms, then the CRC."""
    ms &= (1 << 48) - 1
    return (ms << 16) | crc16(ms.to_bytes(6, "big"))


# One scanline per byte value: 8 cells of one grid row.
_LINES = [
    b"".join((b"\xff" if byte & (0x80 >> col) else b"\x00") * CELL_W for col in range(COLS))
    for byte in range(256)
]


def frame(ms: int) -> bytes:
    """A gray (8-bit luma) WIDTHxHEIGHT picture carrying `ms`."""
    bits = stamp_bits(ms).to_bytes(8, "big")
    return b"".join(_LINES[row_byte] * CELL_H for row_byte in bits)


def ffmpeg_command(url: str, fps: int, fragment: float, kbps: int) -> list[str]:
    gop = max(1, round(fps * fragment))
    fmt = "flv" if url.startswith("rtmp") or url.endswith(".flv") else "mpegts"
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
        "-f", "rawvideo", "-pix_fmt", "gray", "-video_size", f"{WIDTH}x{HEIGHT}", "-framerate", str(fps), "-i", "-",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k",
        "-c:a", "aac", "-b:a", "64k",
        # The tone never ends: stop with the pictures.
        "-shortest",
        "-f", fmt, url,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--fragment", type=float, default=2.0, help="seconds between keyframes (default 2)")
    ap.add_argument("--kbps", type=int, default=400, help="video bitrate (default 400)")
    ap.add_argument("--seconds", type=float, default=0.0, help="how long to stream (0: until stopped)")
    args = ap.parse_args()

    # SIGTERM (a harness stopping the push) ends the stream as Ctrl-C does:
    # ffmpeg's input closes and it finishes the push.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cmd = ffmpeg_command(args.url, args.fps, args.fragment, args.kbps)
    print("stamp_push: " + " ".join(cmd), file=sys.stderr, flush=True)
    # ffmpeg in its own process group: a Ctrl-C meant for a driver reaches it
    # through the closed pipe, in order, not by a signal mid-write.
    ffmpeg = subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True)
    period = 1.0 / args.fps
    start = time.time()
    n = 0
    try:
        while args.seconds <= 0 or n < args.seconds * args.fps:
            due = start + n * period
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            # Stamped when handed to the encoder: a camera's capture time.
            # Behind schedule (a slow machine) the frame goes at once rather
            # than being dropped: ffmpeg times frames by their count.
            ffmpeg.stdin.write(frame(int(time.time() * 1000)))
            ffmpeg.stdin.flush()
            n += 1
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        try:
            ffmpeg.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = ffmpeg.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(ffmpeg.pid, signal.SIGKILL)
            code = ffmpeg.wait()
    sys.exit(code)


if __name__ == "__main__":
    main()
