"""SQLAlchemy 2.0 models: the system of record. Importing this package registers every table
on ``Base.metadata`` (Alembic's autogenerate target).

Times are integer epoch milliseconds (``*_ms``) so SQLite and MySQL store them alike, and
money is integer minor units (``*_cents``).
"""

from models.aftersales import (
    CarrierAudit,
    Refund,
    ReturnEvent,
    ReturnItem,
    ReturnRequest,
    Review,
    Shipment,
    ShipmentEvent,
    ShipmentItem,
    ShippingMethod,
)
from models.base import Base
from models.catalog import Brand, Category, Product, Sku
from models.flash import FlashPurchase, FlashSale
from models.inventory import Inventory, InventoryAdjustment, InventoryOp
from models.orders import Notification, Order, OrderEvent, OrderItem, Payment, PaymentAudit
from models.outbox import OutboxEvent
from models.promotions import CouponCampaign, Promotion, UserCoupon
from models.users import Address, Permission, RefreshFamily, Role, User

__all__ = [
    "CarrierAudit",
    "ShippingMethod",
    "ShipmentItem",
    "ShipmentEvent",
    "Shipment",
    "Review",
    "ReturnRequest",
    "ReturnItem",
    "ReturnEvent",
    "Refund",
    "Address",
    "Base",
    "Brand",
    "Category",
    "CouponCampaign",
    "FlashPurchase",
    "FlashSale",
    "Inventory",
    "InventoryAdjustment",
    "InventoryOp",
    "Notification",
    "Order",
    "OrderEvent",
    "OrderItem",
    "OutboxEvent",
    "Payment",
    "PaymentAudit",
    "Permission",
    "Product",
    "Promotion",
    "RefreshFamily",
    "Role",
    "Sku",
    "User",
    "UserCoupon",
]
