"""The spec-decode suite: what runs inside a Job's container (or a local subprocess) for one cell."""
