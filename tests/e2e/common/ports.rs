//! Ports for the processes a test starts, reserved so that no two users on
//! this machine are handed the same one.
//!
//! Asking the kernel for port 0 and closing the socket leaves a window in
//! which the port is free for anyone, and the kernel hands the same range
//! (`ip_local_port_range`, 32768–60999 by default) to every outgoing
//! connection: a busy suite saw Garage fail to bind its RPC port. So ports
//! come from 20000–32767 instead, which no outgoing connection uses, and
//! each is claimed with an advisory lock on a file named after it, held until
//! this test process exits: tests running in parallel threads or processes,
//! and a Garage restarted on its old ports, never collide. The lock dies with
//! the process, so a crashed run leaves nothing that blocks the next one.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

/// Below Linux's default ephemeral range, above the well-known services'.
const RANGE: std::ops::RangeInclusive<u16> = 20000..=32767;

/// The lock files of every port this process reserved: closing one would
/// release its port, so they stay open until exit.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A TCP port on 127.0.0.1 that nobody listens on and that no other test
/// (in this process or another) will be given.
pub fn reserve() -> u16 {
    let dir = lock_dir();
    for _ in 0..1000 {
        let port = rand::random_range(RANGE);
        let Some(lock) = claim(&dir, port) else {
            continue;
        };
        // Something outside the suite (a demo, a bench) may listen there.
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
            return port;
        }
    }
    panic!("no free port in {RANGE:?} after 1000 tries");
}

/// The port's lock file, locked, or `None` if another holder has it.
fn claim(dir: &std::path::Path, port: u16) -> Option<File> {
    let path = dir.join(port.to_string());
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    // A lock is per open file: a second open in this process conflicts too.
    file.try_lock().ok().map(|()| file)
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("livebucket-test-ports");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}
