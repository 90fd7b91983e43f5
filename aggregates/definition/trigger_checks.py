"""Checks of webhook and schedule trigger configs (pure; every issue with its path).

Webhook (the gateway's contract; docs/ingress.md):
  path, method, secret (``${secret:NAME}``, the HMAC key; without one, callers need an API
  key of the workflow's tenant), tolerance (duration),
  headers (name → required value), allow_ips (IPs or CIDRs), max_body (bytes),
  rate_limit {per_ip, per_key} (requests/s), input (CEL over headers, body, query → the
  trigger's input), dedup (CEL → dedup key when no Idempotency-Key header is sent).
Schedule (the scheduler's contract):
  cron, timezone, input, window {from, to} (local "HH:MM"), start / end (ISO date or time),
  missed (skip, run_once, run_all), max_catchup (bound of run_all).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import Any

from flowlog.aggregates.definition.fields import Collected, Issues, join_path
from flowlog.aggregates.definition.model import SECRET_REF

WEBHOOK_KEYS = {"path", "method", "secret", "tolerance", "headers", "allow_ips", "max_body",
                "rate_limit", "input", "dedup"}
SCHEDULE_KEYS = {"cron", "timezone", "input", "window", "start", "end", "missed", "max_catchup"}
EVENT_KEYS = {"event", "topic", "format", "filter", "input", "dedup", "start"}
EVENT_FORMATS = ("json", "avro")
POLL_KEYS = {"url", "interval", "filter", "method", "headers", "items", "cursor", "input",
             "rate_limit"}
#: What a poll trigger's items, cursor, filter and input expressions may read.
POLL_VARIABLES = frozenset({"response", "item", "event"})
#: What an event trigger's filter, input and dedup expressions may read.
EVENT_VARIABLES = frozenset({"event", "key", "headers", "topic", "partition", "offset",
                             "timestamp"})
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
WEBHOOK_METHODS = ("POST", "PUT", "PATCH")
MISSED_POLICIES = ("skip", "run_once", "run_all")
WEBHOOK_VARIABLES = frozenset({"headers", "body", "query"})
_PATH = re.compile(r"^/?[A-Za-z0-9][A-Za-z0-9_\-./]{0,199}$")
_HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{0,99}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def check_webhook(issues: Issues, path: str, trig: dict[str, Any], found: Collected) -> None:
    wpath = issues.string(join_path(path, "path"), trig.get("path"))
    if wpath is not None and (not _PATH.match(wpath) or ".." in wpath):
        issues.add(join_path(path, "path"), "bad webhook path", wpath,
                   fix="letters, digits and _-./ (no '..'), max 200")
    issues.choice(join_path(path, "method"), trig.get("method"), WEBHOOK_METHODS, "POST")
    spath = join_path(path, "secret")
    secret = issues.string(spath, trig.get("secret"))
    if secret is not None and not SECRET_REF.fullmatch(secret.strip()):
        issues.add(spath, "the signing secret must be a secret reference", "<hidden>",
                   fix="declare it under secrets and write ${secret:NAME} here "
                       "(a key written in the definition is readable by anyone who reads it)")
    tol = issues.duration(join_path(path, "tolerance"), trig.get("tolerance"))
    if tol is not None and tol < 1000:
        issues.add(join_path(path, "tolerance"), "must be at least 1s", trig.get("tolerance"))
    hpath = join_path(path, "headers")
    for name, value in issues.mapping(hpath, trig.get("headers")).items():
        if not isinstance(name, str) or not _HEADER.match(name):
            issues.add(join_path(hpath, str(name)), "bad header name", name)
        issues.string(join_path(hpath, str(name)), value, required=True)
    ipath = join_path(path, "allow_ips")
    for i, net in enumerate(issues.str_list(ipath, trig.get("allow_ips"))):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            issues.add(join_path(ipath, i), "not an IP address or CIDR", net,
                       fix='e.g. "192.0.2.10" or "10.0.0.0/8"')
    issues.integer(join_path(path, "max_body"), trig.get("max_body"), minimum=1)
    rpath = join_path(path, "rate_limit")
    limits = issues.mapping(rpath, trig.get("rate_limit"))
    issues.unknown_keys(rpath, limits, {"per_ip", "per_key"})
    for key in ("per_ip", "per_key"):
        issues.number(join_path(rpath, key), limits.get(key), lo=0.001, hi=1_000_000)
    for key in ("input", "dedup"):
        epath = join_path(path, key)
        if trig.get(key) is not None and issues.string(epath, trig[key], required=True):
            found.expressions.append((epath, trig[key], None, WEBHOOK_VARIABLES))


def check_event(issues: Issues, path: str, trig: dict[str, Any], found: Collected) -> None:
    """``event`` names the event (and, without ``topic``, the topic read); ``format`` json or
    avro; ``filter``/``input``/``dedup`` CEL over the record; ``start`` latest, earliest, an
    offset or an ISO time (where a new router group starts reading)."""
    name = issues.string(join_path(path, "event"), trig.get("event"), required=True)
    topic = issues.string(join_path(path, "topic"), trig.get("topic")) or name
    if topic is not None and not _TOPIC.match(topic):
        issues.add(join_path(path, "topic" if trig.get("topic") else "event"),
                   "not a Kafka topic name", topic,
                   fix="letters, digits, '.', '_' and '-' (or give topic: separately)")
    issues.choice(join_path(path, "format"), trig.get("format"), EVENT_FORMATS, "json")
    for key in ("filter", "input", "dedup"):
        epath = join_path(path, key)
        if trig.get(key) is not None and issues.string(epath, trig[key], required=True):
            found.expressions.append((epath, trig[key], None, EVENT_VARIABLES))
    start = trig.get("start")
    if start is not None and start not in ("latest", "earliest") and not (
            isinstance(start, int) and not isinstance(start, bool) and start >= 0) \
            and not isinstance(parse_instant(start), datetime):
        issues.add(join_path(path, "start"), "bad start position", start,
                   fix='latest, earliest, an offset (integer) or an ISO time')


def check_poll(issues: Issues, path: str, trig: dict[str, Any], found: Collected) -> None:
    """``url``, ``interval`` (required), ``method`` GET/POST, ``headers``; ``items`` (CEL over
    ``response`` → the list of items), ``cursor`` (CEL over ``item`` → a growing value; without
    one, a change of the response's content hash fires), ``filter`` and ``input`` (CEL over
    ``item``), ``rate_limit`` (polls per second at most, per source host)."""
    url = issues.string(join_path(path, "url"), trig.get("url"), required=True)
    if url is not None and not url.startswith(("http://", "https://")):
        issues.add(join_path(path, "url"), "not an http(s) URL", url)
    interval = issues.duration(join_path(path, "interval"), trig.get("interval"),
                               required=True)
    if interval is not None and interval < 100:
        issues.add(join_path(path, "interval"), "must be at least 100ms", trig.get("interval"))
    issues.choice(join_path(path, "method"), trig.get("method"), ("GET", "POST"), "GET")
    hpath = join_path(path, "headers")
    for name, value in issues.mapping(hpath, trig.get("headers")).items():
        issues.string(join_path(hpath, str(name)), value, required=True)
    issues.number(join_path(path, "rate_limit"), trig.get("rate_limit"), lo=0.001, hi=1000)
    for key in ("items", "cursor", "filter", "input"):
        epath = join_path(path, key)
        if trig.get(key) is not None and issues.string(epath, trig[key], required=True):
            found.expressions.append((epath, trig[key], None, POLL_VARIABLES))


def check_schedule(issues: Issues, path: str, trig: dict[str, Any]) -> None:
    wpath = join_path(path, "window")
    window = issues.mapping(wpath, trig.get("window"))
    issues.unknown_keys(wpath, window, {"from", "to"})
    if window:
        for key in ("from", "to"):
            value = window.get(key)
            if not isinstance(value, str) or not _HHMM.match(value):
                issues.add(join_path(wpath, key), "bad time of day", value,
                           fix='local time "HH:MM", e.g. "08:00"')
    bounds = {}
    for key in ("start", "end"):
        if trig.get(key) is not None:
            parsed = parse_instant(trig[key])
            if parsed is None:
                issues.add(join_path(path, key), "bad date or time", trig[key],
                           fix='ISO 8601, e.g. "2026-01-31" or "2026-01-31T08:00:00+01:00"')
            else:
                bounds[key] = parsed
    if len(bounds) == 2 and _comparable(bounds["end"]) <= _comparable(bounds["start"]):
        issues.add(join_path(path, "end"), "must be after start", trig.get("end"))
    issues.choice(join_path(path, "missed"), trig.get("missed"), MISSED_POLICIES, "skip")
    issues.integer(join_path(path, "max_catchup"), trig.get("max_catchup"), minimum=1)


def parse_instant(value: object) -> datetime | date | None:
    """An ISO date or datetime (YAML may hand either already parsed); None if invalid."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value) if "T" in value or " " in value.strip() \
            else date.fromisoformat(value)
    except ValueError:
        return None


def _comparable(value: datetime | date) -> tuple[int, int, int, float]:
    if isinstance(value, datetime):
        return (value.year, value.month, value.day, value.hour * 3600 + value.minute * 60
                + value.second)
    return (value.year, value.month, value.day, 0.0)
