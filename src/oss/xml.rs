//! The XML of the LiveChannel API: the one request body
//! (`LiveChannelConfiguration`, PutLiveChannel) and every response body.
//!
//! # Parsing: strict, hand-driven
//!
//! [`parse_config`] drives quick-xml's pull [`Reader`] by hand rather than
//! deriving serde: the grammar is tiny and fixed, and driving it ourselves
//! lets every refusal say what was wrong and land on the right OSS code —
//! [`OssError::MalformedXml`] for a document that is not well-formed or not
//! this document (wrong root, unknown or repeated element, text where an
//! element belongs, a required element missing, a DTD), and
//! [`OssError::InvalidArgument`] for a well-formed document with a bad value
//! (from [`LiveChannelConfig::validate`]). A body over [`MAX_CONFIG_BYTES`] is
//! [`OssError::EntityTooLarge`].
//!
//! Accepted: UTF-8 (optional BOM, optional `<?xml …?>` declaring UTF-8),
//! comments, whitespace between elements, child elements in any order, empty
//! optional elements meaning "default" (oss2 sends `<Description />` and
//! `<PlaylistName />` by default), entity and character references, CDATA.
//! Refused: DTDs and processing instructions (no entity expansion games),
//! elements in leaf values, any element not in OSS's schema or livebucket's
//! extensions (`Target/LowLatency`, `RetentionSeconds`,
//! `LivebucketRenditions`). Attributes are
//! ignored. Leaf values are taken exactly as written (no trimming), so
//! `<FragCount> 3</FragCount>` is an `InvalidArgument`.
//!
//! # Rendering: what oss2's parsers read
//!
//! The `render_*` functions write the response documents with OSS's element
//! names and order (checked against `oss2/xml_utils.py`'s
//! `parse_create_live_channel`, `parse_get_live_channel`,
//! `parse_list_live_channel`, `parse_live_channel_stat`,
//! `parse_live_channel_history` and `exceptions._parse_error_body`, and the
//! API reference's examples), times as `2016-08-25T06:25:15.000Z` (oss2's
//! `iso8601_to_unixtime` insists on `.000Z`), and an
//! `<?xml version="1.0" encoding="UTF-8"?>` declaration. Rendering is
//! infallible and always well-formed: text is escaped, and characters XML
//! cannot carry are replaced by U+FFFD.

use quick_xml::events::{BytesRef, Event};
use quick_xml::reader::Reader;
use time::OffsetDateTime;

use super::channel::{
    ChannelStat, ChannelStatus, DEFAULT_FRAG_COUNT, DEFAULT_FRAG_DURATION, DEFAULT_PLAYLIST_NAME,
    HlsTarget, LiveChannelConfig, LiveRecord, MAX_RETENTION_SECS, Renditions, Snapshot,
    is_xml_char,
};
use super::error::{ErrorParts, OssError};

/// Largest PutLiveChannel body accepted; a real one is under 1 KiB.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

const ROOT: &str = "LiveChannelConfiguration";
const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Parses and validates a PutLiveChannel body.
pub fn parse_config(body: &[u8]) -> Result<LiveChannelConfig, OssError> {
    if body.len() > MAX_CONFIG_BYTES {
        return Err(OssError::EntityTooLarge {
            max: MAX_CONFIG_BYTES,
        });
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|_| malformed("the body is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    config.check_comments = true;
    let mut p = Parser { reader };
    p.prolog()?;
    let raw = p.configuration()?;
    p.epilog()?;
    let config = raw.into_config()?;
    config.validate()?;
    Ok(config)
}

fn malformed(message: impl Into<String>) -> OssError {
    OssError::MalformedXml(message.into())
}

fn invalid(message: impl Into<String>) -> OssError {
    OssError::InvalidArgument(message.into())
}

/// An element name as shown in a message: at most 64 characters.
fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_owned(),
    }
}

