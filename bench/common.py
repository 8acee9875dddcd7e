"""Shared pieces of livebucket's benchmarks (run by hand, never in CI).

Owns the processes a benchmark starts (Garage, an observing nginx in front of
it, livebucket), each stopped by its PID when the benchmark ends, however it
ends; the per-process counters read from /proc (CPU seconds, peak and current
RSS); the machine description that goes into BENCHMARKS.md; and percentiles.

Everything listens on 127.0.0.1 only. Garage is configured and provisioned
with the tests' own scripts/garage-dev, so the benchmarks run the same S3
server the end-to-end tests do.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import hashlib
import hmac
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("LIVEBUCKET_BENCH_DIR", "/var/tmp/livebucket-bench"))
SHM_DIR = Path(os.environ.get("LIVEBUCKET_BENCH_SHM", "/dev/shm/livebucket-bench"))
GARAGE_BIN = Path(
    os.environ.get("GARAGE_BIN")
    or Path.home() / ".cache/livebucket/garage-2.5.0/bin/garage"
)
# bench/run builds the release binary and passes it here; by hand, the
# release build of this checkout (honouring CARGO_TARGET_DIR).
LIVEBUCKET_BIN = Path(
    os.environ.get("LIVEBUCKET_BIN")
    or Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release/livebucket"
)
GARAGE_DEV = ROOT / "scripts/garage-dev"
REGION = "garage"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*args) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}]", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

_RUNNING: list["Proc"] = []


def _stop_all() -> None:
    for p in reversed(list(_RUNNING)):
        p.stop()


atexit.register(_stop_all)


def _on_signal(signum, _frame):
    _stop_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


class Proc:
    """A child process with its output in a log file, stopped by PID."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env=None, unset=(), stop_signal=signal.SIGTERM
    ):
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        for var in unset:
            full_env.pop(var, None)
        # A session of its own: a Ctrl-C in the terminal reaches the driver
        # only, which then stops every child by its PID.
        self.popen = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
        self.pid = self.popen.pid
        _RUNNING.append(self)

    def running(self) -> bool:
        return self.popen.poll() is None

    def assert_running(self) -> None:
        if not self.running():
            raise RuntimeError(f"{self.name} (pid {self.pid}) exited: see {self.log_path}\n{tail(self.log_path)}")

    def stop(self, timeout: float = 10.0) -> None:
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def status_kb(self, field: str) -> int:
        return status_kb(self.pid, field)


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a live process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    return sum(cpu_split(pid))


