"""The one error tree. Domain code raises these; the HTTP edge maps them once.

    DomainError (code, status)
    ├── BadRequest            400  bad_request
    │   ├── ValidationFailed  422  validation_error
    │   ├── AmountMismatch    400  amount_mismatch
    │   └── CarrierEventMismatch 400 carrier_event_mismatch
    ├── Unauthorized          401  unauthorized
    │   ├── InvalidCredentials 401 invalid_credentials
    │   ├── InvalidToken      401  invalid_token
    │   ├── TokenExpired      401  token_expired
    │   ├── TokenRevoked      401  token_revoked
    │   └── BadSignature      401  bad_signature
    ├── Forbidden             403  forbidden
    │   ├── AccountBlocked    403  account_blocked
    │   ├── FlashTokenRequired 403 flash_token_required
    │   ├── FlashTokenInvalid 403  flash_token_invalid
    │   ├── CouponNotOwned    403  coupon_not_owned
    │   └── NotVerifiedBuyer  403  not_verified_buyer
    ├── NotFound              404  not_found
    │   ├── UnknownSku        404  unknown_sku
    │   ├── RefundNotFound    404  refund_not_found
    │   ├── ReturnNotFound    404  return_not_found
    │   ├── CampaignNotFound  404  campaign_not_found
    │   ├── CouponNotFound    404  coupon_not_found
    │   ├── CouponCodeInvalid 404  coupon_code_invalid
    │   ├── ReviewNotFound    404  review_not_found
    │   ├── ShippingMethodNotFound 404 shipping_method_not_found
    │   └── ShipmentNotFound  404  shipment_not_found
    ├── Conflict              409  conflict
    │   ├── EmailTaken        409  email_taken
    │   ├── UsernameTaken     409  username_taken
    │   ├── InvalidTransition 409  invalid_transition
    │   ├── RefundExceedsRemaining 409 refund_exceeds_remaining
    │   ├── OrderNotRefundable 409 order_not_refundable
    │   ├── OrderNotReturnable 409 order_not_returnable
    │   ├── ReturnWindowClosed 409 return_window_closed
    │   ├── ReturnQuantityExceeded 409 return_quantity_exceeded
    │   ├── IdempotencyMismatch 409 idempotency_key_reused
    │   ├── CategoryCycle     409  category_cycle
    │   ├── CategoryNotEmpty  409  category_not_empty
    │   ├── AlreadyExists     409  already_exists
    │   ├── BrandInUse        409  brand_in_use
    │   ├── ProductInUse      409  product_in_use
    │   ├── NotPublishable    409  product_not_publishable
    │   ├── OutOfStock        409  out_of_stock
    │   ├── SoldOut           409  sold_out
    │   ├── LimitExceeded     409  purchase_limit_exceeded
    │   ├── SaleNotStarted    409  sale_not_started
    │   ├── SaleEnded         409  sale_ended
    │   ├── FlashTokenUsed    409  flash_token_used
    │   ├── NotForSale        409  sku_not_for_sale
    │   ├── CartLimitExceeded 409  cart_limit_exceeded
    │   ├── OrderNotReceived  409  order_not_received
    │   ├── AlreadyReviewed   409  already_reviewed
    │   ├── ShipQuantityExceeded 409 ship_quantity_exceeded
    │   ├── TrackingNumberTaken 409 tracking_number_taken
    │   └── CouponRefused     409  coupon_refused (subclasses, each its own code:
    │       coupon_expired, coupon_not_yet_valid, coupon_out_of_scope,
    │       coupon_below_threshold, coupon_unavailable, coupon_not_combinable,
    │       claim_not_started, claim_ended, campaign_inactive, coupons_sold_out,
    │       coupon_limit_reached)
    ├── PayloadTooLarge       413  payload_too_large
    ├── UnsupportedMedia      415  unsupported_media_type
    ├── RateLimited           429  rate_limited (carries retry_after)
    └── Unavailable           503  unavailable  (retriable: the caller may retry with the same key)

Every error body is ``{"error": {"code", "message", "request_id"}}`` plus optional
``details`` (and ``trace_id`` when the request is traced). Errors cross Ray process
boundaries pickled, so they keep only plain fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class DomainError(Exception):
    code = "error"
    status = 500
    retriable = False

    def __init__(self, message: str = "", *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")
        self.details = details or {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def to_body(self, request_id: str) -> dict[str, Any]:
        return error_body(request_id, self.code, self.message, self.details or None)


# set by raymall.tracing when tracing is on: the current trace id, or None
trace_id_hook: Callable[[], str | None] | None = None


def error_body(
    request_id: str, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The one error body: ``{"error": {"code", "message", "request_id"}}``, plus
    ``details`` when there are any, and ``trace_id`` when the request is traced. Every
    error answer of the HTTP API is rendered here."""
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details:
        body["details"] = details
    if trace_id_hook is not None:
        trace_id = trace_id_hook()
        if trace_id:
            body["trace_id"] = trace_id
    return {"error": body}


