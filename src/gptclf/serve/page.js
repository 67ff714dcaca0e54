
"use strict";
// The page of `gptclf serve`: the model's card, one message at a time, or a file in batches.
// Every element is built with createElement and textContent; nothing is fetched but this service.

const byId = (id) => document.getElementById(id);
// The columns `gptclf predict` looks for a file's texts in, in this order.
const TEXT_COLUMNS = ["text", "message", "sentence", "content", "body", "review", "document",
  "sms", "utterance", "query"];
const SHOWN_ROWS = 1000;  // rows drawn in the batch table; the download has them all
const SHOWN_CHARS = 300;  // of a text in the batch table
const LABEL_JOINER = "|";  // between the labels of a multi-label text, as in `gptclf predict`
const FIELD_ENDS = [",", "\r", "\n"];  // of an unquoted CSV field
const state = {model: null, keyError: false, batch: null, sort: {column: 0, ascending: true}};

/** An element with text content and a class. */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function setStatus(text, isError) {
  byId("status").textContent = text;
  byId("status").classList.toggle("error", Boolean(isError));
}

const takesPairs = (model) => Boolean(model && model.text_pairs);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the service ----

/** The answer of GET `path` (no body) or POST `path` with JSON `body`; an error says why. */
async function api(path, body) {
  const get = body === undefined;
  const headers = get ? {} : {"Content-Type": "application/json"};
  const key = byId("api-key").value;
  if (key) headers.Authorization = "Bearer " + key;
  const init = get ? {headers} : {method: "POST", headers, body: JSON.stringify(body)};
  const response = await fetch(path, init);
  const answer = await response.json().catch(() => ({}));
  if (response.ok) return answer;
  let message = answer.error || "the service answered " + response.status;
  if (response.status === 401) {
    byId("key-box").open = true;
    message = key ? "The API key was refused: check it under “API key” above."
      : "This service needs an API key: enter it under “API key” above.";
  }
  const error = new Error(message);
  error.status = response.status;
  error.retryAfter = Number(response.headers.get("Retry-After")) || 1;
  throw error;
}

/** Fetch the model's card (again, once a key is entered) and show it. */
async function loadModel() {
  try {
    state.model = await api("v1/model");
    showModel(state.model);
    if (state.keyError) setStatus("");
    state.keyError = false;
  } catch (error) {
    state.keyError = error.status === 401;
    setStatus(error.message, true);
  }
  return state.model;
}

// ---- the model's card ----

function showModel(model) {
  byId("model-base").textContent = model.base_model;
  byId("model-labels").replaceChildren(...model.labels.map((label) => el("li", label)));
  const kind = [model.multi_label ? "multi-label: any number of the labels" : "one label a text"];
  if (takesPairs(model)) kind.push("reads text pairs");
  byId("model-kind").textContent = kind.join("; ");
  byId("model-rows").textContent = model.training_rows == null ? "not recorded"
    : model.training_rows.toLocaleString() + " texts";
  byId("model-trained").replaceChildren(trainedAt(model.trained_at));
  const metrics = model.metrics || {};
  const splits = ["validation", "test"].filter((name) => metrics[name]);
  byId("metrics-rows").replaceChildren(...splits.map((name) => metricsRow(name, metrics[name])));
  byId("metrics").hidden = splits.length === 0;
  showExamples(model.examples || []);
  byId("pair-box").hidden = !takesPairs(model);
  byId("pair-box").open = takesPairs(model);
}

function trainedAt(iso) {
  if (!iso) return document.createTextNode("not recorded");
  const time = el("time", new Date(iso).toLocaleString(undefined,
    {dateStyle: "medium", timeStyle: "short"}));
  time.dateTime = iso;
  time.title = iso;
  return time;
}

