// The try-it page: asks /v1/model and /v1/schema, posts to /v1/extract, draws the answer. No framework.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#ffd8a8", "#b2f2bb", "#a5d8ff", "#ffc9c9", "#d0bfff", "#99e9f2", "#ffec99", "#eebefa", "#c0eb75", "#fcc2d7"];
const SVG = "http://www.w3.org/2000/svg";
const types = new Map(); // entity type -> colour

const MESSAGES = {
  unauthorized: () => "The API key is missing or wrong: enter it above.",
  not_ready: () => "The model is still loading or restarting; try again in a moment.",
  engine_restarting: () => "The model restarted while working on this text; try again in a moment.",
  queue_full: () => "The server is busy (its queue is full); try again shortly.",
  timeout: (m) => `The server did not finish in time: ${m}`,
  engine_error: (m) => `The model failed on this text: ${m}`,
  out_of_memory: (m) => `The text is too large for the accelerator: ${m}`,
  text_too_long: (m) => `The text is too long: ${m}`,
  too_many_texts: (m) => `Too many texts: ${m}`,
  body_too_large: (m) => `The request is too large: ${m}`,
  invalid_request: (m) => `The request was refused: ${m}`,
  invalid_json: (m) => `The request was refused: ${m}`,
  unsupported_media_type: (m) => `The request was refused: ${m}`,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function colour(type) {
  if (!types.has(type)) types.set(type, PALETTE[types.size % PALETTE.length]);
  return types.get(type);
}

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, "network", `Cannot reach the server (${error.message}).`);
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = (payload && payload.error) || { code: "http_error", message: response.statusText };
    throw new ApiError(response.status, detail.code, detail.message);
  }
  return payload;
}

function explain(error) {
  if (error.code === "unauthorized") $("key-row").hidden = false;
  if (error.code === "network") return error.message;
  const say = MESSAGES[error.code];
  return say ? say(error.message) : `Error ${error.status} (${error.code}): ${error.message}`;
}

let loadedWithKey = null; // the API key the model and examples were last loaded with
let loadFailed = false; // whether the status line shows a failure to load them

function setStatus(text, isError = false, loading = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
  loadFailed = isError && loading;
}

async function loadModel() {
  const key = $("api-key").value.trim();
  if (key === loadedWithKey) return; // a second change event (the field losing focus) for the same key
  try {
    const [model, schema] = await Promise.all([api("/v1/model"), api("/v1/schema")]);
    $("model").textContent = `model ${model.name} · ${model.precision} on ${model.provider} · ${schema.predicates.length} predicates`;
    loadedWithKey = key;
    showExamples(schema);
    if (loadFailed) setStatus(""); // never wipe out what an extraction said meanwhile
  } catch (error) {
    $("model").textContent = "model not available";
    setStatus(explain(error), true, true);
    if (error.code === "not_ready") setTimeout(loadModel, 1000);
  }
}

function showExamples(schema) {
  const box = $("examples");
  box.replaceChildren();
  const examples = schema.examples;
  const title = document.createElement("label");
  title.textContent = examples.length ? "Examples" : `Predicates: ${schema.predicates.join(", ")}`;
  box.append(title);
  examples.forEach((text, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    const chars = codePoints(text);
    button.textContent = chars.length > 70 ? `${chars.slice(0, 67).join("")}…` : text;
    button.title = text;
    button.dataset.index = index;
    button.addEventListener("click", () => {
      $("text").value = text;
      extract();
    });
    box.append(button);
  });
}

async function extract() {
  const text = $("text").value;
  if (!text.trim()) {
    setStatus("Type or choose a text first.", true);
    return;
  }
  $("extract").disabled = true;
  setStatus("extracting…");
  const started = performance.now();
  try {
    const answer = await api("/v1/extract", { text });
    const elapsed = performance.now() - started;
    const result = answer.results[0];
    render(text, result.triples);
    const windows = result.windows > 1 ? ` (read in ${result.windows} windows)` : "";
    setStatus(`${result.triples.length} triple${result.triples.length === 1 ? "" : "s"} in ${elapsed.toFixed(0)} ms${windows}`);
  } catch (error) {
    $("answer").hidden = true;
    setStatus(explain(error), true);
  } finally {
    $("extract").disabled = false;
  }
}

function entitiesOf(triples) {
  const found = new Map();
  const add = (entity) => found.set(`${entity.start}:${entity.end}:${entity.type}`, entity);
  for (const triple of triples) {
    add(triple.subject);
    add(triple.object);
    for (const value of Object.values(triple.qualifiers || {})) add(value);
  }
  return [...found.values()];
}

function render(text, triples) {
  const entities = entitiesOf(triples);
  renderText(text, entities);
  renderLegend(entities);
  renderTable(triples);
  renderGraph(triples);
  $("answer").hidden = false;
}

