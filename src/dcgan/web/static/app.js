// The dcgan explorer page: plain JS, no libraries. Every picture comes from the JSON API of `dcgan serve`;
// samples are remembered here by their latent vector z, which travels back to the server with each request.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  seed: 0,
  samples: [], // {key, label, z, src}: the sheet, in sheet order
  uploads: [], // projected uploads, same shape
  groups: { a: [], b: [], c: [], walk: [], start: [], classes: [] },
  classId: null, // a class-conditional model: the class every picture is drawn in (its id)
  classes: null, // the answer of the "same z in every class" view
  arithSeed: 0,
  walk: null, // {z, images, strip}
  direction: null, // {z, images, strip, amounts}
  arithmetic: null,
  layer: 0,
  dropped: new Set(),
  pending: 0,
};
window.dcganState = state; // for the browser tests and the curious

// ------------------------------------------------------------------------------------------ requests

const latest = {}; // section -> number of its newest request; older answers are dropped

async function call(section, path, body) {
  const ticket = (latest[section] = (latest[section] || 0) + 1);
  busy(+1);
  try {
    const options = body instanceof FormData
      ? { method: "POST", body }
      : { method: body ? "POST" : "GET", headers: { "Content-Type": "application/json" }, body: body && JSON.stringify(body) };
    const response = await fetch(path, options);
    const answer = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.blob();
    if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
    if (ticket !== latest[section]) return null; // a newer request of this section has been sent
    say("");
    return answer;
  } catch (error) {
    say(error.message, true);
    return null;
  } finally {
    busy(-1);
  }
}

function busy(delta) {
  state.pending += delta;
  document.body.dataset.busy = String(state.pending);
  document.body.classList.toggle("busy", state.pending > 0);
}

function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function downloadZ(z, name) {
  if (!z || !z.length) return say("Nothing to download yet.", true);
  const blob = await call(`z-${name}`, "/api/z.npy", { z, name });
  if (!blob) return;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${name}.npy`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// A class-conditional model draws every picture in the chosen class: each drawing request names it.
function inClass(body) {
  return state.info.classes.length ? { ...body, class: state.classId } : body;
}

function setImage(img, src) {
  img.src = src;
  img.hidden = !src;
}

function setLink(id, src) {
  const link = $(id);
  if (src) link.href = src;
  else link.removeAttribute("href");
}

// ------------------------------------------------------------------------------------------ samples

async function loadSheet(append = false) {
  const seed = Number($("seed").value);
  const start = append ? state.samples.length : 0;
  const n = Math.min(64, state.info.limits.sheet_end - start);
  if (n <= 0) return say(`A sheet holds at most ${state.info.limits.sheet_end} samples.`, true);
  const answer = await call("sheet", "/api/sheet", inClass({ seed, start, n }));
  if (!answer) return;
  const fresh = answer.z.map((z, i) => ({
    key: `s${answer.seed}-${start + i}`, label: `#${start + i}`, z, src: answer.images[i],
  }));
  state.seed = answer.seed;
  state.samples = append ? state.samples.concat(fresh) : fresh;
  // a sample keeps its z in every class: chosen samples stay chosen, drawn anew in the sheet's class
  const byKey = new Map(fresh.map((s) => [s.key, s]));
  for (const group of Object.values(state.groups)) group.forEach((s, i) => { if (byKey.has(s.key)) group[i] = byKey.get(s.key); });
  renderTiles($("sheet"), state.samples);
  renderTrays();
  if (!append) refreshFilters();
  if (!state.groups.start.length) refreshDirection();
  if (!state.groups.classes.length) refreshClasses();
}

function renderTiles(container, samples) {
  container.replaceChildren(...samples.map((sample) => tile(sample, () => toggle(sample))));
  markMembership();
}

function tile(sample, onClick) {
  const box = document.createElement("button");
  box.type = "button";
  box.className = "tile";
  box.dataset.key = sample.key;
  box.title = `${sample.label}: click to add to the chosen group`;
  const img = document.createElement("img");
  img.src = sample.src;
  img.alt = sample.label;
  const badge = document.createElement("span");
  badge.className = "badges";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = sample.label;
  box.append(img, label, badge);
  box.addEventListener("click", onClick);
  return box;
}