def _rebuild(cls: type[DomainError], message: str, details: dict[str, Any]) -> DomainError:
    return cls(message, details=details)


class BadRequest(DomainError):
    """The request is malformed: a header, parameter or body the API cannot use."""

    action = "Fix the request as the message says; do not retry it unchanged."
    code, status = "bad_request", 400


class ValidationFailed(BadRequest):
    """A field failed validation (type, range, format); `details` names the fields."""

    action = "Correct the fields named in `details` and send again."
    code, status = "validation_error", 422


class AmountMismatch(BadRequest):
    """An amount sent does not match the server's (a payment for another order or another total)."""

    action = "Re-read the order and pay or report the amount the server states."
    code = "amount_mismatch"


class Unauthorized(DomainError):
    """No valid credentials were sent."""

    action = "Sign in (or send the `Authorization: Bearer` access token) and retry."
    code, status = "unauthorized", 401


class InvalidCredentials(Unauthorized):
    """The username or password is wrong."""

    action = "Ask the user again; repeated failures are rate limited."
    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    """The token is malformed, of the wrong kind, or unknown."""

    action = "Sign in again to get a new token pair."
    code = "invalid_token"


class TokenExpired(Unauthorized):
    """The access token has expired."""

    action = "Refresh with the refresh token (`POST /auth/refresh`), then retry."
    code = "token_expired"


class TokenRevoked(Unauthorized):
    """The token was revoked (logout, password change, a replayed refresh token or a block)."""

    action = "Sign in again; a replayed refresh token revoked the whole session family."
    code = "token_revoked"


class BadSignature(Unauthorized):
    """A signature did not verify (a token or a payment callback)."""

    action = "Do not retry: the sender's key or payload is wrong."
    code = "bad_signature"


class Forbidden(DomainError):
    """The caller is known but may not do this (another user's resource, an admin route)."""

    action = "Do not retry; use an account with the right role."
    code, status = "forbidden", 403


class AccountBlocked(Forbidden):
    """The account is blocked by an administrator."""

    action = "Contact support; retries fail until the account is unblocked."
    code = "account_blocked"


class FlashTokenRequired(Forbidden):
    """A flash-sale purchase needs the per-user purchase token."""

    action = "Fetch a token for the sale (`GET /flash-sales/{id}/token`) and buy with it."
    code = "flash_token_required"


class FlashTokenInvalid(Forbidden):
    """The flash-sale purchase token is invalid, expired or for another user or sale."""

    action = "Fetch a new token for this sale and user, then buy with it."
    code = "flash_token_invalid"


class NotFound(DomainError):
    """The resource does not exist (or is not visible to the caller)."""

    action = "Check the id; do not retry."
    code, status = "not_found", 404


class UnknownSku(NotFound):
    """No SKU has this id."""

    action = "Re-read the product and use one of its SKUs."
    code = "unknown_sku"


class Conflict(DomainError):
    """The request conflicts with the resource's current state."""

    action = "Re-read the resource; retry only if the state now allows it."
    code, status = "conflict", 409


