//! A small tmpfs of a test's own (the tests run as root), to fill up on
//! purpose. Mounted on a fresh temporary directory outside the test's
//! [`super::TestDir`], unmounted and removed when dropped: declare it before
//! the processes that write to it, so they stop first.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::run;

pub struct Tmpfs {
    path: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// `mount -t tmpfs -o size=SIZE,mode=0755 tmpfs DIR`; `size` as mount
    /// takes it, e.g. `40m`.
    pub fn mount(name: &str, size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix(&format!("livebucket-{name}-tmpfs-"))
            .tempdir()
            .expect("cannot create a mount point");
        let path = dir.path().to_owned();
        run(
            "mount tmpfs (the end-to-end tests run as root)",
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(&path),
        );
        Tmpfs {
            path,
            dir: Some(dir),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success())
            // Busy (a process the test could not stop?): detach it anyway.
            || Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success());
        if !unmounted {
            eprintln!(
                "harness: cannot unmount the tmpfs at {}",
                self.path.display()
            );
            // Leave the directory: removing it would empty the mounted tmpfs
            // but fail on the mount point itself.
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}
