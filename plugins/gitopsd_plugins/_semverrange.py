"""The ``SemverRange`` options field, without the semver implementation behind it.

Every source plugin that offers a range (git, OCI, Helm) declares the field, so its module
is imported at every start; the versions and ranges themselves (:mod:`._semver`, two
dataclasses and their patterns) are needed only when a config sets a range, or a source
picks a version: they are imported then.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _valid_range(value: str) -> str:
    from ._semver import Range, RangeError

    try:
        Range.parse(value)
    except RangeError as exc:
        raise ValueError(str(exc)) from None
    return value


SemverRange = Annotated[str, AfterValidator(_valid_range)]
"""An options field holding a semver range, checked when the config is loaded."""
