//! The `rtmp_stat` page as data: the applications, their live streams,
//! clients and codec metadata, read with `quick-xml` from any bytes without
//! panicking (see the parent module for what the fields mean).
//!
//! Only the elements below are read, each at its exact place under
//! `<rtmp><server><application>`; everything else is skipped, so a newer
//! nginx-rtmp that adds elements still parses.
//!
//! ```text
//! application/name
//! application/live/stream/{name,time,bw_in,bw_video,bw_audio,publishing}
//! application/live/stream/client/{address,time,publishing}
//! application/live/stream/meta/video/{width,height,frame_rate,codec}
//! application/live/stream/meta/audio/{codec,sample_rate}
//! ```

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::StatError;

/// Deepest element nesting accepted (nginx's is 9).
const MAX_DEPTH: usize = 32;
/// Longest text kept from one element; longer text reads as unknown.
const MAX_TEXT: usize = 1024;

/// One `<application>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Application {
    pub name: String,
    /// `<live><stream>`s, in page order.
    pub streams: Vec<Stream>,
}

/// One `<live><stream>`; every number is `None` when absent or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    pub name: String,
    /// Milliseconds since the stream began.
    pub time_ms: Option<u64>,
    /// Bits per second over the last 10-second window.
    pub bw_in: Option<u64>,
    pub bw_video: Option<u64>,
    pub bw_audio: Option<u64>,
    pub clients: Vec<Client>,
    /// `None` when the stream has no publisher's codec data.
    pub meta: Option<Meta>,
    pub publishing: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub address: String,
    pub time_ms: Option<u64>,
    pub publishing: bool,
}

/// `<meta>`; nginx writes `0` for what it does not know, read here as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<u32>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub sample_rate: Option<u32>,
}

