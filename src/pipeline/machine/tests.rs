//! The state machine driven without a file system or S3: a few scenarios,
//! then a model of nginx, the disk and the bucket under random interleavings
//! (closes, missed events, playlist updates, uploads finishing in any order
//! or not at all, tmpfs pressure, restarts at any point), checking the
//! pipeline's invariants after every step.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::hls::NginxEntry;
use crate::pipeline::capture::Identity;

const BASE_WALL: u64 = 1_700_000_000_000;

fn cfg(chunk: usize) -> CoreConfig {
    CoreConfig {
        live: LiveShape {
            window_segments: 3,
            target_duration_secs: 2,
        },
        done_grace_ms: 1_000,
        idle_end_factor: 30,
        manifest_every_ms: 5_000,
        manifest_chunk: chunk,
        save_every_ms: 5_000,
    }
}

fn meta(id: &str, started_ms: u64) -> SessionMeta {
    SessionMeta {
        id: id.into(),
        bucket: "b".into(),
        channel: "cam".into(),
        playlist: "index.m3u8".into(),
        key_id: "k".into(),
        clientid: "1".into(),
        name: "cam".into(),
        addr: "127.0.0.1".into(),
        started_ms,
        shape: None,
        low_latency: None,
        snapshot: None,
        resume: None,
        grant: String::new(),
        notify_topic: None,
        variant: None,
        renditions: Vec::new(),
    }
}

fn chid() -> ChannelId {
    ChannelId {
        bucket: "b".into(),
        channel: "cam".into(),
        playlist: "index.m3u8".into(),
    }
}

/// The URIs and media sequence of a rendered live playlist.
fn parse_live(body: &str) -> (u64, Vec<String>, bool) {
    let seq = body
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let uris = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    (seq, uris, body.contains("#EXT-X-ENDLIST"))
}

fn key_of_uri(uri: &str) -> Option<u64> {
    uri.strip_suffix(".ts")?.parse().ok()
}

/// One publish as nginx-rtmp writes it.
#[derive(Debug, Clone)]
struct NginxDir {
    next_ms: u64,
    /// Every fragment written, in order: (name, content).
    written: Vec<(String, u64)>,
    /// Files still in the directory.
    files: BTreeMap<String, u64>,
    /// How many of `written` the playlist lists (a window of the last five).
    listed: usize,
    publishing: bool,
}

impl NginxDir {
    fn entries(&self) -> Vec<NginxEntry> {
        let from = self.listed.saturating_sub(5);
        (from..self.listed)
            .map(|i| NginxEntry {
                seq: i as u64,
                uri: self.written[i].0.clone(),
                extinf: "2.000".into(),
                duration_ms: 2_000,
                discontinuity: false,
            })
            .collect()
    }
}

fn ident(content: u64) -> Identity {
    Identity {
        size: content,
        mtime_ns: content,
    }
}

/// nginx, the disk, the bucket and the uploader around a [`Core`].
struct World {
    core: Core,
    cfg: CoreConfig,
    now: Ms,
    pressure: bool,
    next_content: u64,
    next_session: u32,
    // What survives a restart.
    nginx: BTreeMap<String, NginxDir>,
    journals: HashMap<String, Vec<Entry>>,
    capture_files: HashMap<(String, u64), (Location, u64)>,
    saved: Option<ChannelLive>,
    /// The capture area and the spool refuse new files.
    capture_full: bool,
    spool_full: bool,
    /// The session registry: meta and whether nginx's publisher is live.
    registry: BTreeMap<String, (SessionMeta, bool)>,
    /// Fragment objects: key → content.
    bucket: BTreeMap<u64, u64>,
    last_media_seq: u64,
    final_playlist: Option<String>,
    // Lost at a restart.
    pending: Vec<Job>,
    playlist_slot: Option<Job>,
    violations: Vec<String>,
    /// Every effect the core returned, in order.
    log: Vec<Effect>,
}

