// Gallery page: list, enrol (uploads or webcam snapshots) and remove people.
"use strict";

const snapshots = [];

async function refresh() {
  showError("people-error", "");
  try {
    const { people } = await api("GET", "/api/people");
    const body = document.querySelector("#people tbody");
    body.innerHTML = "";
    for (const p of people) {
      const row = body.insertRow();
      row.dataset.name = p.name;
      row.dataset.photos = p.photos;
      cell(row, p.name, "person");
      cell(row, p.photos, "photos");
      cell(row, p.trainable ? `${p.trainable} embeddings` : "none", "muted");
      const button = document.createElement("button");
      button.textContent = "Remove";
      button.className = "secondary remove";
      button.onclick = () => remove(p.name);
      row.insertCell().appendChild(button);
    }
    document.getElementById("empty").hidden = people.length > 0;
  } catch (e) {
    showError("people-error", e.message);
  }
}

async function remove(name) {
  showError("people-error", "");
  try {
    await api("DELETE", `/api/people/${encodeURIComponent(name)}`);
  } catch (e) {
    showError("people-error", e.message);
  }
  refresh();
}

function report(photos) {
  const table = document.getElementById("report");
  const body = table.querySelector("tbody");
  body.innerHTML = "";
  for (const p of photos) {
    const row = body.insertRow();
    cell(row, p.photo);
    cell(row, p.faces);
    cell(row, p.used ? `enrolled${p.note ? " (" + p.note + ")" : ""}` : `rejected: ${p.reason}`, p.used ? "ok" : "bad");
  }
  table.hidden = photos.length === 0;
}

async function enroll() {
  await busy("enroll", "enroll-status", "enroll-error", "embedding and sharing...", async () => {
    const photos = (await readFiles(document.getElementById("files"))).concat(snapshots);
    const name = document.getElementById("name").value;
    const out = await api("POST", "/api/enroll", { name, photos });
    report(out.photos);
    document.getElementById("files").value = "";
    clearSnapshots();
    return `enrolled ${out.enrolled} photo(s) of ${out.name} (embedding ${ms(out.seconds.embed)}, MPC ${ms(out.seconds.mpc)})`;
  });
  refresh();
}

async function camera() {
  showError("enroll-error", "");
  const video = document.getElementById("cam");
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    video.hidden = false;
    document.getElementById("snap").disabled = false;
  } catch (e) {
    showError("enroll-error", `the webcam cannot be opened: ${e.message}`);
  }
}

async function snap() {
  const video = document.getElementById("cam");
  const count = Math.max(1, Math.min(20, parseInt(document.getElementById("count").value, 10) || 1));
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  for (let i = 0; i < count; i++) {
    canvas.getContext("2d").drawImage(video, 0, 0);
    const data = canvas.toDataURL("image/jpeg", 0.92);
    snapshots.push({ name: `snapshot ${snapshots.length + 1}.jpg`, data });
    const img = document.createElement("img");
    img.src = data;
    document.getElementById("snaps").appendChild(img);
    await new Promise((r) => setTimeout(r, 400));   // a moment apart: a little variety of pose
  }
  document.getElementById("clear-snaps").disabled = false;
}

function clearSnapshots() {
  snapshots.length = 0;
  document.getElementById("snaps").innerHTML = "";
  document.getElementById("clear-snaps").disabled = true;
}

document.getElementById("enroll").onclick = enroll;
document.getElementById("camera").onclick = camera;
document.getElementById("snap").onclick = snap;
document.getElementById("clear-snaps").onclick = clearSnapshots;
refresh();
