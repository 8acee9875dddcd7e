//! The LiveChannel XML against oss2 (Python SDK 2.19.1): bodies oss2 writes
//! parse, documents we write are read by oss2's parsers, bad bodies land on
//! the right OSS code, and nothing panics.

use livebucket::oss::channel::{
    AudioStat, ChannelStat, ChannelStatus, HlsTarget, LiveChannelConfig, LiveRecord, LiveSession,
    ParkedStat, Renditions, Snapshot, VideoStat,
};
use livebucket::oss::error::OssError;
use livebucket::oss::xml::{
    ListResult, ListedChannel, MAX_CONFIG_BYTES, parse_config, render_create_result, render_error,
    render_history, render_info, render_list, render_stat,
};
use proptest::prelude::*;

const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn config(
    description: &str,
    status: ChannelStatus,
    d: u32,
    c: u32,
    playlist: &str,
) -> LiveChannelConfig {
    LiveChannelConfig {
        description: description.into(),
        status,
        target: HlsTarget {
            frag_duration: d,
            frag_count: c,
            playlist_name: playlist.into(),
            low_latency: None,
        },
        snapshot: None,
        retention_secs: None,
        renditions: None,
    }
}

// Bodies written by oss2 itself:
//
// from oss2 import xml_utils; from oss2.models import LiveChannelInfo, LiveChannelInfoTarget as T
// print(xml_utils.to_create_live_channel(LiveChannelInfo()))
// print(xml_utils.to_create_live_channel(LiveChannelInfo(status="disabled", description='caméra <1> & "2"', target=T(frag_duration=100, frag_count=1, playlist_name="abc.m3u8"))))
// print(xml_utils.to_create_live_channel(LiveChannelInfo(status="enabled", description="cam one", target=T(frag_duration=2, frag_count=5, playlist_name="live.m3u8"))))
const OSS2_DEFAULT: &str = "<LiveChannelConfiguration><Description /><Status>enabled</Status><Target><Type>HLS</Type><FragDuration>5</FragDuration><FragCount>3</FragCount><PlaylistName /></Target></LiveChannelConfiguration>";
const OSS2_ESCAPED: &str = "<LiveChannelConfiguration><Description>cam\u{e9}ra &lt;1&gt; &amp; \"2\"</Description><Status>disabled</Status><Target><Type>HLS</Type><FragDuration>100</FragDuration><FragCount>1</FragCount><PlaylistName>abc.m3u8</PlaylistName></Target></LiveChannelConfiguration>";
const OSS2_CAM1: &str = "<LiveChannelConfiguration><Description>cam one</Description><Status>enabled</Status><Target><Type>HLS</Type><FragDuration>2</FragDuration><FragCount>5</FragCount><PlaylistName>live.m3u8</PlaylistName></Target></LiveChannelConfiguration>";

#[test]
fn parses_what_oss2_writes() {
    assert_eq!(
        parse_config(OSS2_DEFAULT.as_bytes()),
        Ok(LiveChannelConfig::default()),
        "oss2's default: empty Description and PlaylistName mean the defaults"
    );
    assert_eq!(
        parse_config(OSS2_ESCAPED.as_bytes()),
        Ok(config(
            "caméra <1> & \"2\"",
            ChannelStatus::Disabled,
            100,
            1,
            "abc.m3u8"
        ))
    );
    assert_eq!(
        parse_config(OSS2_CAM1.as_bytes()),
        Ok(config("cam one", ChannelStatus::Enabled, 2, 5, "live.m3u8"))
    );
}

