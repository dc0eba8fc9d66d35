"""What the tests share: fakes of the providers, stream builders, the gateway's start and
stop, request helpers. Test files import from here and from conftest's fixtures, never from
one another (tests/test_layout.py checks)."""