function target() {
  return document.querySelector('input[name="target"]:checked').value;
}

function toggle(sample) {
  const name = target();
  const group = state.groups[name];
  const at = group.indexOf(sample);
  if (at >= 0) group.splice(at, 1);
  else if (name === "start") group.splice(0, group.length, sample);
  else if (name === "walk") group.splice(0, group.length, ...group.slice(-1), sample);
  else if (name === "classes" && group.length >= 16) return say("The every-class view holds at most 16 samples.", true);
  else if (group.length >= state.info.limits.group) return say(`A group holds at most ${state.info.limits.group} samples.`, true);
  else group.push(sample);
  groupsChanged(name);
}

function groupsChanged(name) {
  markMembership();
  renderTrays();
  if ("abc".includes(name)) refreshArithmetic();
  if ("ab".includes(name) || name === "start") refreshDirection();
  if (name === "walk") refreshWalk();
  if (name === "classes") refreshClasses();
}

const BADGE = { a: "A", b: "B", c: "C", walk: "W", start: "S", classes: "E" };

function markMembership() {
  for (const box of document.querySelectorAll("#sheet .tile, #uploads .tile")) {
    const names = Object.keys(BADGE).filter((g) => state.groups[g].some((s) => s.key === box.dataset.key));
    box.querySelector(".badges").textContent = names.map((g) => BADGE[g]).join(" ");
    box.className = ["tile", ...names.map((g) => `in-${g}`)].join(" ");
  }
}

function renderTrays() {
  for (const [name, id] of [["a", "tray-a"], ["b", "tray-b"], ["c", "tray-c"], ["walk", "walk-ends"], ["start", "dir-start"], ["classes", "classes-tray"]]) {
    $(id).replaceChildren(...state.groups[name].map((s) => tile(s, () => {
      state.groups[name].splice(state.groups[name].indexOf(s), 1);
      groupsChanged(name);
    })));
  }
}

// ------------------------------------------------------------------------------------------ arithmetic

async function refreshArithmetic() {
  const { a, b, c } = state.groups;
  if (!a.length || !b.length || !c.length) return;
  const body = { a: a.map((s) => s.z), b: b.map((s) => s.z), c: c.map((s) => s.z), noise: Number($("noise").value), seed: state.arithSeed };
  const answer = await call("arithmetic", "/api/arithmetic", inClass(body));
  if (!answer) return;
  state.arithmetic = answer;
  ["a", "b", "c"].forEach((g, i) => setImage($(`mean-${g}`), answer.means[i]));
  setImage($("arith-pixels"), answer.pixel_sum);
  const order = [1, 2, 3, 4, 0, 5, 6, 7, 8]; // the result in the middle of its neighbours
  $("arith-neighbours").replaceChildren(...order.map((k) => {
    const img = document.createElement("img");
    img.src = k === 0 ? answer.result : answer.neighbours[k - 1];
    if (k === 0) img.id = "arith-result";
    img.title = k === 0 ? "A − B + C" : `neighbour ${k}`;
    return img;
  }));
  setLink("arith-png", answer.grid);
  setLink("arith-figure", answer.figure);
}

// ------------------------------------------------------------------------------------------ walk

async function refreshWalk() {
  const ends = state.groups.walk;
  if (ends.length < 2) return;
  const answer = await call("walk", "/api/walk", inClass({ z0: ends[0].z, z1: ends[1].z, steps: 17, method: $("walk-method").value }));
  if (!answer) return;
  state.walk = answer;
  const slider = $("walk-slider");
  slider.max = String(answer.images.length - 1);
  slider.disabled = false;
  setImage($("walk-strip"), answer.strip);
  setLink("walk-strip-png", answer.strip);
  showWalkFrame();
}

function showWalkFrame() {
  if (!state.walk) return;
  const i = Number($("walk-slider").value);
  setImage($("walk-frame"), state.walk.images[i]);
  setLink("walk-png", state.walk.images[i]);
}

// ------------------------------------------------------------------------------------------ direction

