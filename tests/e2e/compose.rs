//! The docker compose stack (`deploy/docker/`), built and run for real: the
//! images users get (`runtime-prebuilt` around this build's livebucket and
//! the harness's Garage), `up` with the Garage profile, a signed push from
//! the host to the published RTMP port with the livebucket container
//! restarted in the middle, playback of the signed `/play` URL, and `down -v`
//! leaving nothing behind. nginx's callbacks reach livebucket over the Unix
//! socket the two containers share, never over a published port.
//!
//! What nginx wrote is recorded from the host (`common::fragments`, on the
//! HLS tmpfs volume where the daemon mounts it), the playlist is polled in
//! the bucket through Garage's published S3 port (`common::playlist_watch`),
//! and the two are compared fragment by fragment
//! (`common::bucket_check`): the restart loses nothing.
//!
//! Needs a Docker daemon (started if needed by `scripts/docker-base-image`);
//! `scripts/test` skips this file, loudly, only where Docker cannot run.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bucket_check::{FinalPlaylist, assert_bucket_matches};
use common::compose::{self, Compose, docker};
use common::fragments::{Ledger, Recorder};
use common::livebucket::push_url;
use common::playlist_watch::{PlaylistWatch, ended};
use common::process::run;
use common::*;

const CHANNEL: &str = "cam";
/// nginx calls `on_update` 10 s after the publish and every 10 s after:
/// the restart falls between the first and the second call, and the push
/// outlasts the second, which the restarted livebucket must answer.
const PUSH_SECONDS: u32 = 24;
/// The HLS tmpfs size the test asks for (`HLS_TMPFS_SIZE`), and how
/// /proc/mounts shows it.
const TMPFS_SIZE: &str = "64m";
const TMPFS_SIZE_IN_MOUNTS: &str = "size=65536k";

/// Runs blocking docker calls without stalling the playlist watch.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Phase timings, printed at the end (visible with --nocapture).
struct Clock {
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Clock {
    fn new() -> Clock {
        let now = Instant::now();
        Clock {
            start: now,
            last: now,
            phases: Vec::new(),
        }
    }

    fn lap(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.phases.push((phase, now - self.last));
        self.last = now;
    }

    fn report(&self) -> String {
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(p, d)| format!("{p} {:.1}s", d.as_secs_f64()))
            .collect();
        format!(
            "{:.1}s: {}",
            self.start.elapsed().as_secs_f64(),
            phases.join(", ")
        )
    }
}

/// The value of `series` (`name{labels}`) in Prometheus text, if present.
fn counter(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
    })
}

/// `on_update` calls the running livebucket process has handled (its
/// counters start at zero with the process).
fn updates_handled(stack: &Compose) -> u64 {
    let metrics = stack.exec("livebucket", &["livebucket-docker", "metrics"]);
    counter(&metrics, "livebucket_hooks_total{call=\"update\"}").unwrap_or(0)
}

/// nginx-rtmp's `on_publish` form body for a push of `channel` with the push
/// URL's `query`, as its notify module writes it.
fn on_publish_body(channel: &str, query: &str) -> String {
    format!(
        "app=live&flashver=FMLE%2F3.0&swfurl=&tcurl=rtmp%3A%2F%2F127.0.0.1%3A1935%2Flive\
         &pageurl=&addr=127.0.0.1&clientid=7&call=publish&name={channel}&type=live&{query}"
    )
}

/// POSTs a form to `addr` (`IP:PORT`) and returns the status of the HTTP
/// answer; `None` when nothing answering HTTP is there within 2 s (the RTMP
/// port waits for a handshake).
fn post_status(addr: &str, path: &str, body: &str) -> Option<u16> {
    let addr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.strip_prefix("HTTP/1.")?
        .get(2..5)
        .and_then(|s| s.parse().ok())
}

