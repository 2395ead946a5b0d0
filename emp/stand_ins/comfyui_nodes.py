"""The node classes of the fake ComfyUI: real class names, real input specs, fake work.

Each class mirrors one ComfyUI node (``INPUT_TYPES`` as ``input_types``, ``RETURN_TYPES``,
``OUTPUT_NODE``, ``VALIDATE_INPUTS``, ``IS_CHANGED``) so that validation, caching, ``/object_info``
and the error payloads come out as the real server's. ``run`` does the work on
:mod:`comfyui_images` frames, or simulates it (the sampler sleeps ``--step-ms`` per step).

``BrokerTestSlowProgress`` and ``BrokerTestRaise`` reproduce the custom test nodes the captured
transcripts were made with (see comfyui-samples/README.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from . import comfyui_images as img

MAX_RESOLUTION = 16384
UINT64_MAX = 0xFFFFFFFFFFFFFFFF

SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]  # fmt: skip
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
              "linear_quadratic", "kl_optimal"]  # fmt: skip
PREVIEW_METHODS = ("auto", "latent2rgb", "taesd")
OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\n"
    "TIPS: If the workflow worked before you might have accidentally set the batch_size to a large number."
)

# ------------------------------------------------------------------ exceptions as the server names them


class InterruptProcessingException(Exception):
    """comfy.model_management's: raised at the next check after POST /interrupt."""


InterruptProcessingException.__module__ = "comfy.model_management"


class OutOfMemoryError(RuntimeError):
    """torch.OutOfMemoryError (torch.cuda.OutOfMemoryError is the same class in current torch)."""


OutOfMemoryError.__module__ = "torch"


def full_type_name(klass: type) -> str:
    """execution.py's name for an exception class: ``ValueError``, ``torch.OutOfMemoryError``."""
    if klass.__module__ == "builtins":
        return klass.__qualname__
    return f"{klass.__module__}.{klass.__qualname__}"


# The frames every node failure goes through in execution.py (v0.8.0 line numbers, as captured).
EXEC_FRAMES = [
    ("execution.py", 518, "execute"),
    ("execution.py", 329, "get_output_data"),
    ("execution.py", 303, "_async_map_node_over_list"),
    ("execution.py", 291, "process_inputs"),
]
COMFY_ROOT = "/ComfyUI"


def format_frames(frames: list[tuple[str, int, str]]) -> list[str]:
    """``traceback.format_tb`` lines for frames whose source is not available."""
    return [f'  File "{COMFY_ROOT}/{path}", line {line}, in {fn}\n' for path, line, fn in frames]


class NodeError(Exception):
    """Wraps the exception a node raised with the frame it was raised from."""

    def __init__(self, exc: BaseException, frame: tuple[str, int, str]) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.frame = frame


# ------------------------------------------------------------------ values travelling between nodes


class _Opaque:
    """A model object; ``str()`` looks like the real object's repr in ``current_inputs``."""

    module = "comfy"
    cls = "Object"

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"<{self.module}.{self.cls} object at 0x{id(self):012x}>"


class Model(_Opaque):
    module, cls = "comfy.model_patcher", "ModelPatcher"


class Clip(_Opaque):
    module, cls = "comfy.sd", "CLIP"


class Vae(_Opaque):
    module, cls = "comfy.sd", "VAE"


@dataclass
class Latent:
    width: int
    height: int
    batch: int
    seed: int = 0
    steps: int = 0

    def __str__(self) -> str:
        return f"{{'samples': tensor of shape [{self.batch}, 4, {self.height // 8}, {self.width // 8}]}}"


@dataclass
class Mask:
    width: int
    height: int
    values: bytes

    def __str__(self) -> str:
        return f"tensor of shape [1, {self.height}, {self.width}]"


class Frames(list[img.Frame]):
    """An IMAGE: ``str()`` is the tensor's."""

    def __str__(self) -> str:
        return img.tensor_repr(list(self))


def format_value(value: Any) -> Any:
    """execution.py's ``format_value`` for ``current_inputs``."""
    if value is None or isinstance(value, int | float | bool | str):
        return value
    return str(value)


# ------------------------------------------------------------------ what a node can use while it runs

ProgressFn = Callable[[int, int, tuple[str, img.Frame, int | None] | None], Awaitable[None]]


@dataclass
class RunContext:
    node_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    output_dir: str
    temp_dir: str
    input_dir: str
    step_s: float
    ram_total: int
    preview_method: str
    progress: ProgressFn
    send_text: Callable[[str], None]


