// medrobot web console: shows what the server pushes on /ws and sends what the person does.
// The page decides nothing: every answer names the question it was shown for, and the server checks it.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_LIST = 200;
let socket = null;
let openQuestion = null; // {id, hazard, kind}
let shownPlan = null; // the last plan message: a question names its step, the page shows that step's arguments
let retryMs = 250;

function post(path, body, type) {
  const init = { method: "POST", credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = type || "application/json";
    init.body = type ? body : JSON.stringify(body);
  }
  return fetch(path, init).then(async (r) => {
    let data = {};
    try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
    // the hub's own refusals carry "ok" and reach #messages as a reply on the WebSocket; the rest only here
    if (!r.ok && !("ok" in data)) note(data.error || `HTTP ${r.status}`, "refused");
    return data;
  }).catch((e) => { note(`request failed: ${e}`, "alarm"); return {}; });
}

function trim(list) { while (list.children.length > MAX_LIST) list.removeChild(list.lastChild); }

function note(text, level, title) {
  const li = document.createElement("li");
  li.textContent = text;
  if (title) li.title = title;
  li.className = level || "info";
  $("messages").prepend(li);
  trim($("messages"));
}

// ------------------------------------------------------------------ e-stop: first, and never behind anything
// Sent twice on purpose: on the WebSocket (the fastest path) and as a request (which still arrives when the
// socket has died without closing). A second stop only latches what is latched already.
function stop() {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "stop" }));
  post("/api/stop");
}

// ------------------------------------------------------------------ messages from the server
const show = {
  state(m) {
    const s = $("state");
    s.textContent = m.state;
    s.className = m.state;
    $("step").textContent = m.step === null || m.step === undefined ? "-" :
      `${m.step + 1}/${m.steps || "?"} ${m.skill || ""}`.trim();
    $("progress").value = m.progress || 0;
    document.querySelectorAll("#plan li.step").forEach((li) => {
      const i = Number(li.dataset.index);
      li.classList.toggle("current", m.step === i);
      li.classList.toggle("done", m.step !== null && m.step !== undefined && i < m.step);
    });
    if ((m.question || null) !== (openQuestion ? openQuestion.id : null) && !m.question) setQuestion(null);
  },
  plan(m) {
    shownPlan = m;
    const ol = $("plan");
    ol.replaceChildren();
    ol.dataset.status = m.status;
    ol.dataset.readback = m.readback ? "true" : "false";
    if (!m.steps.length) {
      const li = document.createElement("li");
      li.className = "refusal";
      li.textContent = m.text;
      ol.append(li);
      return;
    }
    for (const step of m.steps) {
      const li = document.createElement("li");
      li.className = "step";
      li.dataset.index = step.index;
      li.dataset.skill = step.skill;
      li.dataset.hazard = step.hazard;
      const name = document.createElement("strong");
      name.textContent = step.skill;
      li.append(name);
      const hz = document.createElement("span");
      hz.className = `hazard ${step.hazard}`;
      hz.textContent = step.hazard;
      li.append(hz);
      for (const [arg, value] of Object.entries(step.args)) {
        const span = document.createElement("span");
        span.className = "arg";
        span.dataset.name = arg;
        span.append(`${arg}=${value}`);
        const words = document.createElement("span");
        words.className = "words";
        words.textContent = step.words[arg] ? `“${step.words[arg]}”` : "";
        span.append(words);
        li.append(span);
      }
      ol.append(li);
    }
  },
  question(m) { setQuestion(m.id ? m : null); },
  reply(m) { note(m.ok ? m.message : `REFUSED: ${m.message}`, m.ok ? "info" : "refused"); },
  log(m) { note(m.message, m.level, m.title); },
  transcript(m) { note(`heard “${m.text}” (${Number(m.confidence).toFixed(2)}): ${m.message}`, "info"); },
  telemetry(m) { $("telemetry").textContent = m.text; },
  image(m) {
    const img = $(m.kind);
    if (!img) return;
    img.src = m.url;
    img.dataset.sha256 = m.sha256;
    img.title = m.name;
  },
  audit(m) {
    const li = document.createElement("li");
    const r = m.record;
    li.textContent = auditLine(r);
    li.title = JSON.stringify(r).slice(0, 4000);
    $("audit").prepend(li);
    trim($("audit"));
  },
};

// One line per record: its number, its kind and the few fields that say what happened; the whole record is the
// line's tooltip (and in the log file).
const AUDIT_FIELDS = ["from", "to", "trigger", "text", "skill", "step", "step_index", "hazard", "accepted", "ok",
  "success", "outcome", "reason", "message", "source"];

function auditLine(r) {
  const short = (v) => {
    const s = typeof v === "string" ? v : JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 59)}…` : s;
  };
  const parts = AUDIT_FIELDS.filter((k) => r[k] !== undefined && r[k] !== null && r[k] !== "")
    .map((k) => `${k}=${short(r[k])}`);
  return [`#${r.seq ?? "?"}`, r.kind, ...parts].join(" ");
}

// The supervisor's question is worded for a terminal or a voice ("say 'confirm'"); the page words its own from the
// question's fields and the plan it shows, and keeps the supervisor's text as the tooltip.
const ASKS = {
  radiation: ["Exposure", "Press Confirm to expose (the button: a key alone does not)"],
  contact: ["Contact", "Press Confirm to make contact"],
  motion: ["Motion", "Press Confirm to move"],
};

