"""The tables of ingest: transactions, and the rows a file could not give."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, JSONType, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["FintechTransaction", "IngestRowError", "IngestedFile", "LEDGERS", "ROW_ERROR_KINDS"]

#: Where a transaction record comes from: a bank / switch / settlement file, or the tenant's books.
LEDGERS = ("external", "internal")
#: Why a row of a file was not loaded: the parser rejected it, or its txn_id is stored with
#: different content.
ROW_ERROR_KINDS = ("rejected", "conflict")


class FintechTransaction(TenantScoped, Base):
    """One transaction of one tenant's ledger, as a source plugin parsed it (the seed's table).

    The key is (tenant, ledger, txn_id): the tenant's internal record of a payment and the
    bank's external record of it are both kept, even under the same txn_id.
    """

    __tablename__ = "fintech_transactions"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "ledger", "txn_id"),
        sa.CheckConstraint("ledger IN ('external', 'internal')", name="ledger"),
        sa.CheckConstraint("direction IS NULL OR direction IN ('DR', 'CR')", name="direction"),
        # reconciliation looks up the rows of a few keys (RRN / UTR) without scanning the table
        sa.Index("ix_fintech_transactions_tenant_id_reference", "tenant_id", "reference"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    txn_id: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str | None] = mapped_column(sa.String(32))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2))
    currency: Mapped[str] = mapped_column(sa.CHAR(3), default="INR", server_default="INR")
    status: Mapped[str | None] = mapped_column(sa.String(16))
    txn_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    raw_row: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ledger: Mapped[str] = mapped_column(sa.String(8), default="external", server_default="external")
    direction: Mapped[str | None] = mapped_column(sa.String(2))
    reference: Mapped[str | None] = mapped_column(sa.String(64))
    counterparty: Mapped[str | None] = mapped_column(sa.String(255))
    ifsc: Mapped[str | None] = mapped_column(sa.String(11))
    settlement_date: Mapped[date | None] = mapped_column(sa.Date)
    #: the ingest job that loaded the row, and the row's line in that file
    job_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    line: Mapped[int | None] = mapped_column(sa.Integer)


class IngestRowError(TenantScoped, Base):
    """A row of an ingested file that was not loaded: where, why, and its original text."""

    __tablename__ = "ingest_row_errors"
    __table_args__ = (sa.Index("ix_ingest_row_errors_job_id_line", "job_id", "line"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    job_id: Mapped[int] = mapped_column(BigID, sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(sa.Integer)
    kind: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text)
    raw: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IngestedFile(TenantScoped, Base):
    """A file an ingest job read to its end, and what became of its rows.

    An identical file ingested again (same path, same object version, same parser) is
    recognised from this record instead of being read again: see :mod:`app.ingest.files`.
    """

    __tablename__ = "ingest_files"
    __table_args__ = (sa.Index("ix_ingest_files_tenant_id_s3_path", "tenant_id", "s3_path"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    job_id: Mapped[int] = mapped_column(BigID, sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    s3_path: Mapped[str] = mapped_column(sa.Text)
    #: the object store's version of the object (ETag and size) when it was read
    version: Mapped[str] = mapped_column(sa.String(200))
    ledger: Mapped[str] = mapped_column(sa.String(8))
    source: Mapped[str] = mapped_column(sa.String(32))
    #: the parser that read it: its distribution and version, fairq's, and the file's time zone
    parser: Mapped[str] = mapped_column(sa.String(200))
    rows_read: Mapped[int] = mapped_column(sa.Integer)
    rows_loaded: Mapped[int] = mapped_column(sa.Integer)
    duplicates: Mapped[int] = mapped_column(sa.Integer)
    conflicts: Mapped[int] = mapped_column(sa.Integer)
    rejected: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
