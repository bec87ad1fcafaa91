"""Doctor's disk check, end to end: a deployment whose data directories sit on a file
system that is nearly full. The test mounts a small tmpfs in a mount namespace of its
own (`unshare`: as root, a mount namespace; otherwise a user namespace too), starts a
real gateway and manager there, and runs `pvoq doctor` inside the same namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = r'''
import json, subprocess, sys
from pathlib import Path
from pvoq.testing.localdeploy import Deployment

root = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(root)],
               check=True)
dep = Deployment(root / "deploy")
dep.init()
try:
    dep.start()
    out = subprocess.run([sys.executable, "-m", "pvoq", "doctor", "-c", str(dep.gateway_config),
                          "--json"], capture_output=True, text=True, timeout=120)
    print(json.dumps({"code": out.returncode, "report": json.loads(out.stdout)}))
finally:
    dep.stop_all()
'''


def test_a_nearly_full_file_system_is_named_with_its_fix() -> None:
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to give the deployment a small file system"
    # A short directory: the admin sockets under it must fit AF_UNIX's 108 bytes, which a
    # parallel run's tmp_path (one level deeper) plus this test's long name does not.
    where = Path(tempfile.mkdtemp(prefix="pvoq-disk-"))
    try:
        _check_nearly_full(unshare, where)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _check_nearly_full(unshare: str, where: Path) -> None:
    namespaces = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    result = subprocess.run(
        [unshare, *namespaces, "--propagation", "private", sys.executable, "-c", SCRIPT,
         str(where)], capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    checks = {c["name"]: c for c in answer["report"]["checks"]}
    assert answer["code"] == 1
    spool = checks["disk spool"]
    assert spool["status"] == "FAIL", spool
    assert "MiB free" in spool["observed"] or "GiB free" in spool["observed"]
    assert str(where) in spool["observed"]
    assert "free space" in spool["fix"]
    assert checks["appliance"]["status"] == "OK"      # the rest of the deployment is fine
    assert not any(p for p in where.iterdir())        # the tmpfs was this namespace's only
