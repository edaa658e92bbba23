"""One CronJob per ``schedule:`` entry: it runs ``functl publish`` to the topic (pure)."""

from __future__ import annotations

import json

from .model import Function, Schedule, Spec
from .naming import TOPIC_ANNOTATION, Obj, Target, labels, object_name
from .workload import bus_password_env, container_security, pod_spec

CRONJOB_NAME_LIMIT = 52  # Kubernetes appends an 11-character suffix for the Jobs
PUBLISH_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


def cronjobs(spec: Spec, fn: Function, target: Target, image: str | None) -> list[Obj]:
    return [cronjob(spec, fn, s, target, image or "") for s in fn.schedules]


def publish_command(fn: Function, schedule: Schedule) -> list[str]:
    """``functl publish`` with the payload as compact, key-sorted JSON. Kubernetes expands
    ``$(KF_BUS_URL)`` from the container's environment."""
    data = json.dumps(schedule.payload, sort_keys=True, separators=(",", ":"))
    return ["functl", "publish", "--bus", "$(KF_BUS_URL)", fn.topic, "--data", data]


def cronjob(spec: Spec, fn: Function, schedule: Schedule, target: Target, image: str) -> Obj:
    name = object_name(target, fn.name, schedule.name, limit=CRONJOB_NAME_LIMIT)
    job_labels = labels(target, fn.name, "schedule")
    container: Obj = {
        "name": "publish",
        "image": image,
        "command": publish_command(fn, schedule),
        "env": [
            {"name": "KF_BUS_URL", "value": spec.bus.url if spec.bus else ""},
            *bus_password_env(spec),
        ],
        "resources": {k: dict(v) for k, v in PUBLISH_RESOURCES.items()},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    cron_spec: Obj = {"schedule": schedule.cron}
    if schedule.timezone:
        cron_spec["timeZone"] = schedule.timezone
    cron_spec.update(
        {
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 60,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": dict(job_labels)},
                "spec": {
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": 120,
                    "ttlSecondsAfterFinished": 86400,
                    "template": {
                        "metadata": {"labels": dict(job_labels)},
                        "spec": pod_spec(fn, [container], restart="Never"),
                    },
                },
            },
        }
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": job_labels,
            "annotations": {TOPIC_ANNOTATION: fn.topic, "kubefuncs.io/schedule": schedule.name},
        },
        "spec": cron_spec,
    }
