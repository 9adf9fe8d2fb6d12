"""What ``bench/kernels_on_cpu.py`` runs: one :class:`KernelCheck` per kernel, cases as data.

A :class:`KernelCheck` says how to make inputs for a case's parameters, how to launch the kernel
through the package's :class:`~trt_pose_td.cuda.launchers.Kernels` (buffers in guarded host memory
whose addresses are the device pointers), what its numpy twin returns, and the tolerance. A
:class:`Case` is one row: the check, the line it is reported on (``group``), its parameters, and
whether it belongs to the default (CI) set or only to ``--full``.

A new kernel is a few lines: a ``make`` / ``run`` / ``twin`` triple in :data:`CHECKS` and its rows
in :func:`cases`. Tolerances: the twins reproduce the kernels' float operations one for one, so
every check expects 0; DARK allows float32 rounding of the coordinate for libdevice's double
``log`` (:func:`dark_tolerance`, measured with ``--math-ulps``, docs/gpu-runtime.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from trt_pose_td.cuda import twins

from . import inputs
from .host_driver import HostMemory

Params = Dict[str, Any]
Inputs = Dict[str, Any]


def dark_tolerance(p: Params) -> float:
    """px allowed between the DARK kernel and its twin: two float32 spacings at the largest
    coordinate (6.1e-5 px at 256). libdevice's double log (within 1 ulp) is not glibc's / numpy's;
    measured with --math-ulps, log results 10^6 ulps off move no float32 output and 10^9 ulps
    move a few by float32 roundings of the coordinate: never a different DARK decision."""
    return 2.0 * float(np.spacing(np.float32(max(input_size(p)))))


def input_size(p: Params) -> Tuple[int, int]:
    """(W, H) of the keypoint network input of a heatmap case (default: stride 4)."""
    h, w = p["hw"]
    return p.get("size", (w * 4, h * 4))


@dataclass(frozen=True)
class KernelCheck:
    """kernel: the .cu function(s) it launches; make(rng, params) -> inputs;
    run(kernels, stream, memory, inputs) -> the kernel's output; twin(inputs) -> the twin's;
    tolerance(params) -> max |kernel - twin| allowed; math: the kernel calls libm functions."""

    kernel: str
    make: Callable[[np.random.Generator, Params], Inputs]
    run: Callable[[Any, Any, HostMemory, Inputs], np.ndarray]
    twin: Callable[[Inputs], np.ndarray]
    tolerance: Callable[[Params], float] = lambda p: 0.0
    math: bool = False


@dataclass(frozen=True)
class Case:
    """One row. refused: the host code must refuse the case before any launch, and the twin
    too, both with an error containing this text."""

    check: str
    group: str
    name: str
    params: Params = field(default_factory=dict)
    full: bool = False
    schedule: str = "free"
    refused: str = ""


def put(memory: HostMemory, array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` in guarded "device" memory."""
    out = memory.array(array.shape, array.dtype)
    out[...] = array
    return out


def put_frame(memory: HostMemory, frame: np.ndarray, pad: int) -> Tuple[np.ndarray, int]:
    """An (H, W, 3) uint8 frame in guarded "device" memory with ``pad`` bytes after each row
    (they stay poisoned, 0xff): the (H, pitch) rows and the pitch in bytes."""
    h, w = frame.shape[:2]
    pitch = 3 * w + pad
    src = memory.array((h, pitch), np.uint8)
    src[:, :3 * w] = frame.reshape(h, 3 * w)
    return src, pitch


# -- warp ----------------------------------------------------------------------------------------
def make_warp(rng: np.random.Generator, p: Params) -> Inputs:
    w, h = p.get("frame", (160, 120))
    return {"frame": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "affines": inputs.crop_maps(rng, p["boxes"], p["n"], (w, h), p["out"]),
            "out": p["out"], "mean": rng.uniform(0, 255, 3), "std": rng.uniform(1, 80, 3),
            "order": p.get("order", "bgr"), "border": float(rng.integers(0, 256)),
            "dtype": np.dtype(p["dtype"]), "pad": p.get("pad", 0)}


