//! The session registry ([`Sessions`]): which sessions are known and which
//! are live, persisted as described in the [module doc](super).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::meta::{
    Publisher, SessionError, SessionMeta, is_publisher, looks_like_id, new_session_id,
};
use super::relay::{RelayRefusal, admit_relay};

#[derive(Default)]
struct Inner {
    known: HashMap<String, SessionMeta>,
    /// (bucket, channel) → live session id.
    live: HashMap<(String, String), String>,
    /// Ids whose state directory and empty `meta.json` already exist.
    spares: Vec<String>,
    /// Spare ids handed out by [`Sessions::new_id`] and not yet settled.
    taken: HashSet<String>,
    /// Sessions whose relay into the internal HLS application was admitted
    /// (or may have been: every session recovered at start).
    relayed: HashSet<String>,
    /// Why the last copy into the state directory failed, until one works:
    /// new sessions are refused meanwhile, since their journals could not
    /// be written either.
    disk_error: Option<String>,
    /// Sessions whose copy failed, retried by [`Sessions::retry_unsettled`].
    unsettled: HashSet<String>,
}

/// Spare session directories kept made: more publishes than this within
/// one refill take the slower path, which makes the directory then.
const SPARES: usize = 8;

pub struct Sessions {
    dir: PathBuf,
    /// `<id>.json` records of sessions not yet settled, on the capture
    /// file system.
    pending: PathBuf,
    inner: Mutex<Inner>,
}

/// In a session's state directory: its publisher has gone.
const ENDED: &str = "ended";

