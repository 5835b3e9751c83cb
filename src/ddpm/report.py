"""One self-contained HTML page per run: ``write_report(RUN)`` writes ``RUN/report.html``.

The page shows what the run directory holds (see docs/architecture.md) and says briefly what is
missing and which command makes it: the evaluation (its protocol, Inception metrics with their
data floors, classifier metrics in a table of their own, per-channel colour statistics,
memorization), loss curves, sample grids over training, the forward and reverse processes, the
likelihood, the training data's summary and the configuration.
Every picture is embedded as a base64 ``data:`` URI; the page loads nothing and runs no script.
Plots are drawn with matplotlib's object API (no pyplot state) into PNG bytes in memory.
"""

import base64
import io
import json
import math
import os
import re
import tomllib
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from .errors import RunError

#: which command writes each optional file (shown when the file is missing)
MADE_BY = {
    "metrics.jsonl": "ddpm train",
    "samples": "ddpm train (sample grids at each snapshot step)",
    "pictures/forward.png": "ddpm train (at the start) or ddpm forward",
    "pictures/reverse.png": "ddpm train (at the end)",
    "pictures/reverse.gif": "ddpm train (at the end) or ddpm sample RUN --gif",
    "pictures/samples.png": "ddpm train (at the end) or ddpm sample RUN --grid",
    "eval.json": "ddpm evaluate RUN",
    "bpd.json": "ddpm evaluate RUN --bpd",
    "data.json": "ddpm train (at the start, for image data)",
}
INCEPTION_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
MAX_SNAPSHOTS = 12
MIN_WIDTH = 256  # smaller pictures are enlarged by a whole factor

CSS = """
body{font:15px/1.45 system-ui,sans-serif;color:#222;max-width:1150px;margin:1.5em auto;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:13px}
img{max-width:100%;height:auto}img.px{image-rendering:pixelated}
.strip{display:flex;gap:.8em;overflow-x:auto;padding-bottom:.5em}.strip figure{flex:0 0 auto;margin:0}
.strip img{width:220px!important}figure{margin:.5em 0 1em}figcaption{font-size:.85em;color:#555}
.missing{color:#8a5a00;background:#fff8e6;border-left:3px solid #e0a800;padding:.3em .7em}
.note{color:#555;font-size:.9em}nav a{margin-right:1em}
"""


# ----------------------------------------------------------------- helpers
def _e(x) -> str:
    return escape(str(x), quote=True)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _td(v) -> str:
    num = isinstance(v, (int, float)) and not isinstance(v, bool)
    return f'<td class="num">{_e(_fmt(v))}</td>' if num else f"<td>{_e(_fmt(v))}</td>"


def _table(header, rows, table_id=None) -> str:
    tid = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv_table(d: dict, table_id=None) -> str:
    return _table(("field", "value"), [(k, v) for k, v in d.items()], table_id)


def _missing(what: str, key: str | None = None) -> str:
    made = f" — made by <code>{_e(MADE_BY[key])}</code>" if key in MADE_BY else ""
    return f'<p class="missing">Missing: {_e(what)}{made}.</p>'


def _img(data: bytes, mime: str, alt: str, width: int | None = None) -> str:
    """An <img> of ``data`` as a data: URI; ``width`` enlarges a small picture pixel by pixel."""
    src = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    size = f' class="px" style="width:{width}px"' if width else ""
    return f'<img{size} src="{src}" alt="{_e(alt)}">'


def _file_img(path: Path, alt: str) -> str | None:
    """The picture file as an <img>, None when it is missing or unreadable (e.g. being written)."""
    mime = MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            w = im.width
    except (OSError, ValueError):
        return None
    return _img(path.read_bytes(), mime, alt, w * math.ceil(MIN_WIDTH / w) if w < MIN_WIDTH else None)


def _figure(img: str, caption: str) -> str:
    return f"<figure>{img}<figcaption>{_e(caption)}</figcaption></figure>"


