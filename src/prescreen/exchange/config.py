"""Exchange settings, read from `PRESCREEN_EXCHANGE_*` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExchangeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESCREEN_EXCHANGE_", env_file=".env", extra="ignore"
    )

    pull_interval_seconds: float = Field(300.0, ge=0, description="Pull each peer this often")
    max_backoff_seconds: float = Field(3600.0, gt=0, description="Longest wait after failures")
    page_size: int = Field(500, ge=1, le=1000, description="Feed items asked for per page")
    pages_per_pull: int = Field(1000, ge=1, description="Pages one pull applies at most")
    request_timeout_seconds: float = Field(15.0, gt=0)
    allow_private_peers: bool = Field(
        False, description="Allow peers on private or loopback addresses"
    )
    flood_min_matches: int = Field(50, ge=1, description="An hour below this is never a flood")
    flood_factor: float = Field(
        10.0, gt=1, description="... nor one below this times the usual rate"
    )
    flood_history_hours: int = Field(168, ge=1, description="The usual rate is measured over")


@lru_cache
def exchange_settings() -> ExchangeSettings:
    return ExchangeSettings()
