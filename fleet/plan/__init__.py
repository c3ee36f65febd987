"""What to run and where, decided from values alone: tiers and catalogs into cells, cells into Job
manifests, shards, CI pipelines, image plans, the retry taxonomy and the GPU-hour accounting.

Nothing here talks to a machine; the adapters (fleet.backends) carry the plans out.
"""