def _plot(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return _img(buf.getvalue(), "image/png", alt)


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _logy(ax, *series):
    vals = np.concatenate([np.asarray(s, dtype=float).ravel() for s in series] or [np.zeros(0)])
    if np.any(np.isfinite(vals) & (vals > 0)):
        ax.set_yscale("log", nonpositive="mask")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _read_json(path: Path):
    """The parsed file, or an error message (a string) when it cannot be read."""
    try:
        return json.loads(_text(path))
    except (OSError, ValueError) as e:
        return f"{path.name} could not be read ({e})"


def _is_metric(v) -> bool:
    return isinstance(v, dict) and "value" in v


# ---------------------------------------------------------------- sections
def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'


def _metric_rows(items, n_default=None):
    """metric / value / data floor / n / other fields, for objects with a ``value``."""
    rows = []
    for name, m in items:
        extra = {k: v for k, v in m.items() if k not in ("value", "floor", "n") and not isinstance(v, (list, dict))}
        notes = ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items())
        rows.append((name, m.get("value"), m.get("floor"), m.get("n", n_default), notes))
    return rows


METRIC_HEADER = ("metric", "value", "data floor", "n", "details")


def _class_histogram(cls: dict) -> str:
    hist, floor = cls.get("class_histogram"), cls.get("floor_class_histogram")
    if not isinstance(hist, list) or not hist:
        return ""
    fig = Figure(figsize=(6, 2.6))
    ax = fig.subplots()
    x = np.arange(len(hist))
    h = np.asarray([_num(v) for v in hist])
    both = isinstance(floor, list) and len(floor) == len(hist)
    width = 0.4 if both else 0.8
    ax.bar(x - width / 2 if both else x, h / max(np.nansum(h), 1), width, label="samples")
    if both:
        f = np.asarray([_num(v) for v in floor])
        ax.bar(x + width / 2, f / max(np.nansum(f), 1), width, label="data (floor)", color="0.6")
    ax.set_xticks(x)
    ax.set_xlabel("class (by the classifier)")
    ax.set_ylabel("share")
    ax.legend(fontsize=8)
    caption = "Share of each class as the classifier labels them: samples against data."
    return _figure(_plot(fig, "class histogram"), caption)


def _metrics_section(ev, evals: list) -> str:
    parts = []
    if ev is None:
        parts.append(_missing("eval.json (metrics against the data)", "eval.json"))
    elif not isinstance(ev, dict):
        parts.append(f'<p class="missing">{_e(ev)}</p>')
    else:
        about = {k: v for k, v in ev.items() if not isinstance(v, (dict, list))}
        parts.append(f'<p class="note">{_e(", ".join(f"{k}: {_fmt(v)}" for k, v in about.items()))}</p>')
        if isinstance(ev.get("protocol"), dict):
            parts.append("<h3>Protocol</h3>" + _kv_table(ev["protocol"], "protocol-table"))
        if ev.get("kind") == "images":
            inc = [(k, ev[k]) for k in INCEPTION_METRICS if _is_metric(ev.get(k))]
            parts.append("<h3>Inception metrics</h3>")
            parts.append(_table(METRIC_HEADER, _metric_rows(inc), "metrics-table") if inc
                         else "<p>No Inception metrics in eval.json.</p>")
            other = [(k, v) for k, v in ev.items() if k not in INCEPTION_METRICS and _is_metric(v)]
        else:
            other, inc = [], [(k, v) for k, v in ev.items() if _is_metric(v)]
            parts.append(_table(METRIC_HEADER, _metric_rows(inc, ev.get("n")), "metrics-table") if inc
                         else "<p>No metrics in eval.json.</p>")
        if other:
            parts.append("<h3>Other metrics</h3>" + _table(METRIC_HEADER, _metric_rows(other), "other-metrics-table"))
        cls = ev.get("classifier")
        if isinstance(cls, dict):
            label = cls.get("label", "classifier metrics (features of a classifier of the data set's classes)")
            parts.append(f'<div id="classifier"><h3>Classifier FID / KID</h3><p class="note">{_e(label)}. '
                         "Distances in the features of a classifier trained on this data set: "
                         "not comparable with Inception FID or with papers.</p>")
            rows = _metric_rows([(f"classifier {k}", v) for k, v in cls.items() if _is_metric(v)])
            parts.append(_table(METRIC_HEADER, rows, "classifier-table"))
            scalars = {k: v for k, v in cls.items() if k != "label" and not isinstance(v, (dict, list))}
            if scalars:
                parts.append(_kv_table(scalars))
            parts.append(_class_histogram(cls) + "</div>")
        parts.append(_per_class_table(ev))
        if isinstance(ev.get("color"), dict):
            parts.append(_color_table(ev["color"]))
        known = {"protocol", "classifier", "memorization", "color", "fid_per_class"}
        for k, v in ev.items():  # anything else structured, shown as it is
            if k not in known and isinstance(v, (dict, list)) and not _is_metric(v):
                parts.append(f"<h3>{_e(k)}</h3><pre>{_e(json.dumps(v, indent=2))}</pre>")
    parts.append(_evals_during_training(evals))
    return _section("metrics", "Evaluation", "".join(parts))


