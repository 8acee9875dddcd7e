//! A one-node Ceph with the RADOS Gateway per test: `scripts/ceph-dev` writes
//! its configuration and makes the monitor's and the OSD's data (the same
//! script works by hand); this module owns the three daemons (monitor, OSD,
//! radosgw), stops them by PID, and makes the S3 user and buckets. The OSD
//! keeps objects in RAM, so a node is up in about 1.5 s and gone without a
//! trace.
//!
//! An outage ([`Rgw::stop`]) freezes radosgw with SIGSTOP, as a hung gateway
//! does: connections are accepted by the kernel and never answered, unlike
//! Garage's outage (killed: connections refused).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::TestDir;
use super::garage::{Key, random_hex};
use super::process::{Proc, Stop, run, send_signal};
use super::s3::S3;

/// The region livebucket and the tests sign with. RGW 16.2's default
/// zonegroup accepts any region in a SigV4 scope (tried: `us-east-1`,
/// `garage`), so the harness keeps Garage's for both stores.
pub const REGION: &str = super::garage::REGION;

pub struct Rgw {
    dir: PathBuf,
    endpoint: String,
    key: Key,
    /// Dropped in this order: radosgw, the OSD, the monitor.
    rgw: Proc,
    osd: Proc,
    mon: Proc,
    frozen: bool,
}

fn ceph_dev() -> Command {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph-dev"))
}

impl Rgw {
    /// Starts a fresh node in `DIR/rgw` with one S3 user ([`Rgw::key`]).
    /// Buckets come from [`Rgw::create_bucket`].
    pub fn start(dir: &TestDir) -> Rgw {
        let dir = dir.subdir("rgw");
        let ports = [super::free_port(), super::free_port()];
        let endpoint = run(
            "ceph-dev config",
            ceph_dev()
                .arg("config")
                .arg(&dir)
                .args(ports.map(|p| p.to_string())),
        )
        .trim()
        .to_owned();
        let daemon = |name: &str| {
            let mut cmd = ceph_dev();
            cmd.arg("run").arg(&dir).arg(name);
            // Memstore keeps nothing worth a clean shutdown.
            Proc::spawn(
                &format!("ceph {name}"),
                cmd,
                &dir.join(format!("log/{name}.stderr")),
                Stop::Kill,
            )
        };
        let (mon, osd, rgw) = (daemon("mon"), daemon("osd"), daemon("rgw"));
        let mut node = Rgw {
            dir,
            endpoint,
            key: Key {
                id: "GK000000000000000000000001".to_owned(),
                secret: random_hex(32),
            },
            rgw,
            osd,
            mon,
            frozen: false,
        };
        node.wait_listening();
        run(
            "ceph-dev user",
            ceph_dev()
                .arg("user")
                .arg(&node.dir)
                .arg(&node.key.id)
                .arg(&node.key.secret),
        );
        node
    }

    /// Waits until radosgw's S3 port accepts; panics at once, naming the
    /// daemon, if one exits first (the daemons' logs are in `DIR/rgw/log/`).
    fn wait_listening(&mut self) {
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&addr).is_err() {
            for daemon in [&mut self.mon, &mut self.osd, &mut self.rgw] {
                daemon.assert_running();
            }
            assert!(
                Instant::now() < deadline,
                "radosgw did not listen on {addr} within 60 s; logs in {}",
                self.dir.join("log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An S3 client with [`Rgw::key`].
    pub fn s3(&self) -> S3 {
        S3::new(&self.endpoint, REGION, &self.key)
    }

    /// Creates `bucket`, owned by [`Rgw::key`]'s user (RGW has no CLI for
    /// it: an S3 CreateBucket, on a runtime of its own so that a test's
    /// runtime is not blocked inside).
    pub fn create_bucket(&mut self, bucket: &str) {
        self.rgw.assert_running();
        let s3 = self.s3();
        let bucket = bucket.to_owned();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot build a runtime")
                .block_on(async {
                    s3.client()
                        .create_bucket()
                        .bucket(&bucket)
                        .send()
                        .await
                        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                        .unwrap_or_else(|e| panic!("creating bucket {bucket} on RGW: {e}"));
                });
        })
        .join()
        .expect("creating a bucket on RGW failed");
    }

    /// Freezes radosgw (SIGSTOP): S3 requests hang until
    /// [`Rgw::start_again`].
    pub fn stop(&mut self) {
        assert!(!self.frozen, "radosgw is already stopped");
        self.rgw.assert_running();
        send_signal(self.rgw.pid().expect("radosgw runs"), "STOP");
        self.frozen = true;
    }

    /// Thaws radosgw (SIGCONT) and waits until it accepts again.
    pub fn start_again(&mut self) {
        assert!(self.frozen, "radosgw is running");
        send_signal(self.rgw.pid().expect("radosgw runs"), "CONT");
        self.frozen = false;
        self.wait_listening();
    }
}
