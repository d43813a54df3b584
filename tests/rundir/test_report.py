"""HTML reports of runs and sweeps: content, escaping, every kind of run directory, and the page in Chromium.

The browser tests drive Debian's ``chromium`` headless through ``chromedriver`` (Selenium) and check what a person
would see: a screenshot that is not blank, no console error, no request other than ``file:`` and ``data:``, and no
script element even where run names and config values contain markup. Screenshots are kept under
``$FMNIST_SCREENSHOT_DIR`` (default: ``<tmp>/fmnist-report-screenshots``), and the test prints where.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.data import FASHION_MNIST, load_dataset, registry
from fmnist.rundir.layout import FILES
from fmnist.rundir.report import write_run_report
from fmnist.sweep.report import write_sweep_report

from helpers import learnable_arrays, write_tiny_mnist

LAYER_STATS, REPORT = FILES["layer_stats"], FILES["report"]

runner = CliRunner()
MAX_BYTES = 3_000_000  # "a few MB at most"; these reports are far smaller
EVIL = '<script>alert("run")<script><img src=x onerror=alert(1)>'
BROWSER_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A learnable tiny 'fashion-mnist' (with some test labels flipped, so there are mistakes to show)."""
    root = tmp_path_factory.mktemp("report-data")
    arrays = learnable_arrays()
    arrays["test_labels"][:15] = (arrays["test_labels"][:15] + 1) % 10
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FMNIST_CACHE_DIR", str(root / "cache"))
        mp.delenv("FMNIST_MIRRORS", raising=False)
        spec, _ = write_tiny_mnist(root / "data", arrays, base=FASHION_MNIST)
        mp.setitem(registry.DATASETS, "fashion-mnist", spec)
        mp.setenv("FMNIST_DATA_DIR", str(root / "data"))
        yield root


@pytest.fixture(scope="module")
def completed_run(tiny_data) -> Path:
    """A finished run, with the per-layer statistics the trainer records."""
    out = tiny_data / "runs" / "completed"
    invoke_ok("train", "-e", "3", "-b", "32", "-sz", "32", "-nhl", "1", "--seed", "1", "--out", str(out))
    if not (out / LAYER_STATS).is_file():
        write_layer_stats(out)
    return out


def copy_run(source: Path, name: str) -> Path:
    target = source.parent / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    (target / REPORT).unlink(missing_ok=True)
    return target


