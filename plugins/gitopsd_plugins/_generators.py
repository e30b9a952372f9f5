"""Built-in appset generators: ``list``, ``clusters``, ``git-directories``, ``git-files``, ``matrix``.

Registered by :mod:`gitopsd_plugins.generators`, which imports this module only when a
generator type is first looked up (an appset in the config, ``gitopsd plugins``, the docs).

The git ones read a repository through the ``git`` source (:class:`GitSource`): the same
shared bare mirror, single-flight ``ls-remote`` and content-addressed extracted trees as
the apps of that repository, so an appset and its apps polling one repository cost one
``ls-remote`` per poll.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

import gitopsd
from gitopsd import ConfigError, Options, SourceError
from gitopsd.plugin.appsets import PathParam
from gitopsd.plugin.interfaces import GeneratorContext, Params

from .git import GitOptions, GitSource


class ListOptions(Options):
    """Options of ``type = "list"``."""

    elements: list[dict[str, Any]] = Field(description="One table per app; its keys are the template's parameters.")


class ListGenerator(gitopsd.Generator):
    """A fixed list of parameter sets (``elements``), one app each."""

    Options = ListOptions

    def generate(self) -> list[Params]:
        return [dict(element) for element in self.options.elements]


class ClustersOptions(Options):
    """Options of ``type = "clusters"``."""

    selector: dict[str, str] = Field(
        default_factory=dict, description="Labels a cluster must all have (`[clusters.NAME] labels`); empty: every cluster."
    )
    values: dict[str, str] = Field(default_factory=dict, description="Extra parameters, the same for every cluster: `{{ values.KEY }}`.")


class ClustersGenerator(gitopsd.Generator):
    """One parameter set per configured cluster whose labels match ``selector``: ``{{ cluster.name }}``, ``{{ cluster.labels.KEY }}``."""

    Options = ClustersOptions

    def generate(self) -> list[Params]:
        selector = self.options.selector
        return [
            {"cluster": cluster, "values": dict(self.options.values)}
            for name, cluster in sorted(self.ctx.clusters.items())
            if all(cluster["labels"].get(k) == v for k, v in selector.items())
        ]


class _GitGeneratorOptions(GitOptions):
    path: str = Field(".", description='Unused: a git generator reads the whole repository (keep ".").')

    @field_validator("path")
    @classmethod
    def _no_path(cls, value: str) -> str:
        if value != ".":
            raise ValueError("a git generator reads the whole repository: use its globs, not path")
        return value


class GitDirectoriesOptions(_GitGeneratorOptions):
    """Options of ``type = "git-directories"`` (plus the ``git`` source's url, ref and credentials)."""

    directories: list[str] = Field(min_length=1, description='Glob patterns of directories, e.g. `["apps/*"]` (`**` crosses levels).')
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of directories to leave out.")


class GitFilesOptions(_GitGeneratorOptions):
    """Options of ``type = "git-files"`` (plus the ``git`` source's url, ref and credentials)."""

    files: list[str] = Field(min_length=1, description='Glob patterns of YAML or JSON files, e.g. `["clusters/*/config.yaml"]`.')


class _GitGenerator(gitopsd.Generator):
    """What both git generators share: the source, the fetched tree and the polling."""

    def __init__(self, options: GitOptions, ctx: GeneratorContext):
        super().__init__(options, ctx)
        self._source: GitSource | None = None
        self._root: Path | None = None
        self._revision = ""

    @property
    def needs_fetch(self) -> bool:
        return True

    @property
    def revision(self) -> str:
        """The revision the last :meth:`refresh` read."""
        return self._revision

    def source(self) -> GitSource:
        if self._source is None:
            if self.ctx.plugin is None:
                raise SourceError(f"{self.ctx.where}: cannot fetch while the config is being validated")
            self._source = GitSource(self.options, self.ctx.plugin)
        return self._source

    def repositories(self) -> list[tuple[str, str]]:
        return [(self.options.url, self.options.ref or "")]

    def invalidate(self, before: float) -> None:
        if self._source is not None:
            self._source.invalidate(before)

    async def refresh(self) -> bool:
        source = self.source()
        revision = await source.latest_revision()
        if revision == self._revision and self._root is not None:
            return False
        artifact = await source.fetch(revision)
        self._root, self._revision = artifact.path, revision
        return True

    def root(self) -> Path:
        if self._root is None:
            raise SourceError(f"{self.ctx.where}: the repository has not been fetched yet")
        return self._root

    def matches(self, patterns: list[str], want_dirs: bool) -> list[str]:
        """Paths (relative, sorted) matching any of ``patterns``, of directories or of files."""
        root = self.root()
        found: set[str] = set()
        for pattern in patterns:
            for path in root.glob(pattern.strip("/")):
                if path.is_symlink() or not (path.is_dir() if want_dirs else path.is_file()):
                    continue
                try:
                    found.add(path.resolve().relative_to(root.resolve()).as_posix())
                except ValueError:
                    continue  # through a symlinked directory, out of the tree
        return sorted(found)

    async def aclose(self) -> None:
        if self._source is not None:
            await self._source.aclose()


class GitDirectoriesGenerator(_GitGenerator):
    """One parameter set per directory of a repository matching ``directories`` and not ``exclude``: ``{{ path }}``, ``{{ path.basename }}``."""

    Options = GitDirectoriesOptions

    def generate(self) -> list[Params]:
        excluded = set(self.matches(self.options.exclude, want_dirs=True))
        return [
            {"path": PathParam(rel)}
            for rel in self.matches(self.options.directories, want_dirs=True)
            if rel not in excluded and rel != "."
        ]


class GitFilesGenerator(_GitGenerator):
    """One parameter set per YAML/JSON file matching ``files`` (a file holding a list: one per item): its fields, and ``{{ path }}`` (the file's directory, with ``path.filename``)."""

    Options = GitFilesOptions

    def generate(self) -> list[Params]:
        # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
        import yaml

        root = self.root()
        result: list[Params] = []
        for rel in self.matches(self.options.files, want_dirs=False):
            where = f"{self.ctx.where}: {rel} at {self._revision}"
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
            try:
                data = json.loads(text) if rel.endswith(".json") else yaml.safe_load(text)
            except (ValueError, yaml.YAMLError) as exc:
                raise ConfigError([f"{where}: not valid {'JSON' if rel.endswith('.json') else 'YAML'}: {exc}"]) from None
            items = data if isinstance(data, list) else [data]
            directory = str(Path(rel).parent) if str(Path(rel).parent) != "." else ""
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise ConfigError([f"{where}{f' item {i}' if isinstance(data, list) else ''}: expected a mapping of parameters"])
                result.append({**item, "path": PathParam(directory, filename=Path(rel).name)})
        return result


class MatrixOptions(Options):
    """Options of ``type = "matrix"``."""

    generators: list[dict[str, Any]] = Field(
        min_length=2, max_length=2, description="Two generator tables; every parameter set of the first with every one of the second."
    )


class MatrixGenerator(gitopsd.Generator):
    """The product of two generators: each parameter set of the first merged with each of the second."""

    Options = MatrixOptions

    def __init__(self, options: MatrixOptions, ctx: GeneratorContext):
        super().__init__(options, ctx)
        errors: list[str] = []
        self.children: list[gitopsd.Generator] = []
        for i, table in enumerate(options.generators):
            try:
                self.children.append(ctx.build(table, f"{ctx.where}.generators[{i}]"))
            except ConfigError as exc:
                errors.extend(exc.errors)
        if errors:
            raise ConfigError(errors)

    @property
    def needs_fetch(self) -> bool:
        return any(c.needs_fetch for c in self.children)

    async def refresh(self) -> bool:
        changed = [await c.refresh() for c in self.children if c.needs_fetch]
        return any(changed)

    def repositories(self) -> list[tuple[str, str]]:
        return [r for c in self.children for r in c.repositories()]

    def invalidate(self, before: float) -> None:
        for child in self.children:
            child.invalidate(before)

    def generate(self) -> list[Params]:
        first, second = (c.generate() for c in self.children)
        result = []
        for a in first:
            for b in second:
                clash = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
                if clash:
                    raise ConfigError(
                        [f"{self.ctx.where}: both generators set parameter(s) {', '.join(clash)} to different values"]
                    )
                result.append({**a, **b})
        return result

    async def aclose(self) -> None:
        for child in self.children:
            await child.aclose()



GENERATOR_TYPES: dict[str, type[gitopsd.Generator]] = {
    "list": ListGenerator,
    "clusters": ClustersGenerator,
    "git-directories": GitDirectoriesGenerator,
    "git-files": GitFilesGenerator,
    "matrix": MatrixGenerator,
}
