#![cfg(feature = "e2e")]
//! The docker compose stack (`deploy/docker/`), built and run for real: the
//! images users get (`runtime-prebuilt` around this build's livebucket and
//! the harness's Garage), `up` with the Garage profile, a signed push from
//! the host to the published RTMP port with the livebucket container
//! restarted in the middle, playback of the signed `/play` URL, and `down -v`
//! leaving nothing behind.
//!
//! What nginx wrote is recorded from the host (`common::fragments`, on the
//! HLS tmpfs volume where the daemon mounts it), the playlist is polled in
//! the bucket through Garage's published S3 port (`common::playlist_watch`),
//! and the two are compared fragment by fragment
//! (`common::bucket_check`): the restart loses nothing.
//!
//! Needs a Docker daemon (started if needed by `scripts/docker-base-image`);
//! `scripts/test` skips this file, loudly, only where Docker cannot run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bucket_check::{FinalPlaylist, assert_bucket_matches};
use common::compose::{self, Compose, docker};
use common::fragments::{Ledger, Recorder};
use common::playlist_watch::{PlaylistWatch, Version};
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

/// Lines of livebucket's log (tower_http at debug) answering `on_update`.
fn updates_answered(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("uri=/hooks/on_update") && l.contains("status=200"))
        .count()
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

/// A ready check: the playlist is finished.
fn ended(v: &Version) -> Result<(), String> {
    if v.playlist.ended {
        Ok(())
    } else {
        Err("no #EXT-X-ENDLIST yet".into())
    }
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
        eprintln!("e2e_compose: SKIPPED, Docker cannot run here: {reason}");
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
    let (rtmp, play, s3_port) = (free_port(), free_port(), free_port());
    let s3_endpoint = format!("http://127.0.0.1:{s3_port}");
    let play_base = format!("http://127.0.0.1:{play}");
    let env = [
        ("LIVEBUCKET_IMAGE", images.livebucket.clone()),
        ("NGINX_RTMP_IMAGE", images.nginx_rtmp.clone()),
        ("GARAGE_IMAGE", images.garage.clone()),
        ("LIVEBUCKET_SECRET_FILE", secret_file.display().to_string()),
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
        // Every request with its status: the test times the restart on
        // nginx's on_update calls.
        (
            "LIVEBUCKET_LOG",
            "livebucket=debug,tower_http=debug,info".into(),
        ),
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

    // Only nginx-rtmp and Garage publish ports; livebucket's port, which
    // carries nginx's callbacks, stays on the stack's network.
    let published = blocking(|| {
        let id = stack.container("livebucket");
        run("docker port", docker().args(["port", &id]))
    });
    assert!(
        published.trim().is_empty(),
        "livebucket publishes ports: {published}"
    );
    let hooks = httpc::post(&format!("{play_base}/hooks/on_publish")).await;
    assert_eq!(
        hooks.status,
        404,
        "the public port forwards /hooks: {}",
        hooks.text()
    );

    // The HLS volume is a tmpfs of the requested size, owned by www-data.
    let tmpfs = blocking(|| stack.volume_mountpoint("hls"));
    let (fs_type, options) = mount_of(&tmpfs)
        .unwrap_or_else(|| panic!("the HLS volume is not mounted at {}", tmpfs.display()));
    assert!(
        fs_type == "tmpfs"
            && options.split(',').any(|o| o == TMPFS_SIZE_IN_MOUNTS)
            && options.split(',').any(|o| o == "uid=33"),
        "the HLS volume is {fs_type} ({options}), not a {TMPFS_SIZE} tmpfs owned by uid 33"
    );

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
            let answered = blocking(|| updates_answered(&stack.logs("livebucket")));
            if answered >= 2 {
                Ok(())
            } else {
                Err(format!("{answered} answered"))
            }
        },
    )
    .await;
    clock.lap("push to first on_update");
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

    // The restarted process answers nginx's next on_update calls for the
    // live stream (nginx-rtmp reaches it through nginx-http.conf's
    // forwarder, which looks livebucket up again).
    wait_until(
        "the restarted livebucket to answer nginx's next on_update calls",
        secs(20),
        millis(200),
        async || {
            let log = blocking(|| stack.logs("livebucket"));
            let since_restart = log.rsplit_once("livebucket serving").map_or("", |(_, l)| l);
            match updates_answered(since_restart) {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} answered since the restart")),
            }
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
    // livebucket's own count agrees: fragments uploaded since the restart,
    // none given up (the counters restart with the process).
    let metrics = blocking(|| stack.exec("livebucket", &["livebucket-docker", "metrics"]));
    let counter = |series: &str| {
        metrics.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
    };
    assert!(
        counter("livebucket_fragments_uploaded_total").is_some_and(|n| n > 0)
            && counter("livebucket_fragments_lost_total").unwrap_or(0) == 0,
        "livebucket-docker metrics:\n{metrics}"
    );
    let nginx_log = blocking(|| stack.logs("nginx-rtmp"));
    assert!(
        !nginx_log.contains("notify: update failed"),
        "nginx saw an on_update fail across the restart:\n{nginx_log}"
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
    eprintln!("e2e_compose: {}", clock.report());
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
/// buckets, a public endpoint, the secret from a mounted file) into a config
/// the CLI signs with; and a mounted config (`LIVEBUCKET_CONFIG`) is used as
/// it is. No S3 is contacted: signing is local.
#[test]
fn livebucket_image_takes_any_s3_from_the_environment_or_a_mounted_config() {
    if let Err(reason) = compose::docker_ready() {
        eprintln!("e2e_compose: SKIPPED, Docker cannot run here: {reason}");
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
    ]
    .concat();
    options.extend([
        "-v".to_owned(),
        format!(
            "{}:/run/secrets/livebucket_secret:ro",
            secret_file.display()
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
            listen: "0.0.0.0:8089".parse().unwrap(),
            state_dir: &state,
            hls_dir: Path::new("/dev/shm/livebucket/hls"),
            relay_url: "rtmp://127.0.0.1:1935/hls",
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
