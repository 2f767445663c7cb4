// Model page: start a training run on shares and follow its progress.
"use strict";

function pct(v) {
  return v === null || v === undefined ? "–" : `${(100 * v).toFixed(2)} %`;
}

function summary(s) {
  const rows = [
    ["classes", `${s.classes}`],
    ["samples", `${s.train_samples} train, ${s.test_samples} test`],
    ["accuracy on shares (MPC)", `train ${pct(s.mpc.train_accuracy)} · test ${pct(s.mpc.test_accuracy)}`],
  ];
  if (s.plaintext) {
    rows.push(["accuracy in plaintext", `train ${pct(s.plaintext.train_accuracy)} · test ${pct(s.plaintext.test_accuracy)}`]);
    rows.push(["same prediction as plaintext", pct(s.prediction_agreement)]);
  }
  rows.push(["time", `MPC training ${s.mpc.train_seconds.toFixed(1)} s` +
             (s.plaintext ? ` · plaintext ${s.plaintext.train_seconds.toFixed(2)} s` : "")]);
  for (const [server, st] of Object.entries(s.mpc.stats)) {
    rows.push([server, `${kB(st.bytes_sent)} sent, ${st.rounds} rounds, ${kB(st.offline_bytes)} from the dealer`]);
  }
  rows.push(["model", `${s.model_id} in ${s.paths.client}`]);
  const body = document.getElementById("summary");
  body.innerHTML = "";
  for (const [k, v] of rows) {
    const row = body.insertRow();
    cell(row, k);
    cell(row, v, k.startsWith("accuracy") ? "accuracy" : "");
  }
}

async function poll() {
  let st;
  try {
    st = await api("GET", "/api/train");
  } catch (e) {
    showError("error", e.message);
    return;
  }
  const bar = document.getElementById("progress");
  const result = document.getElementById("result");
  result.dataset.state = st.state;
  document.getElementById("train").disabled = st.state === "running";
  if (st.state === "running") {
    bar.hidden = false;
    bar.max = st.total || 1;
    bar.value = st.done || 0;
    document.getElementById("stage").textContent = `${st.stage}: batch ${st.done} of ${st.total}`;
    setTimeout(poll, 400);
    return;
  }
  bar.hidden = true;
  document.getElementById("stage").textContent = st.state === "done" ? `trained in ${st.seconds.toFixed(1)} s` : "";
  if (st.state === "failed") showError("error", st.error);
  if (st.state === "done") {
    summary(st.summary);
    result.hidden = false;
  }
}

async function train() {
  showError("error", "");
  const source = document.querySelector("input[name=source]:checked").value;
  try {
    await api("POST", "/api/train", {
      source,
      path: document.getElementById("path").value,
      epochs: document.getElementById("epochs").value,
      plaintext: document.getElementById("plaintext").checked,
    });
  } catch (e) {
    showError("error", e.message);
    return;
  }
  document.getElementById("result").hidden = true;
  poll();
}

document.getElementById("train").onclick = train;
poll();
