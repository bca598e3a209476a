"""Blueprints by resource; :data:`BLUEPRINTS` is what :func:`api.create_app` registers.

Every view is thin (STYLE §14): parse the request (:mod:`api.params`,
:mod:`api.encoding`), call the domain or a read model (:mod:`api.queries`,
:mod:`api.proofs`, :mod:`api.submit`), answer with :func:`api.encoding.respond`.
Errors are raised, never answered by hand: :mod:`api.errors` maps them.
"""

from __future__ import annotations

from flask import Blueprint

from . import (
    actors,
    alerts,
    assets,
    backup,
    blocks,
    checks,
    dashboard,
    events,
    genesis,
    health,
    labels,
    log,
    pages,
    reports,
    status,
    tags,
)

BLUEPRINTS: tuple[Blueprint, ...] = (
    status.bp,
    genesis.bp,
    events.bp,
    tags.bp,
    labels.bp,
    checks.bp,
    blocks.bp,
    log.bp,
    actors.bp,
    health.bp,
    pages.bp,
    dashboard.bp,
    backup.bp,
    alerts.bp,
    reports.bp,
    assets.bp,
)
