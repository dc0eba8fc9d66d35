"""envoy_files.EnvoyFiles: how `extproc up` hands a config edit to a running Envoy, against a
fake of Envoy's admin port that takes or rejects the watched files as Envoy does."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from extproc.config import Config, parse
from extproc.control import envoy_files
from extproc.control.connections import connections_within
from extproc.control.envoy_config import (
    REPORT_CLUSTER,
    listener,
    route_configuration,
    versioned_sidecar_cluster,
)
from extproc.control.envoy_files import DeliveryError, EnvoyFiles
from extproc.providers.chains import CHAIN_HEADER
from tests.support.clock import FakeTime, fake_time
from tests.support.fake_envoy_admin import STATS, FakeEnvoyAdmin

OPENAI = "api_openai_com_443"
DEEPSEEK = "api_deepseek_com_443"
DRAIN_S = 600


def config(
    *,
    deepseek: bool = True,
    max_concurrent: int = 4096,
    admin_port: int = 9901,
    max_body: int = 32 * 1024 * 1024,
) -> Config:
    text = f"""\
llm_providers:
  - model: openai/gpt-4.1
    default: true
{"  - model: deepseek/deepseek-chat" if deepseek else ""}
listener:
  admin_port: {admin_port}
  max_concurrent_requests: {max_concurrent}
  max_body_bytes: {max_body}
  failover: false
