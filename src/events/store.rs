//! The queue of record: one file per event in `<state_dir>/events/`,
//! `<seq>.json`, written to a temp file, fsync'd, renamed, and the directory
//! fsync'd before `emit` returns, so an event that was emitted survives a
//! crash or a power cut. A file is removed once every endpoint took the
//! event; a removal a crash undoes sends the event again, with the same id.
//! Which endpoints already took an event is not written down: after a
//! restart it goes to all of its endpoints again (at least once, same id).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

/// One event's file, versioned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "v")]
pub(crate) enum Record {
    #[serde(rename = "1")]
    V1 {
        seq: u64,
        kind: String,
        id: String,
        lane: String,
        created_ms: u64,
        targets: Vec<String>,
        body: String,
    },
}

pub(crate) struct DiskQueue {
    dir: PathBuf,
}

impl DiskQueue {
    /// The queue in `dir`, made if missing; `.tmp` leftovers of a crash
    /// mid-write are removed (their `emit` never returned).
    pub(crate) fn open(dir: &Path) -> std::io::Result<DiskQueue> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(DiskQueue {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Writes `r` durably (file and directory fsync'd).
    pub(crate) fn write(&self, seq: u64, r: &Record) -> std::io::Result<()> {
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Forgets a delivered (or dropped) event.
    pub(crate) fn remove(&self, seq: u64) {
        if let Err(e) = std::fs::remove_file(self.path(seq)) {
            warn!(seq, error = %e, "cannot remove a delivered event's file; it will be sent again after a restart");
        }
    }

    /// Every queued event, in sequence order. A file that does not parse is
    /// renamed `*.bad` and logged (kept for the operator, never sent).
    pub(crate) fn load(&self) -> std::io::Result<Vec<Record>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => out.push(r),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "unreadable event file; set aside as .bad");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        out.sort_by_key(|Record::V1 { seq, .. }| *seq);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64) -> Record {
        Record::V1 {
            seq,
            kind: "stream.started".into(),
            id: format!("evt_{seq}"),
            lane: "b/cam".into(),
            created_ms: 5,
            targets: vec!["app".into()],
            body: "{\"type\":\"stream.started\"}".into(),
        }
    }

    #[test]
    fn written_events_load_in_order_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path()).unwrap();
        for seq in [30, 10, 20] {
            q.write(seq, &rec(seq)).unwrap();
        }
        q.remove(20);
        std::fs::write(dir.path().join("00000000000000000040.json"), b"{torn").unwrap();
        std::fs::write(dir.path().join("00000000000000000050.tmp"), b"half").unwrap();
        let q = DiskQueue::open(dir.path()).unwrap();
        assert_eq!(q.load().unwrap(), vec![rec(10), rec(30)]);
        assert!(dir.path().join("00000000000000000040.bad").exists());
        assert!(!dir.path().join("00000000000000000050.tmp").exists());
    }
}
