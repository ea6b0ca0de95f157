"""The rules' figures as configuration (CONTRACT.md, "Configuration").

The program's calendar was extended three times in real life (seeds 002-004), so every date, wait,
cap, budget and the service catalog come from a TOML file whose keys default to RULES.md. The
resolved configuration is fingerprinted: that `rules_version` goes on every decision, so an auditor
knows which figures decided it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import CAMPAIGNS
from streams.core.timeutil import day_number

FLAT_CAMPAIGNS = frozenset({"phase2_insurance", "phase2_account"})


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and what to write instead."""


class RenewalWait(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"from_": "from"}):
    from_: dt.date
    hours: float


class CampaignConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    card_applied_by: dt.date
    link_from: dt.date
    link_until: dt.date
    cap: int
    pay_from: dt.date | None = None
    pay_until: dt.date | None = None
    rate_percent: int | None = None


class ServiceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    name: str = ""
    campaigns: tuple[str, ...] = CAMPAIGNS
    selectable_from: dt.date = dt.date(2020, 7, 1)
    preregistration_required: bool = False
    same_day_excluded: bool = False


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reservation_budget: int | None = None
    renewal_wait: tuple[RenewalWait, ...] = ()
    campaigns: dict[str, CampaignConfig] = {}
    services: tuple[ServiceConfig, ...] = ()


DEFAULT_RENEWAL_WAIT = (
    # Seeds 000 and 001: 24 hours after a renewal; seed 002: one hour from 2022-01-01.
    RenewalWait(from_=dt.date(2020, 1, 1), hours=24),
    RenewalWait(from_=dt.date(2022, 1, 1), hours=1),
)

DEFAULT_CAMPAIGNS: dict[str, CampaignConfig] = {
    "phase1": CampaignConfig(
        card_applied_by=dt.date(2021, 4, 30),
        link_from=dt.date(2020, 7, 1),
        link_until=dt.date(2021, 12, 31),
        pay_from=dt.date(2020, 9, 1),
        pay_until=dt.date(2023, 9, 30),
        rate_percent=25,
        cap=5000,
    ),
    "phase2_purchase": CampaignConfig(
        card_applied_by=dt.date(2023, 2, 28),
        link_from=dt.date(2022, 1, 1),
        link_until=dt.date(2023, 9, 30),
        pay_from=dt.date(2022, 1, 1),
        pay_until=dt.date(2023, 9, 30),
        rate_percent=25,
        cap=5000,
    ),
    "phase2_insurance": CampaignConfig(
        card_applied_by=dt.date(2023, 2, 28),
        link_from=dt.date(2022, 6, 30),
        link_until=dt.date(2023, 9, 30),
        cap=7500,
    ),
    "phase2_account": CampaignConfig(
        card_applied_by=dt.date(2023, 2, 28),
        link_from=dt.date(2022, 6, 30),
        link_until=dt.date(2023, 9, 30),
        cap=7500,
    ),
}

DEFAULT_SERVICES = (
    ServiceConfig(
        id="demo-pay",
        name="Demo Pay",
        campaigns=CAMPAIGNS,
        selectable_from=dt.date(2020, 7, 1),
        preregistration_required=False,
        same_day_excluded=False,
    ),
)


def _merge_campaigns(given: dict[str, Any]) -> dict[str, CampaignConfig]:
    merged: dict[str, CampaignConfig] = {}
    unknown = set(given) - set(CAMPAIGNS)
    if unknown:
        raise ConfigError(
            f"unknown campaign(s) {sorted(unknown)} under [campaigns]; "
            f"use one of {list(CAMPAIGNS)}"
        )
    for name in CAMPAIGNS:
        base = msgspec.structs.asdict(DEFAULT_CAMPAIGNS[name])
        override = given.get(name) or {}
        if not isinstance(override, dict):
            raise ConfigError(f"[campaigns.{name}] must be a table")
        try:
            merged[name] = msgspec.convert({**base, **override}, CampaignConfig)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"[campaigns.{name}]: {exc}") from None
    return merged


