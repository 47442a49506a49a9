"""Whole-volume segmentation: preprocess, sliding-window inference, argmax, back to the input's grid.

The label map is resampled from the preprocessed grid (whose physical geometry the MetaTensor
affine carries through orientation, spacing and crop) onto the input file's own grid, read from
its header, so the mask overlays the scan exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai import transforms as T

from medseg.inference.inferer import VolumeInferer, accumulation_device, inference_network, mirror_subsets
from medseg.inference.outputs import guard_outputs, save_probabilities
from medseg.inference.resample import argmax_on_grid, resample_labels
from medseg.io.channels import ImageSource, case_name, channel_headers, channel_paths, source_key
from medseg.io.volumes import Geometry, VolumeError, mask_dtype, write_volume
from medseg.transforms import preprocessing
from shared.devices import resolve_device, resolve_precision

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Segmenter:
    """A trained network and the recipe it was trained with.

    Args:
        network: ``(1, 1, *roi) -> (1, C, *roi)`` logits.
        names: label value -> name (``len(names)`` = C).
        pixdim: target spacing in mm, as in training.
        window: intensity window, as in training.
        normalization: intensity normalisation, as in training (``"minmax"`` or ``"zscore"``).
        bias_correction: N4 bias-field correction of MR channels, as in training.
        roi_size: sliding-window size (voxels; Gaussian blending).
        overlap: sliding-window overlap (see :class:`VolumeInferer`); 0.5 costs 1.6x the time of 0.25 on CPU and
            makes the mask far less dependent on the tiling.
        sw_batch_size: windows per forward pass. On this 2-core CPU, for MONAI's VNet on 96^3
            windows 1 is fastest (4: 16% slower); for the bundle's width-4 V-Net on 32^3 windows
            16 is about 1.3x faster than 1 (each layer call is too small to keep both cores busy).
        keep_largest: keep only the largest connected component of each label (``True``), of the labels listed,
            or none (``False``); bundles with a ``postprocessing.json`` (``medseg train``, ``medseg cross-validate``)
            list their labels.
        remove_small: label value -> ml: that label's connected parts smaller than this are removed (background),
            before keep-largest; ``postprocessing.json`` gives it (:mod:`medseg.inference.postprocessing`).
        remove_detached: label value -> the labels it lies within: its parts touching none of them are removed
            (background), after the small parts and before keep-largest; ``postprocessing.json`` gives it.
        attached_share: label value -> the share (0-1) of a part's shell that must lie in the labels it lies within
            for it to stay (missing: touching them is enough); ``postprocessing.json`` gives it with ``remove_detached``.
        colours: label value -> RGB (0-1) for the Slicer exports.
        device: where the network runs: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (:mod:`shared.devices`).
        precision: ``fp32``, ``bf16``, ``fp16`` (CUDA) or ``auto`` (autocast of the forward passes).
        resample: ``"probabilities"`` (default, nnU-Net's way): the class probabilities are resampled (linear)
            to the input grid and the argmax taken there, so boundaries follow the input's resolution;
            ``"labels"``: argmax on the network grid, then nearest neighbour (staircased boundaries on coarse plans).
        ensemble: more networks (e.g. the other cross-validation folds) whose probabilities are averaged with ``network``'s.
        mirror_axes: test-time augmentation: the probabilities are averaged over the flips of every subset of these
            spatial axes (0, 1, 2 = RAS x, y, z of the preprocessed grid; all three: 8 passes per network, nnU-Net's default).
        channel_names: the input channels the network was trained on, in order (``metadata.json``'s input
            ``channel_def``, e.g. ``{"0": "T1", "1": "FLAIR"}``); an image with another channel count is refused.
        algorithm: ``{"name", "version"}`` of the bundle, written into DICOM SEG exports.
        segment_codes: label value -> coded property category and type of DICOM SEG exports
            (:func:`medseg.io.dicom_seg.property_codes`; the bundle's ``segment_codes``).
    """

    network: torch.nn.Module
    names: Mapping[int, str]
    pixdim: Sequence[float] = (2.0, 2.0, 2.0)
    window: tuple[float, float] | None = None
    roi_size: Sequence[int] = (32, 32, 32)
    overlap: float = 0.5
    sw_batch_size: int = 1
    keep_largest: bool | Sequence[int] = False
    remove_small: Mapping[int, float] = dataclasses.field(default_factory=dict)
    remove_detached: Mapping[int, Sequence[int]] = dataclasses.field(default_factory=dict)
    attached_share: Mapping[int, float] = dataclasses.field(default_factory=dict)
    colours: Mapping[int, Sequence[float]] | None = None
    device: str | torch.device = "auto"
    normalization: str = "minmax"
    bias_correction: bool = False
    precision: str = "fp32"
    resample: str = "probabilities"
    ensemble: Sequence[torch.nn.Module] = ()
    mirror_axes: Sequence[int] = ()
    channel_names: Mapping[Any, str] | None = None
    algorithm: Mapping[str, str] | None = None
    segment_codes: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.resample not in ("probabilities", "labels"):
            raise ValueError(f"Segmenter: resample={self.resample!r}; expected 'probabilities' or 'labels'.")
        self.device = resolve_device(self.device)
        self.dtype = resolve_precision(self.precision, self.device)
        self.network = self.network.to(self.device).eval()
        self.ensemble = [net.to(self.device).eval() for net in self.ensemble]
        self._prepared: dict[int, tuple[torch.nn.Module, torch.nn.Module]] = {}
        if any(a not in (0, 1, 2) for a in self.mirror_axes):
            raise ValueError(f"Segmenter: mirror_axes={list(self.mirror_axes)}; expected spatial axes among 0, 1, 2.")

    def _transforms(self, image_var: str | None) -> T.Compose:
        return preprocessing(
            self.pixdim,
            self.window,
            roi_size=None,
            with_label=False,
            image_var=image_var,
            normalization=self.normalization,
            bias_correction=self.bias_correction,
        )

    def logits(self, image: torch.Tensor, network: torch.nn.Module | None = None) -> torch.Tensor:
        """``(C_in, *spatial)`` preprocessed image -> ``(C, *spatial)`` logits of ``network`` (default: ``self.network``)."""
        network = network if network is not None else self.network
        inferer = VolumeInferer(self.roi_size, self.sw_batch_size, self.overlap, self.dtype)
        batch = image[None]
        # the input goes where the sums will be (the whole volume on the GPU when it fits; else windows are copied one by one)
        batch = batch.to(accumulation_device(batch.shape, getattr(network, "out_channels", None), self.device))
        return inferer(batch, self.prepared(network), prepared=True)[0]  # the network stays as loaded

    def prepared(self, network: torch.nn.Module) -> torch.nn.Module:
        """``network`` as inference runs it (:func:`inference_network`), made once per network object: an ensemble of 5
        folds with 8 mirrored passes folds 5 copies, not 40. Assign a new network object to change weights."""
        cached = self._prepared.get(id(network))
        if cached is None or cached[0] is not network:
            cached = self._prepared[id(network)] = (network, inference_network(network))
        return cached[1]

    def probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """``(C_in, *spatial)`` -> ``(C, *spatial)`` softmax probabilities (float32, CPU), averaged over the ensemble and
        the mirrored passes (``len(ensemble) + 1`` networks x ``2 ** len(mirror_axes)`` passes)."""
        total, passes = None, 0
        for network in (self.network, *self.ensemble):
            for axes in mirror_subsets(self.mirror_axes):
                prob = self.mirrored_probabilities(image, axes, network)
                total = prob if total is None else total.add_(prob)
                passes += 1
        return total / passes

    def mirrored_probabilities(self, image: torch.Tensor, axes: Sequence[int], network: torch.nn.Module | None = None) -> torch.Tensor:
        """One test-time-augmentation pass: ``(C_in, *spatial)`` flipped along the spatial ``axes`` (0, 1, 2), segmented,
        flipped back -> ``(C, *spatial)`` softmax probabilities (float32, CPU) on the unflipped grid."""
        dims = [a + 1 for a in axes]  # spatial axis a of (C, x, y, z)
        flipped = torch.flip(image, dims) if dims else image
        prob = torch.softmax(self.logits(flipped, network).float(), dim=0).cpu()
        return torch.flip(prob, dims) if dims else prob

    @property
    def in_channels(self) -> int:
        """Input channels the network takes (its ``in_channels``, else the declared channel names, else 1)."""
        return int(getattr(self.network, "in_channels", None) or len(self.channel_names or {}) or 1)

    def check_channels(self, image: ImageSource, image_var: str | None = None) -> Geometry:
        """The grid of one case's image after checking its files against the network's channels (raises naming the file)."""
        headers, channels = channel_headers(image, image_var)
        if channels != self.in_channels:
            names = ", ".join(str(v) for _, v in sorted((self.channel_names or {}).items(), key=lambda kv: int(kv[0])))
            raise VolumeError(
                f"{headers[0].path}: {channels} channel(s); the model takes {self.in_channels}"
                + (f" ({names})" if names else "")
                + (": give one file per channel (case_0000, case_0001, ...) or one 4D file." if self.in_channels > 1 else ".")
            )
        return headers[0].geometry

    def segment(
        self, path: ImageSource, image_var: str | None = None, probabilities: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, Geometry]:
        """Segment one case; returns ``(mask[i, j, k], geometry)`` on the input's own grid.

        ``path``: a volume file or DICOM folder; with several channels, one 4D file or the list of channel files.
        ``probabilities``: a list that receives the C class probabilities on the input grid (float16 ``(i, j, k)``
        each; with ``resample="probabilities"`` only).
        """
        geometry = self.check_channels(path, image_var)
        pre = self._transforms(image_var)
        source = str(path) if isinstance(path, (str, os.PathLike)) else [str(p) for p in path]
        try:
            data = pre({"image": source})
        except RuntimeError as err:  # MONAI's "applying transform ..." around our reader's error naming the file
            from shared.errors import unwrap

            inner = unwrap(err)
            if isinstance(inner, (VolumeError, FileNotFoundError)):
                raise inner from None
            raise
        prob = self.probabilities(data["image"])
        grid = Geometry.from_ras_affine(np.asarray(data["image"].affine, dtype=float), prob.shape[1:])
        if self.resample == "labels":  # the old path (argmax on the network grid, nearest neighbour): kept for comparison
            labels = torch.argmax(prob, dim=0).to(torch.uint8).numpy()
            mask = resample_labels(labels, grid, geometry)
        else:
            mask = argmax_on_grid(prob.numpy(), grid, geometry, probabilities)
        mask = mask.astype(mask_dtype(len(self.names)), copy=False)
        if self.keep_largest or self.remove_small or self.remove_detached:  # on the input grid, where the mask is delivered
            from medseg.inference.postprocessing import apply_postprocessing

            keep = [v for v in self.names if v] if self.keep_largest is True else list(self.keep_largest or [])
            voxel_ml = float(np.prod(geometry.spacing)) / 1000
            mask = apply_postprocessing(mask, keep, self.remove_small, voxel_ml, self.remove_detached, self.attached_share)
        return mask, geometry

    def segment_files(
        self,
        inputs: Sequence[ImageSource],
        output_dir: str | os.PathLike,
        formats: Sequence[str] = ("nifti", "seg.nrrd"),
        image_var: str | None = None,
        with_probabilities: bool = False,
        progress: Callable[[int, int, str, list[Path] | None, float], None] | None = None,
    ) -> dict[str, list[Path]]:
        """Segment ``inputs`` (cases: a file, or a list of channel files) and export each as ``formats`` into
        ``output_dir``, named after the case (:func:`medseg.io.channels.case_name`).

        Returns ``{source_key(case): [written files]}`` (the case's channel 0 path). ``with_probabilities``: also
        ``<case>_probabilities.npz`` (:func:`save_probabilities`). Refuses before any work when an output would
        overwrite an input, or when a case's channels do not match the model. ``progress(i, n, case, files, seconds)``
        is called as case ``i`` of ``n`` starts (``files`` ``None``) and when it is written (its files, its seconds).
        """
        from medseg.io.export import export_mask  # the Slicer/DICOM stack: training's post-processing decision never loads it

        output_dir = Path(output_dir)
        guard_outputs(inputs, output_dir)
        if with_probabilities and self.resample != "probabilities":
            raise ValueError("Probabilities on the input grid need resample='probabilities' (the default).")
        for path in inputs:  # every case's channels (and a DICOM source for a DICOM SEG), before the first case is written
            self.check_channels(path, image_var)
            if "dicom-seg" in formats:
                from medseg.io.dicom_seg import require_dicom_source

                require_dicom_source(path)
        written = {}
        for number, path in enumerate(inputs, start=1):
            stem, key, start = case_name(path), source_key(path), time.perf_counter()
            if progress is not None:
                progress(number, len(inputs), key, None, 0.0)
            kept: list[np.ndarray] | None = [] if with_probabilities else None
            mask, geometry = self.segment(path, image_var, kept)
            extra = {"source": path, "algorithm": self.algorithm, "segment_codes": self.segment_codes}
            written[key] = export_mask(mask, geometry, output_dir, stem, self.names, formats, self.colours, **extra)
            if kept is not None:
                written[key].append(save_probabilities(output_dir / f"{stem}_probabilities.npz", kept, geometry, self.names))
            logger.info("%s -> %s", key, ", ".join(p.name for p in written[key]))
            if progress is not None:
                progress(number, len(inputs), key, written[key], time.perf_counter() - start)
        return written


#: probabilities below this are written as 0 (see the module docstring)
PROBABILITY_FLOOR = 1e-3


def write_coarse_channels(coarse: Segmenter, image: ImageSource, folder: Path, stem: str, image_var: str | None = None) -> list[Path]:
    """Segment ``image`` with the coarse stage; write its foreground probabilities on the image's grid as
    ``folder/<stem>_coarse_<k>.nii.gz`` (one per label ``k`` > 0, float32); returns the files in label order."""
    kept: list[np.ndarray] = []
    _, geometry = coarse.segment(image, image_var, kept)
    return [_write_probability(prob, geometry, folder / f"{stem}_coarse_{k}.nii.gz") for k, prob in enumerate(kept) if k > 0]


def _write_probability(prob: np.ndarray, geometry: Geometry, path: Path) -> Path:
    values = np.asarray(prob, dtype=np.float32)
    return write_volume(np.where(values >= PROBABILITY_FLOOR, values, 0).astype(np.float32), geometry, path)


class CascadeSegmenter:
    """A coarse :class:`Segmenter` whose probabilities the fine one takes beside the image: ``segment`` and
    ``segment_files`` as :class:`Segmenter`'s (names, colours, exports and the rest are the fine stage's)."""

    def __init__(self, coarse: Segmenter, fine: Segmenter) -> None:
        self.coarse, self.fine = coarse, fine

    def __getattr__(self, name: str) -> Any:
        if name in ("coarse", "fine"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.fine, name)

    @property
    def in_channels(self) -> int:
        """The image channels a case has (the coarse stage's input)."""
        return self.coarse.in_channels

    def check_channels(self, image: ImageSource, image_var: str | None = None) -> Geometry:
        """The case's grid after checking its channels against the coarse stage's (raises naming the file)."""
        return self.coarse.check_channels(image, image_var)

    def segment(
        self, path: ImageSource, image_var: str | None = None, probabilities: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, Geometry]:
        """Both stages on one case: ``(mask[i, j, k], geometry)`` on the input's grid (see :meth:`Segmenter.segment`)."""
        with tempfile.TemporaryDirectory(prefix="medact-cascade-") as folder:
            extra = write_coarse_channels(self.coarse, path, Path(folder), "case", image_var)
            return self.fine.segment([*map(str, channel_paths(path)), *map(str, extra)], image_var, probabilities)

    segment_files = Segmenter.segment_files


def load_segmenter(
    bundle_dir: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    folds: Sequence[int] | None = None,
) -> Segmenter:
    """The :class:`Segmenter` of a bundle's ``configs/inference.json`` (its ``segmenter``: :func:`medseg.inference.trained.trained_segmenter`).

    ``overrides``: config ids of ``inference.json`` (``overlap``, ``device``, ``tta``, ``keep_largest``, ... and the model
    ids, which are checked against the trained model's record); ``weights``: another weights file than
    ``models/model.pt``; ``folds``: an ensemble of the cross-validation folds (``models/fold_K/model.pt``).
    """
    from monai.bundle import ConfigParser

    from medact_bundles import config_file

    bundle_dir = Path(bundle_dir)
    parser = ConfigParser()
    parser.read_config(str(config_file(bundle_dir, "inference.json")))
    parser.read_meta(str(config_file(bundle_dir, "metadata.json")))
    values: dict[str, Any] = {"bundle_root": str(bundle_dir), **(overrides or {})}
    if weights is not None:
        values["ckpt_path"] = str(weights)
    if folds:
        values["folds"] = [int(k) for k in folds]
    parser.update(values)
    try:
        segmenter = parser.get_parsed_content("segmenter")
    except RuntimeError as err:  # MONAI wraps the factory's own error in "Failed to instantiate ..."
        from shared.errors import unwrap

        inner = unwrap(err)
        if inner is not err and isinstance(inner, (ValueError, FileNotFoundError, RuntimeError)):
            raise inner from None
        raise
    from medseg.planning.cascade import coarse_bundle_of

    coarse = coarse_bundle_of(bundle_dir)
    return CascadeSegmenter(load_segmenter(coarse, None, overrides), segmenter) if coarse else segmenter


def run_inference(
    segmenter: Any, inputs: Sequence[Any], output_dir: str | Path, formats: Sequence[str] = ("nifti", "seg.nrrd")
) -> dict[str, list[Path]]:
    """Segment ``inputs`` into ``output_dir`` (the bundle's ``inference.json`` entry point)."""
    return segmenter.segment_files(inputs, output_dir, formats)
