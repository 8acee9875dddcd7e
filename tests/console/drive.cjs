// Drives livebucket's web console in real Chromium (headless, web security
// on) for tests/e2e/console.rs, which starts the servers, pushes with ffmpeg
// and asserts on what this script prints. Protocol:
//   this script -> test: lines `STEP <name>`, `PUSH_URL <url>`, `REFUSE`,
//                        `RESTORE`, `DISABLED`, `SCREENSHOT <path>`, and
//                        finally `RESULT <json>`;
//   test -> this script: empty files in $LB_SIGNALS (`pushing`, `refusing`,
//                        `restored`, `dropped`).
// Every request each page sends is recorded through the DevTools protocol
// (Network.requestWillBeSent + ExtraInfo, i.e. the headers really sent) and
// searched for the secret.
"use strict";

const fs = require("fs");
const path = require("path");

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const LB = env("LB_URL");
const KEY_ID = env("LB_KEY_ID");
const SECRET = env("LB_SECRET");
const BUCKET = env("LB_BUCKET");
const CHANNEL = env("LB_CHANNEL");
const ALLOWED = env("LB_OTHER_ORIGIN");
const DENIED = env("LB_DENIED_ORIGIN");
const OUT = env("LB_ARTEFACTS");
const SIGNALS = env("LB_SIGNALS");
const puppeteer = require(path.join(env("LB_NODE_MODULES"), "puppeteer-core"));

