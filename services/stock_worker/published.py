"""What each of the stock domain's events is published as: ``stock.events``
messages of the contract."""

from __future__ import annotations

from contracts import stock as stock_contract
from services.runtime.emit import ContractMap
from services.stock_worker import domain

STOCK_EVENTS: ContractMap = {
    domain.StockReserved: stock_contract.StockReserved,
    domain.StockReservationRejected: stock_contract.StockReservationRejected,
    domain.ReservationAdjusted: stock_contract.ReservationAdjusted,
    domain.StockReleased: stock_contract.StockReleased,
    domain.StockCommitted: stock_contract.StockCommitted,
    domain.ReservationTransferred: stock_contract.ReservationTransferred,
    domain.StockCommandRejected: stock_contract.StockCommandRejected,
    domain.StockLevelChanged: stock_contract.StockLevelChanged,
}
