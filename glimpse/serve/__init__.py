"""``glimpse serve``: bundles behind HTTP on Ray Serve (the ``serve`` extra); see app.py."""