def status_kb(pid: int, field: str) -> int:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def wait_with_usage(proc: "Proc", poll: float = 0.2, on_tick=None) -> float:
    """Waits for `proc` to exit, calling `on_tick()` every `poll` seconds, and
    returns the CPU seconds (utime+stime) it and its reaped children used, from
    the kernel's rusage (a process's own /proc counters vanish when it exits)."""
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.popen.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime
        if on_tick:
            on_tick()
        time.sleep(poll)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A port nothing listens on, below Linux's ephemeral range (as
    scripts/lib.sh draws them), so outgoing connections do not take it."""
    for port in random.sample(range(20000, 32768), 200):
        if port_open(port):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_until(what: str, check, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: BLE001 - anything short of success is "not yet"
            pass
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ garage


class Garage:
    """A single-node Garage in DIR, provisioned by scripts/garage-dev, with one
    key that owns every bucket made here. `keep=True` reuses DIR's data (and
    key) if it holds a node already."""

    def __init__(self, dir: Path, keep: bool = False):
        self.dir = dir
        self.config = dir / "garage.toml"
        key_file = dir / "bench-key.json"
        reuse = keep and self.config.exists() and key_file.exists()
        if not reuse:
            if dir.exists():
                shutil.rmtree(dir)
            dir.mkdir(parents=True)
            self._dev("config")
        else:
            self._ensure_ports_free()
        self.s3_port = int(self._conf_value("api_bind_addr").rsplit(":", 1)[1])
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.proc = Proc(
            "garage",
            [str(GARAGE_BIN), "-c", str(self.config), "server"],
            dir / "garage.log",
            # Per-request info lines would cost Garage CPU the benchmark is
            # not about; warnings and errors are still logged.
            env={"RUST_LOG": "garage=warn", "NO_COLOR": "1"},
            # SIGTERM; Proc.stop falls back to SIGKILL after 10 s (Garage
            # waits for idle keep-alive connections to close).
        )
        if reuse:
            self._dev("wait")
            self.key_id, self.secret = json.loads(key_file.read_text())
        else:
            self._dev("setup")
            self.key_id = "GK" + os.urandom(12).hex()
            self.secret = os.urandom(32).hex()
            self._dev("key", self.key_id, self.secret)
            key_file.write_text(json.dumps([self.key_id, self.secret]))

    def _dev(self, command: str, *args: str) -> str:
        if hasattr(self, "proc"):
            self.proc.assert_running()
        env = dict(os.environ, GARAGE_BIN=str(GARAGE_BIN))
        out = subprocess.run(
            [str(GARAGE_DEV), command, str(self.dir), *args], env=env, capture_output=True, text=True
        )
        if out.returncode != 0:
            raise RuntimeError(f"garage-dev {command} failed: {out.stdout}{out.stderr}")
        return out.stdout

    def _conf_value(self, key: str) -> str:
        for line in self.config.read_text().splitlines():
            if line.startswith(key + " ="):
                return line.split("=", 1)[1].strip().strip('"')
        raise KeyError(key)

    def _ensure_ports_free(self) -> None:
        """A kept node reuses its ports; say so if one has been taken since."""
        for line in self.config.read_text().splitlines():
            for key in ("api_bind_addr", "rpc_bind_addr"):
                if line.startswith(key + " ="):
                    port = int(line.split("=", 1)[1].strip().strip('"').rsplit(":", 1)[1])
                    if port_open(port):
                        raise RuntimeError(
                            f"port {port} of the kept Garage in {self.dir} is in use; "
                            f"stop what uses it or delete {self.dir} to start afresh"
                        )

    def create_bucket(self, bucket: str) -> None:
        self._dev("bucket", bucket, self.key_id)

    def garage_cli(self, *args: str) -> str:
        return self._dev("garage", *args)

    def stop(self) -> None:
        self.proc.stop()


# ---------------------------------------------------- the observing nginx

OBS_FORMAT = '$msec $request_time $request_method $status "$content_length" "$request_uri" "$request_body"'


def start_nginx(name: str, dir: Path, worker_connections: int, http: str) -> Proc:
    """An nginx of the bench's own: one worker, in the foreground, its pid,
    logs and temp files under `dir`, with `http` inside its `http` block."""
    conf = dir / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}}}
"""
    )
    return Proc(
        name,
        ["nginx", "-p", str(dir), "-c", str(conf), "-e", str(dir / "error.log")],
        dir / "nginx.out",
        stop_signal=signal.SIGQUIT,
    )


class Observer:
    """nginx as a reverse proxy in front of Garage that writes one line per
    finished request: the time the response was sent ($msec: the object is
    readable from then on), how long the request took, the method, the
    status, the request's
    Content-Length and URI, and, for `*.m3u8` requests only, the request body
    (so a playlist PUT tells which fragments it lists). Every client in a
    benchmark (livebucket, the alternatives, the baseline PUTs) talks to S3
    through it, so all of them see the same extra hop and are timed by the same
    clock, with no polling load on Garage.

    It also listens with TLS (`tls_endpoint`, same server, same log) on a
    certificate made here with openssl, signed by a CA of its own
    (`ca_file`): the https store of the `livebucket-https` runs."""

    def __init__(self, dir: Path, upstream_port: int):
        dir.mkdir(parents=True, exist_ok=True)
        self.dir = dir
        self.port = free_port()
        self.tls_port = free_port()
        self.ca_file, cert, key = make_tls_cert(dir / "tls")
        self.log_path = dir / "observed.log"
        self.proc = start_nginx(
            "nginx-observer",
            dir,
            4096,
            f"""
    log_format obs '{OBS_FORMAT}';
    upstream garage {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{self.port};
        listen 127.0.0.1:{self.tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 0;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_read_timeout 300s;
        access_log {self.log_path} obs;
        location ~ \\.m3u8$ {{
            # Buffered, so $request_body holds the playlist in the log.
            proxy_request_buffering on;
            client_body_buffer_size 1m;
            proxy_pass http://garage;
        }}
        location / {{ proxy_pass http://garage; }}
    }}
""",
        )
        wait_until("the observing nginx", lambda: port_open(self.port), timeout=10)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.tls_endpoint = f"https://127.0.0.1:{self.tls_port}"

    def offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, start: int = 0) -> list[dict]:
        """Parsed lines from byte offset `start`."""
        out = []
        with open(self.log_path, "rb") as f:
            f.seek(start)
            for raw in f:
                rec = parse_observed(raw.decode("utf-8", "replace"))
                if rec:
                    out.append(rec)
        return out

    def stop(self) -> None:
        self.proc.stop()


