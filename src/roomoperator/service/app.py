"""The operator's app factory: `create_app(settings)` wires store, room-server client, engine,
controller, health probe, the room-server event follower, the GitOps sources' syncers, the notifier and
(on a PostgreSQL store) the replica's leases, and starts and stops them with the app, the garbage collector
tuned for a large heap meanwhile (`service/collector.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from roomcontract.routing import RouteTolerance
from roomoperator.clients.events import RoomEventFollower
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.ratelimit import RateLimiter
from roomoperator.engine.reconciler import Reconciler
from roomoperator.notifications.delivery import Notifier
from roomoperator.service import gitops_routes, room_routes, routes
from roomoperator.service.acceptance import Refused
from roomoperator.service.auditing import AuditLog
from roomoperator.service.auth import Authenticator
from roomoperator.service.collector import collecting
from roomoperator.service.controller import Controller
from roomoperator.service.errors import ApiError, handle_api_error, handle_refused
from roomoperator.service.health import HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.replicas import Replicas
from roomoperator.settings import OperatorSettings
from roomoperator.sources.syncing import syncers
from roomoperator.store import Store
from roomoperator.store.sources import load_sources


async def _probe(client: RoomServerClient, store: Store, health: HealthMonitor, every: float) -> None:
    """Check the room server and the store every `every` seconds."""
    while True:
        started = time.perf_counter()
        health.observe_probe(ok=await client.health(), started=started)
        health.store_ok = await store.ping()
        await asyncio.sleep(every)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return await handle_api_error(request, ApiError.invalid_request(exc))


def create_app(settings: OperatorSettings) -> FastAPI:
    """The operator as an ASGI app; its lifespan runs the reconcile loop."""
    metrics = OperatorMetrics()
    authenticator = Authenticator.from_settings(settings.api)

    @contextlib.asynccontextmanager
    async def running(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.store.url, schema=settings.store.schema_name)
        await store.migrate()
        operator_url = f"http://{settings.api.host}:{settings.api.port}" if settings.api.port else None
        health = HealthMonitor()
        audit = AuditLog(store, buffer=settings.events.subscriber_buffer)
        replicas = None
        if store.dialect == "postgresql":  # replica mode: every room through a lease (`service/replicas.py`)
            replicas = Replicas(
                settings.replicas,
                store,
                metrics=metrics,
                health=health,
                audit=audit,
                operator_version=settings.version,
                url=operator_url,
            )
            store.fencing = replicas.fencing
        token = settings.room_server.token.get_secret_value() if settings.room_server.token else None
        client = RoomServerClient(
            settings.room_server.base_url,
            token=token,
            timeout=settings.room_server.timeout_seconds,
            observer=metrics.observe_request,
            fences=replicas.fencing if replicas is not None else None,
        )
        reconciler = Reconciler(
            client,
            settings,
            audit=audit,
            journal=audit,  # every write's intent is recorded before it is made (`engine/settling.py`)
            rate_limiter=RateLimiter(settings.reconciliation.rate_limit_per_second),
            claim_rooms=True,  # the room server records this operator as the manager of the rooms it writes
            operator_url=operator_url,
        )
        notifier = Notifier(settings.notifications, store, operator_version=settings.version)
        controller = Controller(
            settings=settings,
            store=store,
            audit=audit,
            reconciler=reconciler,
            metrics=metrics,
            health=health,
            notifier=notifier if notifier.enabled else None,
            replicas=replicas,
        )
        app.state.settings, app.state.store, app.state.client = settings, store, client
        app.state.audit, app.state.health, app.state.metrics = audit, health, metrics
        app.state.auth, app.state.controller = authenticator, controller
        await controller.start()
        tasks = [asyncio.create_task(_probe(client, store, health, settings.reconciliation.interval_seconds))]
        if replicas is not None:
            replicas.attach(controller)
            await replicas.start()
            tasks.append(asyncio.create_task(replicas.run(), name="replica-leases"))
        app.state.sources = syncers(
            settings.sources,
            controller.sources,
            store,
            workdir=settings.data_folder() / "sources",
            states=await load_sources(store),
        )
        tasks += [
            asyncio.create_task(syncer.run(), name=f"source-{syncer.name}") for syncer in app.state.sources
        ]
        app.state.notifier = notifier
        if notifier.enabled:
            tasks.append(asyncio.create_task(notifier.run(), name="notifications"))
        if settings.events.follow_room_server:
            follower = RoomEventFollower(
                settings.room_server.base_url,
                token=token,
                on_change=lambda change: controller.on_room_event(
                    change.room_id, change.event_id, actor=change.actor
                ),
            )
            app.state.follower = follower
            tasks.append(asyncio.create_task(follower.run(), name="room-server-events"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await controller.stop()
            if replicas is not None:
                await replicas.stop()
            await client.aclose()
            await store.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with collecting(settings.runtime.gc_thresholds, metrics.gc_pauses):
            async with running(app):
                yield

    app = FastAPI(
        title="RoomOperator",
        version=settings.version,
        summary="Keeps collaboration rooms exactly as their RoomSpec says.",
        lifespan=lifespan,
    )
    app.add_middleware(RouteTolerance, routes=lambda: app.routes)
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(Refused, handle_refused)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(routes.router)
    app.include_router(room_routes.router)
    app.include_router(gitops_routes.router)
    return app
