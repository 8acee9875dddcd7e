// The quality levels of a master playlist (a channel with renditions) in the
// player: a button per hls.js level plus "Auto", a click sets
// hls.currentLevel, and a line says which level plays now. The words are
// plain functions, so tests/console/levels_words.mjs checks them in node.

/** How a level is named: "720p · 2.5 Mbit/s", or "audio · 96 kbit/s". */
export function levelLabel(level) {
  const rate = levelRate(level && level.bitrate);
  const size = level && level.height ? `${level.height}p` : "audio";
  return rate ? `${size} · ${rate}` : size;
}

function levelRate(bps) {
  if (!(bps > 0)) return "";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

/**
 * The "now playing" line: `levels` (hls.levels), `playing` the index of the
 * level playing (-1 or absent: not known yet), `auto` whether hls.js picks
 * (hls.autoLevelEnabled).
 */
export function levelNow(levels, playing, auto) {
  const lvl = levels && playing >= 0 ? levels[playing] : null;
  const mode = auto ? "automatic" : "chosen";
  return lvl ? `Playing ${levelLabel(lvl)} (${mode}).` : `Choosing a level (${mode})…`;
}

/**
 * Level buttons for the hls.js instance playing in `video` (video.hls, set
 * by ui.js playHls, which fires "hls-attached" on the video for each new
 * instance). Returns `{ wrap }`: hidden until a master playlist with more
 * than one level is parsed.
 */
export function levelPicker(video) {
  const buttons = document.createElement("div");
  buttons.className = "actions";
  buttons.setAttribute("role", "group");
  buttons.setAttribute("aria-label", "Quality");
  const line = document.createElement("p");
  line.dataset.role = "level";
  line.setAttribute("aria-live", "polite");
  const wrap = document.createElement("div");
  wrap.className = "levels";
  wrap.hidden = true;
  wrap.append(buttons, line);

  const show = (hls, playing) => {
    line.textContent = levelNow(hls.levels, playing, hls.autoLevelEnabled);
    line.dataset.level = String(playing);
    for (const b of buttons.children) {
      const i = Number(b.dataset.level);
      const on = i === -1 ? hls.autoLevelEnabled : !hls.autoLevelEnabled && i === hls.manualLevel;
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
  };

  function attach() {
    const hls = video.hls;
    const Hls = window.Hls;
    if (!hls || !Hls) return;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
      const levels = data.levels || [];
      buttons.replaceChildren();
      wrap.hidden = levels.length < 2;
      const button = (i, text) => {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.level = String(i);
        b.textContent = text;
        b.addEventListener("click", () => {
          // -1 hands the choice back to hls.js.
          hls.currentLevel = i;
          show(hls, hls.currentLevel);
        });
        return b;
      };
      buttons.append(button(-1, "Auto"), ...levels.map((l, i) => button(i, levelLabel(l))));
      show(hls, -1);
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => show(hls, data.level));
  }

  video.addEventListener("hls-attached", attach);
  return { wrap };
}