def invoke_ok(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


def write_layer_stats(run_dir: Path) -> None:
    """Plausible ``layer_stats.jsonl`` lines for a run written before the trainer recorded them."""
    from fmnist.rundir.modelio import load_model

    model, _ = load_model(run_dir / "model.npz")
    rng = np.random.default_rng(0)
    lines = []
    for epoch in range(1, 4):
        params = {}
        for name, value in model.state_dict().items():
            value = np.asarray(value, dtype=np.float64)
            grad = rng.normal(0.0, 0.02 / epoch, value.shape)
            params[name] = {
                "shape": list(value.shape),
                "weight_mean": float(value.mean()),
                "weight_std": float(value.std()),
                "weight_abs_max": float(np.abs(value).max()),
                "grad_rms": float(np.sqrt(np.mean(grad**2))),
                "grad_abs_max": float(np.abs(grad).max()),
                "update_rms_ratio": 2e-3 / epoch,
            }
        lines.append(json.dumps({"epoch": epoch, "params": params}))
    (run_dir / LAYER_STATS).write_text("\n".join(lines) + "\n")


def report_of(run_dir: Path) -> str:
    path = write_run_report(run_dir)
    assert path == run_dir / REPORT
    html = path.read_text()
    assert path.stat().st_size < MAX_BYTES
    assert "<script" not in html.lower()
    assert all(src.startswith("data:image/") for src in re.findall(r'<img[^>]* src="([^"]*)"', html))
    return html


# ---------------------------------------------------------------------------------------------------- run report


def test_run_report_shows_every_section(completed_run):
    html = report_of(completed_run)
    summary = json.loads((completed_run / "summary.json").read_text())
    assert """<meta http-equiv="Content-Security-Policy" content="default-src 'none';""" in html
    assert f"{100 * summary['test_accuracy']:.2f}%" in html  # metric card
    assert f"fmnist train --config {completed_run.resolve() / 'config.json'}" in html
    for option, value, default in (("epochs", "3", "20"), ("hidden_size", "32", "256"), ("num_layers", "1", "2")):
        assert re.search(rf">{option}</td><td>{value}</td><td[^>]*>{default}</td>", html), option
    assert ">seed</th><td>1<" in html
    assert np.__version__ in html  # environment
    assert 'alt="loss, accuracy and learning rate per epoch"' in html
    assert "T-shirt/top" in html
    assert "Ankle boot" in html
    assert html.count('class="sample"') >= 15  # the flipped labels at least
    assert "true: " in html
    assert "test #" in html
    assert "layers.0.weight" in html
    assert "784 × 32" in html
    assert "update / weight RMS" in html
    assert 'href="./config.json"' in html
    assert 'class="badge completed"' in html
    assert "callout" not in html.split("<main")[1]


def test_user_text_is_escaped_never_markup(completed_run):
    run = copy_run(completed_run, EVIL.replace("/", "_"))
    config = json.loads((run / "config.json").read_text())
    config["wandb_project"] = "</table><script>alert(2)</script>"
    config["command"] = ["fmnist", "train", "--out", EVIL]
    (run / "config.json").write_text(json.dumps(config))
    html = report_of(run)
    assert "<img src=x" not in html
    assert "</table><script>" not in html
    assert "&lt;script&gt;alert(&#34;run&#34;)&lt;script&gt;" in html  # the run name, as text
    assert "&lt;/table&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html  # a config value, as text
    assert "As typed" in html


def test_diverged_interrupted_and_old_runs_still_get_a_report(completed_run):
    diverged = copy_run(completed_run, "diverged")
    first = (diverged / "metrics.jsonl").read_text().splitlines()[0]
    (diverged / "metrics.jsonl").write_text(first + "\n")
    error = "training diverged: loss is nan at epoch 2, step 5. Try a lower learning rate."
    summary = {"status": "diverged", "error": error, "epoch": 2, "step": 5, "last_good_epoch": 1}
    (diverged / "summary.json").write_text(json.dumps(summary))
    (diverged / "model.npz").unlink()
    html = report_of(diverged)
    assert 'class="badge diverged"' in html
    assert "loss is nan at epoch 2" in html
    assert "no model.npz" in html
    assert "confusion_matrix.csv" in html  # the matrix still comes from the saved CSV

    interrupted = copy_run(completed_run, "interrupted")
    for name in ("summary.json", "model.npz", "confusion_matrix.csv"):
        (interrupted / name).unlink()
    html = report_of(interrupted)
    assert 'class="badge interrupted"' in html
    assert f"fmnist train --resume {interrupted.resolve()}" in html
    assert "no model.npz" in html
    assert "test accuracy" in html
    assert ">—<" in html

    old = copy_run(completed_run, "old")
    (old / LAYER_STATS).unlink()
    html = report_of(old)
    assert "no layer_stats.jsonl" in html
    assert 'class="badge completed"' in html

    empty = copy_run(completed_run, "not-started")
    for name in ("metrics.jsonl", "summary.json", "model.npz", "confusion_matrix.csv", LAYER_STATS):
        (empty / name).unlink()
    html = report_of(empty)
    assert "No epoch finished" in html


def test_recorded_learning_rate_and_command_are_shown(completed_run):
    run = copy_run(completed_run, "with-lr")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for m in lines:
        m["lr"] = 1e-3 / m["epoch"]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    config = json.loads((run / "config.json").read_text())
    config["command"] = ["fmnist", "train", "-e", "3", "--out", "my run"]
    (run / "config.json").write_text(json.dumps(config))
    html = report_of(run)
    assert "fmnist train -e 3 --out &#39;my run&#39;" in html
    assert '<th class="num">lr</th>' in html
    assert ">0.000333<" in html


def test_without_the_dataset_the_sections_say_so(completed_run, tiny_data, monkeypatch, tmp_path):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "nothing-here"))
    run = copy_run(completed_run, "no-data")
    config = json.loads((run / "config.json").read_text())
    config["data_dir"] = str(tmp_path / "moved-away")  # the data the run was trained on is gone
    (run / "config.json").write_text(json.dumps(config))
    html = report_of(run)
    assert "test set is not on this machine" in html
    assert "from confusion_matrix.csv" in html  # the matrix from the run's own file
    dataset = load_dataset("fashion-mnist", data_dir=tiny_data / "data")  # as the trainer passes it
    html = write_run_report(run, dataset=dataset).read_text()
    assert "not on this machine" not in html
    assert 'class="sample"' in html


