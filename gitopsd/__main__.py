"""``python -m gitopsd`` runs the CLI."""

from gitopsd.cli import main

main()
