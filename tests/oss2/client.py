"""Alibaba's own OSS SDK (oss2) as the e2e tests' LiveChannel client.

Usage: client.py ENDPOINT BUCKET KEY_ID SECRET OP [ARG=VALUE ...]
Prints one JSON object: the operation's result, or {"error": {status, code,
message}} for an oss2.exceptions.OssError. Every call goes through oss2's
public API exactly as an SDK user would write it; nothing here signs or
builds a request by hand.
"""

import json
import sys

import oss2
from oss2.models import LiveChannelInfo, LiveChannelInfoTarget


def info_dict(i):
    t = i.target
    return {
        "name": getattr(i, "name", None),
        "status": i.status,
        "description": i.description,
        "frag_duration": int(t.frag_duration) if t else None,
        "frag_count": int(t.frag_count) if t else None,
        "playlist_name": t.playlist_name if t else None,
        "publish_url": getattr(i, "publish_url", None),
        "play_url": getattr(i, "play_url", None),
        "last_modified": getattr(i, "last_modified", None),
    }


def run(bucket, op, a):
    if op == "create":
        target = LiveChannelInfoTarget(
            frag_duration=int(a.get("frag_duration", 5)),
            frag_count=int(a.get("frag_count", 3)),
            playlist_name=a.get("playlist_name", ""),
        )
        r = bucket.create_live_channel(
            a["channel"],
            LiveChannelInfo(status=a.get("status", "enabled"), description=a.get("description", ""), target=target),
        )
        return {"publish_url": r.publish_url, "play_url": r.play_url}
    if op == "list":
        r = bucket.list_live_channel(
            prefix=a.get("prefix", ""), marker=a.get("marker", ""), max_keys=int(a.get("max_keys", 100))
        )
        return {
            "is_truncated": r.is_truncated,
            "next_marker": r.next_marker,
            "channels": [info_dict(c) for c in r.channels],
        }
    if op == "get":
        return info_dict(bucket.get_live_channel(a["channel"]))
    if op == "status":
        bucket.put_live_channel_status(a["channel"], a["status"])
        return {}
    if op == "stat":
        r = bucket.get_live_channel_stat(a["channel"])
        out = {"status": r.status, "remote_addr": r.remote_addr, "connected_time": r.connected_time}
        if r.video:
            v = r.video
            out["video"] = {
                "width": v.width, "height": v.height, "frame_rate": v.frame_rate,
                "bandwidth": v.bandwidth, "codec": v.codec,
            }
        if r.audio:
            au = r.audio
            out["audio"] = {"sample_rate": au.sample_rate, "bandwidth": au.bandwidth, "codec": au.codec}
        return out
    if op == "raw_stat":
        # GetLiveChannelStat's body as sent (livebucket's extension element
        # included), signed by oss2's own request machinery.
        resp = bucket._Bucket__do_object("GET", a["channel"], params={"live": "", "comp": "stat"})
        return {"body": resp.read().decode()}
    if op == "history":
        r = bucket.get_live_channel_history(a["channel"])
        return {"records": [
            {"start_time": x.start_time, "end_time": x.end_time, "remote_addr": x.remote_addr}
            for x in r.records
        ]}
    if op == "delete":
        bucket.delete_live_channel(a["channel"])
        return {}
    if op == "sign_rtmp_url":
        return {"url": bucket.sign_rtmp_url(a["channel"], a.get("playlist_name", ""), int(a["expires"]))}
    if op == "post_vod":
        bucket.post_vod_playlist(a["channel"], a["playlist"], start_time=int(a["start"]), end_time=int(a["end"]))
        return {}
    if op == "get_vod":
        r = bucket.get_vod_playlist(a["channel"], int(a["start"]), int(a["end"]))
        return {"playlist": r.playlist}
    if op == "create_xml":
        # A LiveChannelConfiguration oss2's models cannot express (Snapshot),
        # sent and signed by oss2's own request machinery.
        resp = bucket._Bucket__do_object("PUT", a["channel"], data=a["body"].encode(), params={"live": ""})
        return {"status": resp.status}
    if op == "raw_put_config":
        # A malformed or oversized body through oss2's own request machinery.
        body = a["body"] if "body" in a else "x" * int(a["size"])
        resp = bucket._Bucket__do_object("PUT", a["channel"], data=body.encode(), params={"live": ""})
        return {"status": resp.status}
    raise SystemExit(f"unknown operation {op}")


def main():
    endpoint, bucket_name, key_id, secret, op = sys.argv[1:6]
    args = dict(kv.split("=", 1) for kv in sys.argv[6:])
    bucket = oss2.Bucket(oss2.Auth(key_id, secret), endpoint, bucket_name, connect_timeout=10)
    try:
        out = run(bucket, op, args)
    except oss2.exceptions.OssError as e:
        out = {"error": {"status": e.status, "code": e.code, "message": e.message}}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
