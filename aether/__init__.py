"""AetherFS client side: the SDK (`aether.client`), the CLI (`aether.cli`) and the
generated API messages (`aether.pb`)."""

# Kept equal to pyproject.toml's version by tests/test_cli.py; read from here
# because importlib.metadata costs ~50 ms at every `aether --version`.
__version__ = "0.1.0"