#[test]
fn parses_the_documented_body() {
    // PutLiveChannel's request syntax in Alibaba's API reference, filled in.
    let body = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
        <!-- a comment -->\n\
        <LiveChannelConfiguration>\n\
          <Description>ChannelDescription</Description>\n\
          <Status>enabled</Status>\n\
          <Target>\n\
             <Type>HLS</Type>\n\
             <FragDuration>10</FragDuration>\n\
             <FragCount>5</FragCount>\n\
             <PlaylistName>playlist.m3u8</PlaylistName>\n\
          </Target>\n\
          <Snapshot>\n\
            <RoleName>role_for_snapshot</RoleName>\n\
            <DestBucket>snapshotdest</DestBucket>\n\
            <NotifyTopic>snapshotnotify</NotifyTopic>\n\
            <Interval>1</Interval>\n\
          </Snapshot>\n\
        </LiveChannelConfiguration>\n";
    let mut expected = config(
        "ChannelDescription",
        ChannelStatus::Enabled,
        10,
        5,
        "playlist.m3u8",
    );
    expected.snapshot = Some(Snapshot {
        role_name: "role_for_snapshot".into(),
        dest_bucket: "snapshotdest".into(),
        notify_topic: "snapshotnotify".into(),
        interval: 1,
    });
    assert_eq!(parse_config(body.as_bytes()), Ok(expected));
}

#[test]
fn optional_elements_default_and_order_is_free() {
    let body = "<LiveChannelConfiguration><Target><FragCount></FragCount><Type>HLS</Type></Target>\
                <Description><![CDATA[a <b>]]> &#x263A;&#9786;</Description></LiveChannelConfiguration>";
    assert_eq!(
        parse_config(body.as_bytes()),
        Ok(config(
            "a <b> \u{263a}\u{263a}",
            ChannelStatus::Enabled,
            5,
            3,
            "playlist.m3u8"
        ))
    );
}

fn code(body: &str) -> &'static str {
    match parse_config(body.as_bytes()) {
        Ok(c) => panic!("accepted {body:?} as {c:?}"),
        Err(e) => e.parts().code,
    }
}

fn wrap(target: &str, rest: &str) -> String {
    format!("<LiveChannelConfiguration>{rest}<Target>{target}</Target></LiveChannelConfiguration>")
}

#[test]
fn malformed_documents_are_malformed_xml() {
    let t = "<Type>HLS</Type>";
    for body in [
        String::new(),
        "not xml".into(),
        "<LiveChannelConfiguration>".into(),
        "<LiveChannelConfiguration><Target><Type>HLS</Type></Target>".into(),
        format!("<Other><Target>{t}</Target></Other>"),
        wrap(t, "<Unknown/>"),
        wrap(
            t,
            "<Description>a</Description><Description>b</Description>",
        ),
        wrap(&format!("{t}{t}"), ""),
        wrap(&format!("{t}<Extra>1</Extra>"), ""),
        wrap(t, "stray text"),
        wrap(t, "<Description><b>bold</b></Description>"),
        wrap(t, "<Description>&bogus;</Description>"),
        wrap(t, "<Description>&#1;</Description>"),
        wrap(t, "<Description>a & b</Description>"),
        "<LiveChannelConfiguration><Description/></LiveChannelConfiguration>".into(),
        wrap("<FragCount>3</FragCount>", ""),
        wrap(t, "<Snapshot><RoleName>r</RoleName></Snapshot>"),
        format!("<!DOCTYPE x [<!ENTITY e \"boom\">]>{}", wrap(t, "")),
        format!("<?php x ?>{}", wrap(t, "")),
        format!("<?xml version=\"1.0\" encoding=\"GBK\"?>{}", wrap(t, "")),
        format!("{}<More/>", wrap(t, "")),
        format!("{}trailing", wrap(t, "")),
        wrap(t, "<x:Description xmlns:x=\"u\">a</x:Description>"),
        "<LiveChannelConfiguration><Target><Type>HLS</Type></Tar></LiveChannelConfiguration>"
            .into(),
    ] {
        assert_eq!(code(&body), "MalformedXML", "{body:?}");
    }
    assert_eq!(
        parse_config(b"<LiveChannelConfiguration>\xff</LiveChannelConfiguration>")
            .map_err(|e| e.parts().code),
        Err("MalformedXML")
    );
}

