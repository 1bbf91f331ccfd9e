"""The agent's record of handled deliveries (hive_core.transports.handled_journal): what a
new incarnation knows about the last one's, on disk; when it cannot trust that record; and
how it tells a redelivery (the same broker entry) from a copy.

The restart of a real agent process is in tests/test_broker_replay.py; here a second
journal over the same folder is the next incarnation (as after kill -9: nothing closed).
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from hive_core.auth import KeySet, MessageAuth, Replayed, Stale, StaticKeys, new_key
from hive_core.transports.handled_journal import RECORD, HandledJournal, Stamp, key_digest, stamp
from hive_core.transports.record_file import written

WINDOW = 60.0
BOOT = 1_700_000_000.0
KEY = new_key()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def policy(key: bytes, clock: Clock) -> MessageAuth:
    return MessageAuth(StaticKeys(KeySet(key, (key,))), window=WINDOW, clock=clock)


def journal(folder: Path, clock: Clock, boot: float = BOOT) -> HandledJournal:
    return HandledJournal(folder, "a", WINDOW, clock=clock, boot_time=boot)


def next_incarnation(folder: Path, key: bytes, clock: Clock,
                     boot: float = BOOT) -> tuple[HandledJournal, MessageAuth]:
    auth = policy(key, clock)
    j = journal(folder, clock, boot)
    j.seed(auth.guard)
    return j, auth


def test_what_was_handled_is_refused_by_the_next_incarnation(tmp_path: Path, clock) -> None:
    key = new_key()
    sender = policy(key, clock)
    handled, released, fresh = (sender.sign(b'{"n": %d}' % i) for i in range(3))
    first = journal(tmp_path, clock)
    first.handled(stamp(b"1-0", handled))
    first.handled(stamp(b"2-0", released))
    first.released(stamp(b"2-0", released))  # abandoned: its redelivery must run
    # kill -9: never closed
    _second, auth = next_incarnation(tmp_path, key, clock)
    with pytest.raises(Replayed):
        auth.verify(handled)
    assert auth.verify(released) == b'{"n": 1}'
    assert auth.verify(fresh) == b'{"n": 2}'
    assert auth.rejected()["replayed"] == 1
    assert stat.S_IMODE((tmp_path / "a.seen").stat().st_mode) == 0o600


def test_after_the_machine_went_down_older_requests_are_refused(tmp_path: Path, clock) -> None:
    key = new_key()
    sender = policy(key, clock)
    before = sender.sign(b"{}")
    journal(tmp_path, clock)  # an incarnation that was running when the machine went down
    clock.now += 1
    _j, auth = next_incarnation(tmp_path, key, clock, boot=BOOT + 600)  # a new boot
    with pytest.raises(Stale):  # its record may have lost that one: not run, maybe twice
        auth.verify(before)
    clock.now += 0.01
    assert auth.verify(sender.sign(b"{}")) == b"{}"  # sent after this start


def test_a_process_crash_or_a_clean_reboot_keeps_pending_requests(tmp_path: Path,
                                                                  clock) -> None:
    key = new_key()
    sender = policy(key, clock)
    pending = [sender.sign(b"{}") for _ in range(2)]
    journal(tmp_path, clock)  # crashed, same boot
    clock.now += 1
    _j, auth = next_incarnation(tmp_path, key, clock)
    assert auth.verify(pending[0]) == b"{}"
    _j.close()  # a clean shutdown, then a reboot
    clock.now += 1
    _j, auth = next_incarnation(tmp_path, key, clock, boot=BOOT + 600)
    assert auth.verify(pending[1]) == b"{}"


def test_a_damaged_record_is_not_trusted(tmp_path: Path, clock) -> None:
    key = new_key()
    sender = policy(key, clock)
    before = sender.sign(b"{}")
    first = journal(tmp_path, clock)
    first.handled(stamp(b"1-0", sender.sign(b"{}")))
    first.close()
    with open(tmp_path / "a.seen", "ab") as f:
        f.write(b"H" + b"\1" * (RECORD.size // 2))  # a torn record (not one of ours)
    clock.now += 1
    _j, auth = next_incarnation(tmp_path, key, clock)
    with pytest.raises(Stale):
        auth.verify(before)


def test_records_roll_over_every_window_and_expire(tmp_path: Path, clock) -> None:
    key = new_key()
    sender = policy(key, clock)
    j = journal(tmp_path, clock)
    old = sender.sign(b"{}")
    j.handled(stamp(b"1-0", old))
    clock.now += WINDOW / 2
    recent = sender.sign(b"{}")
    clock.now += WINDOW / 2 + 1  # a window since the file was started: rolled over
    j.handled(stamp(b"2-0", recent))
    assert (tmp_path / "a.seen.old").exists() and len(j) == 1  # "old" left the window
    _j, auth = next_incarnation(tmp_path, key, clock)
    with pytest.raises(Replayed):  # from the rolled-over file
        auth.verify(recent)
    with pytest.raises(Stale):
        auth.verify(old)
    data = (tmp_path / "a.seen").read_bytes()  # compacted on open: one record, then room
    assert written(data, RECORD.size) == (RECORD.size, False)


def test_a_redelivery_is_the_same_broker_entry_not_confirmed_gone(tmp_path: Path,
                                                                  clock) -> None:
    sender = policy(new_key(), clock)
    body, other = sender.sign(b"{}"), sender.sign(b"{}")
    j = journal(tmp_path, clock)
    handled = stamp(b"1-0", body)
    j.handled(handled)
    fetched_before = time.monotonic()
    assert j.is_redelivery(stamp(b"1-0", body), fetched_before)
    assert not j.is_redelivery(stamp(b"9-0", body), fetched_before)  # a copy: a new entry
    assert not j.is_redelivery(stamp(b"1-0", other), fetched_before)  # another message
    j.confirmed(handled)
    assert j.is_redelivery(stamp(b"1-0", body), fetched_before)  # fetched before the ack
    assert not j.is_redelivery(stamp(b"1-0", body), time.monotonic())  # put back by hand
    _j = journal(tmp_path, clock)  # next incarnation: whether the ack landed is unknown
    assert _j.is_redelivery(stamp(b"1-0", body), time.monotonic())


def test_the_stamp_a_broker_records_is_the_one_a_redelivery_is_looked_up_by(
        tmp_path: Path, clock) -> None:
    """The broker builds the recorded stamp from MessageAuth.open (the header parsed once)
    and looks a replay up with stamp(); if the two ever differed, a genuine redelivery would
    be counted as an attack, or a record would name the wrong message."""
    sender, receiver = policy(KEY, clock), policy(KEY, clock)
    frame = sender.sign(b"{}")
    _body, nonce, sent_ms = receiver.open(frame)
    recorded = Stamp(key_digest(b"1700000000000-7"), nonce, sent_ms / 1000)
    assert recorded == stamp(b"1700000000000-7", frame)
    j = journal(tmp_path, clock)
    j.handled(recorded)
    assert j.is_redelivery(stamp(b"1700000000000-7", frame), time.monotonic())
    assert not j.is_redelivery(stamp(b"1700000000000-8", frame), time.monotonic())
    digests = {key_digest(k) for k in (b"1-0", b"1-1", b"2-0", "1-0", ("1-0",), 10)}
    assert len(digests) == 6  # distinct keys, distinct digests (bytes and others alike)

