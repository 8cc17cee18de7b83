"""What a pull or push may do: credentials, plain-http permission and transfer tuning."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024


@dataclass(frozen=True)
class TransferSettings:
    """Sizes, limits and timings of transfers.

    Defaults are chosen for 100 MB to 10 GB model files: a blob is split into up to
    `part_count` ranged parts of 100 MB to 512 MiB (a 256 MiB file is 3 parts, a 4 GB
    file 16 of 256 MiB, a 10 GB file 19 of 512 MiB), of which at most `max_connections`
    download at once (one at first, more while the network rather than the hash is the
    limit). Tests shrink the sizes to exercise parts and resume with small blobs.
    """

    part_count: int = 16
    min_part_size: int = 100_000_000
    """Ollama's minimum part. Every part is one more request, and a registry can charge
    much for one: Debian's docker-registry spends about 5 ms of CPU per ranged GET, so 16
    parts of 16 MiB cost a 256 MiB pull a fifth of its speed on a 2-core machine."""
    max_part_size: int = 512 * MiB
    max_connections: int = 8
    initial_connections: int = 1
    """Parts downloading at first; more start while the hasher waits for data, up to
    `max_connections` (see `ramp.ConnectionRamp`)."""
    upload_chunk_size: int = 64 * MiB
    """Blobs up to this size are uploaded with one PUT, larger ones in PATCH chunks."""
    retries: int = 5
    """Attempts after the first, per request (or per part when no bytes arrive)."""
    connect_retries: int = 2
    """Of those, at most this many when the host refuses the connection (or its name does
    not resolve): a registry that is restarting gets a second, but an unreachable one is
    reported in about a second rather than after the whole backoff."""
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    """A download that stalls this long is retried from where it got to."""
    max_redirects: int = 10
    progress_interval: float = 0.1
    state_save_interval: float = 1.0
    """How often a part's resume record is rewritten while it downloads."""

    def part_size(self, total: int) -> int:
        """Size of each ranged part of a `total`-byte blob (the last part may be shorter)."""
        wanted = -(-total // max(1, self.part_count))
        return max(1, min(max(wanted, self.min_part_size), self.max_part_size))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): doubling, capped."""
        return float(min(self.backoff_base * (2**attempt), self.backoff_max))


@dataclass(frozen=True)
class RegistryOptions:
    """Per-request choices; credentials are kept out of `repr` so they never reach logs."""

    insecure: bool = False
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    noprune: bool = False
    """Keep the blobs a re-pulled model no longer uses (`OLLAMA_NOPRUNE`)."""
    key_path: Path | None = None
    """Ollama's identity key; `~/.ollama/id_ed25519` when None."""
    settings: TransferSettings = field(default_factory=TransferSettings)

    @property
    def has_basic_credentials(self) -> bool:
        return bool(self.username and self.password)
