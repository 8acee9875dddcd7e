// Plays one HLS URL with hls.js in headless Chromium and reports what the
// player saw, for tests/e2e/common/player.rs and bench/glass.py.
//
//   node tests/player/play.cjs    (settings in the environment)
//
//   PLAY_URL          the playlist to play
//   PLAY_MODE         `plain`: hls.js's defaults with lowLatencyMode off (a
//                     player that ignores LL-HLS parts); `low-latency`:
//                     hls.js's defaults, lowLatencyMode on
//   PLAY_SECONDS      how long to watch once the first picture is shown
//   PLAY_START_SECONDS how long the first picture may take (default 30)
//   PLAY_PROFILE      a new, empty directory for Chromium's profile
//   PLAY_NODE_MODULES where puppeteer-core and hls.js are installed
//                     (scripts/install-deps, from tests/console/package.json)
//   PLAY_START_HEIGHT with a master playlist: start on the level of this
//                     picture height (hls.startLevel) instead of hls.js's
//                     choice
//   PLAY_SWITCH_HEIGHT with a master playlist: once the first picture is
//                     shown, switch to the level of this height
//                     (hls.currentLevel, which also turns hls.js's own
//                     switching off) and report what followed
//   PLAY_TRACE        when set, also prints every request (`REQ ms url`) and
//                     response (`RESP ms status url`, a playlist's body after
//                     it) the page makes, ms from just before the page
//                     loads, signatures elided (the test's player log then
//                     shows what hls.js asked for and got)
//
// Prints `STARTED` once the first picture is shown, then one line
// `RESULT <json>` and exits 0; or `FAILED <reason>` and exits 1.
//
// The page is served from a loopback port of this script (so its origin is
// http://127.0.0.1:PORT: the playlist's server and the bucket must allow it
// by CORS, as for any web player). For every picture Chromium presents
// (`video.requestVideoFrameCallback`) it draws the picture onto a canvas,
// reads the stamp tests/player/stamp_push.py wrote into it and, when the
// stamp's CRC matches, records `Date.now() - stamp` (glass to glass: the same
// machine, the same clock). It also samples hls.js's own `latency` and
// `targetLatency`, and records stalls (hls.js `bufferStalledError`, the
// video's `waiting`), errors, and fragments and parts loaded. With a master
// playlist it lists hls.levels, the level switches, the fragments loaded and
// buffered per level, and every change of the picture's size.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === "") throw new Error(`${name} is not set`);
  return v;
};
const URL_ = env("PLAY_URL");
const MODE = env("PLAY_MODE");
if (MODE !== "plain" && MODE !== "low-latency") throw new Error(`PLAY_MODE=${MODE}: plain or low-latency`);
const SECONDS = Number(env("PLAY_SECONDS"));
const START_SECONDS = Number(env("PLAY_START_SECONDS", "30"));
const PROFILE = env("PLAY_PROFILE");
const MODULES = env("PLAY_NODE_MODULES");
const puppeteer = require(path.join(MODULES, "puppeteer-core"));
const HLS_JS = path.join(MODULES, "hls.js", "dist", "hls.min.js");
const HLS_VERSION = JSON.parse(fs.readFileSync(path.join(MODULES, "hls.js", "package.json"))).version;

