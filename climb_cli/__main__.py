"""`python -m climb_cli` runs the CLI."""

from climb_cli.cli import main

main()
