"""Preprocessing of medseg: MONAI's transforms plus :class:`shared.MinMaxd` and the per-channel normalisations here.

Preprocessing is MONAI's transforms plus :class:`shared.MinMaxd`, in nnU-Net's order:
load -> channel first -> orientation (RAS) -> spacing -> intensity window -> foreground
crop (training and inference alike) -> (training) patch sampling. Everything up to the random crop is
deterministic and can be cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.transforms import MapTransform, Transform

from medseg.io.volumes import VolumeError
from medseg.patch_augmentation import RAW_ZERO_SUFFIX  # defined there: RandScanGaind reads it, and imports nothing of ours


def preprocessing(
    pixdim: Sequence[float] = (2.0, 2.0, 2.0),
    window: Any = None,
    roi_size: Sequence[int] | None = None,
    pos_neg: tuple[float, float] = (1.0, 1.0),
    num_samples: int = 2,
    class_ratios: Sequence[float] | None = None,
    with_label: bool = True,
    image_var: str | None = None,
    label_var: str | None = None,
    normalization: str | Sequence[str] = "minmax",
    mirror_axes: Sequence[int] = (),
    intensity_augmentation: bool = False,
    scan_gain_augmentation: bool = False,
    bias_correction: bool = False,
    centres_in_body: bool = False,
    coarse_channels: int = 0,
    coarse_augmentation: bool = False,
) -> Any:
    """The MONAI transform chain for training (``roi_size`` given) or validation/inference (``None``).

    Args:
        pixdim: target spacing in mm (RAS after ``Orientationd``).
        window: ``(input_min, input_max)`` window for :class:`~shared.MinMaxd` (``(-200, 300)`` HU); ``None``: each image's own range.
        normalization: ``"minmax"`` (CT: clip to ``window`` and rescale to [0, 1], the body is what lies above the window's
            floor) or ``"zscore"`` (MR: crop to the body, the voxels above Otsu's threshold, then z-score every voxel with the
            body's mean and standard deviation, per scan; ``window`` unused; :class:`BodyZScored`). See :data:`NORMALIZATIONS`.
            Several channels: each is normalised on its own, by one scheme for all or a list with one per channel
            (``window`` then a list too); :class:`ChannelRecipe`.
        roi_size: training patch size; patches are centred on foreground:background voxels at the ``pos_neg`` ratio, or, with
            ``class_ratios`` (one weight per label, background first), on each label at those ratios: small structures as often as large.
        with_label: whether the items carry a ``"label"``.
        image_var: variable holding the image in MATLAB ``.mat`` inputs.
        label_var: variable holding the label in MATLAB ``.mat`` inputs.
        mirror_axes: training only: each patch is flipped along each of these spatial axes (0, 1, 2 = RAS x, y, z)
            with probability 0.5, nnU-Net's mirroring augmentation; the axes a bundle may use for test-time mirroring.
        intensity_augmentation: training only: nnU-Net's intensity augmentations of each patch (:func:`medseg.patch_augmentation.intensity_augmentations`).
        scan_gain_augmentation: training only: each patch's z-score channels under a gain on the raw signal (:class:`medseg.patch_augmentation.RandScanGaind`).
        bias_correction: N4 on the z-score (MR) channels before normalising, training and inference alike (:mod:`medseg.bias_field`).
        centres_in_body: with ``class_ratios``, CT (min-max) inputs' patches centred in the body only (:class:`BodyClassIndicesd`).
        coarse_channels: the last this many channels are a cascade's coarse probabilities (0: none), perturbed in training as
            nnU-Net does with ``coarse_augmentation`` (:class:`medseg.coarse_augmentation.RandCoarseMorphologyd`).
    """
    from monai import transforms as T  # imported here: `medseg validate` and datalists start without MONAI

    from medseg.io.reader import LoadVolumed

    keys, modes = (["image", "label"], ("bilinear", "nearest")) if with_label else (["image"], ("bilinear",))
    steps: list[Any] = [LoadVolumed("image", image_var), *([LoadVolumed("label", label_var)] if with_label else [])]
    steps += [
        T.EnsureChannelFirstd(keys=keys, channel_dim=None),  # the reader says: no channel axis (3D), or channels first
        T.Orientationd(keys=keys, axcodes="RAS", labels=None),
        T.Spacingd(keys=keys, pixdim=tuple(pixdim), mode=modes, dtype=np.float32),  # not float64: +593 not +1023 MiB RSS, 512^2x300 CT
        *_intensity_steps(keys, normalization, window, scan_gain_augmentation and roi_size is not None, bias_correction),
    ]
    if roi_size is not None:
        body = ChannelRecipe(normalization, window) if centres_in_body else None
        steps += _patch_steps(keys, roi_size, pos_neg, num_samples, class_ratios, mirror_axes, body)
        steps += _patch_augmentations(scan_gain_augmentation, coarse_channels if coarse_augmentation else 0, intensity_augmentation)
    return T.Compose(steps)


def _patch_augmentations(scan_gain: bool, coarse_channels: int, intensity: bool) -> list[Any]:
    """The training patch's augmentations after mirroring: a scan gain (:class:`medseg.patch_augmentation.RandScanGaind`), the coarse channels'
    (:class:`medseg.coarse_augmentation.RandCoarseMorphologyd`, the last ``coarse_channels``), nnU-Net's intensity ones."""
    from medseg.coarse_augmentation import RandCoarseMorphologyd
    from medseg.patch_augmentation import RandScanGaind, intensity_augmentations

    augment = [RandScanGaind("image")] if scan_gain else []
    augment += [RandCoarseMorphologyd("image", coarse_channels)] if coarse_channels else []
    return augment + (intensity_augmentations("image") if intensity else [])


def _patch_steps(
    keys: list[str],
    roi_size: Sequence[int],
    pos_neg: tuple[float, float],
    num_samples: int,
    class_ratios: Sequence[float] | None,
    mirror_axes: Sequence[int],
    body: ChannelRecipe | None = None,
) -> list[Any]:
    """Training patches: padded to ``roi_size``, centred by class ratios (or foreground:background), mirrored;
    ``body``: the class ratios' centres only inside the body when all channels are min-max (CT) in this recipe."""
    from monai import transforms as T

    ct = body is not None and set(body.names) == {"minmax"}
    indices: list[Any] = []
    if class_ratios is not None:  # where each label lies, found once and cached, not scanned for every patch
        indices = [BodyClassIndicesd(body, len(class_ratios)) if ct else _class_indices(len(class_ratios))]
    key = BodyClassIndicesd.KEY if indices else None
    centred = (  # keys, label key, patch size, ratios, classes, patches
        T.RandCropByLabelClassesd(
            keys, "label", tuple(roi_size), list(class_ratios), len(class_ratios), num_samples, indices_key=key, warn=False
        )
        if class_ratios is not None
        else T.RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=tuple(roi_size), pos=pos_neg[0], neg=pos_neg[1], num_samples=num_samples
        )
    )
    mirrors = [T.RandFlipd(keys=keys, prob=0.5, spatial_axis=int(axis)) for axis in mirror_axes]
    return [T.SpatialPadd(keys=keys, spatial_size=tuple(roi_size)), *indices, centred, *mirrors]


