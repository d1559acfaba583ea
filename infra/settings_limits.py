"""The settings of the request budgets and the passphrase check (`STRATEGIES_RATE_LIMIT_*`,
`STRATEGIES_AUTH_*`, `STRATEGIES_PASSPHRASE_CHECKS*`), mixed into `infra.settings.Settings`.

The defaults are far above what a platform's client, the demos, the benchmark or the test
suite send (the busiest, the API fuzzer, stays under about 100 requests per second on one
key), so they only ever stop a runaway client. What they guard is another platform's latency:
a wrong passphrase costs a deliberate scrypt (~40 ms of CPU), so failures have a much smaller
budget of their own, and scrypt runs in a few bounded slots, one platform at a time each.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from domain.budgets import Rate


@dataclass(frozen=True)
class AbuseLimits:
    per_key: Rate
    per_platform: Rate
    failures_per_key: Rate
    failure_cache_ttl_s: float
    passphrase_checks: int
    passphrase_checks_per_platform: int


class AbuseLimitSettings(BaseModel):
    """Fields only; `Settings` reads them from the environment with the rest."""

    rate_limit_per_key: float = Field(
        default=100.0, gt=0, validation_alias="STRATEGIES_RATE_LIMIT_PER_KEY"
    )
    rate_limit_per_key_burst: int = Field(
        default=1000, ge=1, validation_alias="STRATEGIES_RATE_LIMIT_PER_KEY_BURST"
    )
    rate_limit_per_platform: float = Field(
        default=200.0, gt=0, validation_alias="STRATEGIES_RATE_LIMIT_PER_PLATFORM"
    )
    rate_limit_per_platform_burst: int = Field(
        default=2000, ge=1, validation_alias="STRATEGIES_RATE_LIMIT_PER_PLATFORM_BURST"
    )
    auth_failures_per_minute: float = Field(
        default=10.0, gt=0, validation_alias="STRATEGIES_AUTH_FAILURES_PER_MINUTE"
    )
    auth_failure_burst: int = Field(
        default=10, ge=1, validation_alias="STRATEGIES_AUTH_FAILURE_BURST"
    )
    auth_failure_cache_ttl_s: float = Field(
        default=60.0, gt=0, le=3600, validation_alias="STRATEGIES_AUTH_FAILURE_CACHE_TTL_S"
    )
    passphrase_checks: int = Field(
        default=2, ge=1, le=64, validation_alias="STRATEGIES_PASSPHRASE_CHECKS"
    )
    passphrase_checks_per_platform: int = Field(
        default=1, ge=1, le=64, validation_alias="STRATEGIES_PASSPHRASE_CHECKS_PER_PLATFORM"
    )

    @property
    def abuse_limits(self) -> AbuseLimits:
        return AbuseLimits(
            per_key=Rate(self.rate_limit_per_key, self.rate_limit_per_key_burst),
            per_platform=Rate(self.rate_limit_per_platform, self.rate_limit_per_platform_burst),
            failures_per_key=Rate(self.auth_failures_per_minute / 60, self.auth_failure_burst),
            failure_cache_ttl_s=self.auth_failure_cache_ttl_s,
            passphrase_checks=self.passphrase_checks,
            passphrase_checks_per_platform=min(
                self.passphrase_checks_per_platform, self.passphrase_checks
            ),
        )


DEFAULT_ABUSE_LIMITS = AbuseLimitSettings.model_construct().abuse_limits