def make_tls_cert(dir: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl, EC P-256):
    (CA file, certificate, key). A self-signed certificate alone will not do:
    rustls refuses a CA certificate as the server's own."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (dir / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = dir / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=livebucket bench CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def _unescape_nginx(s: str) -> str:
    # nginx's default log escaping writes ", \ and bytes outside 0x20-0x7e as \xHH.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1 : i + 2] == "x" and i + 4 <= len(s):
            out.append(chr(int(s[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_observed(line: str) -> dict | None:
    try:
        msec, request_time, method, status, rest = line.rstrip("\n").split(" ", 4)
        parts = rest.split('" "')
        content_length = parts[0].lstrip('"')
        uri = parts[1]
        body = parts[2].rstrip('"') if len(parts) > 2 else ""
    except ValueError:
        return None
    path = urllib.parse.unquote(uri.split("?", 1)[0])
    bucket, _, key = path.lstrip("/").partition("/")
    return {
        "t": float(msec),
        # From the request's first byte to its response's last: t − dur is
        # when the client started sending.
        "dur": float(request_time),
        "method": method,
        "status": int(status),
        "length": int(content_length) if content_length.isdigit() else None,
        "bucket": bucket,
        "key": key,
        "body": _unescape_nginx(body) if body and body != "-" else "",
    }


# -------------------------------------------------------------- livebucket


# The hooks secret of the bench's livebucket configs (it only needs to match
# what the bench's fake nginx sends).
HOOKS_SECRET = "bench-hooks-secret-0123456789abcdef0123"


class LivebucketPorts(typing.NamedTuple):
    """livebucket's three listeners: nginx's callbacks, /play and the API,
    /metrics and /healthz."""

    hooks: int
    public: int
    operator: int

    @staticmethod
    def free() -> "LivebucketPorts":
        return LivebucketPorts(free_port(), free_port(), free_port())


def livebucket_config(
    ports: LivebucketPorts,
    state_dir: Path,
    hls_dir: Path,
    s3_endpoint: str,
    key_id: str,
    secret: str,
    nginx_extra: str = "",
    s3_extra: str = "",
    extra: str = "",
) -> str:
    """`nginx_extra`: more `[nginx]` lines (relay_url, stat_url) when a real
    nginx-rtmp is in the run; `s3_extra`: more `[s3]` lines; `extra`: whole
    tables at the end (e.g. `[http]` with `cors_origins`)."""
    return f"""state_dir = "{state_dir}"

[listen]
hooks = "127.0.0.1:{ports.hooks}"
public = "127.0.0.1:{ports.public}"
operator = "127.0.0.1:{ports.operator}"

[hooks]
secret = "{HOOKS_SECRET}"

[nginx]
hls_dir = "{hls_dir}"
{nginx_extra}

[s3]
endpoint = "{s3_endpoint}"
region = "{REGION}"
force_path_style = true
{s3_extra}

[[keys]]
id = "{key_id}"
secret = "{secret}"
buckets = ["*"]

{extra}
"""


def push_signature(secret: str, expires: int, bucket: str, channel: str) -> str:
    """RGW-style push signature: base64(HMAC-SHA1(secret, "E\\n/B/CHANNEL"))."""
    mac = hmac.new(secret.encode(), f"{expires}\n/{bucket}/{channel}".encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def nginx_callback_body(call: str, clientid: int, channel: str, query: str = "") -> bytes:
    """The form body nginx-rtmp 1.2.2 posts to on_publish / on_publish_done."""
    q = urllib.parse.quote
    head = (
        f"app=live&flashver=x&swfurl=&tcurl={q('rtmp://127.0.0.1:1935/live', safe='')}"
        f"&pageurl=&addr=127.0.0.1&clientid={clientid}&call={call}&name={q(channel, safe='')}"
    )
    if call == "publish":
        head += "&type=live"
    return (head + ("&" + query if query else "")).encode()


def http_post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, headers


class CallbackFloor:
    """The floor for timing a callback: an nginx of its own (one worker,
    nothing else to do) that answers every request with a fixed 302 without
    reading it, as fast as a C event loop on this machine answers a new
    connection. The on_publish probe calls it before each of its calls to
    livebucket, so both see the same load."""

    def __init__(self, dir: Path):
        dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = start_nginx(
            "nginx-callback-floor",
            dir,
            1024,
            f"""
    server {{
        listen 127.0.0.1:{self.port};
        location / {{ return 302 "rtmp://127.0.0.1/hls/floor"; }}
    }}
""",
        )
        wait_until("the callback floor's nginx", lambda: port_open(self.port), timeout=10)

    def stop(self) -> None:
        self.proc.stop()


def timed_callback(port: int, path: str, body: bytes) -> tuple[float, int]:
    """POSTs `body` the way nginx-rtmp does (HTTP/1.0 on a new connection,
    the answer read until the server closes) and returns (ms from connect to
    the end of the answer, status). The request is built before the clock
    starts, so the time is the server's and the sockets', not Python's."""
    import socket

    request = (
        f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    answer = bytearray()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    elapsed = (time.perf_counter() - t0) * 1000
    status_line = bytes(answer).split(b"\r\n", 1)[0].split()
    return elapsed, int(status_line[1]) if len(status_line) > 1 else 0


def http_get(port: int, path: str) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    conn.close()
    return resp.status, body


def push_query(bucket: str, channel: str, key_id: str, secret: str, lifetime: int = 3600) -> str:
    """The query of a signed push URL (`rtmp://HOST/live/CHANNEL?QUERY`), as
    nginx-rtmp passes it on in its callback bodies."""
    expires = int(time.time()) + lifetime
    sig = push_signature(secret, expires, bucket, channel)
    return (
        f"Bucket={urllib.parse.quote(bucket, safe='')}&AccessKeyId={key_id}"
        f"&Expires={expires}&Signature={urllib.parse.quote(sig, safe='')}"
    )


# The push query each (clientid, channel) published with: on_publish_done
# carries it, as nginx passes the publisher's query to every callback, and
# livebucket ends only the session that query's grant was approved with.
_QUERIES: dict[tuple[int, str], str] = {}


def publish_body(clientid: int, bucket: str, channel: str, key_id: str, secret: str) -> bytes:
    """A signed on_publish body as nginx-rtmp posts it; its query is kept
    for the matching publish_done."""
    query = push_query(bucket, channel, key_id, secret)
    _QUERIES[(clientid, channel)] = query
    return nginx_callback_body("publish", clientid, channel, query)


def publish(ports: LivebucketPorts, clientid: int, bucket: str, channel: str, key_id: str, secret: str) -> str:
    """POSTs a signed on_publish like nginx-rtmp does; returns the session id
    (the last path segment of the 302's Location)."""
    status, headers = http_post(
        ports.hooks, f"/hooks/{HOOKS_SECRET}/on_publish", publish_body(clientid, bucket, channel, key_id, secret)
    )
    if status != 302:
        raise RuntimeError(f"on_publish for {bucket}/{channel} answered {status}")
    return headers["location"].rstrip("/").rsplit("/", 1)[1]


def publish_done(ports: LivebucketPorts, clientid: int, channel: str) -> int:
    """on_publish_done for a publish made through publish_body, with its
    query; returns the status (403 for a body wrk never sent)."""
    query = _QUERIES.pop((clientid, channel), "")
    status, _ = http_post(
        ports.hooks,
        f"/hooks/{HOOKS_SECRET}/on_publish_done",
        nginx_callback_body("publish_done", clientid, channel, query),
    )
    return status


# ------------------------------------------------------- a minimal S3 PUT


class RawS3:
    """The least client work a PUT can take: one kept-alive http.client
    connection, SigV4 signed by hand with the payload's SHA-256 (as the AWS
    SDKs sign it). Not thread-safe: one per thread."""

    def __init__(self, endpoint: str, key_id: str, secret: str, region: str = REGION):
        import http.client

        u = urllib.parse.urlsplit(endpoint)
        self.host = u.netloc
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.key_id, self.secret, self.region = key_id, secret, region

    def put(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        path = "/" + urllib.parse.quote(f"{bucket}/{key}", safe="/-_.~")
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {
            "content-type": content_type,
            "host": self.host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            ["PUT", path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload_hash]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        k = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, SignedHeaders={signed}, Signature={sig}"
        )
        headers["content-length"] = str(len(body))
        self.conn.request("PUT", path, body, headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"PUT {bucket}/{key}: {resp.status} {data[:200]!r}")


# ----------------------------------------------------------------- numbers


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def fmt_ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f}"


def loadavg() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def machine() -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])

    def run(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return "?"

    # The commit of the measured code: the last one that touched src/ or the
    # build (bench-only commits on top do not change the binary).
    commit = run("git", "log", "-1", "--format=%h", "--", "src", "Cargo.toml", "Cargo.lock", "build.rs")
    head = run("git", "rev-parse", "--short", "HEAD")
    if head != commit:
        commit += f" (checkout {head})"
    dirty = run("git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "commit": commit + (" (src/ modified)" if dirty else ""),
        "livebucket_built": time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(LIVEBUCKET_BIN.stat().st_mtime)
        )
        if LIVEBUCKET_BIN.exists()
        else "missing",
        "garage": run(str(GARAGE_BIN), "--version").splitlines()[0] if GARAGE_BIN.exists() else "missing",
        "rclone": (run("rclone", "version").splitlines() or ["missing"])[0],
        "python": sys.version.split()[0],
        "uptime": run("uptime"),
    }