# ------------------------------------------------------------------ nodes


class Node:
    """A node class: the attributes are those /object_info reports."""

    name: ClassVar[str] = ""
    display_name: ClassVar[str | None] = None
    category: ClassVar[str] = "sd"
    description: ClassVar[str] = ""
    python_module: ClassVar[str] = "nodes"
    output_node: ClassVar[bool] = False
    return_types: ClassVar[tuple[Any, ...]] = ()
    return_names: ClassVar[tuple[str, ...] | None] = None
    output_tooltips: ClassVar[tuple[str, ...] | None] = None
    validate_args: ClassVar[tuple[str, ...]] = ()
    """Inputs handed to VALIDATE_INPUTS (their min/max/combo checks are then skipped)."""
    unique_id_in_signature: ClassVar[bool] = False
    """V3 nodes with a hidden unique_id (and NOT_IDEMPOTENT ones) are cached per node id."""
    has_is_changed: ClassVar[bool] = False
    source: ClassVar[tuple[str, int, str]] = ("nodes.py", 1, "run")
    """The frame a failure of this node is reported from."""

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {}

    def validate(self, cfg: Any, **inputs: Any) -> Any:
        return True

    def is_changed(self, cfg: Any, **inputs: Any) -> Any:
        return False

    run: Callable[..., Awaitable[tuple[tuple[Any, ...], dict[str, Any] | None]]]
    """``async run(rc, **inputs) -> (outputs, ui or None)``: the node's FUNCTION."""

    def info(self, cfg: Any) -> dict[str, Any]:
        """``/object_info`` entry (server.py ``node_info``)."""
        types = self.input_types(cfg)
        out: dict[str, Any] = {
            "input": types,
            "input_order": {k: list(v.keys()) for k, v in types.items()},
            "output": list(self.return_types),
            "output_is_list": [False] * len(self.return_types),
            "output_name": list(self.return_names or self.return_types),
            "name": self.name,
            "display_name": self.display_name or self.name,
            "description": self.description,
            "python_module": self.python_module,
            "category": self.category,
            "output_node": self.output_node,
        }
        if self.output_tooltips:
            out["output_tooltips"] = list(self.output_tooltips)
        return out


def _int(default: int, lo: int, hi: int, step: int | None = 1, **extra: Any) -> tuple[str, dict[str, Any]]:
    spec: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        spec["step"] = step
    spec.update(extra)
    return ("INT", spec)


class EmptyImage(Node):
    name, category = "EmptyImage", "image"
    return_types = ("IMAGE",)
    source = ("nodes.py", 1901, "generate")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "width": _int(512, 1, MAX_RESOLUTION),
                "height": _int(512, 1, MAX_RESOLUTION),
                "batch_size": _int(1, 1, 4096, None),
                "color": _int(0, 0, 0xFFFFFF, 1, display="color"),
            }
        }

    async def run(self, rc: RunContext, width: int, height: int, batch_size: int = 1, color: int = 0) -> Any:
        wanted = batch_size * height * width * 4  # torch.full([b, h, w, 1]) in float32, the first allocation
        if wanted > rc.ram_total or batch_size * height * width * 3 > FAKE_PIXEL_LIMIT:
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                f"you tried to allocate {wanted} bytes. Error code 12 (Cannot allocate memory)"
            )
        frame = img.solid(width, height, color)
        return (Frames([frame] * batch_size),), None


FAKE_PIXEL_LIMIT = 64 << 20
"""The fake holds pixels in Python bytes: bigger images fail like a CPU allocation failure."""


class ImageInvert(Node):
    name, display_name, category = "ImageInvert", "Invert Image", "image"
    return_types = ("IMAGE",)
    source = ("nodes.py", 1876, "invert")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    async def run(self, rc: RunContext, image: Frames) -> Any:
        return (Frames(img.invert(f) for f in image),), None


UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


class ImageScale(Node):
    name, display_name, category = "ImageScale", "Upscale Image", "image/upscaling"
    return_types = ("IMAGE",)
    source = ("nodes.py", 1853, "upscale")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (list(UPSCALE_METHODS),),
                "width": _int(512, 0, MAX_RESOLUTION),
                "height": _int(512, 0, MAX_RESOLUTION),
                "crop": (["disabled", "center"],),
            }
        }

    async def run(self, rc: RunContext, image: Frames, upscale_method: str, width: int, height: int, crop: str) -> Any:
        if width == 0 and height == 0:
            return (image,), None
        out = Frames()
        for f in image:
            w, h = width, height
            if w == 0:
                w = max(1, round(f.width * h / f.height))
            elif h == 0:
                h = max(1, round(f.height * w / f.width))
            src = img.crop_center(f, w, h) if crop == "center" else f
            out.append(img.resize(src, w, h, upscale_method))
        return (out,), None


