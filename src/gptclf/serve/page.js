
const byId = (id) => document.getElementById(id);

function show(prediction) {
  byId("verdict").textContent = prediction.label;
  byId("confidence").textContent = prediction.probability.toFixed(4);
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

async function classify() {
  const headers = {"Content-Type": "application/json"};
  const key = byId("api-key").value;
  if (key) headers["Authorization"] = "Bearer " + key;
  byId("result").hidden = true;
  byId("status").textContent = "classifying...";
  try {
    const response = await fetch("v1/classify", {
      method: "POST", headers, body: JSON.stringify({text: byId("message").value}),
    });
    const answer = await response.json();
    if (!response.ok) {
      byId("status").textContent = answer.error || "error " + response.status;
      return;
    }
    byId("status").textContent = "";
    show(answer.predictions[0]);
  } catch (error) {
    byId("status").textContent = "the request failed: " + error.message;
  }
}

byId("classify").addEventListener("click", classify);
