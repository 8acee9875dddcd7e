//! inotify → pipeline events.
//!
//! nginx-rtmp writes a fragment in place and closes it (IN_CLOSE_WRITE), then
//! writes `index.m3u8.bak` and renames it over `index.m3u8` (IN_MOVED_TO). Those
//! two are the only events that matter. inotify misses what happens in a new
//! directory before its watch is added, and drops events when its queue
//! overflows (`Flag::Rescan`), so both turn into rescans.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsEvent {
    /// A `.ts` fragment was closed after writing.
    FragmentClosed(PathBuf),
    /// A playlist was renamed into place.
    PlaylistWritten(PathBuf),
    /// A directory appeared; files in it may predate its watch.
    DirCreated(PathBuf),
    /// Events were lost; everything must be looked at again.
    Rescan,
}

/// Maps one notify event to what the pipeline needs; `None` for the rest.
pub fn classify(event: &notify::Event) -> Vec<FsEvent> {
    if event.need_rescan() {
        return vec![FsEvent::Rescan];
    }
    let is_ts = |p: &Path| p.extension().is_some_and(|e| e == "ts");
    let is_m3u8 = |p: &Path| p.extension().is_some_and(|e| e == "m3u8");
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => event
            .paths
            .iter()
            .filter(|p| is_ts(p))
            .map(|p| FsEvent::FragmentClosed(p.clone()))
            .collect(),
        // A rename reports the new name as To, or both names as Both.
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event
            .paths
            .iter()
            .filter(|p| is_m3u8(p))
            .map(|p| FsEvent::PlaylistWritten(p.clone()))
            .collect(),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event
            .paths
            .last()
            .filter(|p| is_m3u8(p))
            .map(|p| vec![FsEvent::PlaylistWritten(p.clone())])
            .unwrap_or_default(),
        EventKind::Create(CreateKind::Folder) => event
            .paths
            .iter()
            .map(|p| FsEvent::DirCreated(p.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Starts watching `dir` recursively; events go to `tx` until the returned
/// watcher is dropped.
pub fn watch<T: From<FsEvent> + Send + 'static>(
    dir: &Path,
    tx: UnboundedSender<T>,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let events = match res {
            Ok(event) => classify(&event),
            Err(e) => {
                tracing::warn!(error = %e, "inotify error; rescanning");
                vec![FsEvent::Rescan]
            }
        };
        for e in events {
            // The receiver is gone only during shutdown.
            let _ = tx.send(T::from(e));
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::Flag;

    #[test]
    fn classifies_nginx_operations() {
        let close = notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)))
            .add_path("/h/s/1.ts".into());
        assert_eq!(
            classify(&close),
            vec![FsEvent::FragmentClosed("/h/s/1.ts".into())]
        );
        let bak_close = notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)))
            .add_path("/h/s/index.m3u8.bak".into());
        assert!(classify(&bak_close).is_empty());
        let rename = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/h/s/index.m3u8.bak".into())
            .add_path("/h/s/index.m3u8".into());
        assert_eq!(
            classify(&rename),
            vec![FsEvent::PlaylistWritten("/h/s/index.m3u8".into())]
        );
        let overflow = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(classify(&overflow), vec![FsEvent::Rescan]);
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
