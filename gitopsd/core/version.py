"""The version of gitopsd, and the User-Agent every outgoing request carries.

pyproject.toml's ``version`` must be the same string (tests/unit/test_version.py checks it).
"""

__version__ = "0.1.0"

USER_AGENT = f"gitopsd/{__version__}"
"""``gitopsd/<version>``: sent by the Kubernetes client, the built-in plugins' HTTP clients and
git over HTTP (``http.userAgent``), so servers and proxies can tell gitopsd's requests apart."""
