//! Taking a fragment's bytes out of nginx's directory the moment it is closed.
//!
//! nginx-rtmp may truncate and rewrite a fragment name (several fragments cut
//! in one event-loop tick with `system` naming, or after a republish), so at
//! IN_CLOSE_WRITE the fragment is taken out of nginx's hands into a capture
//! file named by the fragment's unique object key. The capture file, not
//! nginx's file, is then the queue of record until the fragment is stored.
//!
//! When the capture directory is on nginx's filesystem (the usual single
//! tmpfs) the fragment is *renamed* there: no byte is copied, the tmpfs holds
//! it once, and a later rewrite of the name by nginx creates a new file
//! instead of truncating this one. Otherwise (another filesystem, the rename
//! failed, or the on-disk spool once the tmpfs is past its high-water mark)
//! it is copied. The order in which these are tried is the machine's
//! (`machine/disk.rs`); this module does each one.
//!
//! Symbolic links are never followed: a fragment or playlist is read only if
//! it and its session directory are themselves a regular file and a
//! directory, and the file is opened with `O_NOFOLLOW`. A link planted in the
//! HLS directory (say to a private key) is refused, not uploaded.

use std::path::{Path, PathBuf};

pub(crate) use crate::nofollow::{Identity, identity};
use crate::nofollow::{identity_of, not_regular, open_nofollow};

