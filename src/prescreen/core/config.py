"""Settings, read once from `PRESCREEN_*` environment variables (or a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob an operator may turn; defaults suit one machine with SQLite under ./var/."""

    model_config = SettingsConfigDict(env_prefix="PRESCREEN_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./var/prescreen.db"
    data_dir: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True

    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(100_000_000, gt=0)
    max_text_chars: int = Field(100_000, gt=0)
    max_url_chars: int = Field(8_192, gt=0)

    default_pdq_threshold: int = Field(31, ge=0, le=256)
    min_pdq_quality: int = Field(50, ge=0, le=100)

    workers_in_process: int = Field(1, ge=0, description="Job workers started by `serve`")
    job_lease_seconds: float = Field(60.0, gt=0, description="A silent worker loses its job after")
    webhook_allow_private: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
