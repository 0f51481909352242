"""The admin's pure parts, alone: SVG charts escape labels, the sign-in's next page,
CSRF token comparison."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st


def test_charts_escape_every_label() -> None:
    from mailer.web.admin.charts import bar_chart, timeline_chart

    bars = bar_chart([("<script>x</script>", 3), ("a&b", 1)], title="<b>t</b>")
    assert "<script>" not in bars and "&lt;script&gt;" in bars and "a&amp;b" in bars
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in bars
    rows = [
        {"start": "2026-11-28T11:00:00+00:00", "seconds": 60, "sent": 5, "clicks": 2},
        {"start": "2026-11-28T11:01:00+00:00", "seconds": 60, "sent": 0, "clicks": 7},
    ]
    line = timeline_chart(rows, title="<i>")
    assert line.startswith("<svg") and "&lt;i&gt;" in line and "<i>" not in line
    assert "5 sent and 9 clicks" in line
    assert "Nothing sent yet" in timeline_chart([], title="x")


@given(st.text(max_size=40))
def test_after_sign_in_the_browser_only_goes_to_admin_pages(target: str) -> None:
    from mailer.web.admin.home import _safe_next

    went = _safe_next(target)
    assert went.startswith("/admin") and not went.startswith("//") and "\\" not in went
    assert went in (target, "/admin/")


@given(st.text(max_size=20), st.sampled_from(["", "token-abc", "jeton-é"]))
def test_csrf_tokens_match_only_when_equal_and_present(given_: str, expected: str) -> None:
    from mailer.web.admin.guard import same_token

    assert same_token(given_, expected) == (given_ == expected and given_ != "")
