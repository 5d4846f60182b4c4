"""Settings, read once from `PRESCREEN_*` environment variables (or a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    # PostgreSQL connection pool, per process (see docs/operations.md).
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout_seconds: float = Field(10.0, gt=0, description="Wait for a free connection")
    db_pool_recycle_seconds: int = Field(1800, description="Reopen connections older than this")

    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_import_bytes: int = Field(1024 * 1024 * 1024, gt=0, description="Bank import bodies")
    max_image_pixels: int = Field(100_000_000, gt=0)
    max_text_chars: int = Field(100_000, gt=0)
    max_url_chars: int = Field(8_192, gt=0)

    default_pdq_threshold: int = Field(31, ge=0, le=256)
    min_pdq_quality: int = Field(50, ge=0, le=100)
    # Text classifiers: "review" holds for review at the model's high-precision (block)
    # threshold and never blocks by itself; "model" uses the model's hold and block thresholds;
    # "off" skips them. Explicit per-head thresholds override either.
    classifier_policy: Literal["review", "model", "off"] = "review"
    classifier_thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)
    # Looking inside images and video frames (prescreen.screening.media_steps): OCR of captions
    # and logo banks, each within a time budget; an overrun is decided without that step.
    ocr_enabled: bool = True
    ocr_languages: str = Field("eng+ara", pattern=r"^[a-z_]{3,16}(\+[a-z_]{3,16}){0,4}$")
    ocr_budget_ms: float = Field(250.0, gt=0, description="OCR step's time budget per upload")
    logo_enabled: bool = True
    logo_budget_ms: float = Field(200.0, gt=0, description="Logo step's time budget per upload")

    web_workers: int = Field(
        0, ge=0, description="HTTP worker processes started by `serve`; 0 = one per core"
    )
    # Blocking work other than hashing uploads (lookups that cannot be answered on the event
    # loop, reviews, imports): two per worker, so one slow request does not hold up the rest.
    request_threads: int = Field(2, ge=1, description="Threads per HTTP worker for blocking work")
    # Uploads one worker hashes and screens at once. Two at once in one process contend for
    # its GIL: on 2 cores with a worker per core, 2 MP JPEGs at c=4 screened at 93-96 req/s
    # with p99 80 ms one at a time, against 86-92 req/s with p99 107-125 ms two at a time, and
    # held 15 MB less (docs/benchmarks.md).
    hashing_threads: int = Field(
        1, ge=1, description="Uploads each HTTP worker hashes and screens at once"
    )
    workers_in_process: int = Field(1, ge=0, description="Job workers started by `serve`")
    # A `serve` worker that, after a large background job and giving back what it freed, holds
    # this much more private memory than when it started is replaced by a fresh fork (it takes
    # no more connections and exits once none has a request in flight): each retro-scan run
    # over 100,000 new bank entries left 26-29 MB in the worker that ran it, for good; serving
    # uploads adds well under 10.
    worker_refresh_mb: float = Field(
        20.0, ge=0, description="Private memory a `serve` worker may gain before it is replaced"
    )
    # A verified API key is trusted for this long without a database read; a revocation made
    # in another process takes at most this long to apply (0 checks every request).
    auth_cache_seconds: float = Field(5.0, ge=0)
    job_lease_seconds: float = Field(60.0, gt=0, description="A silent worker loses its job after")
    webhook_allow_private: bool = False

    # Retro-scans (prescreen.screening.retroscan): stored signals of allowed content against
    # entries banks gain. "policy" acts as the bank says (block: take down, hold: hold);
    # "hold" only holds for review.
    retroscan_interval_seconds: float = Field(
        30.0, ge=0, description="Look for new bank entries this often (0: only on demand)"
    )
    retroscan_action: Literal["policy", "hold"] = "policy"
    retroscan_lookback_days: float | None = Field(
        None, gt=0, description="Only contents screened this recently (default: all)"
    )

    # Review (prescreen.review): SLAs per priority, claims, strikes, banks fed by decisions, UI.
    review_sla_critical_hours: float = Field(1.0, gt=0, description="CSAM, imminent threat")
    review_sla_high_hours: float = Field(4.0, gt=0, description="terrorism, extremism, NCII")
    review_sla_normal_hours: float = Field(24.0, gt=0)
    review_sla_low_hours: float = Field(72.0, gt=0)
    review_claim_minutes: float = Field(30.0, gt=0, description="An idle claim lapses after")
    review_bank: str = Field("review-violating", description="Default bank for violations")
    review_allow_bank: str = Field("review-allow-list", description="Allow-list bank")
    strike_window_days: float = Field(90.0, gt=0, description="Strikes count this far back")
    strike_count: int = Field(3, ge=1, description="Strikes that hold an uploader's uploads")
    ui_session_idle_minutes: float = Field(30.0, gt=0)
    ui_session_max_hours: float = Field(12.0, gt=0)
    ui_cookie_secure: bool = Field(False, description="Send UI cookies over HTTPS only")
    session_secret: SecretStr | None = Field(
        None, description="Default: generated once into DATA_DIR/session_secret"
    )

    # Franking (prescreen.franking): platform keys, report verification, membership check.
    franking_master_key: SecretStr | None = Field(
        None, description="32 bytes (hex or base64); default: generated into DATA_DIR"
    )
    franking_key_retire_after_days: float = Field(
        365.0, ge=0, description="A rotated-out key keeps verifying reports this long"
    )
    membership_callback_url: str | None = Field(
        None, description='POST {conversation_id, user_id, at} -> {"member": bool}'
    )
    membership_callback_token: SecretStr | None = Field(None, description="Sent as Bearer")
    membership_callback_timeout_seconds: float = Field(5.0, gt=0)
    membership_check: str | None = Field(None, description='In-process "module:function"')

    # Audit log and legal requests (prescreen.audit, prescreen.legal).
    audit_signing_key: SecretStr | None = Field(
        None, description="Ed25519 key, base64 of 32 raw bytes; default: generated into DATA_DIR"
    )
    audit_sign_interval_seconds: float = Field(
        60.0, ge=0, description="Sign a tree head this often when the log grew (0: only on demand)"
    )
    audit_head_max_age_seconds: float = Field(
        3600.0, gt=0, description="Sign a fresh head of an unchanged log after this long"
    )
    audit_witness_urls: list[str] = Field(
        default_factory=list, description="Every signed tree head is POSTed to these (JSON list)"
    )
    legal_jurisdictions: list[str] = Field(
        default_factory=lambda: [
            *("US", "GB", "EU", "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI"),
            *("FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT"),
            *("RO", "SE", "SI", "SK"),
        ],
        description="Jurisdictions (ISO 3166 country, or EU) whose legal process is accepted",
    )
    legal_max_accounts: int = Field(25, ge=1, description="More accounts in one request: too broad")
    legal_hold_days: float = Field(90.0, gt=0, description="A preservation hold lasts, renewable")
    legal_emergency_review_hours: float = Field(72.0, gt=0, description="Second review within")
    legal_removal_deadline_minutes: float = Field(60.0, gt=0, description="TCO removal clock")
    retention_days: float | None = Field(
        None, gt=0, description="Delete screened contents older than this, except held ones"
    )
    retention_sweep_minutes: float = Field(60.0, gt=0, description="Retention sweep interval")


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
