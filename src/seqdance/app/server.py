"""The web app: a FastAPI application around one loaded model (see docs/browser.md for the endpoints).

* ``GET /`` the page; ``GET /assets/<name>`` its script, style, the panels' renderers and plotly.js (looked up by
  name in a fixed table, never read from a path a request gives);
* ``GET /api/health``; ``POST /api/predict`` (JSON in, arrays keyed by property name out, NaN as null);
* ``POST /api/jobs`` (the page's form), ``GET /api/jobs/{id}`` (state, place in the queue, progress),
  ``GET /api/jobs/{id}/result`` (the report's panel data), ``GET /api/jobs/{id}/files/{name}`` (downloads),
  ``POST /api/jobs/{id}/structure`` (a structure coloured by a predicted property).

Every error is JSON ``{"error": "<one line>"}`` with a 4xx status (503 when the queue is full); a bug is a 500 with
its traceback in the server's log. With a token every request must carry it (``Authorization: Bearer``, the
``X-Seqdance-Token`` header, ``?token=`` or the cookie the page sets), compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import traceback
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import HTMLResponse, Response

from seqdance.app.inputs import json_records, mutant_lines, parse_fasta, property_names
from seqdance.app.jobs import Job, JobFailed, JobQueue, QueueFull
from seqdance.app.settings import AppSettings
from seqdance.app.work import JobResult, ModelService
from seqdance.errors import InputError, SeqdanceError

log = logging.getLogger(__name__)
TOKEN_COOKIE = "seqdance_token"
TASKS = ("predict", "saturation", "variants")


def _orjson():
    import orjson

    return orjson


def _json_response(content: Any, status: int = 200):
    orjson = _orjson()
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json")


def _error(message: str, status: int = 400):
    return _json_response({"error": " ".join(str(message).split("\n")[0].split())}, status)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused (413) before it is read in full."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        message = (f"the request is larger than this server's upload limit of {self.limit:,} bytes "
                   "(--max-upload-mb)")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(message, 413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(message)
            return event

        try:
            return await self.app(scope, counted, send)
        except _TooLarge as exc:
            return await _error(str(exc), 413)(scope, receive, send)


class _TooLarge(Exception):
    pass


class TokenGuard:
    """ASGI middleware: with a token, requests without it get 401 (the page at ``/?token=`` sets a cookie)."""

    def __init__(self, app, token: str | None) -> None:
        self.app = app
        self.token = token

    def _given(self, scope) -> str | None:
        from http.cookies import CookieError, SimpleCookie
        from urllib.parse import parse_qs

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if "x-seqdance-token" in headers:
            return headers["x-seqdance-token"].strip()
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0]
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except CookieError:  # a malformed cookie header carries no token
            return None
        return cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.token is None:
            return await self.app(scope, receive, send)
        given = self._given(scope)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return await _error("this server needs its token: open the address it printed (with ?token=...) or "
                                "send 'Authorization: Bearer <token>'", 401)(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(service: ModelService, settings: AppSettings, *, host: str = "127.0.0.1"):
    """The FastAPI application of one loaded model (``service``)."""
    from seqdance.app.page import app_assets, app_page
    from seqdance.app.settings import is_loopback

    queue = JobQueue(settings.queue_size, kept=settings.kept_jobs)
    assets = app_assets()

    async def lifespan(app):
        yield
        queue.stop()

    app = FastAPI(title="seqdance", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.queue = queue
    app.state.service = service

    @app.exception_handler(SeqdanceError)
    async def _user_error(request, exc):
        return _error(str(exc), 503 if isinstance(exc, QueueFull) else 400)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request, exc):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return _error(f"malformed request ({problems})", 400)

    @app.exception_handler(Exception)
    async def _bug(request, exc):
        log.error("request %s failed:\n%s", request.url.path, traceback.format_exc())
        return _error(f"internal error ({type(exc).__name__}); this is a bug in seqdance, please report it", 500)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request):
        response = HTMLResponse(app_page(service, settings))
        token = request.query_params.get("token")
        if settings.token is not None and token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/assets/{name}")
    async def asset(name: str):
        found = assets.get(name)
        if found is None:
            return _error(f"no asset {name!r}", 404)
        text, media = found
        return Response(text, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/health")
    async def health():
        from seqdance import __version__

        stats = queue.stats()
        return _json_response({
            "status": "ok", "seqdance": __version__, "model": service.name, "model_fingerprint": service.fingerprint,
            "device": service.device, "queue_length": stats["waiting"], "queue": stats,
            "cache": service.cache.stats(), "limits": settings.public(),
        })

    @app.post("/api/predict")
    async def api_predict(request: Request):
        orjson = _orjson()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise InputError(f"the request body is not JSON ({exc})") from None
        records = json_records(body, settings)
        names = property_names(body.get("properties"))
        pairs = body.get("pairs", True)
        if not isinstance(pairs, bool):
            raise InputError('"pairs" must be true or false')
        wanted = names or None
        if names and any(n in _pair_names() for n in names):
            pairs = True
        cached = [service.cached_prediction(r, pairs) for r in records]
        if all(c is not None for c in cached):
            predictions = cached
        else:
            job = queue.submit(Job("predict", lambda job: service.predict(records, job, pairs=pairs)), keep=False)
            predictions = await _wait(job)
        results = [{"id": p.id, "sequence": p.sequence, "chain_lengths": list(p.chain_lengths),
                    "values": {k: v for k, v in p.items() if wanted is None or k in wanted}} for p in predictions]
        payload = {"model": service.name, "model_fingerprint": service.fingerprint, "results": results}
        return await asyncio.to_thread(_json_response, payload)

    @app.post("/api/jobs")
    async def submit(
        task: Annotated[str, Form()] = "predict",
        fasta: Annotated[str, Form()] = "",
        fasta_file: Annotated[UploadFile | None, File()] = None,
        mutants: Annotated[str, Form()] = "",
        properties: Annotated[str, Form()] = "",
    ):
        if task not in TASKS:
            raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if fasta_file is not None and fasta_file.filename:
            data = await fasta_file.read(settings.max_upload_bytes + 1)
            from seqdance.app.inputs import shown_name

            records = parse_fasta(data, shown_name(fasta_file.filename, "the upload"), settings)
        else:
            records = parse_fasta(fasta.encode("utf-8"), "the pasted text", settings)
        names = property_names(properties)
        if task == "predict":
            work = _predict_work(service, records, names)
        else:
            if len(records) != 1:
                raise InputError(f"a {task} scores one protein; {len(records)} sequences were given")
            listed = mutant_lines(mutants, settings) if task == "variants" else None
            work = _score_work(service, task, records[0], listed, names)
        job = queue.submit(Job(task, work))
        return _status(job)

    @app.get("/api/jobs/{job_id}")
    async def status(job_id: str):
        return _status(_job(job_id))

    @app.get("/api/jobs/{job_id}/result")
    async def result(job_id: str):
        from seqdance.report.page import facts, page_data

        job = _finished(job_id)
        run = job.result.run_view(service.name, service.fingerprint)
        table, payloads, notes = await asyncio.to_thread(page_data, run)
        return _json_response({"run": table, "proteins": payloads, "notes": notes,
                               "facts": facts(run, None)[:3], "files": _files(job)})

    @app.get("/api/jobs/{job_id}/files/{name}")
    async def download(job_id: str, name: str):
        job = _finished(job_id)
        found = job.result.files.get(name)
        if found is None:
            return _error(f"this job has no file {name!r}", 404)
        data = await asyncio.to_thread(found.make)
        return Response(data, media_type=found.media_type,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/api/jobs/{job_id}/structure")
    async def structure(job_id: str, structure: Annotated[UploadFile, File()],
                        protein: Annotated[str, Form()] = "", property: Annotated[str, Form()] = "rmsf_nor"):
        job = _finished(job_id)
        data = await structure.read(settings.max_upload_bytes + 1)
        protein_id = protein or job.result.proteins[0].id
        names = await asyncio.to_thread(service.map_structure, job.result, protein_id, property, data,
                                        structure.filename)
        return _json_response({"added": names, "files": _files(job)})

    def _job(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise _NoJob(f"no job {job_id!r} on this server (finished jobs are kept for a while only)")
        return job

    def _finished(job_id: str) -> Job:
        job = _job(job_id)
        if job.state != "done":
            raise InputError(f"job {job_id} is {job.state}" + (f": {job.error}" if job.error else ""))
        return job

    def _status(job: Job):
        return _json_response({"job": job.id, "task": job.kind, "state": job.state,
                               "position": queue.position(job), "waiting": len(queue),
                               "progress": round(job.progress, 3), "message": job.message, "error": job.error})

    @app.exception_handler(_NoJob)
    async def _no_job(request, exc):
        return _error(str(exc), 404)

    app.add_middleware(GZipMiddleware, minimum_size=4096)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(TokenGuard, token=settings.token)
    if is_loopback(host):  # a page on another site cannot reach this server by a DNS name pointing here
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"])
    return app


class _NoJob(SeqdanceError):
    pass


def _files(job: Job) -> list[dict[str, str]]:
    result: JobResult = job.result
    return [{"name": name, "label": d.label} for name, d in result.files.items()]


def _pair_names() -> set[str]:
    from seqdance.schema import PAIR_PROPERTIES

    return {p.name for p in PAIR_PROPERTIES}


async def _wait(job: Job):
    try:
        return await asyncio.wrap_future(job.future)
    except JobFailed as exc:
        if exc.bug:
            raise RuntimeError(str(exc)) from None
        raise InputError(str(exc)) from None


def _predict_work(service: ModelService, records, names):
    def work(job: Job) -> JobResult:
        predictions = service.predict(records, job)
        if names:
            predictions = [_only(p, names) for p in predictions]
        return service.result("predict", predictions, {})

    return work


def _only(prediction, names):
    import dataclasses

    return dataclasses.replace(prediction, values={k: v for k, v in prediction.values.items() if k in names})


def _score_work(service: ModelService, task: str, record, mutants, names):
    def work(job: Job) -> JobResult:
        job.report(0.0, "predicting the wild type")
        prediction = service.predict([record])[0]
        table = service.score(record, mutants, names, job)
        return service.result(task, [prediction], {record.id: table})

    return work
