"""Whole-volume segmentation: preprocess, sliding-window inference, argmax, back to the input's grid.

The label map is resampled from the preprocessed grid (whose physical geometry the MetaTensor
affine carries through orientation, spacing and crop) onto the input file's own grid, read from
its header, so the mask overlays the scan exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai import transforms as T
from monai.inferers import SlidingWindowInferer

from medseg.data import preprocessing
from medseg.io.channels import ImageSource, case_name, channel_headers, channel_paths, source_key
from medseg.io.export import export_mask, mask_dtype
from medseg.io.volumes import Geometry, VolumeError
from medseg.networks import PadToMultiple, fold_batch_norm
from shared.devices import autocast, resolve_device, resolve_precision

logger = logging.getLogger(__name__)


class VolumeInferer:
    """The one whole-volume forward pass of medseg: validation during training and ``medseg infer`` both call it.

    Sliding windows of ``roi_size`` with Gaussian blending (MONAI ``SlidingWindowInferer``) over
    an eval copy of the network with batch norm folded into its convolutions (same logits to
    float rounding, one memory pass fewer per layer), padded to V-Net's multiple of 16. Because
    validation runs this same path on whole validation volumes, the best-validation weights the
    engine keeps are chosen by the score inference will reproduce.

    Args:
        roi_size: window size in voxels.
        sw_batch_size: windows per forward pass.
        overlap: window overlap fraction. 0.5 (MONAI's and nnU-Net's): at 0.25 the mask depends on where the
            windows fall (the sd of Dice over 8 mirrored passes of a flip-trained demo model is 0.026; at 0.5
            0.002; ``benchmarks/medseg_tiling.py``).
        dtype: autocast dtype of the forward passes (``None``: fp32; see :mod:`shared.devices`).

    ``inferer(inputs, network)``: ``(B, C_in, *spatial)`` -> ``(B, C, *spatial)`` fp32 logits, no gradients.
    Windows run on the network's device; the full-volume accumulation (MONAI's ``device``) stays there too
    unless it would take more than half of the GPU's free memory, then it is kept on the CPU, so a
    512x512x600 CT (2 classes: 1.9 GB of fp32 sums and weights) infers on an 8 GB GPU.
    """

    def __init__(self, roi_size: Sequence[int], sw_batch_size: int = 1, overlap: float = 0.5, dtype: torch.dtype | None = None) -> None:
        self.roi_size, self.sw_batch_size, self.overlap = tuple(roi_size), int(sw_batch_size), float(overlap)
        self.dtype = dtype

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, prepared: bool = False) -> torch.Tensor:
        """``prepared``: ``network`` is already :func:`inference_network`'s (the :class:`Segmenter` prepares each once)."""
        if isinstance(network, torch.nn.parallel.DistributedDataParallel):
            network = network.module  # eval needs no gradient synchronisation; the copy below cannot copy DDP
        weight = next(network.parameters(), None)
        device = weight.device if weight is not None else inputs.device  # a network without weights runs where its input is
        out_channels = getattr(network, "out_channels", None)
        windows = SlidingWindowInferer(
            self.roi_size,
            self.sw_batch_size,
            self.overlap,
            mode="gaussian",
            sw_device=device,
            device=accumulation_device(inputs.shape, out_channels, device),
        )
        forward = PadToMultiple(network if prepared else inference_network(network))
        with torch.no_grad(), autocast(device, self.dtype):
            return windows(inputs, lambda x: forward(x).float()).float()


def inference_network(network: torch.nn.Module) -> torch.nn.Module:
    """The network inference runs: an eval copy with batch norm folded into its convolutions, or, without batch norm
    (instance or group norm: nothing to fold), the network itself, so no copy of the weights is made per pass."""
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules()):
        return fold_batch_norm(network)
    return network


def accumulation_device(shape: Sequence[int], out_channels: int | None, device: torch.device) -> torch.device:
    """Where the whole-volume sums go: ``device``, or the CPU when ``(C + 1) x voxels x 4`` bytes exceed half the free GPU memory.

    Args:
        shape: ``(B, C_in, *spatial)`` of the input.
        out_channels: classes C of the network (``None``: assume 2).
    """
    if device.type != "cuda":
        return device
    voxels = int(np.prod(shape[2:])) * int(shape[0])
    needed = ((out_channels or 2) + 1) * voxels * 4  # fp32 sums of C classes + the count map
    free, _total = torch.cuda.mem_get_info(device)
    return device if needed <= free / 2 else torch.device("cpu")


