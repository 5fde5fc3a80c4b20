"""Click-guided refinement of a tumour label map: each click corrects the labels in a window around it.

:func:`refine` takes the raw (4, Z, Y, X) stack, the current labels and every click so far (oldest first, see
:mod:`.clicks`) and returns new labels. It works in a bounded window centred on the newest click, so that a
click costs about a second on a laptop CPU; its inputs never change. Outside the window only region growing's
border fit (below) changes voxels, on the tumour's border. Every click inside the window holds: its voxel ends
with its label.

Two methods, chosen by ``model``:

* ``None`` (the default): **click-seeded region growing** on the four normalised, lightly smoothed
  modalities. A click looks at the voxels of its voxel's current label (say background, for a click on missed
  oedema) and takes those that look more like its neighbourhood than like the rest of that label (nearest
  mean, per-channel spread of that label, within :data:`MAX_DISTANCE`) and are joined to it. How far it
  reaches follows from where the click lies. Where the window holds voxels that already carry the click's
  label (the tumour, for a click that adds tumour; the background, for a "not tumour" click), the error is
  taken to be a shell on their border (the simulated user clicks mid-way through it): the click takes voxels
  no further from them than itself (:data:`SHELL_FACTOR`), within :data:`SHELL_REACH_PER_DEPTH` times its
  depth of it. This keeps a click on missed oedema from reaching far into look-alike brain beyond it.
  Elsewhere (a lesion the labels missed altogether), and for a click that adds necrosis or enhancing tumour to
  the background (missed core lies beside the tumour, not round it as oedema does), it reaches
  :data:`REACH_PER_DEPTH` times its depth. Holes are filled.
  A "not tumour" click on a tumour component that lies wholly in the window and holds under
  :data:`ISLAND_SHARE` of all the tumour removes the component (a false island, not the tumour).
  Then, for a click that adds or removes tumour, a **border fit** lets the click reach along the whole
  tumour's border, beyond the window: a per-case score of the smoothed modalities (least squares on them and
  their squares) is fitted to the labels in a band round the border and to the clicks (weighted), and the
  band is relabelled by it; only changes joined to a click that asks for them are kept (added voxels become
  oedema, removed ones are oedema only), none if they would change over :data:`MAX_BORDER_CHANGE` of the
  tumour. The labels' own border, calibrated by the clicks, says where faint oedema ends on this case. No
  training needed.
* a path: a **click-conditioned network** (DeepEdit's idea): a segmentation UNet with extra input channels,
  one Gaussian map per click label (:func:`clicks.guidance_maps`) and the current labels' WT/TC/ET masks,
  initialised from a segmentation model with the new channels' weights at zero (so that it starts as that
  model: :func:`refinement_network`) and trained with ``napari-brainseg train-refine``. Its checkpoint says
  which guidance encoding it expects (:data:`GUIDANCE`); a checkpoint of another kind is refused.

Example (a synthetic case whose oedema the labels missed; one click on it, as the benchmark's user clicks):
    >>> import numpy as np
    >>> from napari_brainseg.clicks import next_click
    >>> from napari_brainseg.synthetic import synthetic_case
    >>> images, truth = synthetic_case(shape=(48, 56, 40))
    >>> image = np.stack([images[m] for m in ("flair", "t1", "t1ce", "t2")]).astype(np.float32)
    >>> labels = np.where(truth == 2, 0, truth).astype(np.uint8)
    >>> click = next_click(labels, truth)
    >>> click[3]
    2
    >>> refined = refine(image, labels, [click])
    >>> bool((refined == 2).sum() > (labels == 2).sum()), refined.dtype
    (True, dtype('uint8'))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .clicks import CLICK_LABELS, BrainVoxels, Click, check_clicks, guidance_maps
from .devices import cpu_threads
from .labels import (
    BACKGROUND, ED, ET, NCR, REGION_NAMES, VALID_LABELS, LabelError, labels_from_regions, regions_from_labels,
)
from .preprocess import Z_SCORE, centre_and_spread, tumour_to_exclude

REFINEMENT = "click-refinement"
"""The ``kind`` of a click-refinement checkpoint (:class:`model.ModelInfo`)."""
GUIDANCE: dict[str, Any] = {
    "encoding": "gaussian-clicks+current-regions",
    "version": 1,
    "click_labels": list(CLICK_LABELS),
    "sigma": 3.0,
    "current_regions": list(REGION_NAMES),
    "window": [64, 64, 64],
}
"""The guidance encoding of this version: after the four modalities, one Gaussian map (``sigma`` voxels) per
click label, then the current labels' WT/TC/ET masks; the network sees a ``window`` around the newest click."""
GUIDANCE_CHANNELS = len(CLICK_LABELS) + len(REGION_NAMES)