def _class_indices(num_classes: int) -> Any:
    """MONAI's ``ClassesToIndicesd`` under :attr:`BodyClassIndicesd.KEY`: each label's voxels, at most
    :attr:`BodyClassIndicesd.PER_CLASS` evenly spread (nnU-Net keeps 10,000 a class).

    Deterministic, so cached. Without it ``RandCropByLabelClassesd`` scans the whole label for every item: 60-70 ms of
    a 0.25 s iteration on a 1 mm brain hemisphere (1 thread), about as long as the step on two 32^3 patches."""
    from monai import transforms as T

    postfix = BodyClassIndicesd.KEY.removeprefix("label")  # ClassesToIndicesd names its output key + postfix
    return T.ClassesToIndicesd(
        keys="label", num_classes=num_classes, indices_postfix=postfix, max_samples_per_class=BodyClassIndicesd.PER_CLASS
    )


#: intensity normalisations of :func:`preprocessing`
NORMALIZATIONS = ("minmax", "zscore")


def _intensity_steps(
    keys: list[str], normalization: str | Sequence[str], window: Any, record_raw_zero: bool = False, bias_correction: bool = False
) -> list[Any]:
    """Intensity normalisation of each channel and the crop to the body, in the order each needs.

    The crop happens in training AND inference: a network trained on cropped volumes never sees
    large air regions, and labels them at random (measured: whole-volume tumour Dice 0.001 from
    false positives in the air); predictions are resampled back onto the full input grid. The body is the union
    of the channels' bodies: min-max channels are rescaled first and their body is what lies above the window's
    floor; z-score channels are cropped first (their body: above Otsu's threshold) and normalised inside the crop.
    With one channel this is exactly the single-modality chain the measured recipes were chosen with.
    ``record_raw_zero``: the z-score step also stores where each channel's raw 0 lies (:class:`medseg.patch_augmentation.RandScanGaind` needs it).
    ``bias_correction``: N4 on the z-score channels first (:class:`medseg.bias_field.N4Corrected`).
    """
    from monai import transforms as T

    from medseg.bias_field import N4Corrected

    recipe = ChannelRecipe(normalization, window)
    crop = T.CropForegroundd(keys=keys, source_key="image", select_fn=ChannelBody(recipe), margin=2, allow_smaller=True)
    corrected = [N4Corrected(recipe)] if bias_correction else []
    return [*corrected, ChannelNormalized(recipe, "minmax"), crop, ChannelNormalized(recipe, "zscore", record_raw_zero=record_raw_zero)]


