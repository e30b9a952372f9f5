"""Who may do what on the daemon's HTTP server: the API and read tokens, webhook secrets, bearer tokens.

Shared by the JSON API (:mod:`gitopsd.server.api`) and the web page (:mod:`gitopsd.server.ui`).
"""

from __future__ import annotations

import enum
import hmac

from aiohttp import web

from gitopsd.core.errors import ConfigError
from gitopsd.core.secrets import Secret, read_secret_file
from gitopsd.plugin.config import Config


class Access(enum.IntEnum):
    """What a token grants: reading (the read token) or everything (the API token)."""

    READ = 1
    WRITE = 2


class ApiSecrets:
    """The API and read tokens and webhook secrets, read from the files the config names."""

    __slots__ = ("hooks", "read_token", "token")

    def __init__(
        self, token: Secret | None = None, hooks: dict[str, Secret] | None = None, read_token: Secret | None = None
    ) -> None:
        self.token = token
        self.hooks: dict[str, Secret] = hooks if hooks is not None else {}
        self.read_token = read_token

    @classmethod
    def load(cls, config: Config) -> ApiSecrets:
        """Read every configured secret file; ConfigError lists every unreadable one."""
        errors: list[str] = []
        daemon = config.daemon

        def read(path: object, option: str) -> Secret | None:
            if path is None:
                return None
            try:
                return read_secret_file(path, option, strict=daemon.strict_secret_permissions)  # type: ignore[arg-type]
            except ConfigError as exc:
                errors.extend(exc.errors)
                return None

        token = read(daemon.api_token_file, "daemon.api_token_file")
        read_token = read(daemon.read_token_file, "daemon.read_token_file")
        hooks: dict[str, Secret] = {}
        files = {
            "github": ("github_secret_file", daemon.webhooks.github_secret_file),
            "gitlab": ("gitlab_token_file", daemon.webhooks.gitlab_token_file),
            "gitea": ("gitea_secret_file", daemon.webhooks.gitea_secret_file),
        }
        for provider, (option, path) in files.items():
            secret = read(path, f"daemon.webhooks.{option}")
            if secret is not None:
                hooks[provider] = secret
        if errors:
            raise ConfigError(errors)
        return cls(token, hooks, read_token)

    def access(self, given: str) -> Access | None:
        """What ``given`` grants: WRITE for the API token, READ for the read token, else None."""
        value = given.strip().encode()
        if not value:
            return None
        # Both compared, in constant time, whatever matches first.
        write = self.token is not None and hmac.compare_digest(value, self.token.reveal().encode())
        read = self.read_token is not None and hmac.compare_digest(value, self.read_token.reveal().encode())
        return Access.WRITE if write else Access.READ if read else None

    def fingerprint(self, access: Access) -> str:
        """Changes when the token granting ``access`` changes (web sessions end with it)."""
        secret = self.token if access is Access.WRITE else self.read_token
        if secret is None:
            return ""
        return hmac.new(b"gitopsd-session", secret.reveal().encode(), "sha256").hexdigest()


def bearer(request: web.Request) -> str | None:
    """The bearer token of ``request``, or None."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None