GROWING_WINDOW = (64, 96, 96)
"""The region growing's window (z, y, x) around the newest click: room for a missed shell round a large tumour."""
BORDER_BAND = (4.0, 6.0)
"""The border fit relabels voxels up to this many voxels inside and outside the tumour's border (in
:data:`BAND_METRIC`'s distance: 0.05 s against 0.88 s for the Euclidean one on a 3 M-voxel box)..."""
BAND_METRIC = "taxicab"
BORDER_SMOOTHING = (1.0, 3.0)
"""... by a score of each normalised modality smoothed at these Gaussian widths (voxels) and their squares..."""
CLICK_WEIGHT = 0.05
"""... fitted to the labels in the band and to every click (its voxel and six neighbours), each click weighing
this share of the band's voxels..."""
MAX_BORDER_CHANGE = 0.2
"""... and keeps no change when it would change more than this share of the tumour's voxels (0: no border fit)."""
_CLICK_NEIGHBOURHOOD = ndimage.generate_binary_structure(3, 1)
"""The voxels a click speaks for in the border fit: its own and its six face neighbours."""
CLICK_RADIUS = 2
"""A click's look is the mean of its voxel's label's voxels within this many voxels of it."""
MIN_REST_VOXELS = 20
MAX_DISTANCE = 1.5
"""A voxel joins a click only within this root-mean-square distance of the click's look, per channel, in units
of the spread of the label it leaves."""
MIN_REACH, MAX_REACH = 6.0, 24.0
REACH_PER_DEPTH = 3.0
"""Away from its label's voxels, a click reaches this many times its depth in its voxel's label region
(voxels), within the two bounds."""
SHELL_FACTOR = 1.0
"""Beside its label's voxels, a click takes voxels up to this many times its own distance from them (below 1
the click would shut itself out; 1.2, 1.5 and 2 did worse on the click benchmark, see the README)..."""
MIN_SHELL = 2.0
"""... and at least this many voxels from them..."""
SHELL_REACH_PER_DEPTH, MAX_SHELL_REACH = 8.0, 64.0
"""... within this many times its depth (voxels) of it, at most :data:`MAX_SHELL_REACH`."""
MAX_USEFUL_DEPTH = max(MAX_REACH / REACH_PER_DEPTH, MAX_SHELL_REACH / SHELL_REACH_PER_DEPTH)
"""A click deeper than this in its region reaches as far as one this deep (its reach is at its bound)."""
ISLAND_SHARE = 0.5
"""A "not tumour" click removes a whole tumour component only when it holds less than this share of the tumour."""
SMOOTHING = 1.0
"""Gaussian smoothing (voxels) of the modalities before they are compared: less noise, smoother regions."""
_BRAIN_SAMPLE = 7
"""Brain statistics for normalisation are taken from every this-many-th voxel (fast, and as good)."""