/// `GET path` over HTTP/1.0 on the Unix socket `socket`: (status, body).
fn unix_get(socket: &Path, path: &str) -> (u16, String) {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", socket.display()));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// The TCP sockets listening in `service`'s network namespace, as
/// `IP:PORT` (IPv4) or `[HEX]:PORT` (IPv6), from /proc/net/tcp{,6}.
fn tcp_listeners(stack: &Compose, service: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = stack.exec(service, &["cat", table]);
        for fields in text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            // sl local_address rem_address st …; st 0A is LISTEN.
            let (Some(local), Some(&"0A")) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((ip, port)) = local.split_once(':') else {
                continue;
            };
            let port = u16::from_str_radix(port, 16).unwrap_or(0);
            let ip = match u32::from_str_radix(ip, 16) {
                Ok(v) if ip.len() == 8 => std::net::Ipv4Addr::from(v.swap_bytes()).to_string(),
                _ => format!("[{ip}]"),
            };
            found.push(format!("{ip}:{port}"));
        }
    }
    found.sort();
    found
}

/// The mount options of the filesystem mounted at `path`, from the host's
/// /proc/mounts: (type, options).
fn mount_of(path: &Path) -> Option<(String, String)> {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("cannot read /proc/mounts");
    let path = path.to_str()?;
    mounts.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.get(1) == Some(&path)).then(|| (fields[2].to_owned(), fields[3].to_owned()))
    })
}

