//! The Standard Webhooks signature (standardwebhooks.com): HMAC-SHA256 over
//! `"<webhook-id>.<webhook-timestamp>.<body>"`, sent as
//! `webhook-signature: v1,<base64>` beside `webhook-id` and
//! `webhook-timestamp` (Unix seconds of the attempt). Receivers check the
//! signature in constant time and refuse a timestamp too far from their
//! clock, which bounds replays of a captured request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use sha2::Sha256;

use super::SignError;
use super::mac::new_mac;

/// The `webhook-signature` value of one attempt: `v1,` and the standard
/// base64 of HMAC-SHA256(`key`, `"{id}.{timestamp}.{body}"`).
pub(crate) fn signature(
    key: &[u8],
    id: &str,
    timestamp: u64,
    body: &str,
) -> Result<String, SignError> {
    let mut mac = new_mac::<Sha256>(key)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and its
    /// reference libraries' tests): secret
    /// `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, computed independently of
    /// this code.
    #[test]
    fn matches_the_standard_webhooks_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
