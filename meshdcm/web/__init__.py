"""The radiologist's web UI, served by the ``web`` node (``nodes/web.py``): docs/web.md.

Modules: ``app`` (the route table and middleware), ``routes/`` (the routes, one module per area), ``common`` (what
the routes share), ``auth`` (login, sessions, CSRF), ``view`` (the node's view of the mesh),
``hub`` (change events to the browsers), ``images`` (series pixels for the viewer), ``report`` (template, drafts,
the signed SR), ``static/`` (the page, plain HTML/JS/CSS).
"""

from .app import WebConfig, create_app

__all__ = ["WebConfig", "create_app"]
