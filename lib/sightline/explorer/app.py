"""The explorer's HTTP API (FastAPI; OpenAPI at /docs) and the static page that uses it.

Read-only over one built profile (``Study``). Files are reached only through ids the study
knows (an image id, a listed table name) or the static folder, so no request names a path.
"""

from __future__ import annotations

import threading
import time
import webbrowser
from pathlib import Path
from typing import Annotated, Literal

import torch
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import registry
from .study import CORRECT, NotFound, Selection, Study

STATIC = Path(__file__).parent / "static"
Percentile = Annotated[float | None, Query(ge=0, lt=100, description="top (100 - p)% of pixels "
                                           "kept; default: the profile's headline percentile")]
Head = Annotated[int | None, Query(description="head index; -1 = mean over heads (default)")]


def _metric(request: Request,
            metric: Annotated[str, Query(description="a metric of /profile's list")] = "iou") -> str:
    """The metric asked for, if the study's table has it (422 naming the ones it has if not)."""
    known = request.app.state.study.metrics
    if metric not in known:
        raise RequestValidationError([{"type": "literal_error", "loc": ("query", "metric"),
                                       "input": metric,
                                       "msg": f"Input should be one of {', '.join(known)}"}])
    return metric


def _selection(request: Request, model: str | None = None, variant: str | None = None,
               method: str | None = None, layer: int | None = None, head: Head = None,
               percentile: Percentile = None) -> Selection:
    """One map: the query's values, the profile's defaults for the rest (404 naming a value
    the table lacks)."""
    return request.app.state.study.resolve(model=model, variant=variant, method=method,
                                           layer=layer, head=head, percentile=percentile)


Metric = Annotated[str, Depends(_metric)]
Chosen = Annotated[Selection, Depends(_selection)]
Correct = Annotated[Literal[CORRECT], Query(  # type: ignore[valid-type]
    description="all images, or those the classifier behind the maps predicted right / wrong")]


def create_app(study: Study) -> FastAPI:
    """The app over one study."""
    app = FastAPI(title=f"sightline explorer: {study.params.profile}",
                  description="Maps, boxes and scores of one built sightline profile.")
    app.state.study = study

    @app.exception_handler(NotFound)
    def not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(error)})

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        """422 with one readable sentence per bad parameter (the page shows ``detail``) and
        the validator's records under ``errors``."""
        problems = [f"{e['loc'][-1]}: {e['msg'][0].lower()}{e['msg'][1:]} (got "
                    f"{e.get('input')})" for e in error.errors()]
        return JSONResponse(status_code=422, content={
            "detail": "; ".join(problems),
            "fields": [str(e["loc"][-1]) for e in error.errors()],
            "errors": jsonable_encoder(error.errors())})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/profile")
    def profile() -> dict:
        """The profile: models with their variants, methods, layers, heads and defaults; the
        metrics of its table and the saliency methods (`sightline.registry`) described."""
        methods = [{"name": m.name, "label": m.label, "readouts": sorted(m.readouts),
                    "per_head": m.per_head, "explains_class": m.explains_class, "cost": m.cost,
                    "help": m.help} for m in registry.METHODS]
        return {"profile": study.params.profile, "headline_percentile": study.headline,
                "percentiles": study.thresholds, "resolution": study.resolution,
                "models": study.catalogue(), "metrics": study.metric_catalogue(),
                "methods": methods, "images": study.image_ids}

    @app.get("/images")
    def images(correct: Correct = "all", model: str | None = None,
               variant: str | None = None) -> list[dict]:
        """Every annotated image: styles, boxes, each model's headline union IoU and whether
        its prediction was right; ``correct`` right / wrong keeps the images ``model``
        (default: the first) predicts right / wrong."""
        return study.images(correct, model, variant)

    @app.get("/images/{image_id}/boxes")
    def boxes(image_id: str) -> list[dict]:
        """The expert boxes of one image (relative to the upright image)."""
        return study.boxes(image_id)

    @app.get("/images/{image_id}/file", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}})
    def image_file(image_id: str,
                   max_side: Annotated[int, Query(ge=16, le=4096)] = 1024) -> Response:
        """The image, upright (as the boxes are drawn), as JPEG at most ``max_side`` pixels."""
        return Response(study.image_jpeg(image_id, max_side), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/maps/{image_id}")
    def map_grid(image_id: str, sel: Chosen) -> dict:
        """The selected map on its grid (floats), and the image region its frame covers: a few
        hundred floats the page upsamples, colours and thresholds itself, at any percentile."""
        grid = study.grid(sel, image_id)
        return {"image_id": image_id, "selection": sel.__dict__, "grid": grid.tolist(),
                "frame": study.frame(sel.model, image_id), "resolution": study.resolution}

    @app.get("/metrics/{image_id}")
    def union_metrics(image_id: str, sel: Chosen) -> dict:
        """Every metric of one map against the union of the image's boxes."""
        return study.scores(sel, image_id)

    @app.get("/metrics/{image_id}/bbox/{bbox_index}")
    def box_metrics(image_id: str, bbox_index: int, sel: Chosen) -> dict:
        """Every metric of one map against one expert box, computed from the cached map (equal
        to the rows of scores.parquet); defaults: the profile's first model, ``frozen``, its
        first method, its best layer, the head mean, the headline percentile."""
        return study.scores(sel, image_id, bbox_index)

    @app.get("/layers")
    def layers(metric: Metric, percentile: Percentile = None, variant: str = "frozen",
               image_id: str | None = None, correct: Correct = "all") -> list[dict]:
        """Mean union score per model, method and layer (head mean), over all images or one;
        ``correct`` right / wrong: over the images each model predicts right / wrong."""
        p = study.headline if percentile is None else percentile
        return study.layer_curves(metric, p, variant, image_id, correct)

    @app.get("/heads")
    def heads(metric: Metric, model: str | None = None, variant: str | None = None,
              method: str | None = None, percentile: Percentile = None,
              image_id: str | None = None) -> dict:
        """Mean union score per layer x head of one model's method (default: its first
        method with per-head maps)."""
        if method is None:
            base = study.default(model, variant)
            method = next((m for m in study.methods(base.model, base.variant)
                           if study.has_heads(base.model, base.variant, m)), base.method)
        sel = study.resolve(model=model, variant=variant, method=method, percentile=percentile)
        return study.head_grid(sel, metric, image_id)

    @app.get("/tables")
    def tables() -> list[str]:
        """The report's CSV tables, by name."""
        return study.table_names()

    @app.get("/tables/{name}")
    def table(name: str) -> dict:
        """One CSV table of the report: columns and rows."""
        return study.table(name)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(404)
    def missing(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": f"{request.url.path}: not found"})

    return app


def serve(study: Study, *, host: str = "127.0.0.1", port: int = 8765,
          open_browser: bool = True) -> None:
    """Serve the explorer until Ctrl-C; opens the browser once the server listens."""
    torch.set_num_threads(1)  # per-request maps are small: thread hand-offs cost more than they gain
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/"
    server = uvicorn.Server(uvicorn.Config(create_app(study), host=host, port=port,
                                           log_level="warning", access_log=False))
    if open_browser:
        def open_when_ready() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_ready, daemon=True).start()
    print(f"[explore] profile '{study.params.profile}' at {url}  (API docs: {url}docs; "
          "Ctrl-C stops)", flush=True)
    server.run()