class GetImageSize(Node):
    name, display_name, category = "GetImageSize", "Get Image Size", "image"
    description = "Returns width and height of the image, and passes it through unchanged."
    python_module = "comfy_extras.nodes_images"
    return_types = ("INT", "INT", "INT")
    return_names = ("width", "height", "batch_size")
    unique_id_in_signature = True
    source = ("comfy_extras/nodes_images.py", 641, "execute")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE", {})}, "hidden": {"unique_id": "UNIQUE_ID"}}

    async def run(self, rc: RunContext, image: Frames, unique_id: str | None = None) -> Any:
        width, height, batch = image[0].width, image[0].height, len(image)
        rc.send_text(f"width: {width}, height: {height}\n batch size: {batch}")
        return (width, height, batch), None


def save_images(
    rc: RunContext, images: Frames, prefix: str, base_dir: str, kind: str, level: int, prompt: Any, extra: Any
) -> dict[str, Any]:
    """SaveImage.save_images: ``<base>/<subfolder>/<name>_<counter:05>_.png``, counter past the highest."""
    first = images[0]
    if "%" in prefix:
        now = time.localtime()
        for key, value in {
            "%width%": first.width, "%height%": first.height, "%year%": now.tm_year,
            "%month%": f"{now.tm_mon:02}", "%day%": f"{now.tm_mday:02}", "%hour%": f"{now.tm_hour:02}",
            "%minute%": f"{now.tm_min:02}", "%second%": f"{now.tm_sec:02}",
        }.items():  # fmt: skip
            prefix = prefix.replace(key, str(value))
    subfolder = os.path.dirname(os.path.normpath(prefix))
    filename = os.path.basename(os.path.normpath(prefix))
    folder = os.path.join(base_dir, subfolder)
    if os.path.commonpath((base_dir, os.path.abspath(folder))) != base_dir:
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {os.path.abspath(folder)}\n         output_dir: {base_dir}"
            f"\n         commonpath: {os.path.commonpath((base_dir, os.path.abspath(folder)))}"
        )
    counter = 1
    try:
        taken = []
        for entry in os.listdir(folder):
            head = entry[: len(filename) + 1]
            try:
                digits = int(entry[len(filename) + 1 :].split("_")[0])
            except ValueError:
                digits = 0
            if os.path.normcase(head[:-1]) == os.path.normcase(filename) and head[-1:] == "_":
                taken.append(digits)
        if taken:
            counter = max(taken) + 1
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    text: list[tuple[str, str]] = []
    if prompt is not None:
        text.append(("prompt", json.dumps(prompt)))
    for key, value in (extra or {}).items():
        text.append((key, json.dumps(value)))
    results = []
    for batch_number, frame in enumerate(images):
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(img.encode_png(frame, text, level))
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return {"images": results}


class SaveImage(Node):
    name, display_name, category = "SaveImage", "Save Image", "image"
    description = "Saves the input images to your ComfyUI output directory."
    output_node = True
    source = ("nodes.py", 1625, "save_images")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": "The prefix for the file to save. This may include formatting information such as "
                        "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
                    },
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    async def run(
        self, rc: RunContext, images: Frames, filename_prefix: str = "ComfyUI", prompt: Any = None,
        extra_pnginfo: Any = None,
    ) -> Any:  # fmt: skip
        return (), save_images(rc, images, filename_prefix, rc.output_dir, "output", 4, prompt, extra_pnginfo)


class PreviewImage(SaveImage):
    name, display_name = "PreviewImage", "Preview Image"

    def __init__(self) -> None:
        self.prefix_append = "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    async def run(self, rc: RunContext, images: Frames, prompt: Any = None, extra_pnginfo: Any = None) -> Any:  # type: ignore[override]
        prefix = "ComfyUI" + self.prefix_append
        return (), save_images(rc, images, prefix, rc.temp_dir, "temp", 1, prompt, extra_pnginfo)


def annotated_path(name: str, default_dir: str, dirs: dict[str, str]) -> str:
    """folder_paths.get_annotated_filepath: ``name.png [output]`` picks the output dir, and so on."""
    for kind in ("output", "input", "temp"):
        if name.endswith(f"[{kind}]"):
            return os.path.join(dirs[kind], name[: -len(kind) - 3])
    return os.path.join(default_dir, name)