/// What a container element holds next.
enum Item {
    Open(String),
    Close,
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn event(&mut self) -> Result<Event<'a>, OssError> {
        self.reader
            .read_event()
            .map_err(|e| malformed(format!("the body is not well-formed XML ({e})")))
    }

    /// Up to and including the root's start tag.
    fn prolog(&mut self) -> Result<(), OssError> {
        let mut first = true;
        loop {
            match self.event()? {
                Event::Decl(d) if first => {
                    let encoding = d
                        .encoding()
                        .transpose()
                        .map_err(|_| malformed("the XML declaration's encoding is unreadable"))?;
                    if encoding.is_some_and(|e| !e.eq_ignore_ascii_case(b"utf-8")) {
                        return Err(malformed("the body must be UTF-8"));
                    }
                }
                Event::Comment(_) => {}
                Event::Text(t) if is_blank(&t) => {}
                Event::Start(e) => {
                    let name = element_name(e.name().as_ref());
                    return if name == ROOT {
                        Ok(())
                    } else {
                        Err(malformed(format!(
                            "the root element is <{}>, not <{ROOT}>",
                            shown(&name)
                        )))
                    };
                }
                Event::Eof => return Err(malformed(format!("the body has no <{ROOT}>"))),
                Event::DocType(_) => return Err(malformed("DOCTYPE is not allowed")),
                Event::PI(_) => return Err(malformed("processing instructions are not allowed")),
                _ => return Err(malformed(format!("unexpected content before <{ROOT}>"))),
            }
            first = false;
        }
    }

    /// After the root's end tag: only comments and whitespace.
    fn epilog(&mut self) -> Result<(), OssError> {
        loop {
            match self.event()? {
                Event::Eof => return Ok(()),
                Event::Comment(_) => {}
                Event::Text(t) if is_blank(&t) => {}
                _ => return Err(malformed(format!("unexpected content after </{ROOT}>"))),
            }
        }
    }

    /// The next child of container `parent`, or its end.
    fn item(&mut self, parent: &str) -> Result<Item, OssError> {
        loop {
            match self.event()? {
                Event::Start(e) => return Ok(Item::Open(element_name(e.name().as_ref()))),
                Event::End(_) => return Ok(Item::Close),
                Event::Comment(_) => {}
                Event::Text(t) if is_blank(&t) => {}
                Event::Eof => return Err(malformed(format!("<{parent}> is not closed"))),
                _ => return Err(malformed(format!("<{parent}> must contain only elements"))),
            }
        }
    }

    /// The text of a leaf element whose start tag was just read.
    fn text(&mut self, name: &str) -> Result<String, OssError> {
        let mut out = String::new();
        loop {
            match self.event()? {
                Event::Text(t) => out.push_str(
                    &t.xml10_content()
                        .map_err(|_| malformed(format!("<{name}> is not UTF-8")))?,
                ),
                Event::CData(c) => out.push_str(
                    &c.xml10_content()
                        .map_err(|_| malformed(format!("<{name}> is not UTF-8")))?,
                ),
                Event::GeneralRef(r) => out.push(resolve_reference(&r, name)?),
                Event::Comment(_) => {}
                Event::End(_) => return Ok(out),
                Event::Eof => return Err(malformed(format!("<{name}> is not closed"))),
                _ => return Err(malformed(format!("<{name}> must contain only text"))),
            }
        }
    }

    fn configuration(&mut self) -> Result<RawConfig, OssError> {
        let mut raw = RawConfig::default();
        while let Item::Open(name) = self.item(ROOT)? {
            match name.as_str() {
                "Description" => once(&mut raw.description, &name, |p| p.text(&name), self)?,
                "Status" => once(&mut raw.status, &name, |p| p.text(&name), self)?,
                "Target" => once(&mut raw.target, &name, Parser::target, self)?,
                "Snapshot" => once(&mut raw.snapshot, &name, Parser::snapshot, self)?,
                "RetentionSeconds" => {
                    once(&mut raw.retention_secs, &name, |p| p.text(&name), self)?;
                }
                "LivebucketRenditions" => {
                    once(&mut raw.renditions, &name, |p| p.text(&name), self)?;
                }
                other => {
                    return Err(malformed(format!(
                        "unknown element <{}> in <{ROOT}>",
                        shown(other)
                    )));
                }
            }
        }
        Ok(raw)
    }

    fn target(&mut self) -> Result<RawTarget, OssError> {
        let mut raw = RawTarget::default();
        while let Item::Open(name) = self.item("Target")? {
            let slot = match name.as_str() {
                "Type" => &mut raw.kind,
                "FragDuration" => &mut raw.frag_duration,
                "FragCount" => &mut raw.frag_count,
                "PlaylistName" => &mut raw.playlist_name,
                "LowLatency" => &mut raw.low_latency,
                other => {
                    return Err(malformed(format!(
                        "unknown element <{}> in <Target>",
                        shown(other)
                    )));
                }
            };
            once(slot, &name, |p| p.text(&name), self)?;
        }
        Ok(raw)
    }

    fn snapshot(&mut self) -> Result<RawSnapshot, OssError> {
        let mut raw = RawSnapshot::default();
        while let Item::Open(name) = self.item("Snapshot")? {
            let slot = match name.as_str() {
                "RoleName" => &mut raw.role_name,
                "DestBucket" => &mut raw.dest_bucket,
                "NotifyTopic" => &mut raw.notify_topic,
                "Interval" => &mut raw.interval,
                other => {
                    return Err(malformed(format!(
                        "unknown element <{}> in <Snapshot>",
                        shown(other)
                    )));
                }
            };
            once(slot, &name, |p| p.text(&name), self)?;
        }
        Ok(raw)
    }
}