/// After a crash: finishes the move of `key`'s fragment into `dir` if the
/// crash came between its two renames, and the file under the intermediate
/// name is still the version closed with identity `closed` (the journal's).
/// Returns whether `dir/<key>.ts` now holds it.
pub(crate) fn finish_move(dir: &Path, key_ms: u64, closed: Identity) -> bool {
    let moving = dir.join(moving_name(key_ms));
    identity(&moving).is_ok_and(|i| i == closed)
        && std::fs::rename(&moving, dir.join(capture_name(key_ms))).is_ok()
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CaptureError {
    /// nginx rewrote the name while it was read: these bytes are a mix of
    /// two versions. The new version's own close event captures it.
    #[error("fragment changed while it was being captured")]
    Changed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MoveError {
    /// `dir` is on another filesystem than `src`: copy instead.
    #[error("capture directory on another filesystem")]
    CrossDevice,
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

impl From<std::io::Error> for MoveError {
    fn from(e: std::io::Error) -> Self {
        MoveError::Capture(CaptureError::Io(e))
    }
}

/// The capture file of the fragment keyed `key_ms`: named by its object key.
pub(crate) fn capture_name(key_ms: u64) -> String {
    format!("{key_ms}.ts")
}

/// The name a fragment is moved to before it is checked; recovery adopts it
/// only if it still has the identity the journal recorded at the close.
pub(crate) fn moving_name(key_ms: u64) -> String {
    format!("{key_ms}.ts.moving")
}

/// Renames nginx's closed fragment `src` to `dir/<key>.ts`. `closed` is the
/// identity seen at its close: if the file no longer has it, nginx had
/// reopened the name (`O_TRUNC`) before the rename, so the file is put back
/// and [`CaptureError::Changed`] returned; its next close captures it. The
/// check happens under an intermediate name ([`moving_name`]), so a file
/// under the final name is always the version that was closed.
pub(crate) fn move_fragment(
    src: &Path,
    dir: &Path,
    key_ms: u64,
    closed: Identity,
) -> Result<PathBuf, MoveError> {
    // rename(2) does not follow a link in the last component but would
    // through a linked session directory.
    if let Some(parent) = src.parent()
        && !std::fs::symlink_metadata(parent)?.file_type().is_dir()
    {
        return Err(CaptureError::Io(not_regular(src)).into());
    }
    std::fs::create_dir_all(dir)?;
    let moving = dir.join(moving_name(key_ms));
    if let Err(e) = std::fs::rename(src, &moving) {
        return Err(if e.raw_os_error() == Some(libc::EXDEV) {
            MoveError::CrossDevice
        } else {
            e.into()
        });
    }
    let m = std::fs::symlink_metadata(&moving)?;
    if !m.file_type().is_file() || identity_of(&m) != closed {
        let regular = m.file_type().is_file();
        std::fs::rename(&moving, src)?;
        return Err(if regular {
            CaptureError::Changed
        } else {
            CaptureError::Io(not_regular(src))
        }
        .into());
    }
    let dst = dir.join(capture_name(key_ms));
    std::fs::rename(&moving, &dst)?;
    Ok(dst)
}

/// Copies `src` to `dir/<key>.ts` through a temp name, so a capture file that
/// exists under its final name is complete. Returns the bytes' identity as
/// read; fails if the file changed while it was being read. `durable` (a
/// capture going straight to the on-disk spool) fsyncs the file and the
/// directory before the capture counts, as a move to the spool does.
pub(crate) fn copy_fragment(
    src: &Path,
    dir: &Path,
    key_ms: u64,
    durable: bool,
) -> Result<(PathBuf, Identity), CaptureError> {
    let (mut from, m) = open_nofollow(src)?;
    let before = identity_of(&m);
    std::fs::create_dir_all(dir)?;
    let dst = dir.join(capture_name(key_ms));
    let tmp = dir.join(format!("{key_ms}.ts.tmp"));
    let copied = {
        let mut f = std::fs::File::create(&tmp)?;
        // File to file: the kernel copies (copy_file_range or sendfile), no
        // buffer of the fragment's size in this process.
        let n = std::io::copy(&mut from, &mut f)?;
        if durable {
            f.sync_all()?;
        }
        n
    };
    // Same name, same inode: nginx rewriting it in place shows here.
    let after = identity_of(&from.metadata()?);
    if before != after || copied != after.size || identity(src)? != after {
        let _ = std::fs::remove_file(&tmp);
        return Err(CaptureError::Changed);
    }
    std::fs::rename(&tmp, &dst)?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok((dst, after))
}

/// Moves a capture file to the on-disk spool durably: copy, fsync, fsync the
/// directory, then remove the tmpfs copy. A crash in between leaves two
/// identical copies, which is harmless.
pub(crate) fn move_to_spool(file: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("capture file without a name"))?;
    std::fs::create_dir_all(dir)?;
    let dst = dir.join(name);
    let tmp = dst.with_extension("ts.tmp");
    {
        let mut from = std::fs::File::open(file)?;
        let mut f = std::fs::File::create(&tmp)?;
        std::io::copy(&mut from, &mut f)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &dst)?;
    std::fs::File::open(dir)?.sync_all()?;
    std::fs::remove_file(file)?;
    Ok(dst)
}

/// Fraction of the filesystem holding `path` that is in use (0.0–1.0).
pub(crate) fn fs_usage(path: &Path) -> std::io::Result<f64> {
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

#[cfg(test)]
mod nofollow_tests {
    use super::*;

    #[test]
    fn symlinks_are_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"private").unwrap();
        let session = dir.path().join("session");
        std::fs::create_dir(&session).unwrap();
        let link = session.join("1732571234567.ts");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(identity(&link).is_err());
        assert!(crate::nofollow::read_nofollow(&link).is_err());
        assert!(copy_fragment(&link, &dir.path().join("cap"), 1, false).is_err());
        // A session directory that is a link is refused too.
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(&session, &linked_dir).unwrap();
        std::fs::write(session.join("1.ts"), b"x").unwrap();
        assert!(crate::nofollow::read_nofollow(&linked_dir.join("1.ts")).is_err());
        assert_eq!(
            crate::nofollow::read_nofollow(&session.join("1.ts"))
                .unwrap()
                .0,
            b"x"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_whole_file_under_key() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("1732571234567.ts");
        std::fs::write(&src, vec![7u8; 188 * 10]).unwrap();
        let (dst, id) = copy_fragment(&src, &dir.path().join("cap"), 42, true).unwrap();
        assert_eq!(dst, dir.path().join("cap/42.ts"));
        assert_eq!(std::fs::read(&dst).unwrap(), vec![7u8; 1880]);
        assert_eq!(id.size, 1880);
        let moved = move_to_spool(&dst, &dir.path().join("spool")).unwrap();
        assert_eq!(moved, dir.path().join("spool/42.ts"));
        assert!(!dst.exists());
        assert_eq!(std::fs::read(&moved).unwrap().len(), 1880);
        assert!(fs_usage(dir.path()).unwrap() <= 1.0);
    }

    fn closed_identity(path: &Path) -> Identity {
        identity(path).unwrap()
    }

    #[test]
    fn moves_the_closed_file_and_a_rewrite_of_the_name_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("1.ts");
        std::fs::write(&src, vec![7u8; 1880]).unwrap();
        let closed = closed_identity(&src);
        let cap = dir.path().join("cap");
        let dst = move_fragment(&src, &cap, 42, closed).unwrap();
        assert_eq!(dst, cap.join("42.ts"));
        assert!(!src.exists());
        assert!(!cap.join(moving_name(42)).exists());
        // nginx reopening the name with O_TRUNC makes a new file.
        std::fs::write(&src, b"next").unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), vec![7u8; 1880]);
    }

    #[test]
    fn a_file_rewritten_since_its_close_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("1.ts");
        std::fs::write(&src, vec![7u8; 1880]).unwrap();
        let closed = closed_identity(&src);
        std::fs::write(&src, b"rewritten").unwrap();
        let cap = dir.path().join("cap");
        let err = move_fragment(&src, &cap, 42, closed).unwrap_err();
        assert!(matches!(err, MoveError::Capture(CaptureError::Changed)));
        assert_eq!(std::fs::read(&src).unwrap(), b"rewritten");
        assert!(!cap.join("42.ts").exists());
        assert!(!cap.join(moving_name(42)).exists());
    }

    #[test]
    fn a_move_cut_by_a_crash_is_finished_only_for_the_closed_version() {
        let dir = tempfile::tempdir().unwrap();
        let moving = dir.path().join(moving_name(7));
        std::fs::write(&moving, vec![1u8; 1880]).unwrap();
        let closed = closed_identity(&moving);
        let other = Identity {
            size: closed.size,
            mtime_ns: closed.mtime_ns + 1,
        };
        assert!(!finish_move(dir.path(), 7, other));
        assert!(moving.exists());
        assert!(finish_move(dir.path(), 7, closed));
        assert_eq!(
            std::fs::read(dir.path().join("7.ts")).unwrap(),
            vec![1u8; 1880]
        );
        assert!(!finish_move(dir.path(), 8, closed));
    }

    #[test]
    fn links_are_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"private").unwrap();
        let closed = closed_identity(&secret);
        let session = dir.path().join("session");
        std::fs::create_dir(&session).unwrap();
        let link = session.join("1.ts");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let cap = dir.path().join("cap");
        assert!(move_fragment(&link, &cap, 1, closed).is_err());
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        assert!(move_fragment(&linked_dir.join("secret"), &cap, 2, closed).is_err());
        assert_eq!(std::fs::read(&secret).unwrap(), b"private");
        assert!(!cap.join("1.ts").exists() && !cap.join("2.ts").exists());
    }
}
