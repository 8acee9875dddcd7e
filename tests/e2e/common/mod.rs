//! The end-to-end harness: a real S3 store (Garage, or Ceph's RADOS Gateway:
//! [`store::StoreKind`]), nginx-rtmp, ffmpeg and the livebucket binary, on 127.0.0.1 ports picked free, one temporary directory per test.
//!
//! Every process a test starts is owned by a guard that stops it by PID when
//! dropped and, if the test is failing, prints its log. Declare guards in the
//! order they start (directory first): Rust drops locals in reverse, so
//! pushes stop before livebucket, livebucket before nginx and Garage, and the
//! directory goes last (kept on failure, its path printed).
//!
//! [`Stack`] starts the usual set in one call. External tools are installed by
//! `scripts/install-deps`; Garage is found through `GARAGE_BIN`, Ceph's
//! daemons on `PATH`. `compose`
//! runs the same programs as the docker compose stack of `deploy/docker/`
//! instead, owned by a guard that takes it down with its volumes.
//!
//! Waiting is always a poll with a deadline ([`wait_until`]), never a fixed
//! sleep that a slow machine could outrun.

pub mod bucket_check;
pub mod cluster;
pub mod compose;
pub mod etcd;
pub mod fake_nginx;
pub mod ffmpeg;
pub mod fragments;
pub mod garage;
pub mod hlscheck;
pub mod httpc;
pub mod ladder;
pub mod livebucket;
pub mod nginx;
pub mod player;
pub mod playlist_watch;
pub mod ports;
pub mod process;
pub mod rawrtmp;
pub mod rgw;
pub mod s3;
pub mod store;
pub mod stored;
pub mod tmpfs;

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use ffmpeg::{Push, ffprobe, push};
pub use garage::{Garage, Key};
pub use livebucket::{
    ConfigParams, Livebucket, config_toml, push_signature, push_url, query_param, sign_play,
    sign_push, sign_push_expiring_at, unix_now, with_query_param,
};
pub use nginx::Nginx;
pub use s3::{Head, S3};
pub use store::{StoreKind, TestStore};

/// One directory per test, under the system temp dir. Removed when dropped,
/// unless the test is failing: then it is kept and its path printed.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    files: AtomicU32,
}

impl TestDir {
    /// `name` goes into the directory's name, to find it among others.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("livebucket-{name}-"))
            .tempdir()
            .expect("cannot create a temporary directory");
        // nginx's worker runs as nobody and must reach the HLS dir inside.
        chmod(dir.path(), 0o755);
        TestDir {
            path: dir.path().to_owned(),
            dir: Some(dir),
            files: AtomicU32::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// `DIR/name`, created (with parents) if missing.
    pub fn subdir(&self, name: impl AsRef<Path>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        chmod(&path, 0o755);
        path
    }

    /// A new file name `DIR/STEM-N.EXT`, N counting up from 1.
    pub fn unique_file(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        self.path.join(format!("{stem}-{n}.{ext}"))
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let path = dir.keep();
            eprintln!(
                "harness: kept the failed test's directory {}",
                path.display()
            );
        }
    }
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {mode:o} {}: {e}", path.display()));
}

/// A TCP port on 127.0.0.1, free and reserved for this test process
/// ([`ports`] says how).
pub fn free_port() -> u16 {
    ports::reserve()
}

/// `127.0.0.1:PORT` on a free port.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Calls `check` every `poll` until it returns `Ok`, and returns that value.
/// After `timeout`, panics naming `what` and the last `Err` `check` gave, so
/// the message says what was still missing.
///
/// ```ignore
/// let objects = wait_until("two segments", secs(30), millis(500), async || {
///     let objects = s3.list(BUCKET, "cam/").await;
///     if objects.len() >= 2 { Ok(objects) } else { Err(format!("only {objects:?}")) }
/// })
/// .await;
/// ```
pub async fn wait_until<T, E: Display>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last check said: {last}")
            }
            Err(_) => tokio::time::sleep(poll).await,
        }
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The bucket [`Stack::start`] creates.
pub const BUCKET: &str = "media";
/// A second bucket in the store that the stack's key may not push to.
pub const OTHER_BUCKET: &str = "other";