def refine(
    image: np.ndarray,
    labels: np.ndarray,
    clicks: Sequence[Sequence[int]],
    device: str = "cpu",
    model: str | Path | None = None,
) -> np.ndarray:
    """New (Z, Y, X) uint8 labels after the ``clicks`` (oldest first); see the module doc.

    ``model`` is ``None`` for region growing, or a click-refinement checkpoint. Raises
    :class:`~.clicks.ClickError`, :class:`~.labels.LabelError` or :class:`~.model.CheckpointError` with a
    message for people on bad input, before anything is computed.
    """
    image, labels = _checked_inputs(image, labels)
    clicks = check_clicks(clicks, labels.shape, BrainVoxels(image))
    network = None if model is None else load_refinement_model(model)
    size = GROWING_WINDOW if network is None else tuple(network[1].guidance["window"])
    box = click_window(clicks[-1][:3], labels.shape, size)
    brain = np.any(image[(slice(None), *box)] != 0, axis=0)
    if network is None:
        statistics = brain_statistics(image)
        window = _grow_clicks(image, labels, brain, clicks, box, statistics)
    else:
        window = _run_network(network, image, labels, brain, clicks, box, device)
    inside = [c for c in clicks if all(s.start <= v < s.stop for v, s in zip(c[:3], box))]
    for z, y, x, label in inside:
        window[z - box[0].start, y - box[1].start, x - box[2].start] = label
    out = labels.astype(np.uint8, copy=True)
    out[box] = window
    if network is None and _moves_border(labels, clicks[-1]):
        _fit_border(image, out, labels, clicks, statistics)
    return out