def _per_class_table(ev: dict) -> str:
    """Class-conditional runs: per requested class, the share the classifier reads as that class and
    FID within the class (Inception and classifier), each beside its floor."""
    cls = ev.get("classifier") if isinstance(ev.get("classifier"), dict) else {}
    acc = cls.get("accuracy") if isinstance(cls.get("accuracy"), dict) else {}
    inception = ev.get("fid_per_class") if isinstance(ev.get("fid_per_class"), dict) else {}
    classifier = cls.get("fid_per_class") if isinstance(cls.get("fid_per_class"), dict) else {}
    per, floor = acc.get("per_class") or [], acc.get("floor_per_class") or []
    classes = sorted(set(inception) | set(classifier) | {str(c) for c in range(len(per))}, key=lambda c: int(c))
    if not classes:
        return ""

    def at(values, c):
        return values[int(c)] if isinstance(values, list) and int(c) < len(values) else None

    def fid(table, c, key):
        return table.get(c, {}).get(key) if isinstance(table.get(c), dict) else None

    rows = [(c, at(per, c), at(floor, c), fid(inception, c, "value"), fid(inception, c, "floor"),
             fid(classifier, c, "value"), fid(classifier, c, "floor")) for c in classes]
    note = ("Samples drawn for each class (the protocol says how many and with which guidance): the share the "
            "data set's classifier reads as the requested class, and FID of the class's samples against the "
            "reference images of that class; each floor is the same number for real images of that class.")
    header = ("class", "read as requested", "floor", "Inception FID", "floor", "classifier FID", "floor")
    return f'<h3>Per class</h3><p class="note">{note}</p>' + _table(header, rows, "per-class-table")


def _color_table(color: dict) -> str:
    """Per-channel mean and std: samples, data, their difference, and the floor images' difference."""
    channels = color.get("channels")
    if not isinstance(channels, list):
        return ""
    n = color.get("n", "n")
    sets = (("samples", "samples"), ("data", "data"), ("samples − data", "difference"),
            (f"{n} real images − data (floor)", "floor_difference"))
    rows = []
    for stat in ("mean", "std"):
        for label, key in sets:
            values = color.get(key, {}).get(stat) if isinstance(color.get(key), dict) else None
            values = values if isinstance(values, list) else []
            rows.append((stat, label, *[values[i] if i < len(values) else None for i in range(len(channels))]))
    note = (f"Per-channel statistics of pixel values ({_e(color.get('unit', '0-255'))}) over all pixels of "
            f"{_e(_fmt(color.get('n')))} samples and {_e(_fmt(color.get('n_reference')))} reference images. A colour "
            "shift shows as a difference well beyond the floor's (real images at the same n).")
    return (f'<h3>Colour statistics</h3><p class="note">{note}</p>'
            + _table(("statistic", "images", *channels), rows, "color-table"))


