"""The two journeys of the pages, in a real browser, each asserting what the page shows:

- a shopper browses by category, searches, opens a product, picks its SKU, adds it to a
  guest cart, signs in (the guest cart merges), adds an address, checks out, pays through
  the simulated provider and sees the order paid, with its status history;
- an admin creates a product with a SKU, an image and stock, publishes it, starts a flash
  sale and watches a purchase land on the sale's live view (the server-sent event stream);
  the public sale page shows the same.
"""

from __future__ import annotations

import secrets
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.auth_helpers import TestUser
from tests.order_helpers import restock, wait_for

WAIT_S = 20


def png(width: int = 240, height: int = 180) -> bytes:
    """A small picture of a kettle-coloured gradient, for the product image upload."""
    rows = b"".join(
        b"\x00"
        + bytes(v for x in range(width) for v in (200 - y // 2, 60 + x // 3, 40 + (x + y) // 6))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def wait(driver: Any, timeout: float = WAIT_S) -> WebDriverWait:
    """A wait that polls again when the page re-renders the element it was looking at."""
    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )


def shows(driver: Any, css: str, text: str, timeout: float = WAIT_S) -> Any:
    """Wait until the element ``css`` contains ``text``; the element."""
    wait(driver, timeout).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
    return driver.find_element(By.CSS_SELECTOR, css)


def element(driver: Any, css: str) -> Any:
    return wait(driver).until(ec.element_to_be_clickable((By.CSS_SELECTOR, css)))


def fill(driver: Any, css: str, value: str) -> None:
    el = element(driver, css)
    el.clear()
    el.send_keys(value)


def unlabelled(driver: Any) -> list[str]:
    """Form controls of the page without a label."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('input, select, textarea'))"
        ".filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length)"
        " && !e.getAttribute('aria-label')).map(e => e.id || e.name || e.outerHTML)"
    )


def catalog_product(client: httpx.Client, admin: TestUser, word: str) -> dict[str, Any]:
    """A published product (own category, one SKU with stock), made through the API."""
    h = admin.headers
    cat = client.post(
        "/admin/categories", json={"name": f"Cat {word}", "slug": f"cat-{word}"}, headers=h
    )
    assert cat.status_code == 201, cat.text
    body = {
        "title": f"Teapot {word}",
        "description": f"A sturdy teapot called {word}.",
        "category_id": cat.json()["id"],
        "skus": [
            {"code": f"TP-{word}-S", "specs": {"size": "small"}, "price_cents": 1500},
            {"code": f"TP-{word}-L", "specs": {"size": "large"}, "price_cents": 2500},
        ],
    }
    made = client.post("/admin/products", json=body, headers=h)
    assert made.status_code == 201, made.text
    product = made.json()
    for sku in product["skus"]:
        restock(client, h, sku["id"], 20)
    assert client.post(f"/admin/products/{product['id']}/publish", headers=h).status_code == 200
    return {**product, "category_id": cat.json()["id"]}


def test_shopper_browses_searches_buys_and_sees_the_order_paid(
    app: Any,
    client: httpx.Client,
    admin: TestUser,
    shopper: TestUser,
    browser: Any,
    screenshot: Any,
) -> None:
    word = f"zq{secrets.token_hex(4)}"
    product = catalog_product(client, admin, word)
    large = product["skus"][1]["id"]
    wait_for(
        lambda: any(
            i.get("id") == product["id"]
            for i in client.get("/search", params={"q": word}).json()["items"]
        ),
        timeout_s=30,
    )
    d = browser
    d.get(app.url + "/")
    d.execute_script("localStorage.clear(); sessionStorage.clear();")
    d.get(app.url + "/#/")
    # keyboard: the skip link comes first, and each page's heading takes the focus
    first = "return document.querySelector('a[href], button, input, select, textarea')"
    assert d.execute_script(first + ".textContent") == "Skip to content"
    wait(d).until(lambda drv: drv.switch_to.active_element.get_attribute("id") == "page-title")
    # browse: filter by the product's category, newest first
    Select(element(d, "#category_id")).select_by_value(str(product["category_id"]))
    Select(element(d, "#sort")).select_by_value("price_asc")
    element(d, "form.filters button[type=submit]").click()
    shows(d, "#products", f"Teapot {word}")
    assert shows(d, "#result-count", "1 products")
    assert unlabelled(d) == []
    screenshot(d, "storefront-filtered")
    # search (hybrid)
    fill(d, "#search-q", word)
    d.find_element(By.CSS_SELECTOR, "#search-q").send_keys(Keys.ENTER)
    shows(d, "#page-title", f"Search: {word}")
    shows(d, "#products", f"Teapot {word}")
    # detail: choose the large SKU, see its price and stock, add it to the guest cart
    element(d, f"#products a[href='#/p/{product['id']}']").click()
    shows(d, "#page-title", f"Teapot {word}")
    Select(element(d, "#sku")).select_by_value(str(large))
    shows(d, "#price", "$25.00")
    shows(d, "#availability", "In stock: 20 available")
    fill(d, "#qty", "2")
    element(d, "#add-to-cart").click()
    shows(d, "main", "Added to cart")
    screenshot(d, "product")
    assert d.execute_script("return localStorage.getItem('raymall.cart')")  # a guest cart
    d.get(app.url + "/#/cart")
    shows(d, "#cart", f"Teapot {word}")
    shows(d, "#cart-total", "$50.00")
    # sign in: the guest cart merges into the shopper's
    element(d, "#checkout").click()
    fill(d, "#login-identity", shopper.email)
    fill(d, "#login-password", shopper.password)
    element(d, "#login-form button[type=submit]").click()
    shows(d, "#page-title", "Checkout")
    assert d.execute_script("return localStorage.getItem('raymall.cart')") is None
    # an address, then the quote and the order
    if not d.find_elements(By.CSS_SELECTOR, "#address"):
        for name, value in {
            "recipient": "Ada Shopper",
            "phone": "+15550100",
            "line1": "1 Test Street",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
        }.items():
            fill(d, f"#addr-{name}", value)
        element(d, "#address-form button[type=submit]").click()
    # the total: $50.00, less any promotion, plus the fee of the shipping method chosen
    quoted = shows(d, "#quote-total", "$").text
    assert unlabelled(d) == []
    screenshot(d, "checkout")
    element(d, "#place-order").click()
    shows(d, "#order-status", "pending_payment")
    shows(d, "#order-total", quoted)
    # pay through the simulated provider: the page follows the order until it is paid
    element(d, "#pay").click()
    shows(d, "#order-status", "paid", timeout=30)
    shows(d, "#history", "pending_payment → paid")
    screenshot(d, "order-paid")
    order_id = d.current_url.rsplit("/", 1)[1]
    got = client.get(f"/orders/{order_id}", headers=shopper.headers).json()
    assert got["status"] == "paid"
    # (promotions of other tests may be running on the shared server)
    assert got["total_cents"] == 5000 - got["discount_cents"] + got.get("shipping_cents", 0)
    assert quoted == f"${got['total_cents'] / 100:.2f}"
    assert [(i["sku_id"], i["quantity"]) for i in got["items"]] == [(large, 2)]
    d.get(app.url + "/#/orders")
    shows(d, "#orders", order_id)


def test_admin_creates_a_product_starts_a_flash_sale_and_watches_a_purchase_land(
    app: Any,
    client: httpx.Client,
    admin: TestUser,
    shopper: TestUser,
    browser: Any,
    screenshot: Any,
    tmp_path: Path,
) -> None:
    word = f"fx{secrets.token_hex(4)}"
    cat = client.post(
        "/admin/categories",
        json={"name": f"Cat {word}", "slug": f"cat-{word}"},
        headers=admin.headers,
    )
    assert cat.status_code == 201, cat.text
    image = tmp_path / "kettle.png"
    image.write_bytes(png())
    d = browser
    d.get(app.url + "/admin")
    d.execute_script("localStorage.clear(); sessionStorage.clear();")
    d.get(app.url + "/admin#/products")
    fill(d, "#admin-identity", admin.email)
    fill(d, "#admin-password", admin.password)
    element(d, "#admin-login button[type=submit]").click()
    # a product with a SKU, an image and stock
    fill(d, "#p-title", f"Kettle {word}")
    Select(element(d, "#p-category")).select_by_value(str(cat.json()["id"]))
    fill(d, "#p-sku-code", f"K-{word}")
    fill(d, "#p-sku-specs", "colour=red")
    fill(d, "#p-price", "3000")
    fill(d, "#p-stock", "12")
    d.find_element(By.CSS_SELECTOR, "#p-image").send_keys(str(image))
    element(d, "#product-form button[type=submit]").click()
    panel = shows(d, "#created", f"Kettle {word}")
    assert panel.find_element(By.CSS_SELECTOR, "img").get_attribute("src").endswith(".png")
    shows(d, "#sku-table", f"K-{word}")
    shows(d, "#sku-table td.available", "12")
    sku_id = int(panel.find_element(By.CSS_SELECTOR, "tr[data-sku]").get_attribute("data-sku"))
    # publish
    element(d, "#created .product p button").click()
    shows(d, "#product-status", "published")
    screenshot(d, "admin-product")
    # a flash sale of 5 units, starting now
    d.get(app.url + "/admin#/flash")
    assert unlabelled(d) == []
    fill(d, "#fs-sku", str(sku_id))
    fill(d, "#fs-title", f"Flash {word}")
    fill(d, "#fs-price", "999")
    fill(d, "#fs-qty", "5")
    start = d.find_element(By.CSS_SELECTOR, "#fs-start")
    d.execute_script(
        "arguments[0].value = new Date(Date.now() - new Date().getTimezoneOffset() * 60000 "
        "- 60000).toISOString().slice(0, 16)",
        start,
    )
    element(d, "#flash-form button[type=submit]").click()
    shows(d, "#flash-live", f"Flash {word}")
    shows(d, "#live-remaining", "5")
    shows(d, "#live-status", "active")
    sale_id = int(d.current_url.rsplit("=", 1)[1])
    # a purchase lands: the live view shows it through the event stream, no reload
    time.sleep(0.3)  # the stream is open (its first event showed); the purchase is news
    bought = client.post(
        f"/flash-sales/{sale_id}/purchase",
        headers={**shopper.headers, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert bought.status_code == 201, bought.text
    shows(d, "#live-remaining", "4", timeout=10)
    shows(d, "#live-sold", "1")
    shows(d, "#live-log", "remaining: 4 left")
    screenshot(d, "admin-flash-live")
    # the public sale page: listed with the server's clock, counting, buyable
    listed = client.get("/flash-sales").json()
    assert any(s["id"] == sale_id and s["remaining"] == 4 for s in listed["items"])
    assert abs(listed["server_time_ms"] - time.time() * 1000) < 5_000
    d.get(app.url + f"/#/flash/{sale_id}")
    shows(d, "#remaining", "4 of 5 left")
    shows(d, "#sale-status", "On sale now")
    shows(d, "#countdown", "Ends in")
    assert element(d, "#buy").is_enabled()
    screenshot(d, "flash-sale")
    # the admin's order list shows the flash order
    d.get(app.url + "/admin#/orders")
    shows(d, "#admin-orders", "pending_payment")
    # the shop's front page: the new product, with its image, and the sale's banner
    d.get(app.url + "/#/")
    shows(d, "#products", f"Kettle {word}")
    shows(d, "main .notice", "Flash sale")
    screenshot(d, "storefront")
