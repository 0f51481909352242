"""Response headers built once, alone: the click's 302 Location and the framing headers."""

from __future__ import annotations

from mailer.web.framing import framing_headers


def test_click_redirect_spells_the_location_as_starlette_does() -> None:
    from starlette.responses import RedirectResponse

    from mailer.web.app import _ClickRedirect

    for url in (
        "https://www.whitehouse.gov/contact/",
        "https://example.org/a b?q=ñ&x=1#frag",
        "/a/abc-DEF_123",
    ):
        ours = dict(_ClickRedirect(url).raw_headers)
        theirs = dict(RedirectResponse(url, status_code=302).raw_headers)
        assert ours[b"location"] == theirs[b"location"]


def test_framing_headers_keep_a_policy_and_its_own_frame_ancestors() -> None:
    assert framing_headers("") == ("frame-ancestors 'none'", "DENY")
    assert framing_headers("default-src 'none';") == (
        "default-src 'none'; frame-ancestors 'none'",
        "DENY",
    )
    preview = "default-src 'none'; frame-ancestors 'self'"
    assert framing_headers(preview) == (preview, "SAMEORIGIN")
