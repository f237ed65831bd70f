"""RocksDB info ``LOG`` lines -> typed notices -> compaction / flush events.

Rule: this module is pure (stdlib + msgspec only): text in, values out. No I/O, no clock, no
logging. The caller passes the capture time (``now_ms``) into :meth:`CompactionTracker.feed`.

Line shapes (reference §5, default EnvLogger)::

    YYYY/MM/DD-HH:MM:SS.uuuuuu <tid> [LEVEL] [file.cc:LINE] message
    YYYY/MM/DD-HH:MM:SS.uuuuuu <tid> EVENT_LOG_v1 {json}
    YYYY/MM/DD-HH:MM:SS.uuuuuu <tid> (Original Log Time YYYY/MM/DD-HH:MM:SS.uuuuuu) <text>

Invariants:
- :func:`parse_notice` never raises on any text; lines it does not understand give ``None``.
- EVENT_LOG_v1 JSON that is cut (buffered events are truncated at their buffer size) or not
  valid JSON (strings are not escaped) is salvaged: the scalar ``"key": value`` pairs before the
  cut are kept and ``complete`` is False.
- :class:`CompactionTracker` reports each job's ``started`` at most once and exactly one of
  ``completed`` / ``failed`` per job it has seen (a finish without a start is still reported).
  Job ids are per-process counters: a ``DB Session ID:`` header line with a new id (the store
  was opened again) resets the job table; jobs left unfinished by the previous session are
  reported ``failed``. A LOG rolled by size repeats the header with the same id: no reset.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, NamedTuple

import msgspec

from cdc.model.events import CompactionStatus, FlushStatus

# --------------------------------------------------------------------------- lines

_LINE_RE = re.compile(
    r"^(?P<time>\d{4}/\d{2}/\d{2}-\d{2}:\d{2}:\d{2}\.\d{6}) (?P<tid>\d+) "
    r"(?:\(Original Log Time (?P<otime>\d{4}/\d{2}/\d{2}-\d{2}:\d{2}:\d{2}\.\d{6})\) )?"
    r"(?:\[(?P<level>DEBUG|WARN|ERROR|FATAL|HEADER)\] )?"
    r"(?:\[(?P<src>[\w./-]+\.(?:cc|h|c|cpp):\d+)\] ?)?"
    r"(?P<msg>.*)$",
    re.S,
)


class LogLine(NamedTuple):
    """One info-LOG line split into its parts."""

    time: str  # local time text of the line (the original time for buffered lines)
    thread: int  # writer thread id (decimal in the LOG)
    level: str  # INFO (implicit) | DEBUG | WARN | ERROR | FATAL | HEADER
    source: str  # "db/flush_job.cc:1094" or ""
    buffered: bool  # written through a job LogBuffer ("Original Log Time")
    message: str


def parse_line(line: str) -> LogLine | None:
    """Split one LOG line (without its newline); ``None`` for continuation / foreign lines."""
    m = _LINE_RE.match(line.rstrip("\r\n"))
    if m is None:
        return None
    otime = m.group("otime")
    return LogLine(
        time=otime or m.group("time"),
        thread=int(m.group("tid")),
        level=m.group("level") or "INFO",
        source=m.group("src") or "",
        buffered=otime is not None,
        message=m.group("msg"),
    )


# --------------------------------------------------------------------------- notices


class EventLog(NamedTuple):
    """An ``EVENT_LOG_v1`` line. ``data`` holds what could be decoded."""

    thread: int
    job: int | None
    event: str
    data: dict[str, Any]
    complete: bool  # False when the JSON was cut or invalid and only scalars were salvaged


class JobLine(NamedTuple):
    """A ``[cf] [JOB n] text`` line (flush / compaction progress text)."""

    thread: int
    cf: str
    job: int
    text: str


class CompactedTo(NamedTuple):
    """``[cf] compacted to: ... <STATUS>, records in: N, records dropped: M ...`` (buffered).

    The only per-job compaction status; immediately followed by the job's compaction_finished
    on the same thread.
    """

    thread: int
    cf: str
    status: str  # "OK" or the error text
    records_in: int | None
    records_dropped: int | None


class CompactionError(NamedTuple):
    """``[WARN] ... Compaction error: <status>``."""

    thread: int
    status: str


class BackgroundError(NamedTuple):
    """``Waiting after background {compaction|flush} error: <status>, ...`` and ErrorHandler lines."""

    thread: int
    kind: str  # "compaction" | "flush" | "background"
    job: int | None
    status: str


class Moved(NamedTuple):
    """``[cf] Moving #N to level-L B bytes`` (one per file of a trivial move, buffered text,
    written just before the job's trivial_move event)."""

    thread: int
    cf: str
    file_number: int
    level: int
    size: int
    status: str