const say = (line) => process.stdout.write(line + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What runs in the page. `window.__play` is what the driver reads back.
const PAGE = `<!doctype html><meta charset="utf-8"><title>glass to glass</title>
<video id="v" muted playsinline></video>
<script src="/hls.min.js"></script>
<script>
"use strict";
const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const P = window.__play = {
  hlsVersion: Hls.version, loadedAt: Date.now(), firstFrameAt: null,
  frames: 0, presentedFrames: 0, unreadable: 0, maxFrameGapMs: 0, lastFrameAt: null,
  glass: [], latency: [], stalls: [], waiting: [], errors: [], fatal: null,
  fragsLoaded: 0, partsLoaded: 0, levelsLoaded: 0, level: null,
  levels: [], startLevel: null, switchTarget: null, switchedAt: null, levelSwitched: [],
  fragsByLevel: {}, bufferedByLevel: {}, sizes: [], framesAtTarget: 0,
};
const since = () => P.firstFrameAt === null ? null : Date.now() - P.firstFrameAt;

// CRC-16/CCITT-FALSE, as tests/player/stamp_push.py computes it.
function crc16(bytes) {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
  }
  return crc;
}
// The stamp: an 8x8 grid of black/white cells, 48 bits of Unix ms then the
// CRC, most significant first. Each cell's middle half is averaged, so the
// encoder's ringing at the cell edges does not count.
function readStamp(img, w, h) {
  const bytes = new Array(8).fill(0);
  const cw = w / 8, ch = h / 8;
  for (let cell = 0; cell < 64; cell++) {
    const x0 = Math.floor((cell % 8) * cw + cw / 4), x1 = Math.floor((cell % 8) * cw + (3 * cw) / 4);
    const y0 = Math.floor(Math.floor(cell / 8) * ch + ch / 4), y1 = Math.floor(Math.floor(cell / 8) * ch + (3 * ch) / 4);
    let sum = 0, n = 0;
    for (let y = y0; y < y1; y += 2) {
      for (let x = x0; x < x1; x += 2) { sum += img[(y * w + x) * 4]; n++; }
    }
    if (sum / n >= 128) bytes[cell >> 3] |= 0x80 >> (cell & 7);
  }
  const ms = bytes.slice(0, 6).reduce((acc, b) => acc * 256 + b, 0);
  return crc16(bytes.slice(0, 6)) === bytes[6] * 256 + bytes[7] ? ms : null;
}

const v = document.getElementById("v");
const canvas = document.createElement("canvas");
const g = canvas.getContext("2d", { willReadFrequently: true });
function onFrame(_now, meta) {
  const at = Date.now();
  if (P.firstFrameAt === null) P.firstFrameAt = at;
  if (P.lastFrameAt !== null) P.maxFrameGapMs = Math.max(P.maxFrameGapMs, at - P.lastFrameAt);
  P.lastFrameAt = at;
  P.frames++;
  P.presentedFrames = meta.presentedFrames;
  const w = v.videoWidth, h = v.videoHeight;
  const last = P.sizes[P.sizes.length - 1];
  if (w && h && (!last || last[1] !== w || last[2] !== h)) P.sizes.push([at - P.firstFrameAt, w, h]);
  if (P.switchTarget !== null && h === P.levels[P.switchTarget].height) P.framesAtTarget++;
  if (w && h) {
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    g.drawImage(v, 0, 0, w, h);
    const stamp = readStamp(g.getImageData(0, 0, w, h).data, w, h);
    if (stamp === null) P.unreadable++;
    else P.glass.push([at - P.firstFrameAt, at - stamp]);
  }
  v.requestVideoFrameCallback(onFrame);
}
v.requestVideoFrameCallback(onFrame);
v.addEventListener("waiting", () => { if (P.firstFrameAt !== null) P.waiting.push(since()); });

const hls = new Hls({ lowLatencyMode: cfg.lowLatency });
hls.on(Hls.Events.LEVEL_LOADED, (_, d) => {
  P.levelsLoaded++;
  const x = d.details;
  P.level = {
    targetDuration: x.targetduration, partTarget: x.partTarget || 0, holdBack: x.holdBack || 0,
    partHoldBack: x.partHoldBack || 0, canBlockReload: Boolean(x.canBlockReload),
    canSkipUntil: x.canSkipUntil || 0, segments: x.fragments.length,
    parts: x.partList ? x.partList.length : 0, live: x.live,
  };
});
hls.on(Hls.Events.FRAG_LOADED, (_, d) => {
  if (d.part) P.partsLoaded++; else P.fragsLoaded++;
  if (!d.part) P.fragsByLevel[d.frag.level] = (P.fragsByLevel[d.frag.level] || 0) + 1;
});
hls.on(Hls.Events.FRAG_BUFFERED, (_, d) => {
  if (!d.part) P.bufferedByLevel[d.frag.level] = (P.bufferedByLevel[d.frag.level] || 0) + 1;
});
const levelOf = (height) => hls.levels.findIndex((l) => l.height === height);
hls.on(Hls.Events.MANIFEST_PARSED, () => {
  P.levels = hls.levels.map((l) => ({
    width: l.width || 0, height: l.height || 0, bitrate: l.bitrate,
    codecs: [l.videoCodec, l.audioCodec].filter(Boolean).join(","), uri: String(l.url).split("?")[0],
  }));
  if (cfg.startHeight) hls.startLevel = levelOf(cfg.startHeight);
});
hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
  if (P.startLevel === null) P.startLevel = d.level;
  P.levelSwitched.push([since(), d.level]);
});
// Called by the driver once the first picture is shown.
window.__switch = () => {
  const target = levelOf(cfg.switchHeight);
  if (target < 0) return "no level of height " + cfg.switchHeight + " in " + JSON.stringify(P.levels);
  P.switchTarget = target;
  P.switchedAt = since();
  hls.currentLevel = target;
  return null;
};
hls.on(Hls.Events.ERROR, (_, d) => {
  const e = {
    t: since(), type: d.type, details: d.details, fatal: Boolean(d.fatal),
    reason: String(d.reason || (d.error && d.error.message) || ""),
  };
  if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) P.stalls.push(e.t);
  if (P.errors.length < 50) P.errors.push(e);
  if (d.fatal && !P.fatal) P.fatal = d.type + ": " + d.details + (e.reason ? " (" + e.reason + ")" : "");
});
setInterval(() => {
  if (P.firstFrameAt === null) return;
  P.latency.push([since(), hls.latency, hls.targetLatency]);
}, 500);
hls.loadSource(cfg.url);
hls.attachMedia(v);
v.play().catch(() => {});
</script>
`;

function serve() {
  const script = fs.readFileSync(HLS_JS);
  const server = http.createServer((req, res) => {
    const [body, type] = req.url === "/hls.min.js" ? [script, "text/javascript"]
      : req.url === "/" ? [PAGE, "text/html; charset=utf-8"] : [null, null];
    // No favicon: answered empty, so the page logs no 404.
    if (req.url === "/favicon.ico") { res.writeHead(204).end(); return; }
    if (!body) { res.writeHead(404).end(); return; }
    res.writeHead(200, { "Content-Type": type, "Cache-Control": "no-store" }).end(body);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function main() {
  const server = await serve();
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await puppeteer.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required", `--user-data-dir=${PROFILE}`],
  });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => say(`PAGEERROR ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") say(`CONSOLE ${m.text()}`); });
    if (process.env.PLAY_TRACE) {
      const t0 = Date.now();
      const short = (u) => u.replace(/(Signature|X-Amz-[A-Za-z]+)=[^&]*/g, "$1=…");
      page.on("request", (r) => say(`REQ ${Date.now() - t0} ${short(r.url())}`));
      page.on("response", async (r) => {
        let body = "";
        if (r.request().resourceType() !== "document" && /\.m3u8/.test(r.url()) && r.status() === 200) body = "\n" + short(await r.text().catch(() => ""));
        say(`RESP ${Date.now() - t0} ${r.status()} ${short(r.url())}${body}`);
      });
    }
    const cfg = {
      url: URL_, lowLatency: MODE === "low-latency",
      startHeight: Number(process.env.PLAY_START_HEIGHT || 0),
      switchHeight: Number(process.env.PLAY_SWITCH_HEIGHT || 0),
    };
    await page.goto(`${origin}/#${encodeURIComponent(JSON.stringify(cfg))}`, { waitUntil: "load" });
    const started = Date.now();
    for (;;) {
      const s = await page.evaluate(() => ({ first: window.__play.firstFrameAt, fatal: window.__play.fatal }));
      if (s.fatal) throw new Error(`hls.js failed before the first picture: ${s.fatal}`);
      if (s.first !== null) break;
      if (Date.now() - started > START_SECONDS * 1000) {
        const p = await page.evaluate(() => window.__play);
        throw new Error(`no picture within ${START_SECONDS} s; errors: ${JSON.stringify(p.errors)}`);
      }
      await sleep(100);
    }
    say("STARTED");
    if (cfg.switchHeight) {
      const refused = await page.evaluate(() => window.__switch());
      if (refused) throw new Error(refused);
    }
    await sleep(SECONDS * 1000);
    const p = await page.evaluate(() => {
      const { lastFrameAt, ...rest } = window.__play;
      // A picture that froze until the end is a gap too.
      rest.maxFrameGapMs = Math.max(rest.maxFrameGapMs, Date.now() - lastFrameAt);
      return rest;
    });
    p.startupMs = p.firstFrameAt - p.loadedAt;
    p.mode = MODE;
    p.hlsPackageVersion = HLS_VERSION;
    say(`RESULT ${JSON.stringify(p)}`);
  } finally {
    await browser.close();
    server.close();
  }
}

main().then(() => process.exit(0), (e) => {
  say(`FAILED ${e && e.message ? e.message : e}`);
  process.exit(1);
});
