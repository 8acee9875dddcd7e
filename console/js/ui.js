// Small DOM helpers shared by the views. Text goes in as text (never HTML),
// so names and error messages from the API cannot inject markup.

/** h("p", {class: "x"}, "text", child…): an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A labelled input (`<label>` wraps the text and the control). */
export function field(label, attrs, hint) {
  const input = h(attrs.tag || "input", { ...attrs, tag: null });
  const wrap = h("label", { class: "field" }, h("span", {}, label), input);
  if (hint) wrap.append(h("small", {}, hint));
  return { wrap, input };
}

/** A status line read out by screen readers; `show(msg, isError)`. */
export function notice() {
  const el = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  el.show = (msg, isError) => {
    el.textContent = msg || "";
    el.classList.toggle("error", Boolean(isError));
    el.setAttribute("role", isError ? "alert" : "status");
  };
  return el;
}

/** A read-only copyable value with a Copy button. */
export function copyable(label, name) {
  const input = h("input", { type: "text", readonly: true, name, spellcheck: "false" });
  const button = h("button", {
    type: "button",
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
        button.textContent = "Copied";
      } catch {
        // Without clipboard permission the text stays selected to copy by hand.
        button.textContent = "Selected";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    },
  }, "Copy");
  const wrap = h("div", { class: "copy" }, h("label", { class: "field" }, h("span", {}, label), input), button);
  return { wrap, input };
}

export function bitrate(bytesPerSecond) {
  // nginx-rtmp reports bandwidth per measuring period: none yet in a push's
  // first seconds.
  if (!bytesPerSecond) return "bitrate measuring";
  const kbit = (bytesPerSecond * 8) / 1000;
  return kbit >= 1000 ? `${(kbit / 1000).toFixed(1)} Mbit/s` : `${Math.round(kbit)} kbit/s`;
}

export function when(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString();
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return hh ? `${hh} h ${mm} min` : mm ? `${mm} min ${ss} s` : `${ss} s`;
}

/** One line describing a channel's live stat (GetLiveChannelStat). */
export function statLine(stat) {
  if (stat.status !== "Live") return "";
  const parts = [];
  if (stat.video) {
    const v = stat.video;
    parts.push(`${v.width}x${v.height}`, `${v.frameRate} fps`, `${v.codec} ${bitrate(v.bandwidth)}`);
  }
  if (stat.audio) parts.push(`${stat.audio.codec} ${bitrate(stat.audio.bandwidth)}`);
  if (stat.connected) parts.push(`since ${new Date(stat.connected).toLocaleTimeString()}`);
  if (stat.remoteAddr) parts.push(`from ${stat.remoteAddr}`);
  return parts.join(" · ");
}

/** What an operator does about a store's final answer, by S3 code. */
const PARKED_FIXES = {
  AccessDenied: "give this access key write permission on the bucket in the store (or fix its secret), then reload livebucket",
  SignatureDoesNotMatch: "make the access key's secret in livebucket's configuration match the store's, then reload livebucket",
  InvalidAccessKeyId: "create the access key in the store (or fix its id in livebucket's configuration), then reload livebucket",
  NoSuchBucket: "create the bucket in the store, then reload livebucket",
  AuthorizationHeaderMalformed: "set [s3] region to the store's region, then restart livebucket",
  PermanentRedirect: "point [s3] endpoint and region at the bucket's region, then restart livebucket",
};

/**
 * The warning for a channel whose uploads the store refuses
 * (GetLiveChannelStat's LivebucketParkedUploads), or "" when none are
 * parked. The uploads are kept on livebucket's disk and retried every
 * upload.max_backoff_secs and at each reload, as /healthz says.
 */
export function parkedWarning(parked) {
  if (!parked || !(parked.count > 0)) return "";
  const uploads = parked.count === 1 ? "1 upload" : `${parked.count} uploads`;
  const since = Number.isFinite(parked.since)
    ? ` since ${new Date(parked.since * 1000).toLocaleTimeString()}` : "";
  const fix = PARKED_FIXES[parked.code] ||
    "fix the store's configuration, the access key or the bucket, then reload livebucket";
  return `The store refuses this channel's uploads (${parked.code}): ${uploads} waiting${since}, ` +
    `kept on livebucket's disk and retried every upload.max_backoff_secs and at each reload. To fix: ${fix}.`;
}

/** Rung names the server keeps for itself (config::renditions). */
const RESERVED_RUNGS = ["source", "snapshot", "master"];

