//! The livebucket binary under test (`serve`, `sign push`), plus an
//! independent implementation of the push-URL signature so tests can forge
//! good and bad URLs without trusting the code under test.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::TestDir;
use super::garage::Key;
use super::process::{Proc, Stop, run};

pub const BIN: &str = env!("CARGO_BIN_EXE_livebucket");

/// How long `serve` may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The hooks secret every harness config and nginx.conf carry.
pub const HOOKS_SECRET: &str = "harness-hooks-secret-0123456789abcdef";

pub struct Livebucket {
    config_path: PathBuf,
    /// The hooks listener (TCP; the harness does not use a Unix socket here).
    listen: SocketAddr,
    public: SocketAddr,
    operator: SocketAddr,
    log: PathBuf,
    /// Added to the harness's `RUST_LOG` filter.
    log_directives: &'static str,
    proc: Option<Proc>,
    /// The listening socket the test holds across restarts, if any; after
    /// `proc` so it outlives the last process.
    socket: Option<TcpListener>,
}

/// How [`Livebucket::start_with`] runs `serve`.
#[derive(Default)]
pub struct Options {
    /// A listening socket the test holds for livebucket's hooks listener,
    /// as systemd holds `deploy/livebucket.socket`: every `serve`, restarts
    /// included, gets it as fd 3 with `LISTEN_FDS=1` and `LISTEN_PID` set to
    /// its own PID, and serves nginx's callbacks on it instead of binding
    /// `listen.hooks` (which must be its address).
    /// While no process runs, connections wait in its backlog instead of
    /// being refused.
    pub socket: Option<TcpListener>,
    /// `RUST_LOG` directives added to the harness's filter, e.g.
    /// `"tower_http=debug"` to log every request with its status.
    pub log: &'static str,
}

impl Livebucket {
    /// Writes `config` to `DIR/livebucket.toml`, runs
    /// `livebucket serve --config DIR/livebucket.toml` and waits for
    /// `GET /healthz` to answer 200 on the config's `listen.operator`.
    pub fn start(dir: &TestDir, config: &str) -> Livebucket {
        Self::start_with(dir, config, Options::default())
    }

    /// [`Livebucket::start`] with [`Options`].
    pub fn start_with(dir: &TestDir, config: &str, options: Options) -> Livebucket {
        let config_path = dir.join("livebucket.toml");
        std::fs::write(&config_path, config).unwrap();
        let [listen, public, operator] = listen_of(config);
        if let Some(socket) = &options.socket {
            let held = socket.local_addr().unwrap();
            assert_eq!(
                held, listen,
                "the config's `listen.hooks` must be the held socket's address"
            );
        }
        let mut lb = Livebucket {
            config_path,
            listen,
            public,
            operator,
            log: dir.join("livebucket.log"),
            log_directives: options.log,
            proc: None,
            socket: options.socket,
        };
        lb.spawn();
        lb
    }

    /// `serve`, or with a held socket `sh -c 'LISTEN_PID=$$ LISTEN_FDS=1
    /// exec "$0" "$@"' BIN serve …` with the socket as fd 3: `$$` is the
    /// shell's PID, which `exec` hands to livebucket.
    fn command(&self) -> Command {
        let Some(socket) = &self.socket else {
            return Command::new(BIN);
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
            .arg(BIN);
        let fd = socket.as_raw_fd();
        // SAFETY: between fork and exec the closure calls only dup2 and
        // fcntl, which are async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // dup2 clears FD_CLOEXEC on the new fd, but not when `fd` is
                // already 3; clear it either way.
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags == -1 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    fn spawn(&mut self) {
        let mut cmd = self.command();
        let mut filter =
            std::env::var("RUST_LOG").unwrap_or_else(|_| "livebucket=debug,info".into());
        if !self.log_directives.is_empty() {
            filter = format!("{filter},{}", self.log_directives);
        }
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn("livebucket", cmd, &self.log, Stop::Kill);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            proc.assert_running();
            match http_get(self.operator, "/healthz") {
                Ok((200, _)) => break,
                Ok((status, body)) if Instant::now() >= deadline => {
                    panic!(
                        "livebucket's /healthz still answers {status} after {START_TIMEOUT:?}: {body}"
                    )
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "livebucket's /healthz on {} did not answer within {START_TIMEOUT:?}: {e}",
                        self.operator
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        self.proc = Some(proc);
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The hooks listener's address (nginx's callbacks).
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The public listener's address (`/play`, the VOD API).
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// The operator listener's address (`/metrics`, `/healthz`).
    pub fn operator_addr(&self) -> SocketAddr {
        self.operator
    }

    /// `http://IP:PORT` of the public listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.public)
    }

    /// Everything livebucket logged so far, across restarts.
    pub fn log(&self) -> String {
        super::process::read_lossy(&self.log)
    }

    /// Panics, with the log, if livebucket exited.
    pub fn assert_running(&mut self) {
        self.proc
            .as_mut()
            .expect("livebucket is stopped")
            .assert_running();
    }

    /// SIGKILL: a crash, nothing flushed.
    pub fn kill9(&mut self) {
        let mut proc = self.proc.take().expect("livebucket is already stopped");
        proc.kill();
    }

    /// SIGTERM and wait up to `timeout` for a graceful exit; panics, with the
    /// log, if it takes longer. Returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut proc = self.proc.take().expect("livebucket is already stopped");
        proc.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = proc.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                proc.kill();
                panic!(
                    "livebucket did not exit within {timeout:?} of SIGTERM; its log:\n{}",
                    super::process::tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `serve` again with the same config and, if the test holds
    /// one, the same listening socket (killing it first if it still runs),
    /// and waits for `/healthz`.
    pub fn restart(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
        self.spawn();
    }

    /// `GET path` on the listener that serves it (`/metrics` and
    /// `/healthz` on the operator listener, the rest on the public one):
    /// (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let operator = ["/metrics", "/healthz"]
            .iter()
            .any(|p| path.split('?').next() == Some(*p));
        http_get(if operator { self.operator } else { self.public }, path)
    }

    /// The PID of the running `serve`.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// SIGHUP, by PID: livebucket reloads its config file.
    pub fn reload(&mut self) {
        self.assert_running();
        self.proc
            .as_ref()
            .expect("livebucket is stopped")
            .signal("HUP");
    }

    /// The value of one series in `/metrics`, e.g.
    /// `livebucket_push_rejected_total{reason="channel_live"}`; 0 when the
    /// series is absent (counters appear at their first increment).
    pub fn metric(&self, series: &str) -> u64 {
        let (status, body) = self
            .get("/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics on {}: {e}", self.operator));
        assert_eq!(status, 200, "GET /metrics: {body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| {
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("/metrics: {series} is {value:?}"))
                })
            })
            .unwrap_or(0)
    }
}

