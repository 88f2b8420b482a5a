// The voxvec web page: no framework, no CDN. Recordings are converted to 16-bit WAV in the
// browser (MediaRecorder gives WebM or Ogg, which the server's decoder does not read).
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];

const $ = (id) => document.getElementById(id);
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("voxvec-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("voxvec-token", tokenInput.value));

function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = String(text);
  return span.innerHTML;
}

async function call(method, path, form) {
  const headers = {};
  if (tokenInput.value) headers.Authorization = "Bearer " + tokenInput.value;
  const response = await fetch(path, { method, headers, body: form });
  let body;
  try {
    body = await response.json();
  } catch (err) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
  return body;
}

function show(id, html, isError) {
  const box = $(id);
  box.classList.toggle("error", Boolean(isError));
  box.innerHTML = html;
}

async function run(resultId, work) {
  show(resultId, "working...");
  try {
    await work();
  } catch (err) {
    show(resultId, escapeHtml(err.message), true);
  }
}

// ------------------------------------------------------------------ recording

function encodeWav(buffer) {
  const rate = buffer.sampleRate;
  const n = buffer.length;
  const mono = new Float32Array(n);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view], { type: "audio/wav" });
}

async function toWav(blob) {
  const context = new AudioContext();
  try {
    return encodeWav(await context.decodeAudioData(await blob.arrayBuffer()));
  } finally {
    context.close();
  }
}

