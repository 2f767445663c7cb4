// Helpers shared by the pages: JSON calls that turn every failure into a readable message.
"use strict";

async function api(method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new Error("the app does not answer (is ppfr web still running?)");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((data && data.error) || `the app answered ${response.status} ${response.statusText}`);
  }
  return data;
}

function showError(id, message) {
  document.getElementById(id).textContent = message || "";
}

// Run `work` with `button` disabled and `note` in the status element; its error goes to the error element.
// Returns whether it succeeded.
async function busy(buttonId, statusId, errorId, note, work) {
  const button = document.getElementById(buttonId);
  const status = document.getElementById(statusId);
  showError(errorId, "");
  button.disabled = true;
  status.textContent = note;
  try {
    status.textContent = (await work()) || "";
    return true;
  } catch (e) {
    status.textContent = "";
    showError(errorId, e.message);
    return false;
  } finally {
    button.disabled = false;
  }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, data: reader.result });
    reader.onerror = () => reject(new Error(`${file.name}: cannot be read`));
    reader.readAsDataURL(file);
  });
}

function readFiles(input) {
  return Promise.all(Array.from(input.files || []).map(readFile));
}

function kB(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(2)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
}

function ms(seconds) {
  return `${(1000 * seconds).toFixed(1)} ms`;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

const PAGES = [["/gallery", "Gallery"], ["/identify", "Identify / verify"], ["/live", "Live"], ["/model", "Model"]];

function header() {
  const top = document.querySelector("header");
  if (!top || top.dataset.fixed) return;
  top.innerHTML = "<h1>ppfr</h1><nav></nav><span class=muted>faces stay in this app's memory; the servers get shares</span>";
  const nav = top.querySelector("nav");
  for (const [href, title] of PAGES) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = title;
    if (href === location.pathname) a.className = "here";
    nav.appendChild(a);
  }
}
document.addEventListener("DOMContentLoaded", header);