class EmailTaken(Conflict):
    """An account with this email exists."""

    action = "Sign in, or register with another email."
    code = "email_taken"


class UsernameTaken(Conflict):
    """An account with this username exists."""

    action = "Choose another username."
    code = "username_taken"


class InvalidTransition(Conflict):
    """The order (or reservation) is not in a state that allows this move; `details.state` says
    which it is in.
    """

    action = "Re-read the order; the move has either happened already or can no longer happen."
    code = "invalid_transition"


class IdempotencyMismatch(Conflict):
    """This `Idempotency-Key` was used before for a different request."""

    action = "Use a new key for a new operation; reuse a key only to replay the same request."
    code = "idempotency_key_reused"


class TracingOff(Conflict):
    """No span exporter is configured, so a sampling ratio would trace nothing."""

    action = "Set RAYMALL_TRACE_OTLP_ENDPOINT or RAYMALL_TRACE_FILE, restart, then set the ratio."
    code = "tracing_off"


class CategoryCycle(Conflict):
    """The category move would make a category its own ancestor."""

    action = "Choose another parent."
    code = "category_cycle"


class CategoryNotEmpty(Conflict):
    """The category still has products or children."""

    action = "Move or delete them first."
    code = "category_not_empty"


class AlreadyExists(Conflict):
    """A resource with this unique name or key exists."""

    action = "Use another name, or update the existing one."
    code = "already_exists"


class BrandInUse(Conflict):
    """Products still name this brand."""

    action = "Reassign those products first."
    code = "brand_in_use"


class ProductInUse(Conflict):
    """Orders or sales still name this product."""

    action = "Unpublish it instead of deleting it."
    code = "product_in_use"


class NotPublishable(Conflict):
    """The product lacks what publishing needs (a SKU, a price)."""

    action = "Complete the product, then publish."
    code = "product_not_publishable"


class OutOfStock(Conflict):
    """Not enough stock for the quantity asked; nothing was reserved."""

    action = "Lower the quantity or remove the item; stock may come back later."
    code = "out_of_stock"


class SoldOut(Conflict):
    """The flash sale has no units left."""

    action = "Stop retrying: the sale is over for everyone."
    code = "sold_out"


class LimitExceeded(Conflict):
    """The customer has bought the sale's per-customer limit; `details.per_user_limit` says how
    many.
    """

    action = "Do not retry; the earlier purchases stand."
    code = "purchase_limit_exceeded"


class SaleNotStarted(Conflict):
    """The flash sale has not started; `details.starts_at_ms` says when it does."""

    action = "Retry after the start time."
    code = "sale_not_started"


class SaleEnded(Conflict):
    """The flash sale has ended."""

    action = "Do not retry."
    code = "sale_ended"


class FlashTokenUsed(Conflict):
    """This purchase token was spent on an earlier purchase."""

    action = "Read the earlier purchase's order; fetch a new token only for a new purchase."
    code = "flash_token_used"


class NotForSale(Conflict):
    """The SKU exists but is not on sale (unpublished or inactive)."""

    action = "Remove it from the cart."
    code = "sku_not_for_sale"


class CartLimitExceeded(Conflict):
    """The cart holds the most lines or units allowed."""

    action = "Remove items before adding more."
    code = "cart_limit_exceeded"


class RefundNotFound(NotFound):
    """No refund has this id (a refund callback naming an unknown refund is audited)."""

    code = "refund_not_found"
    action = "Check the refund id; do not retry."


class ReturnNotFound(NotFound):
    """No return (RMA) has this id, or it is another customer's."""

    code = "return_not_found"
    action = "Check the return id (`GET /orders/{id}/returns`); do not retry."


class RefundExceedsRemaining(Conflict):
    """A refund asks for more than is left to refund: on the payment, on a line, or on the
    shipping; `details.left_cents` says what is left (for a line: `details.order_item_id`)."""

    code = "refund_exceeds_remaining"
    action = "Re-read the order's refunds and ask for at most `details.left_cents`."


