"""`make demo`: the generation journey against a FRESH local stack, written up as an HTML report.

Starts scripts/run_local.py (every local component, the demo catalog, the upload trigger, the local job runner)
in a new folder under .local/demo/, drives the journey over HTTP (scripts/journey.py) with a drawn living room
(scripts/demo_catalog.draw_room: a wall with a window and a picture, a floor, a table, a sofa and a floor lamp),
downloads what the report shows (signed URLs expire, and the stack stops afterwards), writes
.local/demo/report.html with the original photo, each variant with its detected boxes drawn, product cards and
AR model links, and .local/demo/redesign.jpg (the original beside the first variant and its boxes: the
README's picture), prints the report's path, and stops the stack by its PID.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from scripts.demo_catalog import draw_room  # noqa: E402
from scripts.journey import Journey  # noqa: E402
from scripts.localstack import ROOT, run_local_server  # noqa: E402

DEMO_ROOM = 3  # draw_room's living room with a table, a sofa and a floor lamp


def side_by_side(photo: bytes, variant: bytes, parts: list[dict], path: Path) -> None:
    """The original and a variant with its detected parts boxed, as one small JPEG."""
    import io

    from PIL import Image, ImageDraw

    original = Image.open(io.BytesIO(photo)).convert("RGB")
    generated = Image.open(io.BytesIO(variant)).convert("RGB")
    sx, sy = original.width / generated.width, original.height / generated.height
    redesign = generated.resize(original.size)
    draw = ImageDraw.Draw(redesign)
    for part in parts:
        b = part["box"]
        x0, y0 = b["x"] * sx, b["y"] * sy
        draw.rectangle([x0, y0, x0 + b["width"] * sx, y0 + b["height"] * sy], outline=(255, 59, 48), width=3)
        draw.text((x0 + 4, y0 + 2), part["label"], fill=(255, 59, 48))
    sheet = Image.new("RGB", (original.width * 2 + 8, original.height), (255, 255, 255))
    sheet.paste(original, (0, 0))
    sheet.paste(redesign, (original.width + 8, 0))
    sheet.thumbnail((1000, 1000), Image.Resampling.LANCZOS)
    sheet.save(path, "JPEG", quality=80, optimize=True)


def _data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


def _fetch(url: str | None) -> bytes | None:
    if not url:
        return None
    response = requests.get(url, timeout=30)
    return response.content if response.status_code == 200 else None


def write_report(out_dir: Path, photo: bytes, interior: dict, journey: Journey) -> Path:
    import io

    from PIL import Image

    models_dir = out_dir / "models"
    models_dir.mkdir(exist_ok=True)
    e = html.escape
    sections = []
    for variant in interior["variants"]:
        image = _fetch(variant["image_url"]) or b""
        if variant["index"] == 0 and image:
            side_by_side(photo, image, variant["detected_parts"], out_dir / "redesign.jpg")
        width, height = Image.open(io.BytesIO(image)).size if image else (1, 1)
        boxes, cards = [], []
        for part in variant["detected_parts"]:
            b = part["box"]
            style = (f"left:{100 * b['x'] / width:.2f}%;top:{100 * b['y'] / height:.2f}%;"
                     f"width:{100 * b['width'] / width:.2f}%;height:{100 * b['height'] / height:.2f}%")
            boxes.append(f'<div class="box" style="{style}"><span>{e(part["label"])} '
                         f'{part["confidence"]:.2f}</span></div>')
            products = []
            for p in part["products"]:
                picture = _fetch(p.get("image_url"))
                img = f'<img src="{_data_uri(picture, "image/jpeg")}">' if picture else ""
                dims = p.get("dimensions") or {}
                size = " x ".join(f"{dims[k]:.0f}" for k in ("width_cm", "depth_cm", "height_cm") if k in dims)
                products.append(f'<div class="card">{img}<b>{e(p["name"] or "")}</b><br>{p["price"]} '
                                f'{e(p.get("currency") or "")}<br><small>{size} cm · score {p["score"]}</small><br>'
                                f'<a href="{e(p["product_url"] or "")}">product page</a></div>')
            ar_links = []
            for ar in part["ar_objects"]:
                model = _fetch(ar["model_url"])
                if model:
                    path = models_dir / f"{ar['id']}.glb"
                    path.write_bytes(model)
                    ar_links.append(f'<a href="models/{e(path.name)}">{e(ar["name"])} (.glb, {ar["width"]} x '
                                    f'{ar["depth"]} x {ar["height"]} cm)</a>')
            cards.append(f'<h4>{e(part["id"])}: {e(part["label"])} ({part["confidence"]:.2f})</h4>'
                         f'<div class="cards">{"".join(products)}</div><p>AR: {" · ".join(ar_links) or "none"}</p>')
        sections.append(f'<h3>Variant {variant["index"]}</h3><div class="frame">'
                        f'<img src="{_data_uri(image, "image/jpeg")}">{"".join(boxes)}</div>{"".join(cards)}')
    timings = json.dumps({"client": journey.timings, "stages_seen_at_s": journey.stages,
                          "job_stage_seconds": interior.get("timings")}, indent=2)
    page = f"""<!doctype html><meta charset="utf-8"><title>Zipkku demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
.frame{{position:relative;display:inline-block}}.frame img{{max-width:100%;display:block}}
.box{{position:absolute;border:3px solid #ff3b30;box-sizing:border-box}}
.box span{{background:#ff3b30;color:#fff;font-size:12px;padding:1px 4px;position:absolute;top:-1.4em;left:-3px}}
.cards{{display:flex;flex-wrap:wrap;gap:8px}}.card{{border:1px solid #ddd;padding:6px;width:170px;font-size:13px}}
.card img{{width:100%}}pre{{background:#f5f5f5;padding:1em}}</style>
<h1>Zipkku: {e(interior["style"])} {e(interior["room_type"])}</h1>
<p>Prompt: {e(interior["prompt"])} · status {e(interior["status"])} · local providers (stand-ins, see README)</p>
<h2>Original photo</h2><div class="frame"><img src="{_data_uri(photo, "image/jpeg")}"></div>
<h2>Variants</h2>{"".join(sections)}<h2>Timings</h2><pre>{e(timings)}</pre>"""
    report = out_dir / "report.html"
    report.write_text(page)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / ".local" / "demo"))
    parser.add_argument("--variants", type=int, default=2)
    args = parser.parse_args()
    out_dir = Path(args.out).resolve()
    with run_local_server(out_dir / "stack") as base_url:
        journey = Journey(base_url)
        journey.account()
        photo, _ = draw_room(DEMO_ROOM)
        upload = journey.upload(photo)
        style, room_type = journey.pick_style()
        interior = journey.generate(upload["id"], style, room_type, variants=args.variants)
        journey.library(interior["id"])
        report = write_report(out_dir, photo, interior, journey)
    print(report)


if __name__ == "__main__":
    main()