/// The `[listen]` addresses of a livebucket config: hooks, public, operator
/// (their defaults when absent).
fn listen_of(config: &str) -> [SocketAddr; 3] {
    let value: toml::Table = toml::from_str(config)
        .unwrap_or_else(|e| panic!("the test's livebucket config is not TOML: {e}\n{config}"));
    let listen = value.get("listen").and_then(toml::Value::as_table);
    let addr = |name: &str, default: &str| -> SocketAddr {
        match listen.and_then(|t| t.get(name)) {
            Some(toml::Value::String(s)) => s
                .parse()
                .unwrap_or_else(|_| panic!("listen.{name} is not IP:PORT: {s}")),
            None => default.parse().unwrap(),
            Some(other) => panic!("listen.{name} is not a string: {other}"),
        }
    };
    [
        addr("hooks", "127.0.0.1:8089"),
        addr("public", "127.0.0.1:8080"),
        addr("operator", "127.0.0.1:9090"),
    ]
}

/// `GET http://addr/path` from synchronous code, through the harness's
/// HTTP client ([`super::httpc::blocking`]), answered within 5 s:
/// (status, body as text).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    let req = super::httpc::Request::new("GET", &url).timeout(Duration::from_secs(5));
    let resp = super::httpc::blocking(&req)?;
    Ok((resp.status, resp.text()))
}

/// A livebucket config for the harness's processes: hooks on `listen`
/// with [`HOOKS_SECRET`], allowed from 127.0.0.1 only (nginx's address; other
/// loopback addresses such as 127.0.0.2 play outsiders). `extra` is appended
/// before `[[keys]]` and must hold whole tables (`[live]`, `[upload]`, …,
/// but not `[listen]` or `[hooks]`, which the harness writes).
pub struct ConfigParams<'a> {
    /// The hooks listener; the public and operator listeners get free ports.
    pub listen: SocketAddr,
    pub state_dir: &'a Path,
    pub hls_dir: &'a Path,
    pub relay_url: &'a str,
    /// nginx's rtmp_stat page, when the test has an nginx.
    pub stat_url: Option<&'a str>,
    pub s3_endpoint: &'a str,
    /// (key, buckets it may push to)
    pub keys: &'a [(&'a Key, &'a [&'a str])],
    pub extra: &'a str,
}

