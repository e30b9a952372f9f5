"""``python -m gitopsd.sandbox``: the same as ``gitopsd sandbox``."""

from .cli import sandbox_command

if __name__ == "__main__":
    sandbox_command(prog_name="gitopsd sandbox")
