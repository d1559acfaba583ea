"""Session-wide fixtures: real services, started once.

`postgres_url` and `kafka_bootstrap` come from the plugins below. Both honour the environment
(`DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS`) and otherwise start a local service; when one cannot
be started the test errors with the reason, it never skips. `coverage_gate` holds each
measured package to its coverage floor. `temp_root` gives each session a temporary folder of
its own (two sessions at once no longer cut each other's databases off).
"""

pytest_plugins = [
    "tests.fixtures.temp_root",
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.coverage_gate",
]
