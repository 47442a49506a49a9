"""A real PACS for the tests: Orthanc with its DICOMweb plugin (Debian packages ``orthanc`` and ``orthanc-dicomweb``),
started on a free loopback port with a throw-away storage folder, HTTP basic authentication on, and a Lua filter that
refuses every store into the study ``REFUSED_STUDY`` with 403 (how the tests meet a PACS that refuses a store; Orthanc
1.10's ``ReceivedInstanceFilter`` is not called for STOW-RS, its HTTP filter is).

Absent packages: the tests that need it are skipped with that reason (``.ci/run`` installs them), never faked.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "medact", "pacs-secret"
REFUSED_STUDY = "1.2.826.0.1.3680043.2.1125.403"
FILTER = f"""
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  return not (method == 'POST' and string.find(uri, '{REFUSED_STUDY}', 1, true))
end
"""


@dataclass
class RunningPacs:
    url: str  # the DICOMweb root
    rest: str  # Orthanc's own REST root
    user: str = USER
    password: str = PASSWORD


def missing() -> str | None:
    """Why Orthanc cannot run here, or ``None``."""
    if not Path(ORTHANC).exists():
        return "Orthanc is not installed (Debian package orthanc; .ci/run installs it)"
    if not PLUGIN.exists():
        return "Orthanc's DICOMweb plugin is not installed (Debian package orthanc-dicomweb; .ci/run installs it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(folder: Path) -> Iterator[RunningPacs]:
    """Run Orthanc until the generator is closed; yields where it answers."""
    import requests

    port = free_port()
    (folder / "filter.lua").write_text(FILTER)
    config = {
        "Name": "medact-test-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "LuaScripts": [str(folder / "filter.lua")],
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "w")  # noqa: SIM115 - open while the server runs
    process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    rest = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {process.returncode}: {(folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{rest}/system", auth=(USER, PASSWORD), timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"Orthanc did not answer on {rest}: {(folder / 'orthanc.log').read_text()[-2000:]}")
        yield RunningPacs(url=f"{rest}/dicom-web", rest=rest)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
