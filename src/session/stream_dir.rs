//! A session's directory under nginx's HLS directory, made by livebucket
//! before `on_publish` approves the session.

use std::path::{Path, PathBuf};

use super::meta::looks_like_id;

/// The mode [`make_stream_dir`] gives a session's HLS directory: its owner
/// (livebucket) reads, moves and deletes there, its group (nginx's worker,
/// from `hls_dir`) writes fragments and the playlist, nobody else enters.
pub const STREAM_DIR_MODE: u32 = 0o2770;

/// Makes `<hls_dir>/<id>/`, where nginx-rtmp writes session `id`'s HLS
/// files, before `on_publish` approves the session, and returns its path.
///
/// nginx-rtmp writes into that directory as it finds it when it exists;
/// when it does not, nginx's worker makes it itself with the fixed mode 0744
/// (ngx_rtmp_hls_module.c), which livebucket, another user, could neither
/// enter nor clean. Made here, it is livebucket's, and its group is
/// `hls_dir`'s (which is setgid, group nginx's worker), so both can do their
/// part without any capability.
///
/// `mkdir` fails if anything is there already: the id is new, so whatever
/// is there was not made by livebucket. The mode is then set through a
/// handle opened without following links (nginx's worker may rename entries
/// of `hls_dir`), since the umask (027) strips group write at `mkdir`. The
/// kernel keeps the setgid bit only for a caller in the directory's group,
/// so livebucket, outside nginx's group, gets 0770: enough, as the group is
/// already right and only nginx's worker makes files there. If the mode
/// cannot be set, the directory is removed again.
pub fn make_stream_dir(hls_dir: &Path, id: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !looks_like_id(id) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a session id",
        ));
    }
    let dir = hls_dir.join(id);
    std::fs::create_dir(&dir)?;
    let moded = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(&dir)
        .and_then(|d| d.set_permissions(std::fs::Permissions::from_mode(STREAM_DIR_MODE)));
    if let Err(e) = moded {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
}

#[cfg(test)]
mod stream_dir_tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::session::meta::new_session_id;

    /// An `hls_dir` as deploy/ makes it: setgid, group-writable.
    fn hls_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
        dir
    }

    #[test]
    fn the_stream_directory_is_made_0o2770_in_the_group_of_hls_dir() {
        let hls = hls_dir();
        let id = new_session_id();
        let made = make_stream_dir(hls.path(), &id).unwrap();
        assert_eq!(made, hls.path().join(&id));
        let meta = std::fs::symlink_metadata(&made).unwrap();
        assert!(meta.is_dir());
        // Group write, which the umask alone would strip, included.
        assert_eq!(meta.permissions().mode() & 0o7777, STREAM_DIR_MODE);
        assert_eq!(meta.gid(), std::fs::metadata(hls.path()).unwrap().gid());
    }

    #[test]
    fn anything_already_there_is_refused_and_left_alone() {
        let hls = hls_dir();
        let (a, b, c) = (new_session_id(), new_session_id(), new_session_id());
        // As nginx's worker would have made it, or a link planted there.
        std::fs::create_dir(hls.path().join(&a)).unwrap();
        std::fs::set_permissions(hls.path().join(&a), std::fs::Permissions::from_mode(0o744))
            .unwrap();
        std::os::unix::fs::symlink("/", hls.path().join(&b)).unwrap();
        std::fs::write(hls.path().join(&c), b"x").unwrap();
        for id in [&a, &b, &c] {
            let err = make_stream_dir(hls.path(), id).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{id}");
        }
        let mode = std::fs::metadata(hls.path().join(&a))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o744, "nginx's directory is not changed");
        assert!(
            std::fs::symlink_metadata(hls.path().join(&b))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn a_missing_hls_dir_or_a_name_that_is_no_id_is_an_error_not_a_panic() {
        let hls = hls_dir();
        let gone = hls.path().join("gone");
        assert!(make_stream_dir(&gone, &new_session_id()).is_err());
        for id in ["..", "../x", "", "ABCDEF0123456789abcdef0123456789"] {
            let err = make_stream_dir(hls.path(), id).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{id:?}");
        }
        assert_eq!(std::fs::read_dir(hls.path()).unwrap().count(), 0);
    }
}
