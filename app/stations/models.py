"""The station registry: city-level entries, their sources and status history, and case links.

No street addresses, by design: a registry of where people are harassed must
not become a map that leads someone to them. Coordinates are city centres at
two decimals (about a kilometre).
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Date, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.crypto.contracts import EnvelopeColumn
from app.kit.db import Base, enum_column_type
from app.web.staff_words import country_words

# Evidence for a case's link to a station is content: under the case's data key.
LINK_EVIDENCE = EnvelopeColumn("case_station_links", "evidence_encrypted")


class StationStatus(StrEnum):
    REPORTED = "reported"
    CONFIRMED = "confirmed"
    ORDERED_CLOSED = "ordered_closed"
    REPORTED_CLOSED = "reported_closed"
    UNDER_INVESTIGATION = "under_investigation"
    PROSECUTED = "prosecuted"


class LinkRelation(StrEnum):
    CONTACTED_VIA = "contacted_via"
    OPERATED_BY = "operated_by"
    SUSPECTED = "suspected"


class Confidence(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Station(Base):
    __tablename__ = "stations"
    # One station per city, country and operating bureau: the key imports match on.
    __table_args__ = (UniqueConstraint("country", "city_key", "operating_bureau"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    city: Mapped[str] = mapped_column(String(100))
    city_key: Mapped[str] = mapped_column(String(100))  # case- and space-folded, for matching
    country: Mapped[str] = mapped_column(String(2), index=True)
    operating_bureau: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[StationStatus] = mapped_column(
        enum_column_type(StationStatus, "station_status"), index=True
    )
    first_reported: Mapped[dt.date | None] = mapped_column(Date)  # the first of the month reported
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")

    @property
    def described(self) -> str:
        """How staff pages name a station: city, country and the bureau that runs it."""
        return f"{self.city}, {country_words(self.country)} ({self.operating_bureau})"

    sources: Mapped[list[StationSource]] = relationship(
        back_populates="station", cascade="all, delete-orphan", order_by="StationSource.position"
    )


class StationSource(Base):
    """A public citation for a station: title, publisher, date, optional URL."""

    __tablename__ = "station_sources"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    station_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    publisher: Mapped[str | None] = mapped_column(String(200))
    published_on: Mapped[dt.date | None] = mapped_column(Date)
    url: Mapped[str | None] = mapped_column(String(500))

    station: Mapped[Station] = relationship(back_populates="sources")


class StationStatusChange(Base):
    """A station's status history: who changed it, when (day), and on which source."""

    __tablename__ = "station_status_changes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    station_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    # None for an import run by the operator (the CLI).
    changed_on: Mapped[dt.date] = mapped_column(Date)
    source: Mapped[str | None] = mapped_column(String(500))


class CaseStationLink(Base):
    """A case's link to a station: proposed by one member, confirmed by a lead."""

    __tablename__ = "case_station_links"
    __table_args__ = (UniqueConstraint("case_id", "station_id", "relation"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    station_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    relation: Mapped[LinkRelation] = mapped_column(enum_column_type(LinkRelation, "link_relation"))
    confidence: Mapped[Confidence] = mapped_column(enum_column_type(Confidence, "link_confidence"))
    evidence_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    proposed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    proposed_on: Mapped[dt.date] = mapped_column(Date)
    confirmed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    confirmed_on: Mapped[dt.date | None] = mapped_column(Date)
