// Live page: webcam frames to the app over a WebSocket, one in flight at a time; boxes and names drawn back.
"use strict";

const video = document.getElementById("video");
const overlay = document.getElementById("overlay");
const grab = document.createElement("canvas");        // the frame being recognised, drawn with its answer
let ws = null, stream = null, sentAt = 0, frames = 0, done = [];

function stop(message) {
  if (ws) { ws.onclose = null; ws.close(); ws = null; }
  if (stream) { for (const t of stream.getTracks()) t.stop(); stream = null; }
  document.getElementById("start").disabled = false;
  document.getElementById("stop").disabled = true;
  if (message) showError("error", message);
}

function send() {
  if (!ws || ws.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  grab.width = video.videoWidth;
  grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  grab.toBlob(async (blob) => {
    if (!ws || !blob) return;
    sentAt = performance.now();
    ws.send(await blob.arrayBuffer());
  }, "image/jpeg", 0.85);
}

function draw(reply) {
  overlay.width = grab.width;
  overlay.height = grab.height;
  const g = overlay.getContext("2d");
  g.drawImage(grab, 0, 0);
  g.lineWidth = 2;
  g.font = "16px system-ui, sans-serif";
  for (const f of reply.faces) {
    const b = f.box, colour = f.known ? "#14a44d" : "#dc2626";
    g.strokeStyle = colour;
    g.strokeRect(b.left, b.top, b.right - b.left, b.bottom - b.top);
    const score = f.probability !== null ? ` ${f.probability.toFixed(2)}` : f.distance !== null ? ` ${f.distance.toFixed(2)}` : "";
    const text = f.name + score;
    const w = g.measureText(text).width + 8;
    g.fillStyle = colour;
    g.fillRect(b.left, b.bottom, w, 22);
    g.fillStyle = "#fff";
    g.fillText(text, b.left + 4, b.bottom + 16);
  }
  overlay.dataset.labels = JSON.stringify(reply.faces.map((f) => f.name));
  overlay.dataset.frames = String(++frames);
}

function measure(reply) {
  const now = performance.now();
  done.push(now);
  done = done.filter((t) => now - t < 2000);
  const fps = done.length > 1 ? (1000 * (done.length - 1)) / (now - done[0]) : 0;
  const el = document.getElementById("fps");
  el.textContent = `${fps.toFixed(1)} frames/s`;
  el.dataset.fps = fps.toFixed(2);
  const s = reply.stages;
  document.getElementById("stages").textContent =
    `decode ${s.decode.toFixed(1)} · detect ${s.detect.toFixed(1)} · track ${s.track.toFixed(1)} · ` +
    `embed ${s.embed.toFixed(1)} · MPC ${s.mpc.toFixed(1)} · round trip ${(now - sentAt).toFixed(1)} ms`;
}

async function start() {
  showError("error", "");
  document.getElementById("start").disabled = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (e) {
    stop(`the webcam cannot be opened: ${e.message}`);
    return;
  }
  video.srcObject = stream;
  await video.play();
  const mode = document.getElementById("mode").value;
  const track = document.getElementById("track").checked ? 1 : 0;
  ws = new WebSocket(`ws://${location.host}/ws/live?mode=${mode}&track=${track}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = send;
  ws.onmessage = (event) => {
    const reply = JSON.parse(event.data);
    if (reply.error) { stop(reply.error); return; }
    draw(reply);
    measure(reply);
    if (reply.refresh) document.getElementById("refresh").textContent = reply.refresh - 1;
    send();
  };
  ws.onclose = () => stop("the connection to the app closed");
  frames = 0;
  done = [];
  document.getElementById("stop").disabled = false;
}

document.getElementById("start").onclick = start;
document.getElementById("stop").onclick = () => stop("");
