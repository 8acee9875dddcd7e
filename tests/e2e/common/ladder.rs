//! Adaptive bitrate in the harness: a `[renditions]` ladder for
//! livebucket's config, the transcoders livebucket runs (found by their
//! command line), and the OSS API calls the transcoder tests make.

use super::Stack;

/// `[renditions]` with `rungs` (name, height; video at 2 kbit/s per line
/// of height, audio 32 kbit/s) as every channel's `default`, libx264
/// `ultrafast` so two cores keep up with a small push, and `extra` lines
/// in the table (e.g. `"max_restarts = 2\n"`). For [`Stack::start_with`].
pub fn ladder_toml(rungs: &[(&str, u32)], extra: &str) -> String {
    let rungs: Vec<(&str, u32, Option<u32>)> = rungs.iter().map(|&(n, h)| (n, h, None)).collect();
    ladder_toml_fps(&rungs, extra)
}

/// [`ladder_toml`] with each rung's `max_fps` (name, height, max_fps).
pub fn ladder_toml_fps(rungs: &[(&str, u32, Option<u32>)], extra: &str) -> String {
    let names: Vec<String> = rungs.iter().map(|(n, _, _)| format!("{n:?}")).collect();
    let mut out = format!(
        "[renditions]\npreset = \"ultrafast\"\ndefault = [{}]\n{extra}",
        names.join(", ")
    );
    for (name, height, fps) in rungs {
        out += &format!(
            "\n[[renditions.rungs]]\nname = {name:?}\nheight = {height}\nvideo_kbps = {}\naudio_kbps = 32\n",
            height * 2
        );
        if let Some(fps) = fps {
            out += &format!("max_fps = {fps}\n");
        }
    }
    out
}

/// The pids of the transcoders livebucket runs against the nginx on
/// `rtmp_port` (ffmpeg with `-progress pipe:1` reading that port), with
/// their command lines.
pub fn transcoders(rtmp_port: u16) -> Vec<(u32, String)> {
    let needle = format!("rtmp://127.0.0.1:{rtmp_port}/");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "pipe:1") && args.iter().any(|a| a.starts_with(&needle)) {
            found.push((pid, args.join(" ")));
        }
    }
    found
}

/// The pids of the [`transcoders`] of the rung `height` lines high (told
/// apart by their `scale=-2:HEIGHT` filter).
pub fn rung_transcoders(rtmp_port: u16, height: u32) -> Vec<u32> {
    let filter = format!("scale=-2:{height}");
    transcoders(rtmp_port)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(&filter))
        .map(|(pid, _)| pid)
        .collect()
}

/// One call of the OSS LiveChannel API through oss2 (`tests/oss2/client.py`)
/// on the stack's livebucket, with the stack's key on [`super::BUCKET`]:
/// its JSON answer, which must not be an error.
pub fn oss2_ok(stack: &Stack, op: &str, args: &[(&str, &str)]) -> serde_json::Value {
    let python = std::env::var("OSS2_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/livebucket/oss2-2.19.1/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let key = stack.key();
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oss2/client.py"))
        .args([
            &stack.livebucket.url(),
            super::BUCKET,
            &key.id,
            &key.secret,
            op,
        ])
        .args(args.iter().map(|(k, v)| format!("{k}={v}")));
    let out = super::process::run(&format!("oss2 {op}"), &mut cmd);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("oss2 {op} printed no JSON ({e}): {out}"));
    assert!(v.get("error").is_none(), "oss2 {op} {args:?}: {v}");
    v
}