def load_config(path: str | Path | None = None) -> RulesConfig:
    """Reads a TOML file (or nothing: the defaults) into a checked, compiled configuration."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist; pass an existing TOML file") from None
        except OSError as exc:  # a directory, no permission, ...
            raise ConfigError(f"config file {p} cannot be read ({exc.strerror}); pass a readable "
                              "TOML file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    return build_config(raw)


def build_config(raw: dict[str, Any]) -> RulesConfig:
    raw = dict(raw)
    campaigns = _merge_campaigns(raw.pop("campaigns", {}) or {})
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    cfg = msgspec.structs.replace(
        cfg,
        campaigns=campaigns,
        renewal_wait=cfg.renewal_wait if "renewal_wait" in raw else DEFAULT_RENEWAL_WAIT,
        services=cfg.services if "services" in raw else DEFAULT_SERVICES,
    )
    return RulesConfig(cfg)


class CompiledCampaign:
    """A campaign's dates as JST day numbers, so each check is an integer comparison."""

    __slots__ = (
        "name", "flat", "cap", "rate_percent", "card_applied_by",
        "link_from", "link_until", "pay_from", "pay_until",
    )

    def __init__(self, name: str, c: CampaignConfig):
        self.name = name
        self.flat = name in FLAT_CAMPAIGNS
        self.cap = c.cap
        self.rate_percent = c.rate_percent or 0
        self.card_applied_by = day_number(c.card_applied_by)
        self.link_from = day_number(c.link_from)
        self.link_until = day_number(c.link_until)
        self.pay_from = day_number(c.pay_from) if c.pay_from else None
        self.pay_until = day_number(c.pay_until) if c.pay_until else None


class CompiledService:
    __slots__ = ("id", "name", "campaigns", "selectable_from", "preregistration_required",
                 "same_day_excluded")

    def __init__(self, s: ServiceConfig):
        self.id = s.id
        self.name = s.name or s.id
        self.campaigns = frozenset(s.campaigns)
        self.selectable_from = day_number(s.selectable_from)
        self.preregistration_required = s.preregistration_required
        self.same_day_excluded = s.same_day_excluded


class RulesConfig:
    """The configuration in force, checked and compiled once; read-only afterwards."""

    def __init__(self, cfg: Config):
        self._validate(cfg)
        self.source = cfg
        self.reservation_budget = cfg.reservation_budget
        # (first JST day it applies from, wait in seconds), newest first for the lookup.
        self.renewal_waits = tuple(
            sorted(((day_number(w.from_), w.hours * 3600.0) for w in cfg.renewal_wait), reverse=True)
        )
        self.campaigns = {name: CompiledCampaign(name, c) for name, c in cfg.campaigns.items()}
        self.services = {s.id: CompiledService(s) for s in cfg.services}
        self.version = fingerprint(cfg)

    @staticmethod
    def _validate(cfg: Config) -> None:
        if cfg.reservation_budget is not None and cfg.reservation_budget < 0:
            raise ConfigError("reservation_budget must be 0 or more (leave it out for no budget)")
        for w in cfg.renewal_wait:
            if w.hours < 0:
                raise ConfigError(f"[[renewal_wait]] from {w.from_}: hours must be 0 or more")
        for name, c in cfg.campaigns.items():
            if c.link_from > c.link_until:
                raise ConfigError(f"[campaigns.{name}]: link_from is after link_until")
            if c.cap < 0:
                raise ConfigError(f"[campaigns.{name}]: cap must be 0 or more")
            if name not in FLAT_CAMPAIGNS:
                if c.pay_from is None or c.pay_until is None or c.rate_percent is None:
                    raise ConfigError(
                        f"[campaigns.{name}] is a purchase campaign: it needs pay_from, pay_until "
                        "and rate_percent"
                    )
                if c.pay_from > c.pay_until:
                    raise ConfigError(f"[campaigns.{name}]: pay_from is after pay_until")
                if not 0 <= c.rate_percent <= 100:
                    raise ConfigError(f"[campaigns.{name}]: rate_percent must be 0 to 100")
        seen: set[str] = set()
        for s in cfg.services:
            if s.id in seen:
                raise ConfigError(f"[[services]]: id {s.id!r} appears twice; each id once")
            seen.add(s.id)
            bad = set(s.campaigns) - set(CAMPAIGNS)
            if bad:
                raise ConfigError(
                    f"[[services]] {s.id!r}: unknown campaign(s) {sorted(bad)}; "
                    f"use {list(CAMPAIGNS)}"
                )

    def renewal_wait_seconds(self, day: int) -> float:
        """The wait after a renewal that applies to a request made on JST day `day`."""
        for from_day, seconds in self.renewal_waits:
            if day >= from_day:
                return seconds
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self.source)  # type: ignore[no-any-return]


def fingerprint(cfg: Config) -> str:
    """A short, stable digest of the resolved configuration: the rules version."""
    canonical = msgspec.json.encode(msgspec.to_builtins(cfg), order="sorted")
    return "r-" + hashlib.sha256(canonical).hexdigest()[:12]