def test_a_run_without_validation(completed_run):
    run = copy_run(completed_run, "no-validation")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for m in lines:
        m["val_loss"] = m["val_accuracy"] = None
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    summary = json.loads((run / "summary.json").read_text())
    summary.update(best_epoch=None, best_val_loss=None, best_val_accuracy=None)
    (run / "summary.json").write_text(json.dumps(summary))
    html = report_of(run)
    assert "no validation metrics" in html


def test_report_command_builds_and_rejects(completed_run, tmp_path):
    result = invoke_ok("report", str(completed_run))
    assert result.output.strip() == str(completed_run / REPORT)
    assert write_run_report(completed_run) == completed_run / REPORT
    bad = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 2
    assert "not a run or sweep directory" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    (tmp_path / "file.txt").write_text("x")
    assert runner.invoke(app, ["report", str(tmp_path / "file.txt")]).exit_code == 2


# -------------------------------------------------------------------------------------------------- sweep report


@pytest.fixture(scope="module")
def sweep_dir(tiny_data) -> Path:
    pytest.importorskip("optuna", reason="Optuna is not installed (pip install 'fmnist[sweep]')")
    out = tiny_data / "sweeps" / "demo"
    sweep_file = tiny_data / "demo.yaml"
    sweep_file.write_text(
        "method: random\nmetric: {name: val_accuracy, goal: maximize}\n"
        "parameters:\n  epochs: {value: 2}\n  batch_size: {value: 64}\n  hidden_size: {values: [16, 32]}\n"
        "  learning_rate: {min: 0.0001, max: 0.01, distribution: log_uniform_values}\n"
    )
    invoke_ok("sweep", str(sweep_file), "--trials", "4", "--out", str(out), "--study", "demo")
    if not (out / "sweep.json").is_file():  # what the sweep will write (see the module doc of sweep_report)
        info = {
            "format": "fmnist-sweep",
            "version": 1,
            "study_name": "demo",
            "storage": None,
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "method": "random",
            "sweep_file": str(sweep_file),
        }
        (out / "sweep.json").write_text(json.dumps(info))
    return out


def test_sweep_report_has_the_leaderboard_plots_and_trial_links(sweep_dir):
    result = invoke_ok("report", str(sweep_dir))
    assert result.output.strip() == str(sweep_dir / REPORT)
    html = (sweep_dir / REPORT).read_text()
    assert (sweep_dir / REPORT).stat().st_size < MAX_BYTES
    assert "<script" not in html.lower()
    links = re.findall(r'<a href="(runs/[^"]+/report\.html)"', html)
    assert len(set(links)) == 4
    assert all((sweep_dir / link).is_file() for link in links)  # relative links to reports that exist
    assert html.count('class="badge complete"') == 4
    for title in ("Optimisation history", "Parameter importances", "Parallel coordinates"):
        assert re.search(rf"<h3>{title}</h3>\s*<img class=\"chart\" src=\"data:image/png;base64,", html), title
    assert "fmnist train --config" in html
    assert "best_config.json" in html
    assert "learning_rate" in html
    assert "hidden_size" in html


def test_sweep_report_without_the_study_uses_the_saved_files(sweep_dir, tmp_path):
    moved = tmp_path / "copied-sweep"
    shutil.copytree(sweep_dir, moved)
    (moved / "sweep.db").unlink()
    (moved / "sweep.json").write_text(json.dumps({"study_name": "demo", "storage": "postgresql://u:secret@nohost/x"}))
    html = write_sweep_report(moved).read_text()
    assert "could not be opened" in html
    assert "secret" not in html
    assert "u:***@nohost" in html
    rows = re.findall(r'<td><span class="badge complete">complete</span></td>', html)
    assert len(rows) == 4  # from leaderboard.csv
    links = re.findall(r'<a href="(runs/[^"]+/report\.html)"', html)
    assert len(set(links)) == 4
    assert all((moved / link).is_file() for link in links)
    assert html.count('src="data:image/png;base64,') >= 2  # the PNGs the sweep saved


# ------------------------------------------------------------------------------------------------------- browser


@dataclass
class Page:
    """What the browser saw: console errors, requests, script elements, visible text and a full-page PNG."""

    errors: list[str]
    requests: list[str]
    scripts: int
    broken_images: int
    text: str
    png: bytes


