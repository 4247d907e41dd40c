"""The offline-report check itself: any load from outside the file is caught, however it is spelled."""

from __future__ import annotations

import pytest
from notebook_checks import assert_code_free_offline_report, external_loads

PNG = "data:image/png;base64,iVBORw0KGgo="
GOOD = (f'<html><head><style>.x {{ background: url("{PNG}") }}</style></head><body>'
        f'<h1>SANDBOX DATA</h1><img src="{PNG}"><img alt="chart" src="{PNG}">'
        '<a href="https://docs.customer.io">docs</a><svg><use href="#dot"/></svg>'
        "<h2>What to do next</h2></body></html>")

EXTERNAL = [
    '<script src="https://cdn.example/require.js"></script>',
    "<script src='//cdn.example/require.js'></script>",
    '<script type="text/javascript" src="static/require.js"></script>',
    '<SCRIPT SRC=https://cdn.example/x.js></SCRIPT>',
    '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Inter">',
    "<LINK REL=stylesheet HREF=custom.css>",
    '<link href="https://cdn.example/theme.css" rel="stylesheet">',
    '<link rel="preload" as="font" href="https://cdn.example/inter.woff2">',
    '<link rel="icon" href="/favicon.ico">',
    '<img src="http://cdn.example/chart.png">',
    f'<img src="{PNG}" srcset="{PNG} 1x, https://cdn.example/chart@2x.png 2x">',
    '<style>@import url("https://fonts.googleapis.com/css2?family=Inter");</style>',
    "<style>@import 'theme.css';</style>",
    "<style>@font-face { font-family: I; src: url(https://cdn.example/i.woff2) }</style>",
    "<div style=\"background: url('https://cdn.example/bg.png')\"></div>",
    '<iframe src="https://cdn.example/widget"></iframe>',
    '<video poster="https://cdn.example/poster.png"></video>',
    '<object data="chart.svg"></object>',
]


def test_a_self_contained_page_passes() -> None:
    assert external_loads(GOOD) == []
    assert_code_free_offline_report(GOOD, (), min_images=2)


@pytest.mark.parametrize("load", EXTERNAL)
def test_any_external_script_style_image_or_font_is_rejected(load: str) -> None:
    page = GOOD.replace("</head>", f"{load}</head>")
    assert external_loads(page), load
    with pytest.raises(AssertionError):
        assert_code_free_offline_report(page, (), min_images=2)


def test_code_and_missing_charts_are_still_rejected() -> None:
    with pytest.raises(AssertionError):
        assert_code_free_offline_report(GOOD.replace("<h1>", "<pre>import pandas</pre><h1>"), (),
                                        min_images=2)
    with pytest.raises(AssertionError):
        assert_code_free_offline_report(GOOD, (), min_images=3)