"""
    return parse(text, "config.yaml")


def chained(*, fallback: bool = False, failover: bool = True) -> Config:
    """Three providers with failover, each with its own key (a pass-through entry would change
    the listener: it shows the client's credentials to the sidecar); with `fallback`,
    deepseek-chat falls back to Claude before the default."""
    text = f"""\
llm_providers:
  - model: openai/gpt-4.1
    access_key: sk-openai
    default: true
  - model: deepseek/deepseek-chat
    access_key: sk-deepseek
{"    fallbacks: [anthropic/claude-sonnet-4-5]" if fallback else ""}
  - model: anthropic/claude-sonnet-4-5
    access_key: sk-ant
listener:
  failover: {"true" if failover else "false"}
"""
    return parse(text, "config.yaml")


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    return fake_time(monkeypatch, envoy_files)


@pytest.fixture
def admin(tmp_path):
    fake = FakeEnvoyAdmin(folder=tmp_path).start()
    yield fake
    fake.stop()


def started(admin: FakeEnvoyAdmin, first: Config) -> EnvoyFiles:
    files = EnvoyFiles(admin.folder, admin.port, DRAIN_S, open_files=1 << 20)
    files.bootstrap(first)
    admin.read_folder()  # Envoy starting
    return files


def on_disk(admin: FakeEnvoyAdmin, name: str) -> dict:
    return yaml.load((admin.folder / name).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def names_on_disk(admin: FakeEnvoyAdmin) -> list[str]:
    return [c["name"] for c in on_disk(admin, "clusters.yaml")["resources"]]


def assert_first_clusters_on_disk(admin) -> None:
    """The clusters file still holds what the first config delivered: a failed edit left it."""
    assert names_on_disk(admin) == [
        versioned_sidecar_cluster(config()),
        REPORT_CLUSTER,
        OPENAI,
        DEEPSEEK,
    ]


def watched(admin: FakeEnvoyAdmin, file: str) -> dict:
    """The config source of a file in the folder Envoy watches."""
    folder = str(admin.folder)
    return {
        "path_config_source": {"path": f"{folder}/{file}", "watched_directory": {"path": folder}},
        "resource_api_version": "V3",
    }


def listener_in_files(admin: FakeEnvoyAdmin, config: Config, sidecar: str) -> dict:
    """The listener as `extproc up` delivers it: its routes are routes.yaml's."""
    typed = listener(config, sidecar, routes_from=watched(admin, "routes.yaml"))
    return {"@type": envoy_files.LISTENER_TYPE, **typed}


def routes_in_force(admin: FakeEnvoyAdmin) -> list[dict]:
    return admin.subscriptions["routes.yaml"].resources


def test_the_bootstrap_points_envoy_at_the_watched_files(admin):
    """The clusters' and the listener's; the listener points at the routes'."""
    first = config()
    path = EnvoyFiles(admin.folder, admin.port, DRAIN_S, open_files=1 << 20).bootstrap(first)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert path == admin.folder / "bootstrap.yaml"
    assert document["node"] == {"id": "extproc", "cluster": "extproc"}
    assert document["admin"]["address"]["socket_address"]["port_value"] == 9901
    assert document["dynamic_resources"] == {
        "cds_config": watched(admin, "clusters.yaml"),
        "lds_config": watched(admin, "listeners.yaml"),
    }
    sidecar = versioned_sidecar_cluster(first)
    clusters = on_disk(admin, "clusters.yaml")
    assert [c["name"] for c in clusters["resources"]] == [sidecar, REPORT_CLUSTER, OPENAI, DEEPSEEK]
    assert {c["@type"] for c in clusters["resources"]} == {envoy_files.CLUSTER_TYPE}
    routes = on_disk(admin, "routes.yaml")
    assert routes["resources"] == [{"@type": envoy_files.ROUTES_TYPE, **route_configuration(first)}]
    listeners = on_disk(admin, "listeners.yaml")
    assert listeners["resources"] == [listener_in_files(admin, first, sidecar)]
    manager = listeners["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["rds"] == {
        "route_config_name": route_configuration(first)["name"],
        "config_source": watched(admin, "routes.yaml"),
    }
    assert "route_config" not in manager
    # Each write is a new version, so Envoy tells them apart.
    versions = (clusters["version_info"], routes["version_info"], listeners["version_info"])
    assert versions == ("1", "2", "3")
    assert not list(admin.folder.glob(".*"))  # written beside, then renamed over


def test_an_edit_reaches_envoy_and_an_unchanged_one_writes_nothing(admin, clock):
    files = started(admin, config())
    assert files.deliver(config(deepseek=False, max_concurrent=100)) is True
    sidecar = versioned_sidecar_cluster(config(max_concurrent=100))
    old_sidecar = versioned_sidecar_cluster(config())
    # The removed provider and the old sidecar cluster are retired, not removed yet.
    assert admin.cluster_names() == [sidecar, REPORT_CLUSTER, OPENAI, old_sidecar, DEEPSEEK]
    in_force = admin.subscriptions["listeners.yaml"].resources
    assert in_force == [listener_in_files(admin, config(max_concurrent=100), sidecar)]
    assert clock.slept == []  # Envoy answered at once: nothing waited for
    version = files.version
    assert files.deliver(config(deepseek=False, max_concurrent=100)) is False
    assert files.version == version


def test_a_listener_envoy_rejects_puts_the_last_good_files_back(admin, clock):
    """An edit of every file (the sidecar cluster's limits, the routes' and the listener's
    body limit), refused at its last step: the listener."""
    files = started(admin, config())
    before_clusters = names_on_disk(admin)
    before_routes = on_disk(admin, "routes.yaml")["resources"]
    before_listener = on_disk(admin, "listeners.yaml")["resources"]
    edited = config(max_concurrent=100, max_body=1 << 20)
    admin.reject.add("listeners.yaml")
    with pytest.raises(DeliveryError, match=r"^Envoy rejected the new listeners.yaml \(its log"):
        files.deliver(edited)
    admin.reject.clear()
    assert admin.taken[-4:] == ["clusters.yaml", "routes.yaml", "routes.yaml", "clusters.yaml"]
    # The new routes and clusters were taken back too, last first: no listener uses them.
    assert names_on_disk(admin) == before_clusters == admin.cluster_names()
    assert on_disk(admin, "routes.yaml")["resources"] == before_routes == routes_in_force(admin)
    assert on_disk(admin, "listeners.yaml")["resources"] == before_listener
    # The next edit starts from what is in force: the same change is delivered again.
    assert files.deliver(edited) is True
    assert admin.cluster_names()[0] == versioned_sidecar_cluster(edited)
    assert routes_in_force(admin) == [
        {"@type": envoy_files.ROUTES_TYPE, **route_configuration(edited)}
    ]


def test_an_edit_to_the_failover_chains_changes_the_routes_and_not_the_listener(admin, clock):
    """A fallback added: Envoy swaps its routes in place (RDS), after the slot cluster they
    name; the listener, and so every connection open on it, stays as it is (a new listener
    would drain them)."""
    files = started(admin, chained())
    listener_version = admin.subscriptions["listeners.yaml"].version_text
    before = routes_in_force(admin)
    admin.taken.clear()
    assert files.deliver(chained(fallback=True)) is True
    assert admin.taken == ["clusters.yaml", "routes.yaml"]
    assert "fo__anthropic_claude-sonnet-4-5" in admin.cluster_names()
    routes = [{"@type": envoy_files.ROUTES_TYPE, **route_configuration(chained(fallback=True))}]
    assert routes_in_force(admin) == routes != before
    assert admin.subscriptions["listeners.yaml"].version_text == listener_version


def test_a_chain_route_an_edit_removes_stays_until_the_sidecar_has_the_edit(admin, clock):
    """Envoy takes an edit before the sidecar reloads, and the sidecar sends requests on the
    old config's chains until then: the chain routes the edit removes stay in force, before
    the new ones (each matches its own chain), and go once the sidecar has the edit."""
    files = started(admin, chained(fallback=True))
    before = route_configuration(chained(fallback=True))["virtual_hosts"][0]["routes"]
    files.deliver(chained())
    after = route_configuration(chained())
    gone = [r for r in before if r not in after["virtual_hosts"][0]["routes"]]
    # deepseek's chains through Claude (sonnet, gpt-4.1; sonnet alone), streamed and whole.
    sonnet = "p__api_deepseek_com_443,fo__anthropic_claude-sonnet-4-5"
    assert [r["match"]["headers"][0]["string_match"]["exact"] for r in gone] == [
        f"{sonnet},fo__openai_gpt-4.1;stream",
        f"{sonnet},fo__openai_gpt-4.1",
        f"{sonnet};stream",
        sonnet,
    ]
    [in_force] = routes_in_force(admin)
    assert in_force["virtual_hosts"][0]["routes"] == [*gone, *after["virtual_hosts"][0]["routes"]]
    assert not lets_a_client_steer_a_chain(admin)
    clock.now += envoy_files.PRUNE_EVERY_S
    files.prune(sidecar_in_step=False)  # the sidecar is still on the old config
    assert routes_in_force(admin) == [in_force]
    clock.now += envoy_files.PRUNE_EVERY_S
    files.prune(sidecar_in_step=True)
    assert routes_in_force(admin) == [{"@type": envoy_files.ROUTES_TYPE, **after}]
    # A later edit brings back no route it removed.
    files.deliver(chained(fallback=True))
    files.deliver(chained())
    [in_force] = routes_in_force(admin)
    assert in_force["virtual_hosts"][0]["routes"] == [*gone, *after["virtual_hosts"][0]["routes"]]


def lets_a_client_steer_a_chain(admin: FakeEnvoyAdmin) -> bool:
    """Whether the routes in force match the chain header and the listener in force leaves
    a client's own in the request (it would pick the provider its request goes to)."""
    [listener_in_force] = admin.subscriptions["listeners.yaml"].resources
    manager = listener_in_force["filter_chains"][0]["filters"][0]["typed_config"]
    [early] = manager["early_header_mutation_extensions"]
    removed = {"remove": CHAIN_HEADER} in early["typed_config"]["mutations"]
    [routes] = routes_in_force(admin)
    matched = [
        route
        for route in routes["virtual_hosts"][0]["routes"]
        if any(h["name"] == CHAIN_HEADER for h in route["match"].get("headers", []))
    ]
    return bool(matched) and not removed


@pytest.mark.parametrize(
    ("failover_before", "order"),
    [
        (False, ["clusters.yaml", "listeners.yaml", "routes.yaml"]),
        (True, ["clusters.yaml", "routes.yaml", "listeners.yaml"]),
    ],
    ids=["failover turned on", "failover turned off"],
)
def test_chain_routes_are_never_in_force_on_a_listener_that_keeps_a_clients_chain_header(
    tmp_path, clock, failover_before, order
):
    """Only a config with chains has the listener remove a client's x-extproc-chain: the
    listener that removes it comes before the chain routes, and goes after them."""

    @dataclass(kw_only=True)
    class Watching(FakeEnvoyAdmin):
        steerable: list[list[str]] = field(default_factory=list)

        def read_folder(self) -> None:
            super().read_folder()
            if self.subscriptions["listeners.yaml"].resources and lets_a_client_steer_a_chain(self):
                self.steerable.append(list(self.taken))

    admin = Watching(folder=tmp_path).start()
    try:
        files = started(admin, chained(failover=failover_before))
        admin.taken.clear()
        assert files.deliver(chained(failover=not failover_before)) is True
        assert admin.taken == order
        assert admin.steerable == []
    finally:
        admin.stop()


def test_routes_envoy_rejects_take_back_the_listener_and_clusters_before_them(admin, clock):
    """Failover turned on: clusters, listener, then routes, which Envoy refuses."""
    files = started(admin, chained(failover=False))
    before = {name: on_disk(admin, name)["resources"] for name in STATS}
    admin.taken.clear()
    admin.reject.add("routes.yaml")
    with pytest.raises(DeliveryError, match=r"^Envoy rejected the new routes\.yaml \(its log"):
        files.deliver(chained())
    admin.reject.clear()
    assert admin.taken == ["clusters.yaml", "listeners.yaml", "listeners.yaml", "clusters.yaml"]
    for name, resources in before.items():
        assert on_disk(admin, name)["resources"] == resources
        assert admin.subscriptions[name].resources == resources
    assert files.deliver(chained()) is True
    assert routes_in_force(admin) == [
        {"@type": envoy_files.ROUTES_TYPE, **route_configuration(chained())}
    ]


def test_clusters_envoy_rejects_are_written_back_and_the_listener_is_not_touched(admin, clock):
    files = started(admin, config())
    listener_version = on_disk(admin, "listeners.yaml")["version_info"]
    admin.reject.add("clusters.yaml")
    with pytest.raises(DeliveryError, match=r"^Envoy rejected the new clusters\.yaml"):
        files.deliver(config(deepseek=False, max_concurrent=100))
    assert_first_clusters_on_disk(admin)
    assert on_disk(admin, "listeners.yaml")["version_info"] == listener_version


def test_an_admin_port_that_does_not_answer_fails_the_delivery_after_the_timeout(admin, clock):
    files = started(admin, config())
    admin.answering = False
    start = clock.now
    with pytest.raises(DeliveryError) as caught:
        files.deliver(config(max_concurrent=100))
    assert str(caught.value) == f"Envoy's admin (http://127.0.0.1:{admin.port}) does not answer"
    assert clock.now - start == pytest.approx(envoy_files.ACK_TIMEOUT_S, abs=0.06)
    assert_first_clusters_on_disk(admin)


def test_an_admin_port_that_answers_late_is_waited_for(admin, clock):
    files = started(admin, config())
    admin.silent_for = 3
    assert files.deliver(config(max_concurrent=100)) is True
    assert clock.slept == [0.05] * 3
    assert admin.cluster_names()[0] == versioned_sidecar_cluster(config(max_concurrent=100))


def test_an_admin_port_that_stops_answering_is_no_rejection(admin, clock):
    files = started(admin, config())
    admin.ignore.add("clusters.yaml")
    admin.answers_left = 1  # the counter before the write, then nothing
    with pytest.raises(DeliveryError, match=r"^Envoy did not apply the new clusters\.yaml in 10s$"):
        files.deliver(config(max_concurrent=100))


def test_clusters_whose_rollback_envoy_rejects_too_stay_written(tmp_path, clock):
    """A listener refused, then the clusters that went with it refused on their way back:
    the file keeps what Envoy has in force, and the refusal is reported."""

    class RejectsTheRollback(FakeEnvoyAdmin):
        def read_folder(self) -> None:
            super().read_folder()
            if self.subscriptions["listeners.yaml"].rejected:
                self.reject.add("clusters.yaml")

    admin = RejectsTheRollback(folder=tmp_path).start()
    try:
        files = started(admin, config())
        admin.reject.add("listeners.yaml")
        with pytest.raises(DeliveryError, match=r"^Envoy rejected the new clusters\.yaml"):
            files.deliver(config(max_concurrent=100))
        in_force = admin.cluster_names()
        assert in_force[0] == versioned_sidecar_cluster(config(max_concurrent=100))
        assert names_on_disk(admin) == in_force
    finally:
        admin.stop()


def test_an_edit_envoy_never_applies_fails_after_the_timeout(admin, clock):
    files = started(admin, config())
    admin.ignore.add("clusters.yaml")
    start = clock.now
    with pytest.raises(DeliveryError, match=r"^Envoy did not apply the new clusters.yaml in 10s$"):
        files.deliver(config(max_concurrent=100))
    assert clock.now - start == pytest.approx(envoy_files.ACK_TIMEOUT_S, abs=0.06)
    assert_first_clusters_on_disk(admin)


def test_a_retired_provider_cluster_goes_once_idle_and_the_sidecar_has_the_edit(admin, clock):
    files = started(admin, config())
    files.deliver(config(deepseek=False))
    sidecar = versioned_sidecar_cluster(config())
    admin.active[DEEPSEEK] = 1
    files.prune(sidecar_in_step=True)  # a request still on it
    assert admin.cluster_names() == [sidecar, REPORT_CLUSTER, OPENAI, DEEPSEEK]
    admin.active[DEEPSEEK] = 0
    clock.now += envoy_files.PRUNE_EVERY_S - 0.01
    files.prune(sidecar_in_step=True)  # looked at about once a second, not more
    assert admin.cluster_names() == [sidecar, REPORT_CLUSTER, OPENAI, DEEPSEEK]
    clock.now += 0.01
    files.prune(sidecar_in_step=False)  # a sidecar on the old config may still send there
    assert admin.cluster_names() == [sidecar, REPORT_CLUSTER, OPENAI, DEEPSEEK]
    clock.now += envoy_files.PRUNE_EVERY_S
    files.prune(sidecar_in_step=True)
    assert admin.cluster_names() == [sidecar, REPORT_CLUSTER, OPENAI]
    assert files.retired == {}
    # An edit that brings it back makes it a wanted cluster again.
    files.deliver(config())
    assert admin.cluster_names() == [sidecar, REPORT_CLUSTER, OPENAI, DEEPSEEK]


def test_an_old_sidecar_cluster_stays_for_the_drain_time_of_old_listeners(admin, clock):
    files = started(admin, config())
    old = versioned_sidecar_cluster(config())
    files.deliver(config(max_concurrent=100))
    new = versioned_sidecar_cluster(config(max_concurrent=100))
    clock.now += DRAIN_S - 1
    files.prune(sidecar_in_step=True)
    assert admin.cluster_names() == [new, REPORT_CLUSTER, OPENAI, DEEPSEEK, old]
    clock.now += 1
    files.prune(sidecar_in_step=True)
    assert admin.cluster_names() == [new, REPORT_CLUSTER, OPENAI, DEEPSEEK]


def test_a_sidecar_cluster_stays_retired_as_it_was_through_later_edits(admin, clock):
    """Since its first retirement, and as the sidecar's (kept for the drain time, whatever
    the sidecar has loaded), not as a provider's."""
    files = started(admin, config())
    old = versioned_sidecar_cluster(config())
    files.deliver(config(max_concurrent=100))
    clock.now += DRAIN_S / 2
    files.deliver(config(max_concurrent=200))
    clock.now += DRAIN_S / 2
    files.prune(sidecar_in_step=False)
    middle = versioned_sidecar_cluster(config(max_concurrent=100))
    new = versioned_sidecar_cluster(config(max_concurrent=200))
    assert admin.cluster_names() == [new, REPORT_CLUSTER, OPENAI, DEEPSEEK, middle]
    assert old != middle != new


def test_a_failed_removal_is_tried_again_after_the_drain_time(admin, clock):
    files = started(admin, config())
    files.deliver(config(deepseek=False))
    admin.reject.add("clusters.yaml")
    with pytest.raises(DeliveryError):
        files.prune(sidecar_in_step=True)
    admin.reject.clear()
    assert DEEPSEEK in names_on_disk(admin)
    clock.now += DRAIN_S - 1
    files.prune(sidecar_in_step=True)
    assert DEEPSEEK in admin.cluster_names()
    clock.now += 1
    files.prune(sidecar_in_step=True)
    assert DEEPSEEK not in admin.cluster_names()


def test_a_failed_removal_of_retired_chain_routes_keeps_them_and_is_tried_again(admin, clock):
    files = started(admin, chained(fallback=True))
    files.deliver(chained())
    [retired] = routes_in_force(admin)
    admin.reject.add("routes.yaml")
    clock.now += envoy_files.PRUNE_EVERY_S
    with pytest.raises(DeliveryError):
        files.prune(sidecar_in_step=True)
    admin.reject.clear()
    assert on_disk(admin, "routes.yaml")["resources"] == [retired]  # written back
    clock.now += DRAIN_S
    files.prune(sidecar_in_step=True)
    after = route_configuration(chained())
    assert routes_in_force(admin) == [{"@type": envoy_files.ROUTES_TYPE, **after}]


def test_nothing_to_prune_asks_envoy_nothing(admin, clock):
    files = started(admin, config())
    files.prune(sidecar_in_step=True)
    assert admin.received == []


def test_only_the_admin_port_and_connection_limit_need_a_new_process(admin):
    files = started(admin, config())
    assert files.needs_new_process(config(), config(deepseek=False, max_concurrent=1)) is False
    assert files.needs_new_process(config(), config(admin_port=9902)) is True


def test_the_config_validated_is_the_one_envoy_gets(admin, monkeypatch):
    """With the connection limit its open files allow (`envoy --mode validate` is
    tests/unit/proxy/test_envoy_config.py's)."""
    asked = []
    monkeypatch.setattr(envoy_files, "envoy_refusal", lambda c: asked.append(c) or "no")
    files = EnvoyFiles(admin.folder, admin.port, DRAIN_S, open_files=1000)
    assert files.refusal(config()) == "no"
    assert [c.listener.max_connections for c in asked] == [connections_within(1000)]
    assert asked[0].listener.max_connections < config().listener.max_connections