class ChannelRecipe:
    """The normalisation and window of each input channel.

    Args:
        normalization: one of :data:`NORMALIZATIONS` for every channel, or a list with one per channel
            (a multi-parametric MR with a CT channel: ``["zscore", "minmax"]``).
        window: ``(input_min, input_max)`` for every min-max channel, ``None`` (each image's own range), or a
            list with one window (or ``None``) per channel.
    """

    def __init__(self, normalization: str | Sequence[str], window: Any = None) -> None:
        names = [normalization] if isinstance(normalization, str) else list(normalization)
        bad = [n for n in names if n not in NORMALIZATIONS]
        if bad or not names:
            raise ValueError(
                f"normalization={normalization!r} is invalid; expected one of {NORMALIZATIONS} or a list of them, one per channel."
            )
        per_channel = window is not None and any(w is None or isinstance(w, (list, tuple)) for w in window)
        windows = [None if w is None else tuple(w) for w in window] if per_channel else [None if window is None else tuple(window)]
        if any(w is not None and len(w) != 2 for w in windows):
            raise ValueError(f"window={window!r} is invalid; expected (min, max), None, or one of those per channel.")
        self.broadcast = isinstance(normalization, str) and not per_channel
        self.names, self.windows = names, windows
        if not self.broadcast and len(names) != len(windows) and not (len(names) == 1 or len(windows) == 1):
            raise ValueError(f"normalization lists {len(names)} channels but window lists {len(windows)}.")

    def channels(self, count: int, source: str = "image") -> list[tuple[str, tuple[float, float] | None]]:
        """``(normalization, window)`` of each of ``count`` channels; raises when the lists name another count."""
        names = self.names * count if len(self.names) == 1 else self.names
        windows = self.windows * count if len(self.windows) == 1 else self.windows
        if len(names) != count or len(windows) != count:
            raise VolumeError(
                f"{source}: {count} channel(s), but the bundle normalises {max(len(names), len(windows))} "
                f"(normalization={self.names}, window={self.windows}); give each case the bundle's channels."
            )
        return list(zip(names, windows))


