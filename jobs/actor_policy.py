"""What a caller may set on an actor: privileged fields, resource ceilings, mounts,
and the per-user actor quota. Settings carry the numbers (see README's security
section)."""

from __future__ import annotations

from typing import Any

from jobs.auth import Caller
from jobs.errors import PermissionDenied, ValidationError
from jobs.models import image_registry, mem_bytes
from jobs.settings import Settings

# Fields only admins and privileged users may set (to a non-default value).
PRIVILEGED_FIELDS: dict[str, Any] = {"privileged": False, "mounts": [], "max_workers": None,
                                     "use_container_uid": False}


def elevated(actor: dict[str, Any]) -> bool:
    """An actor set up with privileged fields: whoever updates it chooses the code that
    runs with them, so only its owner or a privileged user may."""
    return any(actor.get(name) not in (None, default)
               for name, default in PRIVILEGED_FIELDS.items() if name != "max_workers")


def check_actor_fields(settings: Settings, caller: Caller, fields: dict[str, Any],
                       before: dict[str, Any] | None = None) -> None:
    """Refuse what the caller may not set; ``before`` is the actor as it was (update)."""
    if not caller.is_privileged:
        _privileged_fields(fields, before or PRIVILEGED_FIELDS)
        _ceilings(settings, fields, before or {})
    if caller.is_limited:
        _limited_fields(fields, before or LIMITED_FIELDS)
    _mounts(settings, fields.get("mounts") or [])
    _registry(settings, fields["image"])
    _queue(settings, fields.get("queue") or "default")
    if fields.get("log_ex") and fields["log_ex"] > settings.log_ex_max:
        raise ValidationError("logEx", f"must be at most {settings.log_ex_max} seconds (the "
                                       "log_ex_max setting)")


def _queue(settings: Settings, queue: str) -> None:
    if queue not in settings.queue_names:
        raise ValidationError("queue", f"{queue!r} is not a queue of this platform (the "
                                       f"queues setting: {', '.join(settings.queue_names)})")


def _registry(settings: Settings, image: str) -> None:
    """The engine pulls from the registry an image names: only those settings allow, so
    a user cannot make it connect anywhere."""
    registry = image_registry(image)
    if registry is not None and registry not in settings.registries:
        allowed = ", ".join(settings.registries) or "none"
        raise ValidationError("image", f"registry {registry} is not one the image_registries "
                                       f"setting allows ({allowed})")


# What limited users may not change from its default: they register and run actors on
# demand, but hold no warm workers, no schedule and no queue of their own choosing.
LIMITED_FIELDS: dict[str, Any] = {"min_workers": 0, "cron_schedule": None, "cron_on": False,
                                  "queue": "default"}


def _limited_fields(fields: dict[str, Any], before: dict[str, Any]) -> None:
    for name, default in LIMITED_FIELDS.items():
        value = fields.get(name, default)
        if value != before.get(name, default) and value != default:
            raise PermissionDenied(f"{name}: limited users may not set it")


def _privileged_fields(fields: dict[str, Any], before: dict[str, Any]) -> None:
    for name, default in PRIVILEGED_FIELDS.items():
        value = fields.get(name)
        if value != before.get(name, default) and value != default:
            raise PermissionDenied(f"{name}: only admins and privileged users may set it")


def _ceilings(settings: Settings, fields: dict[str, Any], before: dict[str, Any]) -> None:
    """Plain users choose memory, CPUs and warm workers up to the settings' ceilings
    (a value they already had stays allowed)."""
    memory = fields.get("mem_limit")
    if memory and memory != before.get("mem_limit") and \
            (mem_bytes(memory) or 0) > (mem_bytes(settings.actor_mem_max) or 0):
        raise PermissionDenied(f"memLimit: above {settings.actor_mem_max} only admins and "
                               "privileged users may set it")
    cpus = fields.get("max_cpus")
    if cpus and cpus != before.get("max_cpus") and cpus > settings.actor_cpus_max * 1e9:
        raise PermissionDenied(f"maxCpus: above {int(settings.actor_cpus_max * 1e9)} "
                               "nano-CPUs only admins and privileged users may set it")
    warm = int(fields.get("min_workers") or 0)
    if warm > settings.max_min_workers and warm != before.get("min_workers"):
        raise PermissionDenied(f"minWorkers: above {settings.max_min_workers} only admins "
                               "and privileged users may set it")


def _mounts(settings: Settings, mounts: list[dict[str, str]]) -> None:
    for mount in mounts:
        host = mount["host_path"]
        if settings.mount_source(host) is None:
            named = ", ".join(settings.mount_prefixes) or "none"
            raise ValidationError("mounts.hostPath", f"{host!r} is not under a host path the "
                                                     f"mount_allow setting names ({named}), "
                                                     "links resolved")


def check_actor_quota(settings: Settings, caller: Caller, owned: int) -> None:
    if settings.user_max_actors and owned >= settings.user_max_actors and \
            not caller.is_admin:
        raise PermissionDenied(f"{caller.user} already has {owned} actors, the most the "
                               "user_max_actors setting allows")