def _evals_during_training(evals: list) -> str:
    series = {}  # label -> (steps, values, floors)
    for rec in evals:
        ev = rec["eval"]
        heads = [("Inception FID", ev.get("fid"))]
        if isinstance(ev.get("classifier"), dict):
            heads.append(("classifier FID", ev["classifier"].get("fid")))
        if ev.get("kind") != "images":
            heads += [(k, v) for k, v in ev.items() if k not in ("fid", "classifier")]
        for label, m in heads:
            if _is_metric(m):
                s = series.setdefault(label, ([], [], []))
                s[0].append(_num(rec.get("step")))
                s[1].append(_num(m.get("value")))
                s[2].append(_num(m.get("floor")))
    if not series:
        return ""
    series = list(series.items())[:6]
    fig = Figure(figsize=(3.6 * len(series), 2.8))
    for ax, (label, (steps, vals, floors)) in zip(np.atleast_1d(fig.subplots(1, len(series))), series):
        ax.plot(steps, vals, "o-", c="C0", label="samples")
        if np.any(np.isfinite(floors)):
            ax.plot(steps, floors, "--", c="0.5", label="data floor")
        _logy(ax, vals, floors)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return "<h3>During training</h3>" + _figure(_plot(fig, "evaluation during training"),
                                                "Headline metrics of the evaluations logged in metrics.jsonl.")


def _read_metrics(path: Path):
    train, evals, bad = [], [], 0
    for line in _text(path).splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("eval"), dict):
            evals.append(rec)
        elif isinstance(rec, dict) and "loss" in rec and "step" in rec:
            train.append(rec)
    return train, evals, bad


def _loss_section(train: list, bad: int, present: bool) -> str:
    if not present:
        return _section("loss", "Training loss", _missing("metrics.jsonl (training log)", "metrics.jsonl"))
    if not train:
        return _section("loss", "Training loss", "<p>metrics.jsonl holds no training records.</p>")
    steps = [_num(r["step"]) for r in train]
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    loss = [_num(r["loss"]) for r in train]
    ax.plot(steps, loss, c="k", lw=1.5, label="loss")
    curves = [loss]
    for q in range(4):
        vals = [_num(r.get(f"loss_q{q}")) for r in train]
        if np.any(np.isfinite(vals)):
            ax.plot(steps, vals, lw=0.8, label=f"t in quartile {q + 1}")
            curves.append(vals)
    _logy(ax, *curves)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    last = {k: v for k, v in train[-1].items() if not isinstance(v, (dict, list))}
    note = f'<p class="note">{bad} unreadable line(s) in metrics.jsonl were skipped.</p>' if bad else ""
    body = (_figure(_plot(fig, "loss curves"), "Training loss, total and per quartile of the timestep t (log scale).")
            + "<h3>Last training record</h3>" + _kv_table(last, "last-record") + note)
    return _section("loss", "Training loss", body)


def _samples_section(run: Path) -> str:
    snaps = []
    for p in (run / "samples").glob("step_*"):
        m = re.fullmatch(r"step_(\d+)", p.stem)
        if m and p.suffix.lower() in MIME:
            snaps.append((int(m.group(1)), p))
    if not snaps:
        return _section("samples", "Samples during training", _missing("samples/step_*.png", "samples"))
    snaps.sort()
    shown = snaps
    if len(snaps) > MAX_SNAPSHOTS:
        idx = np.unique(np.linspace(0, len(snaps) - 1, MAX_SNAPSHOTS).round().astype(int))
        shown = [snaps[i] for i in idx]
    figs, unreadable = [], []
    for step, p in shown:
        img = _file_img(p, f"samples at step {step}")
        if img:
            figs.append(_figure(img, f"step {step:,}"))
        else:
            unreadable.append(p.name)
    note = f"Showing {len(shown)} of {len(snaps)} snapshots. " if len(shown) < len(snaps) else ""
    note += f"Could not read {', '.join(unreadable)}." if unreadable else ""
    figs, note = "".join(figs), f'<p class="note">{_e(note)}</p>' if note else ""
    return _section("samples", "Samples during training", f'<div class="strip">{figs}</div>{note}')


