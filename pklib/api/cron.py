"""CronJob schedules: the standard 5-field cron syntax and the @hourly-style macros, in a time zone.

Parsing and iteration are croniter's; what is Kubernetes' here is the accepted syntax (5 fields or a macro, no
`TZ=` prefix: the time zone goes in `spec.timeZone`), the zone (the controller's, UTC, when none is given) and the
rule for runs missed while the controller was down (`missed_runs`: only the most recent one is started).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Kubernetes starts at most the most recent missed run; past this many it also tells the user (an Event).
TOO_MANY_MISSED = 100


class CronError(ValueError):
    """A schedule or time zone the API must refuse; the message is what the field error says."""


def validate_schedule(schedule: str) -> str | None:
    """What is wrong with a schedule, None when it is valid."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    if text.startswith("@"):
        return None if text in MACROS else f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{text}]"
    if not croniter.is_valid(text):
        return f"unparseable schedule: {text}"
    return None


def validate_time_zone(name: str) -> str | None:
    if not name or " " in name or name.startswith("/") or ".." in name:
        return f"unknown time zone {name}"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name}"
    return None


def zone(name: str | None) -> tzinfo:
    return ZoneInfo(name) if name else timezone.utc


@dataclass(frozen=True)
class Schedule:
    expression: str
    tz: tzinfo

    @classmethod
    def parse(cls, schedule: str, time_zone: str | None = None) -> "Schedule":
        problem = validate_schedule(schedule) or (validate_time_zone(time_zone) if time_zone else None)
        if problem:
            raise CronError(problem)
        return cls(schedule.strip(), zone(time_zone))

    def next_after(self, t: datetime) -> datetime | None:
        """The first scheduled time strictly after `t` (None for a schedule that never fires, e.g. Feb 30)."""
        try:
            nxt: datetime = croniter(self.expression, t.astimezone(self.tz)).get_next(datetime)
        except (CroniterBadDateError, CroniterBadCronError):
            return None
        return nxt.astimezone(timezone.utc).replace(fold=0)

    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest scheduled time not after `t`."""
        # croniter works in whole seconds and its get_prev is strictly before its start: start one second past
        # `t` (truncated) so that a run scheduled exactly at `t` counts, then step back if that overshot.
        start = t.replace(microsecond=0) + timedelta(seconds=1)
        try:
            it = croniter(self.expression, start.astimezone(self.tz))
            prev: datetime = it.get_prev(datetime)
            if prev > t:
                prev = it.get_prev(datetime)
        except (CroniterBadDateError, CroniterBadCronError):
            return None
        return prev.astimezone(timezone.utc).replace(fold=0)


def missed_runs(schedule: Schedule, earliest: datetime, now: datetime) -> tuple[datetime | None, int]:
    """(the most recent scheduled time in (earliest, now], how many there are, counted up to TOO_MANY_MISSED + 1).

    Kubernetes' getMostRecentScheduleTime: after downtime only the most recent missed run is started."""
    latest = schedule.last_at_or_before(now)
    if latest is None or latest <= earliest:
        return None, 0
    count = 0
    t = earliest
    while count <= TOO_MANY_MISSED:
        nxt = schedule.next_after(t)
        if nxt is None or nxt > now:
            break
        count += 1
        t = nxt
    return latest, count