/// ffprobe reading every packet of `url` (all segments fetched): duration
/// and, per stream, (codec_type, codec_name, packets read).
fn probe_all(url: &str) -> (f64, Vec<(String, String, u64)>) {
    let json = run(
        "ffprobe -count_packets",
        Command::new("ffprobe")
            .args(["-v", "error", "-count_packets", "-of", "json"])
            .args([
                "-show_entries",
                "format=duration:stream=codec_type,codec_name,nb_read_packets",
            ])
            .arg(url),
    );
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("ffprobe printed bad JSON: {e}"));
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let duration = text(&v["format"]["duration"]).parse().unwrap_or(0.0);
    let streams = v["streams"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|s| {
                    (
                        text(&s["codec_type"]),
                        text(&s["codec_name"]),
                        text(&s["nb_read_packets"]).parse().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (duration, streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_pushes_plays_and_survives_a_livebucket_restart() {
    if let Err(reason) = blocking(compose::docker_ready) {
        eprintln!("compose: SKIPPED, Docker cannot run here: {reason}");
        return;
    }
    let mut clock = Clock::new();
    let dir = TestDir::new("compose");
    let images = blocking(|| compose::build_images(Path::new(env!("CARGO_BIN_EXE_livebucket"))));
    clock.lap("images");

    // The key Garage's init imports and livebucket signs and writes with;
    // its secret reaches both as a compose secret, from a file.
    let key = Key {
        id: format!("GK{}", garage::random_hex(12)),
        secret: garage::random_hex(32),
    };
    let secret_file = dir.join("livebucket_secret");
    std::fs::write(&secret_file, format!("{}\n", key.secret)).unwrap();
    chmod(&secret_file, 0o600);
    // The hooks secret, as `setup` writes it: root's, mode 0600, read by
    // both entrypoints as root.
    let hooks_secret = garage::random_hex(32);
    let hooks_secret_file = dir.join("hooks_secret");
    std::fs::write(&hooks_secret_file, &hooks_secret).unwrap();
    chmod(&hooks_secret_file, 0o600);
    let (rtmp, play, s3_port) = (free_port(), free_port(), free_port());
    let s3_endpoint = format!("http://127.0.0.1:{s3_port}");
    let play_base = format!("http://127.0.0.1:{play}");
    let env = [
        ("LIVEBUCKET_IMAGE", images.livebucket.clone()),
        ("NGINX_RTMP_IMAGE", images.nginx_rtmp.clone()),
        ("GARAGE_IMAGE", images.garage.clone()),
        ("LIVEBUCKET_SECRET_FILE", secret_file.display().to_string()),
        ("HOOKS_SECRET_FILE", hooks_secret_file.display().to_string()),
        ("LIVEBUCKET_KEY_ID", key.id.clone()),
        ("LIVEBUCKET_BUCKET", BUCKET.to_owned()),
        ("RTMP_PUBLISH", format!("127.0.0.1:{rtmp}")),
        ("PLAY_PUBLISH", format!("127.0.0.1:{play}")),
        ("GARAGE_S3_PUBLISH", format!("127.0.0.1:{s3_port}")),
        ("LIVEBUCKET_S3_PUBLIC_ENDPOINT", s3_endpoint.clone()),
        (
            "LIVEBUCKET_RTMP_URL",
            format!("rtmp://127.0.0.1:{rtmp}/live"),
        ),
        ("LIVEBUCKET_PLAY_URL", play_base.clone()),
        ("HLS_TMPFS_SIZE", TMPFS_SIZE.to_owned()),
        ("LIVEBUCKET_LOG", "livebucket=debug,info".into()),
        // nginx logs a failed on_update ("notify: update failed") at info.
        ("NGINX_ERROR_LOG_LEVEL", "info".into()),
    ];
    let mut stack = Compose::new(&dir, "stack", &env, &["garage"]);
    blocking(|| {
        stack.up();
        stack.wait_healthy(&["livebucket", "nginx-rtmp", "garage"], secs(60));
        let code = stack.wait_exited("garage-init", secs(60));
        assert_eq!(
            code,
            0,
            "garage-init failed:\n{}",
            stack.logs("garage-init")
        );
    });
    clock.lap("up");

    // livebucket publishes its public port only; it listens on TCP there
    // and on its operator port on the container's loopback, and takes
    // nginx's callbacks on the Unix socket alone.
    let (published, listeners, nginx_listeners) = blocking(|| {
        (
            stack.published_ports("livebucket"),
            tcp_listeners(&stack, "livebucket"),
            tcp_listeners(&stack, "nginx-rtmp"),
        )
    });
    assert_eq!(
        published,
        [("8080/tcp".to_owned(), format!("127.0.0.1:{play}"))],
        "livebucket publishes other ports"
    );
    // (127.0.0.11 is Docker's DNS resolver, in every container's namespace.)
    let not_dns = |all: &[String]| -> Vec<String> {
        all.iter()
            .filter(|l| !l.starts_with("127.0.0.11:"))
            .cloned()
            .collect()
    };
    assert_eq!(
        not_dns(&listeners),
        ["0.0.0.0:8080", "127.0.0.1:9090"],
        "livebucket's TCP listeners"
    );
    // nginx listens on TCP for RTMP only: its statistics page is a socket
    // in the volume the two containers share, which answers.
    assert_eq!(
        not_dns(&nginx_listeners),
        ["0.0.0.0:1935"],
        "nginx-rtmp's TCP listeners"
    );
    let sockets = blocking(|| stack.volume_mountpoint("sockets"));
    let (status, page) = blocking(|| unix_get(&sockets.join("stat.sock"), "/stat"));
    assert!(
        status == 200 && page.contains("<rtmp>") && page.contains("<name>hls</name>"),
        "GET /stat on nginx-rtmp's stat.sock: {status}\n{page}"
    );
    // No published port takes a callback, even one carrying the right
    // secret and a validly signed push: the public port refuses it
    // (OSS error XML: the path is no LiveChannel operation), Garage refuses
    // it, the RTMP port speaks no HTTP. Nothing reached the hooks.
    let forged_url = push_url(
        "rtmp://127.0.0.1:1935/live",
        "forged",
        BUCKET,
        &key,
        unix_now() + 600,
    );
    let forged = on_publish_body("forged", forged_url.split_once('?').unwrap().1);
    let hook_path = format!("/hooks/{hooks_secret}/on_publish");
    let every_port: Vec<(String, String, String)> = blocking(|| {
        ["livebucket", "nginx-rtmp", "garage"]
            .iter()
            .flat_map(|service| {
                stack
                    .published_ports(service)
                    .into_iter()
                    .map(|(port, host)| ((*service).to_owned(), port, host))
            })
            .collect()
    });
    assert_eq!(every_port.len(), 3, "published ports: {every_port:?}");
    for (service, port, host) in &every_port {
        let status = blocking(|| post_status(host, &hook_path, &forged));
        eprintln!("compose: {service} {port}: POST /hooks/SECRET/on_publish: {status:?}");
        assert!(
            status.is_none_or(|s| s >= 400),
            "{service} {port} on {host} answered {status:?} to POST /hooks/SECRET/on_publish"
        );
        if service == "livebucket" {
            assert!(
                matches!(status, Some(403 | 404)),
                "the public port answered {status:?} to POST /hooks/SECRET/on_publish"
            );
        }
    }
    let metrics = blocking(|| stack.exec("livebucket", &["livebucket-docker", "metrics"]));
    for series in [
        "livebucket_hooks_total{call=\"publish\"}",
        "livebucket_hooks_forged_total{reason=\"secret\"}",
        "livebucket_push_accepted_total",
    ] {
        assert_eq!(
            counter(&metrics, series).unwrap_or(0),
            0,
            "{series} after the forged callbacks; livebucket-docker metrics:\n{metrics}"
        );
    }
    // The public port serves the OSS LiveChannel API: an unsigned
    // ListLiveChannel (path-style, the host is an IP address) is refused
    // with OSS's error XML.
    let list = httpc::get(&format!("{play_base}/{BUCKET}?live")).await;
    assert!(
        list.status == 403
            && list.text().contains("<Code>AccessDenied</Code>")
            && list.header("x-oss-request-id").is_some(),
        "unsigned GET /{BUCKET}?live on the public port: {} {:?}\n{}",
        list.status,
        list.headers,
        list.text()
    );

    // The HLS volume is a tmpfs of the requested size, livebucket's (uid
    // 990), group www-data (gid 33), and hls/ in it is setgid for that group.
    let tmpfs = blocking(|| stack.volume_mountpoint("hls"));
    let (fs_type, options) = mount_of(&tmpfs)
        .unwrap_or_else(|| panic!("the HLS volume is not mounted at {}", tmpfs.display()));
    assert!(
        fs_type == "tmpfs"
            && options.split(',').any(|o| o == TMPFS_SIZE_IN_MOUNTS)
            && options.split(',').any(|o| o == "uid=990")
            && options.split(',').any(|o| o == "gid=33"),
        "the HLS volume is {fs_type} ({options}), not a {TMPFS_SIZE} tmpfs owned by 990:33"
    );
    assert_eq!(
        owner_and_mode(&tmpfs),
        (990, 33, 0o750),
        "the HLS volume's root"
    );
    assert_eq!(
        owner_and_mode(&tmpfs.join("hls")),
        (990, 33, 0o2770),
        "hls/"
    );
    // livebucket runs with no capability at all (PID 1 after the
    // entrypoint's exec), and can gain none.
    let status = blocking(|| stack.exec("livebucket", &["cat", "/proc/1/status"]));
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in livebucket's /proc/1/status:\n{status}"));
        assert!(
            line.ends_with("0000000000000000") && status.contains("Uid:\t990\t"),
            "livebucket's {line}, not 0, or not uid 990:\n{status}"
        );
    }
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");

    // livebucket made hls/ at start; record what nginx writes there before
    // livebucket can delete it.
    let ledger = Ledger::new(dir.join("nginx-wrote"));
    let _recorder = Recorder::start(&tmpfs.join("hls"), &ledger);
    let s3 = S3::new(&s3_endpoint, garage::REGION, &key);
    let watch = PlaylistWatch::start(&s3, BUCKET, CHANNEL);

    // The push URL, signed on the host by the CLI with a config holding
    // the same key.
    let host_config = dir.join("host-livebucket.toml");
    let state = dir.subdir("host-state");
    std::fs::write(
        &host_config,
        config_toml(&ConfigParams {
            listen: free_addr(),
            state_dir: &state,
            hls_dir: &dir.join("unused-hls"),
            relay_url: "rtmp://127.0.0.1:1935/hls",
            stat_url: None,
            s3_endpoint: &s3_endpoint,
            keys: &[(&key, &[BUCKET])],
            extra: "",
        }),
    )
    .unwrap();
    let url = sign_push(
        &host_config,
        BUCKET,
        CHANNEL,
        &format!("rtmp://127.0.0.1:{rtmp}/live"),
    );
    let mut push = push(&dir, &url, PUSH_SECONDS);

    // nginx calls on_update 10 s after the publish, for the publisher and
    // for its relay to the HLS application, and drops a stream whose call
    // fails. Restart right after both were answered: livebucket is back
    // long before the next ones, 10 s later.
    wait_until(
        "livebucket to answer nginx's first on_update calls",
        secs(30),
        millis(100),
        async || {
            if let Some(status) = push.try_wait() {
                panic!("the push ended early ({status}); ffmpeg:\n{}", push.log());
            }
            match blocking(|| updates_handled(&stack)) {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} handled")),
            }
        },
    )
    .await;
    clock.lap("push to first on_update");
    // nginx writes into the directory livebucket made for the session:
    // livebucket's, group www-data, 0770 (the kernel drops setgid for a
    // chmod by livebucket, which is not in that group; the group came from
    // hls/), and its fragments are there.
    let streams: Vec<_> = std::fs::read_dir(tmpfs.join("hls"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(streams.len(), 1, "stream directories: {streams:?}");
    let (uid, gid, mode) = owner_and_mode(&streams[0]);
    assert!(
        (uid, gid) == (990, 33) && mode & 0o777 == 0o770,
        "the stream directory is {uid}:{gid} {mode:o}"
    );
    blocking(|| {
        stack.run(&["restart", "livebucket"]);
        stack.wait_healthy(&["livebucket"], secs(30));
    });
    clock.lap("restart");
    assert!(
        push.try_wait().is_none(),
        "the push ended before livebucket was back; ffmpeg:\n{}",
        push.log()
    );
    let log = blocking(|| stack.logs("livebucket"));
    assert!(
        log.contains("recovering unfinished sessions sessions=1"),
        "the restarted livebucket did not pick up the live session; its log:\n{log}"
    );

    // The restarted process (its counters start at zero) answers nginx's
    // next on_update calls for the live stream, on the socket it bound anew
    // in the shared volume.
    wait_until(
        "the restarted livebucket to answer nginx's next on_update calls",
        secs(20),
        millis(200),
        async || match blocking(|| updates_handled(&stack)) {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} handled since the restart")),
        },
    )
    .await;
    let status = push.exit_within(secs(60)).await;
    assert!(
        status.success(),
        "the push failed ({status}); ffmpeg:\n{}",
        push.log()
    );
    watch.wait_for("#EXT-X-ENDLIST", secs(60), ended).await;
    let observed = watch.finish().await;
    clock.lap("rest of the push, playlist ended");
    // Once the session is finished, the tmpfs holds nothing of it: no
    // stream directory in hls/, no capture, no pending session record.
    let left_on_tmpfs = || -> Vec<std::path::PathBuf> {
        let list = |d: &Path| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect()
        };
        let mut left = list(&tmpfs.join("hls"));
        for entry in list(&tmpfs.join("capture")) {
            if entry.file_name().is_some_and(|n| n == "sessions") {
                left.extend(list(&entry));
            } else {
                left.push(entry);
            }
        }
        left
    };
    wait_until(
        "the finished session to leave nothing on the HLS tmpfs",
        secs(20),
        millis(200),
        async || match left_on_tmpfs() {
            left if left.is_empty() => Ok(()),
            left => Err(format!("{left:?}")),
        },
    )
    .await;
    // livebucket's own count agrees: fragments uploaded since the restart,
    // none given up (the counters restart with the process).
    let metrics = blocking(|| stack.exec("livebucket", &["livebucket-docker", "metrics"]));
    assert!(
        counter(&metrics, "livebucket_fragments_uploaded_total").is_some_and(|n| n > 0)
            && counter(&metrics, "livebucket_fragments_lost_total").unwrap_or(0) == 0
            && counter(&metrics, "livebucket_hooks_forged_total{reason=\"secret\"}").unwrap_or(0)
                == 0,
        "livebucket-docker metrics:\n{metrics}"
    );
    // nginx logs at info here (NGINX_ERROR_LOG_LEVEL): its callbacks are
    // there, and none failed.
    let nginx_log = blocking(|| stack.logs("nginx-rtmp"));
    assert!(
        nginx_log.contains("notify: publish") && !nginx_log.contains("notify: update failed"),
        "nginx logged no callback, or an on_update failed across the restart:\n{nginx_log}"
    );
    assert!(
        s3.list(BUCKET, "forged/").await.is_empty(),
        "the forged on_publish stored something"
    );
    let stored =
        assert_bucket_matches(&ledger, &s3, CHANNEL, &observed, FinalPlaylist::Window).await;
    assert!(
        stored.len() >= 10,
        "a {PUSH_SECONDS} s push stored only {} fragments: {stored:#?}",
        stored.len()
    );

    // Play it as the README says: the signed /play URL that
    // `livebucket-docker urls` prints, through the published port.
    let urls = blocking(|| stack.exec("livebucket", &["livebucket-docker", "urls", CHANNEL]));
    let play_url = urls
        .lines()
        .find(|l| l.starts_with(&format!("{play_base}/play/")))
        .unwrap_or_else(|| panic!("livebucket-docker urls printed no /play URL: {urls}"));
    let (duration, streams) = blocking(|| probe_all(play_url));
    let listed: f64 = observed
        .latest()
        .map(|v| v.playlist.durations.iter().sum())
        .unwrap_or_default();
    assert!(
        (duration - listed).abs() < 1.0 && listed > 0.0,
        "ffprobe found {duration} s in {play_url}, the playlist lists {listed} s"
    );
    for (kind, codec, at_least) in [("video", "h264", 25.0 * listed), ("audio", "aac", 1.0)] {
        assert!(
            streams
                .iter()
                .any(|(t, c, n)| t == kind && c == codec && *n as f64 >= at_least),
            "{play_url}: no {kind} stream in {codec} with {at_least} packets read: {streams:?}"
        );
    }
    clock.lap("play");

    // Channels through the OSS API on the public port: one made by the CLI
    // in the container (its config's listen.public; PublishUrls is the
    // stack's RTMP URL), pushed to, its GetLiveChannelStat reporting what
    // nginx measures (rtmp_stat, read over the shared socket), and listed
    // by the CLI on the host through the published port.
    let stat_channel = "statcam";
    let channel_cli = |args: &[&str]| {
        let mut all = vec!["livebucket-docker", "channel"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--bucket", BUCKET, "--channel", stat_channel]);
        blocking(|| stack.exec("livebucket", &all))
    };
    let created = channel_cli(&["create", "--frag-duration", "2"]);
    assert!(
        created.contains(&format!("Url: rtmp://127.0.0.1:{rtmp}/live/{stat_channel}")),
        "livebucket-docker channel create: {created}"
    );
    let url = sign_push(
        &host_config,
        BUCKET,
        stat_channel,
        &format!("rtmp://127.0.0.1:{rtmp}/live"),
    );
    let mut stat_push = common::ffmpeg::push(&dir, &url, 30);
    wait_until(
        "GetLiveChannelStat to report the push's video",
        secs(20),
        millis(300),
        async || {
            if let Some(status) = stat_push.try_wait() {
                panic!(
                    "the push ended early ({status}); ffmpeg:\n{}",
                    stat_push.log()
                );
            }
            let stat = channel_cli(&["stat"]);
            ["Status: Live", "Width: 320", "Height: 240", "Codec: H264"]
                .iter()
                .all(|line| stat.contains(line))
                .then_some(())
                .ok_or(stat)
        },
    )
    .await;
    stat_push.kill();
    let listed = blocking(|| {
        run(
            "livebucket channel ls",
            Command::new(common::livebucket::BIN)
                .args(["channel", "ls", "--bucket", BUCKET, "--config"])
                .arg(&host_config)
                .args(["--api-url", &play_base]),
        )
    });
    assert!(
        listed.contains(&format!("Name: {stat_channel}")),
        "livebucket channel ls through the published port: {listed}"
    );
    clock.lap("channels");

    // Garage waits for idle keep-alive connections at SIGTERM: close ours.
    drop(s3);
    blocking(|| stack.down());
    clock.lap("down -v");
    let left = blocking(|| stack.leftovers());
    assert!(
        left.is_empty(),
        "down -v left {left:?} of project {}",
        stack.project()
    );
    assert!(
        mount_of(&tmpfs).is_none(),
        "the HLS tmpfs is still mounted at {}",
        tmpfs.display()
    );
    eprintln!("compose: {}", clock.report());
}

/// (uid, gid, permission bits with setgid) of `path`, not following a link.
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

/// `docker run --rm --network none IMAGE ARGS…` with `-e`/`-v` options
/// before the image: the livebucket image's entrypoint, no stack around it.
fn run_image(image: &str, options: &[String], args: &[&str]) -> String {
    run(
        &format!("docker run {image} {}", args.join(" ")),
        docker()
            .args(["run", "--rm", "--network", "none"])
            .args(options)
            .arg(image)
            .args(args),
    )
}

/// Asserts that the first line of `livebucket sign push` output is a push
/// URL for `bucket`/[`CHANNEL`] signed by `key`.
fn assert_push_signed_by(signed: &str, key: &Key, bucket: &str, expires: u64) {
    let url = signed.lines().next().unwrap_or_default();
    let param = |name| query_param(url, name).unwrap_or_default();
    assert!(
        url.starts_with(&format!("rtmp://live.example.com/live/{CHANNEL}?"))
            && param("Bucket") == bucket
            && param("AccessKeyId") == key.id
            && param("Expires") == expires.to_string()
            && param("Signature") == push_signature(&key.secret, bucket, CHANNEL, expires),
        "{url} is not a push URL for {bucket}/{CHANNEL} signed by {}",
        key.id
    );
}

/// The README's "any S3" settings reach livebucket's config: the entrypoint
/// renders AWS-style environment variables (region, virtual-hosted
/// buckets, a public endpoint, the secrets from mounted files) into a config
/// the CLI signs with; and a mounted config (`LIVEBUCKET_CONFIG`) is used as
/// it is. No S3 is contacted: signing is local.
#[test]
fn livebucket_image_takes_any_s3_from_the_environment_or_a_mounted_config() {
    if let Err(reason) = compose::docker_ready() {
        eprintln!("compose: SKIPPED, Docker cannot run here: {reason}");
        return;
    }
    let images = compose::build_images(Path::new(env!("CARGO_BIN_EXE_livebucket")));
    let dir = TestDir::new("compose-config");
    let key = Key {
        id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    };
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{}\n", key.secret)).unwrap();
    // Root's, mode 0600, as `deploy/docker/setup` writes it: the entrypoint
    // reads it before dropping to www-data.
    chmod(&secret_file, 0o600);
    let hooks_secret_file = dir.join("hooks_secret");
    std::fs::write(&hooks_secret_file, garage::random_hex(32)).unwrap();
    chmod(&hooks_secret_file, 0o600);
    let env = |name: &str, value: &str| ["-e".to_owned(), format!("{name}={value}")];
    let mut options: Vec<String> = [
        env(
            "LIVEBUCKET_S3_ENDPOINT",
            "https://s3.eu-west-1.amazonaws.com",
        ),
        env(
            "LIVEBUCKET_S3_PUBLIC_ENDPOINT",
            "https://s3.eu-west-1.amazonaws.com",
        ),
        env("LIVEBUCKET_S3_REGION", "eu-west-1"),
        env("LIVEBUCKET_S3_FORCE_PATH_STYLE", "false"),
        env("LIVEBUCKET_KEY_ID", &key.id),
        env("LIVEBUCKET_SECRET_FILE", "/run/secrets/livebucket_secret"),
        env("LIVEBUCKET_BUCKETS", "tv-live,radio"),
        env("LIVEBUCKET_HOOKS_SECRET_FILE", "/run/secrets/hooks_secret"),
    ]
    .concat();
    options.extend([
        "-v".to_owned(),
        format!(
            "{}:/run/secrets/livebucket_secret:ro",
            secret_file.display()
        ),
        "-v".to_owned(),
        format!(
            "{}:/run/secrets/hooks_secret:ro",
            hooks_secret_file.display()
        ),
    ]);

    let expires = unix_now() + 600;
    let expires_arg = expires.to_string();
    let signed = run_image(
        &images.livebucket,
        &options,
        &[
            "sign",
            "push",
            "--bucket",
            "tv-live",
            "--channel",
            CHANNEL,
            "--expires",
            &expires_arg,
            "--endpoint",
            "rtmp://live.example.com/live",
        ],
    );
    assert_push_signed_by(&signed, &key, "tv-live", expires);
    let presigned = run_image(
        &images.livebucket,
        &options,
        &[
            "sign",
            "play",
            "--bucket",
            "radio",
            "--key-name",
            "cam/index.m3u8",
            "--expires-in",
            "60",
        ],
    );
    assert!(
        presigned.starts_with("https://radio.s3.eu-west-1.amazonaws.com/cam/index.m3u8?")
            && presigned.contains("%2Feu-west-1%2Fs3%2Faws4_request"),
        "not a virtual-hosted eu-west-1 URL: {presigned}"
    );

    // A mounted config wins over the environment.
    let config = dir.join("livebucket.toml");
    let mounted_key = Key {
        id: "GK0000000000000000000000aa".into(),
        secret: garage::random_hex(32),
    };
    let state = dir.subdir("state");
    std::fs::write(
        &config,
        config_toml(&ConfigParams {
            listen: "127.0.0.1:8089".parse().unwrap(),
            state_dir: &state,
            hls_dir: Path::new("/dev/shm/livebucket/hls"),
            relay_url: "rtmp://127.0.0.1:1935/hls",
            stat_url: None,
            s3_endpoint: "http://s3.example.com:9000",
            keys: &[(&mounted_key, &[BUCKET])],
            extra: "",
        }),
    )
    .unwrap();
    options.extend([
        "-e".to_owned(),
        "LIVEBUCKET_CONFIG=/etc/livebucket/livebucket.toml".to_owned(),
        "-v".to_owned(),
        format!("{}:/etc/livebucket/livebucket.toml:ro", config.display()),
    ]);
    let signed = run_image(
        &images.livebucket,
        &options,
        &[
            "sign",
            "push",
            "--bucket",
            BUCKET,
            "--channel",
            CHANNEL,
            "--expires",
            &expires_arg,
            "--endpoint",
            "rtmp://live.example.com/live",
        ],
    );
    assert_push_signed_by(&signed, &mounted_key, BUCKET, expires);
}