def _source(data: Any, key: str = "image") -> str:
    meta = getattr(data.get(key), "meta", {}) if isinstance(data, dict) else {}
    return str(meta.get("filename_or_obj", key))


class ChannelNormalize(Transform):
    """``(C, *spatial)`` -> the same, with each channel whose recipe is ``scheme`` normalised on its own:
    ``"minmax"`` with :class:`shared.MinMax` and the channel's window, ``"zscore"`` with :class:`BodyZScore`.

    Args:
        recipe: each channel's normalisation and window.
        scheme: which channels this step normalises (one of :data:`NORMALIZATIONS`); the others pass unchanged.
    """

    def __init__(self, recipe: ChannelRecipe, scheme: str) -> None:
        self.recipe, self.scheme = recipe, scheme

    def _normalise(self, channel: Any, window: tuple[float, float] | None, c: int, raw_zeros: list[float]) -> Any:
        if self.scheme == "zscore":
            mean, sd = BodyZScore.stats(channel)
            raw_zeros[c] = -mean / sd
            return (channel - mean) / sd
        from shared.transforms import MinMax

        lo, hi = window if window else (None, None)
        return MinMax(input_min=lo, input_max=hi)(channel, name=f"image channel {c}")

    def __call__(self, image: Any, source: str = "image", raw_zeros: list[float] | None = None) -> Any:
        """``source``: how a channel-count error names the image; ``raw_zeros``: a list that receives, per channel,
        the value a raw 0 takes after a z-score (NaN for the channels this step leaves alone)."""
        import torch

        recipes = self.recipe.channels(image.shape[0], source)
        zeros = [float("nan")] * len(recipes)
        if raw_zeros is not None:
            raw_zeros[:] = zeros
        if all(name != self.scheme for name, _ in recipes):
            return image
        parts = [
            self._normalise(image[c : c + 1], window, c, zeros) if name == self.scheme else image[c : c + 1]
            for c, (name, window) in enumerate(recipes)
        ]
        if raw_zeros is not None:
            raw_zeros[:] = zeros
        return parts[0] if len(parts) == 1 else torch.cat([torch.as_tensor(p, dtype=torch.float32) for p in parts])


class ChannelNormalized(MapTransform):
    """Dictionary version of :class:`ChannelNormalize` on ``keys`` (default ``"image"``)."""

    def __init__(self, recipe: ChannelRecipe, scheme: str, keys: Any = "image", record_raw_zero: bool = False) -> None:
        super().__init__(keys)
        self.normalize = ChannelNormalize(recipe, scheme)
        self.record_raw_zero = record_raw_zero

    def __call__(self, data: Any) -> Any:
        out = dict(data)
        for key in self.key_iterator(out):
            zeros: list[float] = []
            out[key] = self.normalize(out[key], _source(data, key), zeros)
            if self.record_raw_zero:  # ``KEY_raw_zero``: (C,) float32, for RandScanGaind after the crops
                out[f"{key}{RAW_ZERO_SUFFIX}"] = np.asarray(zeros, dtype=np.float32)
        return out


class ChannelBody(Transform):
    """``(C, *spatial)`` -> boolean ``(C, *spatial)``: each channel's body (min-max channels, already rescaled: above 0;
    z-score channels: :class:`AboveOtsu`). ``CropForegroundd`` crops to their union."""

    def __init__(self, recipe: ChannelRecipe) -> None:
        self.recipe = recipe

    def __call__(self, image: Any) -> Any:
        import torch

        recipes = self.recipe.channels(image.shape[0])
        masks = [image[c : c + 1] > 0 if name == "minmax" else AboveOtsu()(image[c : c + 1]) for c, (name, _) in enumerate(recipes)]
        return masks[0] if len(masks) == 1 else torch.cat([torch.as_tensor(m) for m in masks])


