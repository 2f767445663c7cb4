// Identify / verify page: one photo against the gallery (1:N) or two photos against each other (1:1).
"use strict";

const LEARNED = {
  client: (a) => a.mode === "verify" ? "one distance" :
    a.reveal === "all" ? "the distance to every entry" :
    a.reveal === "match" ? "the name if within the tolerance, nothing else" : "the nearest entry and its distance",
  server0: () => "its own shares and masked values: nothing about the faces (sizes only)",
  server1: () => "its own shares and masked values: nothing about the faces (sizes only)",
  dealer: () => "the shapes of the randomness asked for: nothing about any input",
};

function describe(a) {
  if (a.mode === "verify") {
    return [a.same ? "same person" : "different people",
            `distance ${a.distance.toFixed(3)} ${a.same ? "<=" : ">"} tolerance ${a.tolerance}`];
  }
  if (a.known) {
    return [a.name, a.distance === null ? "within the tolerance" : `distance ${a.distance.toFixed(3)} <= ${a.tolerance}`];
  }
  return ["unknown", a.nearest ? `nearest: ${a.nearest} at ${a.distance.toFixed(3)} > ${a.tolerance}` : "nobody within the tolerance"];
}

function show(a) {
  const [answer, detail] = describe(a);
  const el = document.getElementById("answer");
  el.textContent = answer;
  el.dataset.name = a.mode === "verify" ? (a.same ? "same" : "different") : (a.known ? a.name : "unknown");
  el.className = "answer " + ((a.mode === "verify" ? a.same : a.known) ? "ok" : "bad");
  document.getElementById("detail").textContent = detail;
  const body = document.querySelector("#parties tbody");
  body.innerHTML = "";
  for (const party of ["client", "server0", "server1", "dealer"]) {
    const c = a.parties[party];
    if (!c) continue;
    const row = body.insertRow();
    row.dataset.party = party;
    cell(row, party.replace("server", "server "));
    cell(row, LEARNED[party](a));
    cell(row, kB(c.bytes_sent));
    cell(row, c.rounds);
    cell(row, kB(c.offline_bytes));
  }
  document.getElementById("times").textContent =
    `embedding (client, plaintext) ${ms(a.seconds.embed)} · MPC (share, compute on shares, reconstruct) ${ms(a.seconds.mpc)}`;
  document.getElementById("result").hidden = false;
}

async function go() {
  const ok = await busy("go", "status", "error", "embedding and computing on shares...", async () => {
    const photos = (await readFiles(document.getElementById("photo-a")))
      .concat(await readFiles(document.getElementById("photo-b")));
    if (!photos.length) throw new Error("choose a photo first");
    show(await api("POST", "/api/identify", { photos, reveal: document.getElementById("reveal").value }));
  });
  if (!ok) document.getElementById("result").hidden = true;
}

document.getElementById("go").onclick = go;
