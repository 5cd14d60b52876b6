"""``catalog.events``: the product catalog as published by the catalog service."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.envelope import Event, Identifier, Money


class SizeOption(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    size: Identifier
    price: Money


class ProductUpserted(Event):
    type: Literal["ProductUpserted"] = "ProductUpserted"
    product_id: Identifier
    name: Annotated[str, Field(min_length=1, max_length=500)]
    price: Money
    image_url: Annotated[str, Field(max_length=2000)] | None = None
    is_deleted: bool = False
    sizes: Annotated[list[SizeOption], Field(max_length=200)] | None = None

    @property
    def has_sizes(self) -> bool:
        return bool(self.sizes)


class ProductDeleted(Event):
    type: Literal["ProductDeleted"] = "ProductDeleted"
    product_id: Identifier


CatalogEvent = Annotated[ProductUpserted | ProductDeleted, Field(discriminator="type")]
catalog_event_adapter: TypeAdapter[ProductUpserted | ProductDeleted] = TypeAdapter(CatalogEvent)