def _processes_section(run: Path) -> str:
    pics = [("forward.png", "Forward process q(x_t | x_0): data to noise."),
            ("reverse.png", "Reverse process: noise to samples."),
            ("reverse.gif", "Reverse process, animated."),
            ("samples.png", "Final samples (EMA weights).")]
    parts = []
    for name, caption in pics:
        img = _file_img(run / "pictures" / name, caption)
        missing = _missing(f"pictures/{name} (or unreadable)", f"pictures/{name}")
        parts.append(_figure(img, caption) if img else missing)
    return _section("processes", "Forward and reverse processes, final samples", "".join(parts))


def _likelihood_section(run: Path) -> str:
    path = run / "bpd.json"
    if not path.is_file():
        return _section("likelihood", "Likelihood", _missing("bpd.json (bits per dimension)", "bpd.json"))
    doc = _read_json(path)
    if not isinstance(doc, dict):
        return _section("likelihood", "Likelihood", f'<p class="missing">{_e(doc)}</p>')
    parts = []
    bpd = doc.get("bpd")
    if isinstance(bpd, dict):
        se = f" ± {_fmt(bpd['std_error'])}" if bpd.get("std_error") is not None else ""
        parts.append(f'<p id="bpd-value"><strong>{_e(_fmt(bpd.get("value")) + se)} {_e(bpd.get("unit", "bits/dim"))}'
                     f"</strong> (n = {_e(_fmt(bpd.get('n')))})</p>")
        parts.append(_kv_table({k: v for k, v in bpd.items() if k not in ("value", "std_error")}, "bpd-table"))
    terms = doc.get("terms")
    if isinstance(terms, dict) and isinstance(terms.get("t"), list) and isinstance(terms.get("vb_mean"), list):
        t, vb = [_num(v) for v in terms["t"]], [_num(v) for v in terms["vb_mean"]]
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        ax.plot(t[: len(vb)], vb[: len(t)], c="C0")
        _logy(ax, vb)
        ax.set_xlabel("t")
        ax.set_ylabel("mean term (bits/dim)")
        ax.grid(alpha=0.3)
        parts.append(_figure(_plot(fig, "variational bound terms"), "Terms of the variational bound against t."))
    return _section("likelihood", "Likelihood", "".join(parts) or "<p>bpd.json holds no bpd.</p>")


def _memorization_section(run: Path, ev) -> str:
    mem = ev.get("memorization") if isinstance(ev, dict) else None
    if not isinstance(mem, dict):
        return _section("memorization", "Memorization",
                        _missing("a memorization check in eval.json (image runs)", "eval.json"))
    metrics = [(k, v) for k, v in mem.items() if _is_metric(v)]
    parts = [_table(METRIC_HEADER, _metric_rows(metrics), "memorization-table")] if metrics else []
    scalars = {k: v for k, v in mem.items() if not isinstance(v, (dict, list)) and k != "pairs_image"}
    if scalars:
        parts.append(_kv_table(scalars))
    pairs = mem.get("pairs")
    if isinstance(pairs, list) and pairs:
        keys = list(dict.fromkeys(k for p in pairs[:20] if isinstance(p, dict) for k in p))
        rows = [[p.get(k) for k in keys] for p in pairs[:20] if isinstance(p, dict)]
        parts.append("<h3>Nearest training images</h3>" + _table(keys, rows, "pairs-table"))
    name = mem.get("pairs_image")
    if isinstance(name, str):
        path = (run / name).resolve()
        img = _file_img(path, "sample and nearest training image") if path.is_relative_to(run.resolve()) else None
        parts.append(_figure(img, "Top: the samples nearest a training image; below each, that training image.") if img
                     else f'<p class="missing">Missing: pairs image {_e(name)}.</p>')
    return _section("memorization", "Memorization", "".join(parts))