#[test]
fn bad_values_are_invalid_argument() {
    let t = |inner: &str| wrap(&format!("<Type>HLS</Type>{inner}"), "");
    for body in [
        wrap(
            "<Type>HLS</Type>",
            &format!("<Description>{}</Description>", "a".repeat(129)),
        ),
        wrap(
            "<Type>HLS</Type>",
            &format!("<Description>{}</Description>", "é".repeat(65)),
        ),
        wrap("<Type>HLS</Type>", "<Status>paused</Status>"),
        wrap("<Type>HLS</Type>", "<Status>Enabled</Status>"),
        wrap("<Type>hls</Type>", ""),
        wrap("<Type></Type>", ""),
        t("<FragDuration>0</FragDuration>"),
        t("<FragDuration>101</FragDuration>"),
        t("<FragDuration>abc</FragDuration>"),
        t("<FragDuration> 5</FragDuration>"),
        t("<FragCount>-1</FragCount>"),
        t("<FragCount>1000</FragCount>"),
        t("<PlaylistName>abc.text</PlaylistName>"),
        t("<PlaylistName>.m3u8</PlaylistName>"),
        t("<PlaylistName>dir/live.m3u8</PlaylistName>"),
        t(&format!(
            "<PlaylistName>{}.m3u8</PlaylistName>",
            "a".repeat(124)
        )),
        wrap(
            "<Type>HLS</Type>",
            "<Snapshot><RoleName>r</RoleName><DestBucket>b_b</DestBucket><NotifyTopic>t</NotifyTopic><Interval>1</Interval></Snapshot>",
        ),
        wrap(
            "<Type>HLS</Type>",
            "<Snapshot><RoleName>r</RoleName><DestBucket>bbb</DestBucket><NotifyTopic>t</NotifyTopic><Interval>0</Interval></Snapshot>",
        ),
    ] {
        assert_eq!(code(&body), "InvalidArgument", "{body:?}");
    }
    // 128 bytes is fine.
    let ok = wrap(
        "<Type>HLS</Type>",
        &format!("<Description>{}</Description>", "a".repeat(128)),
    );
    assert!(parse_config(ok.as_bytes()).is_ok());
}

#[test]
fn oversized_bodies_are_entity_too_large() {
    let padding = " ".repeat(MAX_CONFIG_BYTES);
    let body = format!("{}{padding}", wrap("<Type>HLS</Type>", ""));
    assert_eq!(
        parse_config(body.as_bytes()),
        Err(OssError::EntityTooLarge {
            max: MAX_CONFIG_BYTES
        })
    );
    assert_eq!(code(&body), "EntityTooLarge");
}

// The documents below were fed, byte for byte, to oss2 2.19.1's parsers:
//
// from oss2 import xml_utils, models, exceptions
// xml_utils.parse_create_live_channel(r, CREATE)  -> publish_url, play_url as below
// xml_utils.parse_get_live_channel(r, INFO)       -> 'cam <one> & two' disabled HLS 2 5 live.m3u8
// xml_utils.parse_get_live_channel(r, INFO_ABR)   -> 'abr cam' enabled HLS 2 3 playlist.m3u8
// xml_utils.parse_list_live_channel(models.LiveChannelList(), LIST)
//     -> prefix 'cam', marker '', max_keys 2, is_truncated True, next_marker 'cam2',
//        channels cam1 (first, enabled, 1700000000, …) and cam2 ('', disabled, 1700000060, …)
// xml_utils.parse_list_live_channel(models.LiveChannelList(), LIST_END) -> is_truncated False, 0 channels
// xml_utils.parse_live_channel_stat(models.LiveChannelStat(), STAT_LIVE)
//     -> Live 1700000000 203.0.113.7:51234, video 1280x720@30 250000 H264, audio 44100 16000 AAC
// xml_utils.parse_live_channel_stat(models.LiveChannelStat(), STAT_IDLE) -> Idle, no video
// xml_utils.parse_live_channel_stat(models.LiveChannelStat(), STAT_LIVE_PARKED) -> as STAT_LIVE
// xml_utils.parse_live_channel_stat(models.LiveChannelStat(), STAT_IDLE_PARKED) -> as STAT_IDLE
// xml_utils.parse_live_channel_history(models.LiveChannelHistory(), HISTORY)
//     -> (1700000000, 1700000600, '203.0.113.7:51234'), (1700002800, 1700002805, '[2001:db8::1]:40000')
// exceptions.make_exception(<404 response with ERROR>) -> oss2.exceptions.NoSuchLiveChannel
// and likewise (409, ChannelStillLive), (409, LiveChannelDisabled), (400, InvalidArgument),
// (400, MalformedXML), (403, AccessDenied), (403, SignatureDoesNotMatch) -> their classes.