def _checked_inputs(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, labels = np.asarray(image), np.asarray(labels)
    if image.ndim != 4 or image.shape[0] != 4:
        raise ValueError(f"The image must be the (4, Z, Y, X) stack of FLAIR, T1, T1ce, T2; got shape {image.shape}.")
    if labels.shape != image.shape[1:]:
        raise LabelError(f"The labels' shape {labels.shape} differs from the image's {image.shape[1:]}.")
    present = np.flatnonzero(np.bincount(labels.ravel())) if labels.dtype == np.uint8 else np.unique(labels)
    extra = set(present.tolist()) - VALID_LABELS
    if extra:
        raise LabelError(f"The labels hold values {sorted(extra)} outside the BraTS labels {{0, 1, 2, 4}}.")
    return image, labels


def click_window(centre: Sequence[int], shape: Sequence[int], size: Sequence[int]) -> tuple[slice, slice, slice]:
    """A box of ``size`` (smaller where the volume is) centred on ``centre``, shifted to lie inside ``shape``."""
    box = []
    for c, n, s in zip(centre, shape, size):
        s = min(s, n)
        start = min(max(int(c) - s // 2, 0), n - s)
        box.append(slice(start, start + s))
    return tuple(box)


def brain_statistics(image: np.ndarray, normalisation: str = Z_SCORE,
                     exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel centre and spread (:func:`.preprocess.centre_and_spread`) over brain (non-zero) voxels outside
    ``exclude`` (a (Z, Y, X) mask, say the tumour), from a regular sample of them (of all brain voxels, the
    excluded ones too, where the sample holds none)."""
    sample = image.reshape(image.shape[0], -1)[:, ::_BRAIN_SAMPLE]
    brain = np.any(sample != 0, axis=0)
    if exclude is not None:
        brain &= ~exclude.ravel()[::_BRAIN_SAMPLE]
    if not brain.any():
        sample, brain = image.reshape(image.shape[0], -1), np.any(image != 0, axis=0).ravel()
    values = sample[:, brain].astype(np.float64)
    centre, spread = zip(*(centre_and_spread(channel, normalisation) for channel in values))
    return np.array(centre), np.maximum(np.array(spread), 1e-6)


def _normalised_window(image: np.ndarray, brain: np.ndarray, box: tuple[slice, ...],
                       statistics: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The window of the image normalised by ``statistics`` (:func:`brain_statistics`), 0 outside its ``brain``."""
    centre, spread = (np.asarray(s, np.float32)[:, None, None, None] for s in statistics)
    crop = ((image[(slice(None), *box)] - centre) / spread).astype(np.float32, copy=False)
    crop *= brain
    return crop


# --- click-seeded region growing ---------------------------------------------------------------------
def _grow(data: np.ndarray, current: np.ndarray, brain: np.ndarray, click: Click) -> np.ndarray:
    """The voxels a click turns to its label: joined to it through voxels of its voxel's current label that
    look more like the click's neighbourhood than like the rest of that label, within its reach (module doc)."""
    z, y, x, label = click
    region = (current == current[z, y, x]) & brain
    if current[z, y, x] == label:
        return np.zeros(current.shape, dtype=bool)
    grid = np.indices(current.shape, sparse=True)
    to_voxel = sum((g - v) ** 2 for g, v in zip(grid, (z, y, x)))
    near = to_voxel <= CLICK_RADIUS**2
    sample, rest = region & near, region & ~near
    if rest.sum() < MIN_REST_VOXELS:  # nearly all the region is at the click: it all goes
        grown = region
    else:
        spread = data[:, rest].std(axis=1) + 1e-3
        to_click = (((data - data[:, sample].mean(axis=1)[:, None, None, None]) / spread[:, None, None, None]) ** 2)
        to_rest = (((data - data[:, rest].mean(axis=1)[:, None, None, None]) / spread[:, None, None, None]) ** 2)
        to_click, to_rest = to_click.mean(axis=0), to_rest.mean(axis=0)
        grown = region & (to_click < to_rest) & (to_click < MAX_DISTANCE**2)
    depth = _depth(region, (z, y, x), MAX_USEFUL_DEPTH)
    side = click_side(current, brain, click)
    if side.any() and not _adds_core(current, click):
        from_side = ndimage.distance_transform_edt(~side)
        grown &= from_side <= max(SHELL_FACTOR * from_side[z, y, x], MIN_SHELL)
        reach = np.clip(SHELL_REACH_PER_DEPTH * depth, MIN_REACH, MAX_SHELL_REACH)
    else:
        reach = np.clip(REACH_PER_DEPTH * depth, MIN_REACH, MAX_REACH)
    grown &= to_voxel <= reach**2
    grown[z, y, x] = True
    components, _ = ndimage.label(grown)
    grown = components == components[z, y, x]
    return ndimage.binary_fill_holes(grown) & region


def _depth(region: np.ndarray, voxel: tuple[int, int, int], cap: float) -> float:
    """The Euclidean distance from ``voxel`` to the nearest voxel outside ``region`` (the array's edge is not
    outside), at most ``cap``: a distance transform of a box of ``cap`` round the voxel only."""
    r = int(np.ceil(cap))
    near = tuple(slice(max(v - r, 0), v + r + 1) for v in voxel)
    local = region[near]
    if local.all():
        return cap
    return min(float(ndimage.distance_transform_edt(local)[tuple(v - s.start for v, s in zip(voxel, near))]), cap)


def click_side(current: np.ndarray, brain: np.ndarray, click: Click) -> np.ndarray:
    """The voxels that already carry what the click says: the tumour for a click that adds tumour, the
    background for a "not tumour" click, else its class."""
    z, y, x, label = click
    if current[z, y, x] == BACKGROUND:
        return current != BACKGROUND
    if label == BACKGROUND:
        return (current == BACKGROUND) & brain
    return current == label


def _adds_core(current: np.ndarray, click: Click) -> bool:
    """Whether a click adds necrosis or enhancing tumour to the background: a lesion the labels missed beside the
    tumour, never a shell round it as missed oedema is, so it grows without the shell's bounds."""
    z, y, x, label = click
    return current[z, y, x] == BACKGROUND and label in (NCR, ET)


def _grow_clicks(image: np.ndarray, labels: np.ndarray, brain: np.ndarray, clicks: Sequence[Click],
                 box: tuple[slice, ...], statistics: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The window's labels after each of its clicks in turn, oldest first (a click already obeyed does nothing)."""
    current = labels[box].copy()
    origin = [s.start for s in box]
    local = [(*(int(v - o) for v, o in zip(c[:3], origin)), c[3]) for c in clicks
             if all(s.start <= v < s.stop for v, s in zip(c[:3], box))]
    _remove_islands(current, local, np.count_nonzero(labels))
    data = ndimage.gaussian_filter(_normalised_window(image, brain, box, statistics), (0, *[SMOOTHING] * 3))
    for click in local:
        current[_grow(data, current, brain, click)] = click[3]
    return current


def _remove_islands(window: np.ndarray, local: Sequence[Click], tumour_voxels: int) -> None:
    """Erase the tumour component under each "not tumour" click when it lies wholly inside the window and
    holds under :data:`ISLAND_SHARE` of the ``tumour_voxels`` of the whole volume."""
    negatives = [c for c in local if c[3] == BACKGROUND and window[c[:3]] != BACKGROUND]
    if not negatives:
        return
    components, _ = ndimage.label(window != BACKGROUND, structure=np.ones((3, 3, 3), dtype=bool))
    border = np.zeros(window.shape, dtype=bool)
    border[[0, -1]], border[:, [0, -1]], border[:, :, [0, -1]] = True, True, True
    touching = set(np.unique(components[border]).tolist())
    sizes = np.bincount(components.ravel())
    for z, y, x, _ in negatives:
        component = components[z, y, x]
        if component and component not in touching and sizes[component] < ISLAND_SHARE * tumour_voxels:
            window[components == component] = BACKGROUND


# --- the border fit ----------------------------------------------------------------------------------
def _moves_border(labels: np.ndarray, click: Click) -> bool:
    """Whether a click adds tumour to the background or removes it (rather than correcting a class)."""
    z, y, x, label = click
    return (label == BACKGROUND) != (labels[z, y, x] == BACKGROUND)


def _tumour_box(labels: np.ndarray, clicks: Sequence[Click], margin: int) -> tuple[slice, ...]:
    """The bounding box of the tumour and the clicks, ``margin`` voxels wider on every side (inside the volume)."""
    tumour = ndimage.find_objects((labels != BACKGROUND).view(np.uint8))[0]
    points = np.array([[s.start for s in tumour], [s.stop - 1 for s in tumour], *(c[:3] for c in clicks)])
    low, high = points.min(axis=0) - margin, points.max(axis=0) + 1 + margin
    return tuple(slice(max(int(lo), 0), min(int(hi), n)) for lo, hi, n in zip(low, high, labels.shape))


def _border_features(window: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (voxels, features) design of the ``mask``'s voxels: each smoothed modality, its square, and 1 (the
    filters run on :func:`.devices.cpu_threads` threads: scipy releases the GIL)."""
    def smooth(task: tuple[np.ndarray, float]) -> np.ndarray:
        return ndimage.gaussian_filter(*task)[mask]

    with ThreadPoolExecutor(cpu_threads()) as pool:
        smoothed = np.stack(list(pool.map(smooth, [(channel, s) for channel in window for s in BORDER_SMOOTHING])))
    return np.column_stack([smoothed.T, smoothed.T**2, np.ones(smoothed.shape[1], np.float32)])


def _fit_border(image: np.ndarray, labels: np.ndarray, before: np.ndarray, clicks: Sequence[Click],
                statistics: tuple[np.ndarray, np.ndarray]) -> None:
    """Move the tumour's border (in place) where a score fitted to the labels and the clicks says (module doc).

    ``before`` holds the labels before region growing: what it changed joins a change to its click.
    """
    tumour_voxels = np.count_nonzero(labels)
    if not tumour_voxels:
        return
    box = _tumour_box(labels, clicks, int(max(BORDER_BAND) + 3 * max(BORDER_SMOOTHING)) + 2)
    brain = np.any(image[(slice(None), *box)] != 0, axis=0)
    window, tumour = labels[box], labels[box] != BACKGROUND
    inside, outside = (ndimage.distance_transform_cdt(mask, metric=BAND_METRIC) for mask in (tumour, ~tumour))
    band = brain & (inside <= BORDER_BAND[0]) & (outside <= BORDER_BAND[1])
    asked, says_tumour = _click_neighbourhoods(clicks, box, brain)
    fitted = band | asked
    target = np.where(asked, says_tumour, tumour)[fitted].astype(np.float64)
    weight = np.where(asked, CLICK_WEIGHT * band.sum() / _CLICK_NEIGHBOURHOOD.sum(), 1.0)[fitted]
    design = _border_features(_normalised_window(image, brain, box, statistics), fitted).astype(np.float64)
    coefficients = np.linalg.lstsq(design * np.sqrt(weight)[:, None], target * np.sqrt(weight), rcond=None)[0]
    scored = tumour.copy()
    scored[fitted] = design @ coefficients > 0.5
    was_tumour = before[box] != BACKGROUND
    added = _joined(scored & ~tumour, asked & says_tumour, tumour & ~was_tumour)
    removed = _joined(tumour & ~scored & (window == ED), asked & ~says_tumour, was_tumour & ~tumour)
    if added.sum() + removed.sum() > MAX_BORDER_CHANGE * tumour_voxels:
        return
    window[added], window[removed] = ED, BACKGROUND
    for z, y, x, label in clicks:
        labels[z, y, x] = label


def _click_neighbourhoods(clicks: Sequence[Click], box: tuple[slice, ...],
                          brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In the ``box``: the brain voxels each click speaks for (its voxel and six neighbours; the newest click's
    word on a voxel wins), and whether it says tumour there."""
    asked, says_tumour = np.zeros(brain.shape, bool), np.zeros(brain.shape, bool)
    for *voxel, label in clicks:
        local = [v - s.start for v, s in zip(voxel, box)]
        keep = tuple(slice(max(1 - v, 0), 3 - max(v + 2 - n, 0)) for v, n in zip(local, brain.shape))
        near = tuple(slice(max(v - 1, 0), min(v + 2, n)) for v, n in zip(local, brain.shape))
        spoken = _CLICK_NEIGHBOURHOOD[keep] & brain[near]
        asked[near] |= spoken
        says_tumour[near] = np.where(spoken, label != BACKGROUND, says_tumour[near])
    return asked, says_tumour


def _joined(change: np.ndarray, seeds: np.ndarray, grown: np.ndarray) -> np.ndarray:
    """The voxels of ``change`` joined to a ``seeds`` voxel through ``change`` and what region growing ``grown``."""
    components, _ = ndimage.label(change | grown)
    kept = np.unique(components[seeds & (change | grown)])
    return np.isin(components, kept[kept > 0]) & change


# --- the click-conditioned network --------------------------------------------------------------------
def refinement_network(base: str | Path = "bundled"):
    """A click-refinement network made from a segmentation checkpoint, and its ``ModelInfo``.

    The first layer's weights for the guidance channels are zero, so it segments exactly as ``base`` does
    whatever the clicks, until trained.
    """
    import torch

    from .context import network_info
    from .model import CONTEXT_ARCH, build_network, load_model

    segmenter, base_info = load_model(base)
    if base_info.arch == CONTEXT_ARCH:  # the click network starts from the segmentation network alone
        segmenter, base_info = segmenter.network, network_info(base_info)
    kept = {k: v for k, v in asdict(base_info).items() if k not in ("parent", "metrics", "training", "created")}
    info = type(base_info)(**kept, parent=base_info.model_id)
    info.kind, info.guidance = REFINEMENT, dict(GUIDANCE)
    info.model_id = f"{base_info.model_id}-clicks"
    info.arch_kwargs = {**{k: v for k, v in base_info.arch_kwargs.items() if k != "core_gate"},  # regions only
                        "in_channels": base_info.arch_kwargs["in_channels"] + GUIDANCE_CHANNELS}
    info.channels = [*base_info.channels, *(f"click:{label}" for label in CLICK_LABELS),
                     *(f"current:{name}" for name in REGION_NAMES)]
    network = build_network(info)
    state = network.state_dict()
    with torch.no_grad():
        for key, weight in segmenter.state_dict().items():
            if state[key].shape != weight.shape:  # a layer reading the input: the new channels start at zero
                widened = torch.zeros_like(state[key])
                widened[:, : weight.shape[1]] = weight
                weight = widened
            state[key] = weight
    network.load_state_dict(state)
    return network.eval(), info


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, mtime: float):
    from .model import CheckpointError, load_model, resolve_model_path

    network, info = load_model(path, kind=REFINEMENT)
    if not info.guidance or info.guidance.get("encoding") != GUIDANCE["encoding"] or \
            info.guidance.get("version", 0) > GUIDANCE["version"]:
        raise CheckpointError(
            f"{resolve_model_path(path).name} expects guidance {info.guidance!r}, which this version of "
            f"napari-brainseg does not make (it makes {GUIDANCE['encoding']!r} version {GUIDANCE['version']}); "
            "update the plugin or use a checkpoint trained with this one."
        )
    return network, info


def load_refinement_model(model: str | Path):
    """The network and ``ModelInfo`` of a click-refinement checkpoint (kept loaded for the next click)."""
    from .model import resolve_model_path

    path = resolve_model_path(model)
    return _load_cached(str(path), path.stat().st_mtime)


def network_input(image_window: np.ndarray, labels_window: np.ndarray, clicks: Sequence[Click],
                  box: Sequence[slice], sigma: float) -> np.ndarray:
    """The (4 + guidance, z, y, x) input of a click network for a normalised image window."""
    return np.concatenate([
        image_window, guidance_maps(clicks, box, sigma), regions_from_labels(labels_window).astype(np.float32),
    ])  # fmt: skip


def _run_network(network, image: np.ndarray, labels: np.ndarray, brain: np.ndarray, clicks: Sequence[Click],
                 box: tuple[slice, ...], device: str) -> np.ndarray:
    import torch

    from .devices import select_device
    from .inference import NET_MULTIPLE

    net, info = network
    statistics = brain_statistics(image, info.normalisation, tumour_to_exclude(labels, info.normalisation))
    x = network_input(_normalised_window(image, brain, box, statistics), labels[box], clicks, box,
                      info.guidance["sigma"])
    pad = [(0, 0)] + [(0, -s % NET_MULTIPLE) for s in x.shape[1:]]
    dev = select_device(device)
    with torch.inference_mode():
        logits = net.to(dev)(torch.from_numpy(np.pad(x, pad))[None].to(dev))[0]
    crop = (slice(None), *(slice(0, s) for s in x.shape[1:]))
    regions = (torch.sigmoid(logits).float().cpu().numpy() > 0.5)[crop] & brain
    return labels_from_regions(regions)


def merge_hand_edits(refined: np.ndarray, current: np.ndarray, last_result: np.ndarray | None,
                     clicks: Sequence[Click]) -> np.ndarray:
    """``refined``, except that voxels painted by hand since ``last_result`` keep their paint unless clicked.

    A voxel counts as painted where ``current`` differs from ``last_result`` (the labels the previous
    refinement returned); ``None`` (no refinement yet) keeps nothing.
    """
    if last_result is None:
        return refined
    painted = current != last_result
    for z, y, x, _ in clicks:
        painted[z, y, x] = False
    out = refined.copy()
    out[painted] = current[painted]
    return out

