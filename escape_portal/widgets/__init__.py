"""Widgets for notebooks, Voila and hubs, with no lab extension to install.

- :class:`LakeBrowser`: search and browse the data lake, see where data is, bring it near
  the compute, open it.
- :class:`VOSearch`: search the Virtual Observatory; rows that are lake files are marked,
  drawn on a sky view, and can be made available and opened.
- :class:`ProgressWidget`: a make-available request until its data is available or stuck.

They call the same services as the command line and the REST API, and load nothing from
the network but what those services ask: only standard ipywidgets controls, and HTML and
SVG generated here. See ``docs/widgets.md``.
"""

from escape_portal.widgets.browser import BrowserModel, Details, Entry, Listing
from escape_portal.widgets.lake_browser import LakeBrowser
from escape_portal.widgets.progress import ProgressModel, ProgressWidget
from escape_portal.widgets.sky import SkyRow, sky_svg
from escape_portal.widgets.vo import VOForm, VOResults, VOSearchModel
from escape_portal.widgets.vo_search import VOSearch

__all__ = [
    "BrowserModel",
    "Details",
    "Entry",
    "LakeBrowser",
    "Listing",
    "ProgressModel",
    "ProgressWidget",
    "SkyRow",
    "VOForm",
    "VOResults",
    "VOSearch",
    "VOSearchModel",
    "sky_svg",
]
