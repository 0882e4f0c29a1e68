import os

from common.shared_generations import SharedGenerations
from proxy.controllers.info import InfoCache


def test_bump_in_a_forked_child_is_seen_by_the_parent():
    table = SharedGenerations(slots=64)
    before = table.current(("container", "a", "c"))
    pid = os.fork()
    if pid == 0:  # child
        table.bump(("container", "a", "c"))
        os._exit(0)
    os.waitpid(pid, 0)
    assert table.current(("container", "a", "c")) == before + 1


def test_info_cache_entry_goes_stale_when_another_cache_invalidates():
    table = SharedGenerations(slots=64)
    worker1 = InfoCache(ttl=60, generations=table)
    worker2 = InfoCache(ttl=60, generations=table)
    info = {"status": 204, "read_acl": None}
    worker1.put(("container", "a", "c"), info)
    assert worker1.get(("container", "a", "c")) is info
    worker2.invalidate(("container", "a", "c"))
    assert worker1.get(("container", "a", "c")) is None