impl World {
    fn new(chunk: usize) -> World {
        World {
            core: Core::new(cfg(chunk)),
            cfg: cfg(chunk),
            now: 0,
            pressure: false,
            next_content: 1,
            next_session: 0,
            nginx: BTreeMap::new(),
            journals: HashMap::new(),
            capture_files: HashMap::new(),
            saved: None,
            capture_full: false,
            spool_full: false,
            registry: BTreeMap::new(),
            bucket: BTreeMap::new(),
            last_media_seq: 0,
            final_playlist: None,
            pending: Vec::new(),
            playlist_slot: None,
            violations: Vec::new(),
            log: Vec::new(),
        }
    }

    fn fail(&mut self, msg: String) {
        self.violations.push(msg);
    }

    fn feed(&mut self, input: Input) {
        for e in self.core.handle(input) {
            self.log.push(e.clone());
            self.execute(e);
        }
    }

    fn execute(&mut self, e: Effect) {
        match e {
            Effect::Journal { session, entry } => {
                self.journals.entry(session).or_default().push(entry)
            }
            Effect::Capture {
                session,
                name,
                key,
                ident: closed,
                spool,
            } => {
                // The actor's own order of steps, on this disk: nginx's
                // file shares the capture area's file system.
                let outcome = disk::capture_with(spool, |step| {
                    let content = self
                        .nginx
                        .get(&session)
                        .and_then(|d| d.files.get(&name))
                        .copied();
                    let Some(c) = content.filter(|&c| ident(c) == closed) else {
                        return disk::StepResult::Changed;
                    };
                    let at = match step {
                        disk::CaptureStep::Move => Location::Capture,
                        disk::CaptureStep::Copy(at) => at,
                    };
                    let full = match at {
                        Location::Capture => self.capture_full,
                        _ => self.spool_full,
                    };
                    if full {
                        return disk::StepResult::Failed;
                    }
                    if step == disk::CaptureStep::Move
                        && let Some(d) = self.nginx.get_mut(&session)
                    {
                        d.files.remove(&name);
                    }
                    self.capture_files.insert((session.clone(), key), (at, c));
                    disk::StepResult::Done
                });
                self.feed(Input::Captured {
                    session,
                    key,
                    outcome,
                    media_ms: None,
                    keyframe_start: None,
                });
            }
            Effect::Probe {
                session,
                names,
                entries,
            } => {
                for name in names {
                    self.closed(&session, &name);
                }
                let now = self.now;
                self.feed(Input::Playlist {
                    session,
                    entries,
                    probed: true,
                    now,
                });
            }
            Effect::Upload(job @ Job::Playlist { .. }) => self.playlist_slot = Some(job),
            Effect::Upload(job) => self.pending.push(job),
            Effect::RemoveNginxCopy {
                session,
                name,
                ident: id,
            } => {
                let Some(content) = self
                    .nginx
                    .get(&session)
                    .and_then(|d| d.files.get(&name))
                    .copied()
                else {
                    return;
                };
                if ident(content) != id {
                    return;
                }
                let safe = self.bucket.values().any(|&c| c == content)
                    || self.capture_files.values().any(|&(_, c)| c == content);
                if !safe {
                    self.fail(format!(
                        "nginx's {name} removed before its bytes were stored or captured"
                    ));
                }
                if let Some(d) = self.nginx.get_mut(&session) {
                    d.files.remove(&name);
                }
            }
            Effect::RemoveCapture { session, key, .. } => {
                if !self.bucket.contains_key(&key) {
                    self.fail(format!("capture {key} removed before it was stored"));
                }
                self.capture_files.remove(&(session, key));
            }
            Effect::MoveToSpool { session, key } => {
                let ok = match self.capture_files.get_mut(&(session.clone(), key)) {
                    Some(f) if !self.spool_full => {
                        f.0 = Location::Spool;
                        true
                    }
                    _ => false,
                };
                self.feed(Input::Moved { session, key, ok });
            }
            Effect::Snapshot { .. } | Effect::CacheLive { .. } => {}
            // When to save is the core's (`save.rs`): between saves the
            // disk keeps an older window.
            Effect::SaveChannel(c) => self.saved = self.core.channel(&c).cloned(),
            Effect::CompactJournal { session } => {
                if let Some(j) = self.core.journal_of(&session) {
                    self.journals.insert(session, j);
                }
            }
            Effect::FinalLook { session, done } => {
                self.rescan(&session);
                let now = self.now;
                self.feed(Input::EndCheck { session, done, now });
            }
            Effect::EndLive { session, .. } => {
                if let Some(r) = self.registry.get_mut(&session) {
                    r.1 = false;
                }
            }
            Effect::Finish { session, .. } => {
                self.journals.remove(&session);
                self.capture_files.retain(|(s, _), _| s != &session);
                self.nginx.remove(&session);
                self.registry.remove(&session);
            }
            Effect::Count(name) => {
                if name == "livebucket_fragments_lost_total" {
                    self.fail("a listed fragment was lost".into());
                }
            }
        }
    }

