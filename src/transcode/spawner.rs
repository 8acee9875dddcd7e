//! The one thread every transcoder is forked from.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process: forked from a thread of tokio's blocking pool (which
//! exits when idle) a transcoder would be killed mid-push. This thread
//! lives as long as its [`Spawner`] (the process's transcoders), so the
//! signal comes exactly when livebucket dies or drops them all.

use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

type Request = (Command, oneshot::Sender<std::io::Result<Child>>);

pub(super) struct Spawner {
    tx: std::sync::Mutex<mpsc::Sender<Request>>,
}

impl Spawner {
    /// Starts the thread, in `runtime`'s context (a child's exit is reaped
    /// by that runtime).
    pub(super) fn start(runtime: tokio::runtime::Handle) -> std::io::Result<Spawner> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("transcoder-spawner".into())
            .spawn(move || {
                let _in_runtime = runtime.enter();
                // Ends when the Spawner is dropped.
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Spawner {
            tx: std::sync::Mutex::new(tx),
        })
    }

    /// Spawns `cmd` from the spawner's thread.
    pub(super) async fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((cmd, reply));
        if sent.is_err() {
            return Err(std::io::Error::other("the transcoder spawner has stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the transcoder spawner has stopped")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child with `PR_SET_PDEATHSIG` that a short-lived thread asked for
    /// survives that thread (forked from there, it would be killed when the
    /// thread ends).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_child_outlives_the_thread_that_asked_for_it() {
        let spawner =
            std::sync::Arc::new(Spawner::start(tokio::runtime::Handle::current()).unwrap());
        let (s, runtime) = (spawner.clone(), tokio::runtime::Handle::current());
        let asker = std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("0.5");
            // SAFETY: prctl only sets this child's parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            runtime.block_on(s.spawn(cmd))
        });
        let mut child = asker.join().unwrap().unwrap();
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
    }
}