// The API counts offsets in code points; JavaScript strings count UTF-16 units, two for every character
// outside the Basic Multilingual Plane (emoji, mathematical letters). Every offset is read against this.
function codePoints(text) {
  return Array.from(text);
}

// The text cut at every entity boundary; each piece is marked with the entities that cover it.
function renderText(text, entities) {
  const chars = codePoints(text);
  const cuts = new Set([0, chars.length]);
  for (const entity of entities) {
    cuts.add(entity.start);
    cuts.add(entity.end);
  }
  const points = [...cuts].sort((a, b) => a - b);
  const box = $("highlighted");
  box.replaceChildren();
  for (let i = 0; i + 1 < points.length; i++) {
    const [start, end] = [points[i], points[i + 1]];
    const covering = entities.filter((e) => e.start <= start && end <= e.end);
    const piece = chars.slice(start, end).join("");
    if (!covering.length) {
      box.append(piece);
      continue;
    }
    const mark = document.createElement("mark");
    mark.className = "entity";
    mark.textContent = piece;
    mark.dataset.type = covering.map((e) => e.type).join(" ");
    mark.dataset.start = start;
    mark.dataset.end = end;
    if (covering.length > 1) mark.dataset.overlap = "";
    mark.style.background = colour(covering[0].type);
    mark.title = covering.map((e) => `${e.text} (${e.type || "entity"}, ${e.start}–${e.end})`).join("\n");
    box.append(mark);
  }
}

function renderLegend(entities) {
  const legend = $("legend");
  legend.replaceChildren();
  for (const type of [...new Set(entities.map((e) => e.type))].sort()) {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(type);
    swatch.textContent = type || "entity";
    legend.append(swatch);
  }
}

function cell(row, value) {
  const td = document.createElement("td");
  td.textContent = value;
  row.append(td);
}

function renderTable(triples) {
  const body = $("triples").tBodies[0];
  body.replaceChildren();
  for (const triple of triples) {
    const row = document.createElement("tr");
    cell(row, triple.subject.text);
    cell(row, triple.predicate);
    cell(row, triple.object.text);
    cell(row, triple.score.toFixed(3));
    const qualifiers = Object.entries(triple.qualifiers || {}).map(([slot, value]) => `${slot}: ${value.text}`);
    cell(row, qualifiers.join("; "));
    body.append(row);
  }
}

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  parent.append(element);
  return element;
}

// Entities on an ellipse, a labelled arrow per triple.
function renderGraph(triples) {
  const graph = $("graph");
  graph.replaceChildren();
  const width = graph.clientWidth || 900;
  const height = 360;
  graph.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const defs = svg("defs", {}, graph);
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" }, defs);
  svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#7b8794" }, marker);
  const key = (e) => `${e.start}:${e.end}`;
  const nodes = new Map();
  for (const triple of triples) for (const e of [triple.subject, triple.object]) if (!nodes.has(key(e))) nodes.set(key(e), e);
  const list = [...nodes.values()];
  const place = new Map();
  list.forEach((entity, i) => {
    const angle = (2 * Math.PI * i) / Math.max(list.length, 1) - Math.PI / 2;
    const spread = list.length > 1 ? 1 : 0;
    place.set(key(entity), { x: width / 2 + spread * (width / 2 - 110) * Math.cos(angle), y: height / 2 + spread * (height / 2 - 40) * Math.sin(angle) });
  });
  for (const triple of triples) {
    const from = place.get(key(triple.subject));
    const to = place.get(key(triple.object));
    if (from === to) continue;
    const dx = to.x - from.x, dy = to.y - from.y, length = Math.hypot(dx, dy) || 1;
    const shorten = 18;
    svg("line", { class: "edge", x1: from.x + (dx * shorten) / length, y1: from.y + (dy * shorten) / length, x2: to.x - (dx * shorten) / length, y2: to.y - (dy * shorten) / length, "marker-end": "url(#arrow)" }, graph);
    const label = svg("text", { x: (from.x + to.x) / 2, y: (from.y + to.y) / 2 - 4, "text-anchor": "middle", fill: "#4a5561" }, graph);
    label.textContent = triple.predicate;
  }
  for (const entity of list) {
    const { x, y } = place.get(key(entity));
    svg("circle", { cx: x, cy: y, r: 14, fill: colour(entity.type), stroke: "#555" }, graph);
    const label = svg("text", { x, y: y + 30, "text-anchor": "middle", class: "node" }, graph);
    label.textContent = entity.text;
  }
}

$("extract").addEventListener("click", extract);
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) extract();
});
$("api-key").addEventListener("change", loadModel);
loadModel();
