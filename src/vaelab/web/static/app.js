// The latent explorer page: plain JavaScript, talking only to this server's /api. All numbers come from the API;
// the page only keeps the current code and shows it.
"use strict";

const SLIDER_RANGE = 4; // sliders span ±4 prior standard deviations; a code outside still decodes as it is
const DIRECTION_RANGE = 3; // a named slider spans ±3 standard edits along its direction
const BRUSH_WIDTH = 20; // px on the 280 px canvas: about an MNIST stroke once the digit is scaled into 20×20
const VALUES_PER_LINE = 4; // of the code printed below the picture: a line fits the 280 px column

const state = {
  z: [], // the current code, by dimension index
  inputs: new Map(), // dimension → its slider
  outputs: new Map(), // dimension → the number beside its slider
  decoding: false, // one decode request in flight at a time…
  stale: false, // …and when the code changed meanwhile, one more with the newest code
  label: null, // class to decode as (conditional models only)
  ends: { a: null, b: null }, // interpolation end codes
  path: null, // codes from A to B, for the scrub slider
  directions: [], // named sliders: { row, input, output }, each moving along row.unit_vector
  base: [], // the code the named sliders move from: the last code set any other way
};

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  if (!response.ok) {
    const error = await response.json().catch(() => ({ detail: response.statusText }));
    throw new Error(`${path}: ${error.detail}`);
  }
  return response;
}

function report(error) {
  $("status").textContent = error ? String(error.message || error) : "";
}

// A picture replaces the empty frame the page starts with. Decoded images are blob URLs, released when replaced.
function showPicture(img, url) {
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = url;
  img.classList.remove("empty");
}

function showBlob(img, blob) {
  showPicture(img, URL.createObjectURL(blob));
}

async function decodeBlob(z) {
  const body = { z };
  if (state.label !== null) body.label = state.label;
  return (await api("/api/decode", body)).blob();
}

async function redraw() {
  if (state.decoding) {
    state.stale = true;
    return;
  }
  state.decoding = true;
  try {
    do {
      state.stale = false;
      showBlob($("decoded"), await decodeBlob(state.z.slice()));
      report(null);
    } while (state.stale);
  } catch (error) {
    report(error);
  } finally {
    state.decoding = false;
  }
}

function showCode() {
  for (const [dim, input] of state.inputs) {
    input.value = String(state.z[dim]);
    state.outputs.get(dim).textContent = state.z[dim].toFixed(2);
  }
  const values = state.z.map((v) => v.toFixed(2).padStart(6));
  const lines = [];
  for (let first = 0; first < values.length; first += VALUES_PER_LINE) {
    lines.push(values.slice(first, first + VALUES_PER_LINE).join(" "));
  }
  $("z-text").textContent = `z =\n${lines.join("\n")}`;
}

// Any other control sets the code the named sliders start from, and puts them back at 0.
function rebase() {
  state.base = state.z.slice();
  for (const { input, output } of state.directions) {
    input.value = "0";
    output.textContent = "0.00";
  }
}

function setCode(z) {
  state.z = z.slice();
  rebase();
  showCode();
  redraw();
}

function moveAlongDirections() {
  const z = state.base.slice();
  for (const { row, input } of state.directions) {
    const step = Number(input.value) * row.scale;
    row.unit_vector.forEach((value, dim) => { z[dim] += step * value; });
  }
  state.z = z;
  showCode();
  redraw();
}

function addDirectionSlider(parent, row) {
  const line = document.createElement("div");
  line.className = "slider";
  const label = document.createElement("label");
  const kept = row.class_kept === null ? "" : `, class kept ${Math.floor(100 * row.class_kept + 1e-9)}%`;
  const rho = row.rho === null ? "ρ not measured" : `ρ ${row.rho.toFixed(2)}`;
  label.textContent = `${row.name} · ${rho}${kept}`;
  label.title = `${row.name}: ${row.method} direction; editing test images by ±2 standard edits, ${rho}${kept}`;
  const input = document.createElement("input");
  Object.assign(input, { type: "range", min: -DIRECTION_RANGE, max: DIRECTION_RANGE, step: 0.05, value: 0 });
  input.id = label.htmlFor = `direction-${row.name}`;
  const output = document.createElement("output");
  output.textContent = "0.00";
  input.addEventListener("input", () => {
    output.textContent = Number(input.value).toFixed(2);
    moveAlongDirections();
  });
  line.append(label, input, output);
  parent.append(line);
  state.directions.push({ row, input, output });
}

function addSlider(parent, row) {
  const line = document.createElement("div");
  line.className = "slider";
  const label = document.createElement("label");
  label.textContent = row.factor ? `z${row.dim} · ${row.factor}` : `z${row.dim}`;
  const usage = !row.active ? " (inactive)" : row.weak ? " (weak)" : "";
  label.title = `${label.textContent}: KL ${row.kl.toFixed(3)} nats${usage}`;
  const input = document.createElement("input");
  Object.assign(input, { type: "range", min: -SLIDER_RANGE, max: SLIDER_RANGE, step: 0.01, value: 0 });
  input.id = label.htmlFor = `z${row.dim}`;
  input.dataset.dim = row.dim;
  const output = document.createElement("output");
  input.addEventListener("input", () => {
    state.z[row.dim] = Number(input.value);
    rebase();
    showCode();
    redraw();
  });
  line.append(label, input, output);
  parent.append(line);
  state.inputs.set(row.dim, input);
  state.outputs.set(row.dim, output);
}

