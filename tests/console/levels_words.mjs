// Checks the words of the console's quality levels (console/js/levels.js)
// without a browser: how a level is named and what the "now playing" line
// says. Run by tests/e2e/console.rs; prints one line per case and exits 1
// on any failure.
const { levelLabel, levelNow } = await import("../../console/js/levels.js");

let bad = 0;
const check = (name, got, want) => {
  if (got === want) console.log(`ok ${name}`);
  else {
    bad++;
    console.log(`FAIL ${name}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  }
};

const levels = [
  { height: 720, bitrate: 2_480_000 },
  { height: 360, bitrate: 812_345 },
  { bitrate: 96_000 },
];
check("a video level", levelLabel(levels[0]), "720p · 2.5 Mbit/s");
check("under a megabit", levelLabel(levels[1]), "360p · 812 kbit/s");
check("an audio-only level", levelLabel(levels[2]), "audio · 96 kbit/s");
check("no bitrate", levelLabel({ height: 240 }), "240p");
check("nothing known", levelLabel(undefined), "audio");
check("auto, playing", levelNow(levels, 1, true), "Playing 360p · 812 kbit/s (automatic).");
check("chosen", levelNow(levels, 0, false), "Playing 720p · 2.5 Mbit/s (chosen).");
check("not known yet", levelNow(levels, -1, true), "Choosing a level (automatic)…");
check("out of range", levelNow(levels, 7, false), "Choosing a level (chosen)…");

process.exit(bad ? 1 : 0);
