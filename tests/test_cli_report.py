"""`simfleet report` on a synthetic sweep (tests/synthetic.py: a trotting robot's steps.csv per seed, one of which
falls): the PNG files exist, each plot drew every seed's points, the pixels hold coloured data lines, and the HTML page
opens in headless Chromium with every image decoded and no error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import synthetic
from chromium import binary, open_page
from cli_world import NS, World, run_entry, world

from cli import errors

STEPS = 600


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with world(tmp_path, [run_entry("sweep", seeds=[1, 2, 3]), run_entry("walk")]) as found:
        yield found


def ship_sweep(w: World) -> None:
    for seed, fall in ((1, None), (2, 400), (3, None)):
        prefix = w.prefix("sweep", seed)
        w.put_text(f"{prefix}metrics/steps.csv", synthetic.steps_csv(seed, STEPS, fall_at=fall))
        w.put_json(f"{prefix}metrics/glue-summary.json", synthetic.glue_summary(STEPS, "Succeeded" if fall is None else "Failed"))
        w.index("sweep", seed, "Succeeded" if fall is None else "Failed", steps=STEPS)


def coloured_pixels(png: Path) -> int:
    """Pixels that are neither white, grey nor black: the data lines and markers (axes and text are greys)."""
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(str(png))[..., :3]
    spread = image.max(axis=2) - image.min(axis=2)
    return int(np.count_nonzero(spread > 0.2))


def test_the_report_of_a_sweep_has_a_plot_per_quantity_each_with_every_seed_s_data(w: World, tmp_path: Path) -> None:
    ship_sweep(w)
    out = tmp_path / "report"
    result = w.run("report", "sweep", "--out", str(out), "--json")
    assert result.code == 0, result.err
    written = result.json()
    assert Path(written["html"]) == out / "index.html" and (out / "summary.json").is_file()
    files = {Path(p["file"]).name for p in written["plots"]}
    assert {"velocity.png", "pose.png", "energy.png", "nociceptor.png", "latency.png", "seeds.png"} <= files, files
    for plot in written["plots"]:
        png = Path(plot["file"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert plot["points"], f"{png.name} drew nothing"
        assert all(count > 0 for count in plot["points"].values()), plot
        if png.name == "seeds.png":  # the seeds compared: one bar per seed for each quantity
            assert all(count == 3 for count in plot["points"].values()), plot
        else:
            drawn = {name.split(" (")[0] for name in plot["points"]}
            assert {"seed 1", "seed 2", "seed 3"} <= drawn, plot
        assert coloured_pixels(png) > 500, f"{png.name} has no data lines"
    velocity = next(p for p in written["plots"] if p["file"].endswith("velocity.png"))
    assert velocity["points"]["seed 1"] == STEPS  # every row of steps.csv
    seeds = {s["unit"]: s for s in written["seeds"]}
    assert seeds[2]["status"] == "Failed" and seeds[1]["steps"] == STEPS and seeds[1]["checkpoint"].endswith("out.mstate")
    html = (out / "index.html").read_text()
    assert "sweep" in html and "Failed" in html and "src=" in html


@pytest.mark.skipif(binary() is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package)")
@pytest.mark.slow
def test_the_report_page_opens_in_headless_chromium_with_every_plot(w: World, tmp_path: Path) -> None:
    ship_sweep(w)
    out = tmp_path / "report"
    written = w.run("report", "sweep", "--out", str(out), "--json").json()
    seen = open_page(out / "index.html")
    assert not seen.errors, seen.errors
    images = seen.page["images"]
    assert len(images) == len(written["plots"])
    assert all(i["complete"] and i["width"] > 300 and i["height"] > 150 for i in images), images
    assert "sweep" in seen.page["title"] and "seed 2" in seen.page["text"]


def test_a_run_without_metrics_says_so(w: World, tmp_path: Path) -> None:
    result = w.run("report", "walk", "--out", str(tmp_path / "r"))
    assert result.code == errors.USAGE and "has no metrics yet" in result.err and "steps.csv" in result.err
    assert not (tmp_path / "r" / "index.html").exists()


def test_a_running_seed_is_reported_as_running_not_failed(w: World, tmp_path: Path) -> None:
    """A seed with an attempt marker but no index.json yet, while its Job runs: the report says Running."""
    import fake_kueue

    w.create("walk")
    fake_kueue.add_local_queue(w.kube, NS, "locomotion", "locomotion")
    fake_kueue.submit(w.kube, NS, "walk")
    fake_kueue.admit(w.kube, NS, "walk", "locomotion", "gpu-spot")
    pod = w.kube.add_pod(NS, "walk", "Running")["metadata"]["name"]
    w.attempt("walk", 7, pod)
    w.put_text(f"{w.prefix('walk')}metrics/steps.csv", synthetic.steps_csv(7, 50))
    written = w.run("report", "walk", "--out", str(tmp_path / "r"), "--json")
    assert written.code == 0, written.err
    assert [s["status"] for s in written.json()["seeds"]] == ["Running"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["seeds"][0]["status"] == "Running"