impl Sessions {
    /// Opens the session store under `state_dir/sessions` (records not yet
    /// settled there under `pending_dir`) and returns the sessions a
    /// previous run left unfinished; they are known again, and live unless
    /// their publisher had gone (`end_live` marks that on disk). Pending
    /// records are settled here.
    pub fn open(
        state_dir: &Path,
        pending_dir: &Path,
    ) -> Result<(Sessions, Vec<SessionMeta>), SessionError> {
        let dir = state_dir.join("sessions");
        for d in [&dir, pending_dir] {
            std::fs::create_dir_all(d).map_err(|source| SessionError::Io {
                path: d.to_path_buf(),
                source,
            })?;
        }
        let mut pending = read_pending(pending_dir);
        let mut inner = Inner::default();
        // (record, ended, settled in the state directory)
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| SessionError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path().join("meta.json");
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_str().unwrap_or_default();
            if text.is_empty() && looks_like_id(name) && !pending.contains_key(name) {
                // A spare made ahead: nothing streamed into it. (A spare
                // `begin` took has its record pending; a copy cut short
                // leaves a torn file, ignored below, and a pending record.)
                inner.spares.push(name.to_owned());
                continue;
            }
            match serde_json::from_slice::<SessionMeta>(&text) {
                Ok(meta) if looks_like_id(&meta.id) => {
                    pending.remove(&meta.id);
                    let ended = entry.path().join(ENDED).exists();
                    found.push((meta, ended, true));
                }
                Ok(_) | Err(_) if pending.contains_key(name) => {}
                Ok(_) | Err(_) => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable session state");
                }
            }
        }
        // Approved sessions whose copy in the state directory was not made.
        for (id, meta) in pending {
            let ended = dir.join(&id).join(ENDED).exists();
            found.push((meta, ended, false));
        }
        // Oldest first, so that of two unended sessions of a channel the
        // newer is its live one.
        found.sort_by_key(|(m, _, _)| m.started_ms);
        for (meta, ended, _) in &found {
            if !ended {
                inner
                    .live
                    .insert((meta.bucket.clone(), meta.channel.clone()), meta.id.clone());
            }
            inner.known.insert(meta.id.clone(), meta.clone());
            // Approved before the restart, so nginx may have its relay:
            // none other is admitted.
            inner.relayed.insert(meta.id.clone());
        }
        let sessions = Sessions {
            dir,
            pending: pending_dir.to_owned(),
            inner: Mutex::new(inner),
        };
        for (meta, _, settled) in &found {
            if !settled {
                sessions.settle(meta)?;
            }
        }
        sessions.refill_spares();
        Ok((sessions, found.into_iter().map(|(m, _, _)| m).collect()))
    }

    /// An id for a new session. Its state directory is usually made already
    /// (a spare), so that [`Sessions::settle`] only writes one file:
    /// creating a directory and a file takes about 1 ms on a loaded ext4.
    /// Call [`Sessions::refill_spares`] off the request path afterwards.
    pub fn new_id(&self) -> String {
        let mut inner = self.lock();
        match inner.spares.pop() {
            Some(id) => {
                inner.taken.insert(id.clone());
                id
            }
            None => new_session_id(),
        }
    }

    /// An id from [`Sessions::new_id`] that will not be begun: its spare
    /// directory, if it had one, serves the next session.
    pub fn give_back(&self, id: &str) {
        let mut inner = self.lock();
        if inner.taken.remove(id) {
            inner.spares.push(id.to_owned());
        }
    }

    /// Makes spare session directories until there are [`SPARES`]; a
    /// failure is logged and left to the next refill (`begin` does not need
    /// spares).
    pub fn refill_spares(&self) {
        while self.lock().spares.len() < SPARES {
            let id = new_session_id();
            let dir = self.session_dir(&id);
            let made = std::fs::create_dir(&dir)
                .and_then(|()| std::fs::File::create(dir.join("meta.json")).map(drop));
            if let Err(e) = made {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot make a spare session directory");
                return;
            }
            self.lock().spares.push(id);
        }
    }

    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new live session and records it on the capture file
    /// system, unless its channel is live or the state directory failed.
    pub fn begin(&self, meta: SessionMeta) -> Result<SessionMeta, SessionError> {
        let channel = (meta.bucket.clone(), meta.channel.clone());
        {
            let mut inner = self.lock();
            let refusal = if inner.live.contains_key(&channel) {
                Some(SessionError::ChannelLive {
                    bucket: meta.bucket.clone(),
                    channel: meta.channel.clone(),
                })
            } else {
                inner.disk_error.clone().map(|why| SessionError::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other(why),
                })
            };
            if let Some(refusal) = refusal {
                drop(inner);
                self.give_back(&meta.id);
                return Err(refusal);
            }
            // Claim the channel before the write so a concurrent second
            // publisher is refused.
            inner.live.insert(channel.clone(), meta.id.clone());
        }
        let path = self.pending_path(&meta.id);
        let written = serde_json::to_vec(&meta)
            .map_err(std::io::Error::other)
            .and_then(|body| write_atomically(&path, &body));
        if let Err(source) = written {
            self.lock().live.remove(&channel);
            self.give_back(&meta.id);
            return Err(SessionError::Io { path, source });
        }
        self.lock().known.insert(meta.id.clone(), meta.clone());
        Ok(meta)
    }

    fn pending_path(&self, id: &str) -> PathBuf {
        self.pending.join(format!("{id}.json"))
    }

    /// Copies a begun session's record into its state directory and drops
    /// the pending one. The pipeline calls it when it opens the session,
    /// before its journal. A failure is kept and refuses new sessions until
    /// a copy works again (this session's, retried by
    /// [`Sessions::retry_unsettled`], or another's); the pending record
    /// stays for the next start.
    pub fn settle(&self, meta: &SessionMeta) -> Result<(), SessionError> {
        let written = self.write_record(meta);
        let mut inner = self.lock();
        match written {
            Ok(()) => {
                inner.disk_error = None;
                inner.unsettled.remove(&meta.id);
                drop(inner);
                let _ = std::fs::remove_file(self.pending_path(&meta.id));
                Ok(())
            }
            Err(e) => {
                inner.disk_error = Some(e.to_string());
                inner.unsettled.insert(meta.id.clone());
                Err(e)
            }
        }
    }

    /// Copies again the records whose copy failed, so that new sessions are
    /// accepted again once the state directory works; a no-op while none
    /// failed. The pipeline calls it on its tick.
    pub fn retry_unsettled(&self) {
        let metas: Vec<SessionMeta> = {
            let mut inner = self.lock();
            if inner.disk_error.is_none() {
                return;
            }
            let known = &inner.known;
            let metas: Vec<SessionMeta> = inner
                .unsettled
                .iter()
                .filter_map(|id| known.get(id).cloned())
                .collect();
            if metas.is_empty() {
                // The sessions that failed are gone: the next one's copy
                // says whether the directory works.
                inner.disk_error = None;
                inner.unsettled.clear();
            }
            metas
        };
        for meta in metas {
            if self.settle(&meta).is_err() {
                return;
            }
        }
    }

    fn write_record(&self, meta: &SessionMeta) -> Result<(), SessionError> {
        let dir = self.session_dir(&meta.id);
        let io = |source| SessionError::Io {
            path: dir.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(meta).map_err(|e| io(std::io::Error::other(e)))?;
        if self.lock().taken.remove(&meta.id) {
            // A spare: its empty meta.json is there. A crash mid-write
            // leaves a torn file, read as unreadable state at the next
            // start; the pending record, removed only after this, stands in.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(dir.join("meta.json"))
                .map_err(io)?;
            return f.write_all(&body).map_err(io);
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        write_atomically(&dir.join("meta.json"), &body).map_err(io)
    }

    pub fn get(&self, id: &str) -> Option<SessionMeta> {
        self.lock().known.get(id).cloned()
    }

    /// The live session of this publisher ([`is_publisher`]), as a callback
    /// of a running push names it.
    pub fn find_live(&self, who: &Publisher<'_>) -> Option<SessionMeta> {
        let inner = self.lock();
        inner
            .live
            .values()
            .filter_map(|id| inner.known.get(id))
            .find(|m| is_publisher(m, who))
            .cloned()
    }

    /// A known session of this publisher, live or not (an idle-ended session
    /// still gets its `on_publish_done`); a live one first.
    pub fn find_known(&self, who: &Publisher<'_>) -> Option<SessionMeta> {
        self.find_live(who).or_else(|| {
            self.lock()
                .known
                .values()
                .find(|m| is_publisher(m, who))
                .cloned()
        })
    }

    /// Admits nginx's relay of session `id` into the internal HLS
    /// application: once per session, while it is live. Anything else
    /// publishing there is refused.
    pub fn admit_relay(&self, id: &str) -> Result<(), RelayRefusal> {
        if !looks_like_id(id) {
            return Err(RelayRefusal::NotASession);
        }
        let mut inner = self.lock();
        let known = inner.known.contains_key(id);
        let live = inner.live.values().any(|v| v == id);
        admit_relay(known, live, inner.relayed.contains(id))?;
        inner.relayed.insert(id.to_owned());
        Ok(())
    }

    /// The live playlist names of the sessions livebucket knows for this
    /// channel (live or still being stored).
    pub fn playlists_of(&self, bucket: &str, channel: &str) -> Vec<String> {
        self.lock()
            .known
            .values()
            .filter(|m| m.bucket == bucket && m.channel == channel)
            .map(|m| m.playlist.clone())
            .collect()
    }

    /// Every session livebucket still has work for on this channel (live,
    /// or being stored, or recovered after a restart).
    pub fn known_of(&self, bucket: &str, channel: &str) -> Vec<SessionMeta> {
        self.lock()
            .known
            .values()
            .filter(|m| m.bucket == bucket && m.channel == channel)
            .cloned()
            .collect()
    }

    /// [`Sessions::known_of`] with the sessions of the channel's renditions
    /// (whose variant's source is `channel`): all the work a channel's claim
    /// in a cluster covers.
    pub fn known_with_variants(&self, bucket: &str, channel: &str) -> Vec<SessionMeta> {
        self.lock()
            .known
            .values()
            .filter(|m| {
                m.bucket == bucket
                    && (m.channel == channel
                        || m.variant.as_ref().is_some_and(|v| v.channel == channel))
            })
            .cloned()
            .collect()
    }

    /// The live session of a channel, if any.
    pub fn live_of(&self, bucket: &str, channel: &str) -> Option<SessionMeta> {
        let inner = self.lock();
        inner
            .live
            .get(&(bucket.to_owned(), channel.to_owned()))
            .and_then(|id| inner.known.get(id))
            .cloned()
    }

    pub fn is_live(&self, id: &str) -> bool {
        self.lock().live.values().any(|v| v == id)
    }

    pub fn live_count(&self) -> usize {
        self.lock().live.len()
    }

    /// The publisher went away: the channel is free for a new push at once,
    /// while the pipeline may still be storing this session's last
    /// fragments. Nothing is written: `on_publish_done` calls this on the
    /// hooks thread, and the pipeline marks the end on disk
    /// ([`Sessions::end_live`]) when it handles it, which is also after it
    /// settled the session (a crash in between recovers the session live,
    /// and its idle end frees the channel).
    pub fn release_live(&self, id: &str) {
        self.lock().live.retain(|_, v| v != id);
    }

    /// [`Sessions::release_live`], and marked on disk so that a restart
    /// recovers the session as ended.
    pub fn end_live(&self, id: &str) {
        self.release_live(id);
        // A restart before the session is finished recovers it as ended.
        // Its directory is not made yet if it was no spare and the pipeline
        // has not settled it.
        let dir = self.session_dir(id);
        let marker = dir.join(ENDED);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::File::create(&marker))
        {
            tracing::warn!(path = %marker.display(), error = %e, "cannot mark the session ended");
        }
    }

    /// Everything of the session is stored: forget it.
    pub fn finish(&self, id: &str) {
        {
            let mut inner = self.lock();
            inner.live.retain(|_, v| v != id);
            inner.known.remove(id);
            inner.relayed.remove(id);
        }
        self.lock().unsettled.remove(id);
        let _ = std::fs::remove_file(self.pending_path(id));
        let dir = self.session_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove finished session state");
        }
    }
}

