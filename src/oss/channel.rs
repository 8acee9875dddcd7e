//! The channel record as the LiveChannel API speaks it: the model itself
//! lives in [`crate::channels::record`], below the API, because the channel
//! store, snapshots, stat, the cluster, events and retention read it too.

pub use crate::channels::record::*;
