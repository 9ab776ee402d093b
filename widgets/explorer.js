// AttentionExplorer's browser side: draws the kernel's patch maps over the image.
// Traits arrive from widgets/explorer.py; hovering a token chip switches maps locally
// (they are all here already); choosing layer, head or method asks the kernel for new maps.

const INFERNO = [ // colour stops of matplotlib's "inferno", the map plot_attention uses
  [0.0, [0, 0, 4]], [0.25, [87, 16, 110]], [0.5, [188, 55, 84]],
  [0.75, [249, 142, 9]], [1.0, [252, 255, 164]],
];

function colour(t) {
  t = Math.min(1, Math.max(0, t));
  for (let i = 1; i < INFERNO.length; i++) {
    const [t1, c1] = INFERNO[i];
    const [t0, c0] = INFERNO[i - 1];
    if (t <= t1) {
      const f = (t - t0) / (t1 - t0);
      return c0.map((v, k) => Math.round(v + f * (c1[k] - v)));
    }
  }
  return INFERNO[INFERNO.length - 1][1];
}

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

function select(label, className, parent) {
  const wrap = element("label", "vlkit-explorer-control", parent);
  element("span", null, wrap).textContent = label;
  const box = element("select", className, wrap);
  return box;
}

function fill(box, entries, current) {
  box.innerHTML = "";
  for (const [value, text] of entries) {
    const option = element("option", null, box);
    option.value = String(value);
    option.textContent = text;
  }
  box.value = String(current);
}

