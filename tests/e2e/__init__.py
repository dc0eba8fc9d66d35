"""End-to-end tests: real processes (Envoy, `extproc up` and `serve`, the `extproc` command,
Claude Code) against the fake providers. `python -m pytest tests/e2e`."""