class BodyClassIndicesd(MapTransform):
    """Where patches of each label may be centred (``RandCropByLabelClassesd``'s ``indices_key``, :attr:`KEY`): its
    voxels inside the body (:class:`ChannelBody`, union over channels; a label with none there keeps all of them).

    Otherwise background centres fall in the air about half the time (the demo's cropped volumes); MONAI's tutorials
    restrict negative centres alike (``image_threshold``). Off by default: on the demo (3 minutes, 9 seeds each) it
    changed neither the Dice nor how often a false tumour appears in plain tissue. :func:`preprocessing` uses it for
    min-max (CT) channels only: on the MNI152 brain the z-score body (Otsu) kept background patches off the tissue
    around the brain (seed 1: validation Dice 0.83 against 0.94 at about 950 iterations). At most :attr:`PER_CLASS` evenly spread centres per label (nnU-Net
    keeps 10,000 per class). Deterministic, so cached, and the crop no longer scans the volume for every patch.
    """

    KEY = "label_cls_indices"
    PER_CLASS = 10_000

    def __init__(self, recipe: ChannelRecipe, num_classes: int, keys: Any = "label", image_key: str = "image") -> None:
        super().__init__(keys)
        self.body, self.num_classes, self.image_key = ChannelBody(recipe), num_classes, image_key

    def __call__(self, data: Any) -> Any:
        import torch
        from monai.transforms.utils import map_classes_to_indices

        out = dict(data)
        for key in self.key_iterator(out):
            inside = torch.as_tensor(self.body(out[self.image_key])).any(0, keepdim=True).to(torch.uint8)
            indices = map_classes_to_indices(out[key], self.num_classes, inside, 0, self.PER_CLASS)
            if any(len(i) == 0 for i in indices):
                everywhere = map_classes_to_indices(out[key], self.num_classes, max_samples_per_class=self.PER_CLASS)
                indices = [i if len(i) else e for i, e in zip(indices, everywhere)]
            out[self.KEY] = indices
        return out


class AboveOtsu(Transform):
    """``image -> image > t`` with ``t`` Otsu's threshold of the image: the body of an MR scan, background
    (zero, or noise of any level) below. A class, not a lambda, so cached datasets can pickle it."""

    def __call__(self, image: Any) -> Any:
        from skimage.filters import threshold_otsu

        values = np.asarray(image, dtype=np.float32)
        return image > (threshold_otsu(values) if values.min() < values.max() else values.min())


class BodyZScore(Transform):
    """MR z-score per scan: subtract the mean and divide by the standard deviation of the body voxels
    (:class:`AboveOtsu`), applied to every voxel so the background lies far below the tissue. ``(C, *spatial)`` or any
    array -> the same shape, float.

    Not MONAI's ``NormalizeIntensity(nonzero=True)``: it normalises only the non-zero voxels and leaves a
    zero background at 0, which after the shift is the body's mean intensity. Measured on the MNI152 T1
    (a zero background): the network then labelled the background next to the brain as grey matter
    (unseen-hemisphere grey-matter precision 0.73), and on a copy with background noise (no zeros, so
    every voxel was "body") it put grey-matter blobs in the noise (precision 0.62).
    """

    @staticmethod
    def stats(image: Any) -> tuple[float, float]:
        """``(mean, sd)`` of the body voxels (all voxels when none is above Otsu's threshold; sd 1 when flat)."""
        body = np.asarray(AboveOtsu()(image), dtype=bool)
        values = np.asarray(image, dtype=np.float64)[body] if body.any() else np.asarray(image, dtype=np.float64)
        mean, sd = float(values.mean()), float(values.std())
        return mean, (sd if sd > 0 else 1.0)

    def __call__(self, image: Any) -> Any:
        mean, sd = self.stats(image)
        return (image - mean) / sd


class BodyZScored(MapTransform):
    """Dictionary version of :class:`BodyZScore` on ``keys`` (default ``"image"``)."""

    def __init__(self, keys: Any = "image") -> None:
        super().__init__(keys)

    def __call__(self, data: Any) -> Any:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = BodyZScore()(out[key])
        return out
