//! A single-node Garage per test. `scripts/garage-dev` writes its config and
//! provisions it (layout, keys, buckets), the same script `scripts/demo` uses;
//! this module owns the server process, so it can stop the node and start it
//! again on the same data and ports for outage tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TestDir;
use super::process::{Proc, Stop, run};
use super::s3::S3;

/// The S3 region Garage is configured with.
pub const REGION: &str = "garage";

/// An S3 access key, usable both by Garage and in livebucket's `[[keys]]`.
#[derive(Clone, Debug)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

pub struct Garage {
    dir: PathBuf,
    endpoint: String,
    key: Key,
    keys_made: u32,
    server: Option<Proc>,
}

/// The Garage binary: `$GARAGE_BIN`, else where `scripts/install-deps` builds it.
pub fn garage_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GARAGE_BIN") {
        return bin.into();
    }
    let cache = std::env::var_os("LIVEBUCKET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/livebucket")
        });
    cache.join("garage-2.5.0/bin/garage")
}

fn garage_dev() -> Command {
    let bin = garage_bin();
    assert!(
        bin.is_file(),
        "no Garage binary at {}: run scripts/install-deps (or set GARAGE_BIN)",
        bin.display()
    );
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/garage-dev"));
    cmd.env("GARAGE_BIN", bin);
    cmd
}

impl Garage {
    /// Starts a fresh node in `DIR/garage`, with layout applied and one key
    /// ([`Garage::key`]) imported. Buckets come from [`Garage::create_bucket`].
    pub fn start(dir: &TestDir) -> Garage {
        let dir = dir.subdir("garage");
        let ports = [super::free_port(), super::free_port(), super::free_port()];
        let endpoint = run(
            "garage-dev config",
            garage_dev()
                .arg("config")
                .arg(&dir)
                .args(ports.map(|p| p.to_string())),
        )
        .trim()
        .to_owned();
        let mut garage = Garage {
            dir,
            endpoint,
            key: Key {
                id: String::new(),
                secret: String::new(),
            },
            keys_made: 0,
            server: None,
        };
        garage.spawn();
        garage.wait_listening();
        garage.script(&["setup"]);
        garage.key = garage.new_key();
        garage
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(garage_bin());
        cmd.arg("-c")
            .arg(self.config())
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .env("NO_COLOR", "1");
        self.server = Some(Proc::spawn(
            "garage",
            cmd,
            &self.dir.join("garage.log"),
            // SIGTERM makes Garage wait for idle keep-alive connections (the
            // test's S3 client holds some); a crash is as good an outage.
            Stop::Kill,
        ));
    }

    /// Waits until the S3 port accepts; panics at once if the node exits
    /// first (its log, printed by `Drop`, says why) instead of letting
    /// `garage-dev wait` poll a dead node for a minute.
    fn wait_listening(&mut self) {
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let server = self.server.as_mut().expect("Garage was just spawned");
        while std::net::TcpStream::connect(&addr).is_err() {
            if let Some(status) = server.try_wait() {
                panic!("Garage exited while starting ({status}); its log follows");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Garage did not listen on {addr} within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs `garage-dev SUBCOMMAND DIR ARGS...`; on failure the panic message
    /// holds the script's output (and the node's log is printed by `Drop`).
    fn script(&mut self, args: &[&str]) -> String {
        if let Some(server) = self.server.as_mut() {
            server.assert_running();
        }
        let mut cmd = garage_dev();
        cmd.arg(args[0]).arg(&self.dir).args(&args[1..]);
        run(&format!("garage-dev {}", args[0]), &mut cmd)
    }

    fn config(&self) -> PathBuf {
        self.dir.join("garage.toml")
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The key imported at start; it owns every bucket made by `create_bucket`.
    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An S3 client with [`Garage::key`].
    pub fn s3(&self) -> S3 {
        S3::new(&self.endpoint, REGION, &self.key)
    }

    /// Creates `bucket` with read, write and owner for [`Garage::key`].
    pub fn create_bucket(&mut self, bucket: &str) {
        let id = self.key.id.clone();
        self.script(&["bucket", bucket, &id]);
    }

    /// Imports a new key with read and write on `bucket` only.
    pub fn create_key_for(&mut self, bucket: &str) -> Key {
        let key = self.new_key();
        self.script(&[
            "garage", "bucket", "allow", "--read", "--write", bucket, "--key", &key.id,
        ]);
        key
    }

    /// Runs the garage CLI against this node; returns stdout.
    pub fn cli(&mut self, args: &[&str]) -> String {
        let mut all = vec!["garage"];
        all.extend_from_slice(args);
        self.script(&all)
    }

    /// Key ids are deterministic (GK000000000000000000000001, …002, …) so a
    /// log reads the same from run to run; secrets are random.
    fn new_key(&mut self) -> Key {
        self.keys_made += 1;
        let key = Key {
            id: format!("GK{:024x}", self.keys_made),
            secret: random_hex(32),
        };
        self.script(&["key", &key.id, &key.secret]);
        key
    }

    /// Stops the node (SIGKILL): S3 requests fail until
    /// [`Garage::start_again`].
    pub fn stop(&mut self) {
        let server = self.server.take().expect("Garage is already stopped");
        drop(server);
    }

    /// Starts the node again on the same data and ports and waits until it
    /// answers.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "Garage is still running");
        self.spawn();
        self.wait_listening();
        self.script(&["wait"]);
    }
}

/// `bytes` random bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("cannot read /dev/urandom");
    hex::encode(buf)
}