const CREATE: &str = "<CreateLiveChannelResult><PublishUrls><Url>rtmp://demo.live.example.com/live/cam1</Url></PublishUrls><PlayUrls><Url>https://demo.oss.example.com/cam1/live.m3u8</Url></PlayUrls></CreateLiveChannelResult>";
const INFO: &str = "<LiveChannelConfiguration><Description>cam &lt;one&gt; &amp; two</Description><Status>disabled</Status><Target><Type>HLS</Type><FragDuration>2</FragDuration><FragCount>5</FragCount><PlaylistName>live.m3u8</PlaylistName></Target><Snapshot><RoleName>role</RoleName><DestBucket>snaps</DestBucket><NotifyTopic>topic</NotifyTopic><Interval>10</Interval></Snapshot></LiveChannelConfiguration>";
const INFO_ABR: &str = "<LiveChannelConfiguration><Description>abr cam</Description><Status>enabled</Status><Target><Type>HLS</Type><FragDuration>2</FragDuration><FragCount>3</FragCount><PlaylistName>playlist.m3u8</PlaylistName></Target><RetentionSeconds>86400</RetentionSeconds><LivebucketRenditions>720p,360p</LivebucketRenditions></LiveChannelConfiguration>";
const LIST: &str = "<ListLiveChannelResult><Prefix>cam</Prefix><Marker></Marker><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated><NextMarker>cam2</NextMarker><LiveChannel><Name>cam1</Name><Description>first</Description><Status>enabled</Status><LastModified>2023-11-14T22:13:20.000Z</LastModified><PublishUrls><Url>rtmp://demo.live.example.com/live/cam1</Url></PublishUrls><PlayUrls><Url>https://demo.oss.example.com/cam1/playlist.m3u8</Url></PlayUrls></LiveChannel><LiveChannel><Name>cam2</Name><Description></Description><Status>disabled</Status><LastModified>2023-11-14T22:14:20.000Z</LastModified><PublishUrls><Url>rtmp://demo.live.example.com/live/cam2</Url></PublishUrls><PlayUrls><Url>https://demo.oss.example.com/cam2/playlist.m3u8</Url></PlayUrls></LiveChannel></ListLiveChannelResult>";
const LIST_END: &str = "<ListLiveChannelResult><Prefix></Prefix><Marker>cam2</Marker><MaxKeys>100</MaxKeys><IsTruncated>false</IsTruncated></ListLiveChannelResult>";
const STAT_LIVE: &str = "<LiveChannelStat><Status>Live</Status><ConnectedTime>2023-11-14T22:13:20.000Z</ConnectedTime><RemoteAddr>203.0.113.7:51234</RemoteAddr><Video><Width>1280</Width><Height>720</Height><FrameRate>30</FrameRate><Bandwidth>250000</Bandwidth><Codec>H264</Codec></Video><Audio><Bandwidth>16000</Bandwidth><SampleRate>44100</SampleRate><Codec>AAC</Codec></Audio></LiveChannelStat>";
const STAT_IDLE: &str = "<LiveChannelStat><Status>Idle</Status></LiveChannelStat>";
const PARKED: &str = "<LivebucketParkedUploads><Count>3</Count><Code>AccessDenied</Code><Since>2023-11-14T22:14:00.000Z</Since></LivebucketParkedUploads>";
const STAT_LIVE_PARKED: &str = "<LiveChannelStat><Status>Live</Status><ConnectedTime>2023-11-14T22:13:20.000Z</ConnectedTime><RemoteAddr>203.0.113.7:51234</RemoteAddr><Video><Width>1280</Width><Height>720</Height><FrameRate>30</FrameRate><Bandwidth>250000</Bandwidth><Codec>H264</Codec></Video><Audio><Bandwidth>16000</Bandwidth><SampleRate>44100</SampleRate><Codec>AAC</Codec></Audio><LivebucketParkedUploads><Count>3</Count><Code>AccessDenied</Code><Since>2023-11-14T22:14:00.000Z</Since></LivebucketParkedUploads></LiveChannelStat>";
const STAT_IDLE_PARKED: &str = "<LiveChannelStat><Status>Idle</Status><LivebucketParkedUploads><Count>3</Count><Code>AccessDenied</Code><Since>2023-11-14T22:14:00.000Z</Since></LivebucketParkedUploads></LiveChannelStat>";
const HISTORY: &str = "<LiveChannelHistory><LiveRecord><StartTime>2023-11-14T22:13:20.000Z</StartTime><EndTime>2023-11-14T22:23:20.000Z</EndTime><RemoteAddr>203.0.113.7:51234</RemoteAddr></LiveRecord><LiveRecord><StartTime>2023-11-14T23:00:00.000Z</StartTime><EndTime>2023-11-14T23:00:05.000Z</EndTime><RemoteAddr>[2001:db8::1]:40000</RemoteAddr></LiveRecord></LiveChannelHistory>";
const ERROR: &str = "<Error><Code>NoSuchLiveChannel</Code><Message>The specified live channel does not exist.</Message><RequestId>6553F3D0A1B2C3D4E5F60718</RequestId><HostId>demo.oss.example.com</HostId></Error>";