    fn closed(&mut self, session: &str, name: &str) {
        if !self.core.has_session(session) {
            return;
        }
        let Some(&content) = self.nginx.get(session).and_then(|d| d.files.get(name)) else {
            return;
        };
        let (now, spool) = (self.now, self.pressure);
        self.feed(Input::Closed {
            session: session.into(),
            name: name.into(),
            ident: ident(content),
            spool,
            wall_ms: BASE_WALL + now,
            now,
        });
    }

    fn read_playlist(&mut self, session: &str) {
        let Some(d) = self.nginx.get(session) else {
            return;
        };
        if d.listed == 0 || !self.core.has_session(session) {
            return;
        }
        let entries = d.entries();
        let now = self.now;
        self.feed(Input::Playlist {
            session: session.into(),
            entries,
            probed: false,
            now,
        });
    }

    /// As the actor's `rescan_dir`, with the same rule for what is closed.
    fn rescan(&mut self, session: &str) {
        let Some(d) = self.nginx.get(session) else {
            return;
        };
        let entries = d.entries();
        let live = self.registry.get(session).is_some_and(|r| r.1);
        let files = d.files.keys().cloned().collect::<Vec<_>>();
        for name in disk::closed_fragments(files, &entries, live) {
            self.closed(session, &name);
        }
        self.read_playlist(session);
    }

    fn publishing(&self) -> Option<String> {
        self.nginx
            .iter()
            .find(|(_, d)| d.publishing)
            .map(|(id, _)| id.clone())
    }