class SessionStart(NamedTuple):
    """``DB Session ID:  <id>``: part of the header of every LOG file. The id changes only when
    the store is opened again (a LOG rolled by size repeats the same header and id)."""

    thread: int
    session_id: str


Notice = EventLog | JobLine | CompactedTo | CompactionError | BackgroundError | Moved | SessionStart

_EVENT_RE = re.compile(r"EVENT_LOG_v1 (\{.*)$", re.S)
_JOB_RE = re.compile(r"^\[(?P<cf>[^\]]*)\] \[JOB (?P<job>\d+)\] (?P<text>.*)$", re.S)
_COMPACTED_TO_RE = re.compile(
    r"^\[(?P<cf>[^\]]*)\] compacted to: .*? write-amplify\([^)]*\) (?P<status>.*?)"
    r", records in: (?P<rin>\d+), records dropped: (?P<rdrop>\d+)",
    re.S,
)
_COMPACTED_TO_LOOSE_RE = re.compile(
    r"^\[(?P<cf>[^\]]*)\] compacted to: .*? write-amplify\([^)]*\) (?P<status>.*)$", re.S
)
_COMPACTION_ERROR_RE = re.compile(r"^Compaction error: (?P<status>.*)$", re.S)
_WAITING_RE = re.compile(
    r"^(?:\[JOB (?P<job>\d+)\] )?Waiting after background (?P<kind>compaction|flush) error: "
    r"(?P<status>.*?)(?:, Accumulated background error counts: \d+)?$",
    re.S,
)
_BG_ERROR_RE = re.compile(r"^Background IO error (?P<status>.*?)(?:, reason \d+)?$", re.S)
_MOVED_RE = re.compile(
    r"^\[(?P<cf>[^\]]*)\] Moving #(?P<num>\d+) to level-(?P<level>\d+) (?P<size>\d+) bytes ?(?P<status>.*)$",
    re.S,
)
_SESSION_RE = re.compile(r"^DB Session ID:\s+(?P<v>\S+)")
_SCALAR_RE = re.compile(r'"(\w+)": (?:"([^"]*)"|(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?))')

_json_decoder = msgspec.json.Decoder()


def _decode_event_json(text: str) -> tuple[dict[str, Any], bool]:
    """Decode EVENT_LOG_v1 details; salvage scalar pairs from cut / invalid JSON."""
    text = text.rstrip()
    try:
        obj = _json_decoder.decode(text)
        if isinstance(obj, dict):
            return obj, True
    except (msgspec.DecodeError, UnicodeError, ValueError):
        pass
    data: dict[str, Any] = {}
    depth_cut = _first_nested(text)
    for m in _SCALAR_RE.finditer(text, 0, depth_cut):
        key, sval, nval = m.group(1), m.group(2), m.group(3)
        if key in data:
            continue
        if sval is not None:
            data[key] = sval
        else:
            data[key] = float(nval) if ("." in nval or "e" in nval) else int(nval)
    # Salvage the list-valued fields we use (files_L<n>, lsm_state) when they are complete.
    for m in re.finditer(r'"(files_L\d+|lsm_state)": \[([-\d, ]*)\]', text):
        try:
            data.setdefault(m.group(1), [int(x) for x in m.group(2).split(",") if x.strip()])
        except ValueError:
            pass
    return data, False