fn doc(body: &str) -> String {
    format!("{DECL}{body}")
}

fn listed(name: &str, description: &str, status: ChannelStatus, t: i64) -> ListedChannel {
    ListedChannel {
        name: name.into(),
        description: description.into(),
        status,
        last_modified: t,
        publish_url: format!("rtmp://demo.live.example.com/live/{name}"),
        play_url: format!("https://demo.oss.example.com/{name}/playlist.m3u8"),
    }
}

fn session() -> LiveSession {
    LiveSession {
        connected: 1_700_000_000,
        remote_addr: "203.0.113.7:51234".into(),
        video: Some(VideoStat {
            width: 1280,
            height: 720,
            frame_rate: 30,
            bandwidth: 250_000,
            codec: "H264".into(),
        }),
        audio: Some(AudioStat {
            sample_rate: 44_100,
            bandwidth: 16_000,
            codec: "AAC".into(),
        }),
    }
}

#[test]
fn renders_what_oss2_reads() {
    assert_eq!(
        render_create_result(
            "rtmp://demo.live.example.com/live/cam1",
            "https://demo.oss.example.com/cam1/live.m3u8"
        ),
        doc(CREATE)
    );

    let mut info = config(
        "cam <one> & two",
        ChannelStatus::Disabled,
        2,
        5,
        "live.m3u8",
    );
    info.snapshot = Some(Snapshot {
        role_name: "role".into(),
        dest_bucket: "snaps".into(),
        notify_topic: "topic".into(),
        interval: 10,
    });
    assert_eq!(render_info(&info), doc(INFO));

    let channels = [
        listed("cam1", "first", ChannelStatus::Enabled, 1_700_000_000),
        listed("cam2", "", ChannelStatus::Disabled, 1_700_000_060),
    ];
    let list = ListResult {
        prefix: "cam",
        marker: "",
        max_keys: 2,
        next_marker: Some("cam2"),
        channels: &channels,
    };
    assert_eq!(render_list(&list), doc(LIST));
    let end = ListResult {
        prefix: "",
        marker: "cam2",
        max_keys: 100,
        next_marker: None,
        channels: &[],
    };
    assert_eq!(render_list(&end), doc(LIST_END));

    let live = ChannelStat::new(ChannelStatus::Enabled, Some(session()));
    assert_eq!(render_stat(&live), doc(STAT_LIVE));
    let idle = ChannelStat::new(ChannelStatus::Enabled, None);
    assert_eq!(render_stat(&idle), doc(STAT_IDLE));
    let disabled = ChannelStat::new(ChannelStatus::Disabled, Some(session()));
    assert_eq!(
        render_stat(&disabled),
        doc("<LiveChannelStat><Status>Disabled</Status></LiveChannelStat>")
    );
    // livebucket's extension, last, whatever the status.
    let parked = || {
        Some(ParkedStat {
            uploads: 3,
            code: "AccessDenied".into(),
            since: 1_700_000_040,
        })
    };
    let live = ChannelStat::new(ChannelStatus::Enabled, Some(session())).with_parked(parked());
    assert_eq!(render_stat(&live), doc(STAT_LIVE_PARKED));
    let idle = ChannelStat::new(ChannelStatus::Enabled, None).with_parked(parked());
    assert_eq!(render_stat(&idle), doc(STAT_IDLE_PARKED));
    let disabled = ChannelStat::new(ChannelStatus::Disabled, None).with_parked(parked());
    assert_eq!(
        render_stat(&disabled),
        doc(&format!(
            "<LiveChannelStat><Status>Disabled</Status>{PARKED}</LiveChannelStat>"
        ))
    );

    let records = [
        LiveRecord {
            start: 1_700_000_000,
            end: 1_700_000_600,
            remote_addr: "203.0.113.7:51234".into(),
        },
        LiveRecord {
            start: 1_700_002_800,
            end: 1_700_002_805,
            remote_addr: "[2001:db8::1]:40000".into(),
        },
    ];
    assert_eq!(render_history(&records), doc(HISTORY));
    assert_eq!(
        render_history(&[]),
        doc("<LiveChannelHistory></LiveChannelHistory>")
    );

    assert_eq!(
        render_error(
            &OssError::NoSuchLiveChannel.parts(),
            "6553F3D0A1B2C3D4E5F60718",
            "demo.oss.example.com"
        ),
        doc(ERROR)
    );
}

