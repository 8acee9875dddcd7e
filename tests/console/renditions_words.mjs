// Checks the console's renditions field (console/js/ui.js parseRenditions,
// renditionsLine) without a browser: it accepts what the API accepts
// (LivebucketRenditions) and names what the API would refuse. Run by
// tests/e2e/console.rs; prints one line per case and exits 1 on any failure.
const { parseRenditions, renditionsLine } = await import("../../console/js/ui.js");

let bad = 0;
const check = (name, ok, got) => {
  if (ok) console.log(`ok ${name}`);
  else {
    bad++;
    console.log(`FAIL ${name}: ${JSON.stringify(got)}`);
  }
};

for (const [text, want] of [
  ["", null], ["  ", null], [" , ", null], ["none", "none"], [" none ", "none"],
  ["720p", "720p"], ["720p,360p", "720p,360p"], ["720p, 360p ", "720p,360p"], ["audio_64k,a-1", "audio_64k,a-1"],
]) {
  const got = parseRenditions(text);
  check(`${JSON.stringify(text)} is ${want}`, got.value === want && !got.error, got);
}
for (const [text, words] of [
  ["720p,720p", "named twice"], ["720P", "not a rung name"], ["source", "not a rung name"],
  ["master", "not a rung name"], ["snapshot", "not a rung name"], ["-x", "not a rung name"],
  ["a".repeat(33), "not a rung name"], ["720p,,360p", "empty name"], ["none,720p", "stands alone"],
  ["../x", "not a rung name"],
]) {
  const got = parseRenditions(text);
  check(`${JSON.stringify(text)} is refused: ${words}`, got.value === undefined && got.error.includes(words), got);
}
check("the default ladder in words", renditionsLine(null).includes("default"), renditionsLine(null));
check("none in words", renditionsLine("none").includes("source only"), renditionsLine("none"));
const two = renditionsLine("720p,360p");
check("rungs in words", two.includes("720p, 360p"), two);

process.exit(bad ? 1 : 0);