// Each .slot holds a file input and a record button; its value is the recording, else the files.
for (const slot of document.querySelectorAll(".slot")) {
  const button = slot.querySelector(".record");
  const status = slot.querySelector(".status");
  const input = slot.querySelector("input[type=file]");
  let recorder = null;
  input.addEventListener("change", () => { slot.recording = null; status.textContent = ""; });
  button.addEventListener("click", async () => {
    if (recorder) {
      recorder.stop();
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      status.textContent = "no microphone: " + err.message;
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => chunks.push(event.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((track) => track.stop());
      recorder = null;
      button.classList.remove("on");
      button.textContent = "record";
      try {
        const wav = await toWav(new Blob(chunks, { type: chunks[0] ? chunks[0].type : "" }));
        slot.recording = new File([wav], "recording.wav", { type: "audio/wav" });
        status.textContent = `recorded ${(wav.size / 32000).toFixed(1)} s`;
      } catch (err) {
        status.textContent = "could not read the recording: " + err.message;
      }
    };
    recorder.start();
    button.classList.add("on");
    button.textContent = "stop";
    status.textContent = "recording...";
  });
}

function slotFiles(section, field) {
  const slot = document.querySelector(`#${section} .slot[data-field="${field}"]`);
  if (slot.recording) return [slot.recording];
  return Array.from(slot.querySelector("input[type=file]").files);
}

function formWith(section, field, formField) {
  const files = slotFiles(section, field);
  if (!files.length) throw new Error("choose a file or record one first");
  const form = new FormData();
  for (const file of files) form.append(formField || field, file, file.name);
  return { form, files };
}

// ------------------------------------------------------------------ actions

$("verify-run").addEventListener("click", () => run("verify-result", async () => {
  const form = new FormData();
  for (const side of ["a", "b"]) {
    const files = slotFiles("verify", side);
    if (!files.length) throw new Error(`side ${side.toUpperCase()}: choose a file or record one`);
    for (const file of files) form.append(side, file, file.name);
  }
  const r = await call("POST", "verify", form);
  const verdict = r.same === null ? "no decision" : r.same ? "same speaker" : "different speakers";
  show("verify-result",
    `<span class="decision ${r.same ? "same" : "different"}">${verdict}</span>` +
    `<br>score <b class="score">${r.score.toFixed(3)}</b>` +
    (r.threshold === null ? "" : ` (threshold ${r.threshold.toFixed(3)})`));
}));

$("identify-run").addEventListener("click", () => run("identify-result", async () => {
  const { form } = formWith("identify", "files");
  const r = await call("POST", "identify", form);
  const m = r.results[0];
  const name = m.speaker === null ? "unknown" : m.speaker;
  const candidates = m.candidates.map((c) => `${escapeHtml(c.speaker)} ${c.score.toFixed(3)}`).join(", ");
  show("identify-result",
    `<span class="decision speaker">${escapeHtml(name)}</span> (${escapeHtml(m.decision)}, ` +
    `score ${m.score.toFixed(3)}, threshold ${r.threshold.toFixed(3)})<br>candidates: ${candidates}`);
}));

$("enroll-run").addEventListener("click", () => run("enroll-result", async () => {
  const { form } = formWith("enroll", "files");
  form.append("name", $("enroll-name").value);
  const r = await call("POST", "enroll", form);
  show("enroll-result", `enrolled <b>${escapeHtml(r.speaker.name)}</b>: +${r.added}, ${r.speaker.count} in all`);
  await listSpeakers();
}));

async function listSpeakers() {
  const list = $("speakers-list");
  let r;
  try {
    r = await call("GET", "speakers");
  } catch (err) {
    list.innerHTML = `<li class="error">${escapeHtml(err.message)}</li>`;
    return;
  }
  list.innerHTML = "";
  for (const s of r.speakers) {
    const item = document.createElement("li");
    item.textContent = `${s.name} (${s.count})`;
    const remove = document.createElement("button");
    remove.textContent = "remove";
    remove.addEventListener("click", async () => {
      try {
        await call("DELETE", "speakers/" + encodeURIComponent(s.name));
      } catch (err) {
        show("enroll-result", escapeHtml(err.message), true);
      }
      await listSpeakers();
    });
    item.appendChild(remove);
    list.appendChild(item);
  }
}

$("diarize-run").addEventListener("click", () => run("diarize-result", async () => {
  const { form, files } = formWith("diarize", "file");
  const count = $("diarize-speakers").value;
  if (count) form.append("num_speakers", count);
  form.append("names", $("diarize-names").checked ? "true" : "false");
  const r = await call("POST", "diarize", form);
  const audio = $("diarize-audio");
  if (audio.src) URL.revokeObjectURL(audio.src);
  audio.src = URL.createObjectURL(files[0]);
  audio.hidden = false;
  drawTimeline(r, audio);
  show("diarize-result", `${r.speakers.length} speaker(s), ${r.segments.length} turn(s), ${r.duration_s.toFixed(1)} s`);
}));

function drawTimeline(r, audio) {
  const timeline = $("diarize-timeline");
  const playhead = timeline.querySelector(".playhead");
  timeline.querySelectorAll(".turn").forEach((t) => t.remove());
  const colour = new Map(r.speakers.map((s, i) => [s, COLOURS[i % COLOURS.length]]));
  const total = Math.max(r.duration_s, 1e-6);
  for (const seg of r.exclusive_segments) {
    const turn = document.createElement("div");
    turn.className = "turn";
    turn.dataset.speaker = seg.speaker;
    turn.dataset.start = seg.start_s;
    turn.title = `${seg.speaker} ${seg.start_s.toFixed(2)}-${seg.end_s.toFixed(2)} s`;
    turn.style.left = `${(100 * seg.start_s) / total}%`;
    turn.style.width = `${(100 * (seg.end_s - seg.start_s)) / total}%`;
    turn.style.background = colour.get(seg.speaker);
    turn.addEventListener("click", (event) => {
      event.stopPropagation();
      audio.currentTime = seg.start_s;
      audio.play();
    });
    timeline.appendChild(turn);
  }
  timeline.onclick = (event) => {
    const box = timeline.getBoundingClientRect();
    audio.currentTime = (total * (event.clientX - box.left)) / box.width;
    audio.play();
  };
  audio.ontimeupdate = () => { playhead.style.left = `${(100 * audio.currentTime) / total}%`; };
  timeline.hidden = false;
  $("diarize-legend").innerHTML = r.speakers
    .map((s) => `<span><i style="background:${colour.get(s)}"></i>${escapeHtml(s)}</span>`).join("");
}

call("GET", "health").then((h) => {
  $("health").textContent = `${h.model}, ${h.embed_dim}-d, ${h.speakers} speaker(s) enrolled` +
    (h.auth ? ", token required" : "");
  listSpeakers();
}).catch((err) => { $("health").textContent = err.message; });
