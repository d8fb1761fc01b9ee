"""Binary glTF 2.0 (.glb) writing and reading, for the catalog's true-to-size low-poly AR models.

A model is a list of axis-aligned boxes in metres (glTF's unit), Y up, the object standing on y=0 and centred
on x/z, so an AR viewer can place it on a detected floor as-is. Each box has flat normals (24 vertices) and its
own material colour. The writer follows the spec's container layout exactly: a 12-byte header
(magic "glTF", version 2, total length), a JSON chunk padded with spaces and a BIN chunk padded with zeros,
both to 4 bytes. `read_glb` parses that layout back; the tests and the demo generator use it to prove every
model is valid and has the dimensions it claims.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
_FLOAT, _USHORT = 5126, 5123
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: centre (x, y, z) and size (x, y, z) in metres, RGBA colour 0..1."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    color: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)


# the six faces: normal axis/sign and the two in-plane axes, wound counter-clockwise seen from outside
_FACES = [
    ((1, 0, 0), (2, 1)), ((-1, 0, 0), (1, 2)),
    ((0, 1, 0), (0, 2)), ((0, -1, 0), (2, 0)),
    ((0, 0, 1), (1, 0)), ((0, 0, -1), (0, 1)),
]


def _box_mesh(box: Box) -> tuple[list[float], list[float], list[int]]:
    positions: list[float] = []
    normals: list[float] = []
    indices: list[int] = []
    half = [s / 2 for s in box.size]
    for normal, (a, b) in _FACES:
        axis = next(i for i in range(3) if normal[i])
        base = len(positions) // 3
        for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            p = [0.0, 0.0, 0.0]
            p[axis] = box.center[axis] + normal[axis] * half[axis]
            p[a] = box.center[a] + sa * half[a]
            p[b] = box.center[b] + sb * half[b]
            positions.extend(p)
            normals.extend(float(n) for n in normal)
        indices.extend((base, base + 1, base + 2, base, base + 2, base + 3))
    return positions, normals, indices


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * ((-len(data)) % 4)


def build_glb(name: str, boxes: list[Box]) -> bytes:
    """One node, one mesh with a primitive per box (each with its material); returns the .glb bytes."""
    if not boxes:
        raise ValueError("a model needs at least one box")
    bin_parts: list[bytes] = []
    offset = 0
    buffer_views: list[dict] = []
    accessors: list[dict] = []
    primitives: list[dict] = []
    materials: list[dict] = []

    def add_view(data: bytes, target: int) -> int:
        nonlocal offset
        buffer_views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        padded = _pad(data, b"\x00")
        bin_parts.append(padded)
        offset += len(padded)
        return len(buffer_views) - 1

    for box in boxes:
        positions, normals, indices = _box_mesh(box)
        count = len(positions) // 3
        xs, ys, zs = positions[0::3], positions[1::3], positions[2::3]
        pos_view = add_view(struct.pack(f"<{len(positions)}f", *positions), _ARRAY_BUFFER)
        accessors.append({
            "bufferView": pos_view, "componentType": _FLOAT, "count": count, "type": "VEC3",
            "min": [min(xs), min(ys), min(zs)], "max": [max(xs), max(ys), max(zs)],
        })
        pos_acc = len(accessors) - 1
        nrm_view = add_view(struct.pack(f"<{len(normals)}f", *normals), _ARRAY_BUFFER)
        accessors.append({"bufferView": nrm_view, "componentType": _FLOAT, "count": count, "type": "VEC3"})
        nrm_acc = len(accessors) - 1
        idx_view = add_view(struct.pack(f"<{len(indices)}H", *indices), _ELEMENT_ARRAY_BUFFER)
        accessors.append({"bufferView": idx_view, "componentType": _USHORT, "count": len(indices),
                          "type": "SCALAR"})
        materials.append({"pbrMetallicRoughness": {"baseColorFactor": list(box.color), "metallicFactor": 0.0,
                                                   "roughnessFactor": 0.8}})
        primitives.append({"attributes": {"POSITION": pos_acc, "NORMAL": nrm_acc}, "indices": len(accessors) - 1,
                           "material": len(materials) - 1, "mode": 4})

    binary = b"".join(bin_parts)
    document = {
        "asset": {"version": "2.0", "generator": "zipkku demo catalog"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": primitives}],
        "materials": materials,
        "accessors": accessors,
        "bufferViews": buffer_views,
        "buffers": [{"byteLength": len(binary)}],
    }
    json_chunk = _pad(json.dumps(document, separators=(",", ":")).encode(), b" ")
    total = 12 + 8 + len(json_chunk) + 8 + len(binary)
    return b"".join([
        struct.pack("<III", MAGIC, 2, total),
        struct.pack("<II", len(json_chunk), CHUNK_JSON), json_chunk,
        struct.pack("<II", len(binary), CHUNK_BIN), binary,
    ])


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """Parse a .glb into (JSON document, BIN chunk); ValueError when the container is not valid."""
    if len(data) < 20:
        raise ValueError("too short for a GLB")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != MAGIC or version != 2:
        raise ValueError("not a glTF 2.0 binary")
    if length != len(data):
        raise ValueError(f"header length {length} != actual {len(data)}")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != CHUNK_JSON or json_len % 4:
        raise ValueError("first chunk must be a 4-byte aligned JSON chunk")
    document = json.loads(data[20:20 + json_len])
    binary = b""
    pos = 20 + json_len
    if pos < len(data):
        bin_len, bin_type = struct.unpack_from("<II", data, pos)
        if bin_type != CHUNK_BIN or bin_len % 4:
            raise ValueError("second chunk must be a 4-byte aligned BIN chunk")
        binary = data[pos + 8:pos + 8 + bin_len]
    for view in document.get("bufferViews", []):
        if view.get("byteOffset", 0) + view["byteLength"] > len(binary):
            raise ValueError("a bufferView points past the BIN chunk")
    return document, binary


def bounds(document: dict) -> tuple[list[float], list[float]]:
    """Overall (min, max) of every POSITION accessor: the model's extent in metres."""
    lo, hi = [float("inf")] * 3, [float("-inf")] * 3
    for mesh in document["meshes"]:
        for primitive in mesh["primitives"]:
            accessor = document["accessors"][primitive["attributes"]["POSITION"]]
            lo = [min(a, b) for a, b in zip(lo, accessor["min"], strict=True)]
            hi = [max(a, b) for a, b in zip(hi, accessor["max"], strict=True)]
    return lo, hi
