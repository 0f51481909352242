"""Action pages: supporters sign the petition an alert asks for.

- ``GET /a/<token>``: the action page of one recipient of one alert, reached
  through the alert's tracked call-to-action link (the click is recorded, then
  redirected here: see :class:`mailer.web.recorder.ClickBatcher`). In the
  supporter's language, with their first name and the suggested message
  filled in; their address is never shown.
- ``POST /a/<token>``: sign (or update the signature), then a thank-you page
  that hands the signer on to the petition's target with their message ready
  to copy, since the target's own form cannot be filled in for them.
- ``GET /p/<slug>`` and ``POST /p/<slug>``: the same petition for anyone the
  alert was forwarded to: name, email, ZIP, optional message and an unticked
  box to receive future alerts.

Every POST is checked in this order: CSRF token (``403``), per-client rate
limit (``429``, see :mod:`mailer.clients`), honeypot (a filled-in hidden
field gets a thank-you page and nothing is stored), then the fields
(``400`` with the form again). One signature per address per petition: a
second submission from the alert's link updates the first; a public one
changes nothing (see ``petitions.signing``).
No IP address is kept unless ``tracking.store_ip`` asks, and then truncated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from mailer.clients import ClientLimit
from mailer.compose.tokens import TokenSigner
from mailer.config import PetitionsSettings, TrackingSettings
from mailer.errors import TokenError
from mailer.petitions.optin import ConfirmationMailer, request_opt_in
from mailer.petitions.signing import Signer, clean_form, sign
from mailer.petitions.store import signature_count
from mailer.petitions.texts import texts_for
from mailer.store import Blast, Database, Delivery, Supporter
from mailer.store.models import Petition, Signature, utcnow
from mailer.web.common import (
    LANGUAGES,
    BodyError,
    Form,
    PublicPages,
    kept_ip,
    page_language,
    read_form,
    request_language,
)
from mailer.web.confirm import ConfirmPages
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.csrf import Csrf

HONEYPOT = "website"  # hidden from people by CSS; bots fill in every field

# What the pages say about a field's problem, by language, field and code.
PROBLEMS: dict[str, dict[str, str]] = {
    "en": {
        "first_name.missing": "Please enter your first name.",
        "first_name.too_long": "Your first name is too long.",
        "last_name.too_long": "Your last name is too long.",
        "first_name.url": "A name cannot contain a web address.",
        "last_name.url": "A name cannot contain a web address.",
        "email.missing": "Please enter your email address.",
        "email.invalid": "This does not look like an email address.",
        "zip.invalid": "Please enter a 5-digit ZIP code.",
        "message.missing": "Please write a message.",
        "message.too_long": "Your message is too long (at most {max} characters).",
    },
    "es": {
        "first_name.missing": "Escribe tu nombre.",
        "first_name.too_long": "Tu nombre es demasiado largo.",
        "last_name.too_long": "Tu apellido es demasiado largo.",
        "first_name.url": "Un nombre no puede contener una dirección web.",
        "last_name.url": "Un nombre no puede contener una dirección web.",
        "email.missing": "Escribe tu correo electrónico.",
        "email.invalid": "Esto no parece un correo electrónico.",
        "zip.invalid": "Escribe un código postal de 5 dígitos.",
        "message.missing": "Escribe un mensaje.",
        "message.too_long": "Tu mensaje es demasiado largo (como máximo {max} caracteres).",
    },
}


# The fields a form with problems is shown again with, as the supporter typed them.
_ALERT_FIELDS = ("first_name", "last_name", "message")
_PUBLIC_FIELDS = ("first_name", "last_name", "email", "zip", "message")


@dataclass(frozen=True)
class _Alert:
    """An action token's recipient, as the page needs them."""

    petition: Petition
    supporter: Supporter
    blast_id: int
    delivery_id: int


