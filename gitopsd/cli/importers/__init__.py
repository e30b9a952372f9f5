"""``gitopsd import argocd|flux FILE|DIR...``: print a gitopsd config translated from manifests.

Exit 0 when everything was translated, 1 when anything was left out (each is a
``not translated`` comment at the place it belongs) or the input cannot be read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from gitopsd.cli.importers.common import Document, ManifestError, Translation, read_documents


def run_import(translate: Callable[[list[Document]], Translation], paths: tuple[Path, ...], output: Path | None) -> None:
    try:
        docs = list(read_documents(paths))
    except ManifestError as exc:
        click.echo(f"gitopsd: {exc}", err=True)
        sys.exit(1)
    translation = translate(docs)
    translation.secrets_seen = _has_secrets(paths)
    text = translation.to_toml()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    dropped = translation.dropped
    summary = (
        f"{len(translation.apps)} apps, {len(translation.appsets)} appsets, {len(translation.policies)} policies, "
        f"{len(translation.clusters)} cluster stubs (fill in their kubeconfig)"
    )
    if dropped:
        click.echo(f"gitopsd import: {summary}; {dropped} thing(s) not translated: see the 'not translated' comments", err=True)
        sys.exit(1)
    click.echo(f"gitopsd import: {summary}; everything translated", err=True)


def _has_secrets(paths: tuple[Path, ...]) -> bool:
    """Whether the input held Secret documents (only their kind is looked at, never their data)."""
    import yaml

    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.suffix not in (".yaml", ".yml", ".json") and not path.is_file():
                continue
            try:
                for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
                    if isinstance(doc, dict) and doc.get("kind") == "Secret":
                        return True
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
    return False


paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
output_option = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the config here instead of stdout.")


@click.group(name="import")
def import_group() -> None:
    """Translate Argo CD or Flux manifests into a gitopsd config (printed as TOML)."""


@import_group.command(name="argocd")
@paths_argument
@output_option
def argocd_command(paths: tuple[Path, ...], output: Path | None) -> None:
    """Applications, ApplicationSets and AppProjects in FILE|DIR... (multi-document YAML).

    Exits 1 when anything was not translated; each such thing is a comment in the output.
    """
    from gitopsd.cli.importers import argocd as translator

    run_import(translator.translate, paths, output)


@import_group.command(name="flux")
@paths_argument
@output_option
def flux_command(paths: tuple[Path, ...], output: Path | None) -> None:
    """GitRepository, OCIRepository, HelmRepository, Kustomization and HelmRelease in FILE|DIR...

    Exits 1 when anything was not translated; each such thing is a comment in the output.
    """
    from gitopsd.cli.importers import flux as translator

    run_import(translator.translate, paths, output)
