"""Session-wide fixtures: real services, started once.

`postgres_url` and `kafka_bootstrap` come from the plugins below. Both honour the environment
(`DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS`) and otherwise start a local service; when one cannot
be started the test errors with the reason, it never skips. `coverage_gate` holds each
measured package to its coverage floor. `temp_root` gives each session a temporary folder of
its own (two sessions at once no longer cut each other's databases off); `no_dotenv` keeps
a developer's `.env` out of every process the tests start.

The suite runs in two processes (`-n 2 --dist loadfile` in pyproject's addopts: a file's
tests stay together, in one process with its own services), so no test may depend on what
another file ran before it; loggers are therefore not cached (`infra.logging.CACHE_LOGGERS`).
"""

import infra.logging

infra.logging.CACHE_LOGGERS = False

pytest_plugins = [
    "tests.fixtures.temp_root",
    "tests.fixtures.no_dotenv",
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.coverage_gate",
]
