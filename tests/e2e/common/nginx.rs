//! nginx with libnginx-mod-rtmp, configured by `scripts/render-nginx-conf`
//! from the repository's `nginx/nginx.conf.in` (the one renderer, shared with
//! the demo and deployments), on a free RTMP port.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::TestDir;
use super::process::{Proc, Stop, run};

/// The applications the template is rendered with.
pub const PUBLIC_APP: &str = "live";
pub const HLS_APP: &str = "hls";

pub struct Nginx {
    rtmp_port: u16,
    stat_port: u16,
    prefix: PathBuf,
    // Last: stopped before anything else of this struct goes.
    proc: Proc,
}

impl Nginx {
    /// Starts nginx calling back `hooks_url` (livebucket's `http://IP:PORT`)
    /// and writing HLS under `hls_dir`, laid out as deploy/ lays it out:
    /// livebucket makes each stream's directory, and nginx's worker (which
    /// runs as www-data when nginx starts as root) writes there through its
    /// group, which `hls_dir` passes on (setgid).
    pub fn start(dir: &TestDir, hooks_url: &str, hls_dir: &Path) -> Nginx {
        Self::start_with(dir, hooks_url, hls_dir, &[])
    }

    /// Like [`Nginx::start`], with more template values, e.g.
    /// `[("HLS_FRAGMENT", "1s")]`.
    pub fn start_with(
        dir: &TestDir,
        hooks_url: &str,
        hls_dir: &Path,
        values: &[(&str, &str)],
    ) -> Nginx {
        // Every nginx gets its own rtmp_stat port (the template's default
        // 8090 would be shared by tests running at once).
        Self::start_on(
            dir,
            hooks_url,
            hls_dir,
            (super::free_port(), super::free_port()),
            values,
        )
    }

    /// Like [`Nginx::start_with`] on given (RTMP, rtmp_stat) ports: a node
    /// restarted behind a load balancer keeps its address.
    pub fn start_on(
        dir: &TestDir,
        hooks_url: &str,
        hls_dir: &Path,
        (rtmp_port, stat_port): (u16, u16),
        values: &[(&str, &str)],
    ) -> Nginx {
        let prefix = dir.subdir("nginx");
        std::fs::create_dir_all(hls_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", hls_dir.display()));
        // Not root: the worker runs as this user, livebucket's.
        if unsafe { libc::geteuid() } == 0 {
            run(
                "chgrp www-data",
                Command::new("chgrp").arg("www-data").arg(hls_dir),
            );
        }
        super::chmod(hls_dir, 0o2770);

        let mut render = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/render-nginx-conf"
        ));
        render
            .env("PREFIX", &prefix)
            .env("RTMP_LISTEN", format!("127.0.0.1:{rtmp_port}"))
            .env("PUBLIC_APP", PUBLIC_APP)
            .env("HLS_APP", HLS_APP)
            .env("HOOKS_URL", hooks_url.trim_end_matches('/'))
            .env("HOOKS_SECRET", super::livebucket::HOOKS_SECRET)
            // Tests read nginx's info lines ("notify: update failed"); the
            // secrets they log are the harness's own.
            .env("ERROR_LOG_LEVEL", "info")
            .env("HLS_DIR", hls_dir)
            .env("STAT_LISTEN", format!("127.0.0.1:{stat_port}"));
        for (name, value) in values {
            render.env(name, value);
        }
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, run("scripts/render-nginx-conf", &mut render)).unwrap();

        let mut cmd = Command::new("nginx");
        cmd.arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"]);
        // error.log is where nginx writes once running; the process log has
        // what it says before (bad config, port taken).
        let mut proc = Proc::spawn(
            "nginx",
            cmd,
            &prefix.join("nginx.stderr.log"),
            Stop::Term {
                grace: Duration::from_secs(5),
            },
        );

        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", rtmp_port)).is_err() {
            proc.assert_running();
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{rtmp_port} within 10 s; error.log:\n{}",
                super::process::read_lossy(&prefix.join("error.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            rtmp_port,
            stat_port,
            prefix,
            proc,
        }
    }

    pub fn rtmp_port(&self) -> u16 {
        self.rtmp_port
    }

    pub fn stat_port(&self) -> u16 {
        self.stat_port
    }

    /// SIGKILL to the master and its workers at once: the machine died.
    pub fn kill9(&mut self) {
        let children = self.proc.pid().map(super::process::children_of);
        self.proc.kill();
        for pid in children.into_iter().flatten() {
            super::process::send_signal(pid, "KILL");
        }
    }

    /// Where streamers push: `rtmp://127.0.0.1:PORT/live`.
    pub fn push_base(&self) -> String {
        format!("rtmp://127.0.0.1:{}/{PUBLIC_APP}", self.rtmp_port)
    }

    /// livebucket's `nginx.relay_url`: `rtmp://127.0.0.1:PORT/hls`.
    pub fn relay_url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/{HLS_APP}", self.rtmp_port)
    }

    /// nginx-rtmp's `rtmp_stat` page (livebucket's `nginx.stat_url`):
    /// `http://127.0.0.1:PORT/stat`.
    pub fn stat_url(&self) -> String {
        format!("http://127.0.0.1:{}/stat", self.stat_port)
    }

    pub fn error_log(&self) -> String {
        super::process::read_lossy(&self.prefix.join("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- nginx error.log -----\n{}\n----- end of nginx error.log -----",
                super::process::tail(&self.error_log())
            );
        }
    }
}