@dataclasses.dataclass
class Segmenter:
    """A trained network and the recipe it was trained with.

    Args:
        network: ``(1, 1, *roi) -> (1, C, *roi)`` logits.
        names: label value -> name (``len(names)`` = C).
        pixdim: target spacing in mm, as in training.
        window: intensity window, as in training.
        normalization: intensity normalisation, as in training (``"minmax"`` or ``"zscore"``).
        roi_size: sliding-window size (voxels; Gaussian blending).
        overlap: sliding-window overlap (see :class:`VolumeInferer`); 0.5 costs 1.6x the time of 0.25 on CPU and
            makes the mask far less dependent on the tiling.
        sw_batch_size: windows per forward pass. On this 2-core CPU, for MONAI's VNet on 96^3
            windows 1 is fastest (4: 16% slower); for the bundle's width-4 V-Net on 32^3 windows
            16 is about 1.3x faster than 1 (each layer call is too small to keep both cores busy).
        keep_largest: keep only the largest connected component of each label (``True``), of the labels listed,
            or none (``False``); bundles with a ``postprocessing.json`` (``medseg cross-validate``) list their labels.
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
    colours: Mapping[int, Sequence[float]] | None = None
    device: str | torch.device = "auto"
    normalization: str = "minmax"
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
            self.pixdim, self.window, roi_size=None, with_label=False, image_var=image_var, normalization=self.normalization
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
        if self.keep_largest:  # on the input grid, where the mask is delivered
            from medseg.postprocessing import keep_largest

            mask = keep_largest(mask, [v for v in self.names if v] if self.keep_largest is True else list(self.keep_largest))
        return mask, geometry

    def segment_files(
        self,
        inputs: Sequence[ImageSource],
        output_dir: str | os.PathLike,
        formats: Sequence[str] = ("nifti", "seg.nrrd"),
        image_var: str | None = None,
        with_probabilities: bool = False,
    ) -> dict[str, list[Path]]:
        """Segment ``inputs`` (cases: a file, or a list of channel files) and export each as ``formats`` into
        ``output_dir``, named after the case (:func:`medseg.io.channels.case_name`).

        Returns ``{source_key(case): [written files]}`` (the case's channel 0 path). ``with_probabilities``: also
        ``<case>_probabilities.npz`` (:func:`save_probabilities`). Refuses before any work when an output would
        overwrite an input, or when a case's channels do not match the model.
        """
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
        for path in inputs:
            kept: list[np.ndarray] | None = [] if with_probabilities else None
            mask, geometry = self.segment(path, image_var, kept)
            stem, key = case_name(path), source_key(path)
            extra = {"source": path, "algorithm": self.algorithm, "segment_codes": self.segment_codes}
            written[key] = export_mask(mask, geometry, output_dir, stem, self.names, formats, self.colours, **extra)
            if kept is not None:
                written[key].append(save_probabilities(output_dir / f"{stem}_probabilities.npz", kept, geometry, self.names))
            logger.info("%s -> %s", key, ", ".join(p.name for p in written[key]))
        return written


def mirror_subsets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes``, the empty one (no flip) first: ``(0, 1)`` -> ``[(), (0,), (1,), (0, 1)]``."""
    axes = tuple(sorted(set(axes)))
    return [combo for n in range(len(axes) + 1) for combo in itertools.combinations(axes, n)]


def resample_labels(labels: np.ndarray, grid: Geometry, target: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling of a label map from ``grid`` onto ``target`` (outside: 0).

    This replaces MONAI's ``Invertd`` on the way back: ``Invertd`` materialises a float32
    sampling grid of the full input size (measured: +3.4 GiB peak RSS for a 512x512x300 CT),
    while SimpleITK's resampler streams into a uint8 output. Both map through physical space,
    so the result is the same label for every voxel whose centre is not on a label boundary.
    """
    source = grid.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0))))
    # the output grid as parameters, not as a reference image: a reference would be one more
    # full-resolution buffer (75 MiB for a 512x512x300 CT) allocated only to be read for its header
    out = sitk.Resample(
        source,
        [int(s) for s in target.shape],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        target.origin,
        target.spacing,
        target.direction,
        0,
        source.GetPixelID(),
    )
    # (k, j, i) C-order -> an (i, j, k) view: Fortran order, as NIfTI stores voxels; no copy
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def argmax_on_grid(probabilities: np.ndarray, grid: Geometry, target: Geometry, keep: list[np.ndarray] | None = None) -> np.ndarray:
    """Resample each class's probabilities ``(C, *grid.shape)`` linearly onto ``target`` and take the argmax there.

    One class at a time with a running maximum (peak: two float32 volumes of the input's size, not C), outside
    the network grid: background. ``keep``: a list that receives each class's resampled probabilities as float16
    (``--save-probabilities``), in class order.
    """
    best = labels = None
    for c, channel in enumerate(probabilities):
        outside = 1.0 if c == 0 else 0.0  # beyond the network grid there is only background
        source = grid.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(channel.transpose(2, 1, 0), dtype=np.float32)))
        size = [int(n) for n in target.shape]
        resampled = sitk.Resample(
            source, size, sitk.Transform(), sitk.sitkLinear, target.origin, target.spacing, target.direction, outside, sitk.sitkFloat32
        )
        prob = sitk.GetArrayViewFromImage(resampled).transpose(2, 1, 0)
        if keep is not None:
            keep.append(prob.astype(np.float16))
        if best is None:
            best, labels = prob.copy(), np.zeros(prob.shape, dtype=np.uint8)
        else:
            better = prob > best
            labels[better], best[better] = c, prob[better]
    return labels


def save_probabilities(path: Path, probabilities: Sequence[np.ndarray], geometry: Geometry, names: Mapping[int, str]) -> Path:
    """``<stem>_probabilities.npz``: ``probabilities`` float16 ``(C, i, j, k)`` on the input grid, its ``ijk_to_lps`` and label names."""
    from shared.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            probabilities=np.stack(probabilities),
            ijk_to_lps=geometry.ijk_to_lps,
            shape=np.asarray(geometry.shape),
            names=np.asarray([names[k] for k in sorted(names)]),
        )
    return path


def guard_outputs(inputs: Sequence[ImageSource], output_dir: Path) -> None:
    """Raise when ``output_dir`` is an input's own folder and an export name could replace an input."""
    files = [p for image in inputs for p in channel_paths(image)]
    resolved_inputs = {p.resolve() for p in files}
    for image in inputs:
        stem = case_name(image)
        for name in (
            f"{stem}_seg.nii.gz",
            f"{stem}.seg.nrrd",
            f"{stem}_seg.nrrd",
            f"{stem}_seg.ctbl",
            f"{stem}_seg.mat",
            f"{stem}_probabilities.npz",
            f"{stem}_seg.dcm",
        ):
            if (output_dir / name).resolve() in resolved_inputs:
                raise VolumeError(
                    f"Output {output_dir / name} would overwrite the input {source_key(image)}; choose another --output directory."
                )
    out = output_dir.resolve()
    for folder in (p for p in resolved_inputs if p.is_dir()):  # a DICOM series folder: every file in it is read as a slice
        if out == folder or folder in out.parents:
            raise VolumeError(
                f"Output directory {output_dir} is inside the DICOM input folder {folder}: the masks written there would be read "
                "as slices of the series next time; choose another --output directory (its parent is fine)."
            )


def load_segmenter(
    bundle_dir: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    folds: Sequence[int] | None = None,
) -> Segmenter:
    """The :class:`Segmenter` of a bundle's ``configs/inference.json`` (its ``segmenter``: :func:`medseg.trained.trained_segmenter`).

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
        return parser.get_parsed_content("segmenter")
    except RuntimeError as err:  # MONAI wraps the factory's own error in "Failed to instantiate ..."
        from shared.errors import unwrap

        inner = unwrap(err)
        if inner is not err and isinstance(inner, (ValueError, FileNotFoundError, RuntimeError)):
            raise inner from None
        raise
