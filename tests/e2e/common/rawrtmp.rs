//! A hostile RTMP publisher: it asks to publish and streams media at once,
//! without waiting for the server's answer, the way a client that ignores the
//! protocol's etiquette (or tries to slip media past authorisation) would.
//!
//! Built on rml_rtmp's handshake, chunk and message layers. Its high-level
//! `ClientSession` cannot play this part: it refuses to send media until the
//! server has answered `NetStream.Publish.Start`, i.e. it always waits. The
//! media is real H.264/AAC: ffmpeg writes a short FLV file ([`make_flv`]),
//! whose tags ([`read_flv`]) are sent as RTMP video and audio messages.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use super::TestDir;
use super::ffmpeg::TestMedia;
use super::process::run;

/// FLV tag types.
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;

/// One FLV tag: its type, timestamp in milliseconds and body (the RTMP
/// message payload, sequence headers included).
#[derive(Clone, Debug)]
pub struct FlvTag {
    pub kind: u8,
    pub timestamp: u32,
    pub data: Bytes,
}

/// Has ffmpeg write `seconds` of 160x120 H.264 (keyframe every second) + AAC
/// to `DIR/NAME.flv`, as fast as it can; returns the path.
pub fn make_flv(dir: &TestDir, name: &str, seconds: u32) -> PathBuf {
    let path = dir.join(format!("{name}.flv"));
    let mut cmd = TestMedia {
        video: "testsrc2=size=160x120:rate=30",
        tone_hz: 880,
        seconds,
        gop: 30,
        live: false,
    }
    .command("error");
    cmd.args(["-b:a", "64k", "-y", "-f", "flv"]).arg(&path);
    run("ffmpeg (writing an FLV)", &mut cmd);
    path
}

/// The audio and video tags of an FLV file, in file order (script tags are
/// skipped). Panics on a malformed file.
pub fn read_flv(path: &Path) -> Vec<FlvTag> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        bytes.len() >= 13 && &bytes[..3] == b"FLV",
        "{} is not an FLV file",
        path.display()
    );
    let header_len = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
    // The header, then PreviousTagSize0.
    let mut at = header_len + 4;
    let mut tags = Vec::new();
    while at + 11 <= bytes.len() {
        let kind = bytes[at] & 0x1f;
        let size = u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let timestamp =
            u32::from_be_bytes([bytes[at + 7], bytes[at + 4], bytes[at + 5], bytes[at + 6]]);
        let body = at + 11;
        assert!(
            body + size <= bytes.len(),
            "{}: tag at byte {at} runs past the end",
            path.display()
        );
        if kind == AUDIO || kind == VIDEO {
            tags.push(FlvTag {
                kind,
                timestamp,
                data: Bytes::copy_from_slice(&bytes[body..body + size]),
            });
        }
        at = body + size + 4;
    }
    assert!(
        tags.iter().any(|t| t.kind == VIDEO) && tags.iter().any(|t| t.kind == AUDIO),
        "{} has no audio or no video tags",
        path.display()
    );
    tags
}

/// What happened to a [`publish_without_waiting`] attempt.
#[derive(Debug)]
pub struct NoWaitOutcome {
    /// How many audio and video messages were written before the server's
    /// first answer to `publish` (an `onStatus`) arrived: at least the whole
    /// burst.
    pub media_sent_before_answer: usize,
    /// When the server closed the connection, counted from `publish`;
    /// `None` if it was still open when the client gave up.
    pub closed_after: Option<Duration>,
    /// The `code` of every `onStatus` the server sent, in order.
    pub statuses: Vec<String>,
}

