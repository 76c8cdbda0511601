// Live progress on a request's page, from the API's server-sent events.
"use strict";

function fmtTimes() {
  // Show unix timestamps in the viewer's local time.
  for (const el of document.querySelectorAll(".when[data-ts]")) {
    const ts = Number(el.dataset.ts);
    if (ts > 0) el.textContent = new Date(ts * 1000).toLocaleString();
  }
}

function follow(live) {
  const final = ["done", "failed", "cancelled"];
  if (final.includes(live.dataset.state)) return;
  const source = new EventSource(live.dataset.events);
  const show = (ev) => {
    const r = JSON.parse(ev.data);
    document.getElementById("state").textContent = r.state;
    document.getElementById("phase").textContent = r.phase || "";
    document.getElementById("progress").value = r.progress;
    document.getElementById("position").textContent =
      r.queue_position ? `#${r.queue_position} in queue` : "";
  };
  source.addEventListener("progress", show);
  for (const state of final) {
    source.addEventListener(state, (ev) => {
      show(ev);
      source.close();
      // The server renders the video, timeline and actions of a finished request.
      window.location.reload();
    });
  }
  source.addEventListener("error", (ev) => {
    // An `error` event with data is the server's; without data it is a dropped connection,
    // which EventSource retries by itself.
    if (ev.data) { source.close(); document.getElementById("phase").textContent = JSON.parse(ev.data).detail; }
  });
}

function awaitReport(pending) {
  // The quality report follows the render by a few seconds: reload once it is there.
  const check = async () => {
    const r = await fetch(pending.dataset.request, {credentials: "same-origin"});
    if (r.ok && Object.keys((await r.json()).quality || {}).length) window.location.reload();
    else setTimeout(check, 2000);
  };
  setTimeout(check, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  fmtTimes();
  const live = document.getElementById("live");
  if (live) follow(live);
  const pending = document.getElementById("quality-pending");
  if (pending) awaitReport(pending);
});
