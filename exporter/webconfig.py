"""`--web-config-file`: TLS and basic auth for the HTTP endpoints, in the Prometheus exporter-toolkit format.

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default), RequestClientCert, ...
      client_ca_file: ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...                         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')

The same file Prometheus' own exporters take, so operators reuse their tooling. Everything is
checked at start-up (files readable, key matches certificate, hashes are bcrypt) and fails with a
message naming the setting; passwords are only ever compared against their hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.config import ConfigError

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
_CACHE_SIZE = 256


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    _verified: OrderedDict[bytes, bool] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authorized(self, header: str | None) -> bool:
        """Check an `Authorization: Basic` header. bcrypt is slow by design (~50 ms), so results
        are cached under a keyed digest of the credentials, never the password itself."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hmac.new(hashed, f"{user}:{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return self._verified[key]
        ok = bcrypt.checkpw(password.encode(), hashed)
        with self._lock:
            self._verified[key] = ok
            if len(self._verified) > _CACHE_SIZE:
                self._verified.popitem(last=False)
        return ok


def load(path: str) -> WebConfig:
    def fail(what: str) -> ConfigError:
        return ConfigError(f"--web-config-file {path}: {what}")

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise fail(f"cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise fail(f"not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise fail("must be a mapping")
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise fail(f"unknown settings: {', '.join(sorted(map(str, unknown)))}")
    config = WebConfig()
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise fail("basic_auth_users must map user names to bcrypt hashes")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
            raise fail(f"basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 '' | tr -d ':'`)")
        config.users[str(user)] = hashed.encode()
    tls = data.get("tls_server_config")
    if tls is not None:
        config.tls = _tls_context(tls, Path(path).parent, fail)
    return config


def _tls_context(tls: Any, base: Path, fail: Any) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise fail("tls_server_config must be a mapping")
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        raise fail(f"tls_server_config: unknown settings: {', '.join(sorted(map(str, unknown)))}")

    def file(key: str) -> str:
        value = tls.get(key)
        if not value:
            raise fail(f"tls_server_config.{key} is required")
        resolved = base / str(value)
        if not resolved.is_file():
            raise fail(f"tls_server_config.{key}: {resolved} does not exist")
        return str(resolved)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(file("cert_file"), file("key_file"))
    except ssl.SSLError as exc:
        raise fail(f"tls_server_config: certificate and key do not load together ({exc.reason})") from None
    mode = tls.get("client_auth_type", "NoClientCert")
    if mode not in _CLIENT_AUTH:
        raise fail(f"tls_server_config.client_auth_type: {mode!r} is not one of {', '.join(_CLIENT_AUTH)}")
    context.verify_mode = _CLIENT_AUTH[mode]
    if mode != "NoClientCert":
        try:
            context.load_verify_locations(file("client_ca_file"))
        except ssl.SSLError as exc:
            raise fail(f"tls_server_config.client_ca_file: not a CA certificate ({exc.reason})") from None
    for key, attribute in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if key in tls:
            if tls[key] not in _VERSIONS:
                raise fail(f"tls_server_config.{key}: {tls[key]!r} is not one of {', '.join(_VERSIONS)}")
            setattr(context, attribute, _VERSIONS[tls[key]])
    if "min_version" not in tls:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
