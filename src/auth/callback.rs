//! nginx-rtmp's HTTP callbacks (`on_publish`, `on_update`, `on_publish_done`,
//! …): the form body, split into nginx's own fields and the client's query.
//!
//! nginx-rtmp 1.2.2 (`ngx_rtmp_notify_module.c`) writes
//! `app=..&flashver=..&swfurl=..&tcurl=..&pageurl=..&addr=..&clientid=..`,
//! then `&call=CALL` and that call's fields in a fixed order, then `&` and the
//! client's query **as the client sent it** (not re-escaped). nginx escapes
//! its own values, so none contains a raw `&`; the client controls everything
//! after them and may repeat nginx's keys.
//!
//! Invariants of a parsed [`Callback`]:
//! - nginx's fields are read by position right after `call` and by first
//!   occurrence before it, so a client's repeat can never replace them;
//! - a client parameter named like an nginx field is refused outright
//!   ([`Reject::OverrideAttempt`]), so no later reader can be confused either;
//! - every key and value is form-decoded (`+` is a space, then `%XX`) and
//!   valid UTF-8; the body is at most [`MAX_BODY_BYTES`].
//!
//! What the client's parameters mean is [`super::push`]'s business.

use percent_encoding::percent_decode;

use super::reject::Reject;

/// Longest body accepted. nginx keeps at most 255 bytes of `name?query`, and
/// its own fields are short, so real bodies are well below this.
pub(crate) const MAX_BODY_BYTES: usize = 4096;

/// Keys nginx-rtmp itself writes in some callback. A client parameter with one
/// of these names (in any letter case) is an attempt to override nginx.
pub(crate) const NGINX_FIELDS: &[&str] = &[
    "app",
    "flashver",
    "swfurl",
    "tcurl",
    "pageurl",
    "addr",
    "clientid",
    "call",
    "name",
    "type",
    "time",
    "timestamp",
    "epoch",
    "start",
    "duration",
    "reset",
];

/// One callback: nginx's fields (trusted) and the client's query (not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Callback {
    /// `publish`, `update_publish`, `publish_done`, `done`, `play`,
    /// `update_play` or `play_done`.
    pub call: String,
    pub app: String,
    /// Stream name without the query; empty if nginx sent none (it omits
    /// `name` in update and done callbacks of an unnamed stream).
    pub name: String,
    pub addr: String,
    pub clientid: String,
    pub tcurl: String,
    /// The client's query, decoded, in order, repeats kept.
    pub client: Vec<(String, String)>,
}

impl Callback {
    /// First value of client parameter `key`.
    pub(crate) fn client_param(&self, key: &str) -> Option<&str> {
        self.client
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Fields nginx writes after `call=CALL`, in order, before the client's query.
/// A trailing `name` in update and done callbacks is written only when the
/// stream has one, so it is optional there.
fn fields_after_call(call: &str) -> Option<(&'static [&'static str], bool)> {
    match call {
        "publish" => Some((&["name", "type"], false)),
        "play" => Some((&["name", "start", "duration", "reset"], false)),
        "update_publish" | "update_play" => Some((&["time", "timestamp"], true)),
        "publish_done" | "play_done" | "done" => Some((&[], true)),
        _ => None,
    }
}

/// Parses a callback body; see the module doc for what is guaranteed.
pub(crate) fn parse_callback(body: &[u8]) -> Result<Callback, Reject> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Reject::BodyTooLong {
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let pairs = body
        .split(|&b| b == b'&')
        .filter(|segment| !segment.is_empty())
        .map(decode_pair)
        .collect::<Result<Vec<_>, _>>()?;

    // nginx writes its session fields first and never a raw `&` inside them,
    // so the first `call` is nginx's and everything before it is nginx's.
    let call_at = pairs
        .iter()
        .position(|(k, _)| k == "call")
        .ok_or(Reject::MissingField("call"))?;
    let (session, rest) = pairs.split_at(call_at);
    let session_field = |key: &'static str| {
        session
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or(Reject::MissingField(key))
    };
    let app = session_field("app")?;
    let tcurl = session_field("tcurl")?;
    let addr = session_field("addr")?;
    let clientid = session_field("clientid")?;

