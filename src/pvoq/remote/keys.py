"""Key files of the SSH link, all under `<data_dir>/ssh/`.

Owns: the appliance's own key pair (the gateway's host key
`ssh_host_ed25519_key`, the manager's client key `id_ed25519`, created on
first use, private part mode 0600), the gateway's `authorized_keys` (OpenSSH
format, one key a line), its one-time enrolment tokens (`enrol_tokens.json`,
stored as SHA-256 digests with an expiry), and the manager's pins
(`known_gateways.json`: name, SSH address, port and pinned host key).

Every write goes through `fsutil.atomic_write`. This module never opens a
network connection.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvoq.errors import OperatorError
from pvoq.fsutil import atomic_write

if TYPE_CHECKING:  # asyncssh is imported where it is used: a gateway without the SSH
    import asyncssh  # service never loads it (about 2 MB of its idle memory)

HOST_KEY_FILE = "ssh_host_ed25519_key"
CLIENT_KEY_FILE = "id_ed25519"
AUTHORIZED_KEYS_FILE = "authorized_keys"
TOKENS_FILE = "enrol_tokens.json"
PINS_FILE = "known_gateways.json"
DEFAULT_TOKEN_TTL_S = 3600.0


class SshFault(OperatorError):
    """The SSH link to a gateway failed; the text is the cause, for the operator."""


def ssh_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / "ssh"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def fingerprint(key: asyncssh.SSHKey) -> str:
    """`SHA256:...`, as `ssh-keygen -l` prints it."""
    return str(key.get_fingerprint("sha256"))


def public_line(key: asyncssh.SSHKey, comment: str = "") -> str:
    text = key.export_public_key("openssh").decode().strip()
    parts = text.split()[:2]
    return " ".join([*parts, comment] if comment else parts)


def load_or_create_key(path: Path, *, comment: str = "") -> asyncssh.SSHKey:
    """The key pair at *path*; a new Ed25519 one (and `path.pub`) if there is none."""
    import asyncssh
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment or None)
    atomic_write(path, key.export_private_key("openssh"), mode=0o600)
    atomic_write(path.with_name(path.name + ".pub"),
                 (public_line(key, comment) + "\n").encode(), mode=0o644)
    return key


def parse_public_key(text: str) -> asyncssh.SSHKey:
    """One OpenSSH public key line; `ValueError` if it is not one."""
    import asyncssh
    try:
        return asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an OpenSSH public key ({exc})") from None


class AuthorizedKeys:
    """The gateway's `authorized_keys`: who may run commands over SSH."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[tuple[asyncssh.SSHKey, str]]:
        import asyncssh
        if not self.path.exists():
            return []
        result = []
        for line in self.path.read_text().splitlines():
            parts = line.split(None, 2)
            if len(parts) < 2 or line.lstrip().startswith("#"):
                continue
            try:
                key = asyncssh.import_public_key(" ".join(parts[:2]))
            except (asyncssh.KeyImportError, ValueError):
                continue
            result.append((key, parts[2] if len(parts) > 2 else ""))
        return result

    def find(self, key: asyncssh.SSHKey) -> str | None:
        """The comment of *key*'s entry, or None if the key is not authorized."""
        wanted = public_line(key)
        for known, comment in self.entries():
            if public_line(known) == wanted:
                return comment or "-"
        return None

    def add(self, key: asyncssh.SSHKey, comment: str) -> bool:
        """Authorize *key*; False if it already was."""
        if self.find(key) is not None:
            return False
        lines = [public_line(k, c) for k, c in self.entries()]
        lines.append(public_line(key, comment.replace("\n", " ").strip()))
        atomic_write(self.path, ("\n".join(lines) + "\n").encode(), mode=0o600)
        return True


class EnrolTokens:
    """One-time tokens with which a gateway admin lets a manager install its key."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self.clock = clock

    def _load(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text() or "{}")
        now = self.clock()
        return {digest: expiry for digest, expiry in data.items() if expiry > now}

    def _save(self, tokens: dict[str, float]) -> None:
        atomic_write(self.path, json.dumps(tokens).encode(), mode=0o600)

    def issue(self, ttl_s: float = DEFAULT_TOKEN_TTL_S) -> str:
        token = secrets.token_urlsafe(18)
        tokens = self._load()
        tokens[_digest(token)] = self.clock() + ttl_s
        self._save(tokens)
        return token

    def consume(self, token: str) -> bool:
        """True once for a valid, unexpired token; it is spent either way it matched."""
        tokens = self._load()
        found = tokens.pop(_digest(token), None) is not None
        self._save(tokens)
        return found


def _digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


@dataclass(frozen=True)
class Pin:
    """The manager's record of one gateway's SSH service and its pinned host key."""

    name: str
    host: str
    port: int
    host_key: str          # OpenSSH public key line
    fingerprint: str
    added_at: float

    def key(self) -> asyncssh.SSHKey:
        import asyncssh
        return asyncssh.import_public_key(self.host_key)


class PinnedGateways:
    """`known_gateways.json`: gateways the manager reaches over SSH, by hostname."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> dict[str, Pin]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text() or "{}")
        return {name.lower(): Pin(**value) for name, value in data.items()}

    def get(self, name: str) -> Pin | None:
        return self.all().get(name.lower())

    def put(self, pin: Pin) -> None:
        pins = self.all()
        pins[pin.name.lower()] = pin
        self._save(pins)

    def remove(self, name: str) -> bool:
        pins = self.all()
        found = pins.pop(name.lower(), None) is not None
        self._save(pins)
        return found

    def _save(self, pins: dict[str, Pin]) -> None:
        atomic_write(self.path, json.dumps({n: asdict(p) for n, p in pins.items()},
                                           indent=2).encode(), mode=0o600)
