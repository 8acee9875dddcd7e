//! Reading a file in nginx's HLS directory without following symbolic
//! links, and the identity (size, modification time) that tells two versions
//! of one file name apart.
//!
//! A fragment or playlist is read only if it and its parent directory are
//! themselves a regular file and a directory, and the file is opened with
//! `O_NOFOLLOW`: a link planted in the HLS directory (say to a private key)
//! is refused, not read. Used by the pipeline's capture (`pipeline::capture`)
//! and the LL-HLS follower (`llhls::follow`).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Size and modification time: what tells two versions of one name apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub size: u64,
    pub mtime_ns: u64,
}

/// The identity of the regular file at `path`; an error for a symbolic
/// link or anything else that is not a regular file.
pub(crate) fn identity(path: &Path) -> std::io::Result<Identity> {
    let m = std::fs::symlink_metadata(path)?;
    if !m.file_type().is_file() {
        return Err(not_regular(path));
    }
    Ok(identity_of(&m))
}

/// The identity of the file whose metadata `m` is.
pub(crate) fn identity_of(m: &std::fs::Metadata) -> Identity {
    let mtime_ns = (m.mtime() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec() as u64);
    Identity {
        size: m.size(),
        mtime_ns,
    }
}

/// The error for `path` that is a symbolic link or not a regular file.
pub(crate) fn not_regular(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{} is not a regular file in a real directory (symbolic links are not followed)",
            crate::logfmt::Esc(&path.to_string_lossy())
        ),
    )
}

/// Reads the regular file at `path` without following a symbolic link, in
/// it or in its parent directory. Returns the bytes and the identity of the
/// file they came from.
pub(crate) fn read_nofollow(path: &Path) -> std::io::Result<(Vec<u8>, Identity)> {
    let (mut file, m) = open_nofollow(path)?;
    let mut bytes = Vec::with_capacity(m.size() as usize);
    file.read_to_end(&mut bytes)?;
    Ok((bytes, identity_of(&m)))
}

/// Opens the regular file at `path` for reading without following a
/// symbolic link, in it or in its parent directory.
pub(crate) fn open_nofollow(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    if let Some(dir) = path.parent()
        && !std::fs::symlink_metadata(dir)?.file_type().is_dir()
    {
        return Err(not_regular(path));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                not_regular(path)
            } else {
                e
            }
        })?;
    let m = file.metadata()?;
    if !m.file_type().is_file() {
        return Err(not_regular(path));
    }
    Ok((file, m))
}
