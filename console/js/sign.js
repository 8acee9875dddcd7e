// Request and URL signatures, computed in the page with WebCrypto so the
// secret never leaves the browser. Each function mirrors one Rust signer and
// must produce exactly what livebucket verifies:
//   ossStringToSign / ossAuthorization / ossPresign  src/sign/oss_v1.rs (OSS V1)
//   signPlay / playQuery                               src/sign/play.rs (play)
//   signVod / vodQuery                                 src/sign/play.rs (VOD)
//   rgwPushUrl / ossPushUrl                            src/sign/push.rs
// tests/console/sign_vectors.mjs checks them against vectors the Rust code
// prints (`livebucket sign …`). No DOM here, so node runs this file too.

const utf8 = new TextEncoder();

async function hmac(hash, secret, message) {
  const key = await crypto.subtle.importKey(
    "raw", utf8.encode(secret), { name: "HMAC", hash }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8.encode(message)));
}

function base64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function base64url(bytes) {
  return base64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** RFC 3986 unreserved characters stay, everything else is %-encoded. */
export function encodeUnreserved(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/** An RTMP path segment: pchar stays (RTMP clients never decode it). */
function encodePchar(s) {
  return encodeUnreserved(s).replace(/%(21|24|26|27|28|29|2A|2B|2C|3B|3D|3A|40)/g,
    (_, hex) => String.fromCharCode(parseInt(hex, 16)));
}

// oss2's sub-resources that appear in LiveChannel requests; any of them in
// the query is signed (the full list is SUB_RESOURCES in src/sign/oss_v1.rs).
const SUB_RESOURCES = new Set(["comp", "endTime", "live", "startTime", "status", "vod"]);

/**
 * The OSS V1 string to sign (src/sign/oss_v1.rs `string_to_sign`).
 * req: { method, contentMd5, contentType, date, ossHeaders: {name: value},
 *        bucket, object (decoded key), query: [[name, value], …] (decoded) }
 */
export function ossStringToSign(req) {
  let out = `${req.method}\n${req.contentMd5 || ""}\n${req.contentType || ""}\n${req.date}\n`;
  const headers = Object.entries(req.ossHeaders || {})
    .map(([k, v]) => [k.toLowerCase(), String(v).replace(/^[ \t]+|[ \t]+$/g, "")])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [k, v] of headers) out += `${k}:${v}\n`;
  out += "/";
  if (req.bucket) out += `${req.bucket}/${req.object || ""}`;
  const subs = (req.query || []).filter(([k]) => SUB_RESOURCES.has(k))
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  subs.forEach(([k, v], i) => { out += (i === 0 ? "?" : "&") + (v ? `${k}=${v}` : k); });
  return out;
}

/** `Authorization: OSS <id>:<signature>` for a request with `date` set. */
export async function ossAuthorization(keyId, secret, req) {
  const sig = base64(await hmac("SHA-1", secret, ossStringToSign(req)));
  return `OSS ${keyId}:${sig}`;
}

/** The query credentials of an OSS presigned URL valid through `expires`. */
export async function ossPresign(keyId, secret, req, expires) {
  const sig = base64(await hmac("SHA-1", secret,
    ossStringToSign({ ...req, date: String(expires), contentMd5: "", contentType: "" })));
  return `OSSAccessKeyId=${encodeUnreserved(keyId)}&Expires=${expires}` +
    `&Signature=${encodeUnreserved(sig)}`;
}

/** livebucket's play signature (sign/play.rs `sign_play`). */
export async function signPlay(secret, bucket, channel, playlist, expires) {
  return base64url(await hmac("SHA-256", secret,
    `LIVEBUCKET-PLAY\n${expires}\n/${bucket}/${channel}/${playlist}`));
}

/** `AccessKeyId=K&Expires=E&Signature=S` of a play URL (sign/play.rs `play_query`). */
export async function playQuery(keyId, secret, bucket, channel, playlist, expires) {
  const sig = await signPlay(secret, bucket, channel, playlist, expires);
  return `AccessKeyId=${encodeUnreserved(keyId)}&Expires=${expires}&Signature=${sig}`;
}

/**
 * livebucket's VOD API signature (sign/play.rs `sign_vod`).
 * scope: { method: "GET"|"POST", bucket, channel, start, end,
 *          urls: "relative"|"presigned", name: "" for GET }
 */
export async function signVod(secret, scope, expires) {
  return base64url(await hmac("SHA-256", secret,
    `LIVEBUCKET-VOD\n${scope.method}\n${expires}\n/${scope.bucket}/${scope.channel}\n` +
    `${scope.start}\n${scope.end}\n${scope.urls}\n${scope.name || ""}`));
}

/** The query of a VOD API URL (sign/play.rs `vod_query`). */
export async function vodQuery(keyId, secret, scope, expires) {
  const sig = await signVod(secret, scope, expires);
  let q = `start=${scope.start}&end=${scope.end}&urls=${scope.urls}`;
  if (scope.name) q += `&name=${encodeUnreserved(scope.name)}`;
  return q + `&AccessKeyId=${encodeUnreserved(keyId)}&Expires=${expires}&Signature=${sig}`;
}

/** An RGW-style push URL (push.rs `rgw_push_url`). */
export async function rgwPushUrl(endpoint, bucket, channel, keyId, secret, expires) {
  const sig = base64(await hmac("SHA-1", secret, `${expires}\n/${bucket}/${channel}`));
  return `${endpoint.replace(/\/+$/, "")}/${encodePchar(channel)}` +
    `?Bucket=${encodeUnreserved(bucket)}&AccessKeyId=${encodeUnreserved(keyId)}` +
    `&Expires=${expires}&Signature=${encodeUnreserved(sig)}`;
}

/** An OSS-style push URL (push.rs `oss_push_url`); `playlistName` optional. */
export async function ossPushUrl(endpoint, bucket, channel, keyId, secret, expires, playlistName) {
  const canonical = playlistName ? `playlistName:${playlistName}\n` : "";
  const sig = base64(await hmac("SHA-1", secret,
    `${expires}\n${canonical}/${bucket}/${channel}`));
  let url = `${endpoint.replace(/\/+$/, "")}/${encodePchar(channel)}` +
    `?OSSAccessKeyId=${encodeUnreserved(keyId)}&Expires=${expires}` +
    `&Signature=${encodeUnreserved(sig)}`;
  if (playlistName) url += `&playlistName=${encodeUnreserved(playlistName)}`;
  return url;
}
