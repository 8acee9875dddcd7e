//! What a push's transcoders are, without I/O: which rungs a push gets, the
//! rendition session each run records, where the transcoder reads and
//! writes, and its ffmpeg command line.

use crate::channels::record::Renditions;
use crate::config::{Config, RenditionsConfig, Rung};
use crate::session::{SessionMeta, VariantOf};

/// The playlist name a channel with renditions cannot have: it is the
/// master playlist's (`CHANNEL/master.m3u8`).
pub(crate) const MASTER_PLAYLIST: &str = "master.m3u8";

/// The rungs a push gets, and the names asked for that it does not get,
/// each with the reason (logged by the caller).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub rungs: Vec<String>,
    pub skipped: Vec<(String, &'static str)>,
}

/// The rungs of a push to a channel whose record chose `choice` (`None`:
/// no record, or a record without `LivebucketRenditions`), live playlist
/// `playlist`: the record's names, else `[renditions] default`; `none`
/// gives none. Names the ladder no longer has (the config changed since the
/// record was written) and repeats are skipped; a push whose playlist is
/// the master playlist's name gets none, since its variants' master would
/// overwrite it.
pub(crate) fn rungs_for(
    choice: Option<&Renditions>,
    cfg: &RenditionsConfig,
    playlist: &str,
) -> Chosen {
    let wanted: &[String] = match choice {
        None => &cfg.default,
        Some(Renditions::None) => &[],
        Some(Renditions::Rungs(names)) => names,
    };
    let mut chosen = Chosen::default();
    for name in wanted {
        if playlist == MASTER_PLAYLIST {
            chosen
                .skipped
                .push((name.clone(), "the playlist is named master.m3u8"));
        } else if cfg.rung(name).is_none() {
            chosen
                .skipped
                .push((name.clone(), "not in [renditions] rungs"));
        } else if !chosen.rungs.contains(name) {
            chosen.rungs.push(name.clone());
        }
    }
    chosen
}

/// The record of one transcoder run of `rung` for `source`: a fresh id, the
/// variant channel `<source channel>/<rung>`, the source's bucket, key,
/// playlist name, shape and low latency, no snapshot and no event topic.
/// The publisher fields name the transcoder's publish (the stream name is
/// the session id itself, as nginx's internal application sees it).
pub(crate) fn variant_meta(
    source: &SessionMeta,
    rung: &str,
    id: String,
    now_ms: u64,
) -> SessionMeta {
    SessionMeta {
        name: id.clone(),
        id,
        bucket: source.bucket.clone(),
        channel: format!("{}/{rung}", source.channel),
        playlist: source.playlist.clone(),
        key_id: source.key_id.clone(),
        clientid: String::new(),
        addr: "127.0.0.1".into(),
        started_ms: now_ms,
        shape: source.shape,
        low_latency: source.low_latency,
        snapshot: None,
        resume: None,
        grant: source.grant.clone(),
        notify_topic: None,
        variant: Some(VariantOf {
            of: source.id.clone(),
            channel: source.channel.clone(),
            rung: rung.to_owned(),
        }),
        renditions: Vec::new(),
    }
}

/// The internal application a session was relayed to (`on_publish`'s
/// `Location` without `/<session id>`), worked out again from its record
/// for a session recovered after a restart: the application of its target
/// duration when `nginx.fragment_durations` has one of that length
/// (`channels::plan_push` chose it so), else `nginx.relay_url`'s.
pub(crate) fn relay_of(meta: &SessionMeta, cfg: &Config) -> String {
    let base = cfg.nginx.relay_url.trim_end_matches('/');
    let app = meta
        .shape
        .map(|s| s.target_duration_secs)
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| cfg.nginx.fragment_durations.contains(t));
    crate::channels::relay_for(base, app)
}

/// `on_publish`'s `Location` (`<relay>/<id>`) without `/<id>`.
pub(crate) fn relay_from_location<'a>(location: &'a str, id: &str) -> Option<&'a str> {
    location.strip_suffix(id)?.strip_suffix('/')
}

/// A GOP length no stream reaches: keyframes come only where the source
/// has them (`-force_key_frames source`).
const NO_FIXED_GOP: &str = "100000";

