//! A real etcd cluster (Debian's `etcd-server`), three members on free
//! loopback ports, each a process stopped by PID when the guard drops; or
//! one member with its own TLS (a CA, server and client certificates made
//! with `openssl`) and users ([`Etcd::start_tls`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::TestDir;
use super::livebucket::http_get;
use super::process::{Proc, Stop, run};

/// A test CA and the certificates it signed (ECDSA P-256, valid one day).
pub struct Certs {
    pub ca: PathBuf,
    /// etcd's server certificate: IP SAN 127.0.0.1.
    pub server: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate for etcd's `--client-cert-auth` (CN `root`,
    /// so `etcdctl` with it acts as root once auth is on).
    pub client: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        let p = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            run(
                "openssl",
                Command::new("openssl").args(args).current_dir(dir),
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=livebucket test CA",
        ];
        ca.extend_from_slice(&key);
        ca.extend_from_slice(&["-keyout", "ca-key.pem", "-out", "ca.pem"]);
        ca.extend_from_slice(&["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend_from_slice(&["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&ca);
        let issue = |name: &str, cn: &str, ext: &str| {
            std::fs::write(p(&format!("{name}.ext")), ext).unwrap();
            let mut req = vec!["req", "-subj"];
            let subj = format!("/CN={cn}");
            req.push(&subj);
            req.extend_from_slice(&key);
            let (k, csr) = (format!("{name}-key.pem"), format!("{name}.csr"));
            req.extend_from_slice(&["-keyout", &k, "-out", &csr]);
            openssl(&req);
            let (pem, extfile) = (format!("{name}.pem"), format!("{name}.ext"));
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &pem,
                "-extfile",
                &extfile,
            ]);
        };
        issue(
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        issue("client", "root", "extendedKeyUsage=clientAuth\n");
        Certs {
            ca: p("ca.pem"),
            server: p("server.pem"),
            server_key: p("server-key.pem"),
            client: p("client.pem"),
            client_key: p("client-key.pem"),
        }
    }
}

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

    /// One member serving clients over TLS only (`https://`), requiring a
    /// client certificate signed by `certs.ca`, with auth enabled: user
    /// `user`:`password` may read and write under `/livebucket/`.
    pub fn start_tls(dir: &TestDir, certs: &Certs, user: &str, password: &str) -> Etcd {
        let (client, peer) = (super::free_port(), super::free_port());
        let url = format!("https://127.0.0.1:{client}");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "e0"])
            .arg("--data-dir")
            .arg(dir.subdir("etcd-tls/e0"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("e0=http://127.0.0.1:{peer}"),
                "--client-cert-auth",
                "--log-level",
                "warn",
            ])
            .arg("--cert-file")
            .arg(&certs.server)
            .arg("--key-file")
            .arg(&certs.server_key)
            .arg("--trusted-ca-file")
            .arg(&certs.ca);
        let member = Proc::spawn(
            "etcd e0 (TLS)",
            cmd,
            &dir.join("etcd-tls-e0.log"),
            Stop::Term {
                grace: Duration::from_secs(5),
            },
        );
        let etcd = Etcd {
            endpoints: vec![url],
            members: vec![member],
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while etcd.ctl(certs, &["endpoint", "health"]).is_err() {
            etcd.members[0].pid();
            assert!(
                Instant::now() < deadline,
                "etcd (TLS) is not healthy after 30 s:\n{}",
                etcd.members[0].log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let user_pw = format!("{user}:{password}");
        for args in [
            &["user", "add", "root:root-pw", "--interactive=false"][..],
            &["role", "add", "livebucket"],
            &[
                "role",
                "grant-permission",
                "livebucket",
                "--prefix=true",
                "readwrite",
                "/livebucket/",
            ],
            &["user", "add", &user_pw, "--interactive=false"],
            &["user", "grant-role", user, "livebucket"],
            &["auth", "enable"],
        ] {
            if let Err(e) = etcd.ctl(certs, args) {
                panic!("etcdctl {args:?}: {e}");
            }
        }
        etcd
    }

    /// `etcdctl` with the client certificate (CN root) against the first
    /// member: its stdout, or stdout and stderr on failure.
    pub fn ctl(&self, certs: &Certs, args: &[&str]) -> Result<String, String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.endpoints[0])
            .arg("--cacert")
            .arg(&certs.ca)
            .arg("--cert")
            .arg(&certs.client)
            .arg("--key")
            .arg(&certs.client_key)
            .args(["--dial-timeout", "2s"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        }
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