#[test]
fn renditions_extension_renders_what_oss2_reads() {
    let mut c = config("abr cam", ChannelStatus::Enabled, 2, 3, "playlist.m3u8");
    c.retention_secs = Some(86_400);
    c.renditions = Some(Renditions::Rungs(vec!["720p".into(), "360p".into()]));
    assert_eq!(render_info(&c), doc(INFO_ABR));
    assert_eq!(parse_config(doc(INFO_ABR).as_bytes()), Ok(c));
}

#[test]
fn info_is_a_valid_put_body() {
    // GetLiveChannelInfo's answer, sent back as PutLiveChannel, is the same
    // configuration.
    let mut c = config(
        "tab\tand\nnewline <&>",
        ChannelStatus::Disabled,
        100,
        1,
        "x\u{e9}yz.m3u8",
    );
    assert_eq!(parse_config(render_info(&c).as_bytes()), Ok(c.clone()));
    c.snapshot = Some(Snapshot {
        role_name: "r&d".into(),
        dest_bucket: "snap-bucket".into(),
        notify_topic: "t".into(),
        interval: 100,
    });
    assert_eq!(parse_config(render_info(&c).as_bytes()), Ok(c));
}

#[test]
fn error_messages_with_client_text_stay_well_formed() {
    let e = OssError::InvalidArgument("channel name \"a\u{0}<b>&\" is invalid".into());
    let xml = render_error(&e.parts(), "id", "host");
    assert!(xml.contains("<Code>InvalidArgument</Code>"), "{xml}");
    assert!(xml.contains("a\u{fffd}&lt;b&gt;&amp;"), "{xml}");
}