def _first_nested(text: str) -> int:
    """Offset of the first nested object (table_properties etc.): top-level scalars come before."""
    i = text.find("{", 1)
    return len(text) if i < 0 else i


def parse_notice(line: str | LogLine) -> Notice | None:
    """Turn one LOG line into a typed notice, or ``None`` when it is not one we use."""
    ll = parse_line(line) if isinstance(line, str) else line
    if ll is None:
        return None
    msg = ll.message
    tid = ll.thread
    if msg.startswith("EVENT_LOG_v1 "):
        m = _EVENT_RE.match(msg)
        if m is None:
            return None
        data, complete = _decode_event_json(m.group(1))
        event = data.get("event")
        if not isinstance(event, str):
            return None
        job = data.get("job")
        return EventLog(tid, job if isinstance(job, int) else None, event, data, complete)
    if msg.startswith("["):
        m = _JOB_RE.match(msg)
        if m is not None:
            return JobLine(tid, m.group("cf"), int(m.group("job")), m.group("text").rstrip())
        if " compacted to: " in msg:
            m = _COMPACTED_TO_RE.match(msg)
            if m is not None:
                return CompactedTo(
                    tid, m.group("cf"), m.group("status").strip(), int(m.group("rin")), int(m.group("rdrop"))
                )
            m = _COMPACTED_TO_LOOSE_RE.match(msg)
            if m is not None:
                return CompactedTo(tid, m.group("cf"), m.group("status").strip(), None, None)
            return None
        m = _MOVED_RE.match(msg)
        if m is not None:
            return Moved(
                tid, m.group("cf"), int(m.group("num")), int(m.group("level")), int(m.group("size")),
                m.group("status").strip() or "OK",
            )
        m = _WAITING_RE.match(msg)  # "[JOB n] Waiting after background ..."
        if m is not None:
            job = m.group("job")
            return BackgroundError(tid, m.group("kind"), int(job) if job else None, m.group("status").strip())
        return None
    m = _COMPACTION_ERROR_RE.match(msg)
    if m is not None:
        return CompactionError(tid, m.group("status").strip())
    m = _WAITING_RE.match(msg)
    if m is not None:
        job = m.group("job")
        return BackgroundError(tid, m.group("kind"), int(job) if job else None, m.group("status").strip())
    m = _BG_ERROR_RE.match(msg)
    if m is not None:
        return BackgroundError(tid, "background", None, m.group("status").strip())
    m = _SESSION_RE.match(msg)
    if m is not None:
        return SessionStart(tid, m.group("v"))
    return None


# --------------------------------------------------------------------------- tracker

_FLUSH_TABLE_RE = re.compile(r"^Level-0 flush table #(?P<num>\d+): (?P<rest>.*)$", re.S)
_FLUSH_BYTES_RE = re.compile(r"^(?P<bytes>\d+) bytes (?P<status>.*)$", re.S)
_FLUSH_LASTED_RE = re.compile(r"^Flush lasted (?P<us>\d+) microseconds")
_COMPACTING_RE = re.compile(r"^Compacting .* files to L(?P<level>\d+)")
_COMPACTED_RE = re.compile(r"^Compacted .* files to L(?P<level>\d+) => (?P<bytes>\d+) bytes")
_GENERATED_RE = re.compile(r"^Generated table #(?P<num>\d+): (?P<keys>\d+) keys, (?P<bytes>\d+) bytes")

_COMPACTION_KEYS_STARTED = ("compaction_reason", "score", "input_data_size", "oldest_snapshot_seqno")


