"""Pure tests of cdc.infolog on real LOG files written by rocksdict and on lines in the
reference's formats (failure lines cannot be provoked on demand in a test)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.model.events import CompactionStatus, FlushStatus
from cdc.format.infolog import (
    BackgroundError,
    CompactedTo,
    CompactionError,
    CompactionTracker,
    EventLog,
    JobLine,
    SessionStart,
    parse_line,
    parse_lines,
    parse_notice,
)

T = "2026/11/25-17:47:05.812089 139709047109312 "
TB = "2026/11/25-17:47:05.830846 139709047109312 (Original Log Time 2026/11/25-17:47:05.830808) "


@pytest.fixture(scope="module")
def real_log(tmp_path_factory) -> str:
    """A LOG from a real store: 6 flushes, an automatic L0 compaction, a manual compaction,
    then a trivial move in a second session (reopen)."""
    from rocksdict import DBCompressionType, Options, Rdict

    path = str(tmp_path_factory.mktemp("log") / "db")
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    o.set_compression_type(DBCompressionType.none())
    o.set_level_zero_file_num_compaction_trigger(4)
    db = Rdict(path, o)
    for _ in range(6):
        for _ in range(500):
            db.put(os.urandom(8), os.urandom(200))
        db.flush()
    db.compact_range(None, None)
    db.close()
    with open(os.path.join(path, "LOG"), encoding="utf-8", errors="replace") as f:
        return f.read()


def feed_all(lines, tracker=None, now=1000):
    tracker = tracker or CompactionTracker()
    out = []
    for line in lines:
        n = parse_notice(line)
        if n is not None:
            out += tracker.feed(n, now)
    return out, tracker


def test_real_log_flushes_and_compactions(real_log):
    events, tracker = feed_all(real_log.splitlines())
    flushes = [e for e in events if isinstance(e, FlushStatus)]
    comps = [e for e in events if isinstance(e, CompactionStatus)]
    assert [e.status for e in flushes] == ["started", "completed"] * 6
    for s, c in zip(flushes[::2], flushes[1::2], strict=True):
        assert s.job == c.job and c.cf == "default"
        assert c.details["reason"] == "Manual Flush" and c.details["file_bytes"] > 100_000
        assert c.details["entries"] == 500 and "duration_us" in c.details
    by_job: dict[int, list[str]] = {}
    for e in comps:
        by_job.setdefault(e.job, []).append(e.status)
    assert len(by_job) >= 2 and all(v == ["started", "completed"] for v in by_job.values())
    auto = next(e for e in comps if e.status == "started" and e.details["compaction_reason"] == "LevelL0FilesNum")
    assert auto.details["input_file_count"] == 4 and auto.details["input_files"]["L0"]
    done = next(e for e in comps if e.status == "completed" and e.job == auto.job)
    assert done.details["records_in"] == 2000 and done.details["records_dropped"] == 0
    assert done.details["output_level"] == 6 and done.details["output_files"]
    assert done.details["duration_us"] > 0 and done.details["output_bytes"] > 400_000
    # every input was covered (the MANIFEST fallback will not double-report)
    for e in comps:
        for nums in e.details.get("input_files", {}).values():
            assert all(n in tracker.covered for n in nums)
    assert not tracker.running()


def test_feeding_line_by_line_equals_whole(real_log):
    a, _ = feed_all(real_log.splitlines())
    b, _ = feed_all(real_log.splitlines(keepends=True))
    assert a == b
    assert [n for n in parse_lines(real_log)] == [parse_notice(x) for x in real_log.splitlines() if parse_notice(x)]


def test_parse_line_shapes():
    ll = parse_line(TB + "[db/compaction/compaction_job.cc:929] [default] compacted to: x")
    assert ll is not None and ll.buffered and ll.time == "2026/11/25-17:47:05.830808"
    assert ll.source == "db/compaction/compaction_job.cc:929" and ll.thread == 139709047109312
    ll = parse_line(T + "[WARN] [db/db_impl/db_impl_compaction_flush.cc:3614] Compaction error: IO error: disk full")
    assert ll is not None and ll.level == "WARN" and not ll.buffered
    assert parse_line("** Compaction Stats [default] **") is None
    assert parse_line("") is None


def test_truncated_compaction_finished_is_salvaged():
    lines = [
        T + "[db/compaction/compaction_job.cc:2098] [users] [JOB 7] Compacting 2@0 files to L1, score 1.00",
        T + 'EVENT_LOG_v1 {"time_micros": 1795628825812082, "job": 7, "event": "compaction_started", '
        '"compaction_reason": "LevelL0FilesNum", "files_L0": [15, 13], "score": 1, "input_data_size": 4000, '
        '"oldest_snapshot_seqno": -1}',
        TB + "[db/compaction/compaction_job.cc:929] [users] compacted to: files[0 1 0] max score 0.00, "
        "MB/sec: 1.0 rd, 1.0 wr, level 1, files in(2, 0) out(1 +0 blob) MB in(0.0, 0.0 +0.0 blob) "
        "out(0.0 +0.0 blob), read-write-amplify(2.0) write-amplify(1.0) OK, records in: 40, records dropped: 2 "
        "output_compression: NoCompression",
        TB + 'EVENT_LOG_v1 {"time_micros": 1795628825830815, "job": 7, "event": "compaction_finished", '
        '"compaction_time_micros": 18201, "compaction_time_cpu_micros": 8010, "output_level": 1, '
        '"num_output_files": 1, "total_output_size": 3900, "num_input_records": 40, "num_outp',
    ]
    events, _ = feed_all(lines)
    assert [e.status for e in events] == ["started", "completed"]
    done = events[1]
    assert done.cf == "users" and done.job == 7
    assert done.details["truncated"] is True and done.details["output_bytes"] == 3900
    assert done.details["records_dropped"] == 2 and done.details["input_files"] == {"L0": [15, 13]}


def test_compaction_failure_reports_reason():
    lines = [
        T + "[db/compaction/compaction_job.cc:2098] [default] [JOB 9] Compacting 2@0 + 1@6 files to L6, score -1.00",
        T + 'EVENT_LOG_v1 {"time_micros": 1, "job": 9, "event": "compaction_started", "compaction_reason": '
        '"ManualCompaction", "files_L0": [20, 18], "files_L6": [16], "score": -1, "input_data_size": 6272293}',
        T + "[WARN] [db/db_impl/db_impl_compaction_flush.cc:3614] Compaction error: IO error: No space left on device",
        TB + "[db/compaction/compaction_job.cc:929] [default] compacted to: files[2 0 0 0 0 0 1] max score 0.00, "
        "MB/sec: 0.0 rd, 0.0 wr, level 6, files in(2, 1) out(0 +0 blob) MB in(2.0, 4.0 +0.0 blob) out(0.0 +0.0 blob), "
        "read-write-amplify(3.0) write-amplify(0.0) IO error: No space left on device: While appending to file: "
        "db/000021.sst, records in: 5000, records dropped: 0 output_compression: NoCompression",
        TB + 'EVENT_LOG_v1 {"time_micros": 2, "job": 9, "event": "compaction_finished", "compaction_time_micros": 1777, '
        '"output_level": 6, "num_output_files": 0, "total_output_size": 0, "num_input_records": 5000}',
        T + "[ERROR] [db/db_impl/db_impl_compaction_flush.cc:3150] Waiting after background compaction error: "
        "IO error: No space left on device, Accumulated background error counts: 1",
    ]
    events, tracker = feed_all(lines)
    assert [e.status for e in events] == ["started", "failed"]
    assert events[1].details["reason"].startswith("IO error: No space left on device")
    assert events[1].details["input_files"] == {"L0": [20, 18], "L6": [16]}
    assert not tracker.running()


def test_compaction_error_without_status_line():
    lines = [
        T + 'EVENT_LOG_v1 {"time_micros": 1, "job": 3, "event": "compaction_started", "files_L1": [5], "input_data_size": 10}',
        T + "[WARN] [db/db_impl/db_impl_compaction_flush.cc:3614] Compaction error: Corruption: block checksum mismatch",
        TB + 'EVENT_LOG_v1 {"time_micros": 2, "job": 3, "event": "compaction_finished", "output_level": 2}',
    ]
    events, _ = feed_all(lines)
    assert [e.status for e in events] == ["started", "failed"]
    assert events[1].details["reason"] == "Corruption: block checksum mismatch"


def test_flush_failure():
    lines = [
        T + "[db/flush_job.cc:901] [logs] [JOB 4] Flushing memtable with next log file: 12",
        T + 'EVENT_LOG_v1 {"time_micros": 1, "job": 4, "event": "flush_started", "num_memtables": 1, '
        '"num_entries": 20, "num_deletes": 0, "total_data_size": 100, "memory_usage": 200, "flush_reason": "Write Buffer Full"}',
        T + "[db/flush_job.cc:947] [logs] [JOB 4] Level-0 flush table #13: started",
        TB + "[db/flush_job.cc:1046] [logs] [JOB 4] Level-0 flush table #13: 0 bytes IO error: No space left on device",
        TB + 'EVENT_LOG_v1 {"time_micros": 2, "job": 4, "event": "flush_finished", "output_compression": "NoCompression", '
        '"lsm_state": [1, 0], "immutable_memtables": 1}',
        T + "[ERROR] [db/db_impl/db_impl_compaction_flush.cc:3100] [JOB 4] Waiting after background flush error: "
        "IO error: No space left on device, Accumulated background error counts: 1",
    ]
    events, tracker = feed_all(lines)
    assert [(type(e).__name__, e.status) for e in events] == [("FlushStatus", "started"), ("FlushStatus", "failed")]
    assert events[1].cf == "logs" and events[1].details["reason"] == "IO error: No space left on device"
    assert 13 not in tracker.flush_outputs


def test_session_restart_fails_unfinished_and_resets_jobs():
    start = T + 'EVENT_LOG_v1 {"time_micros": 1, "job": 2, "event": "compaction_started", "files_L0": [7], "input_data_size": 10}'
    sid = "2026/11/25-18:00:00.000000 1 DB Session ID:  {}"
    events, tracker = feed_all([sid.format("AAA"), start, sid.format("AAA")])
    assert [e.status for e in events] == ["started"]  # a rolled LOG repeats the same session id
    events, tracker = feed_all([sid.format("AAA"), start, sid.format("BBB")])
    assert [e.status for e in events] == ["started", "failed"]
    assert "restarted" in events[1].details["reason"]
    again, _ = feed_all([start], tracker)
    assert [e.status for e in again] == ["started"]  # job 2 of the new session is a new job
    assert tracker.session == 1


def test_finish_without_start_is_still_reported():
    lines = [
        TB + "[db/compaction/compaction_job.cc:1740] [meta] [JOB 11] Compacted 1@0 files to L6 => 100 bytes",
        TB + 'EVENT_LOG_v1 {"time_micros": 2, "job": 11, "event": "compaction_finished", "output_level": 6, '
        '"num_output_files": 1, "total_output_size": 100}',
    ]
    events, _ = feed_all(lines)
    assert len(events) == 1 and events[0].status == "completed" and events[0].cf == "meta"


def test_trivial_move():
    lines = [
        TB + "[db/db_impl/db_impl_compaction_flush.cc:3840] [default] Moving #9 to level-6 2265 bytes",
        TB + 'EVENT_LOG_v1 {"time_micros": 1, "job": 3, "event": "trivial_move", "destination_level": 6, '
        '"files": 1, "total_files_size": 2265}',
        TB + "[db/db_impl/db_impl_compaction_flush.cc:3884] [default] Moved #1 files to level-6 2265 bytes OK: base level 6",
    ]
    events, tracker = feed_all(lines)
    assert len(events) == 1 and events[0].details["trivial_move"] and events[0].details["moved_files"] == [9]
    assert 9 in tracker.covered


def test_notice_types():
    assert isinstance(parse_notice(T + "[db/flush_job.cc:1] [default] [JOB 3] Flush lasted 5 microseconds"), JobLine)
    assert isinstance(parse_notice(T + "[WARN] [x.cc:1] Compaction error: IO error: x"), CompactionError)
    n = parse_notice(T + "[ERROR] [x.cc:1] Background IO error IO error: x, reason 3")
    assert isinstance(n, BackgroundError) and n.status == "IO error: x"
    assert parse_notice(T + "RocksDB version: 9.8.4") is None
    n = parse_notice(T + "DB Session ID:  334AD5DW9TLG31ED9PIC")
    assert isinstance(n, SessionStart) and n.session_id == "334AD5DW9TLG31ED9PIC"
    n = parse_notice(T + 'EVENT_LOG_v1 {"time_micros": 1, "job": 1, "event": "x", "path": "a"b"}')
    assert isinstance(n, EventLog) and not n.complete and n.data["job"] == 1
    assert parse_notice(T + 'EVENT_LOG_v1 {"time_micros": 1}') is None  # no event name
    assert parse_notice(T + "EVENT_LOG_v1 not json") is None
    n = parse_notice(TB + "[x.cc:1] [default] compacted to: files[1] read-write-amplify(1.0) write-amplify(1.0) OK")
    assert isinstance(n, CompactedTo) and n.status == "OK" and n.records_in is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    tracker = CompactionTracker()
    for line in (text, T + text, TB + text, T + "EVENT_LOG_v1 " + text, T + "[default] [JOB 1] " + text):
        n = parse_notice(line)
        if n is not None:
            tracker.feed(n, 0)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_real_lines_cut_anywhere_never_raise(real_log, data):
    lines = [ln for ln in real_log.splitlines() if "EVENT_LOG_v1" in ln or "[JOB" in ln or "compacted to" in ln]
    line = data.draw(st.sampled_from(lines))
    cut = data.draw(st.integers(0, len(line)))
    n = parse_notice(line[:cut])
    if n is not None:
        CompactionTracker().feed(n, 0)


def test_parse_log_bytes_equals_every_line(real_log):
    from cdc.format.infolog import parse_log_bytes

    data = real_log.encode()
    assert parse_log_bytes(data) == parse_lines(real_log)
    assert parse_log_bytes(b"") == [] and parse_log_bytes(b"\n\n\xff\xfe EVENT_LOG_v1 {") == []



# Real lines: a manual compaction on a 20 MB tmpfs that filled up (RocksDB 9.8.4 via rocksdict).
# RocksDB wrote neither "compacted to" nor compaction_finished for the job.
DISK_FULL = """\
2026/11/25-18:29:29.565015 140460437796544 [db/compaction/compaction_job.cc:2098] [default] [JOB 6] Compacting 4@0 files to L6, score -1.00
2026/11/25-18:29:29.565019 140460437796544 [db/compaction/compaction_job.cc:2102] [default]: Compaction start summary: Base version 6 Base level 0, inputs: [15(3507KB) 13(3507KB) 11(3507KB) 9(3507KB)]
2026/11/25-18:29:29.565033 140460437796544 EVENT_LOG_v1 {"time_micros": 1795631369565025, "job": 6, "event": "compaction_started", "compaction_reason": "ManualCompaction", "files_L0": [15, 13, 11, 9], "score": -1, "input_data_size": 14366350, "oldest_snapshot_seqno": -1}
2026/11/25-18:29:29.620071 140460437796544 [WARN] [db/db_impl/db_impl_compaction_flush.cc:4024] Compaction error: IO error: No space left on device: While appending to file: /tmp/h4/mnt/db/000016.sst: No space left on device
2026/11/25-18:29:29.620081 140460437796544 [WARN] [db/error_handler.cc:393] Background IO error IO error: No space left on device: While appending to file: /tmp/h4/mnt/db/000016.sst: No space left on device, reason 1
2026/11/25-18:29:29.620083 140460437796544 [db/error_handler.cc:279] ErrorHandler: Set regular background error
2026/11/25-18:29:29.620157 140460467571584 (Original Log Time 2026/11/25-18:29:29.564945) [db/db_impl/db_impl_compaction_flush.cc:2128] [default] Manual compaction starting
2026/11/25-18:29:29.622166 140460467571584 [WARN] [db/error_handler.cc:393] Background IO error IO error: No space left on device: While appending to file: /tmp/h4/mnt/db/000014.log: No space left on device, reason 2
"""


def test_real_disk_full_compaction_fails_at_its_error_line():
    events, tracker = feed_all(DISK_FULL.splitlines())
    assert [e.status for e in events] == ["started", "failed"]
    failed = events[1]
    assert failed.job == 6 and failed.details["input_files"] == {"L0": [15, 13, 11, 9]}
    assert failed.details["reason"].startswith("IO error: No space left on device: While appending to file")
    assert not tracker.running()
    # should RocksDB write the buffered pair later, it does not give a second verdict
    late = [
        TB.replace("139709047109312", "140460437796544") + "[db/compaction/compaction_job.cc:929] [default] compacted to: "
        "files[4 0 0 0 0 0 0] max score 0.00, MB/sec: 0.0 rd, 0.0 wr, level 6, files in(4, 0) out(0 +0 blob) "
        "MB in(13.7, 0.0 +0.0 blob) out(0.0 +0.0 blob), read-write-amplify(1.0) write-amplify(0.0) IO error: No space left "
        "on device, records in: 100, records dropped: 0 output_compression: NoCompression",
        TB.replace("139709047109312", "140460437796544") + 'EVENT_LOG_v1 {"time_micros": 2, "job": 6, "event": '
        '"compaction_finished", "output_level": 6}',
    ]
    more, _ = feed_all(late, tracker)
    assert more == []


# Real lines: a flush (WAL disabled) onto a 6 MB tmpfs that filled up. No flush_finished followed.
FLUSH_DISK_FULL = """\
2026/11/25-18:30:09.475444 140664830420672 [db/flush_job.cc:901] [default] [JOB 2] Flushing memtable with next log file: 4
2026/11/25-18:30:09.475466 140664830420672 EVENT_LOG_v1 {"time_micros": 1795631409475460, "job": 2, "event": "flush_started", "num_memtables": 1, "num_entries": 8000, "num_deletes": 0, "total_data_size": 8152000, "memory_usage": 8332440, "num_range_deletes": 0, "flush_reason": "Manual Flush"}
2026/11/25-18:30:09.475468 140664830420672 [db/flush_job.cc:947] [default] [JOB 2] Level-0 flush table #8: started
2026/11/25-18:30:09.487035 140664830420672 [db/flush_job.cc:1094] [default] [JOB 2] Flush lasted 11595 microseconds, and 8875 cpu microseconds.
2026/11/25-18:30:09.487067 140664830420672 [WARN] [db/error_handler.cc:393] Background IO error IO error: No space left on device: While appending to file: /tmp/h4/mnt2/db/000008.sst: No space left on device, reason 5
2026/11/25-18:30:09.487069 140664830420672 [db/error_handler.cc:279] ErrorHandler: Set regular background error
2026/11/25-18:30:09.487175 140664507414208 [ERROR] [file/sst_file_manager_impl.cc:290] Cannot clear hard error
"""


def test_real_disk_full_flush_fails_at_its_error_line():
    events, tracker = feed_all(FLUSH_DISK_FULL.splitlines())
    assert [(type(e).__name__, e.status) for e in events] == [("FlushStatus", "started"), ("FlushStatus", "failed")]
    f = events[1]
    assert f.job == 2 and f.details["file_number"] == 8 and f.details["entries"] == 8000
    assert f.details["reason"].startswith("IO error: No space left on device")
    assert not tracker.flushes and 8 not in tracker.flush_outputs
    late = TB + 'EVENT_LOG_v1 {"time_micros": 2, "job": 2, "event": "flush_finished", "lsm_state": [0]}'
    assert feed_all([late], tracker)[0] == []


def test_paused_compaction_fails_with_its_status_line():
    """Paused / shutdown compactions log no 'Compaction error' line: the status comes from
    the buffered 'compacted to' line."""
    lines = [
        T + 'EVENT_LOG_v1 {"time_micros": 1, "job": 12, "event": "compaction_started", "files_L0": [3], "input_data_size": 9}',
        TB + "[db/compaction/compaction_job.cc:929] [default] compacted to: files[1 0] max score 0.00, MB/sec: 0.0 rd, "
        "0.0 wr, level 1, files in(1, 0) out(0 +0 blob) MB in(0.0, 0.0 +0.0 blob) out(0.0 +0.0 blob), "
        "read-write-amplify(1.0) write-amplify(0.0) Incomplete: Manual compaction paused, records in: 0, records dropped: 0 "
        "output_compression: NoCompression",
        TB + 'EVENT_LOG_v1 {"time_micros": 5000, "job": 12, "event": "compaction_finished", "output_level": 1}',
    ]
    events, _ = feed_all(lines)
    assert [e.status for e in events] == ["started", "failed"]
    assert events[1].details["reason"] == "Incomplete: Manual compaction paused"
    assert events[1].details["finished_at_ms"] == 5


def test_progress_event_caps_and_reports_elapsed():
    events, tracker = feed_all([
        T + 'EVENT_LOG_v1 {"time_micros": 1000000, "job": 4, "event": "compaction_started", "files_L0": [3], "input_data_size": 1000}'
    ])
    (cj,) = tracker.running()
    ev = tracker.progress_event(cj, 250, [9], now_ms=3000)
    assert ev.status == "running" and ev.details["progress"] == 25.0 and ev.details["elapsed_ms"] == 2000
    assert tracker.progress_event(cj, 5000, [9], now_ms=3000).details["progress"] == 99.9


def test_bounded_state():
    tracker = CompactionTracker(max_covered=10)
    for job in range(5000):
        tracker.feed(JobLine(1, "default", job, "Flush lasted 1 microseconds"), 0)
    assert len(tracker.job_cf) <= 4096
    tracker._cover(list(range(100)))
    assert list(tracker.covered) == list(range(90, 100))
    # a generic background error on a thread running nothing changes nothing
    assert tracker.feed(BackgroundError(77, "background", None, "IO error: x"), 0) == []


def test_salvage_skips_broken_lists():
    n = parse_notice(T + 'EVENT_LOG_v1 {"time_micros": 1, "job": 3, "event": "compaction_started", "files_L0": [-], "x": "a"b"}')
    assert isinstance(n, EventLog) and not n.complete and "files_L0" not in n.data and n.data["job"] == 3