async function refreshDirection() {
  const { a, b } = state.groups;
  const start = state.groups.start[0] || state.samples[0];
  if (!a.length || !b.length || !start) return;
  const body = { a: a.map((s) => s.z), b: b.map((s) => s.z), start: start.z, steps: 17, span: 1.5 };
  const answer = await call("direction", "/api/direction", inClass(body));
  if (!answer) return;
  state.direction = answer;
  const slider = $("dir-slider");
  slider.max = String(answer.images.length - 1);
  slider.disabled = false;
  setImage($("dir-strip"), answer.strip);
  setLink("dir-strip-png", answer.strip);
  showDirectionFrame();
}

function showDirectionFrame() {
  if (!state.direction) return;
  const i = Number($("dir-slider").value);
  $("dir-amount").textContent = state.direction.amounts[i].toFixed(2);
  setImage($("dir-frame"), state.direction.images[i]);
  setLink("dir-png", state.direction.images[i]);
}

// ------------------------------------------------------------------------------------------ every class

async function refreshClasses() {
  if (!state.info.classes.length) return;
  const chosen = state.groups.classes.length ? state.groups.classes : state.samples.slice(0, 8);
  if (!chosen.length) return;
  const answer = await call("classes", "/api/classes", { z: chosen.map((s) => s.z) });
  if (!answer) return;
  state.classes = answer;
  const rows = $("classes-rows");
  rows.style.gridTemplateColumns = `max-content repeat(${chosen.length}, max-content)`;
  rows.replaceChildren(...answer.classes.flatMap((name, k) => {
    const label = document.createElement("span");
    label.className = "class-name";
    label.textContent = name;
    return [label, ...answer.images[k].map((src, i) => {
      const img = document.createElement("img");
      img.src = src;
      img.alt = `${chosen[i].label} as ${name}`;
      img.title = img.alt;
      return img;
    })];
  }));
  setLink("classes-png", answer.grid);
}

async function chooseClass() {
  state.classId = Number($("class").value);
  await loadSheet(); // the same z, drawn in the new class; the other views follow
  refreshArithmetic();
  refreshWalk();
  if (state.groups.start.length) refreshDirection();
}

// ------------------------------------------------------------------------------------------ filters

function renderFilterButtons() {
  const count = state.info.layers[state.layer];
  const buttons = [];
  for (let f = 0; f < count; f++) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "filter" + (state.dropped.has(f) ? " off" : "");
    button.textContent = String(f);
    button.dataset.filter = String(f);
    button.addEventListener("click", () => {
      state.dropped.has(f) ? state.dropped.delete(f) : state.dropped.add(f);
      button.classList.toggle("off", state.dropped.has(f));
      refreshFilters();
    });
    buttons.push(button);
  }
  $("filter-list").replaceChildren(...buttons);
}

let filterTimer = null;
function refreshFilters() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(async () => {
    const z = state.samples.slice(0, 16).map((s) => s.z);
    if (!z.length) return;
    $("filters-count").textContent = `${state.dropped.size} of ${state.info.layers[state.layer]} filters off`;
    const answer = await call("filters", "/api/filters", inClass({ z, layer: state.layer, filters: [...state.dropped] }));
    if (!answer) return;
    setImage($("filters-original"), answer.original_grid);
    setImage($("filters-dropped"), answer.grid);
    setLink("filters-png", answer.grid);
  }, 120); // clicks in quick succession make one request
}

function setDropped(filters) {
  state.dropped = new Set(filters);
  renderFilterButtons();
  refreshFilters();
}

// ------------------------------------------------------------------------------------------ projection

let uploads = 0;
async function projectUpload() {
  const file = $("upload").files[0];
  if (!file) return;
  const limit = state.info.limits.upload_mb;
  if (file.size > limit * 2 ** 20) return say(`${file.name} is over ${limit} MB, the limit.`, true);
  const form = new FormData();
  form.append("file", file);
  form.append("steps", $("project-steps").value);
  form.append("restarts", $("project-restarts").value);
  if (state.info.classes.length) form.append("class", String(state.classId));
  say(`Projecting ${file.name}…`);
  const answer = await call("project", "/api/project", form);
  if (!answer) return;
  setImage($("project-target"), answer.target);
  setImage($("project-result"), answer.image);
  $("project-caption").textContent = `G(z), pixel error ${answer.error.toFixed(4)}`;
  setLink("project-png", answer.pair);
  uploads += 1;
  const sample = { key: `u${uploads}`, label: `upload ${uploads}`, z: answer.z[0], src: answer.image };
  state.uploads.push(sample);
  state.lastProjection = answer;
  $("uploads-title").hidden = false;
  renderTiles($("uploads"), state.uploads);
  say(`Projected ${file.name}; it is now a sample you can click into groups.`);
}

