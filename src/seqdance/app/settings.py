"""The web app's limits and where it listens (one definition, read by ``seqdance serve`` and the server)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from seqdance.errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class AppSettings:
    """Limits of one server: per request (sequences, residues, upload bytes, scan length), the queue of heavy jobs,
    the result cache and the finished jobs kept for the page."""

    max_sequences: int = 50
    max_residues: int = 5_000  # all sequences of one request together
    max_scan_residues: int = 500  # the wild type of a saturation scan or a list of variants
    max_variants: int = 10_000  # listed variants of one request
    max_upload_bytes: int = 2_000_000  # a request body (FASTA, structure, JSON)
    queue_size: int = 8  # heavy jobs waiting (the one running not counted)
    cache_bytes: int = 512 * 2**20
    kept_jobs: int = 32  # finished jobs whose results the page can still fetch
    token: str | None = None

    def public(self) -> dict:
        """The limits as /api/health reports them (never the token)."""
        return {"max_sequences": self.max_sequences, "max_residues": self.max_residues,
                "max_scan_residues": self.max_scan_residues, "max_variants": self.max_variants,
                "max_upload_bytes": self.max_upload_bytes, "queue_size": self.queue_size,
                "cache_bytes": self.cache_bytes, "token_required": self.token is not None}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """A server reachable from other machines must have a token."""
    if not is_loopback(host) and not token:
        raise InputError(f"--host {host} makes the server reachable from other machines: give it a --token (or the "
                         "SEQDANCE_SERVE_TOKEN environment variable) that every request must carry")
    if token is not None and len(token) < 8:
        raise InputError("--token must be at least 8 characters long")
