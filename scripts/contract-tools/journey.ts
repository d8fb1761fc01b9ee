// A frontend's journey through the API, typed only by what openapi-typescript generates from GET /openapi
// (api.d.ts, default options) and called through openapi-fetch. Request bodies are written the way the README
// shows them: optional fields left out. tests/test_contract.py type-checks it under `strict` and runs it
// against the local stack: API_BASE_URL, ROOM_PHOTO (a JPEG file). Prints a JSON summary on success.
import { readFileSync } from "node:fs";
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type Interior = components["schemas"]["Interior"];

const baseUrl = process.env.API_BASE_URL;
const photoPath = process.env.ROOM_PHOTO;
if (!baseUrl || !photoPath) throw new Error("set API_BASE_URL and ROOM_PHOTO");

const api = createClient<paths>({ baseUrl });

function ok<T>(result: { data?: T; error?: unknown; response: Response }, what: string): T {
  if (result.data === undefined) {
    throw new Error(`${what}: HTTP ${result.response.status} ${JSON.stringify(result.error)}`);
  }
  return result.data;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still waiting after 120 s`);
    await sleep(250);
  }
}

// sign up and log in
const email = `journey-${Date.now()}@example.com`;
const password = "a typed journey password";
const signup = ok(await api.POST("/auth-signup", { body: { email, password, name: "Typed Client" } }), "signup");
const tokens = ok(await api.POST("/auth-login", { body: { email, password } }), "login");
const headers = { Authorization: `Bearer ${tokens.access_token}` };

// upload through the signed PUT
const photo = readFileSync(photoPath);
const created = ok(await api.POST("/uploads-create", {
  body: { content_type: "image/jpeg", size_bytes: photo.byteLength }, headers,
}), "uploads-create");
const put = await fetch(created.put_url, {
  method: "PUT", headers: created.headers, body: new Uint8Array(photo),
});
if (!put.ok) throw new Error(`signed PUT: HTTP ${put.status}`);
const upload = await until("upload", async () => ok(await api.GET("/uploads-get", {
  params: { query: { id: created.upload.id } }, headers,
}), "uploads-get").upload, (u) => u.status !== "pending");
if (upload.status !== "ready") throw new Error(`upload ${upload.status}: ${upload.reason_message ?? ""}`);

// pick a style and a room type it is offered for
const catalog = ok(await api.GET("/styles-list"), "styles-list");
if (!("styles" in catalog)) throw new Error("styles-list without ?name= answers {styles, room_types}");
const style = catalog.styles.find((s) => s.room_types.length > 0);
const roomType = style?.room_types[0];
if (!style || !roomType) throw new Error("no style with a room type");

// generate (prompt, variants and strength left to their defaults) and poll
const generated = ok(await api.POST("/interiors-generate", {
  body: { upload_id: upload.id, room_type: roomType, style: style.id }, headers,
}), "interiors-generate");
const interior: Interior = await until("interior", async () => ok(await api.GET("/interiors-get", {
  params: { query: { id: generated.interior.id } }, headers,
}), "interiors-get").interior, (i) => i.status === "done" || i.status === "failed");
if (interior.status !== "done") throw new Error(`interior ${interior.status}: ${interior.reason ?? ""}`);

// read products: those matched to the detected parts, then a search for the first part's label
const parts = interior.variants.flatMap((v) => v.detected_parts);
const matched = parts.flatMap((p) => p.products);
const firstPart = parts[0];
if (!firstPart) throw new Error("no detected parts");
const page = ok(await api.GET("/products-search", { params: { query: { label: firstPart.label } } }),
  "products-search");
const cards = page.products.map((p) => ({ name: p.name, price: p.price, currency: p.currency,
  width_cm: p.dimensions.width_cm ?? null }));

// save it (saved defaults to true), read the account, mark notifications read
const saved = ok(await api.POST("/interiors-save", { body: { interior_id: interior.id }, headers }), "save");
const me = ok(await api.GET("/me", { headers }), "me");
const read = ok(await api.POST("/notifications-read", { body: { all: true }, headers }), "notifications-read");
const renamed = ok(await api.PATCH("/me", { body: { name: "Renamed" }, headers }), "me PATCH");

console.log(JSON.stringify({
  user: signup.user.id, upload: upload.id, width: upload.width, interior: interior.id,
  variants: interior.variants.length, parts: parts.length, matched: matched.length,
  box: firstPart.box, search: cards.length, saved: saved.interior.saved,
  recent_saved: me.recent_saved.map((i) => i.id), unread_after: read.unread, name: renamed.user.name,
}));
