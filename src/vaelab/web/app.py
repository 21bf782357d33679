"""The latent explorer: a local web app that drives a run's decoder by hand (`vaelab explore RUN`).

One static page (plain JavaScript, everything served from here, nothing fetched from outside) and a JSON API
under /api, documented on the OpenAPI page at /docs. The app reads the run directory with the safetensors loader
and calls the model and the analysis code; it holds no numerics of its own.

Endpoints are `async def` (a plain `def` endpoint goes through a thread pool, measured ~50× slower on 2 cores),
and decoding runs on one dedicated worker thread (`DecodeWorker`), so the event loop reads the next requests while
the decoder works.

Every request is validated: codes must have exactly `latent_dim` finite numbers within ±Z_BOUND, uploaded
images must be PNGs of at most MAX_IMAGE_SIDE pixels a side (the limit `vaelab classify` keeps too), bodies over
MAX_BODY_BYTES are refused with 413 before they are read whole, and every refusal is JSON with one clear line
(`vaelab.web.problems`). Static files are served from memory by name; no path from a client ever reaches the
filesystem.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at runtime, and the
# request models are built per app (their lengths depend on the model), where a string annotation could not be
# resolved.

import asyncio
import base64
import binascii
import errno
import io
import secrets
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import numpy as np
import torch
import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vaelab.analysis.directions import DIRECTIONS, read_directions, slider_directions
from vaelab.analysis.factors import shown_name
from vaelab.analysis.interpolation import MODES, interpolate_codes
from vaelab.analysis.samplers import GaussianMixture, read_gmm
from vaelab.analysis.traversal import LatentUsage, latent_usage, load_test_inputs
from vaelab.data.catalog import describe
from vaelab.data.datasets import ImageSet, prepare_inputs
from vaelab.data.description import DatasetDescription
from vaelab.data.image_folder import PREFIX as FOLDER_PREFIX
from vaelab.data.imagefiles import to_array
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.evaluation.latents import dimensions_by_kl, is_weak_dimension
from vaelab.images import MAX_IMAGE_SIDE, display_array, png_bytes
from vaelab.models.base import GenerativeModel
from vaelab.models.registry import refuse_conditional, require_encoder
from vaelab.pretrained import resolve_run, short_run_name
from vaelab.rundir import EVAL, FACTORS, load_model, read_artefact_if_present, read_config
from vaelab.web import problems
from vaelab.web.drawing import prepare_drawing

# A 280×280 canvas drawing is ~10–30 KB as base64 PNG; the pixels of a small image as JSON some tens of KB.
MAX_BODY_BYTES = 256 * 1024
Z_BOUND = 10.0  # |z_i| above this is 10 prior standard deviations out: no code the model was trained on
MAX_INTERPOLATION_STEPS = 256
MAX_SEED = 2**63 - 1
# What the sample button may draw from: nothing is ever fitted on a request, so gmm only when the run has one stored.
OFFERED_SAMPLERS = ("prior", "gmm")

# The page and its files may load only from this server; the docs page needs its inline start-up script.
PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"
DOCS_POLICY = "default-src 'self'; script-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'"
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}


# --- the loaded run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explorer:
    """Everything the app needs from one run directory, loaded once at start-up."""

    model: GenerativeModel  # eval mode, CPU
    description: DatasetDescription  # the dataset's shape, class names and what the page offers as input
    input_mode: str
    test: ImageSet  # the test split: labels and count
    test_inputs: torch.Tensor  # [N, C, H, W]: the test split as the model sees it in evaluation
    usage: LatentUsage  # KL per dimension and active units (eval.json, or estimated from test images)
    factors: dict[int, str]  # dimension → name from factors.json; empty until `vaelab factors` has run
    directions: list[dict[str, Any]]  # one named slider per attribute from directions.json; empty until then
    gmm: GaussianMixture | None  # the run's fitted mixture sampler, if `vaelab sample --sampler gmm` made one
    run: str  # the run as the page names it (`short_run_name`): never a path of the serving machine
    # Class names a conditional model decodes for, in label order; None for an unconditional model (the only
    # kind vaelab trains so far). The page shows its class selector only when /api/info lists classes.
    classes: list[str] | None = None

    @classmethod
    def load(cls, run_dir: str | Path) -> "Explorer":
        run_dir = resolve_run(run_dir)  # `pretrained:NAME` → the shipped model's folder
        data = read_config(run_dir).data
        model = load_model(run_dir)
        refuse_conditional(model, "vaelab explore")
        require_encoder(model, "vaelab explore (it encodes the image you give it)")
        test, test_inputs = load_test_inputs(data)
        usage = latent_usage(run_dir, model, test_inputs)
        if usage.source == str(run_dir / EVAL):  # the file's path on this machine: the page names the run beside it
            usage = replace(usage, source=EVAL)
        return cls(model, describe(data.dataset), data.input_mode, test, test_inputs, usage,
                   read_factor_names(run_dir), read_slider_directions(run_dir), read_gmm(run_dir),
                   short_run_name(run_dir))

    @property
    def dataset(self) -> str:
        return self.description.name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.description.shape

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def samplers(self) -> list[str]:
        return [name for name in OFFERED_SAMPLERS if name != "gmm" or self.gmm is not None]

    def info(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "dataset": shown_dataset(self.dataset),
            "input_mode": self.input_mode,
            "inputs": modelled_inputs(self.image_shape[0], self.input_mode),
            "latent_dim": self.latent_dim,
            "image_shape": list(self.image_shape),
            "input": self.description.explorer_input,
            "test_count": len(self.test),
            "z_bound": Z_BOUND,
            "dims": [
                {"dim": d, "kl": self.usage.kl_per_dim[d], "active": self.usage.active[d],
                 "weak": is_weak_dimension(self.usage.active[d], self.usage.kl_per_dim[d]),
                 "factor": self.factors.get(d)}
                for d in dimensions_by_kl(self.usage.kl_per_dim)
            ],
            "kl_source": self.usage.source,
            "directions": self.directions,
            "samplers": self.samplers(),
            "interpolation_modes": list(MODES),
            "classes": self.classes,
            "max_body_bytes": MAX_BODY_BYTES,
            "max_image_side": MAX_IMAGE_SIDE,
        }

    @torch.inference_mode()
    def decode(self, codes: list[list[float]]) -> np.ndarray:
        """The mean images of p(x|z) for codes `[N, D]`, as float32 `[N, H, W]` (or `[N, H, W, 3]`) in [0, 1]."""
        return display_array(self.model.decode(torch.tensor(codes, dtype=torch.float32))).astype(np.float32)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> tuple[list[float], list[float]]:
        """Posterior mean and log-variance of one input `[1, C, H, W]` as the model sees it."""
        mu, logvar = self.model.encode(x)
        return mu[0].tolist(), logvar[0].tolist()

    def prepare(self, picture: np.ndarray | Image.Image, centre: bool) -> torch.Tensor:
        """A picture → the model's input `[1, C, H, W]`, fed as evaluation feeds test images (binarized with the
        same fixed seed for a binarized model). A dataset of drawings takes a grey picture `[H, W]` in [0, 1] (or a
        PNG, read as bright ink on dark) and prepares it as its images were (`centre`); any other dataset takes an
        image of any size and prepares it as its files were: transparency onto white, the centred square, resized
        to the dataset's size."""
        channels, height, width = self.image_shape
        if isinstance(picture, Image.Image) and self.description.drawing is None:
            pixels = torch.from_numpy(to_array(picture, height, channels))
            return prepare_inputs(pixels[None], self.input_mode, EVAL_SEED)
        if isinstance(picture, Image.Image):
            gray_alpha = np.asarray(picture.convert("LA"), dtype=np.float32) / 255.0
            picture = gray_alpha[..., 0] * gray_alpha[..., 1]  # transparent pixels count as background (black)
        if centre and self.description.drawing is not None:
            picture = prepare_drawing(picture, self.description)
        elif picture.shape != (height, width):
            raise ValueError(f"image: without centre it must be {height}×{width} (got {picture.shape})")
        pixels = torch.from_numpy((np.clip(picture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
        return prepare_inputs(pixels[None, None].expand(1, channels, height, width), self.input_mode, EVAL_SEED)

    def sample(self, sampler: str, seed: int) -> list[float]:
        """One code from the prior or from the fitted mixture, reproducible by seed."""
        generator = torch.Generator().manual_seed(seed)
        if sampler == "gmm" and self.gmm is not None:
            return self.gmm.sample(1, generator)[0].tolist()
        return self.model.sample_prior(1, generator)[0].tolist()


class DecodeWorker:
    """Decodes for every request on one dedicated thread. Codes that arrive while it is busy are decoded together
    in its next pass: a 32-d decode is bound by reading the decoder's weights, so one pass for 8 codes costs little
    more than for 1 (with 8 clients, more decodes/s than one code at a time; docs/results/speed.md). A code decoded in a
    batch gives the numbers of `model.decode` alone up to float rounding (≤ 1e-6 measured; no 8-bit pixel differed
    in 64 codes)."""

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="vaelab-decode")
        self.waiting: list[tuple[list[float], asyncio.Future]] = []
        self.busy = False

    async def decode(self, z: list[float]) -> np.ndarray:
        """The mean image of p(x|z) for one code, float32 `[H, W]` (colour: `[H, W, 3]`) in [0, 1]."""
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        self.waiting.append((z, result))
        if not self.busy:
            self.busy = True
            loop.create_task(self._decode_waiting())
        return await result

    async def _decode_waiting(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    images = await asyncio.get_running_loop().run_in_executor(
                        self.thread, self.explorer.decode, [z for z, _ in batch]
                    )
                except Exception as error:  # each waiting request fails with it (a 500), the worker goes on
                    for _, result in batch:
                        result.set_exception(error)
                    continue
                for (_, result), image in zip(batch, images, strict=True):
                    if not result.done():  # a client that went away leaves a cancelled future
                        result.set_result(image)
        finally:
            self.busy = False

    def close(self) -> None:
        self.thread.shutdown(wait=True, cancel_futures=True)


def shown_dataset(name: str) -> str:
    """A dataset as the page names it: its canonical name, with a folder of images named by the folder's own name
    (`folder:shapes?size=16&channels=3`) rather than by its path on the serving machine."""
    base, _, query = name.partition("?")
    if not base.startswith(FOLDER_PREFIX):
        return name
    folder = Path(unquote(base[len(FOLDER_PREFIX):])).name
    return f"{FOLDER_PREFIX}{folder}" + (f"?{query}" if query else "")


def modelled_inputs(channels: int, input_mode: str) -> str:
    """What the model models, as the page names it: "colour (RGB) intensities", "grey intensities" or "binarized
    grey pixels". Taken from the image channels as well as the input mode: input_mode `intensities` means the
    intensities as they are, which for a three-channel dataset are colours, not grey."""
    colour = "colour (RGB)" if channels == 3 else "grey"
    return f"binarized {colour} pixels" if input_mode == "binarized" else f"{colour} intensities"


def read_factor_names(run_dir: Path) -> dict[int, str]:
    """Dimension → factor name from RUN/factors.json (written by `vaelab factors`), inactive and weak dimensions
    unnamed (`shown_name`); empty when there is none."""
    rows = read_artefact_if_present(run_dir, FACTORS)
    if rows is None:
        return {}
    try:
        return {int(row["dim"]): shown_name(row) for row in rows}
    except (TypeError, KeyError, ValueError) as error:
        path = run_dir / FACTORS
        raise VaelabError(f"{path} is not a factor table ({error}); run `vaelab factors {run_dir}` again") from None


def read_slider_directions(run_dir: Path) -> list[dict[str, Any]]:
    """The named sliders of RUN/directions.json (written by `vaelab directions`), none without it."""
    if not (run_dir / DIRECTIONS).is_file():
        return []
    return slider_directions(read_directions(run_dir))


def picture_png(picture: np.ndarray) -> bytes:
    """float `[H, W]` (grey) or `[H, W, 3]` (colour) in [0, 1] → 8-bit PNG at its own size (the page upscales it,
    pixelated)."""
    return png_bytes(Image.fromarray((np.clip(picture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)))


def read_png(encoded: str) -> Image.Image:
    """Base64 PNG → the decoded image, its size checked from the header before anything is decompressed."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("image: not valid base64") from None
    too_large = f"image: larger than {MAX_IMAGE_SIDE} px a side"
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if max(image.size) > MAX_IMAGE_SIDE:  # from the header, before decompressing anything
                raise ValueError(f"{too_large} ({image.width}×{image.height})")
            image.load()
            return image.copy()
    except Image.DecompressionBombError:  # Pillow's own limit, hit while reading a header far beyond ours
        raise ValueError(too_large) from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ValueError("image: not a readable PNG") from None


# --- HTTP --------------------------------------------------------------------------------------------------------


def _static_files(package: str, names: dict[str, str]) -> dict[str, tuple[bytes, str]]:
    """The named files of the package's `static` folder, read into memory: name → (content, media type)."""
    folder = resources.files(package) / "static"
    return {name: ((folder / name).read_bytes(), media_type) for name, media_type in names.items()}


class RequestModels:
    """The request and response bodies of one run's API: their limits (the code's length, the image's size, the
    test images' count) are the run's, so they are built per app."""

    def __init__(self, explorer: Explorer) -> None:
        coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-Z_BOUND, le=Z_BOUND)]
        code = Annotated[list[coordinate], Field(min_length=explorer.latent_dim, max_length=explorer.latent_dim)]
        intensity = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0.0, le=1.0)]
        _, height, width = explorer.image_shape
        pixel_count = height * width

        class DecodeRequest(BaseModel):
            model_config = ConfigDict(extra="forbid")
            z: code = Field(description=f"The code: exactly {explorer.latent_dim} numbers, each within ±{Z_BOUND}.")
            format: Literal["png", "array"] = Field("png", description=f"A {height}×{width} PNG, or JSON rows of "
                                                                         "[0, 1].")
            label: Annotated[int, Field(strict=True, ge=0)] | None = Field(
                None, description="Class to decode as (conditional models only; see `classes` in /api/info)."
            )

        class EncodeRequest(BaseModel):
            model_config = ConfigDict(extra="forbid")
            test_index: Annotated[int, Field(strict=True, ge=0, lt=len(explorer.test))] | None = Field(
                None, description="Encode this test image."
            )
            image: Annotated[str, Field(max_length=MAX_BODY_BYTES)] | None = Field(
                None, description=f"Base64 PNG, at most {MAX_IMAGE_SIDE} px a side; for a dataset of drawings bright "
                                   "ink on dark (alpha: dark), otherwise any image (alpha: white), cropped and resized."
            )
            pixels: Annotated[list[intensity], Field(min_length=pixel_count, max_length=pixel_count)] | None = Field(
                None, description=f"{pixel_count} intensities in [0, 1], row by row (a {height}×{width} image)."
            )
            centre: bool = Field(True, description="For image/pixels: crop, scale and centre the drawing MNIST-style.")

            @model_validator(mode="after")
            def exactly_one_source(self) -> "EncodeRequest":
                given = [name for name in ("test_index", "image", "pixels") if getattr(self, name) is not None]
                if len(given) != 1:
                    got = ", ".join(given) or "none"
                    raise ValueError(f"give exactly one of test_index, image, pixels (got {got})")
                return self

        class EncodeResponse(BaseModel):
            mu: list[float] = Field(description="Posterior mean.")
            logvar: list[float] = Field(description="Posterior log-variance, log σ².")
            input_png: str = Field(description=f"Base64 PNG of the {height}×{width} input exactly as the model saw it.")
            label: int | None = Field(None, description="The test image's class (test_index only).")
            class_name: str | None = None

        class InterpolateRequest(BaseModel):
            model_config = ConfigDict(extra="forbid")
            start: code
            end: code
            steps: Annotated[int, Field(strict=True, ge=2, le=MAX_INTERPOLATION_STEPS)] = 33
            mode: Literal[MODES] = "linear"

        self.decode, self.encode, self.encoded = DecodeRequest, EncodeRequest, EncodeResponse
        self.interpolate = InterpolateRequest