function metricsRow(name, metrics) {
  const number = (value) => (typeof value === "number" ? value.toFixed(3) : "–");
  const errors = metrics.n_errors == null ? "–" : metrics.n_errors + " of " + metrics.n;
  const row = el("tr");
  row.append(el("th", name), el("td", number(metrics.accuracy), "number"),
    el("td", number(metrics.macro_f1), "number"), el("td", errors, "number"));
  row.firstChild.scope = "row";
  return row;
}

/** One button per example: a click puts its text (and pair) in the message box. */
function showExamples(examples) {
  const items = examples.map((example) => {
    const button = el("button");
    button.type = "button";
    button.append(el("span", example.label, "tag"), example.text);
    if (example.pair) button.append(" / " + example.pair);
    button.addEventListener("click", () => {
      byId("message").value = example.text;
      byId("pair").value = example.pair || "";
      byId("message").focus();
    });
    const item = el("li");
    item.append(button);
    return item;
  });
  byId("examples").replaceChildren(...items);
  byId("examples-box").hidden = items.length === 0;
}

// ---- one message ----

/** The probability at which each label is decided, where the model saved one (else null). */
function thresholds(model) {
  if (!model) return {};
  const threshold = (model.decision || {}).threshold;
  const at = {};
  model.labels.forEach((label, i) => {
    if (model.multi_label) at[label] = Array.isArray(threshold) ? threshold[i] : 0.5;
    else if (typeof threshold === "number" && i === 1) at[label] = threshold;
  });
  return at;
}

function decisionText(model) {
  if (!model) return "";
  const decision = model.decision || {};
  let text = "The most probable class is decided.";
  if (model.multi_label) {
    text = "Each label is decided where its probability reaches its threshold (the marks).";
  } else if (typeof decision.threshold === "number") {
    text = model.labels[1] + " is decided where its probability reaches "
      + decision.threshold.toFixed(4) + " (the mark), the threshold chosen by the rule "
      + decision.rule + ".";
  }
  if (decision.temperature && decision.temperature !== 1) {
    text += " Probabilities are calibrated with temperature "
      + decision.temperature.toFixed(3) + ".";
  }
  return text;
}

/** A labelled bar with its number; the bar is drawn only, the number is read. */
function probabilityRow(label, probability, chosen, threshold) {
  const track = el("span", null, "track");
  track.setAttribute("aria-hidden", "true");
  const fill = el("span", null, "fill");
  fill.style.width = (100 * probability).toFixed(2) + "%";
  track.append(fill);
  if (threshold != null) {
    const mark = el("span", null, "mark");
    mark.style.left = (100 * threshold).toFixed(2) + "%";
    mark.title = "threshold " + threshold.toFixed(4);
    track.append(mark);
  }
  const meter = el("div", null, "meter");
  meter.append(track, el("span", probability.toFixed(4), "value"));
  const cell = el("td");
  cell.append(meter);
  const row = el("tr", null, chosen ? "chosen" : "");
  row.append(el("td", label), cell);
  return row;
}

function show(prediction, milliseconds) {
  const multi = Array.isArray(prediction.labels);
  const decided = multi ? prediction.labels : [prediction.label];
  byId("verdict").textContent = multi ? decided.join(", ") || "no label" : prediction.label;
  byId("confidence").textContent = multi ? "each label decided on its own probability"
    : "probability " + prediction.probability.toFixed(4);
  byId("elapsed").textContent = "answered in " + Math.round(milliseconds) + " ms";
  const at = thresholds(state.model);
  const rows = Object.entries(prediction.probabilities).map(([label, probability]) =>
    probabilityRow(label, probability, decided.includes(label), at[label]));
  byId("probabilities").replaceChildren(...rows);
  byId("decision").textContent = decisionText(state.model);
  byId("result").hidden = false;
}

function highlight(explanation) {
  byId("explained").textContent = explanation.explained;
  byId("method").textContent = explanation.method;
  const scale = Math.max(1e-12, ...explanation.tokens.map((token) => Math.abs(token.score)));
  const spans = explanation.tokens.map((token) => {
    const span = el("span", token.text);
    span.title = token.score.toFixed(4);
    const colour = token.score > 0 ? "220, 38, 38" : "37, 99, 235";
    span.style.backgroundColor = "rgba(" + colour + ", " + Math.abs(token.score) / scale + ")";
    return span;
  });
  byId("tokens").replaceChildren(...spans);
  byId("explanation").hidden = false;
}

