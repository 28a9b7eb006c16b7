#!/usr/bin/env python3
"""An independent oracle for mtask's conformance table: cron, and intervals.

It shares no code or library with mtask's Rust core: it matches fields with
its own small parser and walks real time second by second (minute by minute
for 5-field expressions), converting each instant to wall time with Python's
zoneinfo. DST follows the rule mtask documents, Vixie cron's:
  - a job whose minute or hour field starts with `*` is a wildcard job and
    follows real time: times in a gap do not happen, times in an overlap
    happen twice;
  - any other job is a fixed-time job: a time in a spring-forward gap runs
    once, at the first instant after the gap (however many of its times the
    gap holds), and a time in a fall-back overlap runs once, at its first
    occurrence.

An interval schedule, `every <number> <unit> ...` with units of months,
weeks, days, hours, minutes or seconds, runs at `from + k x interval` as
PostgreSQL adds an interval to a timestamptz: months, then days, on the wall
clock, each wall time read back as PostgreSQL's DetermineTimeZoneOffset reads
it (the later of its two readings in a gap or an overlap), then the time part
as elapsed time.

    scripts/cron_oracle.py < cases.txt > core/src/schedule/conformance.tsv
    scripts/cron_oracle.py --check core/src/schedule/conformance.tsv

Each input line is `expression<TAB>zone<TAB>from (RFC 3339)<TAB>n`, where n is
how many instants to find, or the instants a table already expects; each
output line has the next n instants, comma-separated, in UTC. --check reports
every line of a table that the oracle computes differently.
"""

import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
DAYS = "SUN MON TUE WED THU FRI SAT".split()
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}


def value(token, lo, names):
    token = token.upper()
    if token in names:
        return names.index(token) + lo
    return int(token)


def simple_set(text, lo, hi, names=()):
    """Values of a field made of *, numbers, ranges, steps and lists."""
    out = set()
    for part in text.split(","):
        base, slash, step = part.partition("/")
        step = int(step) if step else 1
        if base in ("*", "?"):
            a, b = lo, hi
        elif "-" in base:
            first, last = base.split("-")
            a = value(first, lo, names)
            # Sunday is 0 and 7; a range that ends on SUN ends on 7.
            b = 7 if names is DAYS and last.upper() == "SUN" and a > 0 else value(last, lo, names)
        else:
            a = value(base, lo, names)
            b = hi if slash else a
        out.update(range(a, b + 1, step))
    return out


