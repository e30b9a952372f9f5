"""``python -m gitopsd`` runs the CLI."""

from gitopsd.cli.main import main

main()
