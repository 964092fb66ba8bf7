"""The floor for bench/load.py: a bare FastAPI endpoint that does only what no tip intake can skip.

    .venv/bin/python -m uvicorn bare_intake:app --app-dir bench --workers N --port P

``POST /api/v1/tips`` reads the JSON body into the model the real endpoint uses
(``TipSubmission``, with all its validators) and answers 201 with a receipt-shaped
string: no database, no encryption, no middleware. Daylight's tips/s divided by
this endpoint's, measured by the same client in the same run, is the share of the
HTTP stack's capacity that the real work leaves.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI

from app.intake.schemas import TipReceipt, TipSubmission

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/api/v1/tips", status_code=201, response_model=TipReceipt)
async def submit_tip(submission: TipSubmission) -> TipReceipt:
    # The same length as a real receipt (six groups of four), so both answers weigh the same.
    receipt = "-".join(secrets.token_hex(2).upper() for _ in range(6))
    return TipReceipt(receipt=receipt)


@app.get("/healthz")
async def healthz() -> dict[str, str]:  # in the event loop, like Daylight's, so the samples compare
    return {"status": "ok"}