/// Fills `slot` with `parse`'s result, refusing a second occurrence.
fn once<'a, T>(
    slot: &mut Option<T>,
    name: &str,
    parse: impl FnOnce(&mut Parser<'a>) -> Result<T, OssError>,
    parser: &mut Parser<'a>,
) -> Result<(), OssError> {
    if slot.is_some() {
        return Err(malformed(format!("<{name}> appears more than once")));
    }
    *slot = Some(parse(parser)?);
    Ok(())
}

fn element_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn is_blank(text: &[u8]) -> bool {
    text.iter().all(u8::is_ascii_whitespace)
}

/// `&amp;`-style and `&#…;` references; the character must be one XML allows.
fn resolve_reference(r: &BytesRef<'_>, element: &str) -> Result<char, OssError> {
    let bad = || {
        malformed(format!(
            "<{element}> has an invalid character or entity reference"
        ))
    };
    if let Some(c) = r.resolve_char_ref().map_err(|_| bad())? {
        let legal = matches!(c, '\t' | '\n' | '\r')
            || matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
        return if legal { Ok(c) } else { Err(bad()) };
    }
    let name = r.decode().map_err(|_| bad())?;
    quick_xml::escape::resolve_xml_entity(&name)
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)
}

#[derive(Default)]
struct RawConfig {
    description: Option<String>,
    status: Option<String>,
    target: Option<RawTarget>,
    snapshot: Option<RawSnapshot>,
    retention_secs: Option<String>,
    renditions: Option<String>,
}

#[derive(Default)]
struct RawTarget {
    kind: Option<String>,
    frag_duration: Option<String>,
    frag_count: Option<String>,
    playlist_name: Option<String>,
    low_latency: Option<String>,
}

#[derive(Default)]
struct RawSnapshot {
    role_name: Option<String>,
    dest_bucket: Option<String>,
    notify_topic: Option<String>,
    interval: Option<String>,
}

/// An optional leaf: absent and empty both mean "default".
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// A decimal integer field; the range is [`LiveChannelConfig::validate`]'s.
fn integer(field: &str, text: &str) -> Result<u32, OssError> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{field} must be an integer from 1 to 100")));
    }
    text.parse()
        .map_err(|_| invalid(format!("{field} must be an integer from 1 to 100")))
}

