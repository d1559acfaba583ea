"""The Grafana dashboard and the Prometheus configuration shipped with compose.yaml (issue
20) stay in step with the code: every metric a panel asks exists, every metric is on the
dashboard, and Prometheus scrapes the api and every worker service on its metrics port."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from infra.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "infra" / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "strategies.json"
NAME = re.compile(r"\bstrategies_\w+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exposed_names() -> dict[str, str]:
    """Every series name `/metrics` can show -> its family's name."""
    return {
        family.name + suffix: family.name
        for family in Metrics().registry.collect()
        for suffix in SUFFIXES[family.type]
    }


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    found = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert found
    return found


def test_every_query_of_the_dashboard_names_metrics_the_code_exposes() -> None:
    exposed = exposed_names()
    used: set[str] = set()
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = NAME.findall(target["expr"])
            assert names, (panel["title"], target["expr"])
            unknown = [n for n in names if n not in exposed]
            assert not unknown, (panel["title"], unknown)
            used |= {exposed[n] for n in names}
    # and the dashboard shows every metric there is
    assert used == set(exposed.values())


def test_the_dashboard_reads_the_provisioned_datasource() -> None:
    provisioning = OBSERVABILITY / "grafana" / "provisioning"
    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    uid = datasources[0]["uid"]
    for panel in panels():
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    provider = load_yaml(provisioning / "dashboards" / "strategies.yml")["providers"][0]
    mounted = compose()["services"]["grafana"]["volumes"]
    assert f"./{DASHBOARD.relative_to(ROOT)}:{provider['options']['path']}/{DASHBOARD.name}:ro" in (
        mounted
    )


def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "compose.yaml")


def scrape_targets() -> dict[str, tuple[str, int, dict[str, Any]]]:
    """job -> (DNS name, port, job config) of infra/observability/prometheus.yml."""
    found = {}
    for job in load_yaml(OBSERVABILITY / "prometheus.yml")["scrape_configs"]:
        (discovery,) = job["dns_sd_configs"]
        (name,) = discovery["names"]
        found[job["job_name"]] = (name, discovery["port"], job)
    return found


def test_prometheus_scrapes_the_api_and_every_worker_service_on_its_metrics_port() -> None:
    services = compose()["services"]
    targets = {name: port for name, port, _ in scrape_targets().values()}
    workers = {
        n: s for n, s in services.items() if s.get("command", [])[:2] == ["strategies", "worker"]
    }
    assert workers
    for name, service in workers.items():
        assert targets.get(name) == int(service["environment"]["STRATEGIES_METRICS_PORT"]), name
        assert service["environment"]["STRATEGIES_METRICS_HOST"] == "0.0.0.0", name
    api = services["api"]
    assert targets["api"] == int(api["command"][api["command"].index("--port") + 1])
    assert set(targets) == {*workers, "api"}


def test_prometheus_sends_the_admin_token_to_the_api_and_both_run_under_a_profile() -> None:
    services = compose()["services"]
    _, _, api_job = scrape_targets()["api"]
    token_file = api_job["authorization"]["credentials_file"]
    prometheus = services["prometheus"]
    assert {"source": "admin-token", "target": token_file} in prometheus["configs"]
    assert "admin-token" in compose()["configs"]
    assert "STRATEGIES_ADMIN_TOKEN" in services["api"]["environment"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
