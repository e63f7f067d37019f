"""Leads from a CSV file: good rows stored, bad rows reported by row and field, nothing half-done."""

import csv
import io
from datetime import datetime

from fastapi import HTTPException, status
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models.call_job import utcnow
from models.domain import Lead, Workspace
from models.enums import LeadStage, OptOutSource
from models.lead_schemas import ImportReport, ImportRowError, LeadCreate, shown

MAX_IMPORT_BYTES = 5_000_000
MAX_IMPORT_ROWS = 10_000
IMPORT_COLUMNS = ("phone", "name", "external_id", "timezone", "consent", "stage", "tags")


def new_lead(workspace: Workspace, body: LeadCreate, now: datetime) -> Lead:
    lead = Lead(
        workspace_id=workspace.id,
        **body.model_dump(exclude={"external_id", "tags"}),
        external_id=body.external_id or body.phone,
        tags=[t.value for t in body.tags],
    )
    if body.consent:
        lead.consent_at, lead.consent_source = now, "api"
    if body.stage is LeadStage.SUPPRESSED:  # a do-not-call entry: imported as an opt-out
        lead.opted_out_at, lead.opt_out_source = now, OptOutSource.API
    return lead


def import_csv(raw: bytes, workspace: Workspace, db: Session) -> ImportReport:
    """CSV with a header row (phone required; name, external_id, timezone, consent, stage, tags
    separated by ';'). Good rows are stored, bad rows reported by row and field."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"import at most {MAX_IMPORT_BYTES} bytes")
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        columns = [c.strip() for c in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"not a UTF-8 CSV file: {exc}") from None
    unknown = [c for c in columns if c not in IMPORT_COLUMNS]
    if "phone" not in columns or unknown:
        detail = f"unknown column {shown(unknown[0])}" if unknown else "the header must have a phone column"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{detail}; columns: {', '.join(IMPORT_COLUMNS)}")
    reader.fieldnames = columns

    report = ImportReport(created=0, lead_ids=[], errors=[])
    seen: set[str] = set()
    now = utcnow()
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"malformed CSV: {exc}") from None
    if len(rows) > MAX_IMPORT_ROWS:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"import at most {MAX_IMPORT_ROWS} rows at a time")
    for number, row in enumerate(rows, start=1):
        if None in row:  # more cells than header columns
            report.errors.append(
                ImportRowError(row=number, field="row", error=f"{len(row[None])} cells more than the header has")
            )
            continue
        values = {key: value for key, value in row.items() if value not in (None, "")}
        try:
            body = LeadCreate.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "row"
                report.errors.append(ImportRowError(row=number, field=field, error=error["msg"].removeprefix("Value error, ")))
            continue
        if body.phone in seen:
            report.errors.append(
                ImportRowError(row=number, field="phone", error=f"phone {body.phone} appears earlier in this file")
            )
            continue
        seen.add(body.phone)
        lead = new_lead(workspace, body, now)
        try:
            with db.begin_nested():
                db.add(lead)
        except IntegrityError:
            report.errors.append(
                ImportRowError(row=number, field="phone", error=f"a lead with phone {body.phone} already exists")
            )
            continue
        report.lead_ids.append(lead.id)
    db.commit()
    report.created = len(report.lead_ids)
    return report