impl RawConfig {
    fn into_config(self) -> Result<LiveChannelConfig, OssError> {
        let status = match given(self.status) {
            None => ChannelStatus::Enabled,
            Some(s) => ChannelStatus::parse(&s)
                .ok_or_else(|| invalid("Status must be enabled or disabled"))?,
        };
        let target = self
            .target
            .ok_or_else(|| malformed(format!("<{ROOT}> has no <Target>")))?;
        let kind = target
            .kind
            .ok_or_else(|| malformed("<Target> has no <Type>"))?;
        if kind != "HLS" {
            return Err(invalid("Target/Type must be HLS"));
        }
        let target = HlsTarget {
            frag_duration: given(target.frag_duration)
                .map(|t| integer("Target/FragDuration", &t))
                .transpose()?
                .unwrap_or(DEFAULT_FRAG_DURATION),
            frag_count: given(target.frag_count)
                .map(|t| integer("Target/FragCount", &t))
                .transpose()?
                .unwrap_or(DEFAULT_FRAG_COUNT),
            playlist_name: given(target.playlist_name)
                .unwrap_or_else(|| DEFAULT_PLAYLIST_NAME.to_owned()),
            low_latency: match given(target.low_latency).as_deref() {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => return Err(invalid("Target/LowLatency must be true or false")),
            },
        };
        let snapshot = match self.snapshot {
            None => None,
            Some(s) => {
                let need = |v: Option<String>, name: &str| {
                    v.ok_or_else(|| malformed(format!("<Snapshot> has no <{name}>")))
                };
                Some(Snapshot {
                    role_name: need(s.role_name, "RoleName")?,
                    dest_bucket: need(s.dest_bucket, "DestBucket")?,
                    notify_topic: need(s.notify_topic, "NotifyTopic")?,
                    interval: integer("Snapshot/Interval", &need(s.interval, "Interval")?)?,
                })
            }
        };
        let retention_secs = given(self.retention_secs)
            .map(|t| {
                let bad = || {
                    invalid(format!(
                        "RetentionSeconds must be an integer from 0 (keep forever) to {MAX_RETENTION_SECS}"
                    ))
                };
                if t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                t.parse::<u64>().map_err(|_| bad())
            })
            .transpose()?;
        Ok(LiveChannelConfig {
            description: self.description.unwrap_or_default(),
            status,
            target,
            snapshot,
            retention_secs,
            renditions: self.renditions.as_deref().and_then(Renditions::parse),
        })
    }
}

/// A document under construction; see the module doc for the guarantees.
struct Doc(String);

impl Doc {
    fn new(root: &str) -> Doc {
        let mut d = Doc(String::with_capacity(512));
        d.0.push_str(DECLARATION);
        d.0.push('\n');
        d.open(root);
        d
    }

    fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
    }

    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.open(name);
        let clean: String = text
            .chars()
            .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
            .collect();
        self.0
            .push_str(&quick_xml::escape::partial_escape(clean.as_str()));
        self.close(name);
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.0
    }
}

/// `2016-08-25T06:25:15.000Z`; times outside years 1970–9999 are clamped.
pub fn iso8601(unix: i64) -> String {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    OffsetDateTime::from_unix_timestamp(unix.clamp(0, MAX)).map_or_else(
        |_| "1970-01-01T00:00:00.000Z".to_owned(),
        |t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        },
    )
}

/// PutLiveChannel's answer.
pub fn render_create_result(publish_url: &str, play_url: &str) -> String {
    let mut d = Doc::new("CreateLiveChannelResult");
    urls(&mut d, publish_url, play_url);
    d.finish("CreateLiveChannelResult")
}

fn urls(d: &mut Doc, publish_url: &str, play_url: &str) {
    d.open("PublishUrls");
    d.leaf("Url", publish_url);
    d.close("PublishUrls");
    d.open("PlayUrls");
    d.leaf("Url", play_url);
    d.close("PlayUrls");
}

/// GetLiveChannelInfo's answer: the configuration, as PutLiveChannel takes it.
pub fn render_info(config: &LiveChannelConfig) -> String {
    let mut d = Doc::new(ROOT);
    d.leaf("Description", &config.description);
    d.leaf("Status", config.status.as_str());
    d.open("Target");
    d.leaf("Type", "HLS");
    d.leaf("FragDuration", &config.target.frag_duration.to_string());
    d.leaf("FragCount", &config.target.frag_count.to_string());
    d.leaf("PlaylistName", &config.target.playlist_name);
    if let Some(on) = config.target.low_latency {
        d.leaf("LowLatency", if on { "true" } else { "false" });
    }
    d.close("Target");
    if let Some(s) = &config.snapshot {
        d.open("Snapshot");
        d.leaf("RoleName", &s.role_name);
        d.leaf("DestBucket", &s.dest_bucket);
        d.leaf("NotifyTopic", &s.notify_topic);
        d.leaf("Interval", &s.interval.to_string());
        d.close("Snapshot");
    }
    // livebucket's extension, after OSS's own elements (OSS clients skip
    // elements they do not know).
    if let Some(secs) = config.retention_secs {
        d.leaf("RetentionSeconds", &secs.to_string());
    }
    if let Some(r) = &config.renditions {
        d.leaf("LivebucketRenditions", &r.to_text());
    }
    d.finish(ROOT)
}

