// The channel list: status, live stat and latest snapshot of each channel,
// refreshed every few seconds, and create / enable / disable / delete.

import { ApiError } from "../api.js";
import { field, h, notice, parseRenditions, showParked, statLine } from "../ui.js";

const REFRESH_MS = 3000;

export function channelsView(main, api) {
  const status = notice();
  const list = h("ul", { class: "cards", id: "channel-list", "aria-label": "Channels" });
  const infos = new Map();
  const cards = new Map();
  let shown = null;
  let timer = null;
  let stopped = false;

  const say = (err) => status.show(err instanceof ApiError ? err.message : String(err), true);

  async function act(fn, done) {
    try {
      await fn();
      status.show(done);
      await refresh();
    } catch (err) {
      say(err);
    }
  }

  function card(c) {
    const thumb = h("img", { class: "thumb", alt: `No snapshot of ${c.name} yet`, width: 160, height: 90 });
    const badge = h("span", { class: "badge", "data-role": "status" }, c.status === "disabled" ? "Disabled" : "…");
    const stat = h("p", { class: "stat", "data-role": "stat" });
    const parked = h("p", { class: "parked", "data-role": "parked", role: "alert", hidden: true });
    const toggle = h("button", { type: "button", "data-action": "toggle" });
    toggle.addEventListener("click", () => {
      const next = c.status === "enabled" ? "disabled" : "enabled";
      act(() => api.setStatus(c.name, next), `${c.name} is now ${next}.`);
    });
    const remove = h("button", { type: "button", class: "danger", "data-action": "delete" }, "Delete");
    remove.addEventListener("click", () => {
      if (!confirm(`Delete channel ${c.name}? Its recordings stay in the bucket.`)) return;
      act(() => api.remove(c.name), `${c.name} deleted.`);
    });
    const li = h("li", { class: "card", "data-channel": c.name },
      thumb,
      h("div", { class: "card-body" },
        h("h3", {}, h("a", { href: `#/channel/${encodeURIComponent(c.name)}` }, c.name), " ", badge),
        c.description ? h("p", { class: "desc" }, c.description) : null,
        stat,
        parked,
        h("div", { class: "actions" }, toggle, remove)));
    // A refresh updates cards in place, so keyboard focus stays put.
    li.set = (fresh) => {
      c = fresh;
      toggle.textContent = c.status === "enabled" ? "Disable" : "Enable";
    };
    li.set(c);
    li.update = async () => {
      const [st, info] = await Promise.all([
        api.stat(c.name),
        infos.get(c.name) || api.info(c.name).then((i) => { infos.set(c.name, i); return i; }),
      ]);
      badge.textContent = st.status;
      badge.dataset.status = st.status;
      stat.textContent = statLine(st);
      showParked(parked, st.parked);
      if (st.video) {
        stat.dataset.width = st.video.width;
        stat.dataset.height = st.video.height;
        stat.dataset.frameRate = st.video.frameRate;
      }
      if (info.snapshot) {
        const dest = info.snapshot.destBucket;
        const object = dest === api.creds.bucket
          ? `${c.name}/snapshot/latest.jpg`
          : `${api.creds.bucket}/${c.name}/snapshot/latest.jpg`;
        const next = await api.snapshotUrl(dest, object);
        const probe = new Image();
        probe.onload = () => {
          thumb.src = next;
          thumb.alt = `Latest snapshot of ${c.name}`;
        };
        probe.src = next;
      }
    };
    return li;
  }

  async function refresh() {
    if (stopped) return;
    clearTimeout(timer);
    try {
      const channels = await api.listChannels();
      const names = channels.map((c) => c.name).join("/");
      if (names !== shown) {
        list.replaceChildren(...channels.map((c) => cards.get(c.name) || card(c)));
        cards.clear();
        for (const li of list.children) cards.set(li.dataset.channel, li);
        if (!channels.length) list.append(h("li", { class: "empty" }, "No channels yet."));
        shown = names;
      }
      channels.forEach((c) => cards.get(c.name).set(c));
      await Promise.all(channels.map((c) => cards.get(c.name).update().catch(say)));
    } catch (err) {
      say(err);
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  main.append(
    h("h2", {}, `Channels in ${api.creds.bucket}`),
    status,
    list,
    createForm(api, (name) => act(async () => {}, `Channel ${name} created.`), say),
  );
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function createForm(api, onCreated, say) {
  const name = field("Name", { name: "name", required: true, maxlength: 128, spellcheck: "false" },
    "Letters, digits and -_. (the channel's folder in the bucket)");
  const description = field("Description", { name: "description", maxlength: 128 });
  const frag = field("Fragment length (s)", { name: "fragDuration", type: "number", min: 1, max: 100, value: 2, required: true });
  const count = field("Fragments in the live playlist", { name: "fragCount", type: "number", min: 1, max: 100, value: 3, required: true });
  const playlist = field("Playlist name", { name: "playlistName", value: "index.m3u8", required: true, spellcheck: "false" });
  const snapshots = h("input", { type: "checkbox", name: "snapshots", checked: true });
  const interval = field("Snapshot every (s)", { name: "snapshotInterval", type: "number", min: 1, max: 100, value: 5 });
  const keep = field("Keep recordings for (days)", { name: "retentionDays", type: "number", min: 0, step: "any" },
    "Empty: the server's default; 0: forever. Older recordings are deleted.");
  const renditions = field("Renditions", { name: "renditions", spellcheck: "false", placeholder: "720p,360p" },
    "Rungs of the server's ladder, comma-separated; none: the source only; empty: the server's default.");
  const form = h("form", { class: "panel", id: "create", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "New channel"),
    name.wrap, description.wrap, frag.wrap, count.wrap, playlist.wrap,
    h("label", { class: "check" }, snapshots, " Take snapshots (thumbnails) into this bucket"),
    interval.wrap, keep.wrap, renditions.wrap,
    h("button", { type: "submit" }, "Create channel"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    // Checked here as the API would, so a typo is named before the request.
    const ladder = parseRenditions(renditions.input.value);
    if (ladder.error) {
      say(ladder.error);
      return;
    }
    try {
      await api.create(name.input.value.trim(), {
        description: description.input.value,
        fragDuration: Number(frag.input.value),
        fragCount: Number(count.input.value),
        playlistName: playlist.input.value.trim(),
        snapshotInterval: snapshots.checked ? Number(interval.input.value) : 0,
        retentionSecs: keep.input.value === "" ? null : Number(keep.input.value) * 86400,
        renditions: ladder.value,
      });
      const created = name.input.value.trim();
      form.reset();
      await onCreated(created);
    } catch (err) {
      say(err);
    }
  });
  return form;
}
