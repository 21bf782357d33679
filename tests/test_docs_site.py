"""The documentation as a reader meets it: links and anchors that resolve, pictures no older than what they show,
shell examples that run, pages of a readable length that speak of the product."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FRONT_PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "CHANGELOG.md"]
EVERY_PAGE = FRONT_PAGES + PAGES
LONGEST_PAGE_LINES = 600
README_LINES = 200

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# What a page about the product never says: how it was built.
PROCESS_WORDS = re.compile(
    r"\bissues? ?#?\d|\bsessions?\b|\b(this|next|the|each|every) stop\b|\bby hand\b|\blent\b|\bdeadline\b"
    r"|\btracker\b|\bhelper sessions?\b",
    re.IGNORECASE,
)


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks, numbered from 1."""
    lines, in_code = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line.strip()):
            in_code = not in_code
        elif not in_code:
            lines.append((number, line))
    return lines


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings, as the site (Python-Markdown's toc) makes them (GitHub's agree on ASCII),
    and those of the API reference's `::: module` blocks: the module and each listed member."""
    found, module = set(), None
    for _, line in prose_lines(path):
        heading, api_block = HEADING.match(line), re.match(r"^::: ([\w.]+)", line)
        member = re.match(r"^\s+- (\w+)$", line)
        if heading:
            found.add(slugify(re.sub(r"`([^`]*)`", r"\1", heading.group(2)), "-"))
        elif api_block:
            module = api_block.group(1)
            found.add(module)
        elif member and module:
            found.add(f"{module}.{member.group(1)}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    return [(number, match.group(1)) for number, line in prose_lines(path) for match in LINK.finditer(line)
            if not re.match(r"^[a-z]+:", match.group(1))]


def test_pages_are_found():
    assert len(PAGES) >= 20 and all(page.exists() for page in FRONT_PAGES)