/// Connects to `addr`, completes the handshake, `connect`s to `app` (sending
/// `tc_url`) and creates a stream, then writes `publish stream_key` and the
/// first `burst` of media in one go, and keeps sending the rest of `tags` in
/// real time, never waiting for the answer to `publish`. Stops when the
/// server closes the connection, the tags run out, or after `give_up`.
///
/// Blocking; run it on a thread.
pub fn publish_without_waiting(
    addr: SocketAddr,
    tc_url: &str,
    app: &str,
    stream_key: &str,
    tags: &[FlvTag],
    burst: Duration,
    give_up: Duration,
) -> NoWaitOutcome {
    let mut conn = Conn::open(addr);
    conn.connect(app, tc_url);
    let stream_id = conn.create_stream();

    let mut media = tags.iter().peekable();
    let mut first = Vec::new();
    first.extend(conn.command(
        "publish",
        0.0,
        vec![
            Amf0Value::Utf8String(stream_key.to_owned()),
            Amf0Value::Utf8String("live".to_owned()),
        ],
        stream_id,
    ));
    let mut burst_sent = 0;
    while let Some(tag) = media.next_if(|t| u128::from(t.timestamp) <= burst.as_millis()) {
        first.extend(conn.media(tag, stream_id));
        burst_sent += 1;
    }

    // From here on a reader thread takes everything the server says.
    let started = Instant::now();
    let observed = Arc::new(Mutex::new(Observed::default()));
    let reader = {
        let stream = conn.stream.try_clone().expect("cannot clone the socket");
        let deserializer = std::mem::replace(&mut conn.deserializer, ChunkDeserializer::new());
        let observed = observed.clone();
        std::thread::spawn(move || read_until_closed(stream, deserializer, started, &observed))
    };
    let answered = |o: &Mutex<Observed>| !o.lock().unwrap().statuses.is_empty();
    let mut media_sent_before_answer = 0;
    let mut write_ok = conn.stream.write_all(&first).is_ok();
    if write_ok && !answered(&observed) {
        media_sent_before_answer = burst_sent;
    }

    let first_ts = tags.first().map_or(0, |t| t.timestamp);
    while write_ok && started.elapsed() < give_up {
        if observed.lock().unwrap().closed_after.is_some() {
            break;
        }
        let Some(tag) = media.next() else { break };
        // Real time from the end of the burst on.
        let due = Duration::from_millis(u64::from(tag.timestamp - first_ts)).saturating_sub(burst);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait.min(give_up.saturating_sub(started.elapsed())));
        }
        let bytes = conn.media(tag, stream_id);
        let before_answer = !answered(&observed);
        write_ok = conn.stream.write_all(&bytes).is_ok();
        if write_ok && before_answer {
            media_sent_before_answer += 1;
        }
    }
    // Wait briefly for the server to close, so the outcome says whether it did.
    let deadline = Instant::now() + Duration::from_secs(2);
    while observed.lock().unwrap().closed_after.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
    reader.join().expect("the RTMP reader thread panicked");
    let observed = Arc::try_unwrap(observed)
        .ok()
        .expect("reader still holds the state")
        .into_inner()
        .unwrap();
    NoWaitOutcome {
        media_sent_before_answer,
        closed_after: observed.closed_after,
        statuses: observed.statuses,
    }
}

#[derive(Default)]
struct Observed {
    statuses: Vec<String>,
    closed_after: Option<Duration>,
}

fn read_until_closed(
    mut stream: TcpStream,
    mut deserializer: ChunkDeserializer,
    started: Instant,
    observed: &Mutex<Observed>,
) {
    let _ = stream.set_read_timeout(None);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut input: &[u8] = &buf[..n];
        loop {
            let payload = match deserializer.get_next_message(input) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // Garbled input: treat as the end, like a real client would.
                Err(_) => {
                    observed.lock().unwrap().closed_after = Some(started.elapsed());
                    return;
                }
            };
            input = &[];
            match payload.to_rtmp_message() {
                Ok(RtmpMessage::SetChunkSize { size }) => {
                    let _ = deserializer.set_max_chunk_size(size as usize);
                }
                Ok(RtmpMessage::Amf0Command {
                    command_name,
                    additional_arguments,
                    ..
                }) if command_name == "onStatus" => {
                    let code = status_code(&additional_arguments).unwrap_or_default();
                    observed.lock().unwrap().statuses.push(code);
                }
                _ => {}
            }
        }
    }
    observed.lock().unwrap().closed_after = Some(started.elapsed());
}

fn status_code(args: &[Amf0Value]) -> Option<String> {
    args.iter().find_map(|v| match v {
        Amf0Value::Object(props) => match props.get("code") {
            Some(Amf0Value::Utf8String(code)) => Some(code.clone()),
            _ => None,
        },
        _ => None,
    })
}

