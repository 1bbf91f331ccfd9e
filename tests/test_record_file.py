"""The handled-request record's file (hive_core.transports.record_file): what is appended
survives the writing process killed with SIGKILL (a real child process, never closed), the
file grows past its first mapping, and a reader tells the end from damage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from hive_core.transports.record_file import INITIAL_RECORDS, RecordFile, written

REPO = Path(__file__).resolve().parents[1]
SIZE = 33


def record(i: int) -> bytes:
    return b"H" + i.to_bytes(4, "big") * 8


def test_records_survive_the_process_killed_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "a.seen"
    n = INITIAL_RECORDS + 100  # past the first mapping: it grew while the process ran
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from hive_core.transports.record_file import RecordFile
        out = RecordFile(Path({str(path)!r}), {SIZE})
        for i in range({n}):
            out.append(b"H" + i.to_bytes(4, "big") * 8)
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "written"
    assert child.wait(30) == -signal.SIGKILL
    data = path.read_bytes()
    end, damaged = written(data, SIZE)
    assert (end, damaged) == (n * SIZE, False)
    assert [data[o:o + SIZE] for o in (0, (n - 1) * SIZE)] == [record(0), record(n - 1)]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_close_cuts_the_file_to_its_records_and_a_reopened_one_continues(tmp_path) -> None:
    path = tmp_path / "a.seen"
    out = RecordFile(path, SIZE)
    out.append(record(1))
    out.close()
    assert path.read_bytes() == record(1)
    again = RecordFile(path, SIZE, start=SIZE)
    again.append(record(2))
    again.close()
    assert path.read_bytes() == record(1) + record(2)


def test_the_end_is_the_first_record_without_its_kind_and_anything_after_it_is_damage() -> None:
    one, cut = record(1), b"\0" + record(2)[1:]  # a record cut short: its kind not yet set
    assert written(one + cut + bytes(SIZE * 3), SIZE) == (SIZE, False)
    assert written(one + bytes(SIZE) + record(3), SIZE) == (SIZE, True)  # a gap, then more
    assert written(one + b"H\1\1", SIZE) == (SIZE, True)  # a torn record not written here
    assert written(one + cut + record(3), SIZE) == (SIZE, True)
    assert written(b"", SIZE) == (0, False)


def test_a_full_disk_is_an_os_error_not_a_crash(tmp_path: Path) -> None:
    """Space is allocated when the file grows, so a full disk fails that call with ENOSPC
    (reported by the journal's caller like any failed write) instead of killing the process
    with SIGBUS on a store into a page without a block (a real, full tmpfs; in a child, so a
    crash would show here as its exit status)."""
    from disk_helpers import small_tmpfs

    with small_tmpfs("ahrecord", "1m") as disk:
        child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import errno, os
            from pathlib import Path
            from hive_core.transports.record_file import INITIAL_RECORDS, RecordFile, written
            out = RecordFile(Path({str(disk)!r}) / "a.seen", {SIZE})
            fd = os.open({str(disk)!r} + "/filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, bytes(4096))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
            n = 0
            try:
                for n in range(INITIAL_RECORDS * 4):
                    out.append(b"H" + bytes({SIZE - 1}))
            except OSError as exc:
                print("refused", exc.errno == errno.ENOSPC, n == INITIAL_RECORDS, flush=True)
            os.unlink({str(disk)!r} + "/filler")
            out.close()
            data = Path({str(disk)!r}, "a.seen").read_bytes()
            print("kept", written(data, {SIZE}) == (n * {SIZE}, False), flush=True)
        """)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["refused", "True", "True", "kept", "True"], child.stdout