def run_warp(kernels: Any, stream: Any, memory: HostMemory, x: Inputs) -> np.ndarray:
    h, w = x["frame"].shape[:2]
    src, pitch = put_frame(memory, x["frame"], x["pad"])
    params = put(memory, twins.warp_params(x["affines"]))
    (ow, oh), n = x["out"], len(params)
    out = memory.array((n, 3, oh, ow), x["dtype"])
    kernels.warp(stream, src.ctypes.data, (w, h), pitch, params.ctypes.data, n, out.ctypes.data,
                 (ow, oh), x["mean"], x["std"], x["order"], x["border"], x["dtype"], out.nbytes)
    return out.copy()


def twin_warp(x: Inputs) -> np.ndarray:
    return twins.warp_batch_twin(x["frame"], x["affines"], x["out"], x["mean"], x["std"],
                                 x["order"], x["border"], x["dtype"])


# -- multi-frame warp (what the GPU pipeline crops and letterboxes with) ---------------------
def make_frames(rng: np.random.Generator, p: Params) -> Inputs:
    """Frames of different sizes and row paddings; items spread over them in random order,
    written at 256-byte aligned offsets with gaps (as chunk starts are padded)."""
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in p["frames"]]
    owner = rng.integers(0, len(frames), p["n"])
    affines = np.concatenate([
        inputs.crop_maps(rng, p["boxes"], 1, (f.shape[1], f.shape[0]), p["out"])
        for f in (frames[i] for i in owner)]) if p["n"] else np.zeros((0, 2, 3), np.float32)
    return {"frames": frames, "owner": owner, "affines": affines, "out": p["out"],
            "mean": rng.uniform(0, 255, 3), "std": rng.uniform(1, 80, 3),
            "order": p.get("order", "bgr"), "border": float(rng.integers(0, 256)),
            "dtype": np.dtype(p["dtype"]), "pad": p.get("pad", 0)}


