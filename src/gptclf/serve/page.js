
const byId = (id) => document.getElementById(id);

function show(prediction) {
  if (Array.isArray(prediction.labels)) {  // multi-label: any number of labels, each on its own
    byId("verdict").textContent = prediction.labels.join(", ") || "no label";
    byId("confidence").textContent = "each label decided on its own probability";
  } else {
    byId("verdict").textContent = prediction.label;
    byId("confidence").textContent = "probability " + prediction.probability.toFixed(4);
  }
  const rows = Object.entries(prediction.probabilities).map(([label, probability]) => {
    const row = document.createElement("tr");
    for (const text of [label, probability.toFixed(4)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  });
  byId("probabilities").replaceChildren(...rows);
  byId("result").hidden = false;
}

function highlight(explanation) {
  byId("explained").textContent = explanation.explained;
  byId("method").textContent = explanation.method;
  const scale = Math.max(1e-12, ...explanation.tokens.map((token) => Math.abs(token.score)));
  const spans = explanation.tokens.map((token) => {
    const span = document.createElement("span");
    span.textContent = token.text;
    span.title = token.score.toFixed(4);
    const colour = token.score > 0 ? "220, 38, 38" : "37, 99, 235";
    span.style.backgroundColor = "rgba(" + colour + ", " + Math.abs(token.score) / scale + ")";
    return span;
  });
  byId("tokens").replaceChildren(...spans);
  byId("explanation").hidden = false;
}

async function call(path, headers, body) {
  const response = await fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || "error " + response.status);
  return answer;
}

async function classify() {
  const headers = {"Content-Type": "application/json"};
  const key = byId("api-key").value;
  if (key) headers["Authorization"] = "Bearer " + key;
  const text = byId("message").value;
  const pair = byId("pair").value;
  const body = pair ? {text, pair} : {text};  // a pair only for models of text pairs
  byId("result").hidden = true;
  byId("explanation").hidden = true;
  byId("status").textContent = "classifying...";
  try {
    show((await call("v1/classify", headers, body)).predictions[0]);
    if (byId("explain").checked) {
      byId("status").textContent = "finding the words that decided...";
      highlight(await call("v1/explain", headers, {text}));
    }
    byId("status").textContent = "";
  } catch (error) {
    byId("status").textContent = error.message;
  }
}

byId("classify").addEventListener("click", classify);