class OrderNotRefundable(Conflict):
    """The order has no succeeded payment to refund (unpaid, or its payment failed)."""

    code = "order_not_refundable"
    action = "Do not retry; an unpaid order is cancelled, not refunded."


class OrderNotReturnable(Conflict):
    """Only a delivered or completed order takes a return; `details.status` says where it is."""

    code = "order_not_returnable"
    action = "Ask for the return once the order is delivered (or cancel it before it ships)."


class ReturnWindowClosed(Conflict):
    """The return window (`RAYMALL_RETURN_WINDOW_DAYS` after delivery) has passed;
    `details.closed_ms` says when it closed."""

    code = "return_window_closed"
    action = "Do not retry; contact the shop."


class ReturnQuantityExceeded(Conflict):
    """A return asks for more units of a line than were bought less those already returned
    or asked for; `details` names the line and what may still be returned."""

    code = "return_quantity_exceeded"
    action = "Ask for at most `details.returnable` units of that line."


class CouponNotOwned(Forbidden):
    """The coupon belongs to another customer."""

    code = "coupon_not_owned"
    action = "Use one of your own coupons (`GET /me/coupons`)."


class CampaignNotFound(NotFound):
    """No coupon campaign has this id."""

    code = "campaign_not_found"
    action = "List the campaigns (`GET /coupon-campaigns`); do not retry."


class CouponNotFound(NotFound):
    """No coupon has this id."""

    code = "coupon_not_found"
    action = "Use a coupon id from `GET /me/coupons`."


class CouponCodeInvalid(NotFound):
    """No claimable campaign has this code."""

    code = "coupon_code_invalid"
    action = "Check the code; do not retry unchanged."


class CouponRefused(Conflict):
    """A coupon cannot be claimed or used as asked."""

    code = "coupon_refused"
    action = "Read `code` and `details`; quote the cart to see the coupons that apply."


class CouponExpired(CouponRefused):
    """The coupon's validity has ended."""

    code = "coupon_expired"
    action = "Order without it, or with another coupon."


class CouponNotYetValid(CouponRefused):
    """The coupon is not valid yet."""

    code = "coupon_not_yet_valid"
    action = "Use it from `details.valid_from_ms` on."


class CouponOutOfScope(CouponRefused):
    """No line of the order is covered by the coupon."""

    code = "coupon_out_of_scope"
    action = "Add items the coupon covers, or order without it."


class CouponBelowThreshold(CouponRefused):
    """The order does not reach the coupon's minimum spend."""

    code = "coupon_below_threshold"
    action = "Add items up to `details.min_spend_cents`, or order without it."


class CouponUnavailable(CouponRefused):
    """The coupon is locked by another unpaid order, used or expired."""

    code = "coupon_unavailable"
    action = "Pay or cancel the order that holds it, or use another coupon."


class CouponNotCombinable(CouponRefused):
    """These coupons cannot be used together."""

    code = "coupon_not_combinable"
    action = "Name one coupon, or only coupons that stack."


class ClaimNotStarted(CouponRefused):
    """The campaign's claim window has not opened."""

    code = "claim_not_started"
    action = "Claim from `details.claim_starts_at_ms` on."


class ClaimEnded(CouponRefused):
    """The campaign's claim window has closed."""

    code = "claim_ended"
    action = "Do not retry."


class CampaignInactive(CouponRefused):
    """The campaign is not active."""

    code = "campaign_inactive"
    action = "Do not retry."


class CouponsSoldOut(CouponRefused):
    """Every coupon of the campaign has been claimed."""

    code = "coupons_sold_out"
    action = "Do not retry."


class CouponLimitReached(CouponRefused):
    """The customer holds the campaign's per-user limit of coupons."""

    code = "coupon_limit_reached"
    action = "Do not retry; use the coupons you hold."


class ShippingMethodNotFound(NotFound):
    """No active shipping method has this id."""

    code = "shipping_method_not_found"
    action = "Pick a method from `GET /shipping-methods`."