class LoadImage(Node):
    name, display_name, category = "LoadImage", "Load Image", "image"
    return_types = ("IMAGE", "MASK")
    validate_args = ("image",)
    has_is_changed = True
    source = ("nodes.py", 1697, "load_image")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        files = []
        if os.path.isdir(cfg.input_dir):
            for f in os.listdir(cfg.input_dir):
                kind = mimetypes.guess_type(f)[0] or ""
                if os.path.isfile(os.path.join(cfg.input_dir, f)) and kind.split("/")[0] == "image":
                    files.append(f)
        return {"required": {"image": (sorted(files), {"image_upload": True})}}

    def validate(self, cfg: Any, image: Any = None, **_: Any) -> Any:
        if not isinstance(image, str) or not os.path.exists(annotated_path(image, cfg.input_dir, cfg.dirs)):
            return f"Invalid image file: {image}"
        return True

    def is_changed(self, cfg: Any, image: str = "", **_: Any) -> Any:
        with open(annotated_path(image, cfg.input_dir, cfg.dirs), "rb") as fh:
            return hashlib.sha256(fh.read()).digest().hex()

    async def run(self, rc: RunContext, image: str) -> Any:
        path = annotated_path(
            image, rc.input_dir, {"input": rc.input_dir, "output": rc.output_dir, "temp": rc.temp_dir}
        )
        with open(path, "rb") as fh:
            frame = img.decode_any(fh.read())
        if frame.alpha is not None:
            mask = Mask(frame.width, frame.height, bytes(255 - a for a in frame.alpha))
        else:
            mask = Mask(64, 64, bytes(64 * 64))
        return (Frames([img.Frame(frame.width, frame.height, frame.rgb)]), mask), None


class SaveImageWebsocket(Node):
    name, category, python_module = (
        "SaveImageWebsocket",
        "api node/image/Websocket",
        "custom_nodes.websocket_image_save",
    )
    output_node = True
    has_is_changed = True
    source = ("custom_nodes/websocket_image_save.py", 36, "save_images")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",)}}

    def is_changed(self, cfg: Any, **_: Any) -> Any:
        return time.time()

    async def run(self, rc: RunContext, images: Frames) -> Any:
        for step, frame in enumerate(images):
            await rc.progress(step, len(images), ("PNG", frame, None))
        return (), None


class BrokerTestSlowProgress(Node):
    """The captured test node: passes the image through, one ProgressBar update per ``delay`` seconds."""

    name, category, python_module = "BrokerTestSlowProgress", "broker/test", "custom_nodes.broker_test_nodes"
    return_types = ("IMAGE",)
    source = ("custom_nodes/broker_test_nodes.py", 45, "run")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "steps": _int(5, 1, 10000),
                "delay": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 60.0, "step": 0.01}),
                "preview": ("BOOLEAN", {"default": False}),
                "seed": _int(0, 0, UINT64_MAX),
            }
        }

    async def run(self, rc: RunContext, image: Frames, steps: int, delay: float, preview: bool, seed: int) -> Any:
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            await rc.progress(step, steps, ("JPEG", image[0], 512) if preview else None)
        return (image,), None


class BrokerTestRaise(Node):
    """The captured test node: raises ``kind`` with ``message`` (OutOfMemoryError is torch's)."""

    name, category, python_module = "BrokerTestRaise", "broker/test", "custom_nodes.broker_test_nodes"
    return_types = ("IMAGE",)

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "kind": (["ValueError", "RuntimeError", "OutOfMemoryError"],),
                "message": ("STRING", {"default": "deliberate failure from BrokerTestRaise"}),
                "seed": _int(0, 0, UINT64_MAX),
            }
        }

    async def run(self, rc: RunContext, image: Frames, kind: str, message: str, seed: int) -> Any:
        where = "custom_nodes/broker_test_nodes.py"
        if kind == "OutOfMemoryError":
            raise NodeError(OutOfMemoryError(message), (where, 76, "run"))
        if kind == "RuntimeError":
            raise NodeError(RuntimeError(message), (where, 78, "run"))
        raise NodeError(ValueError(message), (where, 79, "run"))


