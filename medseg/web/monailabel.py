"""The part of MONAI Label's REST protocol that 3D Slicer's MONAILabel module needs for auto-segmentation.

``python -m medseg serve --bundle B --monai-label`` adds, beside the scan page:

- ``GET /info/``: ``name``, ``description``, ``version``, ``labels`` and ``models{name: {type: "segmentation",
  labels: {name: value}, dimension: 3, description}}`` (the bundle's metadata; the model's name is the bundle
  folder's), as ``monailabel/interfaces/app.py`` answers it;
- ``PUT /datastore/?image=ID``: multipart field ``file`` (the volume Slicer saved), stored under the upload policy of
  the scan page (:func:`medseg.web.uploads.store_upload`: size, declared voxels, attached data only, zips checked)
  in a private per-image folder that expires as results do; answers ``{"image": ID}``;
- ``POST /infer/{model}?image=ID``: form field ``params`` (JSON; ``result_extension`` ``.nrrd``, ``.nii.gz``,
  ``.nii`` or ``.seg.nrrd``, ``result_dtype`` ``uint8`` or ``uint16``), segmented by the scan page's
  :class:`medseg.inference.segmenter.Segmenter` (one inference path: the mask equals ``medseg infer``'s) and answered as MONAI
  Label's ``send_response`` does (``monailabel/endpoints/infer.py``): multipart with ``params`` (JSON:
  ``label_names``, ``image``, ``latencies``) and ``image`` (the label map on the uploaded volume's grid);
  ``?output=image`` or ``?output=json`` send one of them alone.

Training, active learning, scoring, sessions and label saving are not offered: those routes answer 501 with a JSON
reason. Unknown models and image ids answer 404; every error is ``{"error", "detail", "status"}`` (``detail``: the
key MONAI Label's FastAPI server uses).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from medseg.io.volumes import is_dicom_input, write_volume
from medseg.web.uploads import ImageStore

IMAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
RESULT_EXTENSIONS = (".nrrd", ".nii.gz", ".nii", ".seg.nrrd")
RESULT_DTYPES = {"uint8": 255, "uint16": 65535}
NOT_OFFERED = (
    "/train/",
    "/activelearning/<path:rest>",
    "/scoring/<path:rest>",
    "/session/",
    "/datastore/label",
    "/batch/infer/<path:rest>",
)


def _error(status: int, message: str) -> Any:
    from shared.web import json_error

    return json_error(status, message, detail=message)


def model_name(bundle: str | Path) -> str:
    """The model's name in ``/info/``: the bundle folder's name, in the characters MONAI Label ids use."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(bundle).resolve().name) or "medact"


