"""Sphinx configuration: MyST pages, the API reference from numpydoc docstrings, the CLI from click."""

import bayescale

project = "bayescale"
author = "the bayescale developers"
release = version = bayescale.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc", "sphinx_click", "sphinx.ext.intersphinx"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
master_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
#: every function of the API reference states its parameters and what it returns
numpydoc_validation_checks = {"PR01", "PR02", "RT01"}
numpydoc_validation_exclude = {r"\.__init__$", r"\.__repr__$"}

intersphinx_mapping = {}  # no network at build time: references outside bayescale render as text

html_theme = "pydata_sphinx_theme"
html_title = "bayescale"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}


def _escape_asterisks(app, ctx, lines):
    """Click help is plain text: ``6*N*D`` and ``fits/*.nc`` are not RST emphasis."""
    lines[:] = [line.replace("*", r"\*") for line in lines]


def setup(app):
    for event in ("options", "description", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{event}", _escape_asterisks)
