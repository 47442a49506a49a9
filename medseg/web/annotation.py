"""MONAI Label's annotation loop on ``medseg serve --monai-label --datastore DIR``: the datastore, sessions, next sample.

With a datastore (:class:`medseg.web.datastore.FolderDatastore`), the routes a labelling session of 3D Slicer's
MONAILabel module (and ``monailabel.client.MONAILabelClient``) uses, answered as MONAI Label's FastAPI server answers
them (``monailabel/endpoints/datastore.py``, ``session.py``, ``activelearning.py``):

- ``GET /datastore/?output=stats|all``; ``PUT /datastore/image?image=ID`` (and MONAI Label's older
  ``PUT /datastore/?image=ID``), ``GET /datastore/image?image=ID``, ``DELETE /datastore/image?id=ID``;
- ``PUT /datastore/label?image=ID&tag=final`` (form file ``label``: refused with 422 unless it lies on the image's
  grid and holds only the bundle's label values), ``GET /datastore/label?label=ID&tag=final``,
  ``DELETE /datastore/label?id=ID&tag=final``;
- ``POST /activelearning/{random|first|uncertainty}``: an image without a ``final`` label (``{}`` when every image
  has one); ``uncertainty``: the one whose prediction is least certain (:class:`ActiveLearning`);
- ``PUT /session/`` (form files ``files``), ``GET`` and ``DELETE /session/{id}``: an image kept for a while without
  entering the datastore, which ``POST /infer/{model}?session_id=ID`` segments.

Uploads pass the scan page's policy (:func:`medseg.web.uploads.store_upload`: size, declared voxels, attached data
only) in a private folder first; only a checked file moves into the datastore. Every error is one JSON line.
"""

from __future__ import annotations

import random
import secrets
import shutil
from pathlib import Path
from typing import Any

from medseg.web.datastore import FINAL, DatastoreError, FolderDatastore, check_id

STRATEGIES = {
    "random": "an image without a final label, chosen at random",
    "first": "the first image (by id) without a final label",
    "uncertainty": "the image without a final label whose prediction is least certain (mean voxel entropy of the served model's probabilities)",
}


def _error(status: int, message: str) -> Any:
    from shared.web import json_error

    return json_error(status, message, detail=message)


class ActiveLearning:
    """``/activelearning/{strategy}`` over a datastore's unlabelled images (those without a ``final`` label).

    ``uncertainty`` segments each unlabelled image with the served model (its fold ensemble and mirroring, if any:
    the probabilities the segmenter averages) and picks the highest mean voxel entropy ``-sum_c p_c log p_c``
    (nats); scores are cached per image file and model version, so a second request segments only new images.
    """

    def __init__(self, store: FolderDatastore, served: Any, seed: int | None = None) -> None:
        self.store, self.served = store, served
        self.rng = random.Random(secrets.randbits(32) if seed is None else seed)
        self._scores: dict[tuple[str, float, int], float] = {}

    def sample(self, strategy: str) -> dict[str, Any]:
        """``{"id", "path", "strategy"}`` (and ``"entropy"``) of the image to label next, ``{}`` when none is left."""
        if strategy not in STRATEGIES:
            raise DatastoreError(f"No strategy {strategy!r}; this server offers {', '.join(STRATEGIES)} (GET /info/).", 404)
        labelled = set(self.store.labelled(FINAL))
        left = [image_id for image_id in self.store.image_ids() if image_id not in labelled]
        if not left:
            return {}
        extra: dict[str, Any] = {}
        if strategy == "first":
            chosen = left[0]
        elif strategy == "random":
            chosen = self.rng.choice(left)
        else:
            scores = {image_id: self.entropy(image_id) for image_id in left}
            chosen = max(left, key=lambda i: scores[i])
            extra = {"entropy": scores[chosen]}
        return {"id": chosen, "path": str(self.store.image_file(chosen)), "strategy": strategy, **extra}

    def entropy(self, image_id: str) -> float:
        """Mean voxel entropy (nats) of the served model's class probabilities on ``image_id`` (cached)."""
        import numpy as np

        segmenter = self.served.segmenter
        if segmenter is None:
            raise DatastoreError("No model loaded: uncertainty needs one.", 503)
        path = self.store.image_file(image_id)
        key = (str(path), path.stat().st_mtime, self.served.version)
        if key not in self._scores:
            kept: list[Any] = []
            segmenter.segment(path, None, kept)
            total = 0.0
            for channel in kept:  # one class at a time: float16 on the input grid
                p = np.clip(np.asarray(channel, dtype=np.float32), 1e-7, 1.0)
                total += float((-p * np.log(p)).mean())
            self._scores[key] = total
        return self._scores[key]


