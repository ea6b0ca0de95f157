"""`mynapoint explain PERSON`: one person's history in plain words, in Japanese and English.

Pure. The timeline comes from the same rules as everything else: from a recorded journal (an
export file or the topics) folded with `streams.core.ledger.fold`, as replay does, or from a plain
events file run through the offline engine, as `simulate` does. For each event: when (JST), what,
the decision and its reason in plain words, the points it granted and any alert. Then the status
after the person's last event: points per campaign and what remains to each cap, the service linked
for each campaign, the certificate's expiry and whether a renewal wait is running.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec

from schemas.codec import DECODE_ERRORS, EVENT_DECODER
from schemas.events import CAMPAIGNS, TYPE_NAMES, Event
from schemas.journal import EventEntry
from schemas.outcomes import Alert, AnyOutcome, Decision, Grant, Outcome
from schemas.topics import partition_for_key
from streams.audit.export import History, journal_partitions_of, person_of
from streams.core import reasons as R
from streams.core.config import RulesConfig
from streams.core.engine import Engine
from streams.core.ledger import LedgerRecord, fold
from streams.core.state import PersonState
from streams.core.timeutil import day_to_date, jst_day, to_jst

LANGS = ("ja", "en", "both")

#: Every reason code of RULES.md -> (Japanese, English): what it means for the person.
REASONS: dict[str, tuple[str, str]] = {
    R.DUPLICATE_EVENT: (
        "同じイベントID（event_id）は既に処理済みのため、重複として扱いました（何も変わりません）",
        "this event_id was already decided: the repeat is ignored and changes nothing",
    ),
    R.NO_CARD: (
        "マイナンバーカードが交付されていないため受け付けられません",
        "no My Number Card has been issued to the person",
    ),
    R.CARD_SUSPENDED: (
        "カードが一時停止中（紛失・盗難の届出）のため、停止の解除まで受け付けられません",
        "the card is suspended (reported lost or stolen) until it is resumed",
    ),
    R.CERTIFICATE_EXPIRED: (
        "利用者証明用電子証明書の有効期限が切れており、更新されていないため受け付けられません",
        "the user e-certificate had expired and was not renewed",
    ),
    R.RENEWAL_WAIT: (
        "電子証明書の更新後の待機時間中のため受け付けられません",
        "requests are refused during the wait after a certificate renewal",
    ),
    R.MYKEY_ALREADY_SET: (
        "既にマイキーIDが設定されています（予約は済んでいます）",
        "the person already has a MyKey ID (already reserved)",
    ),
    R.BUDGET_EXHAUSTED: (
        "予約の予算（全国の予約枠）の上限に達したため予約できません",
        "the national reservation budget was used up",
    ),
    R.NO_MYKEY: (
        "マイナポイントの予約（マイキーIDの設定）が済んでいないため申込できません",
        "the person has not reserved Mynapoint (no MyKey ID yet)",
    ),
    R.OUTSIDE_WINDOW: (
        "キャンペーンの対象期間外のため受け付けられません",
        "it falls outside the campaign's window",
    ),
    R.CARD_APPLIED_TOO_LATE: (
        "カードの申請日がこのキャンペーンの申請期限より後のため対象外です",
        "the card was applied for after this campaign's card deadline",
    ),
    R.PROXY_NOT_ALLOWED: (
        "代理での申込は15歳未満の方に限られるため受け付けられません",
        "someone else may apply only for a person under 15",
    ),
    R.UNKNOWN_SERVICE: (
        "この決済サービスはマイナポイントの対象サービスとして登録されていません",
        "this payment service is not in the program's catalog",
    ),
    R.SERVICE_NOT_SELECTABLE: (
        "この決済サービスはこのキャンペーンでは（またはこの日付ではまだ）選択できません",
        "the service does not take part in this campaign, or not yet on that date",
    ),
    R.PREREGISTRATION_MISSING: (
        "この決済サービスは事前登録が必要ですが、このアカウントの事前登録がありません",
        "the service requires prior registration and this account had none",
    ),
    R.PHASE1_APPLIED: (
        "第1弾に申込済みの方は第2弾の買い物ポイントには申込できません（第1弾の上限まで付与が続きます）",
        "phase-2 purchase points are only for people who did not apply in "
        "phase 1 (phase-1 points keep accruing up to their cap)",
    ),
    R.NOT_REGISTERED: (
        "健康保険証利用登録（または公金受取口座登録）が先に済んでいないため申込できません",
        "the health-insurance (or public-funds account) registration was not "
        "made first",
    ),
    R.ALREADY_LINKED: (
        "同じ決済サービス・アカウントで既に申込済みです（何も変わりません）",
        "the same service and account are already linked for this campaign (nothing changes)",
    ),
    R.SERVICE_CHANGE_NOT_ALLOWED: (
        "一度申し込んだキャッシュレス決済サービスは変更できません",
        "the payment service chosen for a campaign cannot be changed",
    ),
    R.ACCOUNT_LINKED_ELSEWHERE: (
        "この決済アカウントは既に別の方に紐付けられているため申込できません（誤紐付けの確認が必要です）",
        "this payment account is already linked to another person "
        "(a possible mis-linking, to be checked)",
    ),
    R.NOT_LINKED_SERVICE: (
        "申込済みの決済サービス・アカウントでの決済ではないため、ポイントの対象外です",
        "the payment is not on a service and account linked for a purchase campaign",
    ),
    R.DUPLICATE_TRANSACTION: (
        "同じ取引IDの決済が既に記録されているため、重複として扱いました",
        "this transaction was already recorded",
    ),
    R.BEFORE_LINK: (
        "申込より前の決済（チャージ・お買い物）はポイントの対象外です",
        "the payment was made before the application",
    ),
    R.SAME_DAY_EXCLUDED: (
        "この決済サービスでは申込当日の決済はポイントの対象外です",
        "this service excludes payments made on the day of the application",
    ),
    R.CAP_REACHED: (
        "このキャンペーンのポイントが既に上限に達しているため付与されません",
        "the person's points for this campaign were already at the cap",
    ),
    R.UNKNOWN_TRANSACTION: (
        "返金の対象となる決済（同じサービス・取引ID・アカウント）が見つかりません",
        "no recorded payment matches this refund (service, transaction, account)",
    ),
    R.REFUND_EXCEEDS_PAYMENT: (
        "返金額が元の決済の残額を超えています",
        "the refund is more than what remains of the payment",
    ),
    R.ALREADY_REGISTERED: (
        "既に登録済みです",
        "the person already registered this",
    ),
}

#: Sharper wording where one code means different things for different event types.
REASONS_BY_TYPE: dict[tuple[str, str], tuple[str, str]] = {
    ("service.linked", R.OUTSIDE_WINDOW): (
        "キャンペーンの申込期間外のため受け付けられません",
        "the application falls outside the campaign's application window",
    ),
    ("payment.recorded", R.OUTSIDE_WINDOW): (
        "キャンペーンのポイント対象期間外の決済のため対象外です",
        "the payment falls outside the campaign's payment window",
    ),
}

ACCEPTED = ("受付", "accepted")
REFUSED = ("不受理", "refused")
NOT_COUNTED = ("対象外", "not counted")
IGNORED = ("重複", "ignored")

CAMPAIGN_LABELS: dict[str, tuple[str, str]] = {
    "phase1": ("第1弾（買い物ポイント）", "phase 1 (purchases)"),
    "phase2_purchase": ("第2弾① 買い物ポイント", "phase 2 (1) purchases"),
    "phase2_insurance": ("第2弾② 健康保険証利用登録", "phase 2 (2) health-insurance registration"),
    "phase2_account": ("第2弾③ 公金受取口座登録", "phase 2 (3) public-funds account registration"),
}

ALERTS: dict[str, tuple[str, str]] = {
    R.ALERT_ACCOUNT_SHARED: (
        "警告: この決済アカウントは既に{linked}に紐付けられています（誤紐付けの疑い。窓口で確認が必要です）",
        "alert: this payment account is already linked to {linked} (a possible mis-linking "
        "that someone must check)",
    ),
}


def reason_text(code: str, type_name: str | None = None) -> tuple[str, str]:
    """(Japanese, English) for a reason code; an unknown code is shown as itself."""
    if type_name is not None and (type_name, code) in REASONS_BY_TYPE:
        return REASONS_BY_TYPE[(type_name, code)]
    return REASONS.get(code, (code, code))


def jst_text(ts: float) -> str:
    return to_jst(ts).strftime("%Y-%m-%d %H:%M JST")


def _service_name(cfg: RulesConfig, service_id: str) -> str:
    svc = cfg.services.get(service_id)
    return f"{svc.name} ({service_id})" if svc is not None and svc.name != service_id else service_id


def describe_event(ev: Event, cfg: RulesConfig) -> tuple[str, str]:
    """What the event says, in (Japanese, English)."""
    t = TYPE_NAMES[type(ev)]
    f: Any = ev
    if t == "card.issued":
        exp = jst_text(f.certificate_expires_at.timestamp())
        return (f"マイナンバーカード交付（申請日 {f.card_applied_on}、電子証明書 {f.certificate_serial}、"
                f"有効期限 {exp}）",
                f"My Number Card issued (applied for on {f.card_applied_on}, certificate "
                f"{f.certificate_serial}, valid until {exp})")
    if t == "certificate.renewed":
        exp = jst_text(f.certificate_expires_at.timestamp())
        if f.reason == "new_issue":
            return (f"電子証明書の新規発行（{f.certificate_serial}、有効期限 {exp}）",
                    f"certificate newly issued onto the card ({f.certificate_serial}, valid until "
                    f"{exp})")
        return (f"電子証明書の更新（{f.certificate_serial}、有効期限 {exp}）",
                f"certificate renewed ({f.certificate_serial}, valid until {exp})")
    if t == "card.suspended":
        return ("カードの一時停止（紛失・盗難の届出）", "card suspended (reported lost or stolen)")
    if t == "card.resumed":
        return ("カードの一時停止の解除", "card resumed")
    if t == "mykey.reserved":
        return ("マイナポイントの予約（マイキーIDの設定）", "Mynapoint reservation (MyKey ID set)")
    if t == "service.preregistered":
        svc = _service_name(cfg, f.service_id)
        return (f"決済サービスへの事前登録（{svc}、アカウント {f.service_account}）",
                f"preregistered with {svc} (account {f.service_account})")
    if t == "insurance.registered":
        return ("健康保険証としての利用登録", "registered the card for use as a health-insurance card")
    if t == "account.registered":
        return ("公金受取口座の登録", "registered a public-funds receiving account")
    if t == "service.linked":
        ja_c, en_c = CAMPAIGN_LABELS.get(f.campaign, (f.campaign, f.campaign))
        svc = _service_name(cfg, f.service_id)
        proxy_ja = "、代理申込" if f.applicant == "proxy" else ""
        proxy_en = ", by a proxy" if f.applicant == "proxy" else ""
        return (f"{ja_c}に申込（{svc}、アカウント {f.service_account}{proxy_ja}）",
                f"applied for {en_c} with {svc} (account {f.service_account}{proxy_en})")
    if t == "payment.recorded":
        svc = _service_name(cfg, f.service_id)
        method_ja = "チャージ" if f.method == "charge" else "お買い物"
        return (f"決済 {f.amount_yen:,}円（{method_ja}、{svc}、取引 {f.transaction_id}）",
                f"payment of {f.amount_yen:,} yen ({f.method}, {svc}, transaction "
                f"{f.transaction_id})")
    if t == "payment.refunded":
        svc = _service_name(cfg, f.service_id)
        return (f"返金 {f.amount_yen:,}円（{svc}、取引 {f.transaction_id}）",
                f"refund of {f.amount_yen:,} yen ({svc}, transaction {f.transaction_id})")
    return (t, t)


@dataclass
class Item:
    """One event of the person, with what was decided about it."""

    event: Event
    source: str | None = None
    decision: Decision | None = None
    grants: list[Grant] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


@dataclass
class Explanation:
    person_id: str
    cfg: RulesConfig
    items: list[Item] = field(default_factory=list)
    state: PersonState | None = None
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def found(self) -> bool:
        return bool(self.items or self.dead_letters)

    def last_instant(self) -> float | None:
        if not self.items:
            return None
        return self.items[-1].event.occurred_at.timestamp()

    def status(self) -> dict[str, Any]:
        return person_status(self.state, self.cfg, self.last_instant())


def person_status(state: PersonState | None, cfg: RulesConfig, at: float | None) -> dict[str, Any]:
    """Points, links, certificate and wait-window status of a person at instant `at`."""
    st = state if state is not None else PersonState()
    campaigns = []
    for name in CAMPAIGNS:
        c = cfg.campaigns[name]
        points = st.points.get(name, 0)
        link = next((lk for lk in st.links if lk.campaign == name), None)
        campaigns.append({
            "campaign": name,
            "flat": c.flat,
            "points": points,
            "cap": c.cap,
            "remaining": max(c.cap - points, 0),
            "spend_yen": st.spend.get(name, 0) if not c.flat else None,
            "service_id": link.service_id if link else None,
            "service_name": _service_name(cfg, link.service_id) if link else None,
            "service_account": link.service_account if link else None,
            "linked_at": jst_text(link.linked_at) if link else None,
        })
    out: dict[str, Any] = {
        "as_of": jst_text(at) if at is not None else None,
        "campaigns": campaigns,
        "total_points": sum(st.points.values()),
        "mykey_reserved": st.mykey_id is not None,
        "insurance_registered": st.insurance_registered,
        "account_registered": st.account_registered,
        "card": None,
    }
    card = st.card
    if card is not None:
        wait: dict[str, Any] = {"active": False, "renewed_at": None, "until": None}
        if card.renewed_at is not None:
            wait["renewed_at"] = jst_text(card.renewed_at)
            if at is not None:
                until = card.renewed_at + cfg.renewal_wait_seconds(jst_day(at))
                wait["until"] = jst_text(until)
                wait["active"] = card.renewed_at <= at < until
        out["card"] = {
            "applied_on": day_to_date(card.applied_day).isoformat(),
            "suspended": card.suspended,
            "certificate_serial": card.certificate_serial,
            "certificate_expires_at": jst_text(card.certificate_expires),
            "certificate_expired": at is not None and at >= card.certificate_expires,
            "renewal_wait": wait,
        }
    return out


# --- building the timeline --------------------------------------------------------------------


class _Attach:
    """Hands each outcome to its event: decisions come in the person's event order (the fold
    decides a person's entries strictly in journal order), grants and alerts follow theirs."""

    def __init__(self, expl: Explanation):
        self.expl = expl
        self.undecided: deque[Item] = deque()
        self.current: Item | None = None

    def event(self, item: Item) -> None:
        self.expl.items.append(item)
        self.undecided.append(item)

    def outcomes(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            if type(o) is Decision:
                if not self.undecided:
                    self.expl.notes.append(f"a decision on {o.event_id} matches no event")
                    continue
                item = self.undecided.popleft()
                if item.event.event_id != o.event_id:
                    self.expl.notes.append(
                        f"decision for {o.event_id} met event {item.event.event_id}"
                    )
                item.decision = o
                self.current = item
            elif self.current is not None and type(o) is Grant:
                self.current.grants.append(o)
            elif self.current is not None and type(o) is Alert:
                self.current.alerts.append(o)


def explain_history(person_id: str, history: History, cfg: RulesConfig) -> Explanation:
    """The person's timeline from a recorded journal (export file or topics), folded afresh."""
    expl = Explanation(person_id, cfg, source=history.source)
    attach = _Attach(expl)
    record: LedgerRecord | None = None
    mine: list[Outcome] = []
    for key, entry in history.entries():
        if person_of(key, entry) != person_id:
            continue
        folded = fold(record, entry, cfg)
        record = folded.record
        if folded.repeat:
            continue
        if type(entry) is EventEntry:
            ev = EVENT_DECODER.decode(entry.value)
            attach.event(Item(ev, source=entry.source_id))
        attach.outcomes(folded.outcomes)
        mine.extend(folded.outcomes)
    expl.state = record.person if record is not None else None
    if history.deleted:
        n = journal_partitions_of(history.header)
        mine_at = partition_for_key(person_id.encode(), n) if n else None
        for p, begin in history.deleted.items():
            if mine_at is None or p == mine_at:
                expl.notes.append(
                    f"the journal's partition {p} no longer holds its first {begin:,} offsets "
                    "(deleted by retention or DeleteRecords)"
                    + (", where this person's history is" if mine_at is not None else "")
                    + ": this timeline may lack their earliest events")
    if record is not None and record.waiting is not None:
        expl.notes.append(
            f"the request {record.waiting.event_id} still waits for the answer to its "
            f"{record.waiting.claim_kind} claim"
        )
    _check_published(expl, mine, history)
    return expl


def _check_published(expl: Explanation, mine: list[Outcome], history: History) -> None:
    # Every concrete outcome (Decision, Grant, Alert, DeadLetter) has an outcome_id.
    derived = {o.outcome_id: msgspec.to_builtins(o) for o in cast("list[AnyOutcome]", mine)}
    published: dict[str, list[dict[str, Any]]] = {}
    for rec in history.outcomes:
        o = rec.outcome
        if o is None or o.get("person_id") != expl.person_id:
            continue
        if o.get("kind") == "dead_letter":
            expl.dead_letters.append(o)
            continue
        published.setdefault(str(o.get("outcome_id")), []).append(o)
    if not history.outcomes:
        return
    versions = {str(o.get("rules_version")) for os in published.values() for o in os
                if o.get("rules_version") is not None}
    if versions and versions != {expl.cfg.version}:
        expl.notes.append(
            f"the published outcomes were decided by rules {', '.join(sorted(versions))}, this "
            f"explanation uses {expl.cfg.version}: pass the pipeline's configuration (--config)"
        )
    differ = sum(1 for oid, os in published.items() if any(o != derived.get(oid) for o in os))
    unpublished = sum(1 for oid in derived if oid not in published)
    if differ or unpublished:
        expl.notes.append(
            f"what was published for this person differs from the replay ({differ} published "
            f"outcome(s) differ or are unknown, {unpublished} never published): run "
            "`mynapoint replay` for details"
        )


def explain_events(person_id: str, lines: Iterable[bytes], cfg: RulesConfig,
                   source: str = "") -> Explanation:
    """The person's timeline from a plain events file, decided offline as `simulate` does."""
    from streams.audit.simulate import dead_letter_for_line

    expl = Explanation(person_id, cfg, source=source)
    engine = Engine(cfg)
    decode = EVENT_DECODER.decode
    errors = DECODE_ERRORS
    for lineno, raw in enumerate(lines, start=1):
        try:
            ev = decode(raw)
        except errors as exc:
            dl = dead_letter_for_line(raw, lineno, exc)
            if dl.person_id == person_id:
                expl.dead_letters.append(msgspec.to_builtins(dl))
            continue
        outcomes = engine.process(ev)
        if ev.person_id == person_id:
            item = Item(ev, source=f"line {lineno}")
            expl.items.append(item)
            attach = _Attach(expl)
            attach.undecided.append(item)
            attach.outcomes(outcomes)
    expl.state = engine.people.get(person_id)
    return expl


# --- rendering --------------------------------------------------------------------------------


def _pick(pair: tuple[str, str], lang: str) -> list[str]:
    if lang == "ja":
        return [pair[0]]
    if lang == "en":
        return [pair[1]]
    return [pair[0], pair[1]]


LATE = ("（到着が遅れたイベントとして判定）", " (decided late: the event arrived after later ones)")


def decision_text(d: Decision) -> tuple[str, str]:
    late = LATE if d.late else ("", "")
    if d.accepted:
        return ACCEPTED[0] + late[0], ACCEPTED[1] + late[1]
    code = d.reason or "?"
    ja, en = reason_text(code, d.type)
    if code == R.DUPLICATE_EVENT:
        head = IGNORED
    elif d.type == "payment.recorded":
        head = NOT_COUNTED
    else:
        head = REFUSED
    return (f"{head[0]}（{code}）: {ja}{late[0]}", f"{head[1]} ({code}): {en}{late[1]}")


def grant_text(g: Grant, cfg: RulesConfig) -> tuple[str, str]:
    ja_c, en_c = CAMPAIGN_LABELS.get(g.campaign, (g.campaign, g.campaign))
    if g.points >= 0:
        return (f"+{g.points:,} ポイント付与（{ja_c}）", f"+{g.points:,} points granted ({en_c})")
    return (f"{g.points:,} ポイント（返金による減額、{ja_c}）",
            f"{-g.points:,} points clawed back after a refund ({en_c})")


#: Who holds the account, when the alert names them and when it does not (the status API leaves
#: the other person's id out).
LINKED_PERSON = (" {} の方", "{}")
ANOTHER_PERSON = ("別の方", "another person")


def alert_text(a: Alert) -> tuple[str, str]:
    ja, en = ALERTS.get(a.code, (f"警告: {a.code}", f"alert: {a.code}"))
    pid = a.linked_person_id
    who = tuple(t.format(pid) for t in LINKED_PERSON) if pid else ANOTHER_PERSON
    return ja.format(linked=who[0]), en.format(linked=who[1])


def render(expl: Explanation, lang: str = "both") -> str:
    cfg = expl.cfg
    lines: list[str] = []
    title = {
        "ja": f"== {expl.person_id} の履歴（ルール {cfg.version}、時刻は日本時間） ==",
        "en": f"== {expl.person_id}: timeline (rules {cfg.version}; times in JST) ==",
    }
    lines += [title[x] for x in (("ja", "en") if lang == "both" else (lang,))]
    if expl.source:
        lines.append(f"source: {expl.source}")
    if not expl.found:
        lines += _pick((f"{expl.person_id} のイベントは見つかりません。",
                        f"no events for {expl.person_id}."), lang)
        lines += [f"note: {n}" for n in expl.notes]
        return "\n".join(lines)
    lines.append("")
    for n, item in enumerate(expl.items, start=1):
        ev = item.event
        t = TYPE_NAMES[type(ev)]
        when = jst_text(ev.occurred_at.timestamp())
        lines.append(f"{n:>3}. {when}  {t}  [{ev.event_id}]")
        for text in _pick(describe_event(ev, cfg), lang):
            lines.append(f"       {text}")
        if item.decision is None:
            lines += [f"       -> {t}" for t in _pick(
                ("判定待ち（他の方の状況の確認の回答待ち）", "not decided yet (waiting for a claim's answer)"),
                lang)]
        else:
            for text in _pick(decision_text(item.decision), lang):
                lines.append(f"       -> {text}")
        for g in item.grants:
            for text in _pick(grant_text(g, cfg), lang):
                lines.append(f"          {text}")
        for a in item.alerts:
            for text in _pick(alert_text(a), lang):
                lines.append(f"          {text}")
    if expl.dead_letters:
        lines.append("")
        lines += _pick(("形式エラーで処理されなかった入力:", "input refused as malformed (dead letters):"),
                       lang)
        for d in expl.dead_letters:
            where = (f"line {d['line']}" if d.get("line") is not None
                     else f"{d.get('topic')}/{d.get('partition')}/{d.get('offset')}")
            lines.append(f"  {where}: {d.get('reason')}: {d.get('error')}")
    lines.append("")
    lines += _render_status(expl.status(), lang)
    if expl.notes:
        lines.append("")
        lines += [f"note: {n}" for n in expl.notes]
    return "\n".join(lines)


def _render_status(st: Mapping[str, Any], lang: str) -> list[str]:
    out: list[str] = []
    as_of = st["as_of"] or "-"
    out += _pick((f"状況（最後のイベント {as_of} の時点）:", f"status (as of the last event, {as_of}):"),
                 lang)
    out += _pick(("  キャンペーン別ポイント:", "  points per campaign:"), lang)
    for c in st["campaigns"]:
        ja_c, en_c = CAMPAIGN_LABELS.get(c["campaign"], (c["campaign"], c["campaign"]))
        if c["flat"]:
            ja = f"{c['points']:,} / {c['cap']:,} ポイント（一括付与{'済み' if c['points'] else 'なし'}）"
            en = (f"{c['points']:,} / {c['cap']:,} points (flat grant "
                  f"{'received' if c['points'] else 'not received'})")
        else:
            ja = (f"{c['points']:,} / {c['cap']:,} ポイント（上限まで残り {c['remaining']:,}、"
                  f"対象決済額 {c['spend_yen']:,}円）")
            en = (f"{c['points']:,} / {c['cap']:,} points ({c['remaining']:,} left to the cap; "
                  f"eligible spend {c['spend_yen']:,} yen)")
        if c["service_id"]:
            ja_l = f"申込先: {c['service_name']}、アカウント {c['service_account']}（{c['linked_at']}）"
            en_l = (f"linked service: {c['service_name']}, account {c['service_account']} "
                    f"({c['linked_at']})")
        else:
            ja_l, en_l = "申込先: なし（未申込）", "linked service: none (not applied)"
        if lang in ("ja", "both"):
            out.append(f"    {ja_c}: {ja}")
            out.append(f"      {ja_l}")
        if lang in ("en", "both"):
            out.append(f"    {en_c}: {en}")
            out.append(f"      {en_l}")
    out += _pick((f"  合計: {st['total_points']:,} ポイント", f"  total: {st['total_points']:,} points"),
                 lang)
    card = st["card"]
    if card is None:
        out += _pick(("  カード: 未交付", "  card: none issued"), lang)
    else:
        state_ja = "一時停止中" if card["suspended"] else "利用可能"
        state_en = "suspended" if card["suspended"] else "in use"
        out += _pick((f"  カード: {state_ja}（申請日 {card['applied_on']}）",
                      f"  card: {state_en} (applied for on {card['applied_on']})"), lang)
        exp_ja = "期限切れ" if card["certificate_expired"] else "有効"
        exp_en = "expired" if card["certificate_expired"] else "valid"
        out += _pick((
            f"  電子証明書: {card['certificate_serial']}、有効期限 {card['certificate_expires_at']}"
            f"（{exp_ja}）",
            f"  certificate: {card['certificate_serial']}, expires {card['certificate_expires_at']} "
            f"({exp_en})"), lang)
        w = card["renewal_wait"]
        if w["renewed_at"] is None:
            pair = ("  更新後の待機時間: なし（更新・新規発行の記録なし）",
                    "  renewal wait: none (no renewal or new issue recorded)")
        elif w["active"]:
            pair = (f"  更新後の待機時間: 待機中（{w['renewed_at']} の更新から {w['until']} まで）",
                    f"  renewal wait: ACTIVE (renewed {w['renewed_at']}, requests refused until "
                    f"{w['until']})")
        else:
            pair = (f"  更新後の待機時間: 終了（{w['renewed_at']} の更新、{w['until']} まで）",
                    f"  renewal wait: not active (renewed {w['renewed_at']}, wait ended "
                    f"{w['until']})")
        out += _pick(pair, lang)
    yes_no = {True: ("済み", "yes"), False: ("未", "no")}
    out += _pick((
        f"  マイキーID: {yes_no[st['mykey_reserved']][0]}  健康保険証利用登録: "
        f"{yes_no[st['insurance_registered']][0]}  公金受取口座登録: {yes_no[st['account_registered']][0]}",
        f"  MyKey ID: {yes_no[st['mykey_reserved']][1]}  insurance registration: "
        f"{yes_no[st['insurance_registered']][1]}  public-funds account: "
        f"{yes_no[st['account_registered']][1]}"), lang)
    return out


def as_dict(expl: Explanation) -> dict[str, Any]:
    """The explanation as JSON-ready builtins (both languages)."""
    items = []
    for item in expl.items:
        ev = item.event
        ja, en = describe_event(ev, expl.cfg)
        d: dict[str, Any] = {
            "event_id": ev.event_id,
            "type": TYPE_NAMES[type(ev)],
            "occurred_at_jst": jst_text(ev.occurred_at.timestamp()),
            "source": item.source,
            "description": {"ja": ja, "en": en},
            "decision": None,
            "grants": [],
            "alerts": [],
        }
        if item.decision is not None:
            dj, de = decision_text(item.decision)
            d["decision"] = {"accepted": item.decision.accepted, "reason": item.decision.reason,
                             "ja": dj, "en": de, "outcome_id": item.decision.outcome_id}
        for g in item.grants:
            gj, ge = grant_text(g, expl.cfg)
            d["grants"].append({"campaign": g.campaign, "service_id": g.service_id,
                                "points": g.points, "ja": gj, "en": ge})
        for a in item.alerts:
            aj, ae = alert_text(a)
            d["alerts"].append({"code": a.code, "linked_person_id": a.linked_person_id,
                                "ja": aj, "en": ae})
        items.append(d)
    return {
        "person_id": expl.person_id,
        "rules_version": expl.cfg.version,
        "source": expl.source,
        "found": expl.found,
        "timeline": items,
        "dead_letters": expl.dead_letters,
        "status": expl.status(),
        "notes": expl.notes,
    }