class CompactionJob:
    """A compaction the tracker has seen start (state while it runs).

    Invariants: ``inputs`` maps ``"L<level>"`` to input file numbers from compaction_started;
    ``outputs`` maps output file numbers to their sizes from table_file_creation lines.
    """

    __slots__ = (
        "job", "cf", "thread", "reason", "inputs", "input_bytes", "started_us",
        "started_ms", "output_level", "outputs", "status", "details",
    )

    def __init__(self, job: int, cf: str, thread: int) -> None:
        self.job = job
        self.cf = cf
        self.thread = thread
        self.reason: str | None = None
        self.inputs: dict[str, list[int]] = {}
        self.input_bytes: int | None = None
        self.started_us: int | None = None
        self.started_ms: int | None = None
        self.output_level: int | None = None
        self.outputs: dict[int, int] = {}
        self.status: str | None = None
        self.details: dict[str, Any] = {}

    @property
    def input_numbers(self) -> list[int]:
        return [n for nums in self.inputs.values() for n in nums]


class FlushJob:
    """A flush the tracker has seen start."""

    __slots__ = ("job", "cf", "thread", "file_number", "file_size", "status", "duration_us", "started", "details")

    def __init__(self, job: int, cf: str, thread: int) -> None:
        self.job = job
        self.cf = cf
        self.thread = thread
        self.file_number: int | None = None
        self.file_size: int | None = None
        self.status: str | None = None
        self.duration_us: int | None = None
        self.started = False
        self.details: dict[str, Any] = {}


TrackerEvent = CompactionStatus | FlushStatus