@pytest.mark.parametrize("page", EVERY_PAGE, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_internal_link_and_anchor_resolves(page):
    broken = []
    for number, target in links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"line {number}: {target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"line {number}: {target} (no heading with that anchor)")
    assert broken == [], f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", EVERY_PAGE, ids=lambda page: str(page.relative_to(ROOT)))
def test_pages_speak_of_the_product_not_of_how_it_was_built(page):
    said = [f"line {number}: {line.strip()[:100]}" for number, line in
            enumerate(page.read_text(encoding="utf-8").splitlines(), start=1) if PROCESS_WORDS.search(line)]
    assert said == [], f"{page.relative_to(ROOT)} names the development process: " + "; ".join(said)


def test_no_page_is_too_long_to_read():
    lengths = {str(page.relative_to(ROOT)): len(page.read_text().splitlines()) for page in EVERY_PAGE}
    assert {page: n for page, n in lengths.items() if n > LONGEST_PAGE_LINES} == {}


def test_readme_is_short_and_its_first_screen_shows_a_picture():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_LINES
    first_screen = "\n".join(lines[:40])
    assert re.search(r"!\[[^\]]+\]\(docs/figures/[\w-]+\.png\)", first_screen), "no picture on the first screen"
    assert "make demo" in first_screen


# --- the figures --------------------------------------------------------------------------------------------------


def figure_renderer():
    spec = importlib.util.spec_from_file_location("render_figures", DOCS / "render_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_figure_is_no_older_than_the_models_and_results_it_shows():
    renderer = figure_renderer()
    manifest = renderer.read_manifest()
    stale = [figure.name for figure in renderer.FIGURE_LIST if not renderer.is_fresh(figure, manifest)]
    assert stale == [], f"render them again with `make figures`: {', '.join(stale)}"


def test_the_pages_show_every_rendered_figure_and_no_other_picture():
    rendered = {figure.path.resolve() for figure in figure_renderer().FIGURE_LIST}
    shown = {(page.parent / target).resolve() for page in EVERY_PAGE for _, target in links(page)
             if target.endswith(".png")}
    assert shown - rendered == set(), "pictures not drawn by docs/render_figures.py"
    assert rendered - shown == set(), "figures drawn but shown nowhere"
    readme_pictures = {target for _, target in links(ROOT / "README.md") if target.endswith(".png")}
    assert readme_pictures and all(picture.startswith("docs/figures/") for picture in readme_pictures)


# --- the runnable examples ------------------------------------------------------------------------------------------

RUNNABLE = "<!-- runnable -->"
RUNNABLE_SLOW = "<!-- runnable: slow -->"  # runs in `make test-slow`: a minute or more of CPU
# A runnable example keeps its commands and shrinks what costs time: a few training steps instead of minutes (an
# example about the budget itself, one that reads budget.json, keeps a budget of seconds), fewer epochs, samples,
# test images and importance samples.
TINY_SETTINGS = [
    (re.compile(r"--epochs \d+"), "--epochs 1"),
    (re.compile(r"--steps \d+"), "--steps 20"),
    (re.compile(r"--iw-samples \d+"), "--iw-samples 5"),
    (re.compile(r"--iw-budget \S+"), "--iw-budget 5s"),
    (re.compile(r"(-n|--samples) \d{3,}"), r"\1 200"),
    (re.compile(r"--bases \d+"), "--bases 10"),
    (re.compile(r"--metric-images \d+"), "--metric-images 500"),
    (re.compile(r"--count \d+"), "--count 60"),
]
BUDGET_EXAMPLE = (re.compile(r"--time-budget \S+"), "--time-budget 20s")
BUDGET_TO_STEPS = (re.compile(r"--time-budget \S+"), "--steps 20")


EXPECTED_OUTPUT = "<!-- expected output -->"


def fenced_block(lines: list[str], marker_index: int, where: str) -> tuple[str, int]:
    """The text of the fenced block right after a marker comment, and the index of its closing fence."""
    assert lines[marker_index + 1].startswith("```"), f"{where}: a marker comment must precede a fence"
    end = next(i for i in range(marker_index + 2, len(lines)) if lines[i].startswith("```"))
    return "\n".join(lines[marker_index + 2 : end]), end


def runnable_blocks() -> list[Any]:
    """(where, script, expected output) of every block marked runnable, as pytest parameters (marked slow where the
    page says so); the expected output is the block marked `<!-- expected output -->` that follows it (after one
    blank line), or empty."""
    blocks = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if line.strip() not in (RUNNABLE, RUNNABLE_SLOW):
                continue
            where = f"{page.relative_to(DOCS)}:{index + 2}"
            script, end = fenced_block(lines, index, where)
            follows = lines[end + 1 : end + 3]
            expected = ""
            if len(follows) == 2 and follows[0] == "" and follows[1].strip() == EXPECTED_OUTPUT:
                expected, _ = fenced_block(lines, end + 2, where)
            marks = [pytest.mark.slow] if line.strip() == RUNNABLE_SLOW else []
            blocks.append(pytest.param(where, script, expected, marks=marks, id=where))
    return blocks


def shrink(script: str) -> str:
    budget = BUDGET_EXAMPLE if "budget.json" in script else BUDGET_TO_STEPS
    for pattern, replacement in [*TINY_SETTINGS, budget]:
        script = pattern.sub(replacement, script)
    return script


def test_the_guide_has_runnable_examples():
    assert len(runnable_blocks()) >= 5


@pytest.mark.parametrize(("where", "script", "expected"), runnable_blocks())
def test_runnable_example_runs(where, script, expected, tmp_path):
    """Each marked shell block runs as written (on tiny settings) in a fresh folder, with vaelab on the PATH and the
    datasets `make test` fetched; where the page shows its output, every line shown is printed."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", shrink(script)], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{where} failed:\n{shrink(script)}\n{output[-4000:]}"
    missing = [line for line in expected.splitlines() if line.strip() and line.strip() not in output]
    assert missing == [], f"{where}: the page shows lines the command does not print: {missing}\n{output[-2000:]}"