    let (call_pair, after_call) = rest.split_first().ok_or(Reject::MissingField("call"))?;
    let call = call_pair.1.clone();
    let (fixed, optional_name) =
        fields_after_call(&call).ok_or_else(|| Reject::UnsupportedCall(call.clone()))?;

    let mut name = None;
    for (i, &expected) in fixed.iter().enumerate() {
        let (key, value) = after_call
            .get(i)
            .filter(|(k, _)| k == expected)
            .ok_or(Reject::MissingField(expected))?;
        if key == "name" {
            name = Some(value.clone());
        }
    }
    let mut client_at = fixed.len();
    if optional_name
        && let Some((_, value)) = after_call.get(client_at).filter(|(k, _)| k == "name")
    {
        name = Some(value.clone());
        client_at += 1;
    }

    let client = after_call.get(client_at..).unwrap_or_default().to_vec();
    if let Some((key, _)) = client
        .iter()
        .find(|(k, _)| NGINX_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(k)))
    {
        return Err(Reject::OverrideAttempt { field: key.clone() });
    }

    Ok(Callback {
        call,
        app,
        name: name.unwrap_or_default(),
        addr,
        clientid,
        tcurl,
        client,
    })
}

fn decode_pair(segment: &[u8]) -> Result<(String, String), Reject> {
    let (key, value) = match segment.iter().position(|&b| b == b'=') {
        Some(eq) => (&segment[..eq], &segment[eq + 1..]),
        None => (segment, &b""[..]),
    };
    let key = form_decode(key).map_err(|bytes| Reject::NotUtf8 {
        field: String::from_utf8_lossy(&bytes).into_owned(),
    })?;
    let value = form_decode(value).map_err(|_| Reject::NotUtf8 { field: key.clone() })?;
    Ok((key, value))
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, then `%XX`
/// escapes (a malformed escape stays literal, as in browsers). Returns the
/// decoded bytes on error so the caller can name the field.
fn form_decode(raw: &[u8]) -> Result<String, Vec<u8>> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&spaced).collect();
    String::from_utf8(bytes).map_err(|e| e.into_bytes())
}

/// Bodies as nginx-rtmp 1.2.2 writes them, for tests here and in `push`.
#[cfg(test)]
pub(crate) mod test_support {
    /// `ngx_escape_uri(.., NGX_ESCAPE_ARGS)`: space, `#`, `%`, `&`, `+`, `;`,
    /// `?`, controls and non-ASCII are escaped, the rest is kept.
    pub(crate) fn nginx_escape_args(s: &str) -> String {
        let mut out = String::new();
        for &b in s.as_bytes() {
            if b <= 0x20 || b >= 0x7f || b"#%&+;?".contains(&b) {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push(b as char);
            }
        }
        out
    }

    fn session(tcurl: &str) -> String {
        format!(
            "app=live&flashver={}&swfurl=&tcurl={}&pageurl=&addr=192.0.2.7&clientid=42",
            nginx_escape_args("FMLE/3.0 (compatible; FMSc/1.0)"),
            nginx_escape_args(tcurl),
        )
    }

    /// nginx keeps 255 bytes of the client's `name?query`, then splits it.
    fn cut(name: &str, query: &str) -> (String, String) {
        let full = if query.is_empty() {
            name.to_string()
        } else {
            format!("{name}?{query}")
        };
        let kept = &full.as_bytes()[..full.len().min(255)];
        let kept = String::from_utf8_lossy(kept).into_owned();
        match kept.split_once('?') {
            Some((n, q)) => (n.to_string(), q.to_string()),
            None => (kept, String::new()),
        }
    }

    fn with_query(mut body: String, query: &str) -> Vec<u8> {
        if !query.is_empty() {
            body.push('&');
            body.push_str(query);
        }
        body.into_bytes()
    }

    pub(crate) fn nginx_publish_body(tcurl: &str, name: &str, query: &str) -> Vec<u8> {
        let (name, query) = cut(name, query);
        let body = format!(
            "{}&call=publish&name={}&type=live",
            session(tcurl),
            nginx_escape_args(&name)
        );
        with_query(body, &query)
    }

