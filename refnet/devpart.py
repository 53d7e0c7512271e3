"""Whether this install has the development part (refnet_dev, bench, the embedded servers of refnet[dev]);
the one-line reason a command exits with when it does not (a production install has none of it)."""

from __future__ import annotations

__all__ = ["INSTALL", "require"]

INSTALL = "pip install 'refnet[dev]'"
URLS = "set REFNET_DATABASE_URL and REFNET_NATS_URL"


def _missing(*, postgres: bool, nats: bool, bench: bool) -> tuple[bool, list[str]]:
    """(refnet_dev importable, what else is missing)."""
    missing: list[str] = []
    try:
        from refnet_dev.embedded import missing_servers
    except ImportError:
        return False, missing
    missing += missing_servers(postgres=postgres, nats=nats)
    if bench:
        try:
            import bench as _bench  # noqa: F401 - only whether it is there
        except ImportError:
            missing.append("the benchmarks (bench)")
    return True, missing


def require(
    command: str,
    *,
    postgres: bool = False,
    nats: bool = False,
    bench: bool = False,
    urls: bool = False,
    serve: bool = False,
) -> None:
    """Exit with a one-line reason unless `refnet COMMAND` has what it needs here: refnet_dev always, and
    the embedded PostgreSQL / nats-server / bench when asked. ``urls``: setting the URLs is the other way
    out of a missing embedded server; ``serve``: `refnet serve` is the production way to do the same."""
    has_dev, missing = _missing(postgres=postgres, nats=nats, bench=bench)
    if not has_dev:
        raise SystemExit(
            f"refnet {command}: the development part (refnet_dev) is not installed, as in production: {INSTALL}"
            + (f", or {URLS} and run `refnet serve intake|routing|notify`" if serve else "")
        )
    if missing:
        raise SystemExit(
            f"refnet {command}: no {' and no '.join(missing)}: {INSTALL}" + (f", or {URLS}" if urls else "")
        )
