//! The S3 store under test, chosen per test: Garage (the default) or Ceph's
//! RADOS Gateway. [`TestStore`] gives both the same face: an endpoint, a key
//! owning every bucket it creates, an S3 client for assertions, and an
//! outage that ends on [`TestStore::start_again`].

use std::path::Path;

use super::TestDir;
use super::garage::{Garage, Key};
use super::rgw::Rgw;
use super::s3::S3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Garage,
    Rgw,
}

pub enum TestStore {
    Garage(Garage),
    Rgw(Rgw),
}

impl TestStore {
    /// A fresh store of `kind` in the test's directory.
    pub fn start(kind: StoreKind, dir: &TestDir) -> TestStore {
        match kind {
            StoreKind::Garage => TestStore::Garage(Garage::start(dir)),
            StoreKind::Rgw => TestStore::Rgw(Rgw::start(dir)),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> &str {
        match self {
            TestStore::Garage(g) => g.endpoint(),
            TestStore::Rgw(r) => r.endpoint(),
        }
    }

    /// The region to sign with (the same for both stores).
    pub fn region(&self) -> &str {
        super::garage::REGION
    }

    /// The key made at start; it owns every bucket made by `create_bucket`.
    pub fn key(&self) -> &Key {
        match self {
            TestStore::Garage(g) => g.key(),
            TestStore::Rgw(r) => r.key(),
        }
    }

    pub fn dir(&self) -> &Path {
        match self {
            TestStore::Garage(g) => g.dir(),
            TestStore::Rgw(r) => r.dir(),
        }
    }

    /// An S3 client with [`TestStore::key`].
    pub fn s3(&self) -> S3 {
        match self {
            TestStore::Garage(g) => g.s3(),
            TestStore::Rgw(r) => r.s3(),
        }
    }

    pub fn create_bucket(&mut self, bucket: &str) {
        match self {
            TestStore::Garage(g) => g.create_bucket(bucket),
            TestStore::Rgw(r) => r.create_bucket(bucket),
        }
    }

    /// An outage: Garage is killed (connections refused), radosgw frozen
    /// with SIGSTOP (connections accepted, never answered).
    pub fn stop(&mut self) {
        match self {
            TestStore::Garage(g) => g.stop(),
            TestStore::Rgw(r) => r.stop(),
        }
    }

    /// Ends the outage and waits until the store answers.
    pub fn start_again(&mut self) {
        match self {
            TestStore::Garage(g) => g.start_again(),
            TestStore::Rgw(r) => r.start_again(),
        }
    }
}
