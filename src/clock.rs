//! The wall clock, in the units livebucket signs and names things with.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (signature expiries, OSS dates).
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch (object keys, session starts). A clock
/// before 1970 reads as 0 rather than failing.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
