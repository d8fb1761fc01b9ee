// The playground: the README's journey from a browser, through the public HTTP API only.
// config.json (written by the dev server) says where the API is; this page is served from another origin, so
// every call is a CORS request, as the real frontend's are.

const $ = (id) => document.getElementById(id);
const config = await (await fetch("config.json")).json();
const API = config.api.replace(/\/$/, "");
const TOKENS_KEY = "zipkku.playground.tokens";

let tokens = JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null");
let currentInterior = null;
let readyUploadId = null;

class ApiError extends Error {
  constructor(status, error) {
    super(`${status} ${error?.code ?? ""}: ${error?.message ?? ""}`);
    this.status = status;
    this.code = error?.code;
  }
}

function showError(err) {
  const box = $("error");
  box.textContent = err ? String(err.message ?? err) : "";
  box.hidden = !err;
  if (err) console.error(err);
}

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

function setTokens(value) {
  tokens = value;
  if (value) sessionStorage.setItem(TOKENS_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(TOKENS_KEY);
}

// One refresh at a time: concurrent 401s wait for the same new pair instead of spending the token twice.
let refreshing = null;
async function refreshTokens() {
  if (!tokens?.refresh_token) return false;
  refreshing ??= (async () => {
    const r = await fetch(`${API}/auth-refresh`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: tokens.refresh_token }),
    });
    if (!r.ok) { setTokens(null); return false; }
    setTokens(await r.json());
    return true;
  })().finally(() => { refreshing = null; });
  return refreshing;
}

async function call(method, name, { body, query, headers = {}, auth = true } = {}) {
  const url = new URL(`${API}/${name}`);
  for (const [key, value] of Object.entries(query ?? {})) url.searchParams.set(key, value);
  for (let attempt = 0; ; attempt++) {
    const h = { ...headers };
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (auth && tokens) h.Authorization = `Bearer ${tokens.access_token}`;
    const r = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 && auth && attempt === 0 && await refreshTokens()) continue;
    const data = r.status === 204 || r.status === 304 ? null : await r.json();
    if (!r.ok) throw new ApiError(r.status, data?.error);
    return data;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- account ------------------------------------------------------------------------------------------------

async function login(email, password) {
  setTokens(await call("POST", "auth-login", { body: { email, password }, auth: false }));
  await showAccount();
}

async function showAccount() {
  const me = tokens ? await call("GET", "me") : null;
  if (me) {
    $("who").textContent = `${me.user.name} <${me.user.email}>`;
    $("usage").textContent = `${me.usage.used} of ${me.usage.limit}`;
    renderNotifications(me);
    await Promise.all([loadStyles(), loadLibrary()]);
  }
  document.body.classList.toggle("signed-in", Boolean(me));
  $("account-form").hidden = Boolean(me);
  $("signed-in").hidden = !me;
}

$("account-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(null);
  try { await login($("email").value, $("password").value); } catch (err) { showError(err); }
});

$("signup-btn").addEventListener("click", async () => {
  showError(null);
  const email = $("email").value, password = $("password").value;
  try {
    await call("POST", "auth-signup", { body: { email, password, name: $("name").value || email.split("@")[0] },
                                         auth: false });
    await login(email, password);
  } catch (err) { showError(err); }
});

$("logout-btn").addEventListener("click", async () => {
  try { await call("POST", "auth-logout", { body: { refresh_token: tokens.refresh_token }, auth: false }); }
  finally { setTokens(null); await showAccount(); }
});

// --- upload: the signed PUT straight to the bucket ------------------------------------------------------------

const TYPES_BY_EXTENSION = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp",
                             heic: "image/heic", heif: "image/heif" };

async function uploadPhoto(file) {
  showError(null);
  readyUploadId = null;
  $("generate-btn").disabled = true;
  const contentType = file.type || TYPES_BY_EXTENSION[file.name.split(".").pop().toLowerCase()] || "";
  $("upload-status").textContent = `Uploading ${file.name} (${Math.round(file.size / 1024)} KiB)…`;
  const created = await call("POST", "uploads-create", { body: { content_type: contentType, size_bytes: file.size } });
  // Exactly the headers the link was signed with; Cloud Storage (and the local front) refuses anything else.
  const put = await fetch(created.put_url, { method: "PUT", headers: created.headers, body: file });
  if (!put.ok) throw new Error(`The signed PUT was refused: ${put.status} ${await put.text()}`);
  const id = created.upload.id;
  for (const started = Date.now(); Date.now() - started < 120_000; await sleep(300)) {
    const { upload } = await call("GET", "uploads-get", { query: { id } });
    $("upload-status").textContent = `Upload ${id}: ${upload.status}`;
    if (upload.status === "rejected") throw new Error(`Photo refused: ${upload.reason_message ?? upload.reason}`);
    if (upload.status === "ready") {
      Object.assign($("upload-preview"), { src: upload.thumbnail_url ?? upload.image_url, hidden: false });
      $("upload-status").textContent = `Ready: ${upload.width}×${upload.height} px (upload ${id}).`;
      readyUploadId = id;
      $("generate-btn").disabled = false;
      return upload;
    }
  }
  throw new Error("The photo was not processed within two minutes.");
}