async function sample(sampler) {
  try {
    setCode((await (await api(`/api/sample?sampler=${sampler}`)).json()).z);
  } catch (error) {
    report(error);
  }
}

async function encode(body, caption) {
  try {
    const result = await (await api("/api/encode", body)).json();
    showPicture($("original"), `data:image/png;base64,${result.input_png}`);
    showBlob($("reconstruction"), await decodeBlob(result.mu));
    const name = result.class_name === null ? "" : ` (class ${result.class_name})`;
    $("compare-caption").textContent = `${caption}${name}: input as the model saw it | reconstruction`;
    setCode(result.mu);
  } catch (error) {
    report(error);
  }
}

function encodeTest(index) {
  $("test-index").value = index;
  encode({ test_index: index }, `test image ${index}`);
}

function setUpCanvas() {
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  Object.assign(context, { strokeStyle: "#fff", lineWidth: BRUSH_WIDTH, lineCap: "round", lineJoin: "round" });
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    context.beginPath();
    context.moveTo(...point(event));
    context.lineTo(...point(event));
    context.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    encode({ image: canvas.toDataURL("image/png").split(",")[1] }, "drawing");
    $("compare").hidden = false;
    $("toggle-compare").setAttribute("aria-expanded", "true");
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  $("clear").addEventListener("click", clear);
}

// The dataset's description says what the page offers: a canvas (small grey drawings such as digits) or an upload
// of a PNG of any size, which the server prepares as the dataset's files were (centred square, resized).
function setUpInput(info) {
  const [, height, width] = info.image_shape;
  const upload = info.input === "upload";
  $("draw").hidden = upload;
  $("upload").hidden = !upload;
  $("upload-hint").textContent = `a PNG: its centred square is resized to ${width}×${height}`;
  $("upload-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const bytes = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    encode({ image: btoa(binary), centre: false }, file.name);
  });
}

// Setting an end puts the scrub slider at that end, so the picture does not jump.
async function setEnd(which) {
  try {
    state.ends[which] = state.z.slice();
    showBlob($(`end-${which}`), await decodeBlob(state.ends[which]));
    await updatePath(which === "a" ? 0 : Number($("scrub").max));
  } catch (error) {
    report(error);
  }
}

async function updatePath(position) {
  const { a, b } = state.ends;
  if (a === null || b === null) return;
  const scrub = $("scrub");
  const body = { start: a, end: b, steps: Number(scrub.max) + 1, mode: $("mode").value };
  state.path = (await (await api("/api/interpolate", body)).json()).codes;
  scrub.disabled = false;
  scrub.value = String(position);
  setCode(state.path[position]);
}

function setUpInterpolation(modes) {
  for (const mode of modes) $("mode").append(new Option(mode, mode));
  $("set-a").addEventListener("click", () => setEnd("a"));
  $("set-b").addEventListener("click", () => setEnd("b"));
  $("mode").addEventListener("change", () => updatePath(Number($("scrub").value)).catch(report));
  $("scrub").addEventListener("input", () => {
    if (state.path !== null) setCode(state.path[Number($("scrub").value)]);
  });
}

// A conditional model lists its classes in /api/info: the same code is then decoded as the chosen class.
function setUpClassChoice(classes) {
  if (!classes) return;
  const select = $("class-select");
  classes.forEach((name, label) => select.append(new Option(name, String(label))));
  state.label = 0;
  select.addEventListener("change", () => {
    state.label = Number(select.value);
    redraw();
  });
  $("class-choice").hidden = false;
}

async function start() {
  const info = await (await api("/api/info")).json();
  $("run-info").textContent = `${info.run}: ${info.dataset}, ${info.inputs}, ${info.latent_dim}-d latent, ` +
    `KL from ${info.kl_source}`;
  document.title = `${info.run} · vaelab latent explorer`;
  const inactive = info.dims.filter((row) => !row.active);
  for (const row of info.dims) addSlider(row.active ? $("sliders") : $("inactive-sliders"), row);
  for (const row of info.directions) addDirectionSlider($("direction-sliders"), row);
  $("directions").hidden = info.directions.length === 0;
  $("inactive").hidden = inactive.length === 0;
  $("inactive").querySelector("summary").textContent = `${inactive.length} inactive dimensions`;
  $("test-index").max = info.test_count - 1;
  $("sample-gmm").hidden = !info.samplers.includes("gmm");
  setUpClassChoice(info.classes);
  setUpInput(info);
  setUpInterpolation(info.interpolation_modes);
  setUpCanvas();

  $("sample-prior").addEventListener("click", () => sample("prior"));
  $("sample-gmm").addEventListener("click", () => sample("gmm"));
  $("reset").addEventListener("click", () => setCode(new Array(info.latent_dim).fill(0)));
  $("encode-test").addEventListener("click", () => encodeTest(Number($("test-index").value)));
  $("encode-random").addEventListener("click", () => encodeTest(Math.floor(Math.random() * info.test_count)));
  $("toggle-compare").addEventListener("click", () => {
    const compare = $("compare");
    compare.hidden = !compare.hidden;
    $("toggle-compare").setAttribute("aria-expanded", String(!compare.hidden));
  });
  setCode(new Array(info.latent_dim).fill(0));
}

start().catch(report);
