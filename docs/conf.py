"""Sphinx configuration: the API reference from the docstrings, how-tos in Markdown.

Build: ``sphinx-build -W -b html docs docs/_build/html`` with tuntap installed (autodoc
imports the installed package, C extension included) and ``docs/requirements.txt``.
"""

import tuntap

project = "tuntap"
author = "tuntap developers"
copyright = "tuntap developers"  # noqa: A001 - the name Sphinx reads
release = tuntap.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # numpy-style docstrings
    "myst_parser",  # the how-tos and design notes are Markdown
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "requirements.txt"]

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"tuntap {release}"
