"""Re-encrypting every stored secret under the newest key (`reflexdb secrets rotate`)."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import Field

from app.domain.environment import current
from app.domain.errors import DomainError
from app.storage.database import db, is_sqlite
from app.storage.models import ALL_MODELS

# The naming rule that makes a column a secret: a new `*_encrypted` column is
# rotated without anyone having to remember to list it here.
ENCRYPTED_SUFFIX = "_encrypted"


@dataclass(frozen=True)
class RotationResult:
    """What one rotation did: rows re-encrypted per column, rows already under the newest key."""

    rotated: dict[str, int]
    already_current: int

    @property
    def total(self) -> int:
        return sum(self.rotated.values())


def encrypted_columns() -> list[Field]:
    """Every column of every model that holds an encrypted secret."""
    return [f for model in ALL_MODELS for f in model._meta.sorted_fields
            if f.name.endswith(ENCRYPTED_SUFFIX)]


def rotate_secrets() -> RotationResult:
    """Re-encrypt every secret not yet under the newest key, all in one transaction.

    Running it again changes nothing (rows under the newest key are left
    alone). A secret no configured key decrypts aborts the whole rotation.
    """
    box = current().secret_box
    rotated: dict[str, int] = {}
    already_current = 0
    with db.transaction():
        for column in encrypted_columns():
            model, key = column.model, column.model._meta.primary_key
            name = f"{model._meta.table_name}.{column.column_name}"
            query = model.select(key, column).where(column.is_null(False)).order_by(key)
            if not is_sqlite():
                # A password changed through the API meanwhile must not be
                # overwritten with the rotated old one.
                query = query.for_update()
            rotated[name] = 0
            for row in query:
                token = getattr(row, column.name)
                if box.is_current(token):
                    already_current += 1
                    continue
                try:
                    fresh = box.rotate(token)
                except ValueError:
                    raise DomainError(
                        f"{name} of row {row.id} cannot be decrypted with any configured key; "
                        f"nothing was re-encrypted", code="undecryptable_secret") from None
                model.update({column: fresh}).where(key == row.id).execute()
                rotated[name] += 1
    return RotationResult(rotated=rotated, already_current=already_current)


__all__ = ["RotationResult", "encrypted_columns", "rotate_secrets"]