    pub(crate) fn nginx_update_body(tcurl: &str, name: &str, query: &str) -> Vec<u8> {
        let (name, query) = cut(name, query);
        let mut body = format!(
            "{}&call=update_publish&time=30&timestamp=30017",
            session(tcurl)
        );
        if !name.is_empty() {
            body.push_str(&format!("&name={}", nginx_escape_args(&name)));
        }
        with_query(body, &query)
    }

    pub(crate) fn nginx_done_body(tcurl: &str, name: &str, query: &str) -> Vec<u8> {
        let (name, query) = cut(name, query);
        let mut body = format!("{}&call=publish_done", session(tcurl));
        if !name.is_empty() {
            body.push_str(&format!("&name={}", nginx_escape_args(&name)));
        }
        with_query(body, &query)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::test_support::*;
    use super::*;
    use crate::auth::push::{verify_publish, verify_update};
    use crate::config::{AccessKey, AuthConfig};
    use crate::sign::push::sign_rgw;

    const TCURL: &str = "rtmp://127.0.0.1:1935/live";

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_a_real_publish_body() {
        // Captured shape from nginx-rtmp 1.2.2 with OBS; the query is raw.
        let body = b"app=live&flashver=FMLE/3.0%20(compatible%3B%20FMSc/1.0)&swfurl=rtmp://127.0.0.1:1935/live&tcurl=rtmp://127.0.0.1:1935/live&pageurl=&addr=192.0.2.7&clientid=9&call=publish&name=cam1&type=live&Bucket=demo&AccessKeyId=GK123&Expires=1700000019&Signature=s6/O5Wh6ILI+VsEmD8ANWCsNoew=";
        let cb = parse_callback(body).unwrap();
        assert_eq!(cb.call, "publish");
        assert_eq!(cb.app, "live");
        assert_eq!(cb.name, "cam1");
        assert_eq!(cb.addr, "192.0.2.7");
        assert_eq!(cb.clientid, "9");
        assert_eq!(cb.tcurl, "rtmp://127.0.0.1:1935/live");
        assert_eq!(
            cb.client,
            pairs(&[
                ("Bucket", "demo"),
                ("AccessKeyId", "GK123"),
                ("Expires", "1700000019"),
                // raw `+` is a space after form decoding; `=` after the
                // first stays in the value
                ("Signature", "s6/O5Wh6ILI VsEmD8ANWCsNoew="),
            ])
        );
    }

    #[test]
    fn parses_update_and_done_bodies() {
        let cb = parse_callback(&nginx_update_body(TCURL, "cam1", "a=1")).unwrap();
        assert_eq!(
            (cb.call.as_str(), cb.name.as_str()),
            ("update_publish", "cam1")
        );
        assert_eq!(cb.client, pairs(&[("a", "1")]));

        let cb = parse_callback(&nginx_done_body(TCURL, "cam1", "a=1&b")).unwrap();
        assert_eq!(
            (cb.call.as_str(), cb.name.as_str()),
            ("publish_done", "cam1")
        );
        assert_eq!(cb.client, pairs(&[("a", "1"), ("b", "")]));

        // nginx omits `name` for an unnamed stream.
        let cb = parse_callback(&nginx_done_body(TCURL, "", "a=1")).unwrap();
        assert_eq!(cb.name, "");
        assert_eq!(cb.client, pairs(&[("a", "1")]));

        let body = b"app=live&flashver=&swfurl=&tcurl=rtmp://h/live&pageurl=&addr=1.2.3.4&clientid=3&call=play&name=cam1&start=4294965296&duration=0&reset=0&token=x";
        let cb = parse_callback(body).unwrap();
        assert_eq!((cb.call.as_str(), cb.name.as_str()), ("play", "cam1"));
        assert_eq!(cb.client, pairs(&[("token", "x")]));
    }

    #[test]
    fn nginx_fields_win_and_client_repeats_are_refused() {
        for attempt in [
            "name=other",
            "app=x",
            "tcurl=rtmp://evil.live.example.com/live",
            "type=record",
            "call=publish",
            "addr=127.0.0.1",
            "clientid=1",
            "Name=other",
            "n%61me=other",
            "TIMESTAMP=1",
            "epoch=1",
            "reset=1",
        ] {
            let body = nginx_publish_body(TCURL, "cam1", &format!("Bucket=demo&{attempt}"));
            let err = parse_callback(&body).unwrap_err();
            assert_eq!(err.code(), "override_attempt", "{attempt}");
        }
        // Same in update and done bodies, whose client part starts after `name`.
        let err = parse_callback(&nginx_update_body(TCURL, "cam1", "name=other")).unwrap_err();
        assert_eq!(err.code(), "override_attempt");
        let err = parse_callback(&nginx_done_body(TCURL, "cam1", "app=x")).unwrap_err();
        assert_eq!(err.code(), "override_attempt");
        // A name that looks like a query is escaped by nginx and stays a name.
        let cb = parse_callback(&nginx_publish_body(TCURL, "a&name=b", "")).unwrap();
        assert_eq!(cb.name, "a&name=b");
        assert!(cb.client.is_empty());
    }

    #[test]
    fn first_occurrence_wins_before_call() {
        // Not something nginx writes, but the rule must hold regardless.
        let body = b"app=live&app=evil&flashver=&swfurl=&tcurl=rtmp://h/live&pageurl=&addr=1.2.3.4&addr=5.6.7.8&clientid=3&call=publish&name=cam1&type=live";
        let cb = parse_callback(body).unwrap();
        assert_eq!(cb.app, "live");
        assert_eq!(cb.addr, "1.2.3.4");
    }

    #[test]
    fn missing_and_misplaced_fields() {
        let full = String::from_utf8(nginx_publish_body(TCURL, "cam1", "a=1")).unwrap();
        for field in ["app", "tcurl", "addr", "clientid"] {
            let body: Vec<&str> = full
                .split('&')
                .filter(|p| !p.starts_with(&format!("{field}=")))
                .collect();
            let err = parse_callback(body.join("&").as_bytes()).unwrap_err();
            assert_eq!(err, Reject::MissingField(field));
        }
        let err = parse_callback(b"app=live&name=cam1").unwrap_err();
        assert_eq!(err, Reject::MissingField("call"));
        // `type` before `name` is not what nginx writes.
        let swapped = full.replace("name=cam1&type=live", "type=live&name=cam1");
        assert_eq!(
            parse_callback(swapped.as_bytes()).unwrap_err(),
            Reject::MissingField("name")
        );
        let no_type = full.replace("&type=live", "");
        assert_eq!(
            parse_callback(no_type.as_bytes()).unwrap_err(),
            Reject::MissingField("type")
        );
        let other_call = full.replace("call=publish", "call=connect");
        assert_eq!(
            parse_callback(other_call.as_bytes()).unwrap_err().code(),
            "unsupported_call"
        );
        assert_eq!(
            parse_callback(b"").unwrap_err(),
            Reject::MissingField("call")
        );
    }

    #[test]
    fn percent_decoding() {
        let cb = parse_callback(&nginx_publish_body(
            TCURL,
            "caf%C3%A9+x",
            "k%20ey=v%2Bal+ue&%E2%82%AC=%41&bad=%zz%4&empty=&=noval&&",
        ))
        .unwrap();
        // nginx escaped the name's `%` and `+`, so it arrives literally.
        assert_eq!(cb.name, "caf%C3%A9+x");
        assert_eq!(
            cb.client,
            pairs(&[
                ("k ey", "v+al ue"),
                ("\u{20ac}", "A"),
                ("bad", "%zz%4"),
                ("empty", ""),
                ("", "noval"),
            ])
        );
    }

    #[test]
    fn non_utf8_is_refused_anywhere() {
        let mut raw = nginx_publish_body(TCURL, "cam1", "a=");
        raw.push(0xff);
        assert_eq!(parse_callback(&raw).unwrap_err().code(), "not_utf8");
        let encoded = nginx_publish_body(TCURL, "cam1", "a=%C3%28");
        assert_eq!(parse_callback(&encoded).unwrap_err().code(), "not_utf8");
        let key = nginx_publish_body(TCURL, "cam1", "%FF=1");
        assert_eq!(parse_callback(&key).unwrap_err().code(), "not_utf8");
        // In nginx's own part too (nginx escapes bytes >= 0x80 of a name).
        let name = b"app=live&flashver=&swfurl=&tcurl=t&pageurl=&addr=a&clientid=1&call=publish&name=%FF&type=live";
        assert_eq!(parse_callback(name).unwrap_err().code(), "not_utf8");
    }

    #[test]
    fn over_long_body_is_refused() {
        let body = nginx_publish_body(TCURL, "cam1", "");
        let mut long = body.clone();
        long.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES - body.len()));
        assert!(parse_callback(&long).is_ok());
        long.push(b'x');
        assert_eq!(parse_callback(&long).unwrap_err().code(), "body_too_long");
    }

    #[test]
    fn test_support_cuts_like_nginx() {
        let body = nginx_publish_body(TCURL, &"n".repeat(300), "a=1");
        let cb = parse_callback(&body).unwrap();
        assert_eq!(cb.name.len(), 255);
        assert!(cb.client.is_empty());
        assert_eq!(
            nginx_escape_args("a b#%&+;?é/:="),
            "a%20b%23%25%26%2B%3B%3F%C3%A9/:="
        );
    }

    fn valid_body() -> Vec<u8> {
        let sig = sign_rgw("0123456789abcdef", "demo", "cam1", 1_700_000_000).expect("sign");
        nginx_publish_body(
            TCURL,
            "cam1",
            &format!("Bucket=demo&AccessKeyId=GK123&Expires=1700000000&Signature={sig}"),
        )
    }

    fn keys() -> Vec<AccessKey> {
        vec![AccessKey {
            id: "GK123".into(),
            secret: "0123456789abcdef".into(),
            buckets: vec!["*".into()],
            disabled: false,
        }]
    }

    fn run_all(body: &[u8]) {
        let auth = AuthConfig {
            oss_live_domain: Some("live.example.com".into()),
            ..AuthConfig::default()
        };
        if let Ok(cb) = parse_callback(body) {
            let _ = verify_publish(&cb, &keys(), &auth, 1_700_000_000);
            let _ = verify_update(&cb, &keys(), &auth);
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Set(usize, u8),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Truncate(usize),
        Repeat(usize, usize),
    }

    fn apply(body: &mut Vec<u8>, m: &Mutation) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Set(i, b) => {
                if !body.is_empty() {
                    let i = i % body.len();
                    body[i] = *b;
                }
            }
            Mutation::Insert(i, bytes) => {
                let i = at(*i, body.len());
                body.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(*i, body.len());
                let end = (i + n).min(body.len());
                body.drain(i..end);
            }
            Mutation::Truncate(i) => body.truncate(at(*i, body.len())),
            Mutation::Repeat(i, n) => {
                let i = at(*i, body.len());
                let end = (i + n).min(body.len());
                let copy = body[i..end].to_vec();
                body.splice(end..end, copy);
            }
        }
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let interesting = prop_oneof![
            Just(b'&'),
            Just(b'='),
            Just(b'%'),
            Just(b'+'),
            Just(b'/'),
            Just(b'z'),
            Just(0xff),
            any::<u8>()
        ];
        prop_oneof![
            (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Set(i, b)),
            (
                any::<usize>(),
                prop_oneof![
                    Just(b"&name=x".to_vec()),
                    Just(b"&Signature=AAAA".to_vec()),
                    Just(b"&OSSAccessKeyId=GK123".to_vec()),
                    Just(b"&call=publish".to_vec()),
                    Just(b"%".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ]
            )
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<usize>(), 0usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 0usize..64).prop_map(|(i, n)| Mutation::Repeat(i, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            run_all(&body);
        }

        #[test]
        fn arbitrary_text_bodies_never_panic(body in "[a-zA-Z0-9&=%+/._:-]{0,400}") {
            run_all(body.as_bytes());
        }

        #[test]
        fn mutated_valid_bodies_never_panic(mutations in proptest::collection::vec(mutation(), 1..6)) {
            let mut body = valid_body();
            for m in &mutations {
                apply(&mut body, m);
            }
            run_all(&body);
        }
    }

    #[test]
    fn valid_body_verifies() {
        let cb = parse_callback(&valid_body()).unwrap();
        assert!(verify_publish(&cb, &keys(), &AuthConfig::default(), 1_700_000_000).is_ok());
    }
}