/// ffmpeg's arguments (without the program) for one run of `rung`: play
/// `input` (the source in its internal application, with the run's
/// one-use token), encode, publish FLV to `output` (the rendition session's
/// stream in the same application). Progress goes to stdout as `key=value`
/// lines (`-progress pipe:1`); stderr gets warnings only.
///
/// Keyframes: `-copyts` keeps the source's RTMP timestamps, and
/// `-force_key_frames source` puts a keyframe on every frame that was one
/// in the source and nowhere else (no scene cuts, no B-frames, no fixed
/// GOP), so nginx cuts the variant at the same keyframes as the source.
pub(crate) fn argv(cfg: &RenditionsConfig, rung: &Rung, input: &str, output: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-nostats",
        "-progress",
        "pipe:1",
    ]
    .map(String::from)
    .into();
    let vaapi = cfg.encoder == "h264_vaapi";
    if let (true, Some(dev)) = (vaapi && !rung.audio_only(), &cfg.vaapi_device) {
        a.extend(["-vaapi_device".into(), dev.clone()]);
    }
    a.extend(["-rtmp_live", "live", "-copyts", "-i"].map(String::from));
    a.push(input.to_owned());
    match (rung.height, rung.video_kbps) {
        (Some(height), Some(kbps)) => {
            let mut filter = String::new();
            if let Some(fps) = rung.max_fps {
                filter = cap_fps(fps);
                filter.push(',');
            }
            filter.push_str(&format!("scale=-2:{height}"));
            if vaapi {
                filter.push_str(",format=nv12,hwupload");
            }
            a.extend(["-vf".into(), filter, "-c:v".into(), cfg.encoder.clone()]);
            a.extend(encoder_options(&cfg.encoder, &cfg.preset));
            a.extend([
                "-b:v".into(),
                format!("{kbps}k"),
                "-maxrate".into(),
                format!("{kbps}k"),
                "-bufsize".into(),
                format!("{}k", kbps * 2),
                "-bf".into(),
                "0".into(),
                "-g".into(),
                NO_FIXED_GOP.into(),
                "-force_key_frames".into(),
                "source".into(),
            ]);
            if rung.max_fps.is_some() {
                // The frames `cap_fps` keeps, at their own times: no frame
                // duplicated or dropped after it.
                a.extend(["-fps_mode".into(), "vfr".into()]);
            }
        }
        _ => a.push("-vn".into()),
    }
    a.extend([
        "-c:a".into(),
        "aac".into(),
        "-b:a".into(),
        format!("{}k", rung.audio_kbps),
        "-f".into(),
        "flv".into(),
        output.to_owned(),
    ]);
    a
}

/// A filter that keeps at most `fps` frames a second and every keyframe:
/// a frame is kept when it is a keyframe, or the first, or at least 1/`fps`
/// (less 2 ms, for millisecond RTMP timestamps) after the last kept one.
/// ffmpeg's own frame rate caps (`-fpsmax`, the `fps` filter) pick frames
/// by time alone and drop keyframes, which `-force_key_frames source` then
/// never sees: the variant would be cut elsewhere than the source.
fn cap_fps(fps: u32) -> String {
    let min_gap = (1.0 / f64::from(fps) - 0.002).max(0.0);
    format!(
        "select='eq(pict_type\\,I)+isnan(prev_selected_t)+gte(t-prev_selected_t\\,{min_gap:.4})'"
    )
}

