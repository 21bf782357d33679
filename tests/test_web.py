"""The latent explorer, tested as a person and a client would use it: a real uvicorn server on 127.0.0.1, real HTTP
requests, a real headless Chromium driving the page, and a short bounded load test. Every address is loopback."""

from __future__ import annotations

import base64
import http.client
import io
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import launch_chromium, tiny_config
from vaelab.analysis.directions import analyse_directions, slider_directions
from vaelab.analysis.factors import FACTORS, analyse_factors
from vaelab.analysis.samplers import GMM_FILE
from vaelab.analysis.traversal import load_test_inputs
from vaelab.data import load_split
from vaelab.data.catalog import describe
from vaelab.data.shapes import write_shapes_folder
from vaelab.images import make_grid, png_bytes
from vaelab.pretrained import resolve_run
from vaelab.rundir import BEST, CONFIG, load_model, read_config, save_tensors
from vaelab.training import train
from vaelab.web.app import MAX_BODY_BYTES, Explorer, bind_socket, create_app, make_server
from vaelab.web.drawing import prepare_drawing

MNIST = describe("mnist")

HOST = "127.0.0.1"
LATENT_DIM = 8  # the trained_run fixture's


def bare_copy(run_dir: Path, to: Path) -> Path:
    """The run with only what training wrote (the session fixture gains factors.json and a mixture elsewhere)."""
    to.mkdir()
    for name in (CONFIG, BEST):
        shutil.copy(run_dir / name, to / name)
    return to


@pytest.fixture(scope="module")
def analysed_run(trained_run, tmp_path_factory) -> Path:
    """A run after `vaelab factors` and `vaelab directions` and with a stored mixture sampler, as the explorer finds
    a finished run."""
    run = bare_copy(trained_run, tmp_path_factory.mktemp("explorer") / "analysed-tiny-run")
    analyse_factors(run, bases=10, steps=5)
    analyse_directions(run, fit_images=300, edit_count=8, source="encoded")
    # A stored two-component mixture: the explorer only draws from the file `vaelab sample --sampler gmm` leaves.
    means = torch.randn(2, LATENT_DIM, generator=torch.Generator().manual_seed(0))
    save_tensors(run / GMM_FILE, {"weights": torch.tensor([0.3, 0.7], dtype=torch.float64), "means": means,
                                  "cholesky": 0.5 * torch.eye(LATENT_DIM).repeat(2, 1, 1)})
    return run


@contextmanager
def serving(run_dir: Path) -> Iterator[tuple[str, int]]:
    """The explorer of `run_dir` served by uvicorn on a free port of 127.0.0.1, in a thread of this process."""
    sock = bind_socket(HOST, 0)
    uvicorn_server = make_server(create_app(run_dir))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield HOST, sock.getsockname()[1]
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(analysed_run) -> Iterator[tuple[str, int]]:
    with serving(analysed_run) as address:
        yield address


def call(
    server: tuple[str, int], method: str, path: str, body: bytes | dict | list | None = None
) -> tuple[int, str, bytes]:
    """One HTTP request on a new connection: (status, content type, body). A body is sent as JSON, bytes as they are
    (labelled JSON either way)."""
    if isinstance(body, dict | list):
        body = json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection(*server, timeout=30)
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def post_json(server: tuple[str, int], path: str, body: dict) -> dict:
    status, _, content = call(server, "POST", path, body)
    assert status == 200, content
    return json.loads(content)


def get_json(server: tuple[str, int], path: str) -> dict:
    status, content_type, content = call(server, "GET", path)
    assert status == 200 and content_type == "application/json", content
    return json.loads(content)


def png_base64(picture: np.ndarray) -> str:
    return base64.b64encode(png_bytes(Image.fromarray(make_grid(picture[None], columns=1, padding=0)))).decode()


def read_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def moved_and_enlarged(digit: np.ndarray, scale: int = 4, top: int = 17, left: int = 61) -> np.ndarray:
    """A real digit as a person might draw it: bigger and off-centre on a larger canvas."""
    size = digit.shape[0] * scale
    enlarged = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    canvas = np.zeros((200, 240), dtype=np.float32)
    canvas[top : top + size, left : left + size] = enlarged
    return canvas


