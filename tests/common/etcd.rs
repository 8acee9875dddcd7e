//! A real etcd cluster (Debian's `etcd-server`), three members on free
//! loopback ports, each a process stopped by PID when the guard drops.

use std::process::Command;
use std::time::{Duration, Instant};

use super::TestDir;
use super::livebucket::http_get;
use super::process::{Proc, Stop};

pub struct Etcd {
    /// `http://127.0.0.1:PORT` of each member.
    pub endpoints: Vec<String>,
    members: Vec<Proc>,
}

impl Etcd {
    /// Starts `n` members forming one cluster and waits until each answers
    /// `/health` as healthy (which needs a leader).
    pub fn start(dir: &TestDir, n: usize) -> Etcd {
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| (super::free_port(), super::free_port()))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let token = format!("lb-{}", super::garage::random_hex(6));
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = dir.subdir(format!("etcd/e{i}"));
            let mut cmd = Command::new("etcd");
            cmd.args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    &token,
                    // Small and quick: a test cluster on a busy machine.
                    "--heartbeat-interval",
                    "100",
                    "--election-timeout",
                    "1000",
                    "--log-level",
                    "warn",
                ]);
            members.push(Proc::spawn(
                &format!("etcd e{i}"),
                cmd,
                &dir.join(format!("etcd-e{i}.log")),
                Stop::Term {
                    grace: Duration::from_secs(5),
                },
            ));
            endpoints.push(format!("http://127.0.0.1:{client}"));
        }
        let etcd = Etcd { endpoints, members };
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, (client, _)) in ports.iter().enumerate() {
            loop {
                etcd.members[i].pid();
                let addr = ([127, 0, 0, 1], *client).into();
                match http_get(addr, "/health") {
                    Ok((200, body)) if body.contains("true") => break,
                    other if Instant::now() >= deadline => {
                        panic!("etcd member e{i} is not healthy after 30 s: {other:?}")
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        etcd
    }

    /// SIGSTOP to every member: etcd stops answering at once, connections
    /// stay open (what a frozen VM or a partition looks like to a client).
    pub fn freeze(&self) {
        for m in &self.members {
            m.signal("STOP");
        }
    }

    /// SIGCONT to every member after [`Etcd::freeze`]: leases whose TTL ran
    /// out meanwhile are revoked by the leader.
    pub fn thaw(&self) {
        for m in &self.members {
            m.signal("CONT");
        }
    }

    /// `["http://…", …]` for a TOML config.
    pub fn endpoints_toml(&self) -> String {
        let quoted: Vec<String> = self.endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }
}
