"""`<web>`: the settings of the appliance's web console (and, on the manager, the REST API) over HTTPS.

    <web>
      <address>127.0.0.1</address>          default 127.0.0.1
      <port>8443</port>                     required
      <certificate>certs/web.pem</certificate>   (relative to the file)
      <private_key>certs/web.key</private_key>
      <plain_http>false</plain_http>        true: no TLS at all (explicitly only)
      <session_idle_seconds>1800</session_idle_seconds>
      <session_max_seconds>43200</session_max_seconds>
      <lockout_failures>5</lockout_failures>
      <lockout_seconds>900</lockout_seconds>
      <max_body_bytes>1048576</max_body_bytes>
    </web>

Without `<web>` the appliance serves no console. HTTPS needs both
`<certificate>` and `<private_key>` (`pvoq init` writes them, issued by the
deployment CA); `plain_http` true is the only way to serve without TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = False            # True when the file has <web>
    address: str = "127.0.0.1"
    port: int = 0
    certificate: Path | None = None
    private_key: Path | None = None
    plain_http: bool = False
    session_idle_seconds: float = 1800.0
    session_max_seconds: float = 43200.0
    lockout_failures: int = 5
    lockout_seconds: float = 900.0
    max_body_bytes: int = 1024 * 1024

    @property
    def https(self) -> bool:
        return not self.plain_http