class CompactionTracker:
    """Stateful, pure: notices in, ``compaction_status`` / ``flush_status`` events out.

    ``feed(notice, now_ms)`` returns the events that notice completes. ``covered`` collects the
    SST file numbers whose fate the LOG explained (compaction inputs, deleted files, trivially
    moved files, outputs): the MANIFEST fallback skips those (bounded to the newest
    ``max_covered`` numbers).
    """

    def __init__(self, *, max_covered: int = 100_000) -> None:
        self.compactions: dict[int, CompactionJob] = {}
        self.flushes: dict[int, FlushJob] = {}
        self.job_cf: dict[int, str] = {}  # job -> cf from "[cf] [JOB n]" text lines
        self.flush_outputs: set[int] = set()  # SST numbers being written by flushes
        self.covered: OrderedDict[int, None] = OrderedDict()
        self.max_covered = max_covered
        self._pending_status: dict[int, CompactedTo] = {}  # thread -> last "compacted to" line
        self._pending_error: dict[int, str] = {}  # thread -> last "Compaction error" status
        self._moved: dict[int, list[Moved]] = {}  # thread -> Moved lines before trivial_move
        self._failed_jobs: OrderedDict[int, None] = OrderedDict()  # reported failed before their finish line
        self._failed_flushes: OrderedDict[int, None] = OrderedDict()
        self.session = 0  # bumped by each reset (a new store session)
        self.session_id: str | None = None  # the store's DB Session ID of the lines being read

    # ------------------------------------------------------------------ helpers
    def _cover(self, numbers: list[int] | tuple[int, ...]) -> None:
        cov = self.covered
        for n in numbers:
            cov[n] = None
            cov.move_to_end(n)
        while len(cov) > self.max_covered:
            cov.popitem(last=False)

    def running(self) -> list[CompactionJob]:
        """Compactions started and not finished yet (oldest first)."""
        return [j for j in self.compactions.values() if j.started_us is not None]

    # ------------------------------------------------------------------ feed
    def feed(self, notice: Notice, now_ms: int) -> list[TrackerEvent]:
        """Apply one notice; return the events it completes (possibly none)."""
        if isinstance(notice, EventLog):
            return self._on_event(notice, now_ms)
        if isinstance(notice, JobLine):
            return self._on_job_line(notice, now_ms)
        if isinstance(notice, CompactedTo):
            self._pending_status[notice.thread] = notice
            return []
        if isinstance(notice, CompactionError):
            failed = self._fail_running_on_thread(notice.thread, notice.status, now_ms)
            if not failed:
                self._pending_error[notice.thread] = notice.status
            return failed
        if isinstance(notice, Moved):
            self._moved.setdefault(notice.thread, []).append(notice)
            self._cover([notice.file_number])
            return []
        if isinstance(notice, BackgroundError):
            return self._on_background_error(notice, now_ms)
        if isinstance(notice, SessionStart):
            previous, self.session_id = self.session_id, notice.session_id
            if previous is not None and previous != notice.session_id:
                return self.reset(now_ms, reason="store restarted before the job finished")
            return []
        return []

    def reset(self, now_ms: int, *, reason: str) -> list[TrackerEvent]:
        """A new store session: report unfinished jobs as failed and forget per-process state."""
        out: list[TrackerEvent] = []
        for cj in self.compactions.values():
            if cj.started_us is not None:
                out.append(self._compaction_event(cj, "failed", now_ms, {"reason": reason}))
        for fj in self.flushes.values():
            if fj.started:
                out.append(self._flush_event(fj, "failed", now_ms, {"reason": reason}))
        self.compactions.clear()
        self.flushes.clear()
        self.job_cf.clear()
        self.flush_outputs.clear()
        self._pending_status.clear()
        self._pending_error.clear()
        self._moved.clear()
        self._failed_jobs.clear()
        self._failed_flushes.clear()
        self.session += 1
        return out

    def _on_job_line(self, n: JobLine, now_ms: int) -> list[TrackerEvent]:
        self.job_cf[n.job] = n.cf
        if len(self.job_cf) > 4096:  # bounded: drop the oldest jobs
            for k in list(self.job_cf)[:1024]:
                del self.job_cf[k]
        text = n.text
        if text.startswith("Level-0 flush table #"):
            m = _FLUSH_TABLE_RE.match(text)
            if m is None:
                return []
            num = int(m.group("num"))
            fj = self.flushes.get(n.job)
            rest = m.group("rest").strip()
            if rest == "started":
                self.flush_outputs.add(num)
                if fj is not None:
                    fj.file_number = num
                return []
            mb = _FLUSH_BYTES_RE.match(rest)
            if fj is None:
                fj = self.flushes[n.job] = FlushJob(n.job, n.cf, n.thread)
            fj.file_number = num
            if mb is not None:
                fj.file_size = int(mb.group("bytes"))
                fj.status = mb.group("status").strip() or "OK"
            else:
                fj.status = rest
            return []
        if text.startswith("Flush lasted "):
            m = _FLUSH_LASTED_RE.match(text)
            fj = self.flushes.get(n.job)
            if m is not None and fj is not None:
                fj.duration_us = int(m.group("us"))
            return []
        if text.startswith("Compacting "):
            m = _COMPACTING_RE.match(text)
            cj = self.compactions.get(n.job)
            if cj is None:
                cj = self.compactions[n.job] = CompactionJob(n.job, n.cf, n.thread)
            cj.cf = n.cf
            if m is not None:
                cj.output_level = int(m.group("level"))
            return []
        if text.startswith("Generated table #"):
            m = _GENERATED_RE.match(text)
            cj = self.compactions.get(n.job)
            if m is not None and cj is not None:
                cj.outputs[int(m.group("num"))] = int(m.group("bytes"))
            return []
        if text.startswith("Compacted "):
            m = _COMPACTED_RE.match(text)
            cj = self.compactions.get(n.job)
            if m is not None and cj is not None:
                cj.output_level = int(m.group("level"))
            return []
        if text.startswith("Waiting after background"):
            m = _WAITING_RE.match(f"[JOB {n.job}] {text}")
            if m is not None:
                return self._on_background_error(
                    BackgroundError(n.thread, m.group("kind"), n.job, m.group("status").strip()), now_ms
                )
        return []

    def _on_background_error(self, n: BackgroundError, now_ms: int) -> list[TrackerEvent]:
        if n.kind == "flush" and n.job is not None:
            fj = self.flushes.get(n.job)
            if fj is not None and fj.started:
                del self.flushes[n.job]
                self._failed_flushes[n.job] = None
                return [self._flush_event(fj, "failed", now_ms, {"reason": n.status})]
        if n.kind == "compaction" and n.job is not None:
            cj = self.compactions.get(n.job)
            if cj is not None and cj.started_us is not None:
                del self.compactions[n.job]
                return [self._compaction_event(cj, "failed", now_ms, {"reason": n.status})]
        if n.kind == "compaction":
            self._pending_error.setdefault(n.thread, n.status)
        if n.kind == "background":
            return self._fail_running_on_thread(n.thread, n.status, now_ms)
        return []

    def _fail_running_on_thread(self, thread: int, status: str, now_ms: int) -> list[TrackerEvent]:
        """A compaction error on the thread running a compaction fails that job at once.

        RocksDB may never write the job's buffered ``compacted to`` / compaction_finished pair
        (seen for real with a full disk); if it does later, that pair is swallowed.
        """
        for job, cj in self.compactions.items():
            if cj.started_us is not None and cj.thread == thread:
                del self.compactions[job]
                self._failed_jobs[job] = None
                while len(self._failed_jobs) > 1024:
                    self._failed_jobs.popitem(last=False)
                return [self._compaction_event(cj, "failed", now_ms, {"reason": status})]
        for job, fj in self.flushes.items():
            if fj.started and fj.thread == thread:  # seen for real: a flush on a full disk
                del self.flushes[job]
                self._failed_flushes[job] = None
                while len(self._failed_flushes) > 1024:
                    self._failed_flushes.popitem(last=False)
                if fj.file_number is not None:
                    self.flush_outputs.discard(fj.file_number)
                return [self._flush_event(fj, "failed", now_ms, {"reason": status})]
        return []

    def _on_event(self, n: EventLog, now_ms: int) -> list[TrackerEvent]:
        ev = n.event
        d = n.data
        job = n.job
        if ev == "compaction_started" and job is not None:
            cf = d.get("cf_name") if isinstance(d.get("cf_name"), str) else None
            cj = self.compactions.get(job)
            if cj is None:
                cj = self.compactions[job] = CompactionJob(job, cf or self.job_cf.get(job, "default"), n.thread)
            elif cf:
                cj.cf = cf
            cj.thread = n.thread
            cj.reason = d.get("compaction_reason") if isinstance(d.get("compaction_reason"), str) else None
            cj.inputs = {
                k[6:]: [int(x) for x in v if isinstance(x, int)]
                for k, v in d.items()
                if k.startswith("files_L") and isinstance(v, list)
            }
            ib = d.get("input_data_size")
            cj.input_bytes = ib if isinstance(ib, int) else None
            tm = d.get("time_micros")
            cj.started_us = tm if isinstance(tm, int) else now_ms * 1000
            cj.started_ms = now_ms
            self._cover(cj.input_numbers)
            details: dict[str, Any] = {"job": job}
            if cj.reason is not None:
                details["compaction_reason"] = cj.reason
            details["input_files"] = cj.inputs
            details["input_file_count"] = len(cj.input_numbers)
            if cj.input_bytes is not None:
                details["input_bytes"] = cj.input_bytes
            for k in ("score", "oldest_snapshot_seqno"):
                if k in d:
                    details[k] = d[k]
            if cj.output_level is not None:
                details["output_level"] = cj.output_level
            details["started_at_ms"] = cj.started_us // 1000
            if not n.complete:
                details["truncated"] = True
            cj.details = details
            return [CompactionStatus(timestamp=now_ms, status="started", cf=cj.cf, job=job, details=dict(details))]
        if ev == "table_file_creation" and job is not None:
            num, size = d.get("file_number"), d.get("file_size")
            if isinstance(num, int):
                cj = self.compactions.get(job)
                if cj is not None:
                    cj.outputs[num] = size if isinstance(size, int) else cj.outputs.get(num, 0)
                    self._cover([num])
                    st = d.get("status")
                    if isinstance(st, str) and st != "OK":
                        self._pending_error.setdefault(n.thread, st)
                fj = self.flushes.get(job)
                if fj is not None:
                    fj.file_number = num
                    if isinstance(size, int):
                        fj.file_size = size
            return []
        if ev == "table_file_deletion":
            num = d.get("file_number")
            if isinstance(num, int):
                self._cover([num])
            return []
        if ev == "compaction_finished" and job is not None:
            return self._on_compaction_finished(n, now_ms)
        if ev == "trivial_move" and job is not None:
            moved = self._moved.pop(n.thread, [])
            cf = moved[0].cf if moved else self.job_cf.get(job, "default")
            self.compactions.pop(job, None)
            details = {
                "job": job,
                "trivial_move": True,
                "output_level": d.get("destination_level"),
                "output_file_count": d.get("files"),
                "output_bytes": d.get("total_files_size"),
                "moved_files": [m.file_number for m in moved],
            }
            details = {k: v for k, v in details.items() if v is not None}
            return [CompactionStatus(timestamp=now_ms, status="completed", cf=cf, job=job, details=details)]
        if ev == "flush_started" and job is not None:
            fj = self.flushes.get(job)
            if fj is None:
                fj = self.flushes[job] = FlushJob(job, self.job_cf.get(job, "default"), n.thread)
            fj.started = True
            details = {"job": job}
            tm = d.get("time_micros")
            if isinstance(tm, int):
                details["started_at_ms"] = tm // 1000
            for src, dst in (
                ("flush_reason", "reason"),
                ("num_memtables", "memtables"),
                ("total_num_input_entries", "entries"),
                ("num_entries", "entries"),
                ("num_deletes", "deletes"),
                ("num_range_deletes", "range_deletes"),
                ("total_data_size", "data_bytes"),
                ("memory_usage", "memory_bytes"),
            ):
                if src in d and dst not in details:
                    details[dst] = d[src]
            fj.details = details
            return [FlushStatus(timestamp=now_ms, status="started", cf=fj.cf, job=job, details=dict(details))]
        if ev == "flush_finished" and job is not None:
            if job in self._failed_flushes:  # already reported failed from its error line
                del self._failed_flushes[job]
                self.flushes.pop(job, None)
                return []
            fj = self.flushes.pop(job, None)
            if fj is None:
                fj = FlushJob(job, self.job_cf.get(job, "default"), n.thread)
            if fj.file_number is not None:
                self.flush_outputs.discard(fj.file_number)
            extra: dict[str, Any] = {}
            tm = d.get("time_micros")
            if isinstance(tm, int):
                extra["finished_at_ms"] = tm // 1000
            if "lsm_state" in d:
                extra["lsm_state"] = d["lsm_state"]
            if "output_compression" in d:
                extra["output_compression"] = d["output_compression"]
            status = fj.status or "OK"
            if status == "OK":
                return [self._flush_event(fj, "completed", now_ms, extra)]
            extra["reason"] = status
            return [self._flush_event(fj, "failed", now_ms, extra)]
        return []

    def _on_compaction_finished(self, n: EventLog, now_ms: int) -> list[TrackerEvent]:
        job = n.job
        assert job is not None
        d = n.data
        cj = self.compactions.pop(job, None)
        ct = self._pending_status.pop(n.thread, None)
        err = self._pending_error.pop(n.thread, None)
        if job in self._failed_jobs:  # already reported failed from its error line
            del self._failed_jobs[job]
            return []
        if cj is None:
            cj = CompactionJob(job, ct.cf if ct is not None else self.job_cf.get(job, "default"), n.thread)
        extra: dict[str, Any] = {}
        for src, dst in (
            ("compaction_time_micros", "duration_us"),
            ("compaction_time_cpu_micros", "cpu_us"),
            ("output_level", "output_level"),
            ("num_output_files", "output_file_count"),
            ("total_output_size", "output_bytes"),
            ("num_input_records", "records_in"),
            ("num_output_records", "records_out"),
            ("num_subcompactions", "subcompactions"),
            ("output_compression", "output_compression"),
            ("lsm_state", "lsm_state"),
        ):
            if src in d:
                extra[dst] = d[src]
        tm = d.get("time_micros")
        if isinstance(tm, int):
            extra["finished_at_ms"] = tm // 1000
        if isinstance(extra.get("duration_us"), int):
            extra["duration_ms"] = round(extra["duration_us"] / 1000, 3)
        if cj.outputs:
            extra["output_files"] = sorted(cj.outputs)
            self._cover(list(cj.outputs))
        if ct is not None and ct.records_dropped is not None:
            extra["records_dropped"] = ct.records_dropped
        if not n.complete:
            extra["truncated"] = True
        status = ct.status if ct is not None else (err if err is not None else "OK")
        if status == "OK" and err is not None and ct is None:
            status = err
        if status == "OK":
            return [self._compaction_event(cj, "completed", now_ms, extra)]
        extra["reason"] = status
        return [self._compaction_event(cj, "failed", now_ms, extra)]

    # ------------------------------------------------------------------ builders
    def _compaction_event(self, cj: CompactionJob, status: str, now_ms: int, extra: dict[str, Any]) -> CompactionStatus:
        details: dict[str, Any] = {"job": cj.job}
        if cj.reason is not None:
            details["compaction_reason"] = cj.reason
        if cj.inputs:
            details["input_files"] = cj.inputs
            details["input_file_count"] = len(cj.input_numbers)
        if cj.input_bytes is not None:
            details["input_bytes"] = cj.input_bytes
        if cj.output_level is not None:
            details["output_level"] = cj.output_level
        details.update(extra)
        return CompactionStatus(timestamp=now_ms, status=status, cf=cj.cf, job=cj.job, details=details)

    def _flush_event(self, fj: FlushJob, status: str, now_ms: int, extra: dict[str, Any]) -> FlushStatus:
        details: dict[str, Any] = dict(fj.details) if fj.details else {"job": fj.job}
        if fj.file_number is not None:
            details["file_number"] = fj.file_number
        if fj.file_size is not None:
            details["file_bytes"] = fj.file_size
        if fj.duration_us is not None:
            details["duration_us"] = fj.duration_us
            details["duration_ms"] = round(fj.duration_us / 1000, 3)
        details.update(extra)
        return FlushStatus(timestamp=now_ms, status=status, cf=fj.cf, job=fj.job, details=details)

    def progress_event(self, cj: CompactionJob, written: int, files: list[int], now_ms: int) -> CompactionStatus:
        """A ``running`` event: ``written`` output bytes so far against the job's input bytes."""
        details: dict[str, Any] = {"job": cj.job, "bytes_written": written, "output_files": files}
        if cj.input_bytes:
            details["input_bytes"] = cj.input_bytes
            details["progress"] = round(min(99.9, 100.0 * written / cj.input_bytes), 1)
        if cj.started_us is not None:
            details["elapsed_ms"] = max(0, now_ms - cj.started_us // 1000)
        return CompactionStatus(timestamp=now_ms, status="running", cf=cj.cf, job=cj.job, details=details)


def parse_log_bytes(data: bytes) -> list[Notice]:
    """Notices of the complete lines in ``data`` (bytes of a LOG, split on ``\\n``).

    Lines without any marker a notice needs (``EVENT_LOG_v1``, ``[JOB``, ``compacted to:``,
    ``Moving #``, ``error``, ``Session ID:``) are skipped before decoding (substring tests in
    C); the result is the same as :func:`parse_notice` on every decoded line.
    """
    out: list[Notice] = []
    for raw in data.split(b"\n"):
        if (
            b"EVENT_LOG_v1 " in raw
            or b"[JOB " in raw
            or b" compacted to: " in raw
            or b"error" in raw
            or b"] Moving #" in raw
            or b"Session ID:" in raw
        ):
            n = parse_notice(raw.decode("utf-8", "replace"))
            if n is not None:
                out.append(n)
    return out


def parse_lines(text: str) -> list[Notice]:
    """Parse many complete lines (convenience for tests and one-shot reads)."""
    out: list[Notice] = []
    for line in text.splitlines():
        n = parse_notice(line)
        if n is not None:
            out.append(n)
    return out