async function classify() {
  const text = byId("message").value;
  const pair = byId("pair").value;
  const body = pair ? {text, pair} : {text};  // a pair only for models of text pairs
  byId("result").hidden = true;
  byId("explanation").hidden = true;
  byId("classify").disabled = true;
  setStatus("classifying…");
  try {
    const began = performance.now();
    const answer = await api("v1/classify", body);
    show(answer.predictions[0], performance.now() - began);
    if (byId("explain").checked) {
      setStatus("finding the words that decided…");
      highlight(await api("v1/explain", {text}));
    }
    setStatus("");
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    byId("classify").disabled = false;
  }
}

// ---- a file ----

/** The records of CSV `source` (RFC 4180: quoted fields may hold commas, quotes and newlines),
 * read in one pass; a blank line is a record of one empty field, as `gptclf predict` reads it. */
function parseCsv(source) {
  const records = [];
  let record = [];
  let at = 0;  // where the next field begins
  while (at < source.length) {
    const [field, end] = readField(source, at, records.length);
    record.push(field);
    at = end + 1;  // past the comma or the newline
    if (source[end] === ",") continue;
    if (source[end] === "\r" && source[at] === "\n") at += 1;
    records.push(record);
    record = [];
  }
  if (record.length) records.push([...record, ""]);  // the file ends with a comma
  return records;
}

/** The field of `source` that begins at `start`, and where it ends: at a comma, a newline or the
 * end. Text after a closing quote, and a quote within an unquoted field, are kept as they are,
 * as Python's csv module (and so `gptclf predict`) keeps them. */
function readField(source, start, row) {
  let text = "";
  let at = start;
  if (source[at] === '"') {
    at += 1;
    for (;;) {  // up to the quote that is not doubled
      const quote = source.indexOf('"', at);
      if (quote < 0) throw new Error(rowName(row) + ": a quoted field is never closed");
      text += source.slice(at, quote);
      at = quote + 1;
      if (source[at] !== '"') break;
      text += '"';
      at += 1;
    }
  }
  let end = at;
  while (end < source.length && !FIELD_ENDS.includes(source[end])) end += 1;
  return [text + source.slice(at, end), end];
}

/** Record `index` of a CSV file as the page numbers it: the header, then row 1, 2, … */
const rowName = (index) => (index === 0 ? "the header" : "row " + index);

/** How the page reads file `name` for `model`: "csv" or "txt"; an error for any other kind. */
function fileKind(name, model) {
  const kind = name.slice(name.lastIndexOf(".") + 1).toLowerCase();  // its extension
  if (!name.includes(".") || !["csv", "txt"].includes(kind)) {
    throw new Error(name + ": the page reads CSV (.csv) and TXT (.txt) files only");
  }
  if (kind === "txt" && takesPairs(model)) {
    throw new Error("this model classifies pairs of texts: give a CSV with text and pair columns");
  }
  return kind;
}

/** The index of column `name` as `gptclf predict` finds it: exactly, else ignoring case. */
function findColumn(header, name) {
  const exact = header.indexOf(name);
  if (exact >= 0) return exact;
  return header.findIndex((column) => column.toLowerCase() === name.toLowerCase());
}

/** The index of the texts' column: the first of TEXT_COLUMNS present, as `gptclf predict`. */
function textColumn(header, name) {
  for (const wanted of TEXT_COLUMNS) {
    const index = findColumn(header, wanted);
    if (index >= 0) return index;
  }
  const columns = header.length ? header.join(", ") : "none";
  throw new Error(name + ": cannot tell which column holds the texts (columns: " + columns
    + '); name it "text"');
}

