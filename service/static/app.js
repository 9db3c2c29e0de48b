// The draw-a-digit page: a drawing pad, uploads, the prediction, the 28×28 image the model saw, and each layer's
// feature maps. Every URL is relative, so the page works behind a load balancer and under a path prefix.

const COMPARE = "compare";
const COMPARED_MODELS = ["mnist_convnet", "mnist_no_maxpool"];
const PREDICT_DELAY_MS = 150;

const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const modelChooser = document.getElementById("model");
const answers = document.getElementById("answers");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
const mapsPanel = document.getElementById("maps-panel");
const mapsView = document.getElementById("feature-maps");
const aboutPanel = document.getElementById("about-panel");
const aboutView = document.getElementById("about");
const penWidth = document.getElementById("width");

const strokes = []; // each stroke: {width, points: [[x, y], ...]} in canvas pixels
let current = null;
let uploaded = null; // a Blob the user uploaded; drawing replaces it
let pending = null;
let sequence = 0; // answers to older requests are dropped
const summaries = new Map(); // model name → /model/summary

function paint() {
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, pad.width, pad.height);
  context.strokeStyle = "#000000";
  context.lineCap = "round";
  context.lineJoin = "round";
  for (const stroke of strokes) {
    context.lineWidth = stroke.width;
    const points = stroke.points;
    context.beginPath();
    context.moveTo(points[0][0], points[0][1]);
    if (points.length === 1) {
      context.lineTo(points[0][0] + 0.01, points[0][1]);
    }
    // Quadratic curves through the midpoints smooth the pointer's jitter.
    for (let i = 1; i < points.length - 1; i++) {
      const middle = [(points[i][0] + points[i + 1][0]) / 2, (points[i][1] + points[i + 1][1]) / 2];
      context.quadraticCurveTo(points[i][0], points[i][1], middle[0], middle[1]);
    }
    if (points.length > 1) {
      const last = points[points.length - 1];
      context.lineTo(last[0], last[1]);
    }
    context.stroke();
  }
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [((event.clientX - box.left) * pad.width) / box.width, ((event.clientY - box.top) * pad.height) / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  uploaded = null;
  current = { width: Number(penWidth.value), points: [padPoint(event)] };
  strokes.push(current);
  paint();
});
pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  current.points.push(padPoint(event));
  paint();
  schedulePrediction();
});
function endStroke() {
  if (!current) return;
  current = null;
  predictNow();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function clearPad() {
  clearTimeout(pending); // a prediction still to be sent is not sent,
  sequence++; // and the answer to one already sent is dropped when it arrives
  strokes.length = 0;
  uploaded = null;
  paint();
  answers.replaceChildren();
  mapsView.replaceChildren();
  statusLine.textContent = "Cleared.";
  errorLine.textContent = "";
}

function undo() {
  if (uploaded) {
    clearPad();
    return;
  }
  strokes.pop();
  paint();
  if (strokes.length) predictNow();
  else clearPad();
}

document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("undo").addEventListener("click", undo);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    event.preventDefault();
    clearPad();
  } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  }
});

