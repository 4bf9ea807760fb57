"""The `aether` command line (typer). Entry point: `aether.cli.main:main`."""
