"""A content-keyed cache of results with a bound on the bytes it holds (least recently used out first)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any


def content_key(**parts: Any) -> str:
    """SHA-256 of what a result is computed from (model fingerprint, sequence, options)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class ResultCache:
    """At most ``limit_bytes`` of results (each stored with its size); thread-safe."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = int(limit_bytes)
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: Any, nbytes: int) -> None:
        """Keep ``value`` unless it alone exceeds the bound; older entries leave until the total fits."""
        if nbytes > self.limit_bytes:
            return
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            self._items[key] = (value, nbytes)
            self.bytes += nbytes
            while self.bytes > self.limit_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self.bytes -= size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._items), "bytes": self.bytes, "limit_bytes": self.limit_bytes,
                    "hits": self.hits, "misses": self.misses}