/// One channel of a ListLiveChannel page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedChannel {
    pub name: String,
    pub description: String,
    pub status: ChannelStatus,
    /// Unix seconds.
    pub last_modified: i64,
    pub publish_url: String,
    pub play_url: String,
}

/// A ListLiveChannel page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult<'a> {
    pub prefix: &'a str,
    pub marker: &'a str,
    pub max_keys: u16,
    /// `Some` exactly when the listing is truncated.
    pub next_marker: Option<&'a str>,
    pub channels: &'a [ListedChannel],
}

/// ListLiveChannel's answer. `NextMarker` is written only when truncated
/// (oss2 reads it only then).
pub fn render_list(list: &ListResult<'_>) -> String {
    let root = "ListLiveChannelResult";
    let mut d = Doc::new(root);
    d.leaf("Prefix", list.prefix);
    d.leaf("Marker", list.marker);
    d.leaf("MaxKeys", &list.max_keys.to_string());
    d.leaf(
        "IsTruncated",
        if list.next_marker.is_some() {
            "true"
        } else {
            "false"
        },
    );
    if let Some(next) = list.next_marker {
        d.leaf("NextMarker", next);
    }
    for c in list.channels {
        d.open("LiveChannel");
        d.leaf("Name", &c.name);
        d.leaf("Description", &c.description);
        d.leaf("Status", c.status.as_str());
        d.leaf("LastModified", &iso8601(c.last_modified));
        urls(&mut d, &c.publish_url, &c.play_url);
        d.close("LiveChannel");
    }
    d.finish(root)
}

/// GetLiveChannelStat's answer: `ConnectedTime`, `RemoteAddr`, `Video` and
/// `Audio` only when `Live` (and the latter two once known), then, while
/// uploads of the channel are parked, livebucket's extension element
/// `LivebucketParkedUploads` (`Count`, `Code`, `Since`) last, where OSS's
/// parsers (which look up the elements they know by name) ignore it.
pub fn render_stat(stat: &ChannelStat) -> String {
    let root = "LiveChannelStat";
    let mut d = Doc::new(root);
    d.leaf("Status", stat.status().as_str());
    if let Some(s) = stat.session() {
        d.leaf("ConnectedTime", &iso8601(s.connected));
        d.leaf("RemoteAddr", &s.remote_addr);
        if let Some(v) = &s.video {
            d.open("Video");
            d.leaf("Width", &v.width.to_string());
            d.leaf("Height", &v.height.to_string());
            d.leaf("FrameRate", &v.frame_rate.to_string());
            d.leaf("Bandwidth", &v.bandwidth.to_string());
            d.leaf("Codec", &v.codec);
            d.close("Video");
        }
        if let Some(a) = &s.audio {
            d.open("Audio");
            d.leaf("Bandwidth", &a.bandwidth.to_string());
            d.leaf("SampleRate", &a.sample_rate.to_string());
            d.leaf("Codec", &a.codec);
            d.close("Audio");
        }
    }
    if let Some(p) = stat.parked() {
        d.open("LivebucketParkedUploads");
        d.leaf("Count", &p.uploads.to_string());
        d.leaf("Code", &p.code);
        d.leaf("Since", &iso8601(p.since));
        d.close("LivebucketParkedUploads");
    }
    d.finish(root)
}

/// GetLiveChannelHistory's answer, records in the order given (oldest first).
pub fn render_history(records: &[LiveRecord]) -> String {
    let root = "LiveChannelHistory";
    let mut d = Doc::new(root);
    for r in records {
        d.open("LiveRecord");
        d.leaf("StartTime", &iso8601(r.start));
        d.leaf("EndTime", &iso8601(r.end));
        d.leaf("RemoteAddr", &r.remote_addr);
        d.close("LiveRecord");
    }
    d.finish(root)
}

