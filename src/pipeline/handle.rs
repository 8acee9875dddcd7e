//! What the rest of livebucket holds of the pipeline: the message type its
//! actor receives, the sending handle the HTTP hooks use, and the cache of
//! newest stored live playlists `/play` reads.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::machine::Stored;
use super::watch::FsEvent;
use crate::live::ChannelId;
use crate::session::SessionMeta;

pub(crate) enum Msg {
    Fs(FsEvent),
    /// `on_publish` approved a session.
    Started(Box<SessionMeta>),
    /// `on_publish_done` for a session.
    Done(String),
    /// An upload finished.
    Stored(Stored),
    Tick,
}

impl From<FsEvent> for Msg {
    fn from(e: FsEvent) -> Msg {
        Msg::Fs(e)
    }
}

/// The sending side, held by the HTTP hooks.
#[derive(Clone)]
pub(crate) struct PipelineHandle {
    tx: UnboundedSender<Msg>,
}

impl PipelineHandle {
    pub(crate) fn started(&self, meta: SessionMeta) {
        let _ = self.tx.send(Msg::Started(Box::new(meta)));
    }
    pub(crate) fn done(&self, id: &str) {
        let _ = self.tx.send(Msg::Done(id.to_owned()));
    }
    pub(crate) fn sender(&self) -> UnboundedSender<Msg> {
        self.tx.clone()
    }
}

/// The newest stored live playlist of each channel, so `/play` can answer
/// without a round trip to S3.
pub(crate) type LiveCache = Arc<std::sync::RwLock<HashMap<ChannelId, String>>>;

pub(crate) fn channel() -> (PipelineHandle, UnboundedReceiver<Msg>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (PipelineHandle { tx }, rx)
}
