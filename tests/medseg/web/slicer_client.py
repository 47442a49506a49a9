"""What 3D Slicer's MONAILabel module sends, on the wire, for auto-segmentation (a test client; not a copy).

The requests follow ``plugins/slicer/MONAILabel/MONAILabelLib/client.py`` of Project-MONAI/MONAILabel
(``MONAILabelClient.info``, ``upload_image``, ``infer`` and ``MONAILabelUtils.http_multipart`` /
``encode_multipart_formdata`` / ``parse_multipart``): raw ``http.client`` requests, the same selectors
(``/info/``, ``/datastore/?image=<quote_plus(id)>``, ``/infer/<model>?image=<id>``), a multipart body with that
client's fixed boundary, form field ``params`` as a JSON string, the file under ``file``, and the answer parsed with
``cgi.FieldStorage`` as that client does (form fields by name, files by file name). The ``monailabel`` wheel itself
cannot be installed here: it pins ``sam2``, ``numpymaxflow`` and a server stack this project does not use.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import warnings
from pathlib import Path
from urllib.parse import quote_plus, urlparse

BOUNDARY = "----------lImIt_of_THE_fIle_eW_$"  # the Slicer client's own


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parsed = urlparse(url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port), parsed.path.rstrip("/")


def _body(fields: dict[str, str], files: dict[str, Path]) -> bytes:
    lines: list[bytes] = []
    for key, value in fields.items():
        lines += [f"--{BOUNDARY}".encode(), f'Content-Disposition: form-data; name="{key}"'.encode(), b"", value.encode()]
    for key, path in files.items():
        kind = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        lines += [f"--{BOUNDARY}".encode(), f'Content-Disposition: form-data; name="{key}"; filename="{path}"'.encode()]
        lines += [f"Content-Type: {kind}".encode(), b"", path.read_bytes()]
    lines += [f"--{BOUNDARY}--".encode(), b""]
    return b"\r\n".join(lines) + b"\r\n"


def request(url: str, method: str, selector: str, fields: dict[str, str] | None = None, files: dict[str, Path] | None = None):
    """``(status, form, files)``: a multipart answer parsed into its form fields and files, else ``(status, bytes, None)``."""
    connection, prefix = _connection(url)
    headers, body = {}, None
    if fields is not None or files is not None:
        body = _body(fields or {}, files or {})
        headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": str(len(body))}
    connection.request(method, prefix + "/" + selector.lstrip("/"), body=body, headers=headers)
    response = connection.getresponse()
    if response.status == 200 and "multipart" in response.getheader("content-type", ""):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import cgi  # as the Slicer client parses it (Python < 3.13)

            storage = cgi.FieldStorage(fp=response.fp, environ={"REQUEST_METHOD": "POST"}, headers=response.msg, keep_blank_values=True)
        form, out = {}, {}
        for item in storage.list or []:
            (out if item.filename else form)[item.filename or item.name] = item.value
        return response.status, form, out
    return response.status, response.read(), None


def info(url: str) -> tuple[int, dict]:
    status, body, _ = request(url, "GET", "/info/")
    return status, json.loads(body)


def upload_image(url: str, image: Path, image_id: str) -> tuple[int, dict]:
    status, body, _ = request(url, "PUT", f"/datastore/?image={quote_plus(image_id)}", {}, {"file": image})
    return status, json.loads(body)


def infer(url: str, model: str, image_id: str, params: dict) -> tuple[int, dict | bytes, dict | None]:
    """``(status, params, {file name: bytes})`` as the Slicer module receives them (or the error body)."""
    status, form, files = request(
        url, "POST", f"/infer/{quote_plus(model)}?image={quote_plus(image_id)}", {"params": json.dumps(params)}, {}
    )
    if files is None:
        return status, form, None
    return status, json.loads(form["params"]), files
