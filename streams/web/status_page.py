"""The support desks' status page (申込状況の確認), served by every worker at GET /status.

A fixed HTML document with its script inline: staff type the status API's bearer token and a
person_id; the page calls the status API (`/persons/{id}` and `/persons/{id}/history`, same
origin) with `Authorization: Bearer <token>` and shows the answer in Japanese with English
alongside. So routing to the worker that owns the person's partition, the token check, the
read-only guard and the redactions are all the API's (streams/web/http.py); the page adds none of its
own and reads no table.

- The page itself holds no data: it is the same bytes for everyone, so GET /status is the one
  path the token guard lets through (streams/web/http.py `make_guard`). Every data call carries the
  token; a wrong one shows a message and nothing else.
- The token is kept in the tab's sessionStorage (gone when the tab closes), never in a URL.
- No My Number, ever: an input that is 12 digits once full-width digits, spaces and hyphens are
  normalised away is refused in the page with a message, cleared, and never sent (the API refuses
  a bare 12-digit id too). Other inputs are checked against CONTRACT.md's person_id pattern
  (schemas.events.PERSON_ID_PATTERN, handed to the script) before any request.
- Plain words: decisions, grants and alerts are shown with the history's `texts` (what
  `mynapoint explain` says); campaign names come from explain's CAMPAIGN_LABELS. Data is put
  into the page with `textContent` only, never as HTML.
- Headers: a Content-Security-Policy that allows only this page's own inline script and style
  (by hash) and requests to its own origin; no caching, no referrer, no framing.

Tested in a headless browser against two live workers: tests/integration/test_status_page.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from schemas.events import PERSON_ID_PATTERN
from streams.audit.explain import CAMPAIGN_LABELS

PAGE_PATH = "/status"
#: How many of the newest decisions the page lists (each with the grants and alerts of its event).
RECENT = 20

STYLE = """
:root { color-scheme: light; --fg: #1a1a1a; --muted: #555; --line: #c8c8c8; --ok: #0b6b2f;
        --ng: #a40000; --bg-soft: #f3f5f8; --focus: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.6 system-ui, "Hiragino Sans", "Noto Sans CJK JP", "Yu Gothic",
       "IPAPGothic", sans-serif; color: var(--fg); background: #fff; }
main { max-width: 56rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1.05rem; margin: 0 0 .25rem; }
.en { color: var(--muted); font-size: .92em; }
div.en, p.en { margin: 0; }
p { margin: .25rem 0 .75rem; }
form { display: grid; gap: .75rem; padding: 1rem; background: var(--bg-soft);
       border: 1px solid var(--line); border-radius: .5rem; }
label { display: block; font-weight: 600; }
label .en { font-weight: 400; }
.hint { font-size: .9em; color: var(--muted); margin: .1rem 0 0; }
input { width: 100%; font: inherit; padding: .55rem .6rem; border: 1px solid #777;
        border-radius: .35rem; background: #fff; }
button { font: inherit; font-weight: 600; padding: .6rem 1.2rem; border: 0; border-radius: .35rem;
         background: #1d4ed8; color: #fff; cursor: pointer; justify-self: start; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
#message { min-height: 1.5rem; margin: .75rem 0; }
#message.error { color: var(--ng); font-weight: 600; }
dl.facts { display: grid; grid-template-columns: minmax(9rem, 14rem) 1fr; gap: .35rem 1rem;
           margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.campaigns { display: grid; grid-template-columns: repeat(auto-fit, minmax(12rem, 1fr));
             gap: .75rem; padding: 0; margin: 0; list-style: none; }
.campaigns li { border: 1px solid var(--line); border-radius: .5rem; padding: .75rem; }
.campaigns dl.facts { grid-template-columns: 1fr; gap: 0; }
.campaigns dl.facts dt { font-size: .9em; color: var(--muted); }
.campaigns dl.facts dd { margin-bottom: .35rem; }
.points { font-size: 1.15rem; font-weight: 700; }
ol.outcomes { padding: 0; margin: 0; list-style: none; }
ol.outcomes li { border-left: 4px solid var(--line); padding: .35rem .75rem; margin: 0 0 .6rem;
                 overflow-wrap: anywhere; }
ol.outcomes li.accepted { border-left-color: var(--ok); }
ol.outcomes li.refused { border-left-color: var(--ng); }
.grant-text { font-weight: 600; margin-top: .15rem; }
.alert-text { font-weight: 600; color: #92400e; background: #fff7ed; padding: .15rem .35rem;
              margin-top: .15rem; }
.meta { font-size: .88em; color: var(--muted); }
.badge { font-weight: 700; }
.accepted .badge { color: var(--ok); }
.refused .badge { color: var(--ng); }
footer { margin-top: 2rem; font-size: .85em; color: var(--muted); }
@media (max-width: 36rem) {
  main { padding: .75rem; }
  dl.facts { grid-template-columns: 1fr; gap: 0 0; }
  dl.facts dd { margin-bottom: .5rem; }
  button { width: 100%; }
}
"""

SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const idPattern = new RegExp(data.person_id_pattern);
  const TOKEN_KEY = "mynapoint-status-token";
  const form = document.getElementById("search");
  const tokenInput = document.getElementById("token");
  const idInput = document.getElementById("person-id");
  const message = document.getElementById("message");
  const result = document.getElementById("result");

  try { tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { /* none */ }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }
  // Japanese first, English alongside.
  function both(ja, en, tag) {
    return el(tag || "span", {}, el("span", {}, ja), " ", el("span", {lang: "en", class: "en"}, en));
  }
  function say(ja, en, isError) {
    message.className = isError ? "error" : "";
    message.setAttribute("role", isError ? "alert" : "status");
    message.replaceChildren(both(ja, en));
  }
  function jst(iso) {  // the API writes JST instants: "2026-05-08T18:47:58+09:00"
    return iso ? iso.slice(0, 10) + " " + iso.slice(11, 16) + " JST" : "";
  }
  function yen(n) { return n.toLocaleString("ja-JP"); }
  function fact(dl, ja, en, value) {
    dl.append(el("dt", {}, both(ja, en)), el("dd", {}, value));
  }
  function campaignLabel(name) { return data.campaign_labels[name] || [name, name]; }

  // A My Number typed in any shape: full-width digits, spaces or hyphens between the groups.
  function looksLikeMyNumber(raw) {
    return /^\d{12}$/.test(raw.normalize("NFKC").replace(/[\s\-\u2010-\u2015\u2212\u30fc]/g, ""));
  }

  async function getJson(path, token) {
    const headers = {"Accept": "application/json"};
    if (token) headers["Authorization"] = "Bearer " + token;
    const resp = await fetch(path, {headers: headers, cache: "no-store", credentials: "omit"});
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    return {status: resp.status, body: body};
  }

  function explainError(status) {
    if (status === 401) return ["アクセストークンが正しくありません。確認して入力し直してください。",
                                "The access token is wrong: check it and enter it again."];
    if (status === 404) return ["この person_id の方は見つかりません（まだ判定されたイベントがありません）。",
                                "No such person (no event of theirs has been decided yet)."];
    if (status === 400) return ["person_id の形式が正しくありません。", "The person_id is not valid."];
    if (status === 503) return ["処理中のため今は回答できません。少し待ってからもう一度お試しください。",
                                "The workers are busy rebalancing: try again in a moment."];
    return ["回答を取得できませんでした（" + status + "）。", "Could not get an answer (" + status + ")."];
  }

  function renderStatus(doc, history) {
    const parts = [];
    const title = el("h2", {id: "result-title", tabindex: "-1"},
                     both(doc.person_id + " さんの申込状況", "Status of " + doc.person_id));
    parts.push(title);

    const facts = el("dl", {class: "facts", id: "facts"});
    const card = doc.card;
    if (card === null) {
      fact(facts, "マイナンバーカード", "My Number Card", both("未交付", "none issued"));
    } else {
      fact(facts, "マイナンバーカード", "My Number Card",
           card.suspended ? both("一時停止中（紛失・盗難の届出）", "suspended (reported lost or stolen)")
                          : both("交付済み・利用可能", "issued, in use"));
      fact(facts, "カードの申請日", "Card applied for on", card.applied_on);
      fact(facts, "電子証明書の有効期限", "Certificate valid until", jst(card.certificate_expires_at));
      fact(facts, "電子証明書の更新日時", "Certificate renewed at",
           card.certificate_renewed_at ? jst(card.certificate_renewed_at) : both("なし", "none"));
    }
    const w = doc.renewal_wait_now;
    fact(facts, "更新後の待機時間", "Renewal wait",
         el("span", {id: "wait"},
            w.active ? both("待機中: " + jst(w.ends_at) + " まで予約・申込はできません",
                            "active: reservations and applications are refused until " + jst(w.ends_at))
                     : both("なし（今は待機時間ではありません）", "none (no wait now)"),
            el("span", {class: "hint", lang: "ja"}, "（" + jst(w.evaluated_at) + " 時点）"),
            el("span", {class: "hint en", lang: "en"}, " (as of " + jst(w.evaluated_at) + ")")));
    fact(facts, "マイキーID", "MyKey ID",
         el("span", {id: "mykey"}, doc.mykey_set ? both("設定済み（予約済み）", "set (reserved)")
                                                 : both("未設定（未予約）", "not set (not reserved)")));
    const reg = doc.registrations;
    fact(facts, "健康保険証利用登録", "Health-insurance registration",
         reg.insurance ? both("済み", "done") : both("未", "not yet"));
    fact(facts, "公金受取口座登録", "Public-funds account registration",
         reg.account ? both("済み", "done") : both("未", "not yet"));
    if (doc.pending_requests > 0) {
      fact(facts, "確認待ちの申込", "Requests being checked",
           both(doc.pending_requests + " 件", String(doc.pending_requests)));
    }
    parts.push(facts);

    parts.push(el("h2", {}, both("キャンペーンごとの申込とポイント", "Applications and points by campaign")));
    const list = el("ul", {class: "campaigns", id: "campaigns"});
    for (const [name, c] of Object.entries(doc.campaigns)) {
      const [ja, en] = campaignLabel(name);
      const item = el("li", {"data-campaign": name}, el("h3", {}, both(ja, en)));
      const dl = el("dl", {class: "facts"});
      fact(dl, "申込先", "Linked service",
           c.linked ? el("span", {}, c.linked.service_name + "（" + c.linked.service_account_hint + "）",
                         el("span", {class: "hint"}, " " + jst(c.linked.linked_at)))
                    : both("未申込", "not applied"));
      fact(dl, "ポイント / 上限", "Points / cap",
           el("span", {class: "points"}, yen(c.points) + " / " + yen(c.cap)));
      fact(dl, "上限までの残り", "Left to the cap", yen(c.remaining));
      if (c.eligible_spend_yen !== null) {
        fact(dl, "対象の決済額", "Eligible spend", both(yen(c.eligible_spend_yen) + " 円",
                                                      yen(c.eligible_spend_yen) + " yen"));
      }
      item.append(dl);
      list.append(item);
    }
    parts.push(list);

    // One entry per decision, with the grants and alerts of the same event under it.
    const groups = [], byEvent = new Map();
    for (const o of history.outcomes) {
      let g = o.kind === "decision" ? null : byEvent.get(o.event_id);
      if (!g) { g = {decision: o.kind === "decision" ? o : null, event_id: o.event_id, more: []};
                groups.push(g); byEvent.set(o.event_id, g); }
      if (o.kind !== "decision") g.more.push(o);
    }
    const recent = groups.slice(-data.recent).reverse();
    parts.push(el("h2", {}, both("最近の判定と理由（新しい順）", "Recent decisions and reasons (newest first)")));
    if (groups.length > recent.length) {
      parts.push(both("全 " + groups.length + " 件のうち新しい " + recent.length + " 件",
                      "the newest " + recent.length + " of " + groups.length, "p"));
    }
    const ol = el("ol", {class: "outcomes", id: "outcomes"});
    const textOf = (o) => history.texts[o.outcome_id] || {ja: "", en: ""};
    for (const g of recent) {
      const d = g.decision;
      const cls = d === null ? "grant" : d.accepted ? "accepted" : "refused";
      const li = el("li", {class: cls, "data-event-id": g.event_id});
      if (d !== null) {
        li.setAttribute("data-outcome-id", d.outcome_id);
        li.append(el("div", {class: "badge"}, textOf(d).ja),
                  el("div", {class: "en", lang: "en"}, textOf(d).en));
      }
      for (const o of g.more) {
        li.append(el("div", {class: o.kind === "alert" ? "alert-text" : "grant-text",
                             "data-outcome-id": o.outcome_id},
                     textOf(o).ja, " ", el("span", {class: "en", lang: "en"}, textOf(o).en)));
      }
      li.append(el("div", {class: "meta"}, (d !== null ? d.type + " · " : "") + g.event_id));
      ol.append(li);
    }
    if (recent.length === 0) ol.append(el("li", {}, both("判定はまだありません", "no decisions yet")));
    parts.push(ol);
    parts.push(el("p", {class: "meta"},
                  "回答 / answered by: " + doc.served_by.worker + " (partition " +
                  doc.served_by.partition + ") · rules " + doc.rules_version));
    result.replaceChildren(...parts);
    result.hidden = false;
    title.focus();
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const token = tokenInput.value.trim();
    const raw = idInput.value.trim();
    if (looksLikeMyNumber(raw)) {
      idInput.value = "";
      result.hidden = true; result.replaceChildren();
      say("マイナンバー（12桁の数字）は入力できません。お客様の person_id を入力してください。",
          "A My Number (12 digits) is never accepted: enter the person's person_id.", true);
      idInput.focus();
      return;
    }
    if (!idPattern.test(raw)) {
      result.hidden = true; result.replaceChildren();
      say("person_id は半角英数字・「_」・「-」の1〜64文字です。",
          "A person_id is 1 to 64 characters of A-Z, a-z, 0-9, _ and -.", true);
      idInput.focus();
      return;
    }
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* none */ }
    say("確認しています…", "Checking…", false);
    const id = encodeURIComponent(raw);
    let status, history;
    try {
      [status, history] = await Promise.all([
        getJson("/persons/" + id, token), getJson("/persons/" + id + "/history", token)]);
    } catch (e) {
      result.hidden = true; result.replaceChildren();
      say("ワーカーに接続できません。", "Cannot reach the worker.", true);
      return;
    }
    const failed = status.status !== 200 ? status.status : history.status !== 200 ? history.status : 0;
    if (failed) {
      result.hidden = true; result.replaceChildren();
      if (failed === 401) { try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* none */ } }
      const [ja, en] = explainError(failed);
      say(ja, en, true);
      (failed === 401 ? tokenInput : idInput).focus();
      return;
    }
    say("表示しました。", "Shown below.", false);
    renderStatus(status.body, history.body);
  });
})();
"""

BODY = """<main>
<h1>マイナポイント 申込状況の確認 <span lang="en" class="en">Mynapoint status check</span></h1>
<p>窓口の職員向け: お客様の person_id を入力すると、カード、待機時間、マイキーID、キャンペーンごとの申込とポイント、最近の判定と理由を表示します。
<span lang="en" class="en">For support desk staff: enter the person's person_id to see their card, renewal wait, MyKey ID, applications and points per campaign, and recent decisions with their reasons.</span></p>
<form id="search" autocomplete="off" novalidate>
  <div>
    <label for="token">アクセストークン <span lang="en" class="en">Access token</span></label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false"
           aria-describedby="token-hint">
    <p id="token-hint" class="hint">このタブを閉じると消去されます。 <span lang="en">Forgotten when this tab closes.</span></p>
  </div>
  <div>
    <label for="person-id">person_id <span lang="en" class="en">person id</span></label>
    <input id="person-id" name="person_id" type="text" inputmode="text" autocapitalize="off"
           autocomplete="off" spellcheck="false" maxlength="64" required
           aria-describedby="person-id-hint">
    <p id="person-id-hint" class="hint">マイナンバー（12桁の数字）は入力しないでください。
    <span lang="en">Never a My Number (12 digits).</span></p>
  </div>
  <button type="submit" id="check">確認する <span lang="en">Check</span></button>
</form>
<p id="message" role="status" aria-live="polite"></p>
<section id="result" aria-labelledby="result-title" hidden></section>
<footer>時刻はすべて日本時間（JST）。 <span lang="en">All times in JST.</span></footer>
</main>"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def page_data() -> dict[str, Any]:
    """What the script needs from the project, from its one source each."""
    return {
        "person_id_pattern": PERSON_ID_PATTERN,
        "campaign_labels": {name: list(pair) for name, pair in CAMPAIGN_LABELS.items()},
        "recent": RECENT,
    }


def build_page() -> tuple[bytes, dict[str, str]]:
    """(the HTML document, its response headers)."""
    # `<` escaped so that no value can close the data block.
    data = json.dumps(page_data(), ensure_ascii=False).replace("<", "\\u003c")
    html = (
        '<!DOCTYPE html>\n<html lang="ja">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        "<title>申込状況の確認 / Mynapoint status check</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n{BODY}\n"
        f'<script type="application/json" id="page-data">{data}</script>\n'
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
            "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }
    return html.encode("utf-8"), headers
