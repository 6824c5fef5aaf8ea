// voice.js — recording a voice message with MediaRecorder and sending it as audio.

import { el } from "./dom.js";
import { showError } from "./errors.js";
import { currentConversation } from "./open-conversation.js";
import { sendFile } from "./sending.js";

const MAX_VOICE_S = 300; // a recording stops by itself after this long
const VOICE_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"];

let recording = null; // {recorder, stream, chunks, started, stopped, timer, conversation, cancelled}

el.recordButton.addEventListener("click", () => (recording ? stopRecording() : startRecording()));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && recording) stopRecording({ cancel: true });
});

/** Record from the microphone until the button is pressed again (or MAX_VOICE_S). */
async function startRecording() {
  const conversation = currentConversation();
  if (!conversation) return;
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("This browser cannot record voice messages.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    showError(err && err.name === "NotAllowedError"
      ? "Microphone access is blocked for this page (see the browser's site settings)."
      : "No microphone could be used.");
    return;
  }
  if (recording || currentConversation() !== conversation) {
    stream.getTracks().forEach((track) => track.stop());
    return;
  }
  const type = VOICE_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  const rec = { recorder, stream, chunks: [], started: Date.now(), stopped: null, timer: null, conversation, cancelled: false };
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data && event.data.size) rec.chunks.push(event.data);
  });
  recorder.addEventListener("stop", () => finishRecording(rec));
  recorder.start();
  recording = rec;
  showRecording(true);
  const tick = () => {
    const seconds = Math.floor((Date.now() - rec.started) / 1000);
    el.recordTime.textContent = `● ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    if (seconds >= MAX_VOICE_S) stopRecording();
  };
  tick();
  rec.timer = setInterval(tick, 500);
}

/** Drop a recording in progress, if any: its conversation is no longer the open one. */
export function cancelRecording() {
  if (recording) stopRecording({ cancel: true });
}

/** Stop recording: send what was recorded, or drop it (`cancel`). */
function stopRecording({ cancel = false } = {}) {
  const rec = recording;
  if (!rec) return;
  recording = null;
  rec.cancelled = cancel;
  rec.stopped = Date.now();
  clearInterval(rec.timer);
  showRecording(false);
  if (rec.recorder.state !== "inactive") rec.recorder.stop();
  else finishRecording(rec);
}

/** The record button and the timer beside it, while recording (`on`) or not. */
function showRecording(on) {
  el.recordButton.setAttribute("aria-pressed", String(on));
  el.recordButton.setAttribute("aria-label", on ? "Stop and send the voice message" : "Record a voice message");
  el.recordButton.title = on ? "Stop and send (Esc cancels)" : "Record a voice message";
  el.recordTime.hidden = !on;
  if (!on) el.recordTime.textContent = "";
}

function finishRecording(rec) {
  rec.stream.getTracks().forEach((track) => track.stop());
  if (rec.cancelled || !rec.chunks.length) return;
  const type = (rec.recorder.mimeType || "audio/webm").split(";")[0];
  const file = new File(rec.chunks, `voice-message.${type.includes("ogg") ? "ogg" : "webm"}`, { type });
  const seconds = Math.max(1, Math.round(((rec.stopped || Date.now()) - rec.started) / 1000));
  sendFile(rec.conversation, file, { duration_s: seconds });
}
