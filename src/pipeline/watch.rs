//! inotify → pipeline events.
//!
//! nginx-rtmp writes a fragment in place and closes it (IN_CLOSE_WRITE), then
//! writes `index.m3u8.bak` and renames it over `index.m3u8` (IN_MOVED_TO). Those
//! two are the only events that matter in a session directory, so they are
//! the only ones asked for there (never opens or writes, which come at every
//! write of nginx's); in the HLS directory itself, new session directories
//! (create, moved-to). Session directories sit one level under the HLS
//! directory, so that is the whole tree watched. inotify misses what happens
//! in a new directory before its watch is added, and drops events when its
//! queue overflows, so both turn into rescans.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FsEvent {
    /// A `.ts` fragment was closed after writing.
    FragmentClosed(PathBuf),
    /// A playlist was renamed into place.
    PlaylistWritten(PathBuf),
    /// A directory appeared; files in it may predate its watch.
    DirCreated(PathBuf),
    /// Events were lost; everything must be looked at again.
    Rescan,
}

/// What the HLS directory itself is watched for: new session directories.
const ROOT_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);
/// What a session directory is watched for.
const SESSION_MASK: WatchMask = WatchMask::CLOSE_WRITE.union(WatchMask::MOVED_TO);

/// The pipeline's event for inotify's `mask` on `name` in `dir`; `root`:
/// `dir` is the HLS directory itself.
pub(crate) fn classify(
    dir: &Path,
    root: bool,
    mask: EventMask,
    name: Option<&OsStr>,
) -> Option<FsEvent> {
    if mask.contains(EventMask::Q_OVERFLOW) {
        return Some(FsEvent::Rescan);
    }
    let path = dir.join(name?);
    if root {
        return (mask.contains(EventMask::ISDIR)
            && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO))
        .then_some(FsEvent::DirCreated(path));
    }
    if mask.contains(EventMask::ISDIR) {
        return None;
    }
    let ext = path.extension().and_then(OsStr::to_str);
    if mask.contains(EventMask::CLOSE_WRITE) && ext == Some("ts") {
        Some(FsEvent::FragmentClosed(path))
    } else if mask.contains(EventMask::MOVED_TO) && ext == Some("m3u8") {
        Some(FsEvent::PlaylistWritten(path))
    } else {
        None
    }
}

/// Watching stops when this is dropped.
pub(crate) struct Watcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `dir` and its session directories; events go to `tx`
/// until the returned watcher is dropped. Must run inside a tokio runtime.
pub(crate) fn watch<T: From<FsEvent> + Send + 'static>(
    dir: &Path,
    tx: UnboundedSender<T>,
) -> std::io::Result<Watcher> {
    let inotify = Inotify::init()?;
    let mut watches = inotify.watches();
    let mut dirs: HashMap<WatchDescriptor, PathBuf> = HashMap::new();
    let root = watches.add(dir, ROOT_MASK)?;
    dirs.insert(root.clone(), dir.to_owned());
    // Directories already there (a restart): their files are rescanned by
    // the pipeline at start.
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            add_session_watch(&mut watches, &mut dirs, entry.path());
        }
    }
    let mut events = inotify.into_event_stream(vec![0u8; 64 * 1024])?;
    let task = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "inotify read error; rescanning");
                    let _ = tx.send(T::from(FsEvent::Rescan));
                    continue;
                }
            };
            if event.mask.contains(EventMask::IGNORED) {
                dirs.remove(&event.wd);
                continue;
            }
            let Some(in_dir) = dirs.get(&event.wd).cloned() else {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    tracing::warn!("inotify queue overflowed; rescanning");
                    let _ = tx.send(T::from(FsEvent::Rescan));
                }
                continue;
            };
            let fs_event = classify(&in_dir, event.wd == root, event.mask, event.name.as_deref());
            if let Some(FsEvent::DirCreated(path)) = &fs_event {
                add_session_watch(&mut watches, &mut dirs, path.clone());
            }
            if let Some(e) = fs_event {
                // The receiver is gone only during shutdown.
                let _ = tx.send(T::from(e));
            }
        }
    });
    Ok(Watcher { task })
}

fn add_session_watch(
    watches: &mut Watches,
    dirs: &mut HashMap<WatchDescriptor, PathBuf>,
    path: PathBuf,
) {
    match watches.add(&path, SESSION_MASK) {
        Ok(wd) => {
            dirs.insert(wd, path);
        }
        // Gone already, or the watch limit: the rescans catch up.
        Err(e) => tracing::warn!(dir = %path.display(), error = %e, "cannot watch directory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_nginx_operations() {
        let s = Path::new("/h/s");
        let name = |n: &'static str| Some(OsStr::new(n));
        assert_eq!(
            classify(s, false, EventMask::CLOSE_WRITE, name("1.ts")),
            Some(FsEvent::FragmentClosed("/h/s/1.ts".into()))
        );
        assert_eq!(
            classify(s, false, EventMask::CLOSE_WRITE, name("index.m3u8.bak")),
            None
        );
        assert_eq!(
            classify(s, false, EventMask::MOVED_TO, name("index.m3u8")),
            Some(FsEvent::PlaylistWritten("/h/s/index.m3u8".into()))
        );
        assert_eq!(
            classify(
                Path::new("/h"),
                true,
                EventMask::CREATE | EventMask::ISDIR,
                name("s")
            ),
            Some(FsEvent::DirCreated("/h/s".into()))
        );
        assert_eq!(
            classify(Path::new("/h"), true, EventMask::CREATE, name("stray")),
            None
        );
        assert_eq!(
            classify(s, false, EventMask::Q_OVERFLOW, None),
            Some(FsEvent::Rescan)
        );
    }

    #[tokio::test]
    async fn sees_close_and_rename_in_new_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<FsEvent>();
        let _w = watch(dir.path(), tx).unwrap();
        let sub = dir.path().join("s");
        std::fs::create_dir(&sub).unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, FsEvent::DirCreated(sub.clone()));
        // Give the watch on the new directory a moment to be added; anything
        // missed here is what DirCreated's rescan exists for.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        std::fs::write(sub.join("1.ts"), b"x").unwrap();
        std::fs::write(sub.join("index.m3u8.bak"), b"#EXTM3U").unwrap();
        std::fs::rename(sub.join("index.m3u8.bak"), sub.join("index.m3u8")).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            got.push(e);
        }
        assert_eq!(
            got,
            vec![
                FsEvent::FragmentClosed(sub.join("1.ts")),
                FsEvent::PlaylistWritten(sub.join("index.m3u8"))
            ]
        );
    }
}