def _find_chromium() -> tuple[str | None, str | None]:
    candidates = [os.environ.get("FMNIST_CHROMIUM"), "/usr/lib/chromium/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")]
    binary = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    driver = os.environ.get("FMNIST_CHROMEDRIVER") or shutil.which("chromedriver")
    if driver is None and os.access("/usr/lib/chromium/chromedriver", os.X_OK):
        driver = "/usr/lib/chromium/chromedriver"
    return binary, driver


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by chromedriver, with console and network logs; skipped where either is absent."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _find_chromium()
    if binary is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="fmnist-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in [*BROWSER_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_window_size(1280, 900)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: Path) -> Page:
    """Load a local file and collect what the page did."""
    driver.get("about:blank")
    driver.get_log("browser")  # reading a log empties it
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready = driver.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"
        )
        if ready:
            break
        time.sleep(0.1)
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    requests += driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    scripts = driver.execute_script("return document.getElementsByTagName('script').length")
    broken = driver.execute_script("return Array.from(document.images).filter(i => !i.naturalWidth).length")
    text = driver.execute_script("return document.body ? document.body.innerText : ''")
    height = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
        },
    )
    return Page(errors, requests, scripts, broken, text, base64.b64decode(shot["data"]))


def assert_clean(page: Page) -> None:
    assert page.errors == []
    offsite = [url for url in page.requests if not url.startswith(("file:", "data:"))]
    assert offsite == []
    assert page.scripts == 0
    assert page.broken_images == 0
    assert_not_blank(page.png)


def assert_not_blank(png: bytes) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 24)
    assert image.height > 1500  # a whole report, not an error page
    assert len(colors) > 500, f"only {len(colors)} colours: the page looks blank"
    assert max(count for count, _ in colors) < 0.85 * image.width * image.height  # no single colour fills it


def keep_screenshot(request, page: Page, name: str) -> Path:
    folder = Path(os.environ.get("FMNIST_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "fmnist-report-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(page.png)
    with request.getfixturevalue("capsys").disabled():  # shown in a plain pytest run, not only with -s
        print(f"\nscreenshot: {path}")
    return path


def test_browser_checks_catch_scripts_errors_and_requests(browser, tmp_path):
    """The checks below are not vacuous: a page that does these things is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    page = open_page(browser, bad)
    assert any("boom" in e for e in page.errors)
    assert "http://127.0.0.1:9/x.png" in page.requests
    assert page.scripts == 1
    assert page.broken_images == 1
    with pytest.raises(AssertionError, match="blank"):
        assert_not_blank(_blank_png(1280, 2000))


def _blank_png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_run_report_in_chromium(browser, completed_run, request):
    page = open_page(browser, write_run_report(completed_run))
    keep_screenshot(request, page, "run_report.png")
    assert_clean(page)
    for heading in ("What was run", "Training curves", "Confusion matrix", "Misclassified test images"):
        assert heading in page.text
    assert "Weights and gradients per layer" in page.text


def test_escaped_run_report_in_chromium(browser, completed_run, request):
    run = copy_run(completed_run, EVIL.replace("/", "_"))
    config = json.loads((run / "config.json").read_text())
    config["command"] = ["fmnist", "train", "--out", "</pre><script>alert(3)</script>"]
    (run / "config.json").write_text(json.dumps(config))
    page = open_page(browser, write_run_report(run))
    assert_clean(page)  # no script element, no request to "x", no error
    assert '<script>alert("run")<script>' in page.text  # shown as the text it is
    assert "</pre><script>alert(3)</script>" in page.text


def test_diverged_run_report_in_chromium(browser, completed_run):
    run = copy_run(completed_run, "diverged-browser")
    (run / "summary.json").write_text(json.dumps({"status": "diverged", "error": "loss is nan", "last_good_epoch": 2}))
    (run / "model.npz").unlink()
    page = open_page(browser, write_run_report(run))
    assert_clean(page)
    assert "This run diverged" in page.text


def test_sweep_report_in_chromium(browser, sweep_dir, request):
    page = open_page(browser, write_sweep_report(sweep_dir))
    keep_screenshot(request, page, "sweep_report.png")
    assert_clean(page)
    for heading in ("Leaderboard", "Optimisation history", "Parameter importances", "Parallel coordinates"):
        assert heading.upper() in page.text.upper()
    trial = sorted((sweep_dir / "runs").iterdir())[0]
    page = open_page(browser, trial / REPORT)  # a linked trial report opens as well
    assert_clean(page)
