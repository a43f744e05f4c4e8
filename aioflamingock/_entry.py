"""`AuditEntry`, the audit's record: a pydantic model, imported only where entries are built or read (a start-up that
finds nothing pending through the store's summary reads none, and does not pay for pydantic's import)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from ._model import AuditState, Recovery, TxStrategy

__all__ = ["AuditEntry"]


class AuditEntry(BaseModel):
    """One immutable audit record. Serialised with Flamingock's camelCase field names (`by_alias=True`)."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, use_enum_values=False, extra="ignore"
    )

    execution_id: str
    stage_id: str
    change_id: str
    author: str | None = None
    created_at: datetime
    state: AuditState
    type: str = "EXECUTION"
    invoked_class: str | None = None
    invoked_method: str | None = None
    source_file: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    execution_millis: int = 0
    execution_hostname: str | None = None
    error_trace: str | None = None
    system_change: bool = False
    tx_strategy: TxStrategy = TxStrategy.NON_TX
    target_system_id: str | None = None
    change_order: str | None = None
    recovery_strategy: Recovery = Recovery.MANUAL_INTERVENTION
    transaction_flag: bool = False

    @model_validator(mode="after")
    def _utc(self) -> AuditEntry:
        if self.created_at.tzinfo is None:
            object.__setattr__(self, "created_at", self.created_at.replace(tzinfo=UTC))
        return self

    def to_document(self) -> dict[str, Any]:
        """The entry as a JSON-compatible dict with Flamingock's field names."""
        return self.model_dump(by_alias=True, mode="json")

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> AuditEntry:
        """The entry read back from `to_document()`'s form (camelCase or snake_case names)."""
        return cls.model_validate(document)
