// Clapper live jobs page: lists the user's recent jobs (GET /v1/jobs), follows all of them live
// over the user's event stream with clapper.js (token from POST /v1/events/token, renewed when it
// expires), and creates jobs with POST /v1/jobs. Each card keeps a timeline of its changes.
// Everything from the server goes into the page as text (textContent) or as a checked http(s)
// media URL; nothing is ever parsed as HTML.
"use strict";

const FINISHED = new Set(["completed", "failed", "canceled"]);
const form = document.getElementById("create-job");
const formStatus = document.getElementById("form-status");
const jobsSection = document.getElementById("jobs");
const tokenInput = document.getElementById("token");
const cards = new Map();

tokenInput.value = sessionStorage.getItem("clapper.token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("clapper.token", tokenInput.value.trim()));

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// Only http(s) URLs become media sources.
function mediaURL(value) {
  if (typeof value !== "string" || value === "") return null;
  try {
    const url = new URL(value, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

// The stream is opened on this page's origin: the gateway serves both.
function sameOriginStreamURL(eventsUrl) {
  const url = new URL(eventsUrl, location.href);
  return url.pathname + url.search;
}

function authHeaders() {
  const token = tokenInput.value.trim();
  return token ? { "Authorization": "Bearer " + token } : {};
}

function setFormStatus(text, isError) {
  formStatus.textContent = text;
  formStatus.classList.toggle("error", Boolean(isError));
}

function syncAudioControls() {
  const audio = document.getElementById("audio").checked;
  const tier = document.getElementById("tier");
  const mode = document.getElementById("mode");
  tier.disabled = !audio;
  mode.disabled = !audio;
  // The synced tier needs the finished video.
  if (tier.value === "synced") mode.value = "after-video";
  mode.querySelector('option[value="parallel"]').disabled = tier.value === "synced";
}
document.getElementById("audio").addEventListener("change", syncAudioControls);
document.getElementById("tier").addEventListener("change", syncAudioControls);
syncAudioControls();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("submit");
  const audio = document.getElementById("audio").checked;
  const body = {
    prompt: document.getElementById("prompt").value,
    durationSeconds: Number(document.getElementById("duration").value),
    feature: { audio, audioTier: audio ? document.getElementById("tier").value : null },
  };
  if (audio) body.audioMode = document.getElementById("mode").value;
  const headers = { "Content-Type": "application/json", "Accept": "application/json" };
  const token = tokenInput.value.trim();
  if (token) headers["Authorization"] = "Bearer " + token;
  button.disabled = true;
  setFormStatus("Creating…", false);
  try {
    const response = await fetch("/v1/jobs", { method: "POST", headers, body: JSON.stringify(body) });
    const text = await response.text();
    let answer = null;
    try { answer = JSON.parse(text); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const message = answer && answer.error ? answer.error.message : text || response.statusText;
      setFormStatus(`Error ${response.status}: ${message}`, true);
      return;
    }
    const job = answer && answer.job ? answer.job : answer;
    const eventsUrl = (answer && answer.eventsUrl) || (job && job.eventsUrl);
    if (!job || !job.jobId || !eventsUrl) {
      setFormStatus("Unexpected answer from the gateway", true);
      return;
    }
    setFormStatus(`Created ${job.jobId}`, false);
    show(job);
  } catch (error) {
    setFormStatus("Network error: " + error.message, true);
  } finally {
    button.disabled = false;
  }
});

function makeCard(jobId) {
  const card = el("article", "job-card");
  card.dataset.jobId = jobId;
  const title = el("h2");
  const id = el("span", "job-id", jobId);
  const badge = el("span", "badge status", "…");
  const connection = el("span", "connection", liveState);
  title.append(id, badge, connection);
  const prompt = el("p", "prompt");
  const tasks = el("dl", "tasks");
  const videoStatus = el("dd", "video-status", "…");
  const audioStatus = el("dd", "audio-status", "…");
  tasks.append(el("dt", null, "Video"), videoStatus, el("dt", null, "Audio"), audioStatus);
  const progress = el("p", "progress");
  const videoError = el("p", "error-text video-error");
  const audioError = el("p", "error-text audio-failed");
  progress.hidden = true;
  videoError.hidden = true;
  audioError.hidden = true;
  const media = el("div", "media");
  const timeline = el("ol", "timeline");
  card.append(title, prompt, tasks, progress, videoError, audioError, media, timeline);
  jobsSection.prepend(card);
  return { card, badge, connection, prompt, videoStatus, audioStatus, progress, videoError, audioError, media, timeline, video: null, audio: null, version: 0 };
}

function render(entry, job) {
  if (typeof job.version === "number") {
    if (job.version < entry.version) return; // an older view: keep the newer one
    if (job.version > entry.version) addToTimeline(entry, job);
    entry.version = job.version;
  }
  entry.badge.textContent = job.status || "unknown";
  entry.badge.className = "badge status " + (job.status || "");
  entry.prompt.textContent = job.prompt || "";
  entry.videoStatus.textContent = job.videoStatus || "—";
  entry.audioStatus.textContent = job.feature && job.feature.audio ? (job.audioStatus || "—") + (job.audioModel ? ` (${job.audioModel})` : "") : "off";

  // Where each task stands while it is not done: its place in line (Clapper's or fal's), or the
  // last line fal logged while it runs. Text only (textContent): fal's lines are not markup.
  const progress = [];
  for (const [name, prefix] of [["Video", "video"], ["Audio", "audio"]]) {
    const status = job[prefix + "Status"];
    const position = job[prefix + "QueuePosition"];
    const logs = job[prefix + "Logs"];
    if ((status === "waiting" || status === "queued") && typeof position === "number") {
      progress.push(`${name}: ${status}, ${position === 0 ? "next in line" : position + " ahead"}`);
    } else if (status === "running" && Array.isArray(logs) && logs.length > 0) {
      progress.push(`${name}: ${logs[logs.length - 1].message}`);
    }
  }
  entry.progress.textContent = progress.join(" · ");
  entry.progress.hidden = progress.length === 0;

  entry.videoError.hidden = !job.videoError;
  entry.videoError.textContent = job.videoError ? "Video generation failed: " + job.videoError : "";

  if (job.audioStatus === "failed") {
    entry.audioError.hidden = false;
    const detail = job.audioError || "Audio generation failed";
    entry.audioError.textContent = detail.startsWith("Audio generation failed") ? detail : "Audio generation failed: " + detail;
  } else {
    entry.audioError.hidden = true;
    entry.audioError.textContent = "";
  }

  // The merged file (video with its audio track) when there is one, else the video alone.
  const mergedURL = mediaURL(job.mergedUrl);
  const videoURL = mergedURL || mediaURL(job.videoUrl);
  if (videoURL && (!entry.video || entry.video.src !== videoURL)) {
    if (!entry.video) {
      entry.video = el("video", "job-video");
      entry.video.controls = true;
      entry.video.preload = "metadata";
      entry.video.playsInline = true;
      entry.media.prepend(entry.video);
    }
    entry.video.src = videoURL;
    entry.video.dataset.merged = mergedURL ? "true" : "false";
  }
  if (entry.audio) entry.audio.hidden = Boolean(mergedURL);
  const audioURL = mergedURL ? null : mediaURL(job.audioUrl);
  if (audioURL && (!entry.audio || entry.audio.src !== audioURL)) {
    if (!entry.audio) {
      entry.audio = el("audio", "job-audio");
      entry.audio.controls = true;
      entry.audio.preload = "metadata";
      entry.media.append(entry.audio);
    }
    entry.audio.src = audioURL;
  }
}

// One line per version: when it changed (the view's updatedAt) and where the job and its tasks stood.
function addToTimeline(entry, job) {
  const at = job.updatedAt ? new Date(job.updatedAt) : new Date();
  const time = isNaN(at.getTime()) ? "" : at.toLocaleTimeString([], { hour12: false });
  const parts = [`v${job.version}`, job.status || "?", "video " + (job.videoStatus || "—")];
  if (job.feature && job.feature.audio) parts.push("audio " + (job.audioStatus || "—"));
  if (job.mergeStatus) parts.push("merge " + job.mergeStatus);
  const item = el("li", null, `${time} ${parts.join(" · ")}`);
  entry.timeline.prepend(item);
  while (entry.timeline.children.length > 20) entry.timeline.lastChild.remove();
}

// A job's card, made on first sight, with the newest view of it.
function show(job) {
  if (!job || typeof job.jobId !== "string") return;
  let entry = cards.get(job.jobId);
  if (!entry) {
    entry = makeCard(job.jobId);
    cards.set(job.jobId, entry);
  }
  render(entry, job);
}

// The page-wide stream's state, shown on every card.
let liveState = "connecting";
function setLiveState(state) {
  liveState = state === "open" ? "live" : state;
  for (const entry of cards.values()) entry.connection.textContent = liveState;
}

// The user's recent jobs (newest first, so shown oldest first and prepended), then every change
// of any of the user's jobs live, jobs made elsewhere included.
async function start() {
  try {
    const response = await fetch("/v1/jobs?limit=20", { headers: authHeaders() });
    if (response.ok) {
      const page = await response.json();
      for (const job of (page.jobs || []).slice().reverse()) show(job);
    }
    const renew = async () => {
      const answer = await fetch("/v1/events/token", { method: "POST", headers: authHeaders() });
      if (!answer.ok) throw new Error("token: " + answer.status);
      return sameOriginStreamURL((await answer.json()).eventsUrl);
    };
    window.clapperStream = Clapper.follow({
      eventsUrl: await renew(),
      renew,
      onChange: show,
      onStatus: setLiveState,
    });
  } catch (error) {
    setLiveState("offline");
    setFormStatus("Could not load your jobs: " + error.message, true);
  }
}

tokenInput.addEventListener("change", () => {
  if (window.clapperStream) window.clapperStream.close();
  for (const entry of cards.values()) entry.card.remove();
  cards.clear();
  start();
});
start();