class ShipmentNotFound(NotFound):
    """No shipment has this id (a carrier callback naming an unknown shipment is audited)."""

    code = "shipment_not_found"
    action = "Check the shipment id; do not retry."


class CarrierEventMismatch(BadRequest):
    """A carrier callback names another order or tracking number than its shipment's; audited."""

    code = "carrier_event_mismatch"
    action = "Send the shipment's own order id and tracking number; do not retry unchanged."


class ShipQuantityExceeded(Conflict):
    """A shipment asks for more units of a line than remain unshipped (or for none);
    `details` names the line and what remains."""

    code = "ship_quantity_exceeded"
    action = "Re-read the order (each line's `shipped_quantity`) and ship at most what remains."


class TrackingNumberTaken(Conflict):
    """Another order's shipment already has this carrier and tracking number."""

    code = "tracking_number_taken"
    action = "Use the tracking number the carrier gave this parcel."


class NotVerifiedBuyer(Forbidden):
    """Only the buyer of an order line may review it; the caller has no such line (the
    order is another customer's, does not exist, or does not hold it)."""

    code = "not_verified_buyer"
    action = "Review a line of one of your own orders (`GET /orders`); do not retry."


class ReviewNotFound(NotFound):
    """No review has this id."""

    code = "review_not_found"
    action = "Check the id; do not retry."


class OrderNotReceived(Conflict):
    """The order is not delivered or completed yet; `details.status` says where it is."""

    code = "order_not_received"
    action = "Review the line once the order is delivered."


class AlreadyReviewed(Conflict):
    """This order line has a review already (one review per line)."""

    code = "already_reviewed"
    action = "Do not retry; the first review stands."


class PayloadTooLarge(DomainError):
    """The request body is larger than the API accepts."""

    action = "Send a smaller body."
    code, status = "payload_too_large", 413


class UnsupportedMedia(DomainError):
    """The body is not `application/json`."""

    action = "Send JSON with `Content-Type: application/json`."
    code, status = "unsupported_media_type", 415


class RateLimited(DomainError):
    """Too many requests for this client, user or route."""

    action = "Wait `Retry-After` seconds (also `details.retry_after`), then retry."
    code, status = "rate_limited", 429

    def __init__(self, message: str = "", *, retry_after: int = 1, **kw: Any) -> None:
        details = dict(kw.pop("details", None) or {})
        details.setdefault("retry_after", retry_after)
        super().__init__(message or "too many requests", details=details)
        self.retry_after = int(details["retry_after"])


class Unavailable(DomainError):
    """A store, shard or actor could not answer in time, or the instance is draining; nothing was
    decided unless the operation's key says otherwise.
    """

    action = (
        "Retry with the same `Idempotency-Key` after `Retry-After` seconds (when given) "
        "or a short backoff: the key makes the retry take effect once."
    )
    code, status, retriable = "unavailable", 503, True

    @property
    def retry_after(self) -> int | None:
        """Seconds for a ``Retry-After`` header, when ``details["retry_after"]`` names them."""
        value = self.details.get("retry_after")
        return value if isinstance(value, int) and value > 0 else None


class EdgeCode(NamedTuple):
    """An error code answered by the HTTP edge itself, with no ``DomainError`` class."""

    code: str
    status: int
    meaning: str
    action: str


EDGE_CODES: tuple[EdgeCode, ...] = (
    EdgeCode(
        "method_not_allowed",
        405,
        "The route exists but not for this HTTP method.",
        "Use a method the route accepts (see `Allow` and the OpenAPI document).",
    ),
    EdgeCode(
        "not_acceptable",
        406,
        "The request's `Accept` header excludes JSON.",
        "Accept `application/json`.",
    ),
    EdgeCode(
        "internal_error",
        500,
        "An unexpected fault; it is logged with the request id and trace id.",
        "Retry with the same `Idempotency-Key` later; report the `request_id` if it persists.",
    ),
    EdgeCode(
        "not_ready",
        503,
        "`/readyz`: a core check (database, shards) failed; `details.checks` says which.",
        "Operations: route traffic elsewhere until the instance is ready.",
    ),
)