def _frame_offsets(x: Inputs) -> np.ndarray:
    """Element offsets of the items: each item's slot rounded up to 256 bytes plus a gap."""
    (ow, oh), size = x["out"], x["dtype"].itemsize
    step = -(-(3 * oh * ow * size + 64) // 256) * 256 // size
    return np.arange(len(x["owner"]), dtype=np.int64) * step


def run_frames(kernels: Any, stream: Any, memory: HostMemory, x: Inputs) -> np.ndarray:
    table = []
    for i, frame in enumerate(x["frames"]):
        src, pitch = put_frame(memory, frame, x["pad"] * (i % 2))  # every other one padded
        table.append((src.ctypes.data, frame.shape[1], frame.shape[0], pitch))
    frames = put(memory, twins.warp_frame_table(table))
    offsets = _frame_offsets(x)
    items = put(memory, twins.warp_items(x["affines"], x["owner"], offsets))
    (ow, oh), n = x["out"], len(offsets)
    extent = int(offsets[-1]) + 3 * oh * ow
    out = memory.array((extent,), x["dtype"])
    kernels.warp_frames(stream, frames.ctypes.data, items.ctypes.data, n, out.ctypes.data,
                        (ow, oh), x["mean"], x["std"], x["order"], x["border"], x["dtype"],
                        extent, out.nbytes)
    return np.stack([out[o:o + 3 * oh * ow] for o in offsets]).reshape(n, 3, oh, ow)


def twin_frames(x: Inputs) -> np.ndarray:
    return twins.warp_frames_twin(x["frames"], x["owner"], x["affines"], x["out"], x["mean"],
                                  x["std"], x["order"], x["border"], x["dtype"])


# -- flip-average (the --flip test-time augmentation) -------------------------------------------
def make_flip(rng: np.random.Generator, p: Params) -> Inputs:
    """Random outputs of ``n`` crops and their mirrored crops for one role of a real decoder,
    the gather from that decoder's own CPU flip-back."""
    from trt_pose_td.decode import KEYPOINT_DECODERS
    from trt_pose_td.skeleton import flip_permutation

    shape, role = tuple(p["shape"]), p["role"]
    shapes = {r: shape for r in KEYPOINT_DECODERS[p["decoder"]].roles}
    gather = twins.flip_gathers(KEYPOINT_DECODERS[p["decoder"]].flip_back, shapes,
                                flip_permutation())[role]
    return {"a": rng.random((p["n"], *shape), dtype=np.float32),
            "b": rng.random((p["n"], *shape), dtype=np.float32), "gather": gather}


def run_flip(kernels: Any, stream: Any, memory: HostMemory, x: Inputs) -> np.ndarray:
    a, b, gather = put(memory, x["a"]), put(memory, x["b"]), put(memory, x["gather"])
    n, item = len(x["a"]), int(np.prod(x["a"].shape[1:]))
    kernels.flip_average(stream, a.ctypes.data, b.ctypes.data, gather.ctypes.data, item, n,
                         a.nbytes)
    return a.copy()


def twin_flip(x: Inputs) -> np.ndarray:
    return twins.flip_average_twin(x["a"], x["b"], x["gather"])


# -- decoders ------------------------------------------------------------------------------------
def make_heatmaps(rng: np.random.Generator, p: Params) -> Inputs:
    h, w = p["hw"]
    return {"maps": inputs.heatmaps(rng, p["kind"], p["n"], p.get("k", 17), h, w),
            "size": input_size(p), "refine": p["refine"],
            "cell_offset": p.get("cell_offset", 0.5)}


def run_heatmaps(kernels: Any, stream: Any, memory: HostMemory, x: Inputs) -> np.ndarray:
    n, k, h, w = x["maps"].shape
    maps = put(memory, x["maps"])
    out = memory.array((n * k, 3), np.float32)
    kernels.decode_heatmaps(stream, maps.ctypes.data, n * k, (h, w), x["size"], x["refine"],
                            out.ctypes.data, x["cell_offset"], out.nbytes)
    return out.copy()


def twin_heatmaps(x: Inputs) -> np.ndarray:
    kpts, scores = twins.decode_heatmaps_twin(x["maps"], x["size"], x["refine"], x["cell_offset"])
    return np.concatenate([kpts.reshape(-1, 2), scores.reshape(-1, 1)], 1)


def make_simcc(rng: np.random.Generator, p: Params) -> Inputs:
    n, k, (lx, ly) = p["n"], p.get("k", 17), p["lengths"]
    return {"x": inputs.simcc(rng, p["kind"], n, k, lx),
            "y": inputs.simcc(rng, p["kind"], n, k, ly), "split": p.get("split", 2.0)}


def run_simcc(kernels: Any, stream: Any, memory: HostMemory, x: Inputs) -> np.ndarray:
    n, k, lx = x["x"].shape
    sx, sy = put(memory, x["x"]), put(memory, x["y"])
    out = memory.array((n * k, 3), np.float32)
    kernels.decode_simcc(stream, sx.ctypes.data, lx, sy.ctypes.data, x["y"].shape[2], n * k,
                         x["split"], out.ctypes.data, out.nbytes)
    return out.copy()


def twin_simcc(x: Inputs) -> np.ndarray:
    kpts, scores = twins.decode_simcc_twin(x["x"], x["y"], x["split"])
    return np.concatenate([kpts.reshape(-1, 2), scores.reshape(-1, 1)], 1)


CHECKS: Dict[str, KernelCheck] = {
    "warp": KernelCheck("warp_affine_f32/_f16", make_warp, run_warp, twin_warp),
    "frames": KernelCheck("warp_frames_f32/_f16", make_frames, run_frames, twin_frames),
    "flip": KernelCheck("flip_average", make_flip, run_flip, twin_flip),
    "heatmaps": KernelCheck("decode_heatmaps", make_heatmaps, run_heatmaps, twin_heatmaps,
                            lambda p: dark_tolerance(p) if p["refine"] == "dark" else 0.0,
                            math=True),
    "simcc": KernelCheck("decode_simcc", make_simcc, run_simcc, twin_simcc),
}


# -- the cases -----------------------------------------------------------------------------------
def _rows(check: str, group: str, base: Params, variants: List[Tuple[str, Params]],
          full: bool = False, schedule: str = "free") -> List[Case]:
    return [Case(check, group, name, {**base, **p}, full, schedule) for name, p in variants]


def warp_cases() -> List[Case]:
    out: List[Case] = []
    for dtype, group in (("float32", "warp_affine_f32"), ("float16", "warp_affine_f16")):
        base = {"dtype": dtype, "out": (24, 32), "n": 4}
        out += _rows("warp", group, base, [
            (kind, {"boxes": kind, "order": ("bgr", "rgb")[i % 2]})
            for i, kind in enumerate(inputs.BOX_KINDS)])
        out += _rows("warp", group, base, [
            ("1 crop 48x64", {"boxes": "partly", "n": 1, "out": (48, 64)}),
            ("64 crops 12x16", {"boxes": "partly", "n": 64, "out": (12, 16)}),
            ("64 crops 48x64", {"boxes": "mixed", "n": 64, "out": (48, 64)}),
            ("padded row pitch", {"boxes": "partly", "pad": 13}),
            ("odd output 7x5, 1x1 frame", {"boxes": "huge", "out": (7, 5), "frame": (1, 1)}),
            ("frame 1x37", {"boxes": "partly", "frame": (1, 37)}),
        ])
        out += _rows("warp", group, base, [
            ("64 crops 192x256", {"boxes": "partly", "n": 64, "out": (192, 256)}),
            ("letterbox 416", {"boxes": "letterbox", "n": 1, "out": (416, 416),
                               "frame": (640, 480)}),
            ("huge boxes 1080p", {"boxes": "huge", "n": 8, "out": (96, 128),
                                  "frame": (1920, 1080)}),
        ] + [(f"{kind} 96x128 x 17", {"boxes": kind, "n": 17, "out": (96, 128)})
             for kind in inputs.BOX_KINDS], full=True)
    return out


def frames_cases() -> List[Case]:
    out: List[Case] = []
    for dtype, group in (("float32", "warp_frames_f32"), ("float16", "warp_frames_f16")):
        base = {"dtype": dtype, "out": (24, 32), "n": 6, "pad": 13,
                "frames": [(160, 120), (37, 6), (64, 48)]}
        out += _rows("frames", group, base, [
            (f"3 frames, {kind}", {"boxes": kind, "order": ("bgr", "rgb")[i % 2]})
            for i, kind in enumerate(("partly", "mirror", "mixed"))])
        out += _rows("frames", group, base, [
            ("1 frame, 1 item", {"boxes": "inside", "n": 1, "frames": [(50, 40)]}),
            ("4 letterboxes 416", {"boxes": "letterbox", "n": 4, "out": (416, 416),
                                   "frames": [(640, 480), (320, 240)]}),
            ("8 frames, 64 crops 12x16", {"boxes": "mixed", "n": 64, "out": (12, 16),
                                          "frames": [(80 + 9 * i, 60 + 5 * i)
                                                     for i in range(8)]}),
        ])
        out += _rows("frames", group, base, [
            ("4 cameras 1080p, 40 crops 192x256", {"boxes": "mixed", "n": 40,
                                                   "out": (192, 256),
                                                   "frames": [(1920, 1080)] * 4}),
        ] + [(f"{kind} x 17", {"boxes": kind, "n": 17}) for kind in inputs.BOX_KINDS],
            full=True)
    return out


def flip_cases() -> List[Case]:
    group = "flip_average"
    return (_rows("flip", group, {"decoder": "heatmap", "role": "heatmaps"}, [
                ("1 crop 17x64x48 heatmaps", {"n": 1, "shape": (17, 64, 48)}),
                ("40 crops 17x8x6 heatmaps", {"n": 40, "shape": (17, 8, 6)}),
                ("3 crops 17x1x1 heatmaps", {"n": 3, "shape": (17, 1, 1)})])
            + _rows("flip", group, {"decoder": "simcc", "n": 5}, [
                ("5 crops SimCC x 17x384", {"role": "simcc_x", "shape": (17, 384)}),
                ("5 crops SimCC y 17x512", {"role": "simcc_y", "shape": (17, 512)})])
            + _rows("flip", group, {"decoder": "heatmap", "role": "heatmaps"}, [
                ("64 crops 17x64x48 heatmaps", {"n": 64, "shape": (17, 64, 48)})], full=True))


def heatmap_cases() -> List[Case]:
    out: List[Case] = []
    for refine in ("none", "quarter", "dark"):
        group = f"decode_heatmaps {refine}"
        base = {"refine": refine, "n": 1, "hw": (64, 48)}
        out += _rows("heatmaps", group, base, [
            (kind, {"kind": kind}) for kind in inputs.MAP_KINDS])
        out += _rows("heatmaps", group, base, [
            ("40 persons x 17", {"kind": "mixed", "n": 40}),
            ("1x1 maps", {"kind": "mixed", "hw": (1, 1)}),
            ("2x3 maps", {"kind": "mixed", "hw": (2, 3)}),
            ("1x9 maps", {"kind": "mixed", "hw": (1, 9)}),
            ("9x1 maps", {"kind": "mixed", "hw": (9, 1)}),
            ("8x8: fewer pixels than threads", {"kind": "gaussian", "hw": (8, 8)}),
            ("5x4: smaller than the DARK patch", {"kind": "gaussian", "hw": (5, 4)}),
            ("24x200: map wider than the DARK blur", {"kind": "gaussian", "hw": (24, 200)}),
            ("input 200x300, cell offset 0", {"kind": "gaussian", "size": (200, 300),
                                              "cell_offset": 0.0}),
        ])
        if refine == "dark":  # 300 wide: a blur of 69 > MAX_DARK_KERNEL, refused on the host
            out.append(Case("heatmaps", group, "24x300: DARK blur over the kernel's 63",
                            {**base, "kind": "gaussian", "hw": (24, 300)},
                            refused="exceeds the kernel's limit 63"))
        for schedule in ("forward", "reverse"):
            out += _rows("heatmaps", group, {**base, "kind": "mixed", "k": 3},
                         [(f"{schedule} schedule", {})], schedule=schedule)
            out += _rows("heatmaps", group, base, [
                (f"{kind} {schedule} schedule", {"kind": kind}) for kind in inputs.MAP_KINDS],
                full=True, schedule=schedule)
        out += _rows("heatmaps", group, base, [
            ("96x72 maps x 17 x 8", {"kind": "gaussian", "n": 8, "hw": (96, 72)}),
            ("64x274: widest DARK blur (63)", {"kind": "gaussian", "hw": (64, 274), "k": 4}),
        ] + [(f"{kind} x 17 x 4", {"kind": kind, "n": 4}) for kind in inputs.MAP_KINDS],
            full=True)
    return out


def simcc_cases() -> List[Case]:
    group, base = "decode_simcc", {"n": 1, "lengths": (384, 512)}
    return (_rows("simcc", group, base, [(kind, {"kind": kind}) for kind in inputs.MAP_KINDS])
            + _rows("simcc", group, {**base, "kind": "mixed"}, [
                ("40 persons x 17", {"n": 40}),
                ("1 bin", {"lengths": (1, 1)}),
                ("100 / 7 bins, split 1.5", {"lengths": (100, 7), "split": 1.5})])
            + _rows("simcc", group, {**base, "kind": "mixed", "k": 3},
                    [("forward schedule", {})], schedule="forward")
            + _rows("simcc", group, {**base, "kind": "mixed"},
                    [("1 person x 133 (whole body)", {"k": 133})], full=True)
            + _rows("simcc", group, {**base, "kind": "mixed"},
                    [("reverse schedule x 17", {})], full=True, schedule="reverse"))


def cases(full: bool = False) -> List[Case]:
    """The default (CI) set, or with ``full`` every case."""
    every = warp_cases() + frames_cases() + flip_cases() + heatmap_cases() + simcc_cases()
    return [c for c in every if full or not c.full]
