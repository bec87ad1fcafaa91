"""`pvoq init`: lay down an appliance directory (configuration, certificates).

The deployment's CPQ CA lives in its own directory and is created the first
time an appliance is initialised against it; every appliance gets its own
certificate signed by it and a copy of the CA certificate (never its key).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pvoq.config.template import ApplianceSpec, render
from pvoq.cpq.ca import CA_CERT_FILE, create_ca, issue_certificate
from pvoq.fsutil import atomic_write

CONFIG_FILE = "pvoq.xml"


def init_appliance(directory: Path, spec: ApplianceSpec, *, ca_dir: Path,
                   force: bool = False) -> Path:
    """Write `<directory>/pvoq.xml` and `<directory>/certs/`; return the config path."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if config_path.exists() and not force:
        raise FileExistsError(f"{config_path} exists (use --force to overwrite)")
    if not (ca_dir / CA_CERT_FILE).exists():
        create_ca(ca_dir)
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    issue_certificate(ca_dir, certs, hostname=spec.hostname, role=spec.role,
                      addresses=[spec.ip])
    shutil.copyfile(ca_dir / CA_CERT_FILE, certs / CA_CERT_FILE)
    atomic_write(config_path, render(spec).encode())
    (directory / "data").mkdir(exist_ok=True)
    return config_path
