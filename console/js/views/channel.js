// One channel: the live player on a /play URL signed in the page, the
// history of pushes, VOD of a stored range, and the push-URL generator.

import { ApiError } from "../api.js";
import { encodeUnreserved, ossPushUrl, playQuery, rgwPushUrl, vodQuery } from "../sign.js";
import {
  copyable, duration, field, h, notice, parseRenditions, playHls, renditionsLine, showParked, statLine, videoElement, when,
} from "../ui.js";
import { levelPicker } from "../levels.js";

const STAT_MS = 3000;
/** Lifetime of the play and VOD URLs the page signs for itself. */
const VIEW_SECS = 3600;

const now = () => Math.floor(Date.now() / 1000);

export function channelView(main, api, name) {
  const { keyId, secret, bucket } = api.creds;
  const status = notice();
  const say = (err) => status.show(err instanceof ApiError ? err.message : String(err), true);
  const stops = [];
  let stopped = false;
  let info = null;

  // --- live -------------------------------------------------------------
  const badge = h("span", { class: "badge", "data-role": "status" }, "…");
  const stat = h("p", { class: "stat", "data-role": "stat" });
  const parked = h("p", { class: "parked", "data-role": "parked", role: "alert", hidden: true });
  const toggle = h("button", { type: "button", "data-action": "toggle" }, "…");
  const live = videoElement(`Live picture of ${name}`);
  live.id = "live-video";
  const latency = h("p", { class: "latency", id: "latency", "aria-live": "off" });
  const playerNote = notice();
  const playUrl = copyable("Signed play URL (valid 1 hour)", "playUrl");
  const levels = levelPicker(live);
  levels.wrap.id = "live-levels";
  let stopLive = null;
  let enabled = true;

  async function signedPlayUrl(playlist, expires) {
    const q = await playQuery(keyId, secret, bucket, name, playlist, expires);
    const path = [bucket, name, playlist].map(encodeUnreserved).join("/");
    return `${location.origin}/play/${path}?${q}`;
  }

  /** The channel's master playlist when it has renditions (and the master
   * is written: every variant has a stored fragment), else null. */
  async function masterUrl(expires) {
    if (info.renditions === "none") return null;
    const url = await signedPlayUrl("master.m3u8", expires);
    const resp = await fetch(url, { cache: "no-store" });
    return resp.ok && (await resp.text()).includes("#EXT-X-STREAM-INF:") ? url : null;
  }

  async function startLive() {
    const expires = now() + VIEW_SECS;
    const url = (await masterUrl(expires)) || (await signedPlayUrl(info.playlistName, expires));
    playUrl.input.value = url;
    // Live starts with the push; the playlist follows with the first
    // fragments. Until then wait here rather than fail in the player.
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) {
      playerNote.show(resp.status === 404 ? "Waiting for the first segments…"
        : `The play URL was refused: ${(await resp.text()).trim()}`, resp.status !== 404);
      return;
    }
    playerNote.show("");
    stopLive = playHls(live, url, (msg) => {
      playerNote.show(`Player stopped: ${msg}`, true);
      live.dataset.fatal = msg;
    });
  }

  toggle.addEventListener("click", async () => {
    const next = enabled ? "disabled" : "enabled";
    try {
      await api.setStatus(name, next);
      status.show(next === "disabled"
        ? `${name} is disabled; a live push is dropped within about 10 s.`
        : `${name} is enabled.`);
      await refreshStat();
    } catch (err) {
      say(err);
    }
  });

  async function refreshStat() {
    const st = await api.stat(name);
    enabled = st.status !== "Disabled";
    toggle.textContent = enabled ? "Disable" : "Enable";
    badge.textContent = st.status;
    badge.dataset.status = st.status;
    stat.textContent = statLine(st) || (st.status === "Idle" ? "Nobody is pushing." : "");
    showParked(parked, st.parked);
    if (st.status === "Live" && !stopLive) await startLive();
    if (st.status !== "Live" && stopLive) {
      stopLive();
      stopLive = null;
      playerNote.show("The push ended.");
    }
  }

  const latencyTimer = setInterval(() => {
    const hls = live.hls;
    if (hls && Number.isFinite(hls.latency) && hls.latency > 0) {
      latency.textContent = `${hls.latency.toFixed(1)} s behind live`;
      latency.dataset.seconds = hls.latency.toFixed(2);
    } else {
      latency.textContent = "";
    }
  }, 1000);
  stops.push(() => clearInterval(latencyTimer));

  let statTimer = null;
  async function pollStat() {
    if (stopped) return;
    try {
      await refreshStat();
    } catch (err) {
      say(err);
    }
    if (!stopped) statTimer = setTimeout(pollStat, STAT_MS);
  }
  stops.push(() => clearTimeout(statTimer));

  // --- history and VOD --------------------------------------------------
  const historyBody = h("tbody");
  const vodStatus = notice();
  const from = field("From", { name: "vodStart", type: "datetime-local", step: 1, required: true });
  const to = field("To", { name: "vodEnd", type: "datetime-local", step: 1, required: true });
  const vod = videoElement(`Recording of ${name}`);
  vod.id = "vod-video";
  const vodUrl = copyable("Signed VOD URL (valid 1 hour)", "vodUrl");
  // A range with renditions is a master playlist: the same level buttons.
  const vodLevels = levelPicker(vod);
  vodLevels.wrap.id = "vod-levels";
  let stopVod = null;

  const toLocalInput = (t) => {
    const d = new Date(t * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  const fromLocalInput = (v) => Math.floor(new Date(v).getTime() / 1000);

  async function refreshHistory() {
    const records = await api.history(name);
    historyBody.replaceChildren(...records.slice().reverse().map((r) => h("tr", {},
      h("td", {}, when(r.start)),
      h("td", {}, r.end > r.start ? duration(r.end - r.start) : "live"),
      h("td", {}, r.remoteAddr),
      h("td", {}, h("button", {
        type: "button",
        "data-action": "pick",
        "aria-label": `Pick the push of ${when(r.start)} for playback`,
        onclick: () => {
          from.input.value = toLocalInput(Math.floor(r.start));
          to.input.value = toLocalInput(Math.ceil(r.end) + 1);
          from.input.focus();
        },
      }, "Pick")))));
    if (!records.length) historyBody.append(h("tr", {}, h("td", { colspan: 4 }, "No pushes yet.")));
  }

  // --- retention --------------------------------------------------------
  const kept = h("p", { "data-role": "retention" });
  const keep = field("Keep recordings for (days)", { name: "retentionDays", type: "number", min: 0, step: "any" },
    "Empty: the server's default; 0: forever. Saved while nobody pushes.");
  const keepStatus = notice();
  const showKept = () => {
    const r = info.retentionSecs;
    kept.textContent = r === null ? "Recordings are kept for the server's default period."
      : r === 0 ? "Recordings are kept forever."
        : `Recordings are deleted once older than ${r >= 86400 ? `${+(r / 86400).toFixed(2)} days` : duration(r)}.`;
    keep.input.value = r === null ? "" : String(r / 86400);
  };
  const keepForm = h("form", { class: "panel", id: "retention-form", "aria-labelledby": "retention-title" },
    h("h3", { id: "retention-title" }, "Retention"),
    kept, keep.wrap, h("button", { type: "submit" }, "Save"), keepStatus);
  // PutLiveChannel rewrites the whole channel: `changes` over the record as
  // it is, then the page shows what the server kept.
  async function rewrite(changes) {
    await api.create(name, {
      description: info.description,
      status: info.status,
      fragDuration: info.fragDuration,
      fragCount: info.fragCount,
      playlistName: info.playlistName,
      snapshotInterval: info.snapshot ? info.snapshot.interval : 0,
      retentionSecs: info.retentionSecs,
      renditions: info.renditions,
      ...changes,
    });
    info = await api.info(name);
    showKept();
    showLadder();
  }
  keepForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const retentionSecs = keep.input.value === "" ? null : Number(keep.input.value) * 86400;
      await rewrite({ retentionSecs });
      keepStatus.show("Saved.");
    } catch (err) {
      keepStatus.show(`Not saved: ${err.message || err}`, true);
    }
  });

  // --- renditions -------------------------------------------------------
  const ladderLine = h("p", { "data-role": "renditions" });
  const ladder = field("Renditions", { name: "renditions", spellcheck: "false", placeholder: "720p,360p" },
    "Rungs of the server's ladder, comma-separated; none: the source only; empty: the server's default. " +
    "Applies from the next push; saved while nobody pushes.");
  const ladderStatus = notice();
  const showLadder = () => {
    ladderLine.textContent = renditionsLine(info.renditions);
    ladder.input.value = info.renditions || "";
  };
  const ladderForm = h("form", { class: "panel", id: "renditions-form", "aria-labelledby": "renditions-title" },
    h("h3", { id: "renditions-title" }, "Renditions"),
    ladderLine, ladder.wrap, h("button", { type: "submit" }, "Save"), ladderStatus);
  ladderForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const parsed = parseRenditions(ladder.input.value);
    if (parsed.error) {
      ladderStatus.show(parsed.error, true);
      return;
    }
    try {
      await rewrite({ renditions: parsed.value });
      ladderStatus.show("Saved.");
    } catch (err) {
      ladderStatus.show(`Not saved: ${err.message || err}`, true);
    }
  });

  const vodForm = h("form", { class: "panel", id: "vod-form", "aria-labelledby": "vod-title" },
    h("h3", { id: "vod-title" }, "Play a recording"),
    h("p", {}, "Pick a push above or type a range (at most a day)."),
    h("div", { class: "row" }, from.wrap, to.wrap),
    h("button", { type: "submit" }, "Play range"),
    vodStatus, vod, vodLevels.wrap, vodUrl.wrap);
  vodForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const start = fromLocalInput(from.input.value), end = fromLocalInput(to.input.value);
    if (!(end > start)) {
      vodStatus.show("The end must be after the start.", true);
      return;
    }
    const scope = { method: "GET", bucket, channel: name, start, end, urls: "presigned", name: "" };
    const q = await vodQuery(keyId, secret, scope, now() + VIEW_SECS);
    const url = `${location.origin}/api/v1/buckets/${encodeUnreserved(bucket)}/channels/` +
      `${encodeUnreserved(name)}/vod?${q}`;
    vodUrl.input.value = url;
    // Fetched once here so that a refusal is shown in words, not as a
    // player error.
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) {
      vodStatus.show(`No recording to play: ${(await resp.text()).trim()}`, true);
      return;
    }
    vodStatus.show(`Playing ${duration(end - start)} from ${when(start)}.`);
    if (stopVod) stopVod();
    delete vod.dataset.fatal;
    delete vod.dataset.ended;
    stopVod = playHls(vod, url, (msg) => {
      vodStatus.show(`Player stopped: ${msg}`, true);
      vod.dataset.fatal = msg;
    });
  });
  vod.addEventListener("ended", () => {
    vod.dataset.ended = "true";
    vodStatus.show("Played to the end.");
  });

  // --- push URL ---------------------------------------------------------
  const scheme = field("Signature scheme", { tag: "select", name: "scheme" });
  scheme.input.append(h("option", { value: "rgw" }, "RGW (rtmp://HOST/live/CHANNEL?Bucket=…)"),
    h("option", { value: "oss" }, "OSS (rtmp://BUCKET.LIVE-DOMAIN/live/CHANNEL?OSSAccessKeyId=…)"));
  const endpoint = field("RTMP endpoint", { name: "endpoint", required: true, spellcheck: "false" },
    "For OSS the host's first label must be the bucket (auth.oss_live_domain).");
  const expiry = field("Valid for (hours)", { name: "expiryHours", type: "number", min: 1, max: 8760, value: 24, required: true });
  const pushUrl = copyable("Push URL", "pushUrl");
  const obsServer = copyable("OBS server", "obsServer");
  const obsKey = copyable("OBS stream key", "obsKey");
  const ffmpeg = copyable("ffmpeg", "ffmpegLine");
  const pushStatus = notice();
  const pushForm = h("form", { class: "panel", id: "push-form", "aria-labelledby": "push-title" },
    h("h3", { id: "push-title" }, "Push URL"),
    scheme.wrap, endpoint.wrap, expiry.wrap,
    h("button", { type: "submit" }, "Sign push URL"),
    pushStatus, pushUrl.wrap, obsServer.wrap, obsKey.wrap, ffmpeg.wrap);
  pushForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const base = endpoint.input.value.trim().replace(/\/+$/, "");
    const expires = now() + Math.round(Number(expiry.input.value) * 3600);
    // An OSS URL names a playlist only when the channel's is not the default.
    const playlist = info && info.playlistName !== "index.m3u8" ? info.playlistName : "";
    const url = scheme.input.value === "oss"
      ? await ossPushUrl(base, bucket, name, keyId, secret, expires, playlist)
      : await rgwPushUrl(base, bucket, name, keyId, secret, expires);
    const key = url.slice(base.length + 1);
    pushUrl.input.value = url;
    obsServer.input.value = base;
    obsKey.input.value = key;
    ffmpeg.input.value = `ffmpeg -re -i INPUT -c:v libx264 -g 60 -c:a aac -f flv '${url}'`;
    pushStatus.show(key.length > 255
      ? "nginx-rtmp cuts stream names past 255 bytes: this URL cannot work; use a shorter name."
      : `Valid until ${when(expires)}.`, key.length > 255);
  });

  main.append(
    h("p", {}, h("a", { href: "#/" }, "← All channels")),
    h("h2", {}, name, " ", badge),
    status,
    h("section", { class: "panel", "aria-labelledby": "live-title" },
      h("h3", { id: "live-title" }, "Live"),
      stat, parked, h("div", { class: "actions" }, toggle),
      live, levels.wrap, latency, playerNote, playUrl.wrap),
    h("section", { class: "panel", "aria-labelledby": "history-title" },
      h("h3", { id: "history-title" }, "Pushes"),
      h("table", { id: "history" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Started"), h("th", { scope: "col" }, "Length"),
          h("th", { scope: "col" }, "From"), h("th", { scope: "col" }, h("span", { class: "sr" }, "Pick")))),
        historyBody),
      h("button", { type: "button", onclick: () => refreshHistory().catch(say) }, "Refresh")),
    vodForm,
    keepForm,
    ladderForm,
    pushForm);

  (async () => {
    try {
      const [i, listed] = await Promise.all([api.info(name), api.listChannels(name)]);
      info = i;
      showKept();
      showLadder();
      const mine = listed.find((c) => c.name === name);
      if (mine && mine.publishUrl.endsWith(`/${name}`)) {
        endpoint.input.value = mine.publishUrl.slice(0, -name.length - 1);
      }
      await refreshHistory();
      pollStat();
    } catch (err) {
      say(err);
    }
  })();

  return () => {
    stopped = true;
    stops.forEach((f) => f());
    if (stopLive) stopLive();
    if (stopVod) stopVod();
  };
}
