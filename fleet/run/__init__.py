"""The application layer: a run composed from its parts, so that the CLI only parses, calls and renders.

plan loads what a run needs once (tier, catalog, baselines); controller is the loop (submit, gather, retry,
judge); submit and resume add the run directory, history and notifications around it; bisection drives
a search over commits on a backend.
"""