function render({ model, el }) {
  const root = element("div", "vlkit-explorer", el);
  const stage = element("div", "vlkit-explorer-stage", root);
  const img = element("img", "vlkit-explorer-image", stage);
  img.alt = "the image as the encoder saw it";
  const canvas = element("canvas", "vlkit-explorer-overlay", stage);
  const SIZE = 320;
  canvas.width = SIZE;
  canvas.height = SIZE;

  const side = element("div", "vlkit-explorer-side", root);
  const prompt = element("div", "vlkit-explorer-prompt", side);
  const chips = element("div", "vlkit-explorer-tokens", side);
  const controls = element("div", "vlkit-explorer-controls", side);
  const methodBox = select("method", "vlkit-explorer-method", controls);
  const layerBox = select("layer", "vlkit-explorer-layer", controls);
  const headBox = select("head", "vlkit-explorer-head", controls);
  const imageBox = select("image", "vlkit-explorer-image-choice", controls);
  const opacityWrap = element("label", "vlkit-explorer-control", controls);
  element("span", null, opacityWrap).textContent = "opacity";
  const opacity = element("input", "vlkit-explorer-opacity", opacityWrap);
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "1";
  opacity.step = "0.05";
  const patchInfo = element("div", "vlkit-explorer-patch", side);
  const message = element("div", "vlkit-explorer-message", side);

  let pinned = model.get("token"); // the clicked token; hovering shows others until mouse leaves
  let hovered = -1; // patch under the mouse

  function setTrait(name, value) {
    if (model.get(name) === value) return;
    model.set(name, value);
    model.save_changes();
  }

  function draw() {
    const [h, w] = model.get("grid");
    const maps = model.get("maps");
    const scales = model.get("scales");
    const token = model.get("token");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, SIZE, SIZE);
    const row = maps[token + 1];
    if (!row) return;
    const [lo, hi] = scales[token + 1];
    const span = hi > lo ? hi - lo : 1;
    const cw = SIZE / w;
    const ch = SIZE / h;
    ctx.globalAlpha = model.get("opacity");
    let signature = 0;
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const t = (Math.min(row[r * w + c], hi) - lo) / span;
        const [R, G, B] = colour(t);
        ctx.fillStyle = `rgb(${R},${G},${B})`;
        // whole-pixel edges shared by neighbours: no gaps and no double-painted seams
        const x0 = Math.round(c * cw);
        const y0 = Math.round(r * ch);
        ctx.fillRect(x0, y0, Math.round((c + 1) * cw) - x0, Math.round((r + 1) * ch) - y0);
        signature = (signature * 31 + Math.round(t * 255)) % 1000000007;
      }
    }
    ctx.globalAlpha = 1;
    if (hovered >= 0) {
      ctx.strokeStyle = "#00e5ff";
      ctx.lineWidth = 2;
      ctx.strokeRect((hovered % w) * cw + 1, Math.floor(hovered / w) * ch + 1, cw - 2, ch - 2);
    }
    canvas.dataset.token = String(token);
    canvas.dataset.signature = String(signature); // lets a browser test see that the map changed
    for (const chip of chips.children) {
      const i = Number(chip.dataset.index);
      chip.classList.toggle("vlkit-explorer-shown", i === token);
      chip.classList.toggle("vlkit-explorer-pinned", i === pinned);
    }
  }

  function buildChips() {
    chips.innerHTML = "";
    const tokens = [["all", -1], ...model.get("tokens").map((t, i) => [t, i])];
    for (const [text, i] of tokens) {
      const chip = element("button", "vlkit-explorer-chip", chips);
      chip.type = "button";
      chip.dataset.index = String(i);
      chip.textContent = i < 0 ? "all tokens" : (text.trim() === "" ? "␣" : text);
      chip.title = i < 0 ? "mean over the answer's tokens" : `answer token ${i}: ${JSON.stringify(text)}`;
      chip.addEventListener("mouseenter", () => setTrait("token", i));
      chip.addEventListener("mouseleave", () => setTrait("token", pinned));
      chip.addEventListener("click", () => {
        pinned = i;
        setTrait("token", i);
        draw();
      });
    }
  }

  function buildControls() {
    const options = model.get("options");
    fill(methodBox, options.methods, model.get("method"));
    const pooled = [["mean", "mean"], ["max", "max"]];
    const layers = [...Array(options.layers).keys()].map((i) => [i, `${i}`]);
    const heads = [...Array(options.heads).keys()].map((i) => [i, `${i}`]);
    fill(layerBox, [...pooled, ...layers], model.get("layer"));
    fill(headBox, [...pooled, ...heads], model.get("head"));
    const images = [...Array(options.images).keys()].map((i) => [i, `image ${i + 1}`]);
    fill(imageBox, images, model.get("image_index"));
    imageBox.parentElement.style.display = options.images > 1 ? "" : "none";
    opacity.value = String(model.get("opacity"));
    const encoderOnly = ["rollout", "cls"].includes(model.get("method"));
    layerBox.disabled = encoderOnly;
    headBox.disabled = encoderOnly;
  }

  function showPatch() {
    const rows = model.get("patch_tokens");
    const [h, w] = model.get("grid");
    if (hovered < 0) {
      patchInfo.textContent = "Hover over the image to see which tokens looked at a patch.";
    } else if (!rows.length) {
      patchInfo.textContent = `patch (${Math.floor(hovered / w)}, ${hovered % w}): this method has one map for all tokens`;
    } else {
      const parts = rows.map(([, text, share]) => `${JSON.stringify(text)} (${(100 * share).toFixed(1)}% of its map)`);
      patchInfo.textContent = `patch (${Math.floor(hovered / w)}, ${hovered % w}): looked at most by ${parts.join(", ")}`;
    }
  }

  const intOrName = (v) => (v === "mean" || v === "max" ? v : Number(v));
  methodBox.addEventListener("change", () => setTrait("method", methodBox.value));
  layerBox.addEventListener("change", () => setTrait("layer", intOrName(layerBox.value)));
  headBox.addEventListener("change", () => setTrait("head", intOrName(headBox.value)));
  imageBox.addEventListener("change", () => setTrait("image_index", Number(imageBox.value)));
  opacity.addEventListener("input", () => setTrait("opacity", Number(opacity.value)));

  canvas.addEventListener("mousemove", (event) => {
    const [h, w] = model.get("grid");
    const box = canvas.getBoundingClientRect();
    const c = Math.min(w - 1, Math.floor(((event.clientX - box.left) / box.width) * w));
    const r = Math.min(h - 1, Math.floor(((event.clientY - box.top) / box.height) * h));
    const patch = r * w + c;
    if (patch !== hovered) {
      hovered = patch;
      setTrait("hovered_patch", patch);
      draw();
      showPatch();
    }
  });
  canvas.addEventListener("mouseleave", () => {
    hovered = -1;
    setTrait("hovered_patch", -1);
    draw();
    showPatch();
  });

  function refreshAll() {
    img.src = model.get("image_url");
    prompt.textContent = `prompt: ${model.get("prompt")}`;
    message.textContent = model.get("message");
    buildChips();
    buildControls();
    draw();
    showPatch();
  }

  model.on("change:image_url", () => { img.src = model.get("image_url"); });
  model.on("change:maps", draw);
  model.on("change:scales", draw);
  model.on("change:token", draw);
  model.on("change:opacity", () => { opacity.value = String(model.get("opacity")); draw(); });
  model.on("change:patch_tokens", showPatch);
  model.on("change:tokens", () => { buildChips(); draw(); });
  model.on("change:message", () => { message.textContent = model.get("message"); });
  for (const name of ["method", "layer", "head", "image_index", "options"]) {
    model.on(`change:${name}`, buildControls);
  }
  refreshAll();
}

export default { render };
