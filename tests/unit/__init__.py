"""Unit tests: the code in-process, no Envoy, no `extproc up`, no Claude Code. The fast run:
`python -m pytest tests/unit`."""
