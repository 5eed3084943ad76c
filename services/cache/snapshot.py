"""FAISS index snapshot: one file with every namespace's serialized index.

Layout: ``MAGIC | u64 header length | header JSON | body``. The header names
the store generation the snapshot was taken at, the body's SHA-256 and each
namespace's byte range. Written to a temporary file, fsynced and renamed, so a
crash leaves the previous snapshot or the new one, never a mix. Any mismatch
(magic, JSON, checksum, lengths) raises :class:`SnapshotCorrupt`; the cache
then rebuilds from SQLite and moves the bad file aside (``*.corrupt``).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"RATIONER-CACHE-SNAPSHOT-1\n"


class SnapshotCorrupt(Exception):
    pass


@dataclass(frozen=True)
class NamespaceBlob:
    tenant: str
    ctx: str
    index: bytes


def write(path: Path, generation: int, namespaces: list[NamespaceBlob]) -> None:
    body = bytearray()
    parts = []
    for ns in namespaces:
        parts.append({"tenant": ns.tenant, "ctx": ns.ctx, "offset": len(body), "length": len(ns.index)})
        body += ns.index
    header = json.dumps(
        {"generation": generation, "sha256": hashlib.sha256(body).hexdigest(), "namespaces": parts}
    ).encode()
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(MAGIC + struct.pack("<Q", len(header)) + header)
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read(path: Path) -> tuple[int, list[NamespaceBlob]]:
    """(generation, namespaces); raises SnapshotCorrupt on any inconsistency."""
    data = path.read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise SnapshotCorrupt(f"{path}: not a cache snapshot (bad magic)")
    (hlen,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    try:
        header = json.loads(data[start : start + hlen])
        body = data[start + hlen :]
        if hashlib.sha256(body).hexdigest() != header["sha256"]:
            raise SnapshotCorrupt(f"{path}: checksum mismatch (truncated or modified)")
        out = []
        for part in header["namespaces"]:
            off, length = int(part["offset"]), int(part["length"])
            if off < 0 or off + length > len(body):
                raise SnapshotCorrupt(f"{path}: namespace range outside the file")
            out.append(NamespaceBlob(str(part["tenant"]), str(part["ctx"]), bytes(body[off : off + length])))
        return int(header["generation"]), out
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotCorrupt(f"{path}: unreadable header ({exc})") from exc