def _data_section(run: Path, meta) -> str:
    """The training data's summary (``data.json``, written for image data at the start of training)."""
    path = run / "data.json"
    if not path.is_file():
        image = isinstance(meta, dict) and isinstance(meta.get("shape"), list) and len(meta["shape"]) == 3
        body = _missing("data.json (summary of the training images)", "data.json") if image else \
            "<p>2-D data: points drawn from the distribution the configuration names.</p>"
        return _section("data", "Data", body)
    doc = _read_json(path)
    if not isinstance(doc, dict):
        return _section("data", "Data", f'<p class="missing">{_e(doc)}</p>')
    rows = [(k, ", ".join(f"{a} ({_fmt(b)})" for a, b in v.items()) if isinstance(v, dict) else v)
            for k, v in doc.items() if k not in ("channels", "mean", "std", "unit")]
    channels = doc.get("channels") if isinstance(doc.get("channels"), list) else []
    stats = [(name, *[doc[k][i] if isinstance(doc.get(k), list) and i < len(doc[k]) else None
                      for k in ("mean", "std")]) for i, name in enumerate(channels)]
    body = _kv_table(dict(rows), "data-table")
    if stats:
        body += (f'<h3>Per-channel statistics</h3><p class="note">{_e(doc.get("unit", ""))}, over every pixel '
                 "of every training image.</p>" + _table(("channel", "mean", "std"), stats, "data-color-table"))
    return _section("data", "Data", body)


def _config_section(run: Path, meta) -> str:
    parts = ["<h3>run.json</h3>",
             _kv_table(meta, "run-json") if isinstance(meta, dict) else f'<p class="missing">{_e(meta)}</p>',
             "<h3>config.toml (resolved)</h3>",
             f'<pre id="config-toml">{_e(_text(run / "config.toml"))}</pre>']
    return _section("config", "Configuration", "".join(parts))


def _summary(run: Path, meta, train: list) -> str:
    try:
        section = tomllib.loads(_text(run / "config.toml")).get("data")
        data = section.get("name", "?") if isinstance(section, dict) else "?"
    except tomllib.TOMLDecodeError as e:
        data = f"config.toml is not valid TOML ({e})"
    rows = [("run", run.resolve().name), ("data", data)]
    if isinstance(meta, dict):
        rows += [("shape", meta.get("shape")), ("classes", meta.get("num_classes"))]
    if train:
        rows += [("last step", train[-1].get("step")), ("last loss", train[-1].get("loss")),
                 ("elapsed (s)", train[-1].get("elapsed"))]
    return _table(("item", "value"), rows, "summary")


# -------------------------------------------------------------------- page
def render_report(run_dir) -> str:
    """The HTML page of the run in ``run_dir`` (see :func:`write_report`)."""
    run = Path(run_dir)
    for f in ("config.toml", "run.json"):
        if not (run / f).is_file():
            raise RunError(f"{run} is not a run directory (no {f}): pass the --out of a `ddpm train`")
    meta = _read_json(run / "run.json")
    present = (run / "metrics.jsonl").is_file()
    train, evals, bad = _read_metrics(run / "metrics.jsonl") if present else ([], [], 0)
    ev = _read_json(run / "eval.json") if (run / "eval.json").is_file() else None
    sections = [_metrics_section(ev, evals), _loss_section(train, bad, present), _samples_section(run),
                _processes_section(run), _likelihood_section(run), _memorization_section(run, ev),
                _data_section(run, meta), _config_section(run, meta)]
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in
                  ("metrics", "loss", "samples", "processes", "likelihood", "memorization", "data", "config"))
    title = f"ddpm run {run.resolve().name}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1>{_summary(run, meta, train)}<nav>{nav}</nav>{''.join(sections)}"
            "</body></html>\n")


def write_report(run_dir, out=None) -> Path:
    """Write the run's self-contained HTML page (images as data URIs, no script, nothing fetched)
    to ``out`` (default ``RUN/report.html``), atomically; return its path."""
    page = render_report(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
