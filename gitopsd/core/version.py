"""The version of gitopsd, and the User-Agent every outgoing request carries.

pyproject.toml's ``version`` must be the same string (tests/unit/test_version.py checks it).
"""

__version__ = "0.1.0"

USER_AGENT = f"gitopsd/{__version__}"
"""``gitopsd/<version>``: sent by the Kubernetes client, the built-in plugins' HTTP clients and
git over HTTP (``http.userAgent``), so servers and proxies can tell gitopsd's requests apart."""


def user_agent(member: str | None = None) -> str:
    """The User-Agent, naming the coordination member when there is one: ``gitopsd/<version> (member NAME)``.

    Servers can then tell the members of one installation apart (the sandbox counts
    requests per client by it).
    """
    return f"{USER_AGENT} (member {member})" if member else USER_AGENT
