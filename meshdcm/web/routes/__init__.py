"""The web UI's routes, one module per area: ``login`` (the pages and the session), ``studies`` (search, a study and
its timeline), ``reports`` (drafts and signing), ``images`` (series for the viewer), ``monitor`` (the mesh and its dead
letters), ``events`` (the browsers' event stream). ``meshdcm.web.app`` lists them all in one table."""