$("photo").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) uploadPhoto(file).catch(showError);
});
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  const [file] = event.dataTransfer.files;
  if (file) uploadPhoto(file).catch(showError);
});

// --- styles and generation ------------------------------------------------------------------------------------

let catalog = null;

async function loadStyles() {
  catalog ??= await call("GET", "styles-list", { auth: false });
  const roomTypes = $("room-type");
  if (!roomTypes.options.length) {
    for (const room of catalog.room_types) roomTypes.append(new Option(room.name ?? room.id, room.id));
    roomTypes.addEventListener("change", fillStyles);
  }
  fillStyles();
}

function fillStyles() {
  const room = $("room-type").value, select = $("style"), previous = select.value;
  select.replaceChildren();
  for (const style of catalog.styles) {
    if (style.room_types?.length && !style.room_types.includes(room)) continue;
    select.append(new Option(style.name ?? style.id, style.id));
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

$("strength").addEventListener("input", () => { $("strength-value").value = $("strength").value; });

$("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(null);
  $("generate-btn").disabled = true;
  try {
    const body = { upload_id: readyUploadId, room_type: $("room-type").value, style: $("style").value,
                   variants: Number($("variants").value), strength: Number($("strength").value) };
    if ($("prompt").value.trim()) body.prompt = $("prompt").value.trim();
    const { interior } = await call("POST", "interiors-generate", {
      body, headers: { "Idempotency-Key": crypto.randomUUID() } });
    await watch(interior.id);
  } catch (err) { showError(err); } finally { $("generate-btn").disabled = !readyUploadId; }
});

async function watch(id) {
  for (;;) {
    const { interior } = await call("GET", "interiors-get", { query: { id } });
    const progress = interior.progress ?? { stage: interior.status, percent: 0 };
    $("progress").value = interior.status === "done" ? 100 : progress.percent;
    $("stage").textContent = `${interior.status}: ${progress.stage} (${progress.percent}%)`;
    if (interior.status === "failed") throw new Error(`Generation failed: ${interior.reason_message ?? interior.reason}`);
    if (interior.status === "done") { showInterior(interior); await showAccount(); return interior; }
    await sleep(500);
  }
}

// --- the result: variants with boxes, product cards, 3D models ------------------------------------------------

const cm = (value) => `${Math.round(value)} cm`;

function productCard(product) {
  const d = product.dimensions ?? {};
  const price = new Intl.NumberFormat(undefined, { style: "currency", currency: product.currency || "EUR" })
    .format(product.price);
  return element("li", { className: "product-card" },
    element("img", { src: product.image_url ?? "", alt: product.name, loading: "lazy" }),
    element("div", { className: "name" }, product.name),
    element("div", { className: "muted" }, product.brand ?? ""),
    element("div", { className: "price" }, price),
    element("div", { className: "dimensions" }, `W ${cm(d.width_cm)} × D ${cm(d.depth_cm)} × H ${cm(d.height_cm)}`),
    element("a", { href: product.product_url, target: "_blank", rel: "noopener noreferrer" }, "View product"));
}

function arViewer(object) {
  // model-viewer's scale attribute multiplies the model's own size (x: width, y: height, z: depth).
  const s = object.scale ?? { x: 1, y: 1, z: 1 };
  const viewer = element("model-viewer", {
    src: object.model_url, alt: `3D model: ${object.name ?? object.label}`, className: "ar-model" });
  viewer.setAttribute("camera-controls", "");
  viewer.setAttribute("ar", "");
  viewer.setAttribute("scale", `${s.x} ${s.y} ${s.z}`);
  viewer.setAttribute("crossorigin", "anonymous");
  viewer.addEventListener("load", () => viewer.classList.add("loaded"));
  viewer.addEventListener("error", (event) => viewer.classList.add("failed", String(event.detail?.type ?? "")));
  const sizedTo = { product: "the matched product", label: `a typical ${object.label}`, model: "the model" };
  return element("figure", { className: "ar" }, viewer,
    element("figcaption", {}, `${object.name ?? object.label}: ${cm(object.width)} × ${cm(object.depth)} × ` +
      `${cm(object.height)}, sized to ${sizedTo[object.sized_to] ?? "its model"}`));
}

function showInterior(interior) {
  currentInterior = interior;
  $("result-actions").hidden = false;
  $("save-btn").textContent = interior.saved ? "Remove from library" : "Save to library";
  const out = $("variants-out");
  out.replaceChildren();
  for (const variant of interior.variants ?? []) {
    const frame = element("div", { className: "variant-frame" });
    const img = element("img", { src: variant.image_url, alt: `Variant ${variant.index + 1}` });
    frame.append(img);
    const drawBoxes = () => {
      // Boxes are in pixels of the variant image: place them as fractions of its width and height.
      const width = variant.width ?? img.naturalWidth, height = variant.height ?? img.naturalHeight;
      for (const part of variant.detected_parts) {
        const b = part.box;
        const box = element("div", { className: "box", title: `${part.label} ${Math.round(part.confidence * 100)}%` },
          element("span", {}, part.label));
        Object.assign(box.style, { left: `${(100 * b.x) / width}%`, top: `${(100 * b.y) / height}%`,
                                   width: `${(100 * b.width) / width}%`, height: `${(100 * b.height) / height}%` });
        frame.append(box);
      }
    };
    if (variant.width && variant.height) drawBoxes(); else img.addEventListener("load", drawBoxes, { once: true });
    const parts = element("div", { className: "parts" });
    for (const part of variant.detected_parts) {
      parts.append(element("h4", {}, `${part.label} (${Math.round(part.confidence * 100)}%)`),
        element("ul", { className: "cards" }, ...part.products.map(productCard)),
        element("div", { className: "ar-row" }, ...part.ar_objects.map(arViewer)));
    }
    out.append(element("article", { className: "variant" }, element("h3", {}, `Variant ${variant.index + 1}`),
      frame, parts));
  }
}

$("save-btn").addEventListener("click", async () => {
  try {
    const { interior } = await call("POST", "interiors-save",
      { body: { interior_id: currentInterior.id, saved: !currentInterior.saved } });
    currentInterior.saved = interior.saved;
    $("save-btn").textContent = interior.saved ? "Remove from library" : "Save to library";
    await loadLibrary();
  } catch (err) { showError(err); }
});

// --- library and notifications ------------------------------------------------------------------------------

async function loadLibrary() {
  const query = $("saved-only").checked ? { saved: "true" } : {};
  const { interiors } = await call("GET", "interiors-list", { query });
  $("library-list").replaceChildren(...interiors.map((item) => {
    const open = element("button", { type: "button" }, "Open");
    open.addEventListener("click", async () => {
      try { showInterior((await call("GET", "interiors-get", { query: { id: item.id } })).interior); }
      catch (err) { showError(err); }
    });
    const toggle = element("button", { type: "button", className: "save-toggle" }, item.saved ? "Unsave" : "Save");
    toggle.addEventListener("click", async () => {
      try {
        await call("POST", "interiors-save", { body: { interior_id: item.id, saved: !item.saved } });
        await loadLibrary();
      } catch (err) { showError(err); }
    });
    const remove = element("button", { type: "button", className: "delete" }, "Delete");
    remove.addEventListener("click", async () => {
      try { await call("DELETE", "interiors-delete", { query: { id: item.id } }); await loadLibrary(); }
      catch (err) { showError(err); }
    });
    const li = element("li", { className: "library-item" },
      element("img", { src: item.thumbnail_url ?? "", alt: `${item.style} ${item.room_type}` }),
      element("div", {}, `${item.style} · ${item.room_type} · ${item.status}${item.saved ? " · saved" : ""}`),
      element("div", { className: "muted" }, new Date(item.created_at).toLocaleString()),
      open, toggle, remove);
    li.dataset.id = item.id;
    return li;
  }));
}

$("library-refresh").addEventListener("click", () => loadLibrary().catch(showError));
$("saved-only").addEventListener("change", () => loadLibrary().catch(showError));

function renderNotifications(me) {
  $("unread").textContent = String(me.unread_notifications);
  $("notification-list").replaceChildren(...me.notifications.map((n) =>
    element("li", { className: n.read ? "read" : "unread" },
      `${new Date(n.created_at).toLocaleString()}: ${n.message}`)));
}

$("read-all-btn").addEventListener("click", async () => {
  try { await call("POST", "notifications-read", { body: { all: true } }); await showAccount(); }
  catch (err) { showError(err); }
});

// --- start ----------------------------------------------------------------------------------------------------

$("api-url").textContent = API;
$("docs-link").href = `${API}/docs`;
showAccount().catch((err) => { setTokens(null); showError(err); showAccount(); });
document.body.dataset.ready = "true";