/// The pending records in `dir` by id. A leftover temp file or a record
/// that does not parse was being written when livebucket stopped, before
/// `on_publish` answered: removed.
fn read_pending(dir: &Path) -> HashMap<String, SessionMeta> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let meta = std::fs::read(&path)
            .ok()
            .and_then(|text| serde_json::from_slice::<SessionMeta>(&text).ok())
            .filter(|m| looks_like_id(&m.id) && path == dir.join(format!("{}.json", m.id)));
        match meta {
            Some(m) => {
                out.insert(m.id.clone(), m);
            }
            None => {
                tracing::warn!(path = %path.display(), "removing an unfinished session record");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

/// Writes a state file so that a crash of livebucket leaves either the old
/// or the new version: temp file, then rename. Not fsync'd, like the
/// journals: the page cache survives a crash of livebucket, and a power cut
/// loses the tmpfs fragments a session describes anyway. (Two fsyncs here
/// were most of `on_publish`'s time: 5-8 ms of every answer.)
pub fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::meta::{log_tag, recording_id};

    fn meta(id: &str, channel: &str) -> SessionMeta {
        SessionMeta {
            id: id.into(),
            bucket: "b1".into(),
            channel: channel.into(),
            playlist: "index.m3u8".into(),
            key_id: "k".into(),
            clientid: "7".into(),
            name: channel.into(),
            addr: "127.0.0.1".into(),
            started_ms: 1,
            shape: None,
            low_latency: None,
            snapshot: None,
            resume: None,
            grant: "g1".into(),
            notify_topic: None,
            variant: None,
            renditions: Vec::new(),
        }
    }

    fn who<'a>(m: &'a SessionMeta) -> Publisher<'a> {
        Publisher {
            clientid: &m.clientid,
            name: &m.name,
            bucket: &m.bucket,
            key_id: &m.key_id,
            grant: &m.grant,
        }
    }

    #[test]
    fn a_publisher_is_its_client_name_and_grant() {
        let m = meta(&new_session_id(), "cam");
        assert!(is_publisher(&m, &who(&m)));
        // nginx restarted its client ids: same client id and name, another
        // URL (another bucket's channel, or a forged call with another
        // genuine URL).
        assert!(!is_publisher(
            &m,
            &Publisher {
                grant: "g2",
                ..who(&m)
            }
        ));
        assert!(!is_publisher(
            &m,
            &Publisher {
                clientid: "8",
                ..who(&m)
            }
        ));
        assert!(!is_publisher(
            &m,
            &Publisher {
                name: "cam2",
                ..who(&m)
            }
        ));
        // Recorded before grants were kept: bucket and key decide.
        let old = SessionMeta {
            grant: String::new(),
            ..m.clone()
        };
        assert!(is_publisher(
            &old,
            &Publisher {
                grant: "g2",
                ..who(&m)
            }
        ));
        assert!(!is_publisher(
            &old,
            &Publisher {
                bucket: "b2",
                ..who(&m)
            }
        ));
        assert!(!is_publisher(
            &old,
            &Publisher {
                key_id: "k2",
                ..who(&m)
            }
        ));
        // A record saved without the field reads as such a session.
        let mut json = serde_json::to_value(&m).unwrap();
        json.as_object_mut().unwrap().remove("grant");
        let read: SessionMeta = serde_json::from_value(json).unwrap();
        assert_eq!(read.grant, "");
    }

    #[test]
    fn publish_done_finds_the_session_of_its_own_publisher() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        let a = meta(&new_session_id(), "cam");
        // Another bucket's same-named channel, same client id after an
        // nginx reload, another URL.
        let b = SessionMeta {
            id: new_session_id(),
            bucket: "b2".into(),
            grant: "g2".into(),
            ..a.clone()
        };
        s.begin(a.clone()).unwrap();
        s.begin(b.clone()).unwrap();
        assert_eq!(s.find_live(&who(&b)).unwrap().id, b.id);
        assert_eq!(s.find_live(&who(&a)).unwrap().id, a.id);
        s.release_live(&a.id);
        assert!(s.find_live(&who(&a)).is_none());
        assert_eq!(s.find_known(&who(&a)).unwrap().id, a.id);
        let stranger = Publisher {
            grant: "g3",
            ..who(&a)
        };
        assert!(s.find_known(&stranger).is_none());
    }

    #[test]
    fn relay_decision() {
        assert_eq!(admit_relay(true, true, false), Ok(()));
        assert_eq!(
            admit_relay(true, true, true),
            Err(RelayRefusal::AlreadyRelayed)
        );
        assert_eq!(admit_relay(true, false, false), Err(RelayRefusal::Ended));
        assert_eq!(admit_relay(false, false, false), Err(RelayRefusal::Unknown));
    }

    #[test]
    fn one_relay_per_live_session_and_none_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        let a = meta(&new_session_id(), "cam");
        assert_eq!(s.admit_relay(&a.id), Err(RelayRefusal::Unknown));
        assert_eq!(s.admit_relay("../x"), Err(RelayRefusal::NotASession));
        s.begin(a.clone()).unwrap();
        assert_eq!(s.admit_relay(&a.id), Ok(()));
        assert_eq!(s.admit_relay(&a.id), Err(RelayRefusal::AlreadyRelayed));
        let b = meta(&new_session_id(), "cam2");
        s.begin(b.clone()).unwrap();
        s.release_live(&b.id);
        assert_eq!(s.admit_relay(&b.id), Err(RelayRefusal::Ended));
        // Recovered sessions may have their relay: none other is admitted.
        let c = meta(&new_session_id(), "cam3");
        s.begin(c.clone()).unwrap();
        let (s2, _) = open(dir.path());
        assert_eq!(s2.admit_relay(&c.id), Err(RelayRefusal::AlreadyRelayed));
    }

    #[test]
    fn recording_ids_and_log_tags_do_not_show_the_session() {
        let id = new_session_id();
        let rec = recording_id(&id);
        assert!(looks_like_id(&rec));
        assert_ne!(rec, id);
        assert_eq!(rec, recording_id(&id), "stable across restarts");
        assert_ne!(rec, recording_id(&new_session_id()));
        assert_eq!(log_tag(&id), rec[..8]);
    }

    fn spare_dirs(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("sessions"))
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read(e.path().join("meta.json")).is_ok_and(|t| t.is_empty()))
            .count()
    }

    /// As the pipeline does it.
    fn begin_settled(s: &Sessions, m: SessionMeta) {
        s.begin(m.clone()).unwrap();
        s.settle(&m).unwrap();
    }

    #[test]
    fn new_sessions_take_spare_directories_that_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        assert_eq!(spare_dirs(dir.path()), SPARES);

        let a = s.new_id();
        assert!(looks_like_id(&a));
        assert!(
            s.session_dir(&a).join("meta.json").exists(),
            "a spare was made ahead"
        );
        begin_settled(&s, meta(&a, "cam"));
        // A refused begin gives its spare back, and so does a publish
        // refused before it (a cluster claim).
        let b = s.new_id();
        assert!(s.begin(meta(&b, "cam")).is_err());
        assert_eq!(s.new_id(), b);
        s.give_back(&b);
        assert_eq!(s.new_id(), b);
        begin_settled(&s, meta(&b, "cam2"));
        s.refill_spares();
        assert_eq!(spare_dirs(dir.path()), SPARES);

        // Past the spares, ids are new and settling makes the directory.
        let many: Vec<String> = (0..SPARES + 2).map(|_| s.new_id()).collect();
        for (i, id) in many.iter().enumerate() {
            begin_settled(&s, meta(id, &format!("c{i}")));
        }

        // Spares are not sessions; the begun ones all come back.
        let (s2, found) = open(dir.path());
        assert_eq!(found.len(), 2 + many.len());
        assert!(found.iter().any(|m| m.id == a));
        assert!(s2.is_live(&a));
        assert_eq!(spare_dirs(dir.path()), SPARES);
    }

    #[test]
    fn one_live_publisher_per_channel_and_reload_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (s, found) = open(dir.path());
        assert!(found.is_empty());
        let a = new_session_id();
        assert!(looks_like_id(&a));
        s.begin(meta(&a, "cam")).unwrap();
        let err = s.begin(meta(&new_session_id(), "cam")).unwrap_err();
        assert!(matches!(err, SessionError::ChannelLive { .. }));
        assert_eq!(s.find_live(&who(&meta(&a, "cam"))).unwrap().id, a);

        let (s2, found) = open(dir.path());
        assert_eq!(found, vec![meta(&a, "cam")]);
        assert!(s2.is_live(&a));

        s2.end_live(&a);
        // Recovered again, it is known but no longer live.
        let (s3, found) = open(dir.path());
        assert_eq!(found, vec![meta(&a, "cam")]);
        assert!(!s3.is_live(&a));
        assert!(s3.get(&a).is_some());
        s2.begin(meta(&new_session_id(), "cam")).unwrap();
        s2.finish(&a);
        assert!(s2.get(&a).is_none());
        assert!(!s2.session_dir(&a).exists());
    }

    fn open(dir: &Path) -> (Sessions, Vec<SessionMeta>) {
        Sessions::open(dir, &dir.join("pending")).unwrap()
    }

    fn pending(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("pending")).unwrap().count()
    }

    #[test]
    fn a_session_is_recorded_in_memory_first_and_settled_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        let spare = s.new_id();
        let fresh = new_session_id();
        for (id, channel) in [(&spare, "a"), (&fresh, "b")] {
            s.begin(meta(id, channel)).unwrap();
            let on_disk = std::fs::read(s.session_dir(id).join("meta.json")).unwrap_or_default();
            assert!(on_disk.is_empty(), "begin writes no state directory");
        }
        assert_eq!(pending(dir.path()), 2);

        // Stopped before the pipeline settled them: both come back, live,
        // and are settled by the start.
        let (s2, found) = open(dir.path());
        assert_eq!(found.len(), 2);
        assert!(s2.is_live(&spare) && s2.is_live(&fresh));
        assert_eq!(pending(dir.path()), 0);
        for id in [&spare, &fresh] {
            let text = std::fs::read(s2.session_dir(id).join("meta.json")).unwrap();
            assert_eq!(
                serde_json::from_slice::<SessionMeta>(&text).unwrap().id,
                **id
            );
        }
        // The spare a session took is no spare after the restart.
        assert!((0..SPARES).all(|_| s2.new_id() != spare));

        // Settled in the running process: the pending record goes.
        let (s3, _) = open(dir.path());
        let c = s3.new_id();
        s3.begin(meta(&c, "c")).unwrap();
        s3.settle(&meta(&c, "c")).unwrap();
        assert_eq!(pending(dir.path()), 0);
        let (_, found) = open(dir.path());
        assert_eq!(found.len(), 3);
    }

    #[test]
    fn a_session_ended_before_it_was_settled_comes_back_ended() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        let id = new_session_id();
        s.begin(meta(&id, "cam")).unwrap();
        s.end_live(&id);
        let (s2, found) = open(dir.path());
        assert_eq!(found, vec![meta(&id, "cam")]);
        assert!(!s2.is_live(&id));
        assert!(s2.get(&id).is_some());
    }

    #[test]
    fn a_state_directory_that_fails_refuses_new_sessions_until_it_works() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        let id = s.new_id();
        s.begin(meta(&id, "cam")).unwrap();
        // The spare directory is gone and a file stands in its place.
        let sd = s.session_dir(&id);
        std::fs::remove_dir_all(&sd).unwrap();
        std::fs::write(&sd, b"").unwrap();
        assert!(s.settle(&meta(&id, "cam")).is_err());
        assert_eq!(pending(dir.path()), 1, "the pending record stays");
        let next = new_session_id();
        let err = s.begin(meta(&next, "other")).unwrap_err();
        assert!(matches!(err, SessionError::Io { .. }), "{err}");
        assert!(s.live_of("b1", "other").is_none());

        s.retry_unsettled();
        assert!(s.begin(meta(&next, "other")).is_err(), "still failing");
        // The directory works again: the pipeline's tick retries the copy.
        std::fs::remove_file(&sd).unwrap();
        s.retry_unsettled();
        assert_eq!(pending(dir.path()), 0);
        assert!(!std::fs::read(sd.join("meta.json")).unwrap().is_empty());
        s.begin(meta(&next, "other")).unwrap();
    }

    #[test]
    fn unfinished_pending_records_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, _) = open(dir.path());
        let id = new_session_id();
        std::fs::write(dir.path().join("pending").join(format!("{id}.tmp")), b"{").unwrap();
        std::fs::write(
            dir.path().join("pending").join(format!("{id}.json")),
            b"{\"id\"",
        )
        .unwrap();
        let (_, found) = open(dir.path());
        assert!(found.is_empty());
        assert_eq!(pending(dir.path()), 0);
    }

    #[test]
    fn ids_are_strict() {
        assert!(!looks_like_id("../etc"));
        assert!(!looks_like_id("ABCDEF0123456789ABCDEF0123456789"));
        assert!(!looks_like_id("abc"));
    }
}
