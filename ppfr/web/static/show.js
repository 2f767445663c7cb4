// The --show page of ppfr recognize: always the newest annotated frame (older ones are skipped).
"use strict";

const img = document.getElementById("frame");
const status = document.getElementById("status");
let ws = null, frames = 0, url = null;

function connect() {
  ws = new WebSocket(`ws://${location.host}/ws/show`);
  ws.binaryType = "blob";
  ws.onopen = () => ws.send("frame");
  ws.onmessage = (event) => {
    if (typeof event.data === "string") {
      const info = JSON.parse(event.data);
      document.getElementById("next").disabled = info.state !== "waiting";
      status.textContent = info.state === "ended" ? `the run has ended after ${frames} frame(s)` :
        info.state === "waiting" ? "press Next for the next image" : `frame ${frames}`;
      if (info.state === "ended") return;
    } else {
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(event.data);
      img.src = url;
      frames += 1;
      status.dataset.frames = String(frames);
      status.textContent = `frame ${frames}`;
    }
    ws.send("frame");
  };
  ws.onclose = () => {
    status.textContent = `the run has ended after ${frames} frame(s)`;
    document.getElementById("next").disabled = true;
  };
}

document.getElementById("next").onclick = () => ws && ws.send("next");
document.getElementById("stop").onclick = () => ws && ws.send("stop");
connect();
