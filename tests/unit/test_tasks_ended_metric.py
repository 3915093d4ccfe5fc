"""juggler_master_tasks_ended_total: which status update counts, with which labels."""

from __future__ import annotations

from prometheus_client import REGISTRY

from juggler.master import metrics
from juggler.v1 import common_pb2 as pb


def status(state: int, reason: int = pb.REASON_UNSPECIFIED) -> pb.TaskStatus:
    return pb.TaskStatus(task_id="t", framework_id="f", state=state, reason=reason)


STAGING = status(pb.TASK_STAGING)
RUNNING = status(pb.TASK_RUNNING)
OOM = status(pb.TASK_FAILED, pb.REASON_CONTAINER_LIMITATION_MEMORY)


def test_the_first_terminal_update_counts_with_state_and_reason_names() -> None:
    assert metrics.ended_labels(OOM, [STAGING, RUNNING]) == (
        "TASK_FAILED", "REASON_CONTAINER_LIMITATION_MEMORY")
    assert metrics.ended_labels(status(pb.TASK_FINISHED), [STAGING, RUNNING]) == (
        "TASK_FINISHED", "REASON_UNSPECIFIED")


def test_a_retry_or_a_later_terminal_update_does_not_count_again() -> None:
    assert metrics.ended_labels(OOM, [STAGING, RUNNING, OOM]) is None
    assert metrics.ended_labels(status(pb.TASK_KILLED), [STAGING, OOM]) is None


def test_the_task_record_ended_ahead_of_its_update_still_counts_once() -> None:
    # latest_state moved the record to FAILED while this update was queued:
    # the history holds only the updates applied, none of them terminal.
    assert metrics.ended_labels(OOM, [STAGING, RUNNING]) is not None


def test_non_terminal_and_unknown_tasks_do_not_count() -> None:
    assert metrics.ended_labels(RUNNING, [STAGING]) is None
    assert metrics.ended_labels(OOM, None) is None


def test_numbers_no_enum_names_are_one_bounded_label() -> None:
    odd = pb.TaskStatus(state=pb.TASK_FAILED, reason=9999)
    assert metrics.ended_labels(odd, []) == ("TASK_FAILED", "UNKNOWN")


def test_the_oom_series_exists_at_zero_before_any_kill() -> None:
    value = REGISTRY.get_sample_value("juggler_master_tasks_ended_total",
                                      {"state": "TASK_FAILED",
                                       "reason": "REASON_CONTAINER_LIMITATION_MEMORY"})
    assert value is not None and value >= 0