/// Parses an `rtmp_stat` page (see the module doc for what is refused).
pub fn parse(xml: &[u8]) -> Result<Vec<Application>, StatError> {
    let text = String::from_utf8_lossy(xml);
    let mut reader = Reader::from_str(&text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    let mut p = PageParser::default();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| StatError::Parse(format!("not well-formed XML ({e})")))?;
        match event {
            Event::Start(e) => p.open(&String::from_utf8_lossy(e.name().as_ref()))?,
            Event::End(_) => p.close(),
            Event::Text(t) => {
                let text = t.xml10_content().unwrap_or_default();
                p.text(&text);
            }
            Event::CData(c) => {
                let text = c.xml10_content().unwrap_or_default();
                p.text(&text);
            }
            Event::GeneralRef(r) => {
                let c = r.resolve_char_ref().ok().flatten().or_else(|| {
                    let name = r.decode().ok()?;
                    quick_xml::escape::resolve_xml_entity(&name)?.chars().next()
                });
                p.text(
                    c.unwrap_or(char::REPLACEMENT_CHARACTER)
                        .encode_utf8(&mut [0; 4]),
                );
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !p.seen_root {
        return Err(StatError::Parse("no <rtmp> element".into()));
    }
    Ok(p.apps)
}

/// The state of a pass over the page: the open elements and the entries
/// being filled.
#[derive(Default)]
struct PageParser {
    path: Vec<String>,
    text: String,
    text_overflow: bool,
    seen_root: bool,
    apps: Vec<Application>,
    app: Option<Application>,
    stream: Option<Stream>,
    client: Option<Client>,
}

/// Where an element sits, relative to the entry it fills.
#[derive(PartialEq, Eq)]
enum Place<'a> {
    Application,
    AppField(&'a str),
    Stream,
    StreamField(&'a str),
    Client,
    ClientField(&'a str),
    Meta,
    MetaField(&'a str, &'a str),
    Other,
}

fn place(path: &[String]) -> Place<'_> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["rtmp", "server", "application"] => Place::Application,
        ["rtmp", "server", "application", f] => Place::AppField(f),
        ["rtmp", "server", "application", "live", "stream"] => Place::Stream,
        ["rtmp", "server", "application", "live", "stream", "client"] => Place::Client,
        [
            "rtmp",
            "server",
            "application",
            "live",
            "stream",
            "client",
            f,
        ] => Place::ClientField(f),
        ["rtmp", "server", "application", "live", "stream", "meta"] => Place::Meta,
        [
            "rtmp",
            "server",
            "application",
            "live",
            "stream",
            "meta",
            kind,
            f,
        ] => Place::MetaField(kind, f),
        ["rtmp", "server", "application", "live", "stream", f] => Place::StreamField(f),
        _ => Place::Other,
    }
}

impl PageParser {
    fn open(&mut self, name: &str) -> Result<(), StatError> {
        if self.path.is_empty() {
            if self.seen_root || name != "rtmp" {
                return Err(StatError::Parse(
                    "the root element is not a single <rtmp>".into(),
                ));
            }
            self.seen_root = true;
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(StatError::Parse(format!(
                "elements nested deeper than {MAX_DEPTH}"
            )));
        }
        self.path.push(name.to_owned());
        self.text.clear();
        self.text_overflow = false;
        match place(&self.path) {
            Place::Application => self.app = Some(Application::default()),
            Place::Stream if self.app.is_some() => self.stream = Some(Stream::default()),
            Place::Client if self.stream.is_some() => self.client = Some(Client::default()),
            Place::Meta => {
                if let Some(s) = self.stream.as_mut() {
                    s.meta.get_or_insert_default();
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str) {
        if self.text.len() + text.len() > MAX_TEXT {
            self.text_overflow = true;
        } else {
            self.text.push_str(text);
        }
    }

    /// The text of the element being closed, `None` if it overflowed.
    fn value(&self) -> Option<&str> {
        (!self.text_overflow).then(|| self.text.trim())
    }

    fn number<T: std::str::FromStr>(&self) -> Option<T> {
        self.value()?.parse().ok()
    }

    /// nginx writes `0` for an unknown size, rate or frame rate.
    fn known(&self) -> Option<u32> {
        self.number().filter(|&n: &u32| n > 0)
    }

    fn close(&mut self) {
        match place(&self.path) {
            Place::Application => {
                if let Some(app) = self.app.take() {
                    self.apps.push(app);
                }
            }
            Place::AppField("name") => {
                let value = self.value().map(str::to_owned);
                if let (Some(app), Some(v)) = (self.app.as_mut(), value) {
                    app.name = v;
                }
            }
            Place::Stream => {
                if let (Some(app), Some(s)) = (self.app.as_mut(), self.stream.take()) {
                    app.streams.push(s);
                }
            }
            Place::StreamField(f) => {
                let number = self.number();
                let value = self.value().map(str::to_owned);
                if let Some(s) = self.stream.as_mut() {
                    match f {
                        "name" => s.name = value.unwrap_or_default(),
                        "time" => s.time_ms = number,
                        "bw_in" => s.bw_in = number,
                        "bw_video" => s.bw_video = number,
                        "bw_audio" => s.bw_audio = number,
                        "publishing" => s.publishing = true,
                        _ => {}
                    }
                }
            }
            Place::Client => {
                if let (Some(s), Some(c)) = (self.stream.as_mut(), self.client.take()) {
                    s.clients.push(c);
                }
            }
            Place::ClientField(f) => {
                let number = self.number();
                let value = self.value().map(str::to_owned);
                if let Some(c) = self.client.as_mut() {
                    match f {
                        "address" => c.address = value.unwrap_or_default(),
                        "time" => c.time_ms = number,
                        "publishing" => c.publishing = true,
                        _ => {}
                    }
                }
            }
            Place::MetaField(kind, f) => {
                let known = self.known();
                let codec = self.value().filter(|v| is_codec_name(v)).map(str::to_owned);
                if let Some(m) = self.stream.as_mut().and_then(|s| s.meta.as_mut()) {
                    match (kind, f) {
                        ("video", "width") => m.width = known,
                        ("video", "height") => m.height = known,
                        ("video", "frame_rate") => m.frame_rate = known,
                        ("video", "codec") => m.video_codec = codec,
                        ("audio", "codec") => m.audio_codec = codec,
                        ("audio", "sample_rate") => m.sample_rate = known,
                        _ => {}
                    }
                }
            }
            Place::AppField(_) | Place::Meta | Place::Other => {}
        }
        self.path.pop();
        self.text.clear();
        self.text_overflow = false;
    }
}

/// nginx's codec names (`H264`, `AAC`, `Sorenson-H263`, `MP3-8K`, …):
/// short, plain ASCII, safe to put in an XML answer.
fn is_codec_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Captured from Debian 12's nginx 1.22.1 + libnginx-mod-rtmp 1.2.2 with
    /// the reference nginx.conf, 18 s into an ffmpeg push of
    /// `testsrc=size=640x360:rate=25` (x264) and a 44.1 kHz AAC tone.
    pub(crate) const LIVE: &[u8] = include_bytes!("../../tests/data/rtmp_stat_live.xml");
    /// The same push 3 s in: no 10-second window has passed, bandwidth 0.
    pub(crate) const FIRST_SECONDS: &[u8] =
        include_bytes!("../../tests/data/rtmp_stat_first_seconds.xml");
    /// An audio-only push (48 kHz AAC) straight into the internal app: nginx
    /// writes zeros for the video it does not know, and no video codec.
    pub(crate) const AUDIO_ONLY: &[u8] =
        include_bytes!("../../tests/data/rtmp_stat_audio_only.xml");
    /// No stream at all (nginx just started).
    pub(crate) const IDLE: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<rtmp>\r\n\
<nginx_version>1.22.1</nginx_version>\r\n<nginx_rtmp_version>1.1.4</nginx_rtmp_version>\r\n\
<built>Feb 13 2023 11:56:56</built>\r\n<pid>13826</pid>\r\n<uptime>1</uptime>\r\n\
<naccepted>0</naccepted>\r\n<bw_in>0</bw_in>\r\n<bytes_in>0</bytes_in>\r\n<bw_out>0</bw_out>\r\n\
<bytes_out>0</bytes_out>\r\n<server>\r\n<application>\r\n<name>live</name>\r\n<live>\r\n\
<nclients>0</nclients>\r\n</live>\r\n</application>\r\n<application>\r\n<name>hls</name>\r\n\
<live>\r\n<nclients>0</nclients>\r\n</live>\r\n</application>\r\n</server>\r\n</rtmp>\r\n";

    const SESSION: &str = "dc05cdac9ff06f227e9fac0a29ff9b17";

    fn stream<'a>(apps: &'a [Application], app: &str, name: &str) -> &'a Stream {
        apps.iter()
            .find(|a| a.name == app)
            .and_then(|a| a.streams.iter().find(|s| s.name == name))
            .unwrap_or_else(|| panic!("no stream {app}/{name} in {apps:#?}"))
    }

    #[test]
    fn captured_live_page() {
        let apps = parse(LIVE).unwrap();
        assert_eq!(
            apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["live", "hls"]
        );
        let internal = stream(&apps, "hls", SESSION);
        assert_eq!(
            internal,
            &Stream {
                name: SESSION.into(),
                time_ms: Some(17601),
                bw_in: Some(262_392),
                bw_video: Some(237_304),
                bw_audio: Some(69_576),
                clients: vec![Client {
                    address: "127.0.0.1".into(),
                    time_ms: Some(17688),
                    publishing: true,
                }],
                meta: Some(Meta {
                    width: Some(640),
                    height: Some(360),
                    frame_rate: Some(25),
                    video_codec: Some("H264".into()),
                    audio_codec: Some("AAC".into()),
                    sample_rate: Some(44_100),
                }),
                publishing: true,
            }
        );
        let public = stream(&apps, "live", "b8d092932c8f7d3e2ad874cf3a0dcef1");
        assert_eq!(
            public.clients,
            vec![
                Client {
                    address: format!("127.0.0.1:19350/hls/{SESSION}"),
                    time_ms: Some(17688),
                    publishing: false,
                },
                Client {
                    address: "127.0.0.1".into(),
                    time_ms: Some(17865),
                    publishing: true,
                },
            ]
        );
    }

    #[test]
    fn captured_first_seconds_and_audio_only() {
        let apps = parse(FIRST_SECONDS).unwrap();
        let s = stream(&apps, "hls", SESSION);
        assert_eq!((s.bw_video, s.bw_audio), (Some(0), Some(0)));
        assert_eq!(s.meta.as_ref().unwrap().frame_rate, Some(25));

        let apps = parse(AUDIO_ONLY).unwrap();
        let s = stream(&apps, "hls", "0123456789abcdef0123456789abcdef");
        assert_eq!(
            s.meta,
            Some(Meta {
                audio_codec: Some("AAC".into()),
                sample_rate: Some(48_000),
                ..Meta::default()
            })
        );
    }

    #[test]
    fn idle_page_has_applications_without_streams() {
        let apps = parse(IDLE).unwrap();
        assert_eq!(apps.len(), 2);
        assert!(apps.iter().all(|a| a.streams.is_empty()));
    }

    #[test]
    fn unknown_elements_are_ignored_wherever_they_are() {
        let text = String::from_utf8(LIVE.to_vec()).unwrap();
        let want = parse(LIVE).unwrap();
        let junk = "<x-new a=\"1\"><name>evil</name><stream><name>evil</name></stream><width>1</width></x-new>";
        for anchor in [
            "<server>",
            "<application>",
            "<live>",
            "<stream>",
            "<client>",
            "<meta>",
            "<video>",
            "<audio>",
            "</nclients>",
            "<publishing/>",
        ] {
            let edited = text.replace(anchor, &format!("{anchor}{junk}"));
            assert_ne!(edited, text, "{anchor}");
            assert_eq!(parse(edited.as_bytes()).unwrap(), want, "after {anchor}");
        }
        // nginx-rtmp's <play> section (another module's) is not a live stream.
        let play = text.replace(
            "</live>",
            "</live><play><stream><name>x</name><nclients>0</nclients></stream></play>",
        );
        assert_eq!(parse(play.as_bytes()).unwrap(), want);
    }

    #[test]
    fn unreadable_values_are_unknown_not_zero() {
        let text = String::from_utf8(LIVE.to_vec()).unwrap();
        let edited = text
            .replace("<width>640</width>", "<width>wide</width>")
            .replace(
                "<frame_rate>25</frame_rate>",
                "<frame_rate>-25</frame_rate>",
            )
            .replace("<bw_video>237304</bw_video>", "<bw_video>1e9</bw_video>")
            .replace("<codec>H264</codec>", "<codec>H264&lt;script&gt;</codec>")
            .replace(
                "<sample_rate>44100</sample_rate>",
                &format!("<sample_rate>{}</sample_rate>", "4".repeat(2000)),
            );
        let apps = parse(edited.as_bytes()).unwrap();
        let s = stream(&apps, "hls", SESSION);
        let m = s.meta.as_ref().unwrap();
        assert_eq!(
            (m.width, m.height, m.frame_rate, s.bw_video),
            (None, Some(360), None, None)
        );
        assert_eq!(m.video_codec, None);
        assert_eq!(m.sample_rate, None);
        assert_eq!(m.audio_codec.as_deref(), Some("AAC"));
    }

    #[test]
    fn entities_are_resolved_in_names() {
        let page = b"<rtmp><server><application><name>a&amp;b&#x41;</name><live><stream>\
<name>s&lt;1&gt;</name><client><address>10.0.0.1</address><publishing/></client></stream>\
</live></application></server></rtmp>";
        let apps = parse(page).unwrap();
        assert_eq!(apps[0].name, "a&bA");
        assert_eq!(apps[0].streams[0].name, "s<1>");
        assert!(apps[0].streams[0].clients[0].publishing);
        assert_eq!(apps[0].streams[0].meta, None);
    }

    #[test]
    fn what_is_refused() {
        let deep = format!("<rtmp>{}", "<a>".repeat(100));
        for (what, page) in [
            ("empty", &b""[..]),
            ("html", b"<html><body>502 Bad Gateway</body></html>"),
            ("two roots", b"<rtmp></rtmp><rtmp></rtmp>"),
            ("mismatched", b"<rtmp><server></application></rtmp>"),
            ("too deep", deep.as_bytes()),
            ("not xml", b"\x00\xff\xfe garbage <<<"),
        ] {
            assert!(parse(page).is_err(), "{what}");
        }
    }

    /// A stream as nginx-rtmp would write it, from the model: the inverse of
    /// the parser for every field the model holds.
    fn render(apps: &[Application]) -> String {
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<rtmp>\r\n<pid>1</pid>\r\n<server>\r\n",
        );
        let num = |tag: &str, v: Option<u64>| {
            v.map(|v| format!("<{tag}>{v}</{tag}>")).unwrap_or_default()
        };
        let known = |tag: &str, v: Option<u32>| format!("<{tag}>{}</{tag}>", v.unwrap_or(0));
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        for a in apps {
            out += &format!(
                "<application>\r\n<name>{}</name>\r\n<live>\r\n",
                esc(&a.name)
            );
            for s in &a.streams {
                out += &format!("<stream>\r\n<name>{}</name>\r\n", esc(&s.name));
                out += &num("time", s.time_ms);
                out += &num("bw_in", s.bw_in);
                out += "<bytes_in>5</bytes_in>\r\n";
                out += &num("bw_audio", s.bw_audio);
                out += &num("bw_video", s.bw_video);
                for c in &s.clients {
                    out += &format!("<client><id>3</id><address>{}</address>", esc(&c.address));
                    out += &num("time", c.time_ms);
                    out += "<dropped>0</dropped>";
                    if c.publishing {
                        out += "<publishing/>";
                    }
                    out += "<active/></client>\r\n";
                }
                if let Some(m) = &s.meta {
                    out += "<meta><video>";
                    out += &known("width", m.width);
                    out += &known("height", m.height);
                    out += &known("frame_rate", m.frame_rate);
                    if let Some(c) = &m.video_codec {
                        out += &format!("<codec>{c}</codec><profile>High</profile>");
                    }
                    out += "</video><audio>";
                    if let Some(c) = &m.audio_codec {
                        out += &format!("<codec>{c}</codec>");
                    }
                    out += "<channels>2</channels>";
                    if let Some(r) = m.sample_rate {
                        out += &format!("<sample_rate>{r}</sample_rate>");
                    }
                    out += "</audio></meta>\r\n";
                }
                out += "<nclients>1</nclients>\r\n";
                if s.publishing {
                    out += "<publishing/>\r\n";
                }
                out += "<active/>\r\n</stream>\r\n";
            }
            out += "<nclients>0</nclients>\r\n</live>\r\n</application>\r\n";
        }
        out + "</server>\r\n</rtmp>\r\n"
    }

    fn text() -> impl Strategy<Value = String> {
        // Printable ASCII, as nginx's escaping leaves it; no surrounding
        // blanks (values are trimmed).
        "[!-~]([ -~]{0,30}[!-~])?"
    }

    fn nonzero() -> impl Strategy<Value = Option<u32>> {
        prop::option::of(1u32..=100_000)
    }

    fn meta() -> impl Strategy<Value = Meta> {
        (
            (nonzero(), nonzero(), nonzero()),
            prop::option::of("[A-Za-z0-9-]{1,16}"),
            prop::option::of("[A-Za-z0-9-]{1,16}"),
            nonzero(),
        )
            .prop_map(|((width, height, frame_rate), vc, ac, sample_rate)| Meta {
                width,
                height,
                frame_rate,
                video_codec: vc,
                audio_codec: ac,
                sample_rate,
            })
    }

    fn client() -> impl Strategy<Value = Client> {
        (text(), prop::option::of(any::<u64>()), any::<bool>()).prop_map(
            |(address, time_ms, publishing)| Client {
                address,
                time_ms,
                publishing,
            },
        )
    }

    fn stream_model() -> impl Strategy<Value = Stream> {
        (
            text(),
            prop::option::of(any::<u64>()),
            prop::array::uniform3(prop::option::of(any::<u64>())),
            prop::collection::vec(client(), 0..3),
            prop::option::of(meta()),
            any::<bool>(),
        )
            .prop_map(
                |(name, time_ms, [bw_in, bw_video, bw_audio], clients, meta, publishing)| Stream {
                    name,
                    time_ms,
                    bw_in,
                    bw_video,
                    bw_audio,
                    clients,
                    meta,
                    publishing,
                },
            )
    }

    fn apps() -> impl Strategy<Value = Vec<Application>> {
        prop::collection::vec(
            (text(), prop::collection::vec(stream_model(), 0..3))
                .prop_map(|(name, streams)| Application { name, streams }),
            0..3,
        )
    }

    proptest! {
        #[test]
        fn parses_what_nginx_would_write(apps in apps()) {
            prop_assert_eq!(parse(render(&apps).as_bytes()).unwrap(), apps);
        }

        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn damaged_captures_never_panic(
            cut in 0usize..LIVE.len(),
            at in 0usize..LIVE.len(),
            junk in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse(&LIVE[..cut]);
            let mut spliced = LIVE.to_vec();
            spliced.splice(at..at, junk);
            let _ = parse(&spliced);
        }

        #[test]
        fn xml_shaped_noise_never_panics(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "<rtmp>", "</rtmp>", "<server>", "</server>", "<application>",
                    "</application>", "<live>", "</live>", "<stream>", "</stream>",
                    "<client>", "</client>", "<meta>", "</meta>", "<video>", "</video>",
                    "<audio>", "</audio>", "<name>", "</name>", "<width>", "</width>",
                    "<publishing/>", "12", "&amp;", "&#0;", "&bogus;", "<![CDATA[x]]>",
                    "<!-- c -->", "<?pi x?>", "<!DOCTYPE x>",
                ]),
                0..60,
            ),
        ) {
            let _ = parse(parts.concat().as_bytes());
        }
    }
}