function questionText(q) {
  if (q.kind !== "step" || q.step === null || q.step === undefined) return q.text;
  const steps = shownPlan ? shownPlan.steps : [];
  const step = steps.find((s) => s.index === q.step);
  const args = step ? Object.entries(step.args).map(([k, v]) => `${k}=${v}`).join(", ") : "";
  const what = `${q.skill || (step && step.skill) || "step"}${args ? `(${args})` : ""}`;
  const [head, act] = ASKS[q.hazard] || ["Step", "Press Confirm to run it"];
  const of = steps.length ? ` of ${steps.length}` : "";
  return `${head} — step ${q.step + 1}${of}: ${what}. ${act}, or Deny to cancel the plan.`;
}

function setQuestion(q) {
  openQuestion = q;
  const box = $("question");
  box.dataset.question = q ? q.id : "";
  box.dataset.kind = q ? q.kind : "";
  box.dataset.hazard = q && q.hazard ? q.hazard : "";
  box.classList.toggle("open", !!q);
  box.classList.toggle("radiation", !!q && q.hazard === "radiation");
  $("question-text").textContent = q ? questionText(q) : "No question open.";
  $("question-text").title = q ? q.text : "";
  // an exposure's Confirm arms arm_ms after its question appears (the server refuses it before): a click meant
  // for the question before cannot land on this one
  $("confirm").disabled = !q || q.arm_ms > 0;
  $("deny").disabled = !q;
  if (q && q.arm_ms > 0) {
    setTimeout(() => { if (openQuestion && openQuestion.id === q.id) $("confirm").disabled = false; }, q.arm_ms);
  }
}

function answer(accept, via) {
  if (!openQuestion) return;
  post("/api/confirm", { question: openQuestion.id, accept, via });
}

function connect() {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => { retryMs = 250; $("link").textContent = "live"; $("link").classList.remove("down"); };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    const f = show[m.type];
    if (f) f(m);
  };
  ws.onclose = () => {
    socket = null;
    $("link").textContent = "disconnected: retrying";
    $("link").classList.add("down");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };
  socket = ws;
}

// ------------------------------------------------------------------ command box and history
function send() {
  const box = $("command");
  const text = box.value.trim();
  if (!text) return;
  const li = document.createElement("li");
  li.textContent = text;
  li.addEventListener("click", () => { box.value = text; box.focus(); });
  $("history").prepend(li);
  trim($("history"));
  box.value = "";
  post("/api/command", { text });
}

// ------------------------------------------------------------------ push-to-talk: 16-bit mono WAV to /api/speech
let rec = null;

async function startTalking() {
  if (rec) return;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule("/static/tap.js");
    const source = ctx.createMediaStreamSource(stream);
    // no outputs: the audio thread pulls it all the same, and nothing is played back
    const node = new AudioWorkletNode(ctx, "medrobot-tap", { numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1 });
    const chunks = [];
    node.port.onmessage = (e) => chunks.push(e.data);
    source.connect(node);
    rec = { stream, ctx, node, chunks };
    $("talk").classList.add("recording");
  } catch (e) {
    note(`no microphone: ${e}`, "refused");
  }
}

function wav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); text(36, "data");
  v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (const x of c) { v.setInt16(o, Math.max(-1, Math.min(1, x)) * 32767, true); o += 2; }
  return new Blob([buf], { type: "audio/wav" });
}

async function stopTalking() {
  if (!rec) return;
  const { stream, ctx, node, chunks } = rec;
  rec = null;
  $("talk").classList.remove("recording");
  node.port.onmessage = null;
  node.disconnect();
  stream.getTracks().forEach((t) => t.stop());
  const rate = ctx.sampleRate;
  await ctx.close();
  if (!chunks.length) return;
  const data = await post("/api/speech", wav(chunks, rate), "audio/wav");
  if (data.spoken && window.speechSynthesis) speechSynthesis.speak(new SpeechSynthesisUtterance(data.spoken));
}

// ------------------------------------------------------------------ keys and buttons
document.addEventListener("keydown", (e) => {
  const inBox = e.target === $("command");
  if (inBox) {
    if (e.key === "Escape") { e.preventDefault(); stop(); }
    else if (e.key === "Enter") { e.preventDefault(); send(); }
    return;
  }
  if (e.key === " " || e.code === "Space") { e.preventDefault(); stop(); return; }
  // a held key repeats: one press answers one question, never the next one as it appears
  if (e.repeat) return;
  if (e.key === "y" && openQuestion) { e.preventDefault(); answer(true, "key"); }
  else if (e.key === "n" && openQuestion) { e.preventDefault(); answer(false, "key"); }
}, true);

// a focused button is pressed by Space on keyup: Space is the stop everywhere but the command box, never a click
document.addEventListener("keyup", (e) => {
  if (e.target !== $("command") && (e.key === " " || e.code === "Space")) e.preventDefault();
}, true);

window.addEventListener("DOMContentLoaded", () => {
  $("stop").addEventListener("click", stop);
  $("reset").addEventListener("click", () => post("/api/reset"));
  $("command-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  // Enter or Space on a focused button makes a click with no pointer behind it (detail 0): that is the keyboard,
  // and an exposure must not be confirmed by the keyboard alone
  const via = (e) => (e.detail === 0 ? "key" : "button");
  $("confirm").addEventListener("click", (e) => answer(true, via(e)));
  $("deny").addEventListener("click", (e) => answer(false, via(e)));
  const talk = $("talk");
  talk.addEventListener("pointerdown", (e) => { e.preventDefault(); startTalking(); });
  talk.addEventListener("pointerup", stopTalking);
  talk.addEventListener("pointerleave", stopTalking);
  setQuestion(null);
  fetch("/api/status", { credentials: "same-origin" }).then((r) => r.json()).then((s) => {
    if (s.domain) document.title = `medrobot ${s.domain}`;
    if (s.speech === false) {
      talk.disabled = true;
      talk.title = "push-to-talk is off on this server (see its stderr; over ROS type the command)";
    }
  }).catch(() => {});
  connect();
});