/**
 * The renditions field as the API checks it (LivebucketRenditions): an
 * empty field is `{ value: null }` (the server's default ladder), `none`
 * is `{ value: "none" }` (the source only), else comma-separated rung names
 * (spaces around them are dropped) as `{ value: "720p,360p" }`; a name that
 * cannot be a rung, one given twice, or `none` beside a rung is
 * `{ error }`. Whether each rung is in the server's ladder only the server
 * knows: it refuses unknown ones by name.
 */
export function parseRenditions(text) {
  const names = String(text).split(",").map((n) => n.trim());
  if (names.every((n) => n === "")) return { value: null };
  if (names.length === 1 && names[0] === "none") return { value: "none" };
  const seen = new Set();
  for (const n of names) {
    if (n === "") return { error: "Renditions: an empty name between commas." };
    if (n === "none") return { error: "Renditions: none stands alone (the source only)." };
    if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(n) || RESERVED_RUNGS.includes(n)) {
      return { error: `Renditions: ${n.slice(0, 40)} is not a rung name (a-z 0-9 _ -, up to 32; not source, snapshot or master).` };
    }
    if (seen.has(n)) return { error: `Renditions: ${n} is named twice.` };
    seen.add(n);
  }
  return { value: names.join(",") };
}

/** The channel page's words for a record's renditions (see `parseRenditions`). */
export function renditionsLine(value) {
  if (value === null || value === undefined || value === "") {
    return "Renditions: the server's default ladder.";
  }
  if (value === "none") return "Renditions: none (the source only).";
  return `Renditions: ${value.split(",").join(", ")} (besides the source).`;
}

/** Shows `parkedWarning(parked)` in `el`, or hides it when there is none. */
export function showParked(el, parked) {
  const words = parkedWarning(parked);
  el.textContent = words;
  el.hidden = !words;
  if (words) el.dataset.code = parked.code;
  else delete el.dataset.code;
}

/** A <video> element for hls.js, keyboard-reachable with native controls. */
export function videoElement(label) {
  const video = h("video", { controls: true, muted: true, playsinline: true, "aria-label": label });
  // The attribute alone does not mute an element made by script; muted
  // playback may start without a click.
  video.muted = true;
  return video;
}

/**
 * Plays `url` in `video` with hls.js (or natively where HLS is native).
 * `onFatal(message)` is called on an unrecoverable error. Returns a stop().
 *
 * One error is recovered: the first fragment of a session stored behind an
 * nginx.conf without `wait_video on` (before livebucket's template had it)
 * carries audio only (nginx-rtmp started the relayed stream before the
 * first keyframe reached it), so hls.js opens an audio-only MediaSource and
 * then cannot append the video that follows. The player is then restarted
 * at the fragment that brought the video, once; `video.dataset.restarts`
 * counts it.
 */
export function playHls(video, url, onFatal) {
  const Hls = window.Hls;
  if (!(Hls && Hls.isSupported())) {
    video.src = url;
    video.play().catch(() => {});
    return () => { video.removeAttribute("src"); video.load(); };
  }
  let hls = null;
  let restarted = false;
  const start = (startPosition) => {
    hls = new Hls({ startPosition });
    hls.on(Hls.Events.ERROR, (_, data) => {
      const why = data.error && data.error.message ? ` (${data.error.message})` : "";
      console.warn(`hls.js ${data.fatal ? "fatal" : "recovered"} ${data.type}: ${data.details}${why}`);
      // Fatal or not: hls.js would only drop that fragment's video and
      // then stall, as the MediaSource has no video buffer.
      const newTrack = data.details === Hls.ErrorDetails.BUFFER_APPEND_ERROR &&
        /SourceBuffer, but it does not exist/.test(why);
      if (newTrack && !restarted && data.frag) {
        restarted = true;
        video.dataset.restarts = String(Number(video.dataset.restarts || 0) + 1);
        hls.destroy();
        // Just inside that fragment, beyond hls.js's lookup tolerance
        // (0.25 s), so it cannot pick the audio-only one before it.
        start(data.frag.start + Math.min(0.5, data.frag.duration / 2));
        return;
      }
      if (data.fatal) onFatal(`${data.type}: ${data.details}${why}`);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    video.play().catch(() => {});
    video.hls = hls;
    // Views that follow the player (levels.js) attach to each new instance.
    video.dispatchEvent(new Event("hls-attached"));
  };
  start(-1);
  return () => { hls.destroy(); video.hls = null; };
}