// Uploads: the file input, drag and drop, and paste.
function useFile(file) {
  if (!file) return;
  uploaded = file;
  strokes.length = 0;
  paint();
  predictNow();
}
document.getElementById("file").addEventListener("change", (event) => useFile(event.target.files[0]));
pad.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dropping");
});
pad.addEventListener("dragleave", () => pad.classList.remove("dropping"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dropping");
  useFile(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((entry) => entry.kind === "file");
  if (item) useFile(item.getAsFile());
});

function schedulePrediction() {
  clearTimeout(pending);
  pending = setTimeout(predictNow, PREDICT_DELAY_MS);
}

function drawing() {
  if (uploaded) return Promise.resolve(uploaded);
  if (!strokes.length) return Promise.resolve(null);
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

function chosenModels() {
  return modelChooser.value === COMPARE ? COMPARED_MODELS : [modelChooser.value];
}

async function ask(model, image, include) {
  const started = performance.now();
  const response = await fetch(`models/${encodeURIComponent(model)}/predict?include=${include}`, {
    method: "POST",
    headers: { "Content-Type": image.type || "application/octet-stream" },
    body: image,
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `the server answered ${response.status}`;
    throw new Error(message);
  }
  return { model, body, milliseconds: performance.now() - started };
}

async function predictNow() {
  clearTimeout(pending);
  const image = await drawing();
  if (!image) return;
  const mine = ++sequence;
  try {
    const results = await Promise.all(chosenModels().map((model) => ask(model, image, "input")));
    if (mine !== sequence) return;
    errorLine.textContent = "";
    showAnswers(results);
    if (mapsPanel.open) showFeatureMaps(image, mine);
  } catch (error) {
    if (mine !== sequence) return;
    answers.replaceChildren();
    statusLine.textContent = "";
    errorLine.textContent = error.message;
  }
}

function showAnswers(results) {
  const template = document.getElementById("answer-template");
  answers.replaceChildren(
    ...results.map(({ model, body, milliseconds }) => {
      const prediction = body.predictions[0];
      const card = template.content.firstElementChild.cloneNode(true);
      card.querySelector(".model-name").textContent = `${model} (version ${body.model.version})`;
      const summary = summaries.get(model);
      card.querySelector(".model-facts").textContent = summary
        ? `${summary.total_params.toLocaleString("en")} parameters · test accuracy ${(100 * summary.metrics.test_accuracy).toFixed(2)}%`
        : "";
      card.querySelector(".digit").textContent = prediction.digit;
      card.querySelector(".confidence").textContent = `${(100 * prediction.confidence).toFixed(1)}% sure`;
      // is_digit is null for versions exported without a digit check: nothing is claimed either way.
      const doubtful = prediction.is_digit === false;
      card.querySelector(".not-digit").hidden = !doubtful;
      card.classList.toggle("doubtful", doubtful);
      const bars = card.querySelector(".bars");
      bars.setAttribute(
        "aria-label",
        prediction.probabilities.map((p, digit) => `${digit}: ${(100 * p).toFixed(1)}%`).join(", "),
      );
      prediction.probabilities.forEach((probability, digit) => {
        const bar = document.createElement("div");
        bar.className = digit === prediction.digit ? "bar top" : "bar";
        bar.style.height = `${Math.max(2, probability * 100)}%`;
        bar.title = `${digit}: ${(100 * probability).toFixed(1)}%`;
        bars.append(bar);
      });
      const labels = document.createElement("div");
      labels.className = "bar-labels";
      labels.setAttribute("aria-hidden", "true");
      labels.append(...[...Array(10).keys()].map((digit) => Object.assign(document.createElement("span"), { textContent: digit })));
      bars.after(labels);
      card.querySelector("img.input").src = `data:image/png;base64,${prediction.input}`;
      card.querySelector(".timing").textContent = `Round trip ${milliseconds.toFixed(0)} ms`;
      return card;
    }),
  );
  statusLine.textContent = results
    .map(({ model, body }) =>
      body.predictions[0].is_digit === false
        ? `${model}: that doesn't look like a digit`
        : `${model} reads ${body.predictions[0].digit}, ${(100 * body.predictions[0].confidence).toFixed(0)}% sure`,
    )
    .join("; ");
}

async function showFeatureMaps(image, mine) {
  const model = chosenModels()[0];
  try {
    const { body } = await ask(model, image, "feature_maps");
    if (mine !== sequence) return;
    mapsView.replaceChildren(...body.predictions[0].feature_maps.map(layerView));
  } catch (error) {
    mapsView.replaceChildren(Object.assign(document.createElement("p"), { className: "error", textContent: error.message }));
  }
}

function layerView(map) {
  const [height, width, channels] = map.shape;
  const bytes = Uint8Array.from(atob(map.data), (character) => character.charCodeAt(0));
  const section = document.createElement("section");
  section.className = "layer";
  section.dataset.layer = map.layer;
  section.dataset.shape = map.shape.join("x");
  const title = document.createElement("h3");
  title.textContent = `${map.layer} (None, ${height}, ${width}, ${channels})`;
  const tiles = document.createElement("div");
  tiles.className = "tiles";
  for (let channel = 0; channel < channels; channel++) {
    const tile = document.createElement("canvas");
    tile.width = width;
    tile.height = height;
    tile.setAttribute("aria-label", `${map.layer}, channel ${channel + 1}`);
    const pixels = tile.getContext("2d").createImageData(width, height);
    for (let i = 0; i < width * height; i++) {
      const value = bytes[i * channels + channel];
      pixels.data.set([value, value, value, 255], i * 4);
    }
    tile.getContext("2d").putImageData(pixels, 0, 0);
    tiles.append(tile);
  }
  section.append(title, tiles);
  return section;
}

mapsPanel.addEventListener("toggle", async () => {
  if (!mapsPanel.open) return;
  const image = await drawing();
  if (image) showFeatureMaps(image, sequence);
});

async function summaryOf(model) {
  if (!summaries.has(model)) {
    const response = await fetch(`model/summary?model=${encodeURIComponent(model)}`);
    if (response.ok) summaries.set(model, await response.json());
  }
  return summaries.get(model);
}

async function showAbout() {
  const parts = [];
  for (const model of chosenModels()) {
    const summary = await summaryOf(model);
    if (!summary) continue;
    const heading = Object.assign(document.createElement("h3"), {
      textContent: `${model} version ${summary.model.version}: test accuracy ${(100 * summary.metrics.test_accuracy).toFixed(2)}%`,
    });
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th scope='col'>Layer (type)</th><th scope='col'>Output shape</th><th scope='col'>Param #</th></tr></thead>";
    const rows = document.createElement("tbody");
    for (const layer of summary.layers) {
      const row = document.createElement("tr");
      const shape = `(${layer.output_shape.map((size) => (size === null ? "None" : size)).join(", ")})`;
      for (const [text, numeric] of [[`${layer.name} (${layer.type})`, false], [shape, false], [layer.params.toLocaleString("en"), true]]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (numeric) cell.className = "number";
        row.append(cell);
      }
      rows.append(row);
    }
    table.append(rows);
    const plots = document.createElement("div");
    plots.className = "plots";
    const base = `models/${encodeURIComponent(model)}/versions/${summary.model.version}/assets/`;
    const pictures = [["training_curves.png", "Training curves"], ["confusion_matrix.png", "Confusion matrix"]];
    if (summary.calibration) pictures.push(["reliability_diagram.png", "Reliability diagram"]);
    for (const [file, alt] of pictures) {
      const picture = document.createElement("img");
      picture.src = base + file;
      picture.alt = `${alt} of ${model} version ${summary.model.version}`;
      picture.loading = "lazy";
      picture.width = 480;
      plots.append(picture);
    }
    parts.push(heading, table, plots);
  }
  aboutView.replaceChildren(...parts);
}
aboutPanel.addEventListener("toggle", () => {
  if (aboutPanel.open) showAbout();
});

async function loadModels() {
  const response = await fetch("models");
  const body = await response.json();
  const options = body.models.map((model) =>
    Object.assign(document.createElement("option"), {
      value: model.name,
      textContent: model.default ? `${model.name} (default)` : model.name,
      selected: model.default,
    }),
  );
  const names = body.models.map((model) => model.name);
  if (COMPARED_MODELS.every((name) => names.includes(name))) {
    options.push(Object.assign(document.createElement("option"), { value: COMPARE, textContent: "compare: with and without max pooling" }));
  }
  modelChooser.replaceChildren(...options);
  await Promise.all(names.map(summaryOf));
}
modelChooser.addEventListener("change", () => {
  predictNow();
  if (aboutPanel.open) showAbout();
});

paint();
loadModels().catch((error) => {
  errorLine.textContent = `Could not list the models: ${error.message}`;
});
