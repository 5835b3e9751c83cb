"""The run report: one self-contained HTML page (every picture a data: URI, nothing fetched),
text from the run's files escaped, missing parts reported, classifier metrics apart from
Inception metrics; and the page renders in a real browser with its images loaded."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from ddpm.config import make_config, save_config
from ddpm.errors import RunError
from ddpm.report import write_report

HOSTILE = '<script>alert("x")</script>'


class _Page(HTMLParser):
    """Tags with their attributes, and which table each table cell sits in."""

    def __init__(self):
        super().__init__()
        self.tags, self.tables, self._table = [], {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._table is not None:
            self.tables[self._table] += data + "|"


def parse(path):
    page = _Page()
    page.feed(path.read_text())
    return page


def _png(path, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(path)


def _gif(path):
    frames = [Image.fromarray(np.full((24, 24), v, dtype=np.uint8)) for v in (0, 128, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _metric(value, floor, n=1000, **extra):
    return {"value": value, "floor": floor, "n": n, **extra}


def image_eval(step=3000):
    return {
        "kind": "images", "data": "mnist", "step": step,
        "protocol": {"n": 1000, "data": "mnist", "reference_split": "train", "n_reference": 4500,
                     "floor_source": "train vs test", "sampler": "ddim", "steps": 100, "eta": 0.0,
                     "clip_denoised": True, "weights": "ema", "seed": 0, "checkpoint_step": step},
        "fid": _metric(31.2, 5.6, n_reference=4500, features="inception-2015-12-05 pool3"),
        "kid": _metric(0.021, 0.001, std=0.002),
        "precision": _metric(0.61, 0.75), "recall": _metric(0.42, 0.74),
        "density": _metric(0.8, 1.0), "coverage": _metric(0.55, 0.9),
        "classifier": {"label": "classifier FID (features of a CNN trained on mnist)", "accuracy_heldout": 0.98,
                       "fid": _metric(12.5, 0.7), "kid": _metric(0.011, 0.0004),
                       "class_histogram": [100, 95, 110, 90, 105, 98, 102, 97, 103, 100],
                       "floor_class_histogram": [99, 113, 100, 102, 98, 90, 99, 104, 97, 98],
                       "mean_confidence": {"value": 0.91, "floor": 0.97}},
        "memorization": {"near_copy_share": {"value": 0.002, "floor": 0.001}, "threshold": 0.1,
                         "median_nn_distance": {"value": 0.35, "floor": 0.33},
                         "pairs": [{"sample_index": 3, "train_index": 1204, "distance": 0.08}],
                         "pairs_image": "memorization_pairs.png"},
        "inception_score": {"value": 2.1, "std": 0.05},  # a metric this report does not know
    }


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


def make_run(tmp_path):
    """A run directory with every part the report shows (real files, no training)."""
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "pictures").mkdir()
    cfg = make_config(data="digits")
    cfg.data.name = HOSTILE
    save_config(cfg, run / "config.toml")
    (run / "run.json").write_text(json.dumps({"shape": [1, 8, 8], "num_classes": 10}))
    lines = []
    for step in (100, 200, 300, 400):
        lines.append({"step": step, "loss": 1.0 / step ** 0.3, "loss_q0": 2.0 / step ** 0.3,
                      "loss_q1": None if step == 100 else 0.5, "loss_q2": 0.3, "loss_q3": 0.1, "lr": 2e-4,
                      "grad_norm": 1.5, "steps_per_sec": 10.0, "examples_per_sec": 640.0, "elapsed": step / 10})
        if step in (200, 400):
            lines.append({"step": step, "eval": image_eval(step)})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    for i, step in enumerate((500, 1000, 1500)):
        _png(run / "samples" / f"step_{step:08d}.png", seed=i)
    for name in ("forward", "reverse", "samples", "loss"):
        _png(run / "pictures" / f"{name}.png", seed=10)
    _gif(run / "pictures" / "reverse.gif")
    _png(run / "memorization_pairs.png", (60, 20))
    (run / "eval.json").write_text(json.dumps(image_eval()))
    t = list(range(1, 101))
    (run / "bpd.json").write_text(json.dumps({
        "bpd": {"value": 1.23, "std_error": 0.02, "n": 500, "unit": "bits/dim", "decoder": "discretized gaussian",
                "split": "test", "steps": 100, "T": 1000, "prior": 0.001, "L0": 0.5},
        "terms": {"t": t, "vb_mean": [10.0 / k for k in t]}}))
    return run


def minimal_run(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    save_config(make_config(data="moons"), run / "config.toml")
    (run / "run.json").write_text(json.dumps({"shape": [2], "num_classes": 0}))
    return run


def test_page_is_self_contained(run_dir):
    out = write_report(run_dir)
    assert out == run_dir / "report.html" and out.is_file()
    assert not list(run_dir.glob(".*.tmp"))  # the temporary file was renamed into place
    page = parse(out)
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) == 3 + 4 + 1 + 4  # snapshots, pictures, pairs, plots (loss, evals, classes, vb)
    assert all(a["src"].startswith(("data:image/png;base64,", "data:image/gif;base64,")) for a in imgs)
    assert any(a["src"].startswith("data:image/gif;base64,") for a in imgs)
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "poster", "data"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(key) or ""), (tag, attrs)
    text = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "<script" not in text.lower().replace("&lt;script", "")
    assert "url(" not in text  # no CSS fetches either
    for sid in ("metrics", "config", "loss", "samples", "processes", "likelihood", "memorization"):
        assert f'id="{sid}"' in text
    assert "step 1,500" in text and "1.23 ± 0.02 bits/dim" in text


def test_hostile_text_is_escaped(run_dir):
    text = write_report(run_dir).read_text()
    assert HOSTILE not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert not any(t == "script" for t, _ in parse(run_dir / "report.html").tags)


def test_classifier_metrics_have_their_own_table(run_dir):
    page = parse(write_report(run_dir))
    inception, classifier = page.tables["metrics-table"], page.tables["classifier-table"]
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert f"|{name}|" in inception
    assert "classifier" not in inception and "12.5" not in inception
    assert "31.2" in inception and "5.6" in inception
    assert "classifier fid" in classifier and "12.5" in classifier and "31.2" not in classifier
    assert "inception_score" in page.tables["other-metrics-table"]  # unknown keys shown, not lost
    assert "sampler" in page.tables["protocol-table"] and "ddim" in page.tables["protocol-table"]
    assert "1204" in page.tables["pairs-table"]


def test_class_conditional_evaluation_has_a_per_class_table(tmp_path):
    run = make_run(tmp_path)
    ev = image_eval()
    ev["fid_per_class"] = {str(c): _metric(40.0 + c, 20.5, n=100) for c in range(10)}
    ev["classifier"]["accuracy"] = _metric(0.93, 0.98, per_class=[0.9 + c / 100 for c in range(10)],
                                           floor_per_class=[0.97] * 10)
    ev["classifier"]["fid_per_class"] = {str(c): _metric(3.0 + c, 1.25, n=100) for c in range(10)}
    (run / "eval.json").write_text(json.dumps(ev))
    page = parse(write_report(run))
    table = page.tables["per-class-table"]
    assert "|7|0.97|0.97|47|20.5|10|1.25|" in table  # class 7: read as requested, Inception and classifier FID
    assert "classifier accuracy" in page.tables["classifier-table"] and "0.93" in page.tables["classifier-table"]
    assert '"fid_per_class"' not in (run / "report.html").read_text()  # a table, not a JSON dump
    assert "per-class-table" not in parse(write_report(make_run(tmp_path / "unconditional"))).tables


def test_missing_parts_are_reported(tmp_path):
    run = minimal_run(tmp_path)
    out = tmp_path / "elsewhere" / "page.html"
    assert write_report(run, out) == out
    text = out.read_text()
    assert not (run / "report.html").exists()
    for what in ("eval.json", "metrics.jsonl", "samples/step_", "pictures/forward.png", "pictures/reverse.gif",
                 "bpd.json", "a memorization check"):
        assert f"Missing: {what}" in text, what
    assert "ddpm evaluate RUN" in text and "ddpm train" in text
    assert "<img" not in text


def test_toy_eval_and_damaged_files(tmp_path):
    run = minimal_run(tmp_path)
    toy = {"data": "moons", "step": 2000, "n": 2000, "sliced_wasserstein": {"value": 0.05, "floor": 0.03, "ratio": 1.7},
           "mmd_rbf": {"value": 1e-3, "floor": 5e-4, "ratio": 2.0}}
    (run / "eval.json").write_text(json.dumps(toy))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 0.5}) + "\n{not json\n"
                                       + json.dumps({"step": 10, "eval": toy}) + "\n")
    (run / "bpd.json").write_text("[1, 2")
    (run / "samples").mkdir()
    for step in range(100, 1600, 100):
        _png(run / "samples" / f"step_{step:08d}.png", (8, 8))
    (run / "samples" / "step_00001600.png").write_bytes(b"")  # a snapshot being written
    (run / "pictures").mkdir()
    (run / "pictures" / "samples.png").write_bytes(b"\x89PNG")
    page = parse(write_report(run))
    assert "sliced_wasserstein" in page.tables["metrics-table"] and "|2000|" in page.tables["metrics-table"]
    text = (run / "report.html").read_text()
    assert "bpd.json could not be read" in text and "1 unreadable line" in text
    assert "Showing 12 of 16 snapshots" in text and "Could not read step_00001600.png" in text
    assert "step 100<" in text and "step 1,500<" in text  # the first and last readable shown
    assert "Missing: pictures/samples.png" in text
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) == 11 + 2  # snapshots (one unreadable), loss and evaluation plots
    assert all(a["class"] == "px" and a["style"] == "width:256px" for a in imgs[2:])  # 8 px enlarged


def test_not_a_run(tmp_path):
    with pytest.raises(RunError, match="config.toml"):
        write_report(tmp_path)


# ------------------------------------------------------------------ browser
CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.querySelectorAll("img")];
  document.body.dataset.images = imgs.length;
  document.body.dataset.loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
});
</script>"""


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("DDPM_REQUIRE_CHROMIUM", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("DDPM_REQUIRE_CHROMIUM is set but no chromium is on PATH (apt-get install chromium)")
        pytest.skip("chromium not installed (set DDPM_REQUIRE_CHROMIUM=1 to make this a failure)")
    return exe


def _browse(exe, page, profile, *args):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing outside resolves
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args, page.as_uri()]
    # the timeout guards against a hang; it is no statement about speed
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _console_errors(stderr: str) -> list:
    """Chromium with --enable-logging=stderr logs each console message of the page as a line
    ``[...:INFO:CONSOLE(line)] "message", source: URL (line)`` (newer builds: ``CONSOLE:line]``);
    uncaught exceptions read ``Uncaught ...``. Any console line from the page, and any
    ``Uncaught``, counts as an error: the page itself writes nothing to the console."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_page_renders_in_chromium(run_dir, tmp_path):
    exe = _chromium()
    page = write_report(run_dir)
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", CHECK_IMAGES + "</body>"))
    res = _browse(exe, checked, tmp_path / "profile1", "--run-all-compositor-stages-before-draw",
                  "--virtual-time-budget=5000", "--dump-dom")
    dom = res.stdout
    assert 'id="metrics-table"' in dom and 'id="classifier-table"' in dom
    n_img = len(re.findall(r"<img\b", page.read_text()))
    m = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-loaded="(\d+)"', dom)
    assert m, dom[:500]
    assert int(m.group(1)) == n_img and int(m.group(2)) == n_img, m.groups()
    assert not _console_errors(res.stderr), _console_errors(res.stderr)

    shot = tmp_path / "shot.png"
    res = _browse(exe, page, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,3000",
                  "--hide-scrollbars")
    assert not _console_errors(res.stderr), _console_errors(res.stderr)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (3000, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, tables and pictures, not a blank page


def test_console_error_detector_sees_errors(tmp_path):
    # the detector must notice a page that does throw, or its silence above means nothing
    exe = _chromium()
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); undefinedCall();"
                    "</script></body></html>")
    res = _browse(exe, page, tmp_path / "profile", "--dump-dom")
    errors = _console_errors(res.stderr)
    assert any("boom" in e for e in errors) and any("Uncaught" in e for e in errors), res.stderr[-2000:]