class SampleResponse(BaseModel):
    z: list[float]
    sampler: str
    seed: int


class InterpolateResponse(BaseModel):
    codes: list[list[float]] = Field(description="`steps` codes from start to end, both included.")


def page_router(title: str) -> APIRouter:
    """The page and its files, and the API's documentation page with Swagger UI's files (from the fastapi-offline
    package: FastAPI's own /docs page loads them from a CDN)."""
    page_files = _static_files("vaelab.web", {"index.html": "text/html", **PAGE_FILES})
    docs_files = _static_files("fastapi_offline", DOCS_FILES)
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page() -> Response:
        content, media_type = page_files["index.html"]
        return Response(content, media_type=media_type, headers={"Content-Security-Policy": PAGE_POLICY})

    @router.get("/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in PAGE_FILES:  # the name is only a key into files read at start-up
            raise HTTPException(404, "no such file")
        content, media_type = page_files[name]
        return Response(content, media_type=media_type, headers={"Content-Security-Policy": PAGE_POLICY})

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json", title=title, swagger_js_url="/docs-files/swagger-ui-bundle.js",
            swagger_css_url="/docs-files/swagger-ui.css", swagger_favicon_url="/docs-files/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the validator service
        )
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    @router.get("/docs-files/{name}")
    async def docs_file(name: str) -> Response:
        if name not in docs_files:
            raise HTTPException(404, "no such file")
        content, media_type = docs_files[name]
        return Response(content, media_type=media_type)

    return router


