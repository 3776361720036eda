"""HTTP routes: accounts, auth, profile, addresses and user administration.

Public (no token): register, login, refresh. Everything else needs an access token; the
profile routes need ``profile:manage`` and the admin routes ``users:read`` /
``users:block``. ``install`` puts the token verifier and permission check that
``deployments.security`` calls on every request on the app (``deployments.ingress``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response

from deployments.auth_schemas import (
    AddressIn,
    AddressPatch,
    LoginIn,
    PasswordChangeIn,
    ProfilePatch,
    RefreshIn,
    RegisterIn,
)
from deployments.cart_routes import merge_at_login
from deployments.catalog_admin_routes import read_upload
from deployments.security import Principal, client_ip, current_user, public, require
from deployments.services import services
from raymall.auth.profile import ProfileService
from raymall.auth.service import AuthService

router = APIRouter()

public("POST", "/auth/register")
public("POST", "/auth/login")
public("POST", "/auth/refresh")

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
Profile = Annotated[Principal, Depends(require("profile", "manage"))]


def _auth(request: Request) -> AuthService:
    return services(request).auth


def _profile(request: Request) -> ProfileService:
    return services(request).profile


# ---- sign-up, sign-in, sessions -------------------------------------------------------
@router.post("/auth/register", status_code=201, tags=["auth"])
async def register(body: RegisterIn, request: Request) -> dict[str, Any]:
    return await _auth(request).register(
        email=str(body.email),
        username=body.username,
        password=body.password,
        display_name=body.display_name or "",
        ip=client_ip(request),
    )


@router.post("/auth/login", tags=["auth"])
async def login(body: LoginIn, request: Request) -> dict[str, Any]:
    pair = await _auth(request).login(
        email=str(body.email) if body.email is not None else None,
        username=body.username,
        password=body.password,
        ip=client_ip(request),
        device_token=body.device_token,
    )
    # a guest cart (X-Cart-Token) joins the user's cart; never fails the login
    await merge_at_login(request, _auth(request).codec.verify_access(pair.access_token).user_id)
    return pair.body()


@router.post("/auth/refresh", tags=["auth"])
async def refresh(body: RefreshIn, request: Request) -> dict[str, Any]:
    return (await _auth(request).refresh(body.refresh_token)).body()


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(request: Request, me: Annotated[Principal, Depends(current_user)]) -> Response:
    if me.family_id:
        await _auth(request).logout(me.family_id)
    return Response(status_code=204)


# ---- profile --------------------------------------------------------------------------
@router.get("/me", tags=["profile"])
async def get_me(request: Request, me: Profile) -> dict[str, Any]:
    return await _profile(request).me(me.user_id)


@router.patch("/me", tags=["profile"])
async def patch_me(body: ProfilePatch, request: Request, me: Profile) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return await _profile(request).update_me(me.user_id, changes)


@router.put("/me/avatar", tags=["profile"])
async def put_avatar(request: Request, me: Profile) -> dict[str, Any]:
    """Upload the avatar as the raw request body (Content-Type image/png, image/jpeg,
    image/webp or image/gif, at most ``RAYMALL_MAX_UPLOAD_BYTES``); returns the profile
    with its ``avatar_url``."""
    profile, content_type = _profile(request), request.headers.get("content-type")
    data = await read_upload(request, profile.avatar_limit(content_type))
    return await profile.set_avatar(me.user_id, data, content_type)


@router.delete("/me/avatar", tags=["profile"])
async def delete_avatar(request: Request, me: Profile) -> dict[str, Any]:
    return await _profile(request).remove_avatar(me.user_id)


@router.post("/me/password", tags=["profile"])
async def change_password(body: PasswordChangeIn, request: Request, me: Profile) -> dict[str, Any]:
    pair = await _auth(request).change_password(
        me.user_id, current=body.current_password, new=body.new_password, ip=client_ip(request)
    )
    return pair.body()


@router.get("/me/addresses", tags=["profile"])
async def list_addresses(request: Request, me: Profile) -> dict[str, Any]:
    return {"items": await _profile(request).addresses(me.user_id)}


@router.post("/me/addresses", status_code=201, tags=["profile"])
async def add_address(body: AddressIn, request: Request, me: Profile) -> dict[str, Any]:
    fields = body.model_dump(exclude={"is_default"})
    return await _profile(request).add_address(me.user_id, fields, make_default=body.is_default)


@router.get("/me/addresses/{address_id}", tags=["profile"])
async def get_address(address_id: Id, request: Request, me: Profile) -> dict[str, Any]:
    return await _profile(request).address(me.user_id, address_id)


@router.patch("/me/addresses/{address_id}", tags=["profile"])
async def patch_address(
    address_id: Id, body: AddressPatch, request: Request, me: Profile
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return await _profile(request).update_address(me.user_id, address_id, changes)


@router.post("/me/addresses/{address_id}/default", tags=["profile"])
async def make_default(address_id: Id, request: Request, me: Profile) -> dict[str, Any]:
    return await _profile(request).make_default(me.user_id, address_id)


@router.delete("/me/addresses/{address_id}", status_code=204, tags=["profile"])
async def delete_address(address_id: Id, request: Request, me: Profile) -> Response:
    await _profile(request).delete_address(me.user_id, address_id)
    return Response(status_code=204)


# ---- administration -------------------------------------------------------------------
@router.get("/admin/users", tags=["admin"])
async def list_users(
    request: Request,
    _: Annotated[Principal, Depends(require("users", "read"))],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=254)] = None,
    blocked: bool | None = None,
) -> dict[str, Any]:
    return await _auth(request).list_users(limit=limit, after_id=after_id, query=q, blocked=blocked)


@router.post("/admin/users/{user_id}/block", tags=["admin"])
async def block_user(
    user_id: Id, request: Request, admin: Annotated[Principal, Depends(require("users", "block"))]
) -> dict[str, Any]:
    return await _auth(request).set_blocked(admin.user_id, user_id, True)


@router.post("/admin/users/{user_id}/unblock", tags=["admin"])
async def unblock_user(
    user_id: Id, request: Request, admin: Annotated[Principal, Depends(require("users", "block"))]
) -> dict[str, Any]:
    return await _auth(request).set_blocked(admin.user_id, user_id, False)


# ---- per-request hooks -----------------------------------------------------------------
def install(app: FastAPI, service: AuthService) -> None:
    """Install the hooks ``deployments.security`` calls on every request."""

    async def verify_token(request: Request, token: str) -> Principal:
        claims = await service.authenticate(token)
        return Principal(claims.user_id, claims.role, claims.jti, claims.family_id)

    async def check_permission(request: Request, role: str, resource: str, action: str) -> bool:
        return await service.allowed(role, resource, action)

    app.state.verify_token = verify_token
    app.state.check_permission = check_permission