    fn open_session(&mut self, m: SessionMeta, recovering: bool) {
        if !self.core.has_channel(&chid()) {
            // As saved on disk: through JSON.
            let saved = self
                .saved
                .as_ref()
                .and_then(|c| serde_json::from_slice(&serde_json::to_vec(c).ok()?).ok())
                .unwrap_or_default();
            self.core.load_channel(chid(), saved);
        }
        let id = m.id.clone();
        let now = self.now;
        if recovering {
            let entries = self.journals.get(&id).cloned().unwrap_or_default();
            let files = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Captured { key, .. } => self
                        .capture_files
                        .get(&(id.clone(), *key))
                        .map(|&(at, _)| (*key, at)),
                    _ => None,
                })
                .collect();
            let live = self.registry.get(&id).is_some_and(|r| r.1);
            self.feed(Input::Recover {
                meta: m,
                entries,
                files,
                media: HashMap::new(),
                live,
                now,
            });
        } else {
            self.journals.insert(id.clone(), Vec::new());
            self.feed(Input::Open { meta: m, now });
            self.rescan(&id);
        }
    }

    fn apply(&mut self, op: &Op) {
        // A publisher whose session is no longer live is dropped by nginx
        // at its next on_update, which livebucket refuses.
        if let Some(id) = self.publishing()
            && !self.registry.get(&id).is_some_and(|r| r.1)
            && !matches!(op, Op::Done)
        {
            self.apply(&Op::Done);
        }
        match *op {
            Op::Start => {
                if self.publishing().is_some() || self.registry.values().any(|r| r.1) {
                    return;
                }
                self.next_session += 1;
                let id = format!("s{}", self.next_session);
                let m = meta(&id, BASE_WALL + self.now);
                self.registry.insert(id.clone(), (m.clone(), true));
                self.nginx.insert(
                    id.clone(),
                    NginxDir {
                        next_ms: BASE_WALL + self.now,
                        written: Vec::new(),
                        files: BTreeMap::new(),
                        listed: 0,
                        publishing: true,
                    },
                );
                self.open_session(m, false);
            }
            Op::Write { missed } => {
                let Some(id) = self.publishing() else {
                    return;
                };
                let content = self.next_content;
                self.next_content += 1;
                let Some(d) = self.nginx.get_mut(&id) else {
                    return;
                };
                let name = format!("{}.ts", d.next_ms);
                d.next_ms += 2_000;
                d.written.push((name.clone(), content));
                d.files.insert(name.clone(), content);
                if !missed {
                    self.closed(&id, &name);
                }
            }
            Op::Playlist => {
                let Some(id) = self.publishing() else {
                    return;
                };
                if let Some(d) = self.nginx.get_mut(&id) {
                    d.listed = d.written.len();
                }
                self.read_playlist(&id);
            }
            Op::Complete(i) => self.complete(i),
            Op::Full { capture, spool } => {
                self.capture_full = capture;
                self.spool_full = spool;
            }
            Op::Tick { dt, pressure } => {
                self.now += dt;
                self.pressure = pressure;
                let now = self.now;
                self.feed(Input::Tick { now, pressure });
            }
            Op::Done => {
                let Some(id) = self.publishing() else {
                    return;
                };
                // nginx closes the last fragment and lists everything.
                if let Some(d) = self.nginx.get_mut(&id) {
                    d.listed = d.written.len();
                    d.publishing = false;
                }
                self.read_playlist(&id);
                let now = self.now;
                self.feed(Input::Done { session: id, now });
            }
            Op::Restart { graceful } => {
                if graceful {
                    self.feed(Input::Stop);
                }
                self.core = Core::new(self.cfg.clone());
                self.pending.clear();
                self.playlist_slot = None;
                let metas: Vec<SessionMeta> = self.registry.values().map(|r| r.0.clone()).collect();
                for m in metas {
                    self.open_session(m, true);
                }
                let ids: Vec<String> = self.nginx.keys().cloned().collect();
                for id in ids {
                    self.rescan(&id);
                }
            }
        }
    }

    fn complete(&mut self, i: usize) {
        let n = self.pending.len() + usize::from(self.playlist_slot.is_some());
        if n == 0 {
            return;
        }
        let i = i % n;
        let job = if i == self.pending.len() {
            match self.playlist_slot.take() {
                Some(j) => j,
                None => return,
            }
        } else {
            self.pending.remove(i)
        };
        match job {
            Job::Fragment {
                session,
                key,
                name,
                at,
                ..
            } => {
                let content = match at {
                    Location::Nginx => self
                        .nginx
                        .get(&session)
                        .and_then(|d| d.files.get(&name))
                        .copied(),
                    _ => self.capture_files.get(&(session.clone(), key)).map(|f| f.1),
                };
                let Some(content) = content else {
                    self.fail(format!(
                        "fragment {key}'s bytes are gone before it was stored"
                    ));
                    return;
                };
                if let Some(&old) = self.bucket.get(&key)
                    && old != content
                {
                    self.fail(format!("key {key} stored with two different fragments"));
                }
                self.bucket.insert(key, content);
                self.feed(Input::Stored(Stored::Fragment { session, key }));
            }
            Job::Playlist {
                channel,
                version,
                body,
                ..
            } => {
                let (seq, uris, ended) = parse_live(&body);
                for u in &uris {
                    if !key_of_uri(u).is_some_and(|k| self.bucket.contains_key(&k)) {
                        self.fail(format!("playlist lists {u}, not stored"));
                    }
                }
                if seq < self.last_media_seq {
                    self.fail(format!(
                        "media sequence went back: {} → {seq}",
                        self.last_media_seq
                    ));
                }
                self.last_media_seq = seq;
                if ended {
                    self.final_playlist = Some(body.clone());
                }
                self.feed(Input::Stored(Stored::Playlist { channel, version }));
            }
            Job::Manifest {
                session,
                body,
                count,
                full,
                ended,
                ..
            } => {
                let m: crate::index::Manifest = match serde_json::from_slice(&body) {
                    Ok(m) => m,
                    Err(e) => {
                        self.fail(format!("manifest unparsable: {e}"));
                        return;
                    }
                };
                if let Some(f) = m.fragments.iter().find(|f| !self.bucket.contains_key(&f.k)) {
                    self.fail(format!("manifest lists {}, not stored", f.k));
                }
                self.feed(Input::Stored(Stored::Manifest {
                    session,
                    count,
                    full,
                    ended,
                }));
            }
        }
    }

    /// The publisher stops, S3 recovers: everything must end stored.
    fn drain(&mut self) {
        self.capture_full = false;
        self.spool_full = false;
        self.apply(&Op::Done);
        for _ in 0..400 {
            while !self.pending.is_empty() || self.playlist_slot.is_some() {
                self.complete(0);
            }
            if self.core.session_ids().next().is_none() {
                return;
            }
            self.apply(&Op::Tick {
                dt: 1_000,
                pressure: false,
            });
        }
        let left: Vec<String> = self
            .core
            .sessions
            .values()
            .map(|s| {
                format!(
                    "{} published {} listed {} base {} manifest {:?} ending {:?} idle {} captures {:?} stored_version {:?}",
                    s.meta.id,
                    s.published,
                    s.listed(),
                    s.base,
                    s.manifest,
                    s.ending_version,
                    s.idle_ended,
                    s.captures.iter().map(|c| (c.key, c.assigned, c.bytes)).collect::<Vec<_>>(),
                    self.core.channel(&chid()).map(|c| (c.version, c.stored_version)),
                )
            })
            .collect();
        self.fail(format!("sessions never finished: {left:?}"));
    }

    fn written(&self) -> usize {
        self.next_content as usize - 1
    }
}

