"""``medseg serve``: the scan page and JSON API (and MONAI Label's protocol)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medseg.cli.common import BUNDLE_DEFAULT, device_overrides


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: run the scan page and JSON API until interrupted."""
    import signal

    from medseg.web.server import serve
    from shared.web import server_options

    if (args.datastore is not None or args.dicomweb) and not args.monai_label:
        raise ValueError("--datastore and --dicomweb serve MONAI Label's annotation loop: give --monai-label too.")
    pacs = None
    if args.dicomweb:
        from medseg.io.dicomweb import pacs_from_arguments
        from medseg.web.dicomweb_datastore import PacsDatastoreSpec

        pacs = PacsDatastoreSpec(
            pacs_from_arguments(args.dicomweb, args.dicomweb_token, args.dicomweb_user), _dicomweb_filters(args.dicomweb_filter)
        )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    serve(
        args.bundle,
        args.host,
        args.port,
        server=server_options(args, args.max_upload_mb),
        max_upload_mb=args.max_upload_mb,
        keep_minutes=args.keep_minutes,
        workers=args.workers,
        max_voxels=int(args.max_voxels),
        max_transfers=args.max_transfers,
        transfer_wait_s=args.transfer_wait,
        device_overrides=device_overrides(args),
        monai_label=args.monai_label,
        datastore=args.datastore,
        dicomweb=pacs,
    )
    return 0


def _dicomweb_filters(pairs: list[str]) -> dict[str, str]:
    """``["Modality=CT"]`` -> ``{"Modality": "CT"}``; a pair without ``=`` or a key: one line naming it."""
    filters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--dicomweb-filter expects KEY=VALUE (a DICOM keyword, e.g. Modality=CT); got {pair!r}.")
        filters[key] = value
    return filters


def add_serve_parser(sub: Any) -> None:
    """The ``serve`` command's arguments."""
    from shared.devices import add_device_arguments
    from shared.web import add_server_arguments

    p = sub.add_parser("serve", help="web page + JSON API: upload a scan, see the mask on three views, download it for 3D Slicer")
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder with trained weights (models/model.pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8001, help="port (0: any free port; default 8001)")
    p.add_argument("--max-upload-mb", type=float, default=500, help="upload size limit in MB (default 500)")
    p.add_argument("--keep-minutes", type=float, default=30, help="minutes results stay downloadable (default 30)")
    p.add_argument("--workers", type=int, default=1, help="segmentations running at once (default 1)")
    p.add_argument(
        "--monai-label",
        action="store_true",
        help="also answer MONAI Label's /info/, /datastore/ and /infer/ (3D Slicer's MONAILabel module; docs/slicer-monailabel.md)",
    )
    p.add_argument(
        "--max-voxels",
        type=float,
        default=300e6,
        help="voxels an uploaded scan's header may declare, checked before any voxel is read (default 3e8)",
    )
    p.add_argument(
        "--max-transfers", type=int, default=4, help="uploads handled at once; more wait --transfer-wait s, then get 503 (default 4)"
    )
    p.add_argument(
        "--transfer-wait", type=float, default=10.0, help="seconds a request waits for a free transfer slot before 503 (default 10)"
    )
    p.add_argument(
        "--datastore",
        type=Path,
        help="with --monai-label: a folder of images and saved labels (images/, labels/final/; made when missing, kept across "
        "restarts) for 3D Slicer's annotation loop: save labels, next sample, sessions (docs/slicer-monailabel.md)",
    )
    g = p.add_argument_group("the annotation loop on a PACS (DICOMweb) instead of a folder")
    g.add_argument(
        "--dicomweb",
        metavar="URL",
        help="with --monai-label: images are the PACS's image series (id: Series Instance UID), saved labels are stored there "
        "as DICOM SEG; --datastore DIR then caches what was read (default: a temporary folder)",
    )
    g.add_argument(
        "--dicomweb-filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="QIDO-RS filter choosing the image series to label (repeatable), e.g. --dicomweb-filter Modality=CT "
        "--dicomweb-filter StudyDescription='liver*' (default: every image series of the PACS)",
    )
    g.add_argument("--dicomweb-token", help="bearer token for the PACS (or the environment variable MEDACT_DICOMWEB_TOKEN)")
    g.add_argument("--dicomweb-user", help="user for HTTP basic authentication; the password is read from MEDACT_DICOMWEB_PASSWORD")
    add_device_arguments(p, inherited_from=BUNDLE_DEFAULT)
    add_server_arguments(p)
    p.set_defaults(func=cmd_serve)
