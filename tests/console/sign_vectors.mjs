// Checks console/js/sign.js against vectors the Rust signers made
// (tests/e2e/console.rs writes them to the JSON file given as argument).
// Prints one line per vector and exits 1 on any difference.
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";

// Node 18 (Debian 12's) has WebCrypto only as node:crypto's `webcrypto`.
globalThis.crypto ??= webcrypto;
const sign = await import("../../console/js/sign.js");

const vectors = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0;
for (const v of vectors) {
  const a = v.args;
  let got;
  switch (v.kind) {
    case "oss_authorization": got = await sign.ossAuthorization(a.keyId, a.secret, a.req); break;
    case "oss_presign": got = await sign.ossPresign(a.keyId, a.secret, a.req, a.expires); break;
    case "play_query": got = await sign.playQuery(a.keyId, a.secret, a.bucket, a.channel, a.playlist, a.expires); break;
    case "vod_query": got = await sign.vodQuery(a.keyId, a.secret, a.scope, a.expires); break;
    case "rgw_push_url": got = await sign.rgwPushUrl(a.endpoint, a.bucket, a.channel, a.keyId, a.secret, a.expires); break;
    case "oss_push_url": got = await sign.ossPushUrl(a.endpoint, a.bucket, a.channel, a.keyId, a.secret, a.expires, a.playlistName); break;
    default: got = `unknown kind ${v.kind}`;
  }
  if (got === v.expected) {
    console.log(`ok ${v.kind} ${v.name}`);
  } else {
    bad++;
    console.log(`MISMATCH ${v.kind} ${v.name}\n  rust: ${v.expected}\n  js:   ${got}`);
  }
}
console.log(`${vectors.length - bad} of ${vectors.length} vectors match`);
process.exit(bad ? 1 : 0);