/// The connection up to `createStream`: request and wait, like any client.
struct Conn {
    stream: TcpStream,
    serializer: ChunkSerializer,
    deserializer: ChunkDeserializer,
    started: Instant,
    next_transaction: f64,
}

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let mut stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();

        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake.generate_outbound_p0_and_p1().unwrap();
        stream
            .write_all(&c0c1)
            .expect("handshake: cannot write C0+C1");
        let mut buf = [0u8; 4096];
        let leftover = loop {
            let n = stream.read(&mut buf).expect("handshake: read failed");
            assert!(n > 0, "handshake: server closed the connection");
            match handshake
                .process_bytes(&buf[..n])
                .unwrap_or_else(|e| panic!("handshake failed: {e:?}"))
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    stream.write_all(&response_bytes).unwrap();
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    stream.write_all(&response_bytes).unwrap();
                    break remaining_bytes;
                }
            }
        };
        let mut conn = Conn {
            stream,
            serializer: ChunkSerializer::new(),
            deserializer: ChunkDeserializer::new(),
            started: Instant::now(),
            next_transaction: 1.0,
        };
        let packet = conn
            .serializer
            .set_max_chunk_size(4096, RtmpTimestamp::new(0))
            .unwrap();
        conn.stream.write_all(&packet.bytes).unwrap();
        // Anything the server sent right after the handshake.
        if !leftover.is_empty() {
            conn.take_messages(&leftover);
        }
        conn
    }

    fn now(&self) -> RtmpTimestamp {
        RtmpTimestamp::new(self.started.elapsed().as_millis() as u32)
    }

    /// An AMF0 command on message stream `stream_id`, serialized.
    fn command(
        &mut self,
        name: &str,
        transaction: f64,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Vec<u8> {
        let message = RtmpMessage::Amf0Command {
            command_name: name.to_owned(),
            transaction_id: transaction,
            command_object: Amf0Value::Null,
            additional_arguments: args,
        };
        self.serialize(message, stream_id)
    }

    fn serialize(&mut self, message: RtmpMessage, stream_id: u32) -> Vec<u8> {
        let payload = message
            .into_message_payload(self.now(), stream_id)
            .expect("cannot build an RTMP message");
        self.serializer
            .serialize(&payload, false, false)
            .expect("cannot serialize an RTMP message")
            .bytes
    }

    fn media(&mut self, tag: &FlvTag, stream_id: u32) -> Vec<u8> {
        let message = match tag.kind {
            VIDEO => RtmpMessage::VideoData {
                data: tag.data.clone(),
            },
            _ => RtmpMessage::AudioData {
                data: tag.data.clone(),
            },
        };
        let payload = message
            .into_message_payload(RtmpTimestamp::new(tag.timestamp), stream_id)
            .expect("cannot build a media message");
        self.serializer
            .serialize(&payload, false, false)
            .expect("cannot serialize a media message")
            .bytes
    }

    fn connect(&mut self, app: &str, tc_url: &str) {
        let transaction = self.transaction();
        let props = [
            ("app", Amf0Value::Utf8String(app.to_owned())),
            ("type", Amf0Value::Utf8String("nonprivate".to_owned())),
            ("flashVer", Amf0Value::Utf8String("FMLE/3.0".to_owned())),
            ("tcUrl", Amf0Value::Utf8String(tc_url.to_owned())),
        ];
        let message = RtmpMessage::Amf0Command {
            command_name: "connect".to_owned(),
            transaction_id: transaction,
            command_object: Amf0Value::Object(
                props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ),
            additional_arguments: Vec::new(),
        };
        let bytes = self.serialize(message, 0);
        self.stream.write_all(&bytes).expect("cannot send connect");
        self.wait_result(transaction, "connect");
    }

    /// `createStream`; returns the message stream id the server gave.
    fn create_stream(&mut self) -> u32 {
        let transaction = self.transaction();
        let bytes = self.command("createStream", transaction, Vec::new(), 0);
        self.stream
            .write_all(&bytes)
            .expect("cannot send createStream");
        let args = self.wait_result(transaction, "createStream");
        match args.first() {
            Some(Amf0Value::Number(id)) => *id as u32,
            other => panic!("createStream answered {other:?}, not a stream id"),
        }
    }

    fn transaction(&mut self) -> f64 {
        let t = self.next_transaction;
        self.next_transaction += 1.0;
        t
    }

    /// Reads until `_result` (or `_error`) of `transaction`; returns its
    /// additional arguments.
    fn wait_result(&mut self, transaction: f64, what: &str) -> Vec<Amf0Value> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut buf = [0u8; 16 * 1024];
        let mut input = Vec::new();
        loop {
            for message in self.take_messages(&input) {
                if let RtmpMessage::Amf0Command {
                    command_name,
                    transaction_id,
                    additional_arguments,
                    ..
                } = message
                    && transaction_id == transaction
                {
                    assert_eq!(
                        command_name, "_result",
                        "the server refused {what}: {additional_arguments:?}"
                    );
                    return additional_arguments;
                }
            }
            assert!(Instant::now() < deadline, "no answer to {what}");
            let n = self
                .stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("reading the answer to {what}: {e}"));
            assert!(n > 0, "the server closed the connection after {what}");
            input = buf[..n].to_vec();
        }
    }

    /// Every complete message in `bytes` (plus what was buffered), applying
    /// the server's chunk size changes.
    fn take_messages(&mut self, bytes: &[u8]) -> Vec<RtmpMessage> {
        let mut out = Vec::new();
        let mut input = bytes;
        while let Some(payload) = self
            .deserializer
            .get_next_message(input)
            .expect("the server sent malformed RTMP chunks")
        {
            input = &[];
            let message = payload
                .to_rtmp_message()
                .expect("the server sent a malformed RTMP message");
            if let RtmpMessage::SetChunkSize { size } = message {
                self.deserializer.set_max_chunk_size(size as usize).unwrap();
            }
            out.push(message);
        }
        out
    }
}