#[derive(Debug, Clone)]
enum Op {
    Start,
    Write {
        missed: bool,
    },
    Playlist,
    Complete(usize),
    Tick {
        dt: u64,
        pressure: bool,
    },
    Done,
    /// livebucket stops (gracefully: the pipeline's `Stop`) and starts.
    Restart {
        graceful: bool,
    },
    /// The capture area and the spool are full (or not).
    Full {
        capture: bool,
        spool: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Start),
        8 => proptest::bool::weighted(0.15).prop_map(|missed| Op::Write { missed }),
        6 => Just(Op::Playlist),
        10 => (0usize..8).prop_map(Op::Complete),
        4 => (prop_oneof![Just(500u64), Just(2_000), Just(70_000)], proptest::bool::weighted(0.2))
            .prop_map(|(dt, pressure)| Op::Tick { dt, pressure }),
        1 => Just(Op::Done),
        1 => proptest::bool::ANY.prop_map(|graceful| Op::Restart { graceful }),
        1 => (proptest::bool::weighted(0.3), proptest::bool::weighted(0.3))
            .prop_map(|(capture, spool)| Op::Full { capture, spool }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever the interleaving: a key never names two fragments, no
    /// playlist or manifest lists what is not stored, the media sequence
    /// never goes back, nothing is deleted before it is stored, and once the
    /// publisher stops and S3 answers, every fragment nginx wrote is stored
    /// exactly once and the playlist is ended.
    #[test]
    fn invariants_hold_under_any_interleaving(
        ops in proptest::collection::vec(op(), 1..120),
        chunk in 2usize..6,
    ) {
        let mut w = World::new(chunk);
        w.apply(&Op::Start);
        for op in &ops {
            w.apply(op);
            prop_assert!(w.violations.is_empty(), "after {:?}: {:?}", op, w.violations);
        }
        w.drain();
        prop_assert!(w.violations.is_empty(), "{:?}", w.violations);
        // Every fragment written is stored exactly once.
        let mut stored: Vec<u64> = w.bucket.values().copied().collect();
        stored.sort_unstable();
        let unique: HashSet<u64> = stored.iter().copied().collect();
        prop_assert_eq!(unique.len(), stored.len(), "a fragment stored under two keys: {:?}", w.bucket);
        prop_assert_eq!(stored.len(), w.written(), "stored {:?}", w.bucket);
        prop_assert!(w.journals.is_empty() && w.capture_files.is_empty(), "local state left behind");
        if w.written() > 0 {
            prop_assert!(w.final_playlist.is_some(), "the playlist was never ended");
        }
    }
}

/// A world with one session that wrote `n` fragments, all listed, all
/// captured, none stored.
fn world_with(n: usize, chunk: usize) -> World {
    let mut w = World::new(chunk);
    w.apply(&Op::Start);
    for _ in 0..n {
        w.apply(&Op::Write { missed: false });
    }
    w.apply(&Op::Playlist);
    w
}

fn pending_keys(w: &World) -> Vec<u64> {
    w.pending
        .iter()
        .filter_map(|j| match j {
            Job::Fragment { key, .. } => Some(*key),
            _ => None,
        })
        .collect()
}

#[test]
fn a_playlist_waits_for_every_earlier_fragment() {
    let mut w = world_with(3, 10);
    let keys = pending_keys(&w);
    assert_eq!(keys.len(), 3);
    // The last two are stored first: nothing can be published yet.
    w.complete(2);
    w.complete(1);
    assert!(w.playlist_slot.is_none());
    w.complete(0);
    let Some(Job::Playlist { body, .. }) = &w.playlist_slot else {
        panic!("no playlist after the first fragment was stored");
    };
    let (_, uris, _) = parse_live(body);
    assert_eq!(uris.len(), 3);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_missed_close_is_found_from_the_playlist() {
    let mut w = World::new(10);
    w.apply(&Op::Start);
    w.apply(&Op::Write { missed: true });
    w.apply(&Op::Write { missed: false });
    assert_eq!(pending_keys(&w).len(), 0);
    w.apply(&Op::Playlist);
    assert_eq!(pending_keys(&w).len(), 2);
}

#[test]
fn a_recovered_ended_session_is_finished_with_endlist() {
    let mut w = world_with(2, 10);
    w.apply(&Op::Done);
    w.apply(&Op::Restart { graceful: false });
    // The restart lost the uploads; recovery asks for them again.
    assert_eq!(pending_keys(&w).len(), 2);
    w.drain();
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    let (_, uris, ended) = parse_live(w.final_playlist.as_deref().unwrap_or(""));
    assert!(ended);
    assert_eq!(uris.len(), 2);
}

#[test]
fn a_closed_manifest_chunk_compacts_the_journal_and_memory() {
    let mut w = world_with(0, 3);
    for _ in 0..30 {
        w.apply(&Op::Write { missed: false });
        w.apply(&Op::Playlist);
        while !w.pending.is_empty() || w.playlist_slot.is_some() {
            w.complete(0);
        }
        w.apply(&Op::Tick {
            dt: 6_000,
            pressure: false,
        });
        while !w.pending.is_empty() || w.playlist_slot.is_some() {
            w.complete(0);
        }
        // Bounded by the chunk and nginx's window, not by the session.
        let s = w.core.session("s1").expect("session");
        assert!(s.segs.len() <= 3 + 5 + 1, "kept {} listings", s.segs.len());
        assert!(
            s.captures.len() <= 5 + 1,
            "kept {} captures",
            s.captures.len()
        );
        assert!(w.journals["s1"].len() <= 3 * (3 + 5 + 1) + 1);
    }
    let s = w.core.session("s1").expect("session").clone();
    assert!(s.base >= 20, "base {}", s.base);
    let journal = &w.journals["s1"];
    assert!(
        matches!(journal[0], Entry::Checkpoint { .. }),
        "{journal:?}"
    );
    // The compacted journal rebuilds the same session.
    w.apply(&Op::Restart { graceful: false });
    let r = w.core.session("s1").expect("recovered");
    assert_eq!(r.base, s.base);
    assert_eq!(r.published, 30);
    w.drain();
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    assert_eq!(w.bucket.len(), 30);
}

#[test]
fn pressure_moves_captures_to_the_spool_and_frees_nginx() {
    let mut w = world_with(2, 10);
    w.apply(&Op::Tick {
        dt: 500,
        pressure: true,
    });
    assert!(w.capture_files.values().all(|f| f.0 == Location::Spool));
    assert!(w.nginx["s1"].files.is_empty());
    // New captures go straight to the spool while the pressure lasts.
    w.apply(&Op::Write { missed: false });
    assert_eq!(w.capture_files.len(), 3);
    assert!(w.capture_files.values().all(|f| f.0 == Location::Spool));
    w.drain();
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

/// A stored playlist moves the live cache at once; its channel is saved at
/// the next tick past the cadence, once, and at a stop.
#[test]
fn a_stored_playlist_moves_the_live_cache_and_saves_the_channel_on_the_cadence() {
    let saves = |fx: &[Effect]| {
        fx.iter()
            .filter(|e| matches!(e, Effect::SaveChannel(_)))
            .count()
    };
    let mut w = world_with(1, 10);
    w.complete(0);
    let Some(Job::Playlist { version, .. }) = w.playlist_slot.clone() else {
        panic!("no playlist");
    };
    let fx = w.core.handle(Input::Stored(Stored::Playlist {
        channel: chid(),
        version,
    }));
    assert_eq!(saves(&fx), 0, "saved on the cadence, not at every playlist");
    assert!(fx.iter().any(|e| matches!(e, Effect::CacheLive { .. })));
    let tick = |now| Input::Tick {
        now,
        pressure: false,
    };
    assert_eq!(saves(&w.core.handle(tick(4_999))), 0);
    assert_eq!(
        w.core.handle(tick(5_000)),
        vec![Effect::SaveChannel(chid())]
    );
    assert_eq!(
        saves(&w.core.handle(tick(10_000))),
        0,
        "nothing changed since"
    );
    w.core.handle(Input::Stored(Stored::Playlist {
        channel: chid(),
        version,
    }));
    assert_eq!(
        w.core.handle(Input::Stop),
        vec![Effect::SaveChannel(chid())]
    );
}

/// A journal is compacted, and a finished session's state removed, only
/// right after its channel's window is saved: the saved window then
/// vouches for what the journal forgets.
#[test]
fn a_channel_is_saved_before_a_compaction_and_before_a_finish() {
    let mut w = world_with(0, 2);
    for _ in 0..6 {
        w.apply(&Op::Write { missed: false });
        w.apply(&Op::Playlist);
        while !w.pending.is_empty() || w.playlist_slot.is_some() {
            w.complete(0);
        }
    }
    w.drain();
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    let before = |pred: fn(&Effect) -> bool| {
        let at: Vec<usize> = (0..w.log.len()).filter(|&i| pred(&w.log[i])).collect();
        assert!(!at.is_empty());
        at.iter()
            .all(|&i| i > 0 && w.log[i - 1] == Effect::SaveChannel(chid()))
    };
    assert!(
        before(|e| matches!(e, Effect::CompactJournal { .. })),
        "{:?}",
        w.log
    );
    assert!(
        before(|e| matches!(e, Effect::Finish { .. })),
        "{:?}",
        w.log
    );
}

/// The continuity seam: a session whose meta carries another node's
/// playlist (`resume`) continues it, ahead of this node's older state, and
/// its first fragment will start with one discontinuity.
#[test]
fn a_session_with_a_resume_continues_another_nodes_playlist() {
    let seg = |key_ms: u64| crate::live::WindowSeg {
        key_ms,
        extinf: "2.000".into(),
        duration_ms: 2000,
        discontinuity: false,
        program_date_time_ms: None,
    };
    let mut core = Core::new(cfg(10));
    core.load_channel(
        chid(),
        ChannelLive {
            total: 3,
            last_key_ms: 500,
            ..ChannelLive::default()
        },
    );
    let mut m = meta("s1", 10_000);
    m.resume = Some(Box::new(crate::pipeline::fence::Resume {
        media_sequence: 40,
        discontinuity_sequence: 2,
        window: vec![seg(6_000), seg(8_000)],
        ended: true,
    }));
    core.handle(Input::Open { meta: m, now: 0 });
    let ch = core.channel(&chid()).unwrap();
    assert_eq!(ch.media_sequence(), 40);
    assert_eq!(ch.discontinuity_sequence, 2);
    assert_eq!(ch.window.len(), 2);
    assert_eq!(ch.last_key_ms, 8_000);
    assert!(ch.pending_discontinuity);

    // Older than what this node knows: its own state stays.
    let mut core = Core::new(cfg(10));
    core.load_channel(
        chid(),
        ChannelLive {
            total: 3,
            last_key_ms: 9_000,
            ..ChannelLive::default()
        },
    );
    let mut m = meta("s2", 10_000);
    m.resume = Some(Box::new(crate::pipeline::fence::Resume {
        media_sequence: 40,
        discontinuity_sequence: 2,
        window: vec![seg(6_000)],
        ended: false,
    }));
    core.handle(Input::Open { meta: m, now: 0 });
    assert_eq!(core.channel(&chid()).unwrap().total, 3);
}

/// A fragment that starts without a keyframe, or rounds above the target,
/// is counted each time (and logged once per session); one that fits is
/// not, and neither is a fragment whose start is unknown.
#[test]
fn fragments_that_miss_the_target_are_counted() {
    let mut core = Core::new(cfg(10));
    core.handle(Input::Open {
        meta: meta("s1", 10_000),
        now: 0,
    });
    let mut listed = Vec::new();
    let mut misfits = Vec::new();
    // (keyframe start, nginx's duration): target 2 s.
    let frags = [
        (Some(true), 2_000),
        (Some(false), 2_400),
        (Some(true), 2_600),
        (None, 2_000),
        (Some(false), 1_000),
    ];
    for (i, (keyframe_start, duration_ms)) in frags.into_iter().enumerate() {
        let name = format!("{}.ts", 1_700_000_000_000u64 + 2_000 * i as u64);
        let fx = core.handle(Input::Closed {
            session: "s1".into(),
            name: name.clone(),
            ident: ident(i as u64 + 1),
            spool: false,
            wall_ms: 0,
            now: 0,
        });
        let key = fx
            .iter()
            .find_map(|e| match e {
                Effect::Capture { key, .. } => Some(*key),
                _ => None,
            })
            .expect("a capture");
        core.handle(Input::Captured {
            session: "s1".into(),
            key,
            outcome: CaptureOutcome::Kept(Location::Capture),
            media_ms: None,
            keyframe_start,
        });
        listed.push(NginxEntry {
            seq: i as u64,
            uri: name,
            extinf: format!("{}.{:03}", duration_ms / 1000, duration_ms % 1000),
            duration_ms,
            discontinuity: false,
        });
        let fx = core.handle(Input::Playlist {
            session: "s1".into(),
            entries: listed.clone(),
            probed: false,
            now: 0,
        });
        misfits.push(fx.contains(&Effect::Count("livebucket_fragment_misfit_total")));
    }
    assert_eq!(misfits, [false, true, true, false, true]);
    assert!(core.session("s1").unwrap().misfit_warned);
}
