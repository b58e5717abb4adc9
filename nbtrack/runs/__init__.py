"""The runs service: every front-end reads runs through it (list, resolve an id, show, diff, sync)."""