# --- preparing drawings the way MNIST was prepared ----------------------------------------------------------------


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_a_real_digit_is_left_as_it_is_and_a_moved_enlarged_copy_comes_back_close_to_it():
    digits = load_split("mnist", "test").images[:100, 0].numpy().astype(np.float32) / 255.0
    unshifted = []
    for digit in digits:
        assert np.abs(prepare_drawing(digit, MNIST) - digit).mean() < 1e-3  # already in a 20×20 box, centred by mass
        restored = prepare_drawing(moved_and_enlarged(digit), MNIST)
        unshifted.append(correlation(restored, digit))
        # The centre of mass is rounded to whole pixels (in MNIST as here): a copy may land one pixel off.
        nearby = [np.roll(restored, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert max(correlation(shifted, digit) for shifted in nearby) > 0.8
    assert np.median(unshifted) > 0.9


def test_a_drawing_is_scaled_into_a_20_pixel_box_and_centred_by_mass():
    stroke = np.zeros((300, 120), dtype=np.float32)
    stroke[40:260, 50:70] = 1.0  # a tall bar, far from centred
    prepared = prepare_drawing(stroke, MNIST)
    rows, cols = np.nonzero(prepared > 0.05)
    assert rows.max() - rows.min() + 1 == 20 and prepared.shape == (28, 28)
    mass = prepared.sum()
    centre = ((prepared.sum(1) * np.arange(28)).sum() / mass, (prepared.sum(0) * np.arange(28)).sum() / mass)
    assert abs(centre[0] - 14) <= 0.5 and abs(centre[1] - 14) <= 0.5
    assert prepare_drawing(np.zeros((50, 50)), MNIST).sum() == 0  # an empty canvas stays empty


# --- the loaded run ----------------------------------------------------------------------------------------------


def test_a_run_without_analysis_offers_prior_samples_only_and_no_factor_names(trained_run, tmp_path):
    info = Explorer.load(bare_copy(trained_run, tmp_path / "bare")).info()
    assert info["samplers"] == ["prior"]
    assert all(row["factor"] is None for row in info["dims"])
    assert info["classes"] is None  # an unconditional model: the page shows no class selector


# --- the API over real HTTP --------------------------------------------------------------------------------------


def test_info_lists_dimensions_by_kl_with_their_factor_names(server, analysed_run):
    info = get_json(server, "/api/info")
    factors = {row["dim"]: row["name"] for row in json.loads((analysed_run / FACTORS).read_text())}
    assert info["latent_dim"] == LATENT_DIM and info["dataset"] == "mnist" and info["test_count"] == 10_000
    kls = [row["kl"] for row in info["dims"]]
    assert sorted(row["dim"] for row in info["dims"]) == list(range(LATENT_DIM)) and kls == sorted(kls, reverse=True)
    assert all(row["factor"] == factors[row["dim"]] for row in info["dims"])
    assert info["samplers"] == ["prior", "gmm"] and info["classes"] is None


def test_decoded_png_and_array_equal_model_decode_for_the_same_code(server, analysed_run):
    model = load_model(analysed_run)
    z = torch.randn(LATENT_DIM, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = model.decode(z[None])[0, 0]
    status, content_type, content = call(server, "POST", "/api/decode", {"z": z.tolist()})
    assert status == 200 and content_type == "image/png"
    assert np.array_equal(read_png(content), make_grid(expected[None], columns=1, padding=0))
    array = post_json(server, "/api/decode", {"z": z.tolist(), "format": "array"})["image"]
    assert np.asarray(array).shape == (28, 28)
    torch.testing.assert_close(torch.tensor(array), expected, atol=1e-6, rtol=0)


def test_encoding_a_test_image_gives_its_posterior_and_the_input_the_model_saw(server, analysed_run):
    model = load_model(analysed_run)
    _, inputs = load_test_inputs(read_config(analysed_run).data)
    with torch.inference_mode():
        mu, logvar = model.encode(inputs[7:8])
    result = post_json(server, "/api/encode", {"test_index": 7})
    torch.testing.assert_close(torch.tensor([result["mu"]]), mu)
    torch.testing.assert_close(torch.tensor([result["logvar"]]), logvar)
    assert result["label"] == 9 and result["class_name"] == "9"  # MNIST test image 7 is a nine
    seen = read_png(base64.b64decode(result["input_png"]))
    assert np.array_equal(seen, (inputs[7, 0].numpy() * 255).astype(np.uint8))


def test_a_drawn_digit_is_encoded_near_the_code_of_the_digit_it_was_drawn_from(server):
    digits = load_split("mnist", "test").images[:20, 0].numpy().astype(np.float32) / 255.0
    own, others = [], []
    codes = [np.array(post_json(server, "/api/encode", {"pixels": d.ravel().tolist(), "centre": False})["mu"])
             for d in digits]
    for index, digit in enumerate(digits):
        drawn = np.array(post_json(server, "/api/encode", {"image": png_base64(moved_and_enlarged(digit))})["mu"])
        assert drawn.shape == (LATENT_DIM,)
        distances = [np.linalg.norm(drawn - code) for code in codes]
        own.append(distances[index])
        others.append(np.median(np.delete(distances, index)))
    assert np.median(own) < 0.5 * np.median(others)


def test_samples_are_reproducible_by_seed_from_both_samplers(server):
    for sampler in ("prior", "gmm"):
        first = get_json(server, f"/api/sample?sampler={sampler}&seed=5")
        assert first == get_json(server, f"/api/sample?sampler={sampler}&seed=5")
        assert len(first["z"]) == LATENT_DIM and first["sampler"] == sampler
    unseeded = get_json(server, "/api/sample")
    assert unseeded == get_json(server, f"/api/sample?seed={unseeded['seed']}")


def test_interpolation_path_runs_from_one_code_to_the_other(server):
    start, end = [1.0] * LATENT_DIM, [-2.0] + [0.5] * (LATENT_DIM - 1)
    for mode in ("linear", "slerp"):
        codes = post_json(server, "/api/interpolate", {"start": start, "end": end, "steps": 7, "mode": mode})["codes"]
        assert len(codes) == 7 and codes[0] == start and codes[-1] == end


def test_the_page_its_files_and_the_api_docs_are_served_from_here_only(server):
    status, content_type, page = call(server, "GET", "/")
    assert status == 200 and content_type.startswith("text/html")
    assert b"http://" not in page and b"https://" not in page
    for name in ("app.js", "style.css"):
        status, _, content = call(server, "GET", f"/static/{name}")
        assert status == 200 and b"http://" not in content and b"https://" not in content
    status, _, docs = call(server, "GET", "/docs")
    assert status == 200 and b"/docs-files/swagger-ui-bundle.js" in docs and b"cdn" not in docs
    paths = get_json(server, "/openapi.json")["paths"]
    assert {"/api/decode", "/api/encode", "/api/sample", "/api/info", "/api/interpolate"} <= set(paths)


# --- malformed requests: a 4xx with one clear message, and the server goes on --------------------------------------

CODE = [0.0] * LATENT_DIM
BIG_PNG = png_bytes(Image.new("L", (2000, 10)))
MALFORMED = {
    "short code": ("POST", "/api/decode", {"z": CODE[:-1]}, 422, "at least 8 items"),
    "long code": ("POST", "/api/decode", {"z": [*CODE, 0.0]}, 422, "at most 8 items"),
    "empty code": ("POST", "/api/decode", {"z": []}, 422, "z"),
    "NaN": ("POST", "/api/decode", b'{"z": [NaN, 0, 0, 0, 0, 0, 0, 0]}', 422, "finite"),
    "Infinity": ("POST", "/api/decode", b'{"z": [0, 0, 0, 0, 0, 0, 0, Infinity]}', 422, "finite"),
    "strings": ("POST", "/api/decode", {"z": ["1"] * LATENT_DIM}, 422, "valid number"),
    "booleans": ("POST", "/api/decode", {"z": [True] * LATENT_DIM}, 422, "valid number"),
    "code as a string": ("POST", "/api/decode", {"z": "0,0,0,0,0,0,0,0"}, 422, "z"),
    "nested lists": ("POST", "/api/decode", {"z": [[0.0]] * LATENT_DIM}, 422, "valid number"),
    "out of bounds": ("POST", "/api/decode", {"z": [11.0, *CODE[1:]]}, 422, "less than or equal to 10"),
    "huge number": ("POST", "/api/decode", b'{"z": [1e999, 0, 0, 0, 0, 0, 0, 0]}', 422, "finite"),
    "missing code": ("POST", "/api/decode", {}, 422, "field 'z' is required"),
    "unknown format": ("POST", "/api/decode", {"z": CODE, "format": "jpeg"}, 422, "format"),
    "path-like field": ("POST", "/api/decode", {"z": CODE, "path": "../../etc/passwd"}, 422, "path: Extra inputs"),
    "label for an unconditional model": ("POST", "/api/decode", {"z": CODE, "label": 3}, 422, "not conditional"),
    "not JSON": ("POST", "/api/decode", b"z=1,2,3", 422, "not valid JSON: Expecting value at line 1, column 1"),
    "broken JSON": ("POST", "/api/decode", b'{"z": [0,\n 0, }', 422, "Expecting value at line 2, column 5"),
    "not UTF-8": ("POST", "/api/decode", b'{"z": "\xff"}', 400, "not UTF-8 text (byte 0xff at offset 7)"),
    "JSON nested too deeply": ("POST", "/api/decode", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    "a JSON list": ("POST", "/api/decode", [0.0] * LATENT_DIM, 422, "must be a JSON object, not an array"),
    "empty body": ("POST", "/api/decode", b"", 422, "needs a JSON object as its body"),
    "GET on decode": ("GET", "/api/decode", None, 405, "Method Not Allowed"),
    "huge body": ("POST", "/api/decode", {"z": [0.0] * (MAX_BODY_BYTES // 2)}, 413, "limit of 262,144 bytes"),
    "no image source": ("POST", "/api/encode", {}, 422, "exactly one of"),
    "two image sources": ("POST", "/api/encode", {"test_index": 1, "pixels": [0.0] * 784}, 422, "exactly one of"),
    "test index out of range": ("POST", "/api/encode", {"test_index": 10_000}, 422, "less than 10000"),
    "negative test index": ("POST", "/api/encode", {"test_index": -1}, 422, "greater than or equal to 0"),
    "test index as a path": ("POST", "/api/encode", {"test_index": "/etc/passwd"}, 422, "valid integer"),
    "too few pixels": ("POST", "/api/encode", {"pixels": [0.0] * 783}, 422, "at least 784"),
    "pixel above 1": ("POST", "/api/encode", {"pixels": [2.0] * 784}, 422, "less than or equal to 1"),
    "pixels not 28×28 without centring": ("POST", "/api/encode", {"image": base64.b64encode(
        png_bytes(Image.new("L", (30, 30)))).decode(), "centre": False}, 422, "must be 28×28"),
    "not base64": ("POST", "/api/encode", {"image": "not base64!"}, 422, "not valid base64"),
    "not a PNG": ("POST", "/api/encode", {"image": base64.b64encode(b"GIF89a" + bytes(100)).decode()}, 422,
                  "not a readable PNG"),
    "a file name as image": ("POST", "/api/encode", {"image": "/etc/passwd"}, 422, "base64"),
    "image too large": ("POST", "/api/encode", {"image": base64.b64encode(BIG_PNG).decode()}, 422,
                        "larger than 1024 px a side"),
    "unknown sampler": ("GET", "/api/sample?sampler=vae", None, 422, "sampler"),
    "negative seed": ("GET", "/api/sample?seed=-1", None, 422, "seed"),
    "one-step interpolation": ("POST", "/api/interpolate", {"start": CODE, "end": CODE, "steps": 1}, 422, "steps"),
    "static path traversal": ("GET", "/static/..%2Fapp.py", None, 404, "Not Found"),
    "static file not ours": ("GET", "/static/__init__.py", None, 404, "no such file"),
    "dot-dot path": ("GET", "/static/../../web/app.py", None, 404, "Not Found"),
    "docs path traversal": ("GET", "/docs-files/..%2F__init__.py", None, 404, "Not Found"),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_refused_with_a_clear_4xx_and_the_server_keeps_serving(server, case):
    method, path, body, expected_status, message = case
    status, content_type, content = call(server, method, path, body)
    assert status == expected_status, content[:300]
    assert b"Traceback" not in content and content_type == "application/json", content[:300]
    detail = json.loads(content)["detail"]
    assert isinstance(detail, str) and "\n" not in detail and message in detail, detail
    assert call(server, "POST", "/api/decode", {"z": CODE})[0] == 200


def test_a_request_with_hundreds_of_errors_gets_a_short_summary_with_their_count(server):
    status, _, content = call(server, "POST", "/api/encode", {"pixels": [2.0] * 784})
    problem = json.loads(content)
    assert status == 422 and len(content) < 1000, len(content)  # not one entry per pixel
    assert problem["error_count"] == 784 and len(problem["errors"]) == 3
    assert problem["errors"][0] == {"field": "pixels.0", "message": "Input should be less than or equal to 1"}
    assert problem["detail"].startswith("pixels.0: Input should be less than or equal to 1; pixels.1: ")
    assert problem["detail"].endswith("; and 781 more (784 errors in all)") and "\n" not in problem["detail"]


def test_a_huge_body_streamed_without_a_length_is_refused_with_413(server):
    def chunks() -> Iterator[bytes]:
        yield b'{"z": ['
        for _ in range(MAX_BODY_BYTES // 1000 + 10):
            yield b"0," * 500
        yield b"0]}"

    connection = http.client.HTTPConnection(*server, timeout=30)
    try:
        connection.request("POST", "/api/decode", chunks(), {"Content-Type": "application/json"}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413 and "limit of 262,144 bytes" in json.loads(response.read())["detail"]
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered 413 and closed before the client finished sending: refused all the same
    finally:
        connection.close()
    assert call(server, "POST", "/api/decode", {"z": CODE})[0] == 200


# --- load ----------------------------------------------------------------------------------------------------------


def test_eight_concurrent_clients_get_every_decode_without_an_error(server):
    clients, per_client, time_limit = 8, 60, 60.0
    deadline = time.monotonic() + time_limit
    failures: list[str] = []
    done = [0] * clients
    codes = torch.randn(clients * per_client, LATENT_DIM, generator=torch.Generator().manual_seed(0)).clamp(-4, 4)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(*server, timeout=30)  # kept alive, as a browser does
        headers = {"Content-Type": "application/json"}
        for i in range(per_client):
            if time.monotonic() > deadline:
                break
            connection.request("POST", "/api/decode", json.dumps({"z": codes[index * per_client + i].tolist()}),
                               headers)
            response = connection.getresponse()
            content = response.read()
            if response.status != 200 or not content.startswith(b"\x89PNG"):
                failures.append(f"{response.status}: {content[:100]!r}")
            done[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=time_limit + 10)
    assert failures == [] and sum(done) == clients * per_client


# --- the page in a real browser ------------------------------------------------------------------------------------


# The pixels of a loaded <img> (same origin, so a canvas may read them), or null while it is still loading or still
# the page's empty frame (a 1×1 placeholder of class "empty").
PIXELS = """img => {
    if (!img.complete || img.naturalWidth === 0 || img.classList.contains("empty")) return null;
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);
}"""


def wait_for_new_picture(page, element_id: str, before: list[int] | None) -> list[int]:
    """Wait until the image has loaded and shows something else than `before`; its pixels."""
    page.wait_for_function(
        f"""before => {{
            const pixels = ({PIXELS})(document.getElementById("{element_id}"));
            return pixels !== null && (before === null || pixels.some((value, i) => value !== before[i]));
        }}""",
        arg=before,
    )
    return page.eval_on_selector(f"#{element_id}", PIXELS)


def drag_the_first_slider(page) -> None:
    """Drag the slider of the dimension with the largest KL from the middle to near its right end, as a hand does."""
    slider = page.locator("#sliders input[type=range]").first
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    assert float(slider.input_value()) > 2.5


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def test_page_in_chromium_slider_moves_the_image_drawing_is_reconstructed_nothing_leaves_loopback(server, browser):
    base = f"http://{server[0]}:{server[1]}/"
    requests: list[str] = []
    with browser.new_context(viewport={"width": 1280, "height": 900}) as context:
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(base, wait_until="networkidle")
        assert page.locator("#sliders input[type=range]").count() + page.locator(
            "#inactive-sliders input[type=range]").count() == LATENT_DIM
        assert page.locator("#sample-gmm").is_visible() and not page.locator("#class-choice").is_visible()
        before = wait_for_new_picture(page, "decoded", None)
        drag_the_first_slider(page)
        wait_for_new_picture(page, "decoded", before)

        # Draw a "7" on the canvas: a reconstruction appears and the sliders jump to its code.
        codes_before = page.eval_on_selector("#z-text", "pre => pre.textContent")
        canvas = page.locator("#canvas").bounding_box()
        page.mouse.move(canvas["x"] + 80, canvas["y"] + 60)
        page.mouse.down()
        for x, y in ((200, 60), (130, 230)):
            page.mouse.move(canvas["x"] + x, canvas["y"] + y, steps=10)
        page.mouse.up()
        wait_for_new_picture(page, "reconstruction", None)
        original = wait_for_new_picture(page, "original", None)
        assert page.locator("#compare").is_visible()
        assert page.eval_on_selector("#z-text", "pre => pre.textContent") != codes_before  # the sliders jumped
        assert sum(original[0::4]) > 0  # the drawing reached the model's 28×28 input (red channel, not black)
        assert page.inner_text("#status") == ""

        page.goto(f"{base}docs", wait_until="networkidle")
        page.wait_for_selector(".opblock-summary-path")
    outside = [url for url in requests if not url.startswith((base, "blob:" + base[:-1], "data:"))]
    assert outside == []


# Where things are on the page: the box of every visible slider; the box of every line of visible text (a range over
# each text node measures the text itself, also where it spills out of its element; the part an element clips, as
# an ellipsis does, is cut off); every visible <img> and whether it shows a picture (a broken image has loaded with
# no width); how wide the page is.
LAYOUT = """() => {
    const visible = (element) => element.getClientRects().length > 0
        && getComputedStyle(element).visibility !== "hidden";
    const box = (rect) => ({x: rect.x, y: rect.y, width: rect.width, height: rect.height});
    const sliders = [...document.querySelectorAll("input[type=range]")].filter(visible)
        .map((input) => ({id: input.id, ...box(input.getBoundingClientRect())}));
    const shownPart = (rect, node) => {
        let [left, right, top, bottom] = [rect.left, rect.right, rect.top, rect.bottom];
        for (let element = node.parentElement; element !== document.body; element = element.parentElement) {
            const style = getComputedStyle(element), clip = element.getBoundingClientRect();
            if (style.overflowX !== "visible") [left, right] = [Math.max(left, clip.left), Math.min(right, clip.right)];
            if (style.overflowY !== "visible") [top, bottom] = [Math.max(top, clip.top), Math.min(bottom, clip.bottom)];
        }
        return {x: left, y: top, width: right - left, height: bottom - top};
    };
    const texts = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const text = walker.currentNode.textContent.trim();
        if (!text) continue;
        const range = document.createRange();
        range.selectNodeContents(walker.currentNode);
        for (const rect of range.getClientRects()) {
            const part = shownPart(rect, walker.currentNode);
            if (part.width > 0 && part.height > 0) texts.push({text, ...part});
        }
    }
    const images = [...document.images].filter(visible)
        .map((img) => ({id: img.id, shown: img.complete && img.naturalWidth > 0}));
    return {sliders, texts, images, width: document.documentElement.scrollWidth};
}"""
SCREEN_WIDTHS = {"phone": 390, "tablet": 768, "small laptop": 1024, "laptop": 1280, "desktop": 1920}
MIN_SLIDER_WIDTH = 120  # px: a slider a thumb or a mouse can set to a chosen value


def overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and \
        b["y"] < a["y"] + a["height"]


@pytest.mark.parametrize("width", SCREEN_WIDTHS.values(), ids=SCREEN_WIDTHS.keys())
def test_on_every_screen_sliders_are_wide_and_clear_of_text_no_image_is_broken_and_a_drag_moves_the_picture(
    server, analysed_run, browser, width
):
    named = slider_directions(json.loads((analysed_run / "directions.json").read_text()))
    with browser.new_context(viewport={"width": width, "height": 900}) as context:
        page = context.new_page()
        page.goto(f"http://{server[0]}:{server[1]}/", wait_until="networkidle")
        before = wait_for_new_picture(page, "decoded", None)
        # Show everything the page can show before any input: the inactive dimensions, the empty comparison.
        page.eval_on_selector("#inactive", "details => { details.open = true; }")
        page.click("#toggle-compare")
        page.wait_for_function("[...document.images].every((img) => img.complete)")

        layout = page.evaluate(LAYOUT)
        # one per dimension, one per named direction and the interpolation's scrub
        assert len(layout["sliders"]) == LATENT_DIM + len(named) + 1 and named
        narrow = [(s["id"], s["width"]) for s in layout["sliders"] if s["width"] < MIN_SLIDER_WIDTH]
        assert narrow == []
        covered = [(t["text"], s["id"]) for t in layout["texts"] for s in layout["sliders"] if overlap(t, s)]
        assert covered == []
        assert layout["width"] <= width  # nothing pushes the page sideways
        assert {image["id"] for image in layout["images"]} >= {"decoded", "original", "reconstruction", "end-a"}
        assert [image["id"] for image in layout["images"] if not image["shown"]] == []

        drag_the_first_slider(page)
        wait_for_new_picture(page, "decoded", before)
        assert page.inner_text("#status") == ""


# --- the command -----------------------------------------------------------------------------------------------------


def test_vaelab_explore_prints_its_url_serves_and_refuses_a_busy_port(analysed_run):
    command = [sys.executable, "-m", "vaelab.cli", "explore", str(analysed_run), "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert "http://127.0.0.1:" in line, server.stderr.read() if server.poll() is not None else line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert get_json((HOST, port), "/api/info")["latent_dim"] == LATENT_DIM
        busy = subprocess.run([*command[:-1], str(port)], capture_output=True, text=True, timeout=120)
        assert busy.returncode == 2 and "cannot listen on 127.0.0.1 port" in busy.stderr
        assert busy.stderr.strip().count("\n") == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    missing = subprocess.run([*command[:4], "no-such-run"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "run directory no-such-run does not exist" in missing.stderr


# --- what the page says about a run, and long text on small and large screens ---------------------------------------

# A user's folder name as it may be: long, and with no hyphen or space where a line could break.
LONG_FOLDER = "my_coloured_shapes_collection_with_a_long_name_and_no_place_to_break_it"


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory) -> Path:
    """A tiny VAE trained a few steps on a folder of coloured shapes (RGB, 16×16) with a long folder name."""
    root = tmp_path_factory.mktemp("rgb")
    folder = write_shapes_folder(root / LONG_FOLDER, count=60, size=16)
    config = tiny_config(dataset=f"folder:{folder}", image_size=16, latent_dim=4, hidden_dim=32, steps=3,
                         batch_size=16)
    assert config.data.input_mode == "intensities"  # the intensities as they are: for RGB images, colours
    return train(config, root / "run", progress=False, log=lambda message: None).run_dir


def test_the_page_names_what_an_rgb_run_models_and_its_long_folder_wraps_on_a_phone(rgb_run, browser):
    assert Explorer.load(rgb_run).info()["inputs"] == "colour (RGB) intensities"
    with serving(rgb_run) as address, browser.new_context(viewport={"width": 390, "height": 900}) as context:
        page = context.new_page()
        page.goto(f"http://{address[0]}:{address[1]}/", wait_until="networkidle")
        page.wait_for_function("!document.getElementById('run-info').textContent.startsWith('loading')")
        info = page.inner_text("#run-info")
        assert LONG_FOLDER in info.replace("\n", "") and "colour (RGB) intensities" in info
        assert "grayscale" not in page.inner_text("body") and "grey" not in info
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")  # no sideways scroll


def test_a_named_direction_slider_moves_the_code_along_its_vector_from_where_the_other_controls_left_it(
        server, analysed_run, browser):
    sliders = slider_directions(json.loads((analysed_run / "directions.json").read_text()))
    _, _, body = call(server, "GET", "/api/info")
    assert json.loads(body)["directions"] == sliders and {row["method"] for row in sliders} <= {"ridge",
                                                                                               "ridge-class-held"}
    with browser.new_context(viewport={"width": 1280, "height": 900}) as context:
        page = context.new_page()
        page.goto(f"http://{server[0]}:{server[1]}/", wait_until="networkidle")
        named = page.locator("#direction-sliders input[type=range]")
        assert named.count() == len(sliders) and page.locator("#directions").is_visible()
        assert f"ρ {sliders[0]['rho']:.2f}" in page.inner_text("#direction-sliders")
        page.click("#sample-prior")  # a code from elsewhere: the named sliders start from it
        page.wait_for_function("() => document.getElementById('z-text').textContent.includes('z =')")
        start = page.evaluate("() => state.z.slice()")
        before = wait_for_new_picture(page, "decoded", None)
        named.first.fill("2")
        named.first.dispatch_event("input")
        wait_for_new_picture(page, "decoded", before)
        moved = np.array(page.evaluate("() => state.z.slice()")) - np.array(start)
        expected = 2 * sliders[0]["scale"] * np.array(sliders[0]["unit_vector"])
        assert np.allclose(moved, expected, atol=1e-6)
        page.locator("#sliders input[type=range]").first.fill("1")  # a raw dimension: the named ones go back to 0
        page.locator("#sliders input[type=range]").first.dispatch_event("input")
        assert named.first.input_value() == "0"


def test_the_page_names_the_run_and_shows_no_path_of_the_serving_machine(server, analysed_run, browser):
    with browser.new_context(viewport={"width": 1280, "height": 900}) as context:
        page = context.new_page()
        page.goto(f"http://{server[0]}:{server[1]}/", wait_until="networkidle")
        page.wait_for_function("!document.getElementById('run-info').textContent.startsWith('loading')")
        header, title, shown = page.inner_text("#run-info"), page.title(), page.content()
    assert header.startswith(f"{analysed_run.name}: mnist, ") and title.startswith(analysed_run.name)
    assert analysed_run.name in shown
    # Nor what the page reads to draw itself, nor the API docs: a path of this machine is nobody's business.
    served = [shown, call(server, "GET", "/api/info")[2].decode(), call(server, "GET", "/openapi.json")[2].decode()]
    for text in served:
        assert str(analysed_run.parent) not in text and str(analysed_run.resolve().parent) not in text


def test_a_shipped_model_has_named_direction_sliders_out_of_the_box():
    info = Explorer.load("pretrained:mnist").info()
    names = [row["name"] for row in info["directions"]]
    assert names == ["ink_area", "stroke_length", "stroke_thickness", "slant", "width", "height"]
    assert all(len(row["unit_vector"]) == info["latent_dim"] and row["class_kept"] is not None
               for row in info["directions"])


def test_a_pretrained_model_is_named_pretrained_and_its_kl_source_is_eval_json_not_its_path():
    info = Explorer.load("pretrained:mnist").info()
    assert info["run"] == "pretrained:mnist" and info["kl_source"] == "eval.json"
    assert str(resolve_run("pretrained:mnist")) not in json.dumps(info)


def test_a_folder_dataset_is_named_by_its_folder_not_by_its_path_on_the_server(rgb_run):
    info = Explorer.load(rgb_run).info()
    assert info["run"] == rgb_run.name
    assert info["dataset"] == f"folder:{LONG_FOLDER}?size=16&channels=3"
    assert str(rgb_run.parent) not in json.dumps(info)


def test_a_grey_run_is_named_grey_or_binarized_from_its_config(trained_run):
    info = Explorer.load(trained_run).info()
    expected = {"binarized": "binarized grey pixels", "intensities": "grey intensities"}[info["input_mode"]]
    assert info["inputs"] == expected


# Every slider label that shows, and whether its text is cut (wider or taller than its box).
LABELS = """() => [...document.querySelectorAll(".slider label")].filter((label) => label.getClientRects().length > 0)
    .map((label) => ({text: label.textContent, cut: label.scrollWidth > label.clientWidth
                                                  || label.scrollHeight > label.clientHeight}))"""


@pytest.mark.parametrize("width", [1024, 1920])
def test_slider_labels_with_factor_names_are_shown_whole_on_laptop_and_desktop_screens(
        server, analysed_run, browser, width):
    named = slider_directions(json.loads((analysed_run / "directions.json").read_text()))
    with browser.new_context(viewport={"width": width, "height": 900}) as context:
        page = context.new_page()
        page.goto(f"http://{server[0]}:{server[1]}/", wait_until="networkidle")
        page.eval_on_selector("#inactive", "details => { details.open = true; }")
        labels = page.evaluate(LABELS)
    assert len(labels) == LATENT_DIM + len(named)
    assert any("ρ" in label["text"] for label in labels), labels  # the run names factors with their ρ
    assert [label["text"] for label in labels if label["cut"]] == []
