"""Schema management: every model imported in one place, and Alembic run programmatically."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from prescreen.core.db import Database

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
log = logging.getLogger(__name__)


def import_all_models() -> None:
    """Register every table on Base.metadata (Alembic and tests need them all)."""
    from prescreen.audit import models as _audit  # noqa: F401
    from prescreen.banks import models as _banks  # noqa: F401
    from prescreen.core import auth as _auth  # noqa: F401
    from prescreen.exchange import models as _exchange  # noqa: F401
    from prescreen.franking import models as _franking  # noqa: F401
    from prescreen.jobs import models as _jobs  # noqa: F401
    from prescreen.legal import models as _legal  # noqa: F401
    from prescreen.review import models as _review  # noqa: F401
    from prescreen.screening import models as _screening  # noqa: F401
    from prescreen.screening import retroscan_models as _retroscan  # noqa: F401
    from prescreen.transparency import models as _transparency  # noqa: F401
    from prescreen.webhooks import models as _webhooks  # noqa: F401


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(db: Database, revision: str = "heads") -> None:
    """Apply migrations up to `revision` (every branch head by default); safe at every start."""
    with db.engine.begin() as connection:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.info(
        "database schema is current", extra={"tables": len(inspect(db.engine).get_table_names())}
    )
