//! AWS Signature Version 2 query authentication: presigned `GET` URLs for
//! legacy RGW and MinIO setups that do not take SigV4
//! (`s3.signature_version = "v2"`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use percent_encoding::utf8_percent_encode;
use sha1::Sha1;

use super::SignError;
use super::encode::UNRESERVED;
use super::mac::new_mac;
use super::url::{S3Location, Target};

/// A presigned SigV2 `GET` URL, valid until `expires_unix` (unix seconds).
///
/// The signed resource is `/` + bucket + the URL's encoded path to the key,
/// i.e. `"GET\n\n\n" + E + "\n/" + BUCKET + "/" + KEY` with KEY URI-encoded
/// as in the URL, which is what AWS specifies and botocore does. For keys made
/// of unreserved characters and `/`, such as ours, encoded and raw agree, so
/// servers that sign the decoded path accept these URLs too.
pub fn presign_v2_get(
    access_key: &str,
    secret: &str,
    loc: &S3Location<'_>,
    expires_unix: u64,
) -> Result<String, SignError> {
    if access_key.is_empty() {
        return Err(SignError::Malformed("access key id must be non-empty"));
    }
    let target = Target::new(loc)?;

    let mut mac = new_mac::<Sha1>(secret.as_bytes())?;
    mac.update(format!("GET\n\n\n{expires_unix}\n").as_bytes());
    if !loc.path_style {
        // Virtual-hosted URLs lack the bucket in the path, but SigV2 signs it.
        mac.update(b"/");
        mac.update(loc.bucket.as_bytes());
    }
    mac.update(target.path.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());

    Ok(format!(
        "{scheme}://{host}{path}?AWSAccessKeyId={key}&Expires={expires_unix}&Signature={sig}",
        scheme = target.scheme,
        host = target.host,
        path = target.path,
        key = utf8_percent_encode(access_key, UNRESERVED),
        sig = utf8_percent_encode(&signature, UNRESERVED),
    ))
}