pub fn config_toml(p: &ConfigParams<'_>) -> String {
    let mut out = format!(
        "state_dir = {state}\n\n[listen]\nhooks = {listen}\npublic = {public}\noperator = {operator}\n\n\
         [hooks]\nsecret = {secret}\nallow = [\"127.0.0.1/32\"]\n\n[nginx]\nhls_dir = {hls}\nrelay_url = {relay}\n\n\
         {stat}\n[s3]\nendpoint = {endpoint}\nregion = {region}\nforce_path_style = true\n\n{extra}\n",
        stat = p
            .stat_url
            .map_or(String::new(), |u| format!("stat_url = {}\n", toml_str(u))),
        listen = toml_str(&p.listen.to_string()),
        public = toml_str(&super::free_addr().to_string()),
        operator = toml_str(&super::free_addr().to_string()),
        secret = toml_str(HOOKS_SECRET),
        state = toml_str(p.state_dir.to_str().unwrap()),
        hls = toml_str(p.hls_dir.to_str().unwrap()),
        relay = toml_str(p.relay_url),
        endpoint = toml_str(p.s3_endpoint),
        region = toml_str(super::garage::REGION),
        extra = p.extra,
    );
    for (key, buckets) in p.keys {
        let buckets: Vec<String> = buckets.iter().map(|b| toml_str(b)).collect();
        out += &format!(
            "\n[[keys]]\nid = {}\nsecret = {}\nbuckets = [{}]\n",
            toml_str(&key.id),
            toml_str(&key.secret),
            buckets.join(", ")
        );
    }
    out
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// `livebucket sign push … --expires-in 3600`: the push URL (first line of
/// stdout).
pub fn sign_push(config: &Path, bucket: &str, channel: &str, rtmp_base: &str) -> String {
    sign_push_args(
        config,
        bucket,
        channel,
        rtmp_base,
        &["--expires-in", "3600"],
    )
}

/// `livebucket sign push … --expires-in 3600 EXTRA…`, e.g. with
/// `["--scheme", "oss", "--playlist-name", "live.m3u8"]`.
pub fn sign_push_with(
    config: &Path,
    bucket: &str,
    channel: &str,
    rtmp_base: &str,
    extra: &[&str],
) -> String {
    let mut args = vec!["--expires-in", "3600"];
    args.extend_from_slice(extra);
    sign_push_args(config, bucket, channel, rtmp_base, &args)
}

/// `livebucket sign push … --expires UNIX_TIME`.
pub fn sign_push_expiring_at(
    config: &Path,
    bucket: &str,
    channel: &str,
    rtmp_base: &str,
    expires: u64,
) -> String {
    sign_push_args(
        config,
        bucket,
        channel,
        rtmp_base,
        &["--expires", &expires.to_string()],
    )
}

fn sign_push_args(
    config: &Path,
    bucket: &str,
    channel: &str,
    rtmp_base: &str,
    expiry: &[&str],
) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["sign", "push", "--config"])
        .arg(config)
        .args([
            "--bucket",
            bucket,
            "--channel",
            channel,
            "--endpoint",
            rtmp_base,
        ])
        .args(expiry);
    let out = run("livebucket sign push", &mut cmd);
    let url = out.lines().next().unwrap_or_default().trim().to_owned();
    assert!(
        url.starts_with("rtmp://"),
        "livebucket sign push printed no rtmp:// URL first: {out:?}"
    );
    url
}

/// `livebucket sign play --via-livebucket LIVEBUCKET_URL`: a `/play` URL
/// for `key_name` (`CHANNEL/PLAYLIST`) in `bucket`, valid an hour.
pub fn sign_play(config: &Path, bucket: &str, key_name: &str, livebucket_url: &str) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["sign", "play", "--config"])
        .arg(config)
        .args(["--bucket", bucket, "--key-name", key_name])
        .args(["--via-livebucket", livebucket_url, "--expires-in", "3600"]);
    let out = run("livebucket sign play", &mut cmd);
    let url = out.lines().next().unwrap_or_default().trim().to_owned();
    assert!(
        url.starts_with("http://"),
        "livebucket sign play printed no http:// URL first: {out:?}"
    );
    url
}

/// The documented push URL, computed here rather than by livebucket:
/// `RTMP_BASE/CHANNEL?Bucket=B&AccessKeyId=K&Expires=E&Signature=S` with
/// `S = base64(HMAC-SHA1(secret, E + "\n/" + B + "/" + CHANNEL))`,
/// percent-encoded.
pub fn push_url(rtmp_base: &str, channel: &str, bucket: &str, key: &Key, expires: u64) -> String {
    let signature = push_signature(&key.secret, bucket, channel, expires);
    format!(
        "{}/{channel}?Bucket={}&AccessKeyId={}&Expires={expires}&Signature={}",
        rtmp_base.trim_end_matches('/'),
        enc(bucket),
        enc(&key.id),
        enc(&signature),
    )
}

/// `base64(HMAC-SHA1(secret, E + "\n/" + B + "/" + CHANNEL))`, not encoded.
pub fn push_signature(secret: &str, bucket: &str, channel: &str, expires: u64) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{expires}\n/{bucket}/{channel}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// The decoded value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

/// `url` with query parameter `name` set to `value` (encoded here).
pub fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut found = false;
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == name => {
                found = true;
                format!("{k}={}", enc(value))
            }
            _ => pair.to_owned(),
        })
        .collect();
    if !found {
        pairs.push(format!("{name}={}", enc(value)));
    }
    format!("{base}?{}", pairs.join("&"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
