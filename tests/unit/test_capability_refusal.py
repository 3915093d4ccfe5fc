"""--cap-add of a capability the agent lacks is refused, as runc refuses it
(container/capabilities.py `missing`)."""

from __future__ import annotations

from juggler.container import capabilities


def test_a_capability_the_agent_lacks_is_missing_unless_the_kernel_does_not_know_it():
    want = capabilities.mask({"CHOWN", "SYS_RESOURCE", "CHECKPOINT_RESTORE"})
    have = capabilities.mask({"CHOWN"})
    assert capabilities.missing(want, have, last_cap=40) == {"SYS_RESOURCE",
                                                             "CHECKPOINT_RESTORE"}
    assert capabilities.missing(want, have, last_cap=39) == {"SYS_RESOURCE"}
    assert capabilities.missing(have, have, last_cap=40) == set()
