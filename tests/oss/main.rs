//! The OSS LiveChannel wire tests against captures from the real SDK (oss2),
//! in one test binary: request signature V1 ([`sign`]) and the LiveChannel
//! XML ([`xml`]). No external tools: they run in a plain `cargo test`.

mod sign;
mod xml;