/// A store (Garage unless [`Stack::start_on`] says otherwise) with
/// [`BUCKET`] and [`OTHER_BUCKET`], nginx-rtmp, and livebucket wired to both,
/// with one key allowed to push to [`BUCKET`] only.
/// Fields drop in declaration order: livebucket, nginx, the store, then the
/// directory.
pub struct Stack {
    pub livebucket: Livebucket,
    pub nginx: Nginx,
    pub store: TestStore,
    pub s3: S3,
    pub hls_dir: PathBuf,
    pub dir: TestDir,
}

impl Stack {
    pub fn start(name: &str) -> Stack {
        Self::start_with(name, "")
    }

    /// `extra_config` is added to livebucket's config: whole tables such as
    /// `"[live]\nwindow_segments = 3\n"`; bare keys before any table land in
    /// `[s3]` (it comes right before them).
    pub fn start_with(name: &str, extra_config: &str) -> Stack {
        Self::start_on(StoreKind::Garage, name, extra_config)
    }

    /// [`Stack::start_with`] on a store of `kind`.
    pub fn start_on(kind: StoreKind, name: &str, extra_config: &str) -> Stack {
        Self::build(kind, name, extra_config, false)
    }

    /// [`Stack::start_with`] with livebucket's hooks socket held by the
    /// test, as systemd holds it ([`livebucket::Options::socket`]): nginx's
    /// callbacks wait while livebucket is killed and restarted.
    pub fn start_held(name: &str, extra_config: &str) -> Stack {
        Self::build(StoreKind::Garage, name, extra_config, true)
    }

    fn build(kind: StoreKind, name: &str, extra_config: &str, held_socket: bool) -> Stack {
        let dir = TestDir::new(name);
        let mut store = TestStore::start(kind, &dir);
        store.create_bucket(BUCKET);
        store.create_bucket(OTHER_BUCKET);
        let key = store.key().clone();

        let socket = held_socket
            .then(|| std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0"));
        let listen = socket
            .as_ref()
            .map_or_else(free_addr, |s| s.local_addr().unwrap());
        let hls_dir = dir.join("hls");
        let nginx = Nginx::start(&dir, &format!("http://{listen}"), &hls_dir);
        let state_dir = dir.subdir("state");
        let config = config_toml(&ConfigParams {
            listen,
            stat_url: Some(&nginx.stat_url()),
            state_dir: &state_dir,
            hls_dir: &hls_dir,
            relay_url: &nginx.relay_url(),
            s3_endpoint: store.endpoint(),
            keys: &[(&key, &[BUCKET])],
            extra: extra_config,
        });
        let livebucket =
            Livebucket::start_with(&dir, &config, livebucket::Options { socket, log: "" });
        Stack {
            s3: store.s3(),
            livebucket,
            nginx,
            store,
            hls_dir,
            dir,
        }
    }

    /// The stack's key (allowed on [`BUCKET`]).
    pub fn key(&self) -> &Key {
        self.store.key()
    }

    /// A push URL for `channel` in [`BUCKET`], signed by `livebucket sign push`.
    pub fn sign_push(&self, channel: &str) -> String {
        sign_push(
            self.livebucket.config_path(),
            BUCKET,
            channel,
            &self.nginx.push_base(),
        )
    }

    /// A `/play` URL for `key_name` (`CHANNEL/PLAYLIST`) in [`BUCKET`],
    /// signed by `livebucket sign play`.
    pub fn sign_play(&self, key_name: &str) -> String {
        sign_play(
            self.livebucket.config_path(),
            BUCKET,
            key_name,
            &self.livebucket.url(),
        )
    }

    /// Pushes `seconds` of test pattern to `url`.
    pub fn push(&self, url: &str, seconds: u32) -> Push {
        push(&self.dir, url, seconds)
    }
}

/// Whether a key listed under `CHANNEL/` is a fragment livebucket stored,
/// `CHANNEL/<13-digit epoch ms>.ts`, rather than a Low-Latency HLS part
/// (`CHANNEL/.ll/<recording>/…`), which lives only while its segment is
/// near the live edge.
pub fn is_fragment_key(key: &str) -> bool {
    key.rsplit_once('/').is_some_and(|(dir, name)| {
        !dir.split('/').any(|c| c == ".ll")
            && name
                .strip_suffix(".ts")
                .is_some_and(|d| d.len() == 13 && d.bytes().all(|b| b.is_ascii_digit()))
    })
}