/// OSS's error document for `parts` ([`OssError::parts`]).
pub fn render_error(parts: &ErrorParts, request_id: &str, host_id: &str) -> String {
    let mut d = Doc::new("Error");
    d.leaf("Code", parts.code);
    d.leaf("Message", &parts.message);
    d.leaf("RequestId", request_id);
    d.leaf("HostId", host_id);
    d.finish("Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_format_and_clamping() {
        assert_eq!(iso8601(1_472_109_915), "2016-08-25T07:25:15.000Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(i64::MAX), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn integers_are_plain_decimal() {
        assert_eq!(integer("f", "5"), Ok(5));
        assert_eq!(integer("f", "0100"), Ok(100));
        for bad in ["", " 5", "5 ", "+5", "-1", "5.0", "0x10", "9999999999"] {
            assert!(
                matches!(integer("f", bad), Err(OssError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn long_names_are_shortened_in_messages() {
        assert_eq!(shown("Target"), "Target");
        let long = "é".repeat(100);
        assert_eq!(shown(&long).chars().count(), 65);
    }

    #[test]
    fn rendered_text_is_always_well_formed() {
        let mut d = Doc::new("R");
        d.leaf("T", "a<b>&c\u{0}\u{1b}\r\u{FFFF}\"'");
        assert_eq!(
            d.finish("R"),
            format!(
                "{DECLARATION}\n<R><T>a&lt;b&gt;&amp;c\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\"'</T></R>"
            )
        );
    }

    #[test]
    fn retention_seconds_round_trips_and_is_checked() {
        let doc =
            |extra: &str| format!("<{ROOT}><Target><Type>HLS</Type></Target>{extra}</{ROOT}>");
        let parsed = parse_config(doc("<RetentionSeconds>86400</RetentionSeconds>").as_bytes())
            .expect("parses");
        assert_eq!(parsed.retention_secs, Some(86_400));
        let again = parse_config(render_info(&parsed).as_bytes()).expect("round trip");
        assert_eq!(again, parsed);
        let forever = parse_config(doc("<RetentionSeconds>0</RetentionSeconds>").as_bytes());
        assert_eq!(forever.ok().map(|c| c.retention_secs), Some(Some(0)));
        let absent = parse_config(doc("").as_bytes()).expect("parses");
        assert_eq!(absent.retention_secs, None);
        assert!(!render_info(&absent).contains("Retention"));
        for bad in ["-1", "1.5", "x", "99999999999999"] {
            let refused = parse_config(
                doc(&format!("<RetentionSeconds>{bad}</RetentionSeconds>")).as_bytes(),
            );
            assert!(
                matches!(refused, Err(OssError::InvalidArgument(_))),
                "{bad}: {refused:?}"
            );
        }
    }

    #[test]
    fn livebucket_renditions_round_trips_and_is_checked() {
        let doc =
            |extra: &str| format!("<{ROOT}><Target><Type>HLS</Type></Target>{extra}</{ROOT}>");
        let parsed =
            parse_config(doc("<LivebucketRenditions>720p,360p</LivebucketRenditions>").as_bytes())
                .expect("parses");
        assert_eq!(
            parsed.renditions,
            Some(Renditions::Rungs(vec!["720p".into(), "360p".into()]))
        );
        assert!(render_info(&parsed).contains("<LivebucketRenditions>720p,360p<"));
        assert_eq!(parse_config(render_info(&parsed).as_bytes()), Ok(parsed));
        let none =
            parse_config(doc("<LivebucketRenditions>none</LivebucketRenditions>").as_bytes())
                .expect("parses");
        assert_eq!(none.renditions, Some(Renditions::None));
        assert_eq!(parse_config(render_info(&none).as_bytes()), Ok(none));
        let empty = parse_config(doc("<LivebucketRenditions/>").as_bytes()).expect("parses");
        assert_eq!(empty.renditions, None);
        assert!(!render_info(&empty).contains("Renditions"));
        for bad in ["720p, 360p", "720p,,360p", "a,a", "HD", "none,720p", ","] {
            let refused = parse_config(
                doc(&format!(
                    "<LivebucketRenditions>{bad}</LivebucketRenditions>"
                ))
                .as_bytes(),
            );
            assert!(
                matches!(refused, Err(OssError::InvalidArgument(_))),
                "{bad}: {refused:?}"
            );
        }
        let twice = parse_config(
            doc("<LivebucketRenditions>a</LivebucketRenditions><LivebucketRenditions>b</LivebucketRenditions>")
                .as_bytes(),
        );
        assert!(matches!(twice, Err(OssError::MalformedXml(_))), "{twice:?}");
    }
}
