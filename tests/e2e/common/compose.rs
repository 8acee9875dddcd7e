//! The compose stack of `deploy/docker/compose.yaml`, run by a test through
//! Debian's docker-compose (1.29) on the local Docker daemon.
//!
//! [`docker_ready`] starts the daemon and makes the base image
//! (`scripts/docker-base-image`), [`build_images`] builds the stack's images
//! from the binaries the tests already have (`scripts/docker-images`), and a
//! [`Compose`] project, named uniquely per test run, is brought down with its
//! volumes (`down -v`) when dropped, after printing every service's log if
//! the test is failing. Every docker-compose call gets the project's own
//! environment file and nothing of the caller's environment but what reaches
//! the daemon, so a developer's `.env` or exported variables cannot leak in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::TestDir;
use super::garage::{garage_bin, random_hex};
use super::process::run;

pub const COMPOSE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/docker/compose.yaml");
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");

/// Set by `scripts/test` (to the reason) when Docker cannot run on the
/// machine at all; the Docker tests then return at once. Nothing else skips
/// them: without it, a Docker that cannot run fails them.
pub const SKIP_VAR: &str = "LIVEBUCKET_E2E_DOCKER_SKIP";

/// Environment variables passed to docker and docker-compose: what locates
/// and authenticates the daemon, nothing that compose.yaml reads.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
];

/// Ensures the Docker daemon runs and `debian:bookworm-slim` exists. `Err`
/// holds the reason when `scripts/test` decided Docker cannot run here.
pub fn docker_ready() -> Result<(), String> {
    if let Ok(reason) = std::env::var(SKIP_VAR) {
        return Err(reason);
    }
    let out = Command::new(format!("{SCRIPTS}/docker-base-image"))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run scripts/docker-base-image");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(()),
        Some(3) => panic!(
            "{stderr}\nDocker cannot run here. scripts/test skips the Docker tests on such \
             machines (it sets {SKIP_VAR}); to skip them in a direct cargo test, set \
             {SKIP_VAR}=<reason>"
        ),
        _ => panic!(
            "scripts/docker-base-image failed ({}):\n{stderr}",
            out.status
        ),
    }
}

/// The stack's images, by id, as `scripts/docker-images` built them.
#[derive(Debug, Clone)]
pub struct Images {
    pub livebucket: String,
    pub nginx_rtmp: String,
    pub garage: String,
}

/// Builds the images from `livebucket_bin` and the Garage binary the
/// harness uses, tagged `:e2e`. They are referred to by id: a concurrent run
/// moving the tag cannot change what this one runs. Built once per test
/// process: the tests of one binary share them instead of racing two builds.
pub fn build_images(livebucket_bin: &Path) -> Images {
    static BUILT: std::sync::Mutex<Option<(std::path::PathBuf, Images)>> =
        std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((bin, images)) = built.as_ref()
        && bin == livebucket_bin
    {
        return images.clone();
    }
    let images = build_images_now(livebucket_bin);
    *built = Some((livebucket_bin.to_owned(), images.clone()));
    images
}

fn build_images_now(livebucket_bin: &Path) -> Images {
    let out = run(
        "scripts/docker-images",
        Command::new(format!("{SCRIPTS}/docker-images"))
            .arg("--livebucket-bin")
            .arg(livebucket_bin)
            .arg("--garage-bin")
            .arg(garage_bin())
            .args(["--tag", "e2e"]),
    );
    let image = |var: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{var}=")))
            .unwrap_or_else(|| panic!("scripts/docker-images printed no {var}=: {out:?}"))
            .to_owned()
    };
    Images {
        livebucket: image("LIVEBUCKET_IMAGE"),
        nginx_rtmp: image("NGINX_RTMP_IMAGE"),
        garage: image("GARAGE_IMAGE"),
    }
}

/// A `docker` command with only [`PASSED_ENV`] from the caller.
pub fn docker() -> Command {
    clean_command("docker")
}

