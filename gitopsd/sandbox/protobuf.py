"""Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``) for built-in kinds.

Filled in below; the descriptors come from scripts/install-tools.sh.
"""

from __future__ import annotations

import os
from pathlib import Path

PROTOS_ENV = "GITOPSD_SANDBOX_PROTOS"


def default_protos_dir() -> Path:
    """Where the API's FileDescriptorProtos are: ``$GITOPSD_SANDBOX_PROTOS``, else ``.tools/k8s-protos``
    of the source checkout, else of the working directory."""
    env = os.environ.get(PROTOS_ENV)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / ".tools" / "k8s-protos"
    return checkout if checkout.is_dir() else Path.cwd() / ".tools" / "k8s-protos"