// ------------------------------------------------------------------------------------------ start

async function start() {
  const info = await call("info", "/api/info");
  if (!info) return;
  state.info = info;
  const shape = `${info.channels}×${info.image_size}×${info.image_size}`;
  const conditional = info.classes.length ? `, ${info.classes.length} classes` : "";
  $("model").textContent = `${info.name}, step ${info.step}: z of ${info.nz} (${info.prior})${conditional} → ${shape}`;
  if (info.classes.length) {
    $("class").replaceChildren(...info.classes.map((name, i) => new Option(name === String(i) ? name : `${i}: ${name}`, String(i))));
    state.classId = 0;
    for (const id of ["class-picker", "target-classes", "every-class"]) $(id).hidden = false;
    $("class").addEventListener("change", chooseClass);
    $("classes-z").addEventListener("click", () => downloadZ(state.classes?.z, "every_class"));
  }
  $("layer").replaceChildren(...info.layers.map((count, i) => new Option(`${i} (${count} filters)`, String(i))));
  renderFilterButtons();

  $("seed").addEventListener("change", () => loadSheet());
  $("new-seed").addEventListener("click", () => {
    $("seed").value = String(Math.floor(Math.random() * 1e6));
    loadSheet();
  });
  $("more").addEventListener("click", () => loadSheet(true));
  $("sheet-png").addEventListener("click", async () => {
    const answer = await call("sheet-png", "/api/sheet.png", inClass({ seed: state.seed, start: 0, n: Math.min(state.samples.length, state.info.limits.sheet) }));
    if (!answer) return;
    const link = document.createElement("a");
    link.href = answer.image;
    link.download = `sheet_seed${state.seed}.png`;
    link.click();
  });
  $("sheet-z").addEventListener("click", () => downloadZ(state.samples.map((s) => s.z), `sheet_seed${state.seed}`));
  document.querySelectorAll("button.clear").forEach((button) => button.addEventListener("click", () => {
    state.groups[button.dataset.group].length = 0;
    groupsChanged(button.dataset.group);
  }));
  $("noise").addEventListener("input", () => { $("noise-value").textContent = Number($("noise").value).toFixed(2); });
  $("noise").addEventListener("change", refreshArithmetic);
  $("reroll").addEventListener("click", () => { state.arithSeed += 1; refreshArithmetic(); });
  $("arith-z").addEventListener("click", () => downloadZ(state.arithmetic?.z, "arithmetic"));
  $("walk-method").addEventListener("change", refreshWalk);
  $("walk-slider").addEventListener("input", showWalkFrame);
  $("walk-z").addEventListener("click", () => state.walk && downloadZ([state.walk.z[Number($("walk-slider").value)]], "walk_frame"));
  $("walk-all-z").addEventListener("click", () => downloadZ(state.walk?.z, "walk"));
  $("dir-slider").addEventListener("input", showDirectionFrame);
  $("dir-z").addEventListener("click", () => state.direction && downloadZ([state.direction.z[Number($("dir-slider").value)]], "direction_frame"));
  $("layer").addEventListener("change", () => { state.layer = Number($("layer").value); setDropped([]); });
  $("filters-none").addEventListener("click", () => setDropped([]));
  $("filters-all").addEventListener("click", () => setDropped([...Array(state.info.layers[state.layer]).keys()]));
  $("filters-invert").addEventListener("click", () => setDropped([...Array(state.info.layers[state.layer]).keys()].filter((f) => !state.dropped.has(f))));
  $("filters-z").addEventListener("click", () => downloadZ(state.samples.slice(0, 16).map((s) => s.z), "filters"));
  $("upload").addEventListener("change", projectUpload);
  $("project-z").addEventListener("click", () => downloadZ(state.lastProjection?.z, "projection"));

  await loadSheet();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", start);
