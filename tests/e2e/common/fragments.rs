//! What nginx wrote, recorded independently of livebucket: a second inotify
//! watcher on the HLS directory copies every `*.ts` the moment it is closed
//! after writing, and notes which names nginx's playlists listed. livebucket
//! renames a closed fragment out of the directory at once, so the recorder
//! opens each fragment while nginx is still writing it and reads the closed
//! version through that descriptor (a rename keeps the inode).
//!
//! Copies are keyed by session, name and SHA-256, so a name nginx truncates
//! and rewrites is two copies. They go to a directory of the test (kept when
//! the test fails), so a mismatch can be inspected by hand. A synthetic
//! writer (`fake_nginx`) feeds the same [`Ledger`] directly instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One version of one fragment as nginx closed it.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The session directory (the session id).
    pub session: String,
    /// nginx's file name, e.g. `1732571234567.ts`.
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// The copy in the test's directory.
    pub path: PathBuf,
    /// An nginx playlist listed this version of the name.
    pub listed: bool,
}

#[derive(Default)]
struct Inner {
    copies: Vec<Copy>,
    /// (session, name) → index of its latest copy.
    latest: HashMap<(String, String), usize>,
    /// What the recorder could not do (a fragment gone before it was read…).
    errors: Vec<String>,
}

/// Every fragment version written into the HLS directory, in close order.
#[derive(Clone)]
pub struct Ledger {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

impl Ledger {
    /// Copies go under `dir/<session>/`.
    pub fn new(dir: PathBuf) -> Ledger {
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Ledger {
            dir,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `bytes` as the current version of `session/name` (a repeat of
    /// the current version is ignored).
    pub fn add(&self, session: &str, name: &str, bytes: &[u8]) {
        let sha = sha256_hex(bytes);
        let id = (session.to_owned(), name.to_owned());
        let mut inner = self.lock();
        if let Some(&i) = inner.latest.get(&id)
            && inner.copies[i].sha256 == sha
        {
            return;
        }
        let dir = self.dir.join(session);
        let path = dir.join(format!("{name}.{}", &sha[..12]));
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes)) {
            inner
                .errors
                .push(format!("cannot keep a copy at {}: {e}", path.display()));
        }
        inner.copies.push(Copy {
            session: session.to_owned(),
            name: name.to_owned(),
            sha256: sha,
            size: bytes.len() as u64,
            path,
            listed: false,
        });
        let i = inner.copies.len() - 1;
        inner.latest.insert(id, i);
    }

    /// nginx's playlist of `session` lists `names`: their current versions
    /// are listed ones.
    pub fn listed<S: AsRef<str>>(&self, session: &str, names: &[S]) {
        let mut inner = self.lock();
        for name in names {
            let id = (session.to_owned(), name.as_ref().to_owned());
            match inner.latest.get(&id).copied() {
                Some(i) => inner.copies[i].listed = true,
                None => inner.errors.push(format!(
                    "nginx listed {session}/{} before it was closed",
                    name.as_ref()
                )),
            }
        }
    }

    fn error(&self, message: String) {
        self.lock().errors.push(message);
    }

    /// Every version recorded so far, in close order.
    pub fn copies(&self) -> Vec<Copy> {
        self.lock().copies.clone()
    }

    /// Panics if the recorder missed anything.
    pub fn assert_complete(&self) {
        let inner = self.lock();
        assert!(
            inner.errors.is_empty(),
            "the test's fragment recorder failed:\n{}",
            inner.errors.join("\n")
        );
    }
}

/// The segment URIs of an nginx playlist (every non-empty, non-`#` line).
pub fn playlist_uris(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The test's own watcher on nginx's HLS directory; stops when dropped.
pub struct Recorder {
    _watcher: RecommendedWatcher,
}

impl Recorder {
    /// Watches `hls_dir` (recursively) and feeds `ledger`: each `*.ts` is
    /// copied at IN_CLOSE_WRITE, each `index.m3u8` read when renamed into
    /// place. Start it before the push, so the session directory is created
    /// (and watched) while it runs.
    pub fn start(hls_dir: &Path, ledger: &Ledger) -> Recorder {
        let ledger = ledger.clone();
        let root = hls_dir.to_owned();
        // Fragments being written, opened at their first event.
        let mut open: HashMap<PathBuf, std::fs::File> = HashMap::new();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let event = match res {
                Ok(event) => event,
                Err(e) => return ledger.error(format!("inotify error: {e}")),
            };
            if event.need_rescan() {
                return ledger.error("inotify queue overflowed; events were lost".into());
            }
            if matches!(
                event.kind,
                EventKind::Create(CreateKind::File | CreateKind::Any)
                    | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
            ) {
                for path in &event.paths {
                    if path.extension().is_some_and(|e| e == "ts")
                        && !open.contains_key(path)
                        && let Ok(f) = std::fs::File::open(path)
                    {
                        open.insert(path.clone(), f);
                    }
                }
                return;
            }
            if let EventKind::Access(AccessKind::Close(AccessMode::Write)) = event.kind {
                for path in &event.paths {
                    if path.extension().is_some_and(|e| e == "ts") {
                        let file = open.remove(path);
                        record_fragment(&root, path, file, &ledger);
                    }
                }
                return;
            }
            let paths: Vec<&PathBuf> = match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    event.paths.iter().collect()
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.iter().collect(),
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                    event.paths.last().into_iter().collect()
                }
                _ => return,
            };
            for path in paths {
                record(&root, path, &ledger);
            }
        })
        .expect("cannot create the test's inotify watcher");
        watcher
            .watch(hls_dir, RecursiveMode::Recursive)
            .unwrap_or_else(|e| panic!("cannot watch {}: {e}", hls_dir.display()));
        Recorder { _watcher: watcher }
    }
}

/// `session` and file name of a path directly in a session directory.
fn session_file<'a>(root: &Path, path: &'a Path) -> Option<(&'a str, &'a str)> {
    let rel = path.strip_prefix(root).ok()?;
    let (session, name) = (rel.parent()?.to_str()?, rel.file_name()?.to_str()?);
    (!session.is_empty() && !session.contains('/')).then_some((session, name))
}

/// A fragment closed after writing: read it through the descriptor opened
/// while it was written (it may have been renamed away since), else by path.
fn record_fragment(root: &Path, path: &Path, file: Option<std::fs::File>, ledger: &Ledger) {
    use std::io::{Read, Seek};
    let Some((session, name)) = session_file(root, path) else {
        return;
    };
    let read = match file {
        Some(mut f) => {
            let mut bytes = Vec::new();
            f.rewind()
                .and_then(|()| f.read_to_end(&mut bytes))
                .map(|_| bytes)
        }
        None => std::fs::read(path),
    };
    match read {
        Ok(bytes) => ledger.add(session, name, &bytes),
        Err(e) => ledger.error(format!(
            "cannot read closed fragment {}: {e}",
            path.display()
        )),
    }
}

fn record(root: &Path, path: &Path, ledger: &Ledger) {
    let Some((session, name)) = session_file(root, path) else {
        return;
    };
    if name == "index.m3u8" {
        // A later rename may already have replaced it: that version lists
        // what this one did, minus what slid out.
        if let Ok(text) = std::fs::read_to_string(path) {
            ledger.listed(session, &playlist_uris(&text));
        }
    }
}