def info_router(explorer: Explorer) -> APIRouter:
    router = APIRouter()

    @router.get("/api/info")
    async def info() -> dict[str, Any]:
        """The model and what is known about its latents: dimensions ordered by KL (largest first) with their
        factor names from factors.json, the named directions of directions.json (vector, scale, measured ρ and class
        kept), the samplers on offer, and the limits requests must keep to."""
        return explorer.info()

    return router


def decode_router(explorer: Explorer, worker: DecodeWorker, bodies: RequestModels) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/api/decode",
        responses={200: {"content": {"image/png": {}, "application/json": {}}, "description": "The mean image."}},
    )
    async def decode(request: bodies.decode) -> Response:
        """z → the mean image of p(x|z): a PNG of the dataset's size, or `{"image": [[…W numbers…] × H]}`."""
        if request.label is not None and explorer.classes is None:
            raise HTTPException(422, "label: this model is not conditional; leave label out")
        picture = await worker.decode(request.z)
        if request.format == "array":
            return JSONResponse({"image": picture.tolist()})
        return Response(picture_png(picture), media_type="image/png")

    return router


def encode_router(explorer: Explorer, bodies: RequestModels) -> APIRouter:
    router = APIRouter()
    _, height, width = explorer.image_shape

    @router.post("/api/encode")
    async def encode(request: bodies.encode) -> bodies.encoded:
        """An image → posterior mean μ and log σ². The image is a test image by index, a base64 PNG, or H·W
        intensities; a PNG or pixels are prepared the way the dataset's images were unless `centre` is false."""
        label = None
        try:
            if request.test_index is not None:
                x = explorer.test_inputs[request.test_index : request.test_index + 1]
                label = int(explorer.test.labels[request.test_index])
            elif request.image is not None:
                x = explorer.prepare(read_png(request.image), request.centre)
            else:
                pixels = np.asarray(request.pixels, dtype=np.float32).reshape(height, width)
                x = explorer.prepare(pixels, request.centre)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        mu, logvar = explorer.encode(x)
        return bodies.encoded(
            mu=mu, logvar=logvar, input_png=base64.b64encode(picture_png(display_array(x)[0])).decode("ascii"),
            label=label, class_name=None if label is None else explorer.description.class_names[label],
        )

    return router


