"""Transactional outbox: events written in the same transaction as the state they describe,
published to a Redis Stream at least once by the relay actor."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json


class OutboxEvent(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_published", "published_ms", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    published_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