class ActionPages:
    """The petition pages; :meth:`routes` are mounted in the public app."""

    def __init__(
        self,
        db: Database,
        secret_key: str,
        pages: PublicPages,
        *,
        tracking: TrackingSettings | None = None,
        petitions: PetitionsSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        confirmations: ConfirmationMailer | None = None,
    ) -> None:
        self.db = db
        self.confirmations = confirmations
        self.signer = TokenSigner(secret_key)
        self.csrf = Csrf(secret_key)
        self.tracking = tracking or TrackingSettings()
        self.settings = petitions or PetitionsSettings()
        self.clock = clock
        self.pages = pages
        self.limit = ClientLimit("petitions.rate_limit", self.settings.rate_limit)
        self.expiry = timedelta(hours=self.settings.opt_in_expiry_hours)
        self.confirm_pages = ConfirmPages(
            db, self.signer, self.csrf, pages.render, expiry=self.expiry, clock=clock
        )

    def action_path(self, delivery_id: int, petition_id: int) -> str:
        """Where a click on a petition blast's call to action goes (built from ids only)."""
        return f"/a/{self.signer.action(delivery_id, petition_id)}"

    def routes(self) -> list[Route]:
        return [
            Route("/a/{token}", self.alert_page, methods=["GET"]),
            Route("/a/{token}", self.alert_submit, methods=["POST"]),
            Route("/p/{slug}", self.public_page, methods=["GET"]),
            Route("/p/{slug}", self.public_submit, methods=["POST"]),
            *self.confirm_pages.routes(),
        ]

    # -- rendering ----------------------------------------------------------

    def _message_page(self, status: int, lang: str, kind: str) -> HTMLResponse:
        return self.pages.render("petition_message.html", status, lang=lang, kind=kind)

    def _counter(self, petition: Petition) -> dict[str, Any]:
        assert petition.id is not None
        with self.db.session() as session:
            count = signature_count(session, petition.id)
        goal = max(petition.goal, 1)
        return {"count": count, "goal": petition.goal, "percent": min(100, count * 100 // goal)}

    def _form(
        self,
        request: Request,
        petition: Petition,
        lang: str,
        *,
        public: bool,
        values: dict[str, Any],
        problems: dict[str, str] | None = None,
        status: int = 200,
        already_signed: bool = False,
    ) -> Response:
        cookie, token = self.csrf.issue(request)
        words = PROBLEMS[lang]
        shown = {
            field: words[f"{field}.{code}"].format(max=self.settings.max_message_chars)
            for field, code in (problems or {}).items()
        }
        response = self.pages.render(
            "action.html",
            status,
            lang=lang,
            texts=texts_for(petition.texts, lang, petition.default_language),
            public=public,
            values=values,
            problems=shown,
            csrf_field=CSRF_FIELD,
            csrf_token=token,
            honeypot=HONEYPOT,
            max_message=self.settings.max_message_chars,
            form_action=request.url.path,
            already_signed=already_signed,
            **self._counter(petition),
        )
        self.csrf.set_cookie(response, request, cookie)
        return response

    def _thanks(
        self, petition: Petition, lang: str, first_name: str, message: str, *, new: bool
    ) -> Response:
        return self.pages.render(
            "thanks.html",
            lang=lang,
            texts=texts_for(petition.texts, lang, petition.default_language),
            first_name=first_name,
            message=message,
            target_url=petition.target_url,
            new=new,
            **self._counter(petition),
        )

    # -- the alert's action page ------------------------------------------

    def _alert(self, raw: str) -> _Alert | None:
        try:
            token = self.signer.read_action(raw)
        except TokenError:
            return None
        with self.db.session() as session:
            delivery = session.get(Delivery, token.delivery_id)
            if delivery is None:
                return None
            blast = session.get(Blast, delivery.blast_id)
            if blast is None or blast.petition_id != token.petition_id:
                return None
            petition = session.get(Petition, token.petition_id)
            supporter = session.get(Supporter, delivery.supporter_id)
            if petition is None or supporter is None:
                return None
            assert delivery.id is not None
            return _Alert(petition, supporter, delivery.blast_id, delivery.id)

    def _signature(self, petition: Petition, email: str) -> Signature | None:
        with self.db.session() as session:
            return session.exec(
                select(Signature).where(
                    Signature.petition_id == petition.id, Signature.email == email
                )
            ).first()

    def alert_page(self, request: Request) -> Response:
        found = self._alert(request.path_params["token"])
        if found is None:
            return self.pages.not_found()
        lang = page_language(found.supporter.language)
        texts = texts_for(found.petition.texts, lang, found.petition.default_language)
        signed = self._signature(found.petition, found.supporter.email)
        values = {
            "first_name": signed.first_name if signed else found.supporter.first_name,
            "last_name": signed.last_name if signed else found.supporter.last_name,
            "message": signed.message if signed else texts["message"],
        }
        return self._form(
            request,
            found.petition,
            lang,
            public=False,
            values=values,
            already_signed=signed is not None,
        )

    async def alert_submit(self, request: Request) -> Response:
        return await self._submit(request, self._alert_submit)

    def _alert_submit(self, request: Request, form: Form) -> Response:
        found = self._alert(request.path_params["token"])
        if found is None:
            return self.pages.not_found()
        lang = page_language(found.supporter.language)
        signer = self._screened(request, form, found.petition, lang, public=False)
        if isinstance(signer, Response):
            return signer
        supporter = found.supporter
        with self.db.session() as session:
            new = sign(
                session,
                found.petition,
                email=supporter.email,
                first_name=signer.first_name,
                last_name=signer.last_name,
                zip_code=supporter.zip,
                region=supporter.region,
                language=lang,
                message=signer.message,
                source="alert",
                now=self.clock(),
                supporter_id=supporter.id,
                blast_id=found.blast_id,
                delivery_id=found.delivery_id,
                ip=self._ip(request),
            )
        return self._thanks(found.petition, lang, signer.first_name, signer.message, new=new)

    # -- the public page ----------------------------------------------------

    def _petition(self, slug: str) -> Petition | None:
        with self.db.session() as session:
            return session.exec(select(Petition).where(Petition.slug == slug)).first()

    def public_page(self, request: Request) -> Response:
        petition = self._petition(request.path_params["slug"])
        if petition is None:
            return self.pages.not_found()
        lang = request_language(request)
        texts = texts_for(petition.texts, lang, petition.default_language)
        values = {"message": texts["message"], "opt_in": False}
        return self._form(request, petition, lang, public=True, values=values)

    async def public_submit(self, request: Request) -> Response:
        return await self._submit(request, self._public_submit)

    def _public_submit(self, request: Request, form: Form) -> Response:
        petition = self._petition(request.path_params["slug"])
        if petition is None:
            return self.pages.not_found()
        lang = form.get("lang", "") if form.get("lang") in LANGUAGES else request_language(request)
        signer = self._screened(request, form, petition, lang, public=True)
        if isinstance(signer, Response):
            return signer
        new = self._store_public(request, petition, signer, lang)
        return self._thanks(petition, lang, signer.first_name, signer.message, new=new)

    def _store_public(
        self, request: Request, petition: Petition, signer: Signer, lang: str
    ) -> bool:
        now = self.clock()
        confirmation = None
        with self.db.session() as session:
            supporter_id = None
            if signer.opt_in:
                supporter_id, confirmation = request_opt_in(
                    session, petition, signer, language=lang, now=now, expiry=self.expiry
                )
            new = sign(
                session,
                petition,
                email=signer.email,
                first_name=signer.first_name,
                last_name=signer.last_name,
                zip_code=signer.zip,
                region="",
                language=lang,
                message=signer.message,
                source="public",
                now=now,
                supporter_id=supporter_id,
                opted_in=signer.opt_in,
                ip=self._ip(request),
            )
        if confirmation is not None and self.confirmations is not None:
            self.confirmations.send(confirmation, now=now)
        return new

    # -- checks shared by both forms --------------------------------------

    async def _submit(
        self, request: Request, handle: Callable[[Request, Form], Response]
    ) -> Response:
        """Read the posted form on the event loop, then handle it in the thread pool."""
        try:
            form = await read_form(request)
        except BodyError as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        return await run_in_threadpool(handle, request, form)

    def _screened(
        self,
        request: Request,
        form: Form,
        petition: Petition,
        lang: str,
        *,
        public: bool,
    ) -> Signer | Response:
        """The signer of a posted form, or the page to answer with instead.

        Refused (rate limit, CSRF), a honeypot's quiet thank-you, or the form
        again with its problems (a message is required on the alert's page).
        """
        refused = self._refused(request, form, lang)
        if refused is not None:
            return refused
        if form.get(HONEYPOT):
            return self._thanks(petition, lang, "", "", new=False)
        signer, problems = clean_form(
            form,
            public=public,
            max_message=self.settings.max_message_chars,
            require_message=not public,
        )
        if signer is not None:
            return signer
        fields = _PUBLIC_FIELDS if public else _ALERT_FIELDS
        values: dict[str, Any] = {k: form.get(k, "") for k in fields}
        if public:
            values["opt_in"] = form.get("opt_in") == "1"
        return self._form(
            request, petition, lang, public=public, values=values, problems=problems, status=400
        )

    def _refused(self, request: Request, form: Form, lang: str) -> Response | None:
        # CSRF first: posts that could not be a real submission do not use up the
        # budget of the client address (shared by everyone behind one NAT).
        if not self.csrf.valid(request, form.get(CSRF_FIELD, "")):
            return self._message_page(403, lang, "csrf")
        wait = self.limit.wait(request.client.host if request.client is not None else "")
        if wait is not None:
            response = self._message_page(429, lang, "rate_limited")
            response.headers["Retry-After"] = str(wait)
            return response
        return None

    def _ip(self, request: Request) -> str:
        return kept_ip(request, self.tracking.store_ip)