def codes_router(explorer: Explorer, bodies: RequestModels) -> APIRouter:
    """Codes without an image: drawn from a sampler, or along a path between two codes."""
    router = APIRouter()

    @router.get("/api/sample")
    async def sample(
        sampler: Literal[OFFERED_SAMPLERS] = "prior",
        seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="Random when left out.")] = None,
    ) -> SampleResponse:
        """One code drawn from the prior N(0, I), or from the run's fitted mixture (`gmm`, when /api/info lists
        it). The seed is returned, so any draw can be repeated."""
        if sampler not in explorer.samplers():
            raise HTTPException(422, "sampler: this run has no fitted mixture; run `vaelab sample RUN --sampler gmm`")
        seed = secrets.randbelow(MAX_SEED) if seed is None else seed
        return SampleResponse(z=explorer.sample(sampler, seed), sampler=sampler, seed=seed)

    @router.post("/api/interpolate")
    async def interpolate(request: bodies.interpolate) -> InterpolateResponse:
        """The path of `steps` codes from `start` to `end` (linear or slerp), for the page's scrub slider."""
        path = interpolate_codes(torch.tensor(request.start), torch.tensor(request.end), request.steps, request.mode)
        return InterpolateResponse(codes=path.tolist())

    return router


def create_app(run_dir: str | Path) -> FastAPI:
    """The explorer app for one run directory (loaded now: errors in the run are `VaelabError`s here): the page,
    and the API by concern (info, decode, encode, codes), every refusal one line of JSON."""
    explorer = Explorer.load(run_dir)
    bodies = RequestModels(explorer)
    worker = DecodeWorker(explorer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(
        lifespan=lifespan,
        title="vaelab latent explorer",
        summary=f"Drive the decoder of {explorer.run} ({shown_dataset(explorer.dataset)}, {explorer.latent_dim}-d) "
                "by hand.",
        docs_url=None,  # served by page_router with local files
        redoc_url=None,
        responses={
            413: {"model": problems.Problem, "description": f"The body is over {MAX_BODY_BYTES:,} bytes."},
            422: {"model": problems.Problem, "description": "The request is malformed."},
        },
    )
    problems.install(app, MAX_BODY_BYTES)  # every refusal as JSON with one line; the body limit
    for router in (page_router(app.title), info_router(explorer), decode_router(explorer, worker, bodies),
                   encode_router(explorer, bodies), codes_router(explorer, bodies)):
        app.include_router(router)
    return app


# --- serving -----------------------------------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. A busy port is a `VaelabError`."""
    if not 0 <= port <= 65535:
        raise VaelabError(f"--port must be from 0 to 65535 (got {port})")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not the default 0: only then does asyncio turn Nagle's algorithm off on the accepted
    # connections; without it every answer on a kept-alive connection waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise VaelabError(listen_problem(host, port, error)) from None
    return sock


def listen_problem(host: str, port: int, error: OSError) -> str:
    """One line for a failed bind that names what is wrong (the address, the port) and the option to change."""
    hosts = "use --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every network of this machine)"
    # A name that does not resolve (999.1.1.1, a typo) fails in getaddrinfo; a well-formed address of another
    # machine fails in bind. Either way the port is not the problem.
    if isinstance(error, socket.gaierror) or error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL):
        return f"cannot listen on {host}: not a valid address of this machine ({error.strerror}); {hosts}"
    if error.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host} port {port}: the port is in use (another explorer or server?); choose "
                "another --port, or --port 0 for any free one")
    if error.errno == errno.EACCES:
        return (f"cannot listen on {host} port {port}: ports below 1024 need administrator rights; choose a --port "
                "from 1024 to 65535")
    return f"cannot listen on {host} port {port} ({error.strerror}); check --host and --port"


def server_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(app: FastAPI) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve `app` on the bound socket until interrupted (Ctrl-C)."""
    # One decode is too small to split across threads; on a busy 2-core machine, idle intra-op threads waiting
    # for a core made the p99 of a single decode ~50 ms instead of ~5 ms (measured).
    torch.set_num_threads(1)
    make_server(app).run(sockets=[sock])
