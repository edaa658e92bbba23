"""``functl serve`` settings: a frozen dataclass built from an environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import UsageError

READ, WRITE = "read", "write"
ROLES = (READ, WRITE)
MIN_KEY_CHARS = 8
MIN_SECRET_BYTES = 32
DEFAULT_ADDR = "127.0.0.1:8090"
DEFAULT_SCRAPE_S = 10.0


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What the server needs besides the catalog; every field has a FUNCTL_SERVE_* variable."""

    addr: str = DEFAULT_ADDR
    api_keys: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # key -> (name, role)
    jwt_secret: str | None = None  # HS256; the token's "role" claim (read/write) is its role
    no_auth: bool = False  # only for a local dashboard (functl dev)
    scrape_s: float = DEFAULT_SCRAPE_S
    history_s: float = 3600.0
    invoke_timeout_s: float = 10.0
    prometheus_url: str | None = None  # metrics series from here instead of the rings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServeSettings:
        return cls(
            addr=env.get("FUNCTL_SERVE_ADDR", DEFAULT_ADDR),
            api_keys=parse_keys(env.get("FUNCTL_SERVE_API_KEYS", "")),
            jwt_secret=_secret(env.get("FUNCTL_SERVE_JWT_SECRET", "")),
            no_auth=_flag("FUNCTL_SERVE_NO_AUTH", env.get("FUNCTL_SERVE_NO_AUTH", "")),
            scrape_s=_seconds(
                "FUNCTL_SERVE_SCRAPE_S", env.get("FUNCTL_SERVE_SCRAPE_S"), DEFAULT_SCRAPE_S
            ),
        )

    def check(self) -> None:
        """A server that would answer nobody is a mistake: say how to configure it."""
        if not self.no_auth and not self.api_keys and not self.jwt_secret:
            raise UsageError(
                "functl serve needs credentials: set FUNCTL_SERVE_API_KEYS=name=key:write "
                "(or FUNCTL_SERVE_JWT_SECRET), or pass --no-auth for a local dashboard"
            )


def parse_keys(raw: str) -> dict[str, tuple[str, str]]:
    """``admin=KEY:write,viewer=KEY2:read`` -> {key: (name, role)}; the role defaults to read."""
    keys: dict[str, tuple[str, str]] = {}
    for i, item in enumerate((p.strip() for p in raw.split(",")), start=1):
        if not item:
            continue
        name, sep, rest = item.partition("=")
        key, _, role = rest.rpartition(":") if rest.endswith(ROLES) else (rest, "", READ)
        if not sep or not name.strip() or len(key.strip()) < MIN_KEY_CHARS:
            raise UsageError(
                f"FUNCTL_SERVE_API_KEYS entry {i} must be NAME=KEY[:read|:write] with a key "
                f"of at least {MIN_KEY_CHARS} characters"
            )
        keys[key.strip()] = (name.strip(), role or READ)
    return keys


def _secret(raw: str) -> str | None:
    value = raw.strip()
    if value and len(value.encode()) < MIN_SECRET_BYTES:
        raise UsageError(
            f"FUNCTL_SERVE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256); "
            "generate one with: openssl rand -base64 48"
        )
    return value or None


def _flag(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise UsageError(f"{var} must be true or false, got {raw!r}")


def _seconds(var: str, raw: str | None, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{var} must be a number of seconds, got {raw!r}") from None
    if not 0.1 <= value <= 3600:
        raise UsageError(f"{var} must be between 0.1 and 3600 seconds, got {raw!r}")
    return value


def _url(var: str, raw: str) -> str | None:
    value = raw.strip()
    if value and not value.startswith(("http://", "https://")):
        raise UsageError(f"{var} must be an http(s):// URL, got {raw!r}")
    return value or None
