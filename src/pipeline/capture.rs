//! Taking a fragment's bytes out of nginx's directory the moment it is closed.
//!
//! nginx-rtmp may truncate and rewrite a fragment name (several fragments cut
//! in one event-loop tick with `system` naming, or after a republish), so the
//! bytes are copied at IN_CLOSE_WRITE into a capture file named by the
//! fragment's unique object key. The capture file, not nginx's file, is then
//! the queue of record until the fragment is stored. Captures go to the tmpfs
//! capture directory, or to the on-disk spool once the tmpfs is past its
//! high-water mark.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Size and modification time: what tells two versions of one name apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub size: u64,
    pub mtime_ns: u64,
}

pub fn identity(path: &Path) -> std::io::Result<Identity> {
    let m = std::fs::metadata(path)?;
    let mtime_ns = (m.mtime() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec() as u64);
    Ok(Identity {
        size: m.size(),
        mtime_ns,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// nginx rewrote the name while it was read: these bytes are a mix of
    /// two versions. The new version's own close event captures it.
    #[error("fragment changed while it was being captured")]
    Changed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Copies `src` to `dir/<key>.ts` through a temp name, so a capture file that
/// exists under its final name is complete. Returns the bytes' identity as
/// read; fails if the file changed while it was being read.
pub fn copy_fragment(
    src: &Path,
    dir: &Path,
    key_ms: u64,
) -> Result<(PathBuf, Identity), CaptureError> {
    let before = identity(src)?;
    let bytes = std::fs::read(src)?;
    let after = identity(src)?;
    if before != after || bytes.len() as u64 != after.size {
        return Err(CaptureError::Changed);
    }
    std::fs::create_dir_all(dir)?;
    let dst = dir.join(format!("{key_ms}.ts"));
    let tmp = dir.join(format!("{key_ms}.ts.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
    }
    std::fs::rename(&tmp, &dst)?;
    Ok((dst, after))
}

/// Moves a capture file to the on-disk spool durably: copy, fsync, fsync the
/// directory, then remove the tmpfs copy. A crash in between leaves two
/// identical copies, which is harmless.
pub fn move_to_spool(file: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("capture file without a name"))?;
    std::fs::create_dir_all(dir)?;
    let dst = dir.join(name);
    let tmp = dst.with_extension("ts.tmp");
    {
        let bytes = std::fs::read(file)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &dst)?;
    std::fs::File::open(dir)?.sync_all()?;
    std::fs::remove_file(file)?;
    Ok(dst)
}

/// Fraction of the filesystem holding `path` that is in use (0.0–1.0).
pub fn fs_usage(path: &Path) -> std::io::Result<f64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let total = st.f_blocks as f64;
    if total == 0.0 {
        return Ok(0.0);
    }
    Ok(1.0 - st.f_bavail as f64 / total)
}

/// Epoch milliseconds from a `system`-named fragment (`1732571234567.ts`).
pub fn name_ms(name: &str) -> Option<u64> {
    name.strip_suffix(".ts")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_whole_file_under_key() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("1732571234567.ts");
        std::fs::write(&src, vec![7u8; 188 * 10]).unwrap();
        let (dst, id) = copy_fragment(&src, &dir.path().join("cap"), 42).unwrap();
        assert_eq!(dst, dir.path().join("cap/42.ts"));
        assert_eq!(std::fs::read(&dst).unwrap(), vec![7u8; 1880]);
        assert_eq!(id.size, 1880);
        let moved = move_to_spool(&dst, &dir.path().join("spool")).unwrap();
        assert_eq!(moved, dir.path().join("spool/42.ts"));
        assert!(!dst.exists());
        assert_eq!(std::fs::read(&moved).unwrap().len(), 1880);
        assert!(fs_usage(dir.path()).unwrap() <= 1.0);
        assert_eq!(name_ms("1732571234567.ts"), Some(1_732_571_234_567));
        assert_eq!(name_ms("index.m3u8"), None);
    }
}
