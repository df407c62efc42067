"""How aekit's HTML pages are made: Jinja2 templates shipped in aekit/reporting/templates, rendered
with autoescaping, so every value from a run folder (config values, summary strings, file names,
item ids) reaches the page as text. The one thing marked safe is a PNG's base64 data URI
(`png_src`): its alphabet (A-Z a-z 0-9 + / =) cannot form markup, whatever the bytes are.
"""

from __future__ import annotations

import base64
import html
from functools import cache
from importlib.resources import files

import jinja2
from markupsafe import Markup

TEMPLATES = "templates"  # folder of aekit.reporting holding the templates (package data)
STYLE = "\n" + files("aekit.reporting").joinpath(TEMPLATES, "report.css").read_text(encoding="utf-8")


@cache
def environment() -> jinja2.Environment:
    """The template environment: every `{{ value }}` is escaped; an unknown name is an error,
    not an empty string."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("aekit.reporting", TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(template: str, /, **context) -> str:
    """The named template rendered with `context` (plain values; PNGs as `png_src`)."""
    page = environment().get_template(template).render(**context)
    # MarkupSafe writes ' and " as &#39; and &#34;, the pages always had html.escape's &#x27; and &quot;:
    # the same characters to a browser; kept so that a page reads as before. A value can't produce these
    # sequences itself: its own "&" is escaped to "&amp;".
    return page.replace("&#39;", "&#x27;").replace("&#34;", "&quot;")


def png_src(png: bytes) -> Markup:
    """PNG bytes as a data URI for an <img src>, marked safe (base64 cannot hold markup)."""
    return Markup("data:image/png;base64," + base64.b64encode(png).decode("ascii"))


# -- for pages still written as strings (the sweep page, sweeps/overview.py) ----------------------
def esc(value) -> str:
    return html.escape(str(value), quote=True)


def img(png: bytes, alt: str, css: str = "", width: int | None = None) -> str:
    """An <img> holding the PNG itself; `width` in CSS pixels (figures drawn at DPI show at 100 dpi)."""
    w = f' width="{width}"' if width else ""
    c = f' class="{css}"' if css else ""
    return f'<img src="{png_src(png)}" alt="{esc(alt)}"{w}{c}>'
