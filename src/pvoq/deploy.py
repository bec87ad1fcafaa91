"""`pvoq init`: lay down an appliance directory (configuration, certificates).

The deployment's CPQ CA lives in its own directory and is created the first
time an appliance is initialised against it; every appliance gets its own
certificate signed by it and a copy of the CA certificate (never its key).
With a web port, it also gets the web console's certificate (`certs/web.pem`,
`certs/web.key`, issued by the same CA for its hostname and address, with the
organizational unit `web` so it can never pass for a CPQ peer) and a `<web>`
section serving the console over HTTPS on that port.

Modes, whatever the umask: directories 0750, files 0640, private keys 0600.
"""

from __future__ import annotations

from pathlib import Path

from pvoq.config.template import ApplianceSpec, render
from pvoq.cpq.ca import CA_CERT_FILE, create_ca, issue_certificate
from pvoq.fsutil import atomic_write, make_dir, tighten_tree

CONFIG_FILE = "pvoq.xml"


WEB_SECTION = """\
  <web>
    <address>{address}</address>
    <port>{port}</port>
    <certificate>certs/web.pem</certificate>
    <private_key>certs/web.key</private_key>
  </web>
</config>"""


def init_appliance(directory: Path, spec: ApplianceSpec, *, ca_dir: Path,
                   force: bool = False, web_port: int | None = None) -> Path:
    """Write `<directory>/pvoq.xml` and `<directory>/certs/`; return the config path.
    *web_port*: serve the web console over HTTPS there (None: no console)."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if config_path.exists() and not force:
        raise FileExistsError(f"{config_path} exists (use --force to overwrite)")
    if not (ca_dir / CA_CERT_FILE).exists():
        create_ca(make_dir(ca_dir))
        tighten_tree(ca_dir)
    certs = make_dir(directory / "certs")
    issue_certificate(ca_dir, certs, hostname=spec.hostname, role=spec.role,
                      addresses=[spec.ip])
    atomic_write(certs / CA_CERT_FILE, (ca_dir / CA_CERT_FILE).read_bytes())
    text = render(spec)
    if web_port is not None:
        issue_certificate(ca_dir, certs, hostname=spec.hostname, role="web",
                          addresses=[spec.ip], stem="web")
        text = text.replace("</config>", WEB_SECTION.format(address=spec.ip, port=web_port))
    atomic_write(config_path, text.encode())
    make_dir(directory / "data")
    tighten_tree(certs)  # the certificates are written 0644 by their module: 0640 here
    return config_path