/// The encoder's own options: its preset (libx264's names mapped onto
/// nvenc's p1–p7 and qsv's veryfast–veryslow; VA-API has none), and what
/// keeps its keyframes where they are forced (IDR, no scene-cut keyframes).
fn encoder_options(encoder: &str, preset: &str) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match encoder {
        "libx264" => s(&["-preset", preset, "-sc_threshold", "0", "-forced-idr", "1"]),
        "h264_nvenc" => {
            let p = match preset {
                "ultrafast" | "superfast" => "p1",
                "veryfast" => "p2",
                "faster" => "p3",
                "fast" | "medium" => "p4",
                "slow" => "p5",
                "slower" => "p6",
                "veryslow" => "p7",
                other => other,
            };
            s(&["-preset", p, "-forced-idr", "1", "-no-scenecut", "1"])
        }
        "h264_qsv" => {
            let p = match preset {
                "ultrafast" | "superfast" => "veryfast",
                other => other,
            };
            s(&["-preset", p])
        }
        // h264_vaapi and anything else: the encoder's defaults.
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> RenditionsConfig {
        RenditionsConfig {
            default: vec!["360p".into()],
            rungs: vec![
                Rung {
                    name: "360p".into(),
                    height: Some(360),
                    video_kbps: Some(800),
                    audio_kbps: 96,
                    max_fps: None,
                },
                Rung {
                    name: "audio".into(),
                    height: None,
                    video_kbps: None,
                    audio_kbps: 64,
                    max_fps: None,
                },
            ],
            ..RenditionsConfig::default()
        }
    }

    #[test]
    fn a_push_gets_its_records_rungs_else_the_default_and_none_means_none() {
        let cfg = ladder();
        assert_eq!(rungs_for(None, &cfg, "index.m3u8").rungs, ["360p"]);
        assert!(
            rungs_for(Some(&Renditions::None), &cfg, "index.m3u8")
                .rungs
                .is_empty()
        );
        let asked = Renditions::Rungs(vec!["audio".into(), "1080p".into(), "audio".into()]);
        let chosen = rungs_for(Some(&asked), &cfg, "index.m3u8");
        assert_eq!(chosen.rungs, ["audio"]);
        assert_eq!(
            chosen.skipped,
            [("1080p".to_owned(), "not in [renditions] rungs")]
        );
    }

    #[test]
    fn a_push_whose_playlist_is_the_masters_name_gets_no_rungs() {
        let chosen = rungs_for(None, &ladder(), MASTER_PLAYLIST);
        assert!(chosen.rungs.is_empty());
        assert_eq!(chosen.skipped.len(), 1);
    }

    fn source() -> SessionMeta {
        serde_json::from_str(
            r#"{"id":"aa","bucket":"b","channel":"cam","playlist":"p.m3u8","key_id":"k",
                "clientid":"1","name":"cam","addr":"1.2.3.4","started_ms":5,"grant":"g",
                "low_latency":true,"notify_topic":"t","renditions":["360p"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_rendition_session_is_the_sources_sub_channel() {
        let m = variant_meta(&source(), "360p", "bb".into(), 9);
        assert_eq!(
            (m.id.as_str(), m.channel.as_str(), m.name.as_str()),
            ("bb", "cam/360p", "bb")
        );
        assert_eq!((m.bucket.as_str(), m.playlist.as_str()), ("b", "p.m3u8"));
        assert_eq!((m.key_id.as_str(), m.low_latency), ("k", Some(true)));
        assert_eq!(m.notify_topic, None);
        assert!(m.renditions.is_empty() && m.snapshot.is_none());
        let v = m.variant.unwrap();
        assert_eq!(
            (v.of.as_str(), v.channel.as_str(), v.rung.as_str()),
            ("aa", "cam", "360p")
        );
    }

    fn config(nginx: &str) -> Config {
        let text = format!(
            "[hooks]\nsecret = \"hooks-secret-for-the-unit-tests-0001\"\n\
             [nginx]\nhls_dir = \"/dev/shm/h\"\nrelay_url = \"rtmp://127.0.0.1:1935/hls/\"\n{nginx}\n\
             [s3]\nendpoint = \"http://127.0.0.1:3900\"\n\
             [[keys]]\nid = \"GK123\"\nsecret = \"0123456789abcdef\"\nbuckets = [\"demo\"]\n"
        );
        Config::parse(&text, std::path::Path::new("test.toml")).unwrap()
    }

    #[test]
    fn the_relay_is_the_location_without_the_id_or_the_applications_of_the_shape() {
        assert_eq!(
            relay_from_location("rtmp://127.0.0.1:1935/hls_4s/abc", "abc"),
            Some("rtmp://127.0.0.1:1935/hls_4s")
        );
        assert_eq!(relay_from_location("rtmp://h/hls/abc", "abd"), None);
        let cfg = config("fragment_durations = [2, 4]");
        let mut m = source();
        assert_eq!(relay_of(&m, &cfg), "rtmp://127.0.0.1:1935/hls");
        m.shape = Some(crate::hls::LiveShape {
            window_segments: 3,
            target_duration_secs: 4,
        });
        assert_eq!(relay_of(&m, &cfg), "rtmp://127.0.0.1:1935/hls_4s");
        let cfg = config("fragment_durations = []");
        assert_eq!(relay_of(&m, &cfg), "rtmp://127.0.0.1:1935/hls");
    }

    fn has(a: &[String], pair: &[&str]) -> bool {
        a.windows(pair.len())
            .any(|w| w.iter().zip(pair).all(|(x, y)| x == y))
    }

    #[test]
    fn a_video_rung_keeps_the_sources_keyframes_and_timestamps() {
        let cfg = ladder();
        let a = argv(
            &cfg,
            &cfg.rungs[0],
            "rtmp://in/hls/s?lbt=t",
            "rtmp://in/hls/r",
        );
        for pair in [
            &["-copyts", "-i", "rtmp://in/hls/s?lbt=t"][..],
            &["-force_key_frames", "source"],
            &["-sc_threshold", "0"],
            &["-bf", "0"],
            &["-vf", "scale=-2:360"],
            &["-c:v", "libx264", "-preset", "veryfast"],
            &["-b:v", "800k", "-maxrate", "800k", "-bufsize", "1600k"],
            &["-c:a", "aac", "-b:a", "96k"],
            &["-progress", "pipe:1"],
            &["-f", "flv", "rtmp://in/hls/r"],
        ] {
            assert!(has(&a, pair), "{pair:?} in {a:?}");
        }
        assert!(!a.contains(&"-vn".to_owned()) && !a.contains(&"-fps_mode".to_owned()));
        assert_eq!(a.last().map(String::as_str), Some("rtmp://in/hls/r"));
    }

    #[test]
    fn an_audio_only_rung_drops_the_video_and_max_fps_caps_the_rate() {
        let mut cfg = ladder();
        let a = argv(&cfg, &cfg.rungs[1], "i", "o");
        assert!(a.contains(&"-vn".to_owned()) && has(&a, &["-b:a", "64k"]));
        assert!(!a.contains(&"-c:v".to_owned()));
        // Capped by a filter that keeps every keyframe, not by -fpsmax.
        cfg.rungs[0].max_fps = Some(15);
        let a = argv(&cfg, &cfg.rungs[0], "i", "o");
        let keep =
            "select='eq(pict_type\\,I)+isnan(prev_selected_t)+gte(t-prev_selected_t\\,0.0647)'";
        assert!(has(&a, &["-vf", &format!("{keep},scale=-2:360")]), "{a:?}");
        assert!(has(&a, &["-fps_mode", "vfr"]));
        assert!(!a.contains(&"-fpsmax".to_owned()));
    }

    #[test]
    fn hardware_encoders_get_their_own_options() {
        let mut cfg = ladder();
        cfg.encoder = "h264_vaapi".into();
        cfg.vaapi_device = Some("/dev/dri/renderD128".into());
        let a = argv(&cfg, &cfg.rungs[0], "i", "o");
        assert!(has(
            &a,
            &["-vaapi_device", "/dev/dri/renderD128", "-rtmp_live"]
        ));
        assert!(has(&a, &["-vf", "scale=-2:360,format=nv12,hwupload"]));
        assert!(!a.contains(&"-preset".to_owned()));
        cfg.encoder = "h264_nvenc".into();
        let a = argv(&cfg, &cfg.rungs[0], "i", "o");
        assert!(has(
            &a,
            &["-preset", "p2", "-forced-idr", "1", "-no-scenecut", "1"]
        ));
        cfg.encoder = "h264_qsv".into();
        cfg.preset = "superfast".into();
        assert!(has(
            &argv(&cfg, &cfg.rungs[0], "i", "o"),
            &["-preset", "veryfast"]
        ));
    }
}