def info(segmenter: Any, bundle: str | Path, meta: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
    """The ``/info/`` answer for one bundle (with a datastore: its strategies and counts)."""
    from medseg.web.annotation import STRATEGIES

    labels = {str(name): int(value) for value, name in sorted(segmenter.names.items()) if value}
    description = str(meta.get("description", ""))
    return {
        "name": str(meta.get("name", "medact")),
        "description": description,
        "version": str(meta.get("version", "0")),
        "labels": labels,
        "models": {model_name(bundle): {"type": "segmentation", "labels": labels, "dimension": 3, "description": description}},
        "trainers": {},
        "strategies": {k: {"description": v} for k, v in STRATEGIES.items()} if datastore is not None else {},
        "scoring": {},
        "train_stats": {},
        "datastore": datastore.status() if datastore is not None else {"total": 0, "completed": 0},
    }


def _multipart(params: dict[str, Any], name: str, data: bytes) -> tuple[bytes, str]:
    """``params`` (JSON) and one file as ``multipart/form-data``, the shape MONAI Label's ``MultipartEncoder`` sends."""
    boundary = secrets.token_hex(16)
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\nContent-Type: application/json\r\n\r\n'
    part = f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    body = head.encode() + json.dumps(params).encode() + part.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _result_options(raw: str | None) -> tuple[str, str]:
    """``(result_extension, result_dtype)`` from the ``params`` form field; raises ``ValueError`` with the reason."""
    try:
        params = json.loads(raw or "{}")
    except ValueError:
        raise ValueError("The form field 'params' is not JSON.") from None
    if not isinstance(params, dict):
        raise ValueError("The form field 'params' must be a JSON object.")
    extension = str(params.get("result_extension") or ".nii.gz")
    dtype = str(params.get("result_dtype") or "uint8")
    if extension not in RESULT_EXTENSIONS:
        raise ValueError(f"result_extension {extension!r} is not offered; use one of {', '.join(RESULT_EXTENSIONS)}.")
    if dtype not in RESULT_DTYPES:
        raise ValueError(f"result_dtype {dtype!r} is not offered; use one of {', '.join(RESULT_DTYPES)}.")
    return extension, dtype


def write_result(segmenter: Any, scan: Path, image_id: str, folder: Path, extension: str, dtype: str) -> tuple[Path, float]:
    """Segment ``scan`` and write its label map as ``extension`` in ``dtype`` under a name of this call's own (two
    inferences of one image never share a file); returns the file and the seconds taken."""
    import numpy as np

    from medseg.io.export import write_seg_nrrd

    if max(segmenter.names) > RESULT_DTYPES[dtype]:
        raise ValueError(f"{len(segmenter.names)} labels do not fit result_dtype {dtype}.")
    start = time.perf_counter()
    mask, geometry = segmenter.segment(scan)
    seconds = time.perf_counter() - start
    path = folder / f"{image_id}_seg-{secrets.token_hex(8)}{extension}"
    if extension == ".dcm":  # output=dicom_seg: a DICOM SEG of the source series the scan is
        from medseg.io.dicom_seg import write_dicom_seg

        names = {v: n for v, n in segmenter.names.items() if v != 0}
        extra = (segmenter.colours, segmenter.algorithm, segmenter.segment_codes)
        return write_dicom_seg(np.asarray(mask), geometry, scan, path, names, *extra), seconds
    if extension == ".seg.nrrd":
        return write_seg_nrrd(mask.astype(dtype), geometry, path, segmenter.names, segmenter.colours), seconds
    return write_volume(np.asarray(mask).astype(dtype), geometry, path), seconds


def add_monai_label_routes(
    app: Any,
    served: Any,
    bundle: str | Path,
    results: Any,
    limits: Any,
    gate: Any,
    transfers: Any,
    datastore_dir: Any = None,
    device_overrides: dict[str, Any] | None = None,
    dicomweb: Any = None,
) -> None:
    """The routes above, on the scan page's app, with its results folder, upload limits and gates; with ``datastore_dir``
    also the annotation loop's (:mod:`medseg.web.annotation`) on a :class:`medseg.web.datastore.FolderDatastore` there;
    with ``dicomweb`` (a :class:`medseg.web.dicomweb_datastore.PacsDatastoreSpec`) on that PACS, ``datastore_dir`` caching what it reads
    (:class:`medseg.web.dicomweb_datastore.DicomwebDatastore`)."""
    from flask import jsonify, request

    from medact_bundles import config_file
    from medseg.web import annotation

    meta = json.loads(config_file(Path(bundle), "metadata.json").read_text(encoding="utf-8"))
    name, sessions = model_name(bundle), annotation.Sessions(results)
    datastore = _datastore(datastore_dir, dicomweb, meta)

    @app.get("/info/")
    def monai_label_info() -> Any:
        if served.segmenter is None:
            return _error(503, "No model loaded.")
        answer = info(served.segmenter, bundle, meta, datastore)
        if finetuner is not None:
            answer["trainers"] = {name: {"description": "fine-tune the served model on the datastore's final labels"}}
            answer["train_stats"] = {name: finetuner.status()}
        return jsonify(answer)

    finetuner = None
    if datastore is not None:
        annotation.add_datastore_routes(app, datastore, results, limits, transfers)
        annotation.add_active_learning_routes(app, datastore, served)
        finetuner = _finetuner(bundle, datastore, served, device_overrides or {})
        annotation.add_training_routes(app, finetuner, name)
        images = None
    else:
        images = ImageStore(results)
        _add_expiring_upload_route(app, images, results, limits, transfers)
    annotation.add_session_routes(app, sessions, results, limits, transfers)
    resolve = _image_resolver(images, datastore, sessions, results)
    _add_infer_route(app, served, name, resolve, results, gate, transfers)
    offered = "/info/, /datastore/, /infer/, /session/" + (
        ", /activelearning/" if datastore is not None else " (labels and next samples: --datastore DIR)"
    )

    def not_offered(**_: Any) -> Any:
        return _error(501, f"{request.path}: not offered by medact's MONAI Label endpoints ({offered}).")

    rules = (
        NOT_OFFERED if datastore is None else tuple(r for r in NOT_OFFERED if not r.startswith(("/datastore", "/activelearning", "/train")))
    )
    for n, rule in enumerate(r for r in rules if not r.startswith("/session")):
        app.add_url_rule(rule, f"monai_label_not_offered_{n}", not_offered, methods=["GET", "POST", "PUT", "DELETE"])


def _datastore(folder: Any, dicomweb: Any, meta: dict[str, Any]) -> Any:
    """The annotation datastore: on the PACS ``dicomweb`` (``folder``: its cache), else in ``folder``, else none;
    accepting the bundle's label values."""
    names = {int(k): str(v) for k, v in meta["network_data_format"]["outputs"]["pred"]["channel_def"].items()}
    if dicomweb is not None:
        from medseg.web.dicomweb_datastore import DicomwebDatastore

        algorithm = {"name": meta.get("name", "medact"), "version": meta.get("version", "0")}
        return DicomwebDatastore(dicomweb.pacs, folder, names, algorithm, dicomweb.filters)
    if folder is None:
        return None
    from medseg.web.datastore import FolderDatastore

    return FolderDatastore(folder, names)


def _finetuner(bundle: str | Path, datastore: Any, served: Any, device_overrides: dict[str, Any]) -> Any:
    """The server's :class:`medseg.web.training.Finetuner`: better weights are served from the next request on."""
    from medseg.inference.segmenter import load_segmenter
    from medseg.web.training import Finetuner

    flags = [arg for key in ("device", "precision") if device_overrides.get(key) for arg in (f"--{key}", str(device_overrides[key]))]
    return Finetuner(
        Path(bundle), datastore, lambda _weights: served.replace(load_segmenter(bundle, None, device_overrides)), device_flags=flags
    )


def _add_expiring_upload_route(app: Any, images: ImageStore, results: Any, limits: Any, transfers: Any) -> None:
    """``PUT /datastore/?image=ID`` without a datastore: the upload kept in an expiring private folder."""
    from flask import jsonify, request

    from medseg.web.uploads import in_new_folder, store_upload

    @app.put("/datastore/")
    def monai_label_put_image() -> Any:
        with transfers.slot():
            upload = request.files.get("file")
            if upload is None:
                return _error(400, "Send the volume as the multipart form field 'file'.")
            image_id = request.args.get("image") or re.sub(r"\.(nii\.gz|nii|nrrd|mha|zip)$", "", Path(upload.filename or "").name)
            if not IMAGE_ID.match(image_id or ""):
                return _error(400, f"Image id {image_id!r}: use letters, digits and _ . - (at most 80 characters).")

            def work(token: str, folder: Path) -> Any:
                images.put(image_id, token, store_upload(upload, folder, limits))
                return jsonify({"image": image_id})

            return in_new_folder(results, work, noun="volume", detail=True)


def _image_resolver(images: ImageStore | None, datastore: Any, sessions: Any, results: Any) -> Any:
    """``resolve(image_id, session_id) -> (token, scan) | None``: the image an inference reads, with its folder held
    (give it back with ``results.done(token)``): a session's upload, a private copy of a datastore image (its folder
    retired: removed when the inference is done), or an expiring upload."""
    from medseg.web.annotation import copy_for_inference
    from medseg.web.datastore import DatastoreError

    def resolve(image_id: str, session_id: str) -> tuple[str, Path] | None:
        if session_id:
            return sessions.images.hold(session_id)
        if not IMAGE_ID.match(image_id):
            return None
        if datastore is None:
            return images.hold(image_id)
        token, folder = results.new()
        try:
            scan = copy_for_inference(datastore, image_id, folder)
        except DatastoreError:
            results.done(token)
            results.retire(token)
            return None
        results.retire(token)
        return token, scan

    return resolve


def _add_infer_route(app: Any, served: Any, name: str, resolve: Any, results: Any, gate: Any, transfers: Any) -> None:
    """``POST /infer/<model>?image=ID[&session_id=S]&output=image|json|all|dicom_seg``: segment a stored image (or a session's),
    answer in MONAI Label's forms."""
    from flask import request

    @app.post("/infer/<model>")
    def monai_label_infer(model: str) -> Any:
        segmenter = served.segmenter  # one model for the whole request
        if segmenter is None:
            return _error(503, "No model loaded.")
        if model != name:
            return _error(404, f"No model {model!r}; this server has {name!r} (GET /info/).")
        image_id, output = request.args.get("image", ""), request.args.get("output")
        with transfers.slot():
            try:
                extension, dtype = _result_options(request.form.get("params"))
            except ValueError as err:
                return _error(400, str(err))
            held = resolve(image_id, request.args.get("session_id", ""))
            if held is None:
                return _error(
                    404, f"No image {image_id!r} (PUT /datastore/?image=ID or /session/ first; uploads are removed after a while)."
                )
            token, scan = held
            folder, extension = scan.parent, ".dcm" if output == "dicom_seg" else extension
            try:
                if extension == ".dcm" and not is_dicom_input(scan):
                    raise ValueError(f"output=dicom_seg needs a DICOM image; {image_id!r} is not one (a PACS datastore's are: --dicomweb).")
                with gate:
                    result, seconds = write_result(segmenter, scan, image_id, folder, extension, dtype)
                try:
                    data = result.read_bytes()
                finally:
                    result.unlink()
            except ValueError as err:  # VolumeError (the volume), or labels that do not fit result_dtype
                return _error(422, "Cannot segment the uploaded volume: " + re.sub(re.escape(str(folder)) + r"/\S*", "it", str(err)))
            finally:
                results.done(token)  # the folder's use is given back: swept once expired and unused, removed now if retired
        labels = {str(n): int(v) for v, n in sorted(segmenter.names.items()) if v}
        params = {"label_names": labels, "image": image_id, "latencies": {"infer": round(seconds, 3)}}
        return _infer_answer(app, output, params, f"{image_id}_seg{extension}", data)


def _infer_answer(app: Any, output: str | None, params: dict[str, Any], name: str, data: bytes) -> Any:
    """``/infer/``'s answer in the form ``output`` asks: ``json`` (params), ``image`` or ``dicom_seg`` (the file), else
    both as multipart (``all``, MONAI Label's default)."""
    from flask import jsonify

    if output == "json":
        return jsonify(params)
    if output in ("image", "dicom_seg"):
        mimetype = "application/dicom" if output == "dicom_seg" else "application/octet-stream"
        return app.response_class(data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})
    body, content_type = _multipart(params, name, data)
    return app.response_class(body, content_type=content_type)