class CheckpointLoaderSimple(Node):
    name, display_name, category = "CheckpointLoaderSimple", "Load Checkpoint", "loaders"
    description = "Loads a diffusion model checkpoint, diffusion models are used to denoise latents."
    return_types = ("MODEL", "CLIP", "VAE")
    output_tooltips = (
        "The model used for denoising latents.",
        "The CLIP model used for encoding text prompts.",
        "The VAE model used for encoding and decoding images to and from latent space.",
    )
    source = ("nodes.py", 586, "load_checkpoint")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {"ckpt_name": (list(cfg.models), {"tooltip": "The name of the checkpoint (model) to load."})}
        }

    async def run(self, rc: RunContext, ckpt_name: str) -> Any:
        return (Model(ckpt_name), Clip(ckpt_name), Vae(ckpt_name)), None


class CLIPTextEncode(Node):
    name, display_name, category = "CLIPTextEncode", "CLIP Text Encode (Prompt)", "conditioning"
    description = (
        "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model "
        "towards generating specific images."
    )
    return_types = ("CONDITIONING",)
    output_tooltips = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    source = ("nodes.py", 77, "encode")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            }
        }

    async def run(self, rc: RunContext, text: str, clip: Clip) -> Any:
        return ([[f"cond:{text}", {"pooled_output": None}]],), None


class EmptyLatentImage(Node):
    name, display_name, category = "EmptyLatentImage", "Empty Latent Image", "latent"
    description = "Create a new batch of empty latent images to be denoised via sampling."
    return_types = ("LATENT",)
    output_tooltips = ("The empty latent image batch.",)

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "width": _int(512, 16, MAX_RESOLUTION, 8, tooltip="The width of the latent images in pixels."),
                "height": _int(512, 16, MAX_RESOLUTION, 8, tooltip="The height of the latent images in pixels."),
                "batch_size": _int(1, 1, 4096, None, tooltip="The number of latent images in the batch."),
            }
        }

    async def run(self, rc: RunContext, width: int, height: int, batch_size: int = 1) -> Any:
        return (Latent(width, height, batch_size),), None


class KSampler(Node):
    """Sleeps ``--step-ms`` per step, reporting ``progress`` 1..steps of steps (and, when a preview
    method is on, a JPEG preview per step as the real latent previewer does)."""

    name, category = "KSampler", "sampling"
    description = "Uses the provided model, positive and negative conditioning to denoise the latent image."
    return_types = ("LATENT",)
    output_tooltips = ("The denoised latent.",)
    source = ("comfy/samplers.py", 1049, "sample")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
                "seed": _int(0, 0, UINT64_MAX, None, control_after_generate=True,
                             tooltip="The random seed used for creating the noise."),
                "steps": _int(20, 1, 10000, None, tooltip="The number of steps used in the denoising process."),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "sampler_name": (list(SAMPLERS),),
                "scheduler": (list(SCHEDULERS),),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }  # fmt: skip

    async def run(
        self, rc: RunContext, model: Model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
        positive: Any, negative: Any, latent_image: Latent, denoise: float = 1.0,
    ) -> Any:  # fmt: skip
        lw, lh = max(1, latent_image.width // 8), max(1, latent_image.height // 8)
        for step in range(steps):
            await asyncio.sleep(rc.step_s)
            preview = None
            if rc.preview_method in PREVIEW_METHODS:
                preview = ("JPEG", img.gradient(lw, lh, seed + step), 512)
            await rc.progress(step + 1, steps, preview)
        return (Latent(latent_image.width, latent_image.height, latent_image.batch, seed, steps),), None


class VAEDecode(Node):
    name, display_name, category = "VAEDecode", "VAE Decode", "latent"
    description = "Decodes latent images back into pixel space images."
    return_types = ("IMAGE",)
    output_tooltips = ("The decoded image.",)
    source = ("nodes.py", 294, "decode")

    def input_types(self, cfg: Any) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."}),
            }
        }

    async def run(self, rc: RunContext, samples: Latent, vae: Vae) -> Any:
        w, h = samples.width // 8 * 8, samples.height // 8 * 8
        frames = Frames(img.gradient(w, h, samples.seed + i) for i in range(samples.batch))
        return (frames,), None


NODE_CLASSES: dict[str, type[Node]] = {
    cls.name: cls
    for cls in (
        CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode, SaveImage, PreviewImage,
        LoadImage, ImageScale, ImageInvert, EmptyImage, GetImageSize, SaveImageWebsocket, BrokerTestSlowProgress,
        BrokerTestRaise,
    )
}  # fmt: skip
"""Every class the fake serves, in /object_info order."""