/** The rows of a file: {number, text, pair}; CSV by its header, TXT one text a line. */
function readRows(name, kind, source, pairs) {
  source = source.replace(/^\uFEFF/, "");
  if (kind === "txt") {
    const lines = source.split(/\r\n|\n|\r/);
    return {unit: "line", rows: lines.map((text, i) => ({number: i + 1, text}))
      .filter((row) => row.text !== "")};
  }
  const [header = [], ...records] = parseCsv(source);
  const textAt = textColumn(header, name);
  const pairAt = pairs ? findColumn(header, "pair") : -1;
  if (pairs && pairAt < 0) throw new Error(name + " has no pair column, which this model needs");
  const rows = records.map((record, i) => ({number: i + 1, text: record[textAt] ?? ""}));
  if (pairs) rows.forEach((row, i) => { row.pair = records[i][pairAt] ?? ""; });
  return {unit: "row", rows};
}

/** The problem that keeps a row from the service, before it is sent (null: none). */
function rowProblem(row, where, limits) {
  for (const [text, name] of [[row.text, where], [row.pair, "the pair of " + where]]) {
    if (text === undefined) continue;
    const chars = [...text].length;  // code points, as the service counts them
    if (chars === 0) return name + ": no text to classify";
    if (chars > limits.max_chars) {
      return name + " has " + chars.toLocaleString("en") + " characters; the limit is "
        + limits.max_chars.toLocaleString("en");
    }
  }
  return null;
}

