"""The drift table rows and the self-contained HTML report."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from mlray.monitoring.baseline import Baseline, profile_frame
from mlray.monitoring.drift import DriftReport, compute_drift
from mlray.monitoring.quality import check_quality
from mlray.monitoring.report import DRIFT_COLUMNS, bar_chart, drift_table, html_report
from mlray.monitoring.sketch import Sketch, Sketcher


@pytest.fixture
def setup() -> tuple[Baseline, Sketch]:
    rng = np.random.default_rng(8)
    train = pd.DataFrame({"amount": rng.lognormal(size=4000), "age <x> & 'y'": rng.normal(
        size=4000), "country": rng.choice(["FR", "DE", "US"], size=4000)})
    baseline = profile_frame(train, numeric=["amount", "age <x> & 'y'"],
                             categorical=["country"], predictions=rng.random(4000))
    live = {"amount": rng.lognormal(mean=1.0, size=3000),
            "age <x> & 'y'": rng.normal(size=3000),
            "country": rng.choice(["FR", "DE", "XX"], size=3000)}
    sketch = Sketcher(baseline).sketch(live, rng.random(3000), now=1_700_000_000.0)
    return baseline, sketch


def _parse(page: str) -> ET.Element:
    body = re.sub(r"^<!DOCTYPE html>\s*", "", page)
    return ET.fromstring(body)  # well-formed as XML too: every tag closed, text escaped


def test_drift_table_rows(setup):
    baseline, sketch = setup
    rows = drift_table(compute_drift(baseline, sketch))
    assert [r["feature"] for r in rows] == ["amount", "age <x> & 'y'", "country",
                                            "predictions"]
    assert all(tuple(r) == DRIFT_COLUMNS for r in rows)
    amount, _, country, _ = rows
    assert amount["drifted"] == "yes" and amount["chi2"] == "-" and amount["ks_p"] != "-"
    assert country["kind"] == "categorical" and country["ks"] == "-"
    assert country["chi2_p"] != "-"
    empty = drift_table(compute_drift(baseline, None))
    assert {r["drifted"] for r in empty} == {"n/a"} and empty[0]["psi"] == "-"


def test_html_is_self_contained_and_well_formed(setup):
    baseline, sketch = setup
    drift = compute_drift(baseline, sketch)
    page = html_report(drift, check_quality(baseline, sketch), title="fraud v3 <drift>")
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    root = _parse(page)
    assert root.tag == "html"
    assert len(root.findall(".//svg")) == 4  # three features and the predictions
    assert len(root.findall(".//svg/rect")) == 2 * sum(len(f.labels) for f in
                                                       [*drift.features, drift.predictions])
    assert "fraud v3 &lt;drift&gt;" in page and "age &lt;x&gt; &amp;" in page
    assert "Data quality" in page and "unseen_category" in page
    assert "2023-11-14" in page  # the window's start, in UTC


def test_html_of_empty_report():
    page = html_report(DriftReport())
    root = _parse(page)
    assert root.findall(".//svg") == []
    assert "0 of 0 evaluated" in page


def test_bar_chart_without_data(setup):
    baseline, _ = setup
    feature = compute_drift(baseline, None).features[0]
    svg = bar_chart(feature)
    ET.fromstring(svg)
    assert svg.count("<rect") == 2 * len(feature.labels)
    feature.labels, feature.expected, feature.actual = [], [], []
    assert "no data" in bar_chart(feature)