def _send_file(app: Any, path: Path, name: str) -> Any:
    return app.response_class(
        path.read_bytes(), mimetype="application/octet-stream", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _stored_upload(field: str, results: Any, limits: Any, work: Any) -> Any:
    """The multipart file ``field`` stored under the upload policy in a new private folder, then ``work(path)``."""
    from flask import request

    from medseg.web.uploads import in_new_folder, store_upload

    upload = request.files.get(field)
    if upload is None:
        return _error(400, f"Send the volume as the multipart form field {field!r}.")
    return in_new_folder(results, lambda token, folder: work(store_upload(upload, folder, limits)), noun="volume", detail=True)


def add_datastore_routes(app: Any, store: FolderDatastore, results: Any, limits: Any, transfers: Any) -> None:
    """The ``/datastore/`` routes on ``store`` (uploads through ``results``' private folders and ``limits``)."""
    from flask import jsonify, request

    @app.get("/datastore/")
    def datastore_listing() -> Any:
        output = request.args.get("output") or "stats"
        if output not in ("stats", "all"):
            return _error(422, f"output={output!r}: use stats or all.")
        return jsonify(store.listing() if output == "all" else store.status())

    def put_image() -> Any:
        with transfers.slot():
            name = Path(request.files["file"].filename or "").name if "file" in request.files else ""
            image_id = check_id(request.args.get("image") or name.split(".")[0])
            return _stored_upload("file", results, limits, lambda path: jsonify({"image": store.put_image(image_id, path)}))

    app.add_url_rule("/datastore/", "datastore_put_image_old", put_image, methods=["PUT"])  # MONAI Label's older route
    app.add_url_rule("/datastore/image", "datastore_put_image", put_image, methods=["PUT"])

    @app.get("/datastore/image")
    def datastore_get_image() -> Any:
        path = store.image_file(request.args.get("image", ""))
        return _send_file(app, path, path.name)

    @app.delete("/datastore/image")
    def datastore_delete_image() -> Any:
        store.delete_image(request.args.get("id", ""))
        return jsonify({})

    @app.put("/datastore/label")
    def datastore_put_label() -> Any:
        image_id, tag = request.args.get("image", ""), request.args.get("tag") or FINAL
        store.image_file(image_id)  # an unknown image: 404 before the upload is read
        with transfers.slot():
            return _stored_upload(
                "label", results, limits, lambda path: jsonify({"image": image_id, "label": store.put_label(image_id, path, tag)})
            )

    @app.get("/datastore/label")
    def datastore_get_label() -> Any:
        path = store.label_file(request.args.get("label", ""), request.args.get("tag") or FINAL)
        return _send_file(app, path, path.name)

    @app.delete("/datastore/label")
    def datastore_delete_label() -> Any:
        store.delete_label(request.args.get("id", ""), request.args.get("tag") or FINAL)
        return jsonify({})

    @app.errorhandler(DatastoreError)
    def datastore_error(err: DatastoreError) -> Any:
        return _error(err.status, str(err))


def add_active_learning_routes(app: Any, store: FolderDatastore, served: Any) -> None:
    """``POST /activelearning/{strategy}``."""
    from flask import jsonify

    learning = ActiveLearning(store, served)

    @app.post("/activelearning/<strategy>")
    def activelearning(strategy: str) -> Any:
        return jsonify(learning.sample(strategy))


class Sessions:
    """Session id -> an uploaded image kept in a private results folder (expiring as results do)."""

    def __init__(self, results: Any) -> None:
        from medseg.web.uploads import ImageStore

        self.images = ImageStore(results)

    def add(self, token: str, scan: Path) -> str:
        """A new session for the image stored as ``scan`` in ``token``'s folder; returns its id."""
        session_id = secrets.token_hex(16)
        self.images.put(session_id, token, scan)
        return session_id


def add_session_routes(app: Any, sessions: Sessions, results: Any, limits: Any, transfers: Any) -> None:
    """``PUT /session/``, ``GET /session/{id}``, ``DELETE /session/{id}``."""
    from flask import jsonify, request

    from medseg.web.uploads import in_new_folder, store_upload

    def info(session_id: str) -> dict[str, Any] | None:
        held = sessions.images.hold(session_id)
        if held is None:
            return None
        token, scan = held
        results.done(token)
        return {"name": session_id, "path": str(scan), "image": scan.name}

    @app.put("/session/")
    def session_create() -> Any:
        with transfers.slot():
            uploads = request.files.getlist("files")
            if len(uploads) != 1:
                return _error(400, f"Send one volume as the multipart form field 'files' (got {len(uploads)}).")

            def work(token: str, folder: Path) -> Any:
                session_id = sessions.add(token, store_upload(uploads[0], folder, limits))
                return jsonify({"session_id": session_id, "session_info": info(session_id)})

            return in_new_folder(results, work, noun="volume", detail=True)

    @app.get("/session/<session_id>")
    def session_get(session_id: str) -> Any:
        found = info(session_id)
        return jsonify(found) if found else _error(404, f"Session {session_id[:40]!r} not found (expired or removed).")

    @app.delete("/session/<session_id>")
    def session_delete(session_id: str) -> Any:
        found = info(session_id)
        if not found:
            return _error(404, f"Session {session_id[:40]!r} not found (expired or removed).")
        sessions.images.remove(session_id)
        return jsonify(found)


def copy_for_inference(store: FolderDatastore, image_id: str, folder: Path) -> Path:
    """A private copy of a datastore image in ``folder`` (inference writes beside its input; never into the datastore):
    for a PACS datastore its DICOM series (so that a DICOM SEG can reference it), else the image file."""
    if hasattr(store, "dicom_source"):
        return Path(shutil.copytree(store.dicom_source(image_id), folder / "series"))
    source = store.image_file(image_id)
    return Path(shutil.copy2(source, folder / source.name))


def add_training_routes(app: Any, finetuner: Any, name: str) -> None:
    """``POST /train/{model}`` (and ``/train/``), ``GET /train/`` (``?check_if_running=true``: 200 only while a run
    goes on, as MONAI Label answers), ``DELETE /train/``."""
    from flask import jsonify, request

    def start(model: str = "") -> Any:
        if model and model != name:
            return _error(404, f"No model {model!r}; this server trains {name!r} (GET /info/).")
        params = request.get_json(silent=True)
        return jsonify(finetuner.start(params if isinstance(params, dict) else {}))

    app.add_url_rule("/train/", "train_start_default", start, methods=["POST"])
    app.add_url_rule("/train/<model>", "train_start", start, methods=["POST"])

    @app.get("/train/")
    def train_status() -> Any:
        if request.args.get("check_if_running", "").lower() == "true" and not finetuner.running():
            return _error(404, "No training run is going on.")
        return jsonify(finetuner.status())

    @app.delete("/train/")
    def train_stop() -> Any:
        return jsonify(finetuner.stop())