/** The rows in requests within the service's limits on texts and body bytes. */
function chunksOf(rows, limits, where) {
  const encoder = new TextEncoder();
  const size = (text) => (text === undefined ? 0 : encoder.encode(JSON.stringify(text)).length + 1);
  const budget = limits.max_body_bytes - 64;  // less the braces and names of the body
  const chunks = [];
  let chunk = [];
  let bytes = 0;
  for (const row of rows) {
    const rowBytes = size(row.text) + size(row.pair);
    if (rowBytes > budget) {
      row.error = where(row) + " is too large for one request (" + rowBytes + " bytes)";
      continue;
    }
    if (chunk.length && (chunk.length >= limits.max_texts || bytes + rowBytes > budget)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(row);
    bytes += rowBytes;
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

/** Classify one chunk's rows; a row the service refuses by name gets its error, the rest go on.
 * It gives up waiting on a busy service once its batch is no longer `current`. */
async function classifyChunk(rows, where, current) {
  for (let waits = 0; rows.length;) {
    const body = {texts: rows.map((row) => row.text)};
    if (rows[0].pair !== undefined) body.pairs = rows.map((row) => row.pair);
    try {
      const answer = await api("v1/classify", body);
      answer.predictions.forEach((prediction, i) => { rows[i].prediction = prediction; });
      return;
    } catch (error) {
      if (error.status === 503 && waits++ < 5) {  // busy: wait as told, then again
        await sleep(1000 * error.retryAfter);
        if (!current()) return;
        continue;
      }
      const named = error.status === 422 && /texts\[(\d+)\]/.exec(error.message);
      if (!named) throw error;
      const refused = rows[Number(named[1])];
      refused.error = error.message.replace(named[0], where(refused));
      rows = rows.filter((row) => row !== refused);
    }
  }
}

/** Classify `file` in batches. Only the batch of the file chosen last touches the page: one that
 * another file replaced stops at its next step (`current` is false) and shows nothing. */
async function classifyFile(file) {
  const model = state.model || await loadModel();
  if (!model) return;
  const batch = {name: file.name, model, rows: [], unit: "row"};
  state.batch = batch;
  const current = () => state.batch === batch;
  startBatch();
  try {
    const kind = fileKind(file.name, model);
    const source = await file.text();
    if (!current()) return;
    Object.assign(batch, readRows(file.name, kind, source, takesPairs(model)));
    await classifyRows(batch, current);
    if (current()) finishBatch(batch);
  } catch (error) {
    if (current()) showBatchError(error.message);
  }
}

/** Clear what the previous file left: its rows, progress, summary, errors and download. */
function startBatch() {
  state.sort = {column: 0, ascending: true};  // in file order
  byId("batch-run").hidden = false;
  byId("batch-download").hidden = true;
  byId("batch-errors").replaceChildren();
  byId("batch-head").replaceChildren();
  byId("batch-rows").replaceChildren();
  byId("batch-progress").value = 0;
  byId("batch-status").textContent = "reading " + state.batch.name + "…";
  byId("batch-status").classList.remove("error");
}

function showBatchError(message) {
  byId("batch-status").textContent = message;
  byId("batch-status").classList.add("error");
}

/** Send the batch's rows in chunks within the service's limits, drawing each as it is answered,
 * until all are or the batch is no longer `current`. */
async function classifyRows(batch, current) {
  const limits = batch.model.limits;
  const where = (row) => batch.unit + " " + row.number;
  for (const row of batch.rows) row.error = rowProblem(row, where(row), limits);
  const chunks = chunksOf(batch.rows.filter((row) => !row.error), limits, where);
  const progress = byId("batch-progress");
  progress.max = Math.max(1, batch.rows.length);
  progress.value = batch.rows.filter((row) => row.error).length;
  renderBatch();
  for (const chunk of chunks) {
    byId("batch-status").textContent = "classifying: " + progress.value + " of "
      + batch.rows.length + " " + batch.unit + "s done";
    await classifyChunk(chunk, where, current);
    if (!current()) return;  // another file was chosen meanwhile
    progress.value += chunk.length;
    renderBatch();
  }
}

/** The summary, the rows not classified and why, and the download. */
function finishBatch(batch) {
  const failed = batch.rows.filter((row) => row.error);
  const done = batch.rows.length - failed.length;
  let summary = done + " of " + batch.rows.length + " " + batch.unit + "s classified";
  if (failed.length) summary += "; " + failed.length + " not, listed below (empty in the download)";
  byId("batch-status").textContent = summary + ".";
  byId("batch-status").classList.toggle("error", failed.length > 0);
  byId("batch-errors").replaceChildren(...failed.slice(0, 20).map((row) => el("li", row.error)));
  if (failed.length > 20) {
    byId("batch-errors").append(el("li", "and " + (failed.length - 20) + " more"));
  }
  byId("batch-download").hidden = batch.rows.length === 0;
}

/** A row's verdict in the batch table: its label(s), or why it was not classified. */
function verdictOf(row) {
  if (row.error || !row.prediction) return row.error || undefined;
  const {labels, label} = row.prediction;
  return labels ? labels.join(LABEL_JOINER) : label;
}

/** The batch table's columns: heading, a row's value (sorted by), how it is shown. */
function batchColumns(model) {
  const fixed = (value) => value.toFixed(4);
  const clip = (text) => (text.length > SHOWN_CHARS ? text.slice(0, SHOWN_CHARS) + "…" : text);
  const columns = [{name: "row", value: (row) => row.number, kind: "number", show: String},
    {name: "text", value: (row) => row.text, kind: "text", show: clip}];
  if (takesPairs(model)) {
    columns.push({name: "pair", value: (row) => row.pair, kind: "text", show: clip});
  }
  columns.push({name: model.multi_label ? "labels" : "label", value: verdictOf, kind: "verdict"});
  if (!model.multi_label) {
    const value = (row) => row.prediction?.probability;
    columns.push({name: "probability", value, kind: "number", show: fixed});
  }
  for (const label of model.labels) {
    const value = (row) => row.prediction?.probabilities[label];
    columns.push({name: "p_" + label, value, kind: "number", show: fixed});
  }
  return columns;
}

/** Draw the rows classified so far, sorted as chosen, and the sortable headings. */
function renderBatch() {
  const batch = state.batch;
  const columns = batchColumns(batch.model);
  const {column, ascending} = state.sort;
  const key = columns[Math.min(column, columns.length - 1)];
  const done = batch.rows.filter((row) => row.prediction || row.error);
  const compare = (a, b) => (key.kind === "number" ? a - b : String(a).localeCompare(b));
  done.sort((a, b) => {
    const [x, y] = [key.value(a), key.value(b)];
    if (x === undefined || y === undefined) return (x === undefined) - (y === undefined);
    return (ascending ? 1 : -1) * compare(x, y) || a.number - b.number;
  });
  const headings = columns.map((each, i) => {
    const button = el("button", each.name);
    button.type = "button";
    button.addEventListener("click", () => sortBy(i));
    const heading = el("th", null, each.kind);
    heading.scope = "col";
    if (i === column) heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    heading.append(button);
    return heading;
  });
  const headRow = el("tr");
  headRow.append(...headings);
  byId("batch-head").replaceChildren(headRow);
  const shown = done.slice(0, SHOWN_ROWS).map((row) => batchRow(row, columns));
  byId("batch-rows").replaceChildren(...shown);
}

function batchRow(row, columns) {
  const line = el("tr");
  for (const column of columns) {
    const value = column.value(row);
    const shown = value === undefined ? "" : (column.show || String)(value);
    const error = row.error && column.kind === "verdict";
    line.append(el("td", shown, error ? "error" : column.kind));
  }
  return line;
}

function sortBy(column) {
  const same = state.sort.column === column;
  state.sort = {column, ascending: same ? !state.sort.ascending : true};
  renderBatch();
  byId("batch-head").querySelectorAll("button")[column].focus();
}

/** A CSV field as Python's csv module writes it (quoted where it must be). */
function csvField(value) {
  const text = String(value);
  return /[",\r\n]/.test(text) ? '"' + text.replaceAll('"', '""') + '"' : text;
}

/** The predictions as `gptclf predict --output FILE.csv` writes them, rows in file order. */
function predictionsCsv(batch) {
  const {labels, multi_label: multi} = batch.model;
  const pairs = takesPairs(batch.model);
  const header = [...(pairs ? ["text", "pair"] : ["text"]),
    ...(multi ? ["labels"] : ["label", "probability"]), ...labels.map((label) => "p_" + label)];
  const lines = [header];
  for (const row of batch.rows) {
    const read = pairs ? [row.text, row.pair] : [row.text];
    const p = row.prediction;
    const each = p ? labels.map((label) => p.probabilities[label].toFixed(6)) : [];
    if (!p) lines.push([...read, ...Array(labels.length + (multi ? 1 : 2)).fill("")]);
    else if (multi) lines.push([...read, p.labels.join(LABEL_JOINER), ...each]);
    else lines.push([...read, p.label, p.probability.toFixed(6), ...each]);
  }
  return lines.map((line) => line.map(csvField).join(",") + "\n").join("");
}

function download() {
  const batch = state.batch;
  const blob = new Blob([predictionsCsv(batch)], {type: "text/csv"});
  const link = el("a");
  link.href = URL.createObjectURL(blob);
  const dot = batch.name.lastIndexOf(".");
  link.download = (dot > 0 ? batch.name.slice(0, dot) : batch.name) + "-predictions.csv";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// ---- wiring ----

function onDrop(event) {
  event.preventDefault();
  byId("drop").classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) classifyFile(file);
}

byId("classify").addEventListener("click", classify);
for (const id of ["message", "pair"]) {
  byId(id).addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      classify();
    }
  });
}
byId("api-key").addEventListener("change", loadModel);  // on Enter, or on leaving the field
byId("batch-file").addEventListener("change", (event) => {
  if (event.target.files[0]) classifyFile(event.target.files[0]);
});
byId("drop").addEventListener("dragover", (event) => {
  event.preventDefault();
  byId("drop").classList.add("over");
});
byId("drop").addEventListener("dragleave", () => byId("drop").classList.remove("over"));
byId("drop").addEventListener("drop", onDrop);
byId("batch-download").addEventListener("click", download);
loadModel();