fn arb_config() -> impl Strategy<Value = LiveChannelConfig> {
    (
        "[^\\p{Cc}]{0,40}",
        any::<bool>(),
        1u32..=100,
        1u32..=100,
        "[A-Za-z0-9 _.-]{1,60}",
        proptest::option::of((
            "[a-z]{1,10}",
            "[a-z][a-z0-9-]{1,20}[a-z]",
            "[a-z ]{1,10}",
            1u32..=100,
        )),
        proptest::option::of(0u64..=livebucket::oss::channel::MAX_RETENTION_SECS),
        proptest::option::of(proptest::option::of(proptest::collection::vec(
            "[a-z0-9][a-z0-9_-]{0,8}",
            1..4,
        ))),
    )
        .prop_map(
            |(description, enabled, d, c, stem, snapshot, retention_secs, renditions)| {
                let mut description = description;
                while description.len() > 128 {
                    description.pop();
                }
                LiveChannelConfig {
                    description,
                    status: if enabled {
                        ChannelStatus::Enabled
                    } else {
                        ChannelStatus::Disabled
                    },
                    target: HlsTarget {
                        frag_duration: d,
                        frag_count: c,
                        playlist_name: format!("{stem}.m3u8"),
                        low_latency: None,
                    },
                    snapshot: snapshot.map(|(role_name, dest_bucket, notify_topic, interval)| {
                        Snapshot {
                            role_name,
                            dest_bucket,
                            notify_topic,
                            interval,
                        }
                    }),
                    retention_secs,
                    renditions: renditions.map(|r| match r {
                        None => Renditions::None,
                        Some(names) => Renditions::Rungs(names),
                    }),
                }
            },
        )
        .prop_filter("valid", |c| c.validate().is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn parse_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_config(&body);
    }

    #[test]
    fn parse_never_panics_on_near_valid_documents(
        cut in 0usize..400,
        insert in "[<>&;/!?\\[\\]a-zA-Z# =\"']{0,12}",
        at in 0usize..400,
    ) {
        let base = render_info(&config("d", ChannelStatus::Enabled, 5, 3, "playlist.m3u8"));
        let mut doc = base.clone();
        let at = at.min(doc.len());
        if doc.is_char_boundary(at) {
            doc.insert_str(at, &insert);
        }
        let cut = cut.min(doc.len());
        if doc.is_char_boundary(cut) {
            doc.truncate(cut.max(doc.len() / 2));
        }
        match parse_config(doc.as_bytes()) {
            Ok(c) => prop_assert!(c.validate().is_ok()),
            Err(e) => prop_assert!(matches!(
                e.parts().code,
                "MalformedXML" | "InvalidArgument"
            ), "{:?}", e),
        }
    }

    #[test]
    fn configs_round_trip_through_info(c in arb_config()) {
        prop_assert_eq!(parse_config(render_info(&c).as_bytes()), Ok(c));
    }
}

/// livebucket's extension `Target/LowLatency`: parsed, rendered only when
/// given (so oss2's own records render as before), and refused unless
/// `true` or `false`.
#[test]
fn the_low_latency_extension_round_trips() {
    let body = |v: &str| {
        OSS2_CAM1.replace(
            "</PlaylistName></Target>",
            &format!("</PlaylistName><LowLatency>{v}</LowLatency></Target>"),
        )
    };
    for (text, want) in [("true", Some(true)), ("false", Some(false)), ("", None)] {
        let c = parse_config(body(text).as_bytes()).unwrap();
        assert_eq!(c.target.low_latency, want, "{text:?}");
        assert_eq!(parse_config(render_info(&c).as_bytes()), Ok(c.clone()));
        assert_eq!(render_info(&c).contains("<LowLatency>"), want.is_some());
    }
    assert!(parse_config(body("yes").as_bytes()).is_err());
    assert!(!render_info(&parse_config(OSS2_CAM1.as_bytes()).unwrap()).contains("LowLatency"));
}
