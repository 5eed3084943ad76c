"""The console sub-application: sign-in, sign-out, shell, assets, and each page's JSON API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

import structlog
from aiohttp import web

from rationer.errors import InvalidArgument, NotFound, RationerError, Unauthenticated, Unavailable
from rationer.platform.clock import Clock
from services.ledger.client import LedgerClient
from services.router.console import shell
from services.router.console.context import Ctx
from services.router.console.csrf import HEADER, UNSAFE, Csrf, check_origin
from services.router.console.params import this_month
from services.router.console.registry import ApiHandler, Page, discover, json_response
from services.router.console.security import guard_middleware, login_form, safe_next, see_other
from services.router.console.session import COOKIE, Session, SessionCodec
from services.router.console.static_files import load
from services.router.http.errors import error_body, json_error
from services.router.http.input import MAX_KEY_CHARS, well_formed_key
from services.router.settings import ConsoleSettings

log = structlog.get_logger(__name__)


class Console:
    """One per router process; ``mount`` adds /console to the door's application."""

    def __init__(self, settings: ConsoleSettings, ledger: LedgerClient, clock: Clock,
                 rid_of: Callable[[web.Request], str], body_timeout_s: float = 30.0,
                 pages: list[Page] | None = None) -> None:  # fmt: skip
        self.settings, self._ledger, self._clock, self._rid = settings, ledger, clock, rid_of
        self._codec = SessionCodec(settings.secret_value())
        self._csrf = Csrf(settings.secret_value())
        self._body_timeout_s = body_timeout_s
        self.pages: list[Page] = discover() if pages is None else pages  # tests mount pages of their own
        self._by_slug = {p.slug: p for p in self.pages}
        self._static = load()

    def mount(self, app: web.Application) -> None:
        sub = web.Application(middlewares=[guard_middleware(self._clock, self._rid)])
        sub.router.add_get("/", self.home)
        sub.router.add_get("/login", self.login_page)
        sub.router.add_post("/login", self.login)
        sub.router.add_post("/logout", self.logout)
        sub.router.add_get("/static/{name:.+}", self.static)
        sub.router.add_get("/api/session", self._api(self.session_info))
        for page in self.pages:
            for r in page.routes:
                sub.router.add_route(r.method, f"/api/{r.path}", self._api(r.handler))
        sub.router.add_get("/{slug}", self.page)
        app.router.add_get("/console", self.home)
        app.add_subapp("/console", sub)

    # ---- sessions -------------------------------------------------------------

    def session_of(self, request: web.Request) -> Session | None:
        return self._codec.open(request.cookies.get(COOKIE, ""), self._clock.now_us())

    def _secure(self, request: web.Request) -> bool:
        return self.settings.behind_tls or request.secure

    def _set_cookie(self, request: web.Request, resp: web.StreamResponse, s: Session) -> None:
        max_age = max(1, (s.expires_at_us - self._clock.now_us()) // 1_000_000)
        resp.set_cookie(COOKIE, self._codec.seal(s), max_age=max_age, path="/console", httponly=True,
                        samesite="Strict", secure=self._secure(request))  # fmt: skip

    def _clear_cookie(self, request: web.Request, resp: web.StreamResponse) -> None:
        resp.del_cookie(COOKIE, path="/console", httponly=True, samesite="Strict", secure=self._secure(request))

    # ---- pages ------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        return see_other(f"/console/{self.pages[0].slug}" if self.pages else "/console/login")

    async def page(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        page = self._by_slug.get(slug)
        if page is None:
            raise NotFound(f"no console page {slug!r}; the pages are {', '.join(self._by_slug) or '(none)'}")
        s = self.session_of(request)
        if s is None:
            return see_other(f"/console/login?next={quote(request.path_qs, safe='')}")
        html = shell.shell(page, self.pages, self._csrf.token(s), s.role)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        nxt = safe_next(request.query.get("next", ""))
        if self.session_of(request) is not None and not request.query.get("error"):
            return see_other(nxt)
        html = shell.login(nxt, request.query.get("error", ""))
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        found = self._static.get(request.match_info["name"])
        if found is None:
            raise NotFound(f"no console asset {request.match_info['name'][:80]!r}")
        return web.Response(body=found[0], headers={"Content-Type": found[1], "Cache-Control": "no-cache"})

    # ---- sign-in and sign-out ---------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        as_json = request.content_type == "application/json"
        form = await login_form(request, as_json, self._body_timeout_s)
        nxt = safe_next(str(form.get("next", "")))
        back = f"/console/login?next={quote(nxt, safe='')}&error="
        try:
            check_origin(request)
        except RationerError:
            if as_json:
                raise
            return see_other(back + "refused")
        key = str(form.get("api_key", "")).strip()
        if not well_formed_key(key):
            raise InvalidArgument(f"api_key must be an API key: 1 to {MAX_KEY_CHARS} printable ASCII characters "
                                  "without spaces", param="api_key")  # fmt: skip
        try:
            who = await self._ledger.as_bearer(key).whoami()
        except Unauthenticated:
            if as_json:
                raise
            return see_other(back + "bad_key")
        now = self._clock.now_us()
        end = now + int(self.settings.session_ttl_s * 1_000_000)
        if who.expires_at_us is not None:
            end = min(end, who.expires_at_us)  # a session never outlives its key
        s = self._codec.new(key, now, end, role=who.role, key_id=who.key_id, org_id=who.org_id,
                            team_id=who.team_id, user_id=who.user_id)  # fmt: skip
        log.info("console sign-in", key_id=who.key_id or "admin-token", role=who.role)
        body = {"role": who.role, "key_id": who.key_id, "csrf_token": self._csrf.token(s), "next": nxt}
        resp = web.json_response(body) if as_json else see_other(nxt)
        self._set_cookie(request, resp, s)
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        s = self.session_of(request)
        if s is not None:
            check_origin(request)
            sent = request.headers.get(HEADER, "")
            if not sent and request.content_type == "application/x-www-form-urlencoded":
                sent = str((await request.post()).get("csrf_token", ""))
            self._csrf.check_token(s, sent)
        resp = see_other("/console/login?error=signed_out")
        self._clear_cookie(request, resp)
        return resp

    # ---- the JSON API -------------------------------------------------------------

    def _api(self, handler: ApiHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            s = self.session_of(request)
            if s is None:
                raise Unauthenticated("not signed in to the console (or the session expired): "
                                      "POST /console/login with an API key first")  # fmt: skip
            if request.method in UNSAFE:
                check_origin(request)
                self._csrf.check_token(s, request.headers.get(HEADER, ""))
            ctx = Ctx(request, s, self._ledger.as_bearer(s.key), self.settings, self._clock, self._body_timeout_s)
            try:
                resp = json_response(await handler(ctx))
            except Unauthenticated as exc:
                # The key was revoked or expired since sign-in: the session ends with it.
                resp = json_response({"error": {"message": exc.message, "type": exc.openai_type,
                                                "param": None, "code": "session_ended"}})  # fmt: skip
                resp.set_status(401)
                self._clear_cookie(request, resp)
            resp.headers["Cache-Control"] = "no-store"
            return resp

        return run

    async def session_info(self, ctx: Ctx) -> dict[str, object]:
        who = await ctx.ledger.whoami()  # the key may have been revoked since sign-in
        return {"role": who.role, "key_id": who.key_id, "org_id": who.org_id, "team_id": who.team_id,
                "user_id": who.user_id, "csrf_token": self._csrf.token(ctx.session),
                "expires_at_us": ctx.session.expires_at_us, "this_month": this_month(self._clock.now()).as_json(),
                "max_range_days": self.settings.max_range_days,
                "pages": [{"slug": p.slug, "title": p.title} for p in self.pages]}  # fmt: skip


def off_app(reason: str) -> web.Application:
    """What /console answers when the console cannot run (no secret configured)."""

    exc = Unavailable(reason)

    async def refuse(request: web.Request) -> web.StreamResponse:
        return json_error(503, error_body(exc.message, exc.openai_type, exc.openai_code), {})

    sub = web.Application()
    sub.router.add_route("*", "/{tail:.*}", refuse)
    return sub