def last_day(y, m):
    nxt = datetime(y + (m == 12), m % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


def weekday(y, m, d):
    return (datetime(y, m, d).weekday() + 1) % 7  # Sunday = 0


def nearest_weekday(y, m, n):
    n = min(n, last_day(y, m))
    wd = weekday(y, m, n)
    if wd == 6:
        return n - 1 if n > 1 else n + 2
    if wd == 0:
        return n + 1 if n < last_day(y, m) else n - 2
    return n


def dom_matches(field, y, m, d):
    for part in field.split(","):
        if part in ("L", "$"):
            if d == last_day(y, m):
                return True
        elif part == "LW":
            ld = last_day(y, m)
            if d == nearest_weekday(y, m, ld) and weekday(y, m, d) not in (0, 6):
                return True
        elif part.endswith("W"):
            if d == nearest_weekday(y, m, int(part[:-1])):
                return True
        elif d in simple_set(part, 1, 31):
            return True
    return False


def dow_matches(field, y, m, d):
    wd = weekday(y, m, d)
    for part in field.split(","):
        if "#" in part:
            day, nth = part.split("#")
            if wd != value(day, 0, DAYS) % 7:
                continue
            if nth.upper() == "L" and d + 7 > last_day(y, m):
                return True
            if nth.upper() != "L" and (d - 1) // 7 + 1 == int(nth):
                return True
        elif part.endswith("L") and len(part) > 1:
            if wd == value(part[:-1], 0, DAYS) % 7 and d + 7 > last_day(y, m):
                return True
        elif wd in {v % 7 for v in simple_set(part, 0, 7, DAYS)}:
            return True
    return False


class Cron:
    def __init__(self, expr):
        expr = MACROS.get(expr.lower(), expr)
        fields = expr.split()
        if len(fields) == 5:
            fields = ["0"] + fields
        self.step = 1 if len(expr.split()) == 6 else 60
        sec, minute, hour, self.dom, month, self.dow = fields
        self.secs = simple_set(sec, 0, 59)
        self.mins = simple_set(minute, 0, 59)
        self.hours = simple_set(hour, 0, 23)
        self.months = simple_set(month, 1, 12, MONTHS)
        self.either = not (self.dom[0] in "*?" or self.dow[0] in "*?")
        self.fixed = not (minute.startswith("*") or hour.startswith("*"))

    def day_matches(self, y, m, d):
        if m not in self.months:
            return False
        a, b = dom_matches(self.dom, y, m, d), dow_matches(self.dow, y, m, d)
        return (a or b) if self.either else (a and b)

    def time_matches(self, h, mi, s):
        return h in self.hours and mi in self.mins and s in self.secs


def wall(t, tz):
    return t.astimezone(tz)


UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


def read_wall(naive, tz):
    """A wall time as PostgreSQL reads it: of the readings with the offsets
    before and after a change (zoneinfo's two folds), the later instant."""
    return max(naive.replace(tzinfo=tz, fold=f).astimezone(timezone.utc) for f in (0, 1))


def interval_runs(expr, zone, start, n):
    tz = ZoneInfo(zone)
    words = expr.split()[1:]
    months = days = seconds = 0
    for number, unit in zip(words[::2], words[1::2]):
        unit, number = unit.rstrip("s"), int(number)
        if unit == "month":
            months += number
        elif unit in ("week", "day"):
            days += number * (7 if unit == "week" else 1)
        else:
            seconds += number * UNIT_SECONDS[unit]
    found = []
    for k in range(n):
        t = start
        if months:
            local = t.astimezone(tz).replace(tzinfo=None)
            month = local.month - 1 + k * months
            year, month = local.year + month // 12, month % 12 + 1
            local = local.replace(year=year, month=month, day=min(local.day, last_day(year, month)))
            t = read_wall(local, tz)
        if days:
            t = read_wall(t.astimezone(tz).replace(tzinfo=None) + timedelta(days=k * days), tz)
        found.append(t + timedelta(seconds=k * seconds))
    return found


def runs(expr, zone, start, n):
    if expr.startswith("every "):
        return interval_runs(expr, zone, start, n)
    cron, tz = Cron(expr), ZoneInfo(zone)
    step = timedelta(seconds=cron.step)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    # The first instant on the step grid at or after start.
    k = -(-int((start - epoch).total_seconds()) // cron.step)
    t = epoch + k * step
    if t < start:
        t += step
    found = []
    while len(found) < n:
        local = wall(t, tz)
        naive_now = local.replace(tzinfo=None)
        naive_before = wall(t - step, tz).replace(tzinfo=None)
        hit = False
        if cron.fixed and naive_now - naive_before > step:
            # t is the first instant after a gap: did the gap hide a run? Its
            # times may belong to another day than t (a gap across midnight).
            g = naive_before + step
            while g < naive_now:
                if cron.day_matches(g.year, g.month, g.day) and cron.time_matches(g.hour, g.minute, g.second):
                    hit = True
                    break
                g += step
        if not hit and not cron.day_matches(local.year, local.month, local.day):
            # Jump to the next local midnight, or to the earlier of its two
            # readings if a DST change makes it missing or repeated.
            nxt = datetime(local.year, local.month, local.day) + timedelta(days=1)
            midnight = min(nxt.replace(tzinfo=tz, fold=f).astimezone(timezone.utc) for f in (0, 1))
            t = max(midnight, t + step)
            continue
        if not hit:
            # A fixed-time job does not run on the second pass of an overlap.
            hit = cron.time_matches(local.hour, local.minute, local.second) and not (cron.fixed and local.fold == 1)
        if hit:
            found.append(t)
        t += step
    return found


def main():
    check = sys.argv[1:2] == ["--check"]
    lines = open(sys.argv[2]) if check else sys.stdin
    differ = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            if not check:
                print(line)
            continue
        expr, zone, start, wanted = line.split("\t")
        n = int(wanted) if wanted.isdigit() else len(wanted.split(","))
        start_t = datetime.fromisoformat(start.replace("Z", "+00:00"))
        got = runs(expr, zone, start_t, n)
        stamps = ",".join(x.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for x in got)
        if check and stamps != wanted:
            differ += 1
            print(f"differs: {line}\n  oracle: {stamps}", file=sys.stderr)
        elif not check:
            print(f"{expr}\t{zone}\t{start}\t{stamps}")
    if check:
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
