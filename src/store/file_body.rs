//! A capture file on the tmpfs as a request body, read in the request's own
//! task.
//!
//! The SDK's file body reads through tokio's blocking pool, which is right
//! for a disk but for a tmpfs file pays a thread hand-off (two futex wake-ups
//! and a context switch) per chunk, and a second copy of every byte, for a
//! read that is a memory copy.

use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Largest chunk read at once: what one upload holds in memory.
pub(super) const CHUNK: usize = 256 * 1024;

const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
const RAMFS_MAGIC: libc::c_long = 0x8584_58f6;

/// Whether `file` lives in memory (tmpfs or ramfs), where a read never
/// waits for a device.
pub(super) fn memory_backed(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: fstatfs only writes the struct passed, and the descriptor is
    // open for the borrow's duration.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    rc == 0 && matches!(st.f_type as libc::c_long, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// The first `len` bytes of a file, as `CHUNK`-sized frames, read at their
/// offsets (`pread`), so the file's own position is never used and a clone of
/// the descriptor can be sent again. A file that turns out shorter fails the
/// request (the length was already sent).
pub(super) struct MemFileBody {
    file: std::fs::File,
    offset: u64,
    remaining: u64,
}

impl MemFileBody {
    pub(super) fn new(file: std::fs::File, len: u64) -> Self {
        Self {
            file,
            offset: 0,
            remaining: len,
        }
    }
}

impl http_body::Body for MemFileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = self.remaining.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        // A read of a regular file returns less than asked only at its end
        // (or on a signal), so loop until the chunk is full or the file ends.
        while filled < want {
            match self
                .file
                .read_at(&mut buf[filled..], self.offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        if filled == 0 {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shorter than when its upload started",
            ))));
        }
        buf.truncate(filled);
        self.offset += filled as u64;
        self.remaining -= filled as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn reads_exactly_len_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..CHUNK * 2 + 77).map(|i| i as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut body = MemFileBody::new(std::fs::File::open(&path).unwrap(), bytes.len() as u64);
        assert_eq!(body.size_hint().exact(), Some(bytes.len() as u64));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(got, bytes);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_file_shorter_than_announced_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let mut body = MemFileBody::new(std::fs::File::open(&path).unwrap(), 10);
        assert_eq!(
            &body.frame().await.unwrap().unwrap().into_data().unwrap()[..],
            b"abc"
        );
        assert!(body.frame().await.unwrap().is_err());
    }

    #[test]
    fn dev_shm_is_memory_backed() {
        if let Ok(f) = tempfile::tempfile_in("/dev/shm") {
            assert!(memory_backed(&f));
        }
    }
}
