// The OSS LiveChannel API on livebucket's public listener (this origin),
// each request signed in the page (sign.js). Path-style addressing:
// /<bucket>/<object>?<sub-resources>. The browser may not set `Date`, so the
// signed date travels in `x-oss-date`, which OSS V1 signs in its place.

import { encodeUnreserved, ossAuthorization, ossPresign } from "./sign.js";

/** A refusal of the API, with OSS's code and a sentence for people. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(describe(status, code, message));
    this.status = status;
    this.code = code;
  }
}

const WORDS = {
  SignatureDoesNotMatch: "The secret does not match this access key id (or the key id is unknown).",
  AccessDenied: "This access key may not manage this bucket.",
  RequestTimeTooSkewed: "This computer's clock is too far from livebucket's.",
  NoSuchLiveChannel: "There is no such channel.",
  ChannelStillLive: "The channel is live: stop the stream (or disable the channel) first.",
  LiveChannelDisabled: "The channel is disabled.",
  InvalidArgument: "Livebucket refused a value:",
  MalformedXML: "Livebucket could not read the channel settings:",
  InvalidBucketName: "That is not a valid bucket name:",
  NoSuchKey: "Nothing is stored there yet.",
  InternalError: "Livebucket could not reach its storage; try again shortly.",
};

function describe(status, code, message) {
  const words = WORDS[code];
  if (!words) return `${code || "HTTP " + status}: ${message || "request failed"}`;
  return words.endsWith(":") ? `${words} ${message}` : words;
}

function encodeKey(object) {
  return object.split("/").map(encodeUnreserved).join("/");
}

function queryString(query) {
  return query.map(([k, v]) => (v === "" ? encodeUnreserved(k)
    : `${encodeUnreserved(k)}=${encodeUnreserved(v)}`)).join("&");
}

function parseXml(text) {
  return new DOMParser().parseFromString(text, "application/xml");
}

function text(node, name) {
  const el = node.getElementsByTagName(name)[0];
  return el ? el.textContent : "";
}

export class Api {
  /** creds: { keyId, secret, bucket } */
  constructor(creds) {
    this.creds = creds;
  }

  async request(method, object, query, body) {
    const { keyId, secret, bucket } = this.creds;
    const date = new Date().toUTCString();
    const contentType = body ? "application/xml" : "";
    const headers = { "x-oss-date": date };
    const auth = await ossAuthorization(keyId, secret, {
      method, contentType, date, ossHeaders: headers, bucket, object, query,
    });
    const init = { method, headers: { ...headers, Authorization: auth }, cache: "no-store" };
    if (body) {
      init.body = body;
      init.headers["Content-Type"] = contentType;
    }
    const q = queryString(query);
    let resp;
    try {
      resp = await fetch(`/${encodeUnreserved(bucket)}/${encodeKey(object)}${q ? "?" + q : ""}`, init);
    } catch (e) {
      throw new ApiError(0, "NetworkError", "livebucket cannot be reached");
    }
    const out = await resp.text();
    if (!resp.ok) {
      const doc = out ? parseXml(out) : null;
      throw new ApiError(resp.status, doc ? text(doc, "Code") : "", doc ? text(doc, "Message") : "");
    }
    return out;
  }

  async listChannels(prefix = "") {
    const query = [["live", ""], ["max-keys", "1000"]];
    if (prefix) query.push(["prefix", prefix]);
    const doc = parseXml(await this.request("GET", "", query));
    return [...doc.getElementsByTagName("LiveChannel")].map((c) => ({
      name: text(c, "Name"),
      description: text(c, "Description"),
      status: text(c, "Status"),
      publishUrl: text(c.getElementsByTagName("PublishUrls")[0] || c, "Url"),
    }));
  }

  async info(channel) {
    const doc = parseXml(await this.request("GET", channel, [["live", ""]]));
    const snap = doc.getElementsByTagName("Snapshot")[0];
    return {
      description: text(doc, "Description"),
      status: text(doc, "Status"),
      fragDuration: Number(text(doc, "FragDuration")),
      fragCount: Number(text(doc, "FragCount")),
      playlistName: text(doc, "PlaylistName"),
      snapshot: snap ? { destBucket: text(snap, "DestBucket"), interval: Number(text(snap, "Interval")) } : null,
      // livebucket's extension: null when the server's default applies.
      retentionSecs: text(doc, "RetentionSeconds") === "" ? null : Number(text(doc, "RetentionSeconds")),
      // livebucket's extension: null for the server's default ladder,
      // "none", or comma-separated rung names.
      renditions: text(doc, "LivebucketRenditions") || null,
    };
  }

  async stat(channel) {
    const doc = parseXml(await this.request("GET", channel, [["live", ""], ["comp", "stat"]]));
    const video = doc.getElementsByTagName("Video")[0];
    const audio = doc.getElementsByTagName("Audio")[0];
    // livebucket's extension: uploads of this channel the store refuses.
    const parked = doc.getElementsByTagName("LivebucketParkedUploads")[0];
    return {
      status: text(doc, "Status"),
      parked: parked ? {
        count: Number(text(parked, "Count")),
        code: text(parked, "Code"),
        since: Date.parse(text(parked, "Since")) / 1000,
      } : null,
      connected: text(doc, "ConnectedTime"),
      remoteAddr: text(doc, "RemoteAddr"),
      video: video && {
        width: Number(text(video, "Width")), height: Number(text(video, "Height")),
        frameRate: Number(text(video, "FrameRate")), bandwidth: Number(text(video, "Bandwidth")),
        codec: text(video, "Codec"),
      },
      audio: audio && {
        bandwidth: Number(text(audio, "Bandwidth")), sampleRate: Number(text(audio, "SampleRate")),
        codec: text(audio, "Codec"),
      },
    };
  }

  async history(channel) {
    const doc = parseXml(await this.request("GET", channel, [["live", ""], ["comp", "history"]]));
    return [...doc.getElementsByTagName("LiveRecord")].map((r) => ({
      start: Date.parse(text(r, "StartTime")) / 1000,
      end: Date.parse(text(r, "EndTime")) / 1000,
      remoteAddr: text(r, "RemoteAddr"),
    }));
  }

  /** PutLiveChannel; answers the channel's publish URL. `c.retentionSecs`
   * (livebucket's RetentionSeconds): null or absent for the server's
   * default, 0 to keep recordings forever. `c.renditions`
   * (LivebucketRenditions): null or absent for the server's default ladder,
   * "none", or comma-separated rung names (see ui.js parseRenditions). */
  async create(channel, c) {
    const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LiveChannelConfiguration>" +
      `<Description>${esc(c.description)}</Description><Status>${c.status || "enabled"}</Status>` +
      `<Target><Type>HLS</Type><FragDuration>${c.fragDuration}</FragDuration>` +
      `<FragCount>${c.fragCount}</FragCount><PlaylistName>${esc(c.playlistName)}</PlaylistName></Target>`;
    if (c.snapshotInterval) {
      // RoleName and NotifyTopic are required by OSS and ignored by livebucket.
      xml += `<Snapshot><RoleName>livebucket-console</RoleName><DestBucket>${esc(this.creds.bucket)}</DestBucket>` +
        `<NotifyTopic>livebucket-console</NotifyTopic><Interval>${c.snapshotInterval}</Interval></Snapshot>`;
    }
    if (c.retentionSecs !== null && c.retentionSecs !== undefined) {
      xml += `<RetentionSeconds>${Math.round(c.retentionSecs)}</RetentionSeconds>`;
    }
    if (c.renditions) {
      xml += `<LivebucketRenditions>${esc(c.renditions)}</LivebucketRenditions>`;
    }
    xml += "</LiveChannelConfiguration>";
    const doc = parseXml(await this.request("PUT", channel, [["live", ""]], xml));
    return text(doc.getElementsByTagName("PublishUrls")[0] || doc, "Url");
  }

  setStatus(channel, status) {
    return this.request("PUT", channel, [["live", ""], ["status", status]]);
  }

  remove(channel) {
    return this.request("DELETE", channel, [["live", ""]]);
  }

  /** A presigned GetObject URL of a snapshot (the only objects served). */
  async snapshotUrl(bucket, object, lifetime = 600) {
    const expires = Math.floor(Date.now() / 1000) + lifetime;
    const q = await ossPresign(this.creds.keyId, this.creds.secret,
      { method: "GET", bucket, object, query: [] }, expires);
    return `/${encodeUnreserved(bucket)}/${encodeKey(object)}?${q}`;
  }
}
