"""Read models of the order domain, shipped ready to run.

- :class:`OrderSummary` (handler form) and :class:`OrderSummaryFrame` (vectorised form): one
  row per order. Both give the identical frame for every valid history.
- :class:`RevenueByDaySku` (vectorised): paid revenue per UTC day and SKU.
- :class:`CustomerValue` (vectorised): orders, paid orders and lifetime value per customer.

Money is integer cents. An ``ItemRemoved`` carries no price: the removed units are valued
at the price of the latest ``ItemAdded`` of that SKU in the order, which is why the order
summary keeps the latest prices of an order (hidden column ``open_prices``) until it is paid.
"""

from .order_frame import OrderSummaryFrame
from .orders import OrderSummary
from .sales import CustomerValue, RevenueByDaySku

__all__ = ["CustomerValue", "OrderSummary", "OrderSummaryFrame", "RevenueByDaySku"]
