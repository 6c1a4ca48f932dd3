"""defaultEnvironment values in OpenBao, never in Redis."""

from jobs.secrets import SecretStore
from jobs.service import Caller, Platform
from jobs.settings import Settings


def test_values_round_trip_and_delete(settings: Settings):
    secrets = SecretStore(settings)
    secrets.put("T", "a1", {"TOKEN": "abc"})
    assert secrets.get("T", "a1") == {"TOKEN": "abc"}
    secrets.delete("T", "a1")
    assert secrets.get("T", "a1") == {}


def test_redis_keeps_names_only(settings: Settings):
    platform = Platform.from_settings(settings)
    caller = Caller("alice", "T")
    actor = platform.create_actor(caller, {"image": "img",
                                           "defaultEnvironment": {"API_KEY": "very-secret-1"}})
    assert platform.get_actor(caller, actor["id"])["default_environment"] == {
        "API_KEY": "very-secret-1"}
    for key in platform.store.r.scan_iter(match=f"{settings.prefix}:*"):
        if platform.store.r.type(key) == b"hash":
            assert b"very-secret-1" not in b"".join(platform.store.r.hvals(key))
    platform.delete_actor(caller, actor["id"])
    assert platform.secrets.get("T", actor["id"]) == {}
