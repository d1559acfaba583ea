"""Session-wide fixtures: real services, started once.

`postgres_url` and `kafka_bootstrap` come from the plugins below. Both honour the environment
(`DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS`) and otherwise start a local service; when one cannot
be started the test errors with the reason, it never skips. `coverage_gate` holds each
measured package to its coverage floor.
"""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.coverage_gate",
]