const say = (line) => process.stdout.write(line + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function signal(name, timeoutMs) {
  const file = path.join(SIGNALS, name);
  const end = Date.now() + timeoutMs;
  while (!fs.existsSync(file)) {
    if (Date.now() > end) throw new Error(`no '${name}' from the test in ${timeoutMs} ms`);
    await sleep(200);
  }
}

const requests = [];
async function record(page, label) {
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  cdp.on("Network.requestWillBeSent", (e) => requests.push({
    page: label, url: e.request.url, headers: e.request.headers, body: e.request.postData || "",
  }));
  cdp.on("Network.requestWillBeSentExtraInfo", (e) => requests.push({
    page: label, url: "", headers: e.headers, body: "",
  }));
  page.on("console", (m) => say(`CONSOLE ${label} ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => say(`PAGEERROR ${label}: ${e.message}`));
}

async function shot(page, name) {
  const file = path.join(OUT, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  say(`SCREENSHOT ${file}`);
}

async function fill(page, selector, value) {
  await page.$eval(selector, (el) => { el.value = ""; });
  await page.type(selector, String(value));
}

/** Waits until `fn` (run in the page) returns a truthy value, and returns it. */
async function until(page, what, fn, arg, timeoutMs = 60000) {
  try {
    const handle = await page.waitForFunction(fn, { timeout: timeoutMs, polling: 250 }, arg);
    return await handle.jsonValue();
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message}`);
  }
}

/** Samples a <video>'s currentTime until it has advanced `seconds`. */
async function advances(page, selector, seconds, timeoutMs = 60000) {
  return until(page, `${selector} to play ${seconds} s`, ([sel, s]) => {
    const v = document.querySelector(sel);
    if (!v) return false;
    if (v.dataset.fatal) return { fatal: v.dataset.fatal };
    if (v.first === undefined && v.currentTime > 0) v.first = v.currentTime;
    return v.first !== undefined && v.currentTime - v.first >= s
      ? { first: v.first, last: v.currentTime, restarts: Number(v.dataset.restarts || 0) } : false;
  }, [selector, seconds], timeoutMs);
}

async function main() {
  const result = {};
  const browser = await puppeteer.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      `--user-data-dir=${env("LB_PROFILE")}`],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    await record(page, "console");
    page.on("dialog", (d) => d.accept());

    say("STEP sign-in refused");
    await page.goto(`${LB}/console/`, { waitUntil: "load" });
    await page.waitForSelector("#signin");
    await shot(page, "1-sign-in");
    await fill(page, "input[name=keyId]", KEY_ID);
    await fill(page, "input[name=secret]", SECRET + "x");
    await fill(page, "input[name=bucket]", BUCKET);
    await page.click("#signin input[name=remember]");
    await page.click("#signin button[type=submit]");
    result.refusal = await until(page, "the refusal", () => {
      const n = document.querySelector("#signin .notice.error");
      return n && n.textContent;
    });
    result.storedAfterRefusal = await page.evaluate(() => sessionStorage.length);
    result.signInFormAfterRefusal = Boolean(await page.$("#signin"));

    say("STEP sign in to a bucket the key may not use");
    await fill(page, "input[name=secret]", SECRET);
    await fill(page, "input[name=bucket]", env("LB_FOREIGN_BUCKET"));
    await page.$eval("#signin .notice", (n) => { n.textContent = ""; });
    await page.click("#signin button[type=submit]");
    result.foreignRefusal = await until(page, "the refusal", () => {
      const n = document.querySelector("#signin .notice.error");
      return n && n.textContent;
    });
    result.storedAfterForeign = await page.evaluate(() => sessionStorage.length);

    say("STEP sign in");
    await fill(page, "input[name=bucket]", BUCKET);
    await page.click("#signin button[type=submit]");
    await page.waitForSelector("#channel-list");

    say("STEP create");
    await fill(page, "#create input[name=name]", CHANNEL);
    await fill(page, "#create input[name=description]", "made in the console test");
    await fill(page, "#create input[name=snapshotInterval]", 2);
    await fill(page, "#create input[name=retentionDays]", 7);
    await fill(page, "#create input[name=renditions]", "none");
    await page.click("#create button[type=submit]");
    result.createdStatus = await until(page, "the new channel to show Idle", (name) => {
      const b = document.querySelector(`li[data-channel="${name}"] [data-role=status]`);
      return b && b.textContent === "Idle" && b.textContent;
    }, CHANNEL);
    // The API's error in words: the same name again while it exists is
    // fine (PutLiveChannel overwrites), so ask for an invalid one instead.
    await fill(page, "#create input[name=name]", "bad/name");
    await page.click("#create button[type=submit]");
    result.createError = await until(page, "the API's error", () => {
      const n = document.querySelector("main > .notice.error");
      return n && n.textContent;
    });

    say("STEP push URL");
    await page.click(`li[data-channel="${CHANNEL}"] h3 a`);
    result.endpointFromApi = await until(page, "the endpoint from PublishUrls",
      () => document.querySelector("#push-form input[name=endpoint]")?.value);
    result.retention = await until(page, "the channel's retention",
      () => document.querySelector("[data-role=retention]")?.textContent);
    result.renditions = await until(page, "the channel's renditions",
      () => document.querySelector("[data-role=renditions]")?.textContent);
    // A rung the server's ladder does not have: the API's refusal, in words.
    await fill(page, "#renditions-form input[name=renditions]", "720p");
    await page.click("#renditions-form button[type=submit]");
    result.renditionsRefused = await until(page, "the renditions refusal", () => {
      const n = document.querySelector("#renditions-form .notice.error");
      return n && n.textContent;
    });
    // The test's nginx listens on a port of its own; the operator types it.
    await fill(page, "#push-form input[name=endpoint]", env("LB_RTMP_ENDPOINT"));
    await page.click("#push-form button[type=submit]");
    const pushUrl = await until(page, "the push URL",
      () => document.querySelector("input[name=pushUrl]").value);
    result.obsServer = await page.$eval("input[name=obsServer]", (e) => e.value);
    result.obsKey = await page.$eval("input[name=obsKey]", (e) => e.value);
    result.ffmpegLine = await page.$eval("input[name=ffmpegLine]", (e) => e.value);
    say(`PUSH_URL ${pushUrl}`);
    await signal("pushing", 30000);

    say("STEP live in the list");
    await page.evaluate(() => { location.hash = "#/"; });
    result.liveStat = await until(page, "Live with the stream's size", (name) => {
      const li = document.querySelector(`li[data-channel="${name}"]`);
      const b = li && li.querySelector("[data-role=status]");
      const s = li && li.querySelector("[data-role=stat]");
      return b && b.textContent === "Live" && s.dataset.width && Number(s.dataset.frameRate) > 0 &&
        { width: Number(s.dataset.width), height: Number(s.dataset.height),
          frameRate: Number(s.dataset.frameRate), text: s.textContent };
    }, CHANNEL, 90000);
    result.thumbnail = await until(page, "the snapshot thumbnail", (name) => {
      const img = document.querySelector(`li[data-channel="${name}"] img.thumb`);
      return img && img.complete && img.naturalWidth > 0 &&
        { width: img.naturalWidth, height: img.naturalHeight, alt: img.alt };
    }, CHANNEL, 60000);
    await shot(page, "2-channels");
    // Delete while live: OSS's ChannelStillLive, in words.
    await page.click(`li[data-channel="${CHANNEL}"] [data-action=delete]`);
    result.deleteWhileLive = await until(page, "the delete refusal", () => {
      const n = document.querySelector("main > .notice.error");
      return n && n.textContent;
    });
    await page.setViewport({ width: 360, height: 780 });
    await sleep(500);
    result.narrowOverflow = await page.evaluate(() => document.documentElement.scrollWidth - 360);
    await shot(page, "3-channels-360px");
    await page.setViewport({ width: 1280, height: 900 });

    say("STEP parked uploads");
    // The test makes the store refuse the key's writes to the bucket.
    say("REFUSE");
    await signal("refusing", 30000);
    // Run in the page: the warning under `sel` while it shows.
    const parkedAt = (sel) => {
      const p = document.querySelector(sel);
      return p && !p.hidden && p.textContent && { code: p.dataset.code, text: p.textContent };
    };
    result.parkedList = await until(page, "the parked-upload warning in the list", parkedAt,
      `li[data-channel="${CHANNEL}"] [data-role=parked]`, 60000);
    await shot(page, "3b-channels-parked");
    await page.click(`li[data-channel="${CHANNEL}"] h3 a`);
    result.parkedDetail = await until(page, "the parked-upload warning on the channel", parkedAt,
      "section [data-role=parked]", 30000);
    await shot(page, "3c-channel-parked");
    // The test gives the permission back and reloads livebucket.
    say("RESTORE");
    await signal("restored", 30000);
    result.parkedGone = await until(page, "the warning to go", () => {
      const p = document.querySelector("section [data-role=parked]");
      return p && p.hidden && p.textContent === "";
    }, null, 60000);
    await page.evaluate(() => { location.hash = "#/"; });
    await page.waitForSelector(`li[data-channel="${CHANNEL}"] h3 a`);

    say("STEP live player");
    await page.click(`li[data-channel="${CHANNEL}"] h3 a`);
    result.livePlay = await advances(page, "#live-video", 4, 90000);
    result.latency = await until(page, "the latency", () => {
      const l = document.querySelector("#latency");
      return l && l.dataset.seconds && { seconds: Number(l.dataset.seconds), text: l.textContent };
    });
    const playUrl = await page.$eval("input[name=playUrl]", (e) => e.value);
    await shot(page, "4-channel-live");

    say("STEP other origin");
    const other = await browser.newPage();
    await record(other, "other-origin");
    await other.goto(`${ALLOWED}/player.html#${encodeURIComponent(playUrl)}`, { waitUntil: "load" });
    result.otherOriginPlay = await advances(other, "#v", 4, 90000);
    // Five reloads of one /play URL: each media sequence number keeps its URI.
    result.reloads = await other.evaluate(async (url) => {
      const seen = new Map();
      let changed = 0, segments = 0;
      for (let i = 0; i < 5; i++) {
        const text = await (await fetch(url, { cache: "no-store" })).text();
        let seq = Number((text.match(/#EXT-X-MEDIA-SEQUENCE:(\d+)/) || [])[1] || 0);
        for (const line of text.split("\n")) {
          if (!line || line.startsWith("#")) continue;
          if (seen.has(seq) && seen.get(seq) !== line) changed++;
          if (!seen.has(seq)) segments++;
          seen.set(seq, line);
          seq++;
        }
        await new Promise((r) => setTimeout(r, 700));
      }
      return { segments, changed };
    }, playUrl);
    await shot(other, "5-other-origin-player");
    const denied = await browser.newPage();
    await record(denied, "denied-origin");
    await denied.goto(`${DENIED}/player.html#none`, { waitUntil: "load" });
    result.deniedFetch = await denied.evaluate(async (url) => {
      try {
        await fetch(url, { cache: "no-store" });
        return "allowed";
      } catch (e) {
        return `refused: ${e.name}`;
      }
    }, playUrl);
    await denied.close();
    await other.close();

    say("STEP disable");
    await page.bringToFront();
    await page.click("section [data-action=toggle]");
    say("DISABLED");
    await signal("dropped", 60000);
    result.disabledStatus = await until(page, "Disabled", () => {
      const b = document.querySelector("h2 [data-role=status]");
      return b && b.textContent === "Disabled" && b.textContent;
    });

    say("STEP vod");
    const picked = await until(page, "a finished push in the history", () => {
      const rows = [...document.querySelectorAll("#history tbody tr")];
      const done = rows.find((r) => r.querySelector("[data-action=pick]") && r.children[1].textContent !== "live");
      if (!done) {
        document.querySelector("#history + button").click();
        return false;
      }
      done.querySelector("[data-action=pick]").click();
      return done.textContent;
    }, null, 60000);
    result.history = picked;
    await page.click("#vod-form button[type=submit]");
    await until(page, "the VOD player to start", () => {
      const v = document.querySelector("#vod-video");
      if (v.dataset.fatal) return true;
      return v.currentTime > 0 && v.duration > 0;
    }, null, 60000);
    // Played through at 4x so the test takes a quarter of the recording.
    await page.$eval("#vod-video", (v) => { v.playbackRate = 4; });
    const vodState = () => page.$eval("#vod-video", (v) => JSON.stringify({
      currentTime: v.currentTime, duration: v.duration, paused: v.paused, readyState: v.readyState,
      buffered: [...Array(v.buffered.length).keys()].map((i) => [v.buffered.start(i), v.buffered.end(i)]),
      error: v.error && v.error.message,
    }));
    try {
      result.vod = await until(page, "the VOD player to reach the end", () => {
        const v = document.querySelector("#vod-video");
        if (v.dataset.fatal) return { fatal: v.dataset.fatal };
        return v.dataset.ended === "true" &&
          { duration: v.duration, currentTime: v.currentTime, restarts: Number(v.dataset.restarts || 0) };
      }, null, 120000);
    } catch (e) {
      throw new Error(`${e.message}; the player: ${await vodState()}`);
    }
    result.vodUrl = await page.$eval("input[name=vodUrl]", (e) => e.value);
    await shot(page, "6-channel-vod");

    say("STEP enable and delete");
    await page.click("section [data-action=toggle]");
    result.enabledStatus = await until(page, "Idle again", () => {
      const b = document.querySelector("h2 [data-role=status]");
      return b && b.textContent === "Idle" && b.textContent;
    });
    await page.evaluate(() => { location.hash = "#/"; });
    await page.waitForSelector(`li[data-channel="${CHANNEL}"] [data-action=delete]`);
    await page.click(`li[data-channel="${CHANNEL}"] [data-action=delete]`);
    result.afterDelete = await until(page, "the empty list", () => {
      const empty = document.querySelector("#channel-list .empty");
      return empty && empty.textContent;
    });

    const secretIn = (s) => typeof s === "string" && s.includes(SECRET);
    result.requests = requests.length;
    result.requestsWithSecret = requests.filter((r) =>
      secretIn(r.url) || secretIn(r.body) ||
      Object.entries(r.headers || {}).some(([k, v]) => secretIn(k) || secretIn(v))).map((r) => r.url);
    result.signedApiRequests = requests.filter((r) =>
      Object.entries(r.headers || {}).some(([k, v]) => k.toLowerCase() === "authorization" && v.startsWith("OSS "))).length;
  } finally {
    await browser.close();
  }
  say(`RESULT ${JSON.stringify(result)}`);
}

main().catch((e) => {
  say(`FAILED ${e.stack || e}`);
  process.exit(1);
});
