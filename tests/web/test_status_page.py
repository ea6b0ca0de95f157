"""The support desks' page as a document (streams/web/status_page.py); in a browser on live workers:
tests/integration/test_status_page.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

from schemas.events import PERSON_ID_PATTERN
from streams.audit.explain import CAMPAIGN_LABELS
from streams.web import status_page


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.labels: list[str | None] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._in: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input":
            self.inputs.append(a)
        elif tag == "label":
            self.labels.append(a.get("for"))
        elif tag in ("script", "style"):
            self._in = (tag, a)

    def handle_data(self, data):
        if self._in is not None:
            tag, a = self._in
            (self.scripts.append((a, data)) if tag == "script" else self.styles.append(data))
            self._in = None


def _parse() -> tuple[str, dict[str, str], _Page]:
    body, headers = status_page.build_page()
    html = body.decode("utf-8")
    page = _Page()
    page.feed(html)
    return html, headers, page


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_policy_allows_exactly_the_page_s_own_script_and_style():
    _, headers, page = _parse()
    csp = headers["Content-Security-Policy"]
    code = [text for attrs, text in page.scripts if attrs.get("type") != "application/json"]
    assert len(code) == 1 and len(page.styles) == 1
    assert f"script-src {_sha(code[0])};" in csp
    assert f"style-src {_sha(page.styles[0])};" in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'none'" in csp
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_script_gets_the_contract_pattern_and_explain_s_campaign_labels():
    _, _, page = _parse()
    data = [json.loads(text) for attrs, text in page.scripts
            if attrs.get("type") == "application/json"]
    assert data == [{
        "person_id_pattern": PERSON_ID_PATTERN,
        "campaign_labels": {k: list(v) for k, v in CAMPAIGN_LABELS.items()},
        "recent": status_page.RECENT,
    }]


def test_no_value_can_close_the_data_block(monkeypatch):
    monkeypatch.setattr(status_page, "CAMPAIGN_LABELS", {"x": ("</script><b>", "</SCRIPT>")})
    html, _, page = _parse()
    assert html.count("</script>") == 2  # the data block's and the code's own
    data = json.loads(next(t for a, t in page.scripts if a.get("type") == "application/json"))
    assert data["campaign_labels"] == {"x": ["</script><b>", "</SCRIPT>"]}


def test_every_input_has_a_label_and_the_page_says_its_languages():
    html, _, page = _parse()
    ids = [i.get("id") for i in page.inputs]
    assert ids == ["token", "person-id"]
    assert sorted(page.labels) == sorted(ids)
    assert next(i for i in page.inputs if i["id"] == "token")["type"] == "password"
    assert '<html lang="ja">' in html and 'lang="en"' in html
    assert 'name="viewport" content="width=device-width' in html


def test_the_page_holds_no_number_that_could_be_a_my_number():
    html, _, _ = _parse()
    assert re.search(r"\d{12}", html) is None