fn clean_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd
}

/// One compose project, brought down (`down -v`) when dropped.
pub struct Compose {
    project: String,
    env_file: PathBuf,
    profiles: Vec<String>,
    /// `up` was attempted and `down` has not succeeded since.
    up: bool,
}

impl Compose {
    /// A project named `lbe2e<name><random>`, configured by `env` (written to
    /// `DIR/compose.env`, compose.yaml's variables), with `profiles` active.
    pub fn new(dir: &TestDir, name: &str, env: &[(&str, String)], profiles: &[&str]) -> Compose {
        let env_file = dir.join("compose.env");
        let mut text = String::new();
        for (key, value) in env {
            assert!(
                !value.contains('\n'),
                "compose variable {key} holds a newline"
            );
            text += &format!("{key}={value}\n");
        }
        std::fs::write(&env_file, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", env_file.display()));
        Compose {
            project: format!("lbe2e{name}{}", random_hex(4)),
            env_file,
            profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
            up: false,
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// `docker-compose -f compose.yaml -p PROJECT --env-file FILE
    /// [--profile P]…`, to which the caller adds a command.
    pub fn command(&self) -> Command {
        let mut cmd = clean_command("docker-compose");
        cmd.arg("-f")
            .arg(COMPOSE_FILE)
            .args(["-p", &self.project, "--env-file"])
            .arg(&self.env_file)
            .args(["--ansi", "never"]);
        for profile in &self.profiles {
            cmd.args(["--profile", profile]);
        }
        cmd
    }

    /// Runs `docker-compose … ARGS`; panics with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        run(
            &format!("docker-compose {}", args.join(" ")),
            self.command().args(args),
        )
    }

    /// `up -d --no-build`: the images exist already. Returns when compose
    /// has started every service, after the ones others depend on are
    /// healthy.
    pub fn up(&mut self) {
        // Even a failed `up` may have created something: Drop cleans up.
        self.up = true;
        self.run(&["up", "-d", "--no-build"]);
    }

    /// The id of `service`'s container (running or not), found by compose's
    /// labels: docker answers in milliseconds, docker-compose 1.29 takes
    /// half a second to start.
    pub fn container(&self, service: &str) -> String {
        let out = run(
            "docker ps",
            docker().args([
                "ps",
                "-a",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ]),
        );
        let ids: Vec<&str> = out.split_whitespace().collect();
        match ids[..] {
            [id] => id.to_owned(),
            _ => panic!("{service} has not one container but {ids:?}"),
        }
    }

    /// `docker inspect -f FORMAT` of `service`'s container.
    pub fn inspect(&self, service: &str, format: &str) -> String {
        let id = self.container(service);
        run(
            &format!("docker inspect {service}"),
            docker().args(["inspect", "-f", format, &id]),
        )
        .trim()
        .to_owned()
    }

    /// Waits until every service in `services` is running and passes its
    /// image's health check. The check is run here with `docker exec` as
    /// soon as the container runs, rather than waiting for Docker's probes
    /// (every 5 s); a service Docker already reports healthy counts too.
    /// Panics, naming the states seen, after `timeout`.
    pub fn wait_healthy(&self, services: &[&str], timeout: Duration) {
        let start = Instant::now();
        let mut pending: Vec<&str> = services.to_vec();
        loop {
            let mut states = Vec::new();
            pending.retain(|service| {
                let state = self.inspect(service, "{{.State.Status}}/{{.State.Health.Status}}");
                let healthy = state == "running/healthy"
                    || (state.starts_with("running/") && self.passes_health_check(service));
                states.push(format!("{service}: {state}"));
                !healthy
            });
            if pending.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "services not healthy after {timeout:?}: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs the health check of `service`'s image in its container once.
    fn passes_health_check(&self, service: &str) -> bool {
        let test = self.inspect(service, "{{json .Config.Healthcheck.Test}}");
        let test: Vec<String> = serde_json::from_str(&test).unwrap_or_default();
        let args: Vec<&str> = match test.first().map(String::as_str) {
            Some("CMD") => test[1..].iter().map(String::as_str).collect(),
            Some("CMD-SHELL") => ["sh", "-c"]
                .into_iter()
                .chain(test[1..].iter().map(String::as_str))
                .collect(),
            _ => panic!("{service} has no health check to run: {test:?}"),
        };
        docker()
            .arg("exec")
            .arg(self.container(service))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits for a one-shot `service` to exit and returns its exit code.
    pub fn wait_exited(&self, service: &str, timeout: Duration) -> i64 {
        let start = Instant::now();
        loop {
            let state = self.inspect(service, "{{.State.Status}} {{.State.ExitCode}}");
            if let Some(code) = state.strip_prefix("exited ") {
                return code
                    .parse()
                    .unwrap_or_else(|_| panic!("{service}: exit code {code:?}"));
            }
            assert!(
                start.elapsed() < timeout,
                "{service} still {state:?} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Everything `service`'s container wrote (stdout, then stderr), across
    /// restarts.
    pub fn logs(&self, service: &str) -> String {
        let id = self.container(service);
        let out = docker()
            .args(["logs", &id])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker logs: {e}"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `docker exec` of `ARGS…` in `service`'s container (as
    /// `docker-compose exec -T` runs it, without docker-compose's start-up
    /// time, so a test may poll with it): stdout.
    pub fn exec(&self, service: &str, args: &[&str]) -> String {
        let id = self.container(service);
        run(
            &format!("docker exec {service} {}", args.join(" ")),
            docker().arg("exec").arg(&id).args(args),
        )
    }

    /// The ports `service` publishes on the host, from `docker port`:
    /// (container port as `8080/tcp`, host `IP:PORT`).
    pub fn published_ports(&self, service: &str) -> Vec<(String, String)> {
        let id = self.container(service);
        run("docker port", docker().args(["port", &id]))
            .lines()
            .filter_map(|l| l.split_once(" -> "))
            .map(|(port, host)| (port.trim().to_owned(), host.trim().to_owned()))
            .collect()
    }

    /// The host directory where the daemon mounted the project's volume
    /// `name` (only while a container uses it).
    pub fn volume_mountpoint(&self, name: &str) -> PathBuf {
        let volume = format!("{}_{name}", self.project);
        run(
            "docker volume inspect",
            docker().args(["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]),
        )
        .trim()
        .into()
    }

    /// `down -v`: containers, network and volumes go.
    pub fn down(&mut self) {
        self.run(&["down", "-v", "--timeout", "30"]);
        self.up = false;
    }

    /// Containers, networks and volumes of this project that still exist.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let name = format!("name={}_", self.project);
        let mut found = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-a", "-q", "--filter", &label]),
            ("container", vec!["ps", "-a", "-q", "--filter", &name]),
            ("network", vec!["network", "ls", "-q", "--filter", &label]),
            ("network", vec!["network", "ls", "-q", "--filter", &name]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &label]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &name]),
        ] {
            let out = run(&format!("docker {}", args.join(" ")), docker().args(&args));
            found.extend(out.split_whitespace().map(|id| format!("{kind} {id}")));
        }
        found.sort();
        found.dedup();
        found
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        if std::thread::panicking()
            && let Ok(out) = self
                .command()
                .args(["logs", "--no-color", "--timestamps"])
                .stdin(Stdio::null())
                .output()
        {
            eprintln!(
                "----- docker-compose logs of {} -----\n{}{}\n----- end of the logs -----",
                self.project,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let status = self
            .command()
            .args(["down", "-v", "--timeout", "10"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!(
                "harness: docker-compose down -v of {} failed ({status:?}); remove it by hand",
                self.project
            );
        }
    }
}
