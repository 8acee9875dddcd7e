//! An S3 client for assertions on what livebucket stored: static credentials,
//! path-style addressing, and checksums only where required (Garage, like
//! most self-hosted servers, predates the SDK's default CRC checksums).

use std::collections::HashMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use super::garage::Key;

#[derive(Clone)]
pub struct S3 {
    client: Client,
}

/// An object's headers.
#[derive(Debug, Clone)]
pub struct Head {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    /// User metadata (`x-amz-meta-NAME`), keyed by NAME.
    pub metadata: HashMap<String, String>,
}

impl S3 {
    pub fn new(endpoint: &str, region: &str, key: &Key) -> S3 {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                &key.id,
                &key.secret,
                None,
                None,
                "livebucket-tests",
            ))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        S3 {
            client: Client::from_conf(config),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every (key, size) under `prefix`, in key order. Panics on error.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        self.try_list(bucket, prefix)
            .await
            .unwrap_or_else(|e| panic!("listing s3://{bucket}/{prefix}: {e}"))
    }

    /// Like [`S3::list`], returning the error (for polls across an outage).
    pub async fn try_list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, String> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DisplayErrorContext(e).to_string())?;
            for object in page.contents() {
                out.push((
                    object.key().unwrap_or_default().to_owned(),
                    object.size().unwrap_or_default().try_into().unwrap_or(0),
                ));
            }
        }
        Ok(out)
    }

    /// HEAD an object. Panics if it does not exist.
    pub async fn head(&self, bucket: &str, key: &str) -> Head {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD s3://{bucket}/{key}: {}", DisplayErrorContext(e)));
        Head {
            content_type: out.content_type().map(str::to_owned),
            cache_control: out.cache_control().map(str::to_owned),
            metadata: out.metadata().cloned().unwrap_or_default(),
        }
    }

    /// An object's bytes. Panics if it does not exist.
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET s3://{bucket}/{key}: {}", DisplayErrorContext(e)));
        out.body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading s3://{bucket}/{key}: {e}"))
            .into_bytes()
            .to_vec()
    }

    /// Like [`S3::get`], returning the error (for polls on an object that
    /// may not be there yet).
    pub async fn try_get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("GET s3://{bucket}/{key}: {}", DisplayErrorContext(e)))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?;
        Ok(body.into_bytes().to_vec())
    }

    /// PUT an object (for checking the harness itself).
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT s3://{bucket}/{key}: {}", DisplayErrorContext(e)));
    }
}
