//! What an S3 (or OSS) error answer says, and whether trying again can help.
//!
//! One reader for the `<Error><Code>…</Code><Message>…</Message></Error>`
//! body every S3-compatible store (and OSS) sends, used by the direct PUT,
//! and by the CLI for livebucket's own OSS API; one classification for both
//! PUT paths (direct and SDK):
//!
//! - [`Class::Retry`]: the store may answer otherwise soon: connection
//!   failures and timeouts, 5xx, 408, 429, and the codes S3 sends for a
//!   passing condition whatever their status (`SlowDown`, `RequestTimeout`,
//!   `InternalError`, `ServiceUnavailable`, `OperationAborted`,
//!   `Throttling`, `ThrottlingException`).
//! - [`Class::Final`]: every other answer (3xx, 4xx): the same request will
//!   get the same answer until someone changes the configuration, the keys
//!   or the bucket (`AccessDenied`, `SignatureDoesNotMatch`,
//!   `PermanentRedirect`, `AuthorizationHeaderMalformed` for a wrong region,
//!   `InvalidArgument`, `EntityTooLarge`, `NoSuchBucket`, …).

use quick_xml::events::Event;

/// Whether trying the same request again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Retry,
    Final,
}

/// Codes that mean "not now" whatever HTTP status carries them (S3 sends
/// `RequestTimeout` as a 400, `OperationAborted` as a 409).
const PASSING_CODES: &[&str] = &[
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "Throttling",
    "ThrottlingException",
];

/// The class of an answer with HTTP `status` and S3 error `code`; `status`
/// is `None` when no answer came (connection failure, timeout).
pub fn classify(status: Option<u16>, code: Option<&str>) -> Class {
    if code.is_some_and(|c| PASSING_CODES.contains(&c)) {
        return Class::Retry;
    }
    match status {
        None => Class::Retry,
        Some(s) if s >= 500 || s == 408 || s == 429 => Class::Retry,
        Some(_) => Class::Final,
    }
}

/// The code and message of an error body; either is `None` when absent
/// (or the body is not XML).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl ErrorBody {
    /// Reads `<Code>` and `<Message>` (the first of each, at any depth),
    /// whole: text pieces, CDATA, and entity and character references are
    /// joined. A document that turns out broken keeps what was read.
    pub fn parse(body: &[u8]) -> ErrorBody {
        let mut reader = quick_xml::Reader::from_reader(body);
        let mut out = ErrorBody::default();
        // The field being read and its text so far.
        let mut open: Option<(bool, String)> = None;
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) => {
                    open = match e.local_name().as_ref() {
                        b"Code" if out.code.is_none() => Some((true, String::new())),
                        b"Message" if out.message.is_none() => Some((false, String::new())),
                        _ => None,
                    }
                }
                Ok(Event::Text(t)) => {
                    if let (Some((_, text)), Ok(piece)) = (open.as_mut(), t.decode()) {
                        text.push_str(&piece);
                    }
                }
                Ok(Event::CData(t)) => {
                    if let (Some((_, text)), Ok(piece)) = (open.as_mut(), t.decode()) {
                        text.push_str(&piece);
                    }
                }
                Ok(Event::GeneralRef(r)) => {
                    if let Some((_, text)) = open.as_mut() {
                        match r.resolve_char_ref() {
                            Ok(Some(c)) => text.push(c),
                            _ => {
                                let name = r.decode().unwrap_or_default();
                                match quick_xml::escape::resolve_predefined_entity(&name) {
                                    Some(s) => text.push_str(s),
                                    // An unknown entity stays as written.
                                    None => {
                                        text.push('&');
                                        text.push_str(&name);
                                        text.push(';');
                                    }
                                }
                            }
                        }
                    }
                }
                Ok(Event::End(_)) => {
                    match open.take() {
                        Some((true, text)) => out.code = Some(text),
                        Some((false, text)) => out.message = Some(text),
                        None => {}
                    }
                    if out.code.is_some() && out.message.is_some() {
                        return out;
                    }
                }
                Ok(Event::Eof) | Err(_) => return out,
                Ok(_) => {}
            }
        }
    }
}

/// A code as a metric label: what S3 sent when it is a plain identifier
/// (letters and digits, as S3 codes are), else `HTTP_<status>`; a
/// misbehaving server cannot put arbitrary text into `/metrics`.
pub fn metric_code(code: Option<&str>, status: Option<u16>) -> String {
    match code {
        Some(c)
            if !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            c.to_owned()
        }
        _ => match status {
            Some(s) => format!("HTTP_{s}"),
            None => "transport".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_classed() {
        for (status, code) in [
            (None, None),
            (Some(500), Some("InternalError")),
            (Some(503), Some("SlowDown")),
            (Some(503), None),
            (Some(502), None),
            (Some(408), None),
            (Some(429), None),
            (Some(400), Some("RequestTimeout")),
            (Some(409), Some("OperationAborted")),
        ] {
            assert_eq!(classify(status, code), Class::Retry, "{status:?} {code:?}");
        }
        for (status, code) in [
            (Some(301), Some("PermanentRedirect")),
            (Some(307), None),
            (Some(400), Some("AuthorizationHeaderMalformed")),
            (Some(400), Some("InvalidArgument")),
            (Some(400), Some("EntityTooLarge")),
            (Some(403), Some("AccessDenied")),
            (Some(403), Some("SignatureDoesNotMatch")),
            (Some(403), Some("InvalidAccessKeyId")),
            (Some(404), Some("NoSuchBucket")),
            (Some(404), None),
            (Some(412), Some("PreconditionFailed")),
        ] {
            assert_eq!(classify(status, code), Class::Final, "{status:?} {code:?}");
        }
    }

    #[test]
    fn error_bodies_are_read_whole() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Tom &amp; Jerry&#39;s key &lt;GK1&gt; &#x263A; <![CDATA[x<y]]> &unknown;</Message><Resource>/m/k</Resource></Error>"#;
        assert_eq!(
            ErrorBody::parse(body),
            ErrorBody {
                code: Some("AccessDenied".into()),
                message: Some("Tom & Jerry's key <GK1> \u{263A} x<y &unknown;".into()),
            }
        );
        assert_eq!(ErrorBody::parse(b"not xml <"), ErrorBody::default());
        assert_eq!(ErrorBody::parse(b""), ErrorBody::default());
        // Only the first Code counts; an empty element is an empty text.
        let two = b"<Error><Code>A</Code><Code>B</Code><Message></Message></Error>";
        assert_eq!(
            ErrorBody::parse(two),
            ErrorBody {
                code: Some("A".into()),
                message: Some(String::new()),
            }
        );
    }

    #[test]
    fn metric_labels_are_plain_identifiers() {
        assert_eq!(metric_code(Some("SlowDown"), Some(503)), "SlowDown");
        assert_eq!(metric_code(Some("a\"}b"), Some(400)), "HTTP_400");
        assert_eq!(metric_code(None, Some(403)), "HTTP_403");
        assert_eq!(metric_code(None, None), "transport");
    }
}
